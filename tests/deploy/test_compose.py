"""docker-compose.yaml, Dockerfile and .env.example: valid, complete, and the same cluster the native
CeleryExecutor test proves (tests/distributed/test_celery_cluster.py).

There is no Docker engine here, so nothing is built or started. ``docker compose config`` (or Debian's
``docker-compose`` v1, installed by scripts/install-docker-compose.sh) validates and resolves the file
without one; the consistency checks compare its Airflow settings, connections and Variable with the
ones :class:`~threekit_pipeline.devtools.cluster.CeleryCluster` really uses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from threekit_pipeline.devtools import image_requirements
from threekit_pipeline.devtools.cluster import (
    CLUSTER_AIRFLOW_CONFIG,
    CLUSTER_LOCATION_SETTINGS,
    CLUSTER_PIPELINE_ENV_NAMES,
    NATIVE_PORT_SETTINGS,
    CeleryCluster,
)
from threekit_pipeline.devtools.stack import FTP_CONNECTION_EXTRA_DEFAULTS, STAGING_DIR_ENV, VARIABLE_ENV
from threekit_pipeline.pipelines.config import load_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"

AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
)
LONG_RUNNING = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-triggerer")
SANDBOXES = ("threekit-sandbox", "ftp-sandbox")

# Whichever test runs first may install docker-compose (apt) on a fresh machine.
pytestmark = pytest.mark.timeout(900)

#: Values for the secrets .env.example leaves empty (what a person fills in).
FILLED_SECRETS = {
    "AIRFLOW_FERNET_KEY": "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=",
    "AIRFLOW_JWT_SECRET": "jwt-secret-for-config-check",
    "AIRFLOW_API_SECRET_KEY": "api-secret-for-config-check",
    "AIRFLOW_ADMIN_PASSWORD": "admin-password-for-config-check",
    "FTP_PASSWORD": "ftp-password-for-config-check",
    "THREEKIT_TOKEN": "threekit-token-for-config-check",
    "THREEKIT_ORG_ID": "0b7e4c1a-9d2f-4a6b-8c3e-5f1a2b3c4d5e",
    "THREEKIT_PIPELINE_VARIABLE": '{"mapping": "canonical", "batch_size": 200}',
}


# --- compose variable interpolation (used when no Compose CLI can be installed) ---------------------

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}`` and ``$$``."""

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3) or ""
        current = env.get(name)
        if operator in (":-", ":?") and not current:
            current = None
        if current is None:
            if operator and operator.endswith("?"):
                raise ValueError(f"{name}: {argument}")
            return argument if operator else ""
        return current

    return _VARIABLE.sub(substitute, value)


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value
    return env


def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def filled_env() -> dict[str, str]:
    return {**read_env_file(ENV_EXAMPLE), **FILLED_SECRETS}


def service_env(compose: dict, service: str) -> dict[str, str]:
    env = compose["services"][service].get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


# --- the Compose CLI --------------------------------------------------------------------------------


@cache
def compose_cli() -> tuple[str, ...] | None:
    """``docker compose`` if its plugin works, else ``docker-compose``; installs v1 if neither does."""

    def works(command: tuple[str, ...]) -> bool:
        if not shutil.which(command[0]):
            return False
        return subprocess.run([*command, "version"], capture_output=True, timeout=60).returncode == 0

    for command in (("docker", "compose"), ("docker-compose",)):
        if works(command):
            return command
    subprocess.run(
        ["bash", str(REPO / "scripts" / "install-docker-compose.sh")], capture_output=True, timeout=900
    )
    for command in (("docker", "compose"), ("docker-compose",)):
        if works(command):
            return command
    return None


