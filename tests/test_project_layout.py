"""The project installs as documented: console scripts and the Airflow provider are registered."""

from importlib.metadata import entry_points


def test_console_scripts_are_registered():
    names = {ep.name for ep in entry_points(group="console_scripts")}
    assert {"threekit-pipeline", "threekit-sandbox", "ftp-sandbox"} <= names


def test_provider_entry_point_declares_threekit_connection_type():
    (ep,) = [ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("threekit_pipeline")]
    info = ep.load()()
    types = {c["connection-type"]: c["hook-class-name"] for c in info["connection-types"]}
    assert types["threekit"].endswith("ThreekitHook")
