"""A real Airflow deployment for tests that need the scheduler: LocalExecutor on PostgreSQL.

:class:`LocalAirflow` runs ``airflow api-server``, ``scheduler`` and ``dag-processor`` as
subprocesses (each in its own process group, stopped with it) sharing one ``AIRFLOW_HOME``
in tmp and a dedicated PostgreSQL database on loopback (recreated per deployment). SQLite
works with the LocalExecutor too, but on a loaded machine the scheduler and the
``airflow backfill create`` command then fail each other with "database is locked". Components see only this deployment's
settings (:func:`clean_environment`) plus ``extra_env`` (a :class:`LocalStack`'s connections,
Variable and staging dir). Built from the pieces of :mod:`threekit_pipeline.devtools.cluster`.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from threekit_pipeline.devtools.cluster import (
    DEFAULT_POSTGRES_ADMIN_DSN,
    AirflowRestClient,
    ClusterError,
    ManagedProcess,
    _database_url,
    airflow_argv,
    clean_environment,
    drop_postgres_database,
    reset_postgres_database,
)
from threekit_pipeline.devtools.stack import free_port

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("api-server", "scheduler", "dag-processor")


class LocalAirflow:
    """api-server + scheduler + dag-processor with the LocalExecutor and SQLite under ``work_dir``.

    ``parallelism`` bounds the task processes the scheduler's LocalExecutor runs at once.
    Use as a context manager; :attr:`client` is a logged-in REST client (every user is admin).
    """

    def __init__(self, work_dir: Path, *, extra_env: Mapping[str, str] | None = None, parallelism: int = 2) -> None:
        self.work_dir = Path(work_dir).resolve()
        self.airflow_home = self.work_dir / "airflow_home"
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        # One database per pytest-xdist worker process: neither parallel workers nor two
        # suites running at once on one machine share one.
        self.database = f"threekit_pipeline_local_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"
        env = clean_environment()
        env.update(
            {
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _database_url(
                    DEFAULT_POSTGRES_ADMIN_DSN, self.database, "postgresql+psycopg2"
                ),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(parallelism),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                # Paused DAGs get no scheduled runs of their own; backfill runs still execute.
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
                # Quick turns: the scheduler loop and the DAG processor's file scan.
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            }
        )
        env.update(extra_env or {})
        self.env = env
        self.processes: dict[str, ManagedProcess] = {}
        self.client = AirflowRestClient(self.api_url)

    def __enter__(self) -> LocalAirflow:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run an ``airflow`` CLI command against this deployment; fails with its output on error."""
        result = subprocess.run(
            airflow_argv(*args), env=self.env, cwd=self.work_dir, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise ClusterError(f"airflow {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def start(self, timeout: float = 180.0) -> None:
        """Recreate and migrate the DB, start the components, wait for the API and a healthy scheduler."""
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        reset_postgres_database(DEFAULT_POSTGRES_ADMIN_DSN, self.database)
        try:
            self.airflow("db", "migrate")
            for name in COMPONENTS:
                process = ManagedProcess(
                    name, airflow_argv(name), self.env, self.work_dir / "logs" / f"{name}.log", self.work_dir
                )
                self.processes[name] = process
                process.start()
            deadline = time.monotonic() + timeout
            api = self.processes["api-server"]
            self.client.wait_until_up(timeout, is_alive=api.is_running)
            self.client.login()
            self.client.wait_until_healthy(
                ("scheduler", "dag_processor"), max(1.0, deadline - time.monotonic()), is_alive=self.alive
            )
        except BaseException:
            self.stop()
            raise

    def alive(self) -> bool:
        return all(process.is_running() for process in self.processes.values())

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every component's process group at once, then wait (SIGKILL what is left)."""
        for process in self.processes.values():
            process.terminate()
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            process.wait_or_kill(max(0.0, deadline - time.monotonic()))
        self.processes = {}
        drop_postgres_database(DEFAULT_POSTGRES_ADMIN_DSN, self.database)

    def logs(self, lines: int = 40) -> str:
        """The tail of every component's output (for failure messages)."""
        return "\n".join(f"===== {n} =====\n{p.log_tail(lines)}" for n, p in self.processes.items())