def run_compose_config(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no Compose CLI: neither `docker compose` nor `docker-compose` could be installed")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), **extra_env}
    return subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The compose file as Compose resolves it with a filled-in .env (Python fallback without CLI)."""
    if compose_cli() is None:
        compose = raw_compose()
        env = filled_env()
        for service in compose["services"].values():
            if isinstance(service.get("environment"), dict):
                service["environment"] = {k: interpolate(str(v), env) for k, v in service["environment"].items()}
        return compose
    result = run_compose_config(FILLED_SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


# --- validity ---------------------------------------------------------------------------------------


def test_compose_cli_accepts_the_file_with_a_filled_env():
    result = run_compose_config(FILLED_SECRETS)
    assert result.returncode == 0, result.stderr
    assert set(yaml.safe_load(result.stdout)["services"]) >= {*AIRFLOW_SERVICES, *SANDBOXES, "postgres", "redis"}


def test_compose_cli_names_the_missing_secret():
    secrets_without_jwt = {k: v for k, v in FILLED_SECRETS.items() if k != "AIRFLOW_JWT_SECRET"}
    result = run_compose_config(secrets_without_jwt)
    assert result.returncode != 0
    assert "set AIRFLOW_JWT_SECRET in .env" in result.stderr


def test_python_interpolation_matches_the_compose_cli(resolved):
    """The fallback used without a CLI resolves the file exactly like Compose does."""
    if compose_cli() is None:
        pytest.skip("no Compose CLI to compare with")
    env = filled_env()
    raw = raw_compose()
    for service in AIRFLOW_SERVICES:
        ours = {k: interpolate(str(v), env) for k, v in service_env(raw, service).items()}
        assert ours == service_env(resolved, service), service
    with pytest.raises(ValueError, match="set FTP_PASSWORD"):
        interpolate("${FTP_PASSWORD:?set FTP_PASSWORD in .env}", {"FTP_PASSWORD": ""})


def test_env_example_leaves_every_secret_empty():
    env = read_env_file(ENV_EXAMPLE)
    for name in FILLED_SECRETS:
        assert name in env, f".env.example lacks {name}"
        assert env[name] == "", f".env.example must not ship a value for {name}"
    assert env["COMPOSE_PROFILES"] == "sandbox"


# --- structure ---------------------------------------------------------------------------------------


def test_services_follow_the_official_celery_layout(resolved):
    services = resolved["services"]
    for name in LONG_RUNNING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert services["airflow-worker"]["command"] in ("celery worker", ["celery", "worker"])
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"]
    execution_url = service_env(resolved, "airflow-worker")["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    assert execution_url == "http://airflow-apiserver:8080/execution/"
    broker = service_env(resolved, "airflow-worker")["AIRFLOW__CELERY__BROKER_URL"]
    assert broker.startswith("redis://") and "@redis:6379" in broker


def _mounts(service: dict) -> dict[str, str]:
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


def test_every_airflow_component_shares_dags_logs_and_staging(resolved):
    for name in AIRFLOW_SERVICES:
        service = resolved["services"][name]
        env = service_env(resolved, name)
        mounts = _mounts(service)
        assert env[STAGING_DIR_ENV] in mounts, f"{name}: staging dir is not a volume"
        assert mounts[env[STAGING_DIR_ENV]] == "staging", f"{name}: not the shared staging volume"
        assert mounts[env["AIRFLOW__CORE__DAGS_FOLDER"]].endswith("dags")
        assert "/opt/airflow/logs" in mounts
    assert "staging" in resolved["volumes"]


def test_sandboxes_run_from_the_project_image_with_secrets_in_the_environment(resolved):
    image = resolved["services"]["airflow-worker"]["image"]
    for name in SANDBOXES:
        service = resolved["services"][name]
        assert service["image"] == image
        assert service["healthcheck"]["test"]
        command = " ".join(service["command"])
        # Secrets go through the environment, never the command line (visible in process lists).
        for secret in (FILLED_SECRETS["FTP_PASSWORD"], FILLED_SECRETS["THREEKIT_TOKEN"]):
            assert secret not in command, name
    assert service_env(resolved, "ftp-sandbox")["FTP_SANDBOX_PASSWORD"] == FILLED_SECRETS["FTP_PASSWORD"]
    assert service_env(resolved, "threekit-sandbox")["THREEKIT_SANDBOX_TOKEN"] == FILLED_SECRETS["THREEKIT_TOKEN"]


# --- consistency with the native cluster ------------------------------------------------------------


@pytest.fixture(scope="module")
def native_cluster_env(tmp_path_factory) -> dict[str, str]:
    """The environment CeleryCluster gives every component (built, not started)."""
    stack_env = {name: "x" for name in CLUSTER_PIPELINE_ENV_NAMES}
    cluster = CeleryCluster(tmp_path_factory.mktemp("native"), dags_folder=REPO / "dags", extra_env=stack_env)
    return cluster.env


def test_compose_airflow_settings_equal_the_native_cluster(resolved, native_cluster_env):
    native_keys = {k for k in native_cluster_env if k.startswith("AIRFLOW__")} - set(NATIVE_PORT_SETTINGS)
    assert native_keys == set(CLUSTER_AIRFLOW_CONFIG) | set(CLUSTER_LOCATION_SETTINGS)
    for name in AIRFLOW_SERVICES:
        env = service_env(resolved, name)
        compose_keys = {k for k in env if k.startswith("AIRFLOW__")}
        assert compose_keys == native_keys, (
            f"{name}: only in compose {sorted(compose_keys - native_keys)}, "
            f"only native {sorted(native_keys - compose_keys)}"
        )
        for key, value in CLUSTER_AIRFLOW_CONFIG.items():
            assert env[key] == value == native_cluster_env[key], (name, key)
        for key in CLUSTER_PIPELINE_ENV_NAMES:
            assert key in env and key in native_cluster_env, (name, key)


def test_compose_connections_have_the_native_shape(resolved):
    from airflow.sdk import Connection

    env = service_env(resolved, "airflow-worker")
    ftp = json.loads(env["AIRFLOW_CONN_FTP_DEFAULT"])
    assert set(ftp) == {"conn_type", "host", "port", "login", "password", "extra"}
    assert ftp["extra"] == FTP_CONNECTION_EXTRA_DEFAULTS
    assert (ftp["host"], ftp["port"], ftp["password"]) == ("ftp-sandbox", 2121, FILLED_SECRETS["FTP_PASSWORD"])
    threekit = json.loads(env["AIRFLOW_CONN_THREEKIT_DEFAULT"])
    assert set(threekit) == {"conn_type", "host", "password", "extra"}
    assert threekit["extra"] == {"org_id": FILLED_SECRETS["THREEKIT_ORG_ID"]}
    assert threekit["host"] == "http://threekit-sandbox:8090"
    # Airflow itself parses them (the Task SDK reads AIRFLOW_CONN_* exactly like this).
    assert Connection.from_json(env["AIRFLOW_CONN_FTP_DEFAULT"], conn_id="ftp_default").conn_type == "ftp"
    parsed = Connection.from_json(env["AIRFLOW_CONN_THREEKIT_DEFAULT"], conn_id="threekit_default")
    assert parsed.extra_dejson["org_id"] == FILLED_SECRETS["THREEKIT_ORG_ID"]


def test_compose_ledger_connection_reaches_the_compose_postgresql(resolved):
    from airflow.sdk import Connection
    from psycopg.conninfo import conninfo_to_dict
    from threekit_pipeline.airflow.hooks.ledger import connection_dsn

    env = service_env(resolved, "airflow-worker")
    conn = Connection.from_json(env["AIRFLOW_CONN_THREEKIT_LEDGER"], conn_id="threekit_ledger")
    dsn = conninfo_to_dict(connection_dsn("threekit_ledger", conn))
    assert (dsn["host"], dsn["port"], dsn["dbname"], dsn["user"]) == ("postgres", "5432", "airflow", "airflow")
    assert load_config('{"ledger_conn_id": "threekit_ledger"}').ledger_conn_id == "threekit_ledger"


def test_compose_variable_is_the_pipeline_configuration(resolved):
    value = service_env(resolved, "airflow-worker")[VARIABLE_ENV]
    assert load_config(value).batch_size == 200
    assert load_config(interpolate("${THREEKIT_PIPELINE_VARIABLE:-}", {})) == load_config(None)


# --- Dockerfile and image requirements ---------------------------------------------------------------


def test_dockerfile_builds_on_the_pinned_airflow_and_python():
    text = DOCKERFILE.read_text()
    airflow_pin = image_requirements.parse_pins((REPO / "requirements.txt").read_text().splitlines())[
        "apache-airflow"
    ]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert re.search(rf"^FROM apache/airflow:{re.escape(airflow_pin)}-python{python}$", text, re.M)
    assert "image_requirements.py requirements.txt requirements.lock" in text
    assert "pip install --no-deps -e ." in text and "pip check" in text


def test_dockerfile_copies_only_existing_paths_not_excluded_by_dockerignore():
    ignored = {
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    }
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY"):
            parts = [p for p in line.split()[1:] if not p.startswith("--")]
            sources.extend(parts[:-1])
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
        assert source.split("/")[0] not in ignored, f"{source} is excluded by .dockerignore"


def test_image_requirements_selects_missing_and_differing_pins_only():
    direct = {"celery": "5.6.3", "pandas": "3.1.1", "apache-airflow": "3.3.2", "pytest": "9.2.0"}
    lock = {**direct, "kombu": "5.6.0", "billiard": "4.3.2", "iniconfig": "2.0.0"}
    base_image = {"celery": "5.5.0", "kombu": "5.5.0", "billiard": "4.3.2", "apache-airflow": "3.3.0"}
    selected = image_requirements.select_image_requirements(direct, lock, base_image, tooling={"pytest"})
    # celery differs (direct pin), pandas and iniconfig are missing; kombu stays the image's (transitive,
    # present); Airflow belongs to the image; pytest is tooling.
    assert selected == ["celery==5.6.3", "iniconfig==2.0.0", "pandas==3.1.1"]


def test_image_requirements_reads_the_real_files():
    requirements = (REPO / "requirements.txt").read_text().splitlines()
    runtime = image_requirements.parse_pins(requirements, stop_at_tooling=True)
    tooling = image_requirements.tooling_pins(requirements)
    assert {"apache-airflow", "pandas", "celery"} <= set(runtime)
    assert {"pytest", "ruff"} <= tooling and not tooling & set(runtime)
    # This virtualenv is installed from the lock, so nothing is missing or different here.
    lock = image_requirements.parse_pins((REPO / "requirements.lock").read_text().splitlines())
    installed = image_requirements.installed_distributions()
    assert image_requirements.select_image_requirements(runtime, lock, installed, tooling) == []
    result = subprocess.run(
        [sys.executable, str(Path(image_requirements.__file__)), "requirements.txt", "requirements.lock"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0 and result.stdout == "", result.stderr
