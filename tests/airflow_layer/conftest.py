"""Fixtures of the Airflow-layer tests: connections pointing at the sandboxes, and a DAG runner.

``run_dag`` writes a DAG file to a temporary folder, registers it in the metadata DB (as
the DAG processor would) and runs it with ``dag.test()``: every task goes through Airflow's
real task runner, including XCom pushes, deferral (triggers run inline) and extra-link
evaluation.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def threekit_conn(threekit_sandbox, monkeypatch):
    """``threekit_default`` (JSON form) pointing at the Threekit sandbox."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_THREEKIT_DEFAULT",
        json.dumps(
            {
                "conn_type": "threekit",
                "host": threekit_sandbox.base_url,
                "password": threekit_sandbox.token,
                "extra": {"org_id": threekit_sandbox.org_id, "max_retries": 2},
            }
        ),
    )
    return threekit_sandbox


def _ftp_conn_json(server, **extra: Any) -> str:
    """``AIRFLOW_CONN_*`` JSON for an FTP sandbox."""
    return json.dumps(
        {
            "conn_type": "ftp",
            "host": server.host,
            "port": server.port,
            "login": server.user,
            "password": server.password,
            "extra": {"connect_timeout": 5, "data_timeout": 10, "retries": 1, **extra},
        }
    )


@pytest.fixture
def ftp_conn_json():
    """``ftp_conn_json(server, **extra) -> str``: ``AIRFLOW_CONN_*`` JSON for an FTP sandbox."""
    return _ftp_conn_json


@pytest.fixture
def ftp_conn(ftp_sandbox, monkeypatch):
    """``ftp_default`` (JSON form) pointing at the FTP sandbox."""
    monkeypatch.setenv("AIRFLOW_CONN_FTP_DEFAULT", _ftp_conn_json(ftp_sandbox))
    return ftp_sandbox


@dataclass
class DagRunResult:
    """What a ``dag.test()`` run left behind: run state, task states and XComs by task."""

    state: str
    task_states: dict[str, str]
    xcoms: dict[str, dict[str, Any]] = field(default_factory=dict)


TEST_BUNDLE = "airflow-layer-tests"


@pytest.fixture
def run_dag(airflow_db, tmp_path, monkeypatch):
    """``run_dag(body, **format_args) -> DagRunResult``; ``body`` defines the tasks of DAG ``dag``.

    The DAG files live in a bundle of their own (next to the regular dags folder), so
    ``dag.test()`` re-parses only them, not the project's DAGs.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    folder = tmp_path / "dag_bundle"
    folder.mkdir()
    local_bundle = "airflow.dag_processing.bundles.local.LocalDagBundle"
    monkeypatch.setenv(
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
        json.dumps(
            [
                {"name": "dags-folder", "classpath": local_bundle, "kwargs": {}},
                {"name": TEST_BUNDLE, "classpath": local_bundle, "kwargs": {"path": str(folder)}},
            ]
        ),
    )

    def run(body: str, **format_args: Any) -> DagRunResult:
        dag_id = f"airflow_layer_{uuid.uuid4().hex[:10]}"
        source = (
            "import pendulum\n"
            "from airflow.sdk import DAG\n\n"
            f"with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False) as dag:\n"
            + textwrap.indent(textwrap.dedent(body).format(**format_args).strip() + "\n", "    ")
        )
        path = folder / f"{dag_id}.py"
        path.write_text(source)
        bag = BundleDagBag(dag_folder=str(path), bundle_path=Path(folder), bundle_name=TEST_BUNDLE)
        assert not bag.import_errors, bag.import_errors
        DagBundlesManager().sync_bundles_to_db()
        sync_bag_to_db(bag, TEST_BUNDLE, None)
        dagrun = bag.dags[dag_id].test()
        with create_session() as session:
            tis = session.query(TaskInstance).filter(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == dagrun.run_id
            )
            states = {ti.task_id: _value(ti.state) for ti in tis}
            xcoms: dict[str, dict[str, Any]] = {}
            for row in session.query(XComModel).filter(
                XComModel.dag_id == dag_id, XComModel.run_id == dagrun.run_id
            ):
                xcoms.setdefault(row.task_id, {})[row.key] = XComModel.deserialize_value(row)
        return DagRunResult(state=_value(dagrun.state), task_states=states, xcoms=xcoms)

    return run


def _value(state: Any) -> str | None:
    return None if state is None else str(getattr(state, "value", state))
