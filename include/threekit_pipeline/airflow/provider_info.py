"""Airflow provider metadata: registers the ``threekit`` connection type and extra links.

Loaded by Airflow through the ``apache_airflow_provider`` entry point in pyproject.toml.
"""

from __future__ import annotations


def get_provider_info() -> dict:
    return {
        "package-name": "threekit-pipeline",
        "name": "Threekit",
        "description": "Threekit REST API connection, hooks, operators and FTP transfers for Threekit pipelines.",
        "versions": ["0.1.0"],
        "connection-types": [
            {
                "connection-type": "threekit",
                "hook-class-name": "threekit_pipeline.airflow.hooks.threekit.ThreekitHook",
            }
        ],
    }
