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
