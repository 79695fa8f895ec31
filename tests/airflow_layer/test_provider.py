"""The package is an Airflow provider: the ``threekit`` connection type, hooks, triggers and links."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from threekit_pipeline.airflow.provider_info import get_provider_info


def _airflow_cli(*args: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def _json_rows(output: str) -> list[dict]:
    # The CLI may print log lines before the JSON document.
    start = output.index("[")
    return json.loads(output[start:])


def test_provider_info_matches_airflow_schema():
    import airflow

    schema_path = Path(airflow.__file__).parent / "provider_info.schema.json"
    schema = json.loads(schema_path.read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "threekit-pipeline"
    types = {conn["connection-type"]: conn for conn in info["connection-types"]}
    assert sorted(types) == ["ftps", "threekit"]
    assert types["ftps"]["hook-class-name"] == "threekit_pipeline.airflow.hooks.ftp.ThreekitFTPSHook"


def test_every_module_and_class_named_in_provider_info_imports():
    from airflow.sdk._shared.module_loading import import_string

    info = get_provider_info()
    modules = [
        m
        for section in ("hooks", "operators", "sensors", "triggers")
        for e in info[section]
        for m in e["python-modules"]
    ]
    for module in modules:
        __import__(module)
    for class_path in [c["hook-class-name"] for c in info["connection-types"]] + info["extra-links"]:
        assert import_string(class_path) is not None


def test_hook_class_attributes_match_the_declared_connection_type():
    from threekit_pipeline.airflow.hooks.threekit import ThreekitHook

    assert ThreekitHook.conn_type == "threekit"
    assert ThreekitHook.default_conn_name == "threekit_default"
    assert ThreekitHook.conn_name_attr == "threekit_conn_id"
    assert ThreekitHook(threekit_conn_id="other").threekit_conn_id == "other"


def test_providers_manager_builds_the_connection_form():
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook_info = ProvidersManagerTaskRuntime().hooks["threekit"]
    assert hook_info.hook_class_name == "threekit_pipeline.airflow.hooks.threekit.ThreekitHook"
    assert hook_info.connection_id_attribute_name == "threekit_conn_id"
    manager = ProvidersManager()
    widgets = manager.connection_form_widgets
    assert "extra__threekit__org_id" in widgets
    assert widgets["extra__threekit__org_id"].field["schema"]["title"] == "Organisation ID"
    behaviour = manager.field_behaviours["threekit"]
    assert behaviour["relabeling"]["password"] == "API token (private)"
    assert behaviour["relabeling"]["host"] == "Base URL"
    assert "login" in behaviour["hidden_fields"]


@pytest.mark.slow
def test_airflow_cli_lists_the_provider_and_its_connection_type():
    providers = {
        row["package_name"]: row for row in _json_rows(_airflow_cli("providers", "list", "-o", "json"))
    }
    assert "threekit-pipeline" in providers
    assert providers["threekit-pipeline"]["version"] == "0.1.0"

    hooks = {
        row["connection_type"]: row for row in _json_rows(_airflow_cli("providers", "hooks", "-o", "json"))
    }
    assert hooks["threekit"]["class"] == "threekit_pipeline.airflow.hooks.threekit.ThreekitHook"
    assert hooks["threekit"]["package_name"] == "threekit-pipeline"
    assert hooks["threekit"]["hook_name"] == "Threekit"


def test_providers_manager_knows_the_trigger_and_links():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert {
        "threekit_pipeline.airflow.links.ThreekitJobLink",
        "threekit_pipeline.airflow.links.ThreekitAssetsLink",
    } <= set(manager.extra_links_class_names)
    ours = {(info.trigger_class_name, info.package_name) for info in manager.trigger}
    assert ("threekit_pipeline.airflow.triggers.ftp", "threekit-pipeline") in ours


def test_plugin_registers_the_extra_links():
    from airflow import plugins_manager

    plugins, errors = plugins_manager._get_plugins()
    assert not {k: v for k, v in errors.items() if "threekit" in k}, errors
    assert "threekit_links" in {plugin.name for plugin in plugins}
    registered = {
        f"{type(link).__module__}.{type(link).__name__}"
        for link in plugins_manager.get_operator_extra_links()
    }
    assert {
        "threekit_pipeline.airflow.links.ThreekitJobLink",
        "threekit_pipeline.airflow.links.ThreekitAssetsLink",
    } <= registered
