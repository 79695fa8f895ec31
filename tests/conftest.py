"""Shared test configuration.

Airflow is configured before anything imports it: each pytest-xdist worker gets its
own AIRFLOW_HOME (and SQLite metadata DB) under .airflow/tests/, so parallel workers
never share a database file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
_home = REPO / ".airflow" / "tests" / _worker
_home.mkdir(parents=True, exist_ok=True)

os.environ["AIRFLOW_HOME"] = str(_home)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")


def _migrate_once() -> None:
    marker = _home / ".migrated"
    if marker.exists():
        return
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    marker.touch()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """An initialised Airflow metadata DB for this worker (for dag.test() runs)."""
    _migrate_once()
    return _home


# --- Sandbox fixtures -------------------------------------------------------------
# Real servers in subprocesses on free loopback ports; each test gets its own data
# directory, so tests are independent and can run in parallel.

SANDBOX_TOKEN = "tk-test-3f9a1c7e-5b2d-4e8f-9a61-0c2d7b4e8f11"
SANDBOX_ORG = "0b7e4c1a-9d2f-4a6b-8c3e-5f1a2b3c4d5e"
FTP_USER = "erp"
FTP_PASSWORD = "ftp-secret-8d1f0a"


@pytest.fixture
def threekit_sandbox(tmp_path):
    """A running threekit-sandbox (see threekit_pipeline.sandbox.threekit_process)."""
    from threekit_pipeline.sandbox.threekit_process import ThreekitSandboxProcess

    proc = ThreekitSandboxProcess(data_dir=tmp_path / "threekit", token=SANDBOX_TOKEN, org_id=SANDBOX_ORG)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def ftp_sandbox(tmp_path):
    """A running ftp-sandbox (plain FTP, MLSD available)."""
    from threekit_pipeline.sandbox.ftp_process import FtpSandboxProcess

    proc = FtpSandboxProcess(root=tmp_path / "ftproot", user=FTP_USER, password=FTP_PASSWORD)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
