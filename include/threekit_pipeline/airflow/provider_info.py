"""Airflow provider metadata: registers the ``threekit`` connection type, triggers and extra links.

Loaded by Airflow through the ``apache_airflow_provider`` entry point in pyproject.toml.
The connection form is declared here (``conn-fields`` / ``ui-field-behaviour``), which is
how Airflow 3.2+ builds the React connection form without importing the hook.
"""

from __future__ import annotations

INTEGRATION = "Threekit"


def get_provider_info() -> dict:
    """Provider metadata in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "threekit-pipeline",
        "name": "Threekit",
        "description": "Threekit REST API connection, hooks, operators and FTP transfers for Threekit pipelines.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://developer.threekit.com/reference/rest-api",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "threekit_pipeline.airflow.hooks.threekit",
                    "threekit_pipeline.airflow.hooks.ftp",
                    "threekit_pipeline.airflow.hooks.sftp",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["threekit_pipeline.airflow.operators.threekit"],
            }
        ],
        "sensors": [
            {"integration-name": INTEGRATION, "python-modules": ["threekit_pipeline.airflow.sensors.ftp"]}
        ],
        "triggers": [
            {"integration-name": INTEGRATION, "python-modules": ["threekit_pipeline.airflow.triggers.ftp"]}
        ],
        "extra-links": [
            "threekit_pipeline.airflow.links.ThreekitJobLink",
            "threekit_pipeline.airflow.links.ThreekitAssetsLink",
        ],
        "connection-types": [
            {
                "connection-type": "threekit",
                "hook-class-name": "threekit_pipeline.airflow.hooks.threekit.ThreekitHook",
                "hook-name": "Threekit",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port"],
                    "relabeling": {"host": "Base URL", "password": "API token (private)"},
                    "placeholders": {
                        "host": "https://preview.threekit.com",
                        "password": "private API token of the organisation",
                        "org_id": "organisation UUID",
                    },
                },
                "conn-fields": {
                    "org_id": {
                        "label": "Organisation ID",
                        "description": "UUID of the Threekit organisation; sent as orgId on every call.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "timeout": {
                        "label": "Request timeout (s)",
                        "description": "Read timeout of each API call in seconds (connect timeout is 10 s).",
                        "schema": {"type": ["number", "null"]},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries of a call failing with 429, 5xx or a dropped connection.",
                        "schema": {"type": ["integer", "null"], "default": 6},
                    },
                },
            },
            {
                # Explicit FTPS (the ftp provider registers only ``ftp``); ``sftp`` comes from the sftp provider.
                "connection-type": "ftps",
                "hook-class-name": "threekit_pipeline.airflow.hooks.ftp.ThreekitFTPSHook",
                "hook-name": "FTPS (Threekit transfers)",
                "ui-field-behaviour": {"hidden-fields": ["schema"], "relabeling": {"login": "Username"}},
                "conn-fields": {
                    "ca_file": {
                        "label": "CA file",
                        "description": "PEM bundle to verify the server certificate against (private CA).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "encoding": {
                        "label": "File name encoding",
                        "description": "Encoding of remote file names, e.g. cp1252 (default utf-8).",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            },
        ],
    }
