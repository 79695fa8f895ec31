"""Helpers of the idempotency tests: runs with a chosen run id, task environments, FTP upload counts.

Re-exports the fault tests' helpers (``tests/faults/_robustness.py``) and, through them, the
DAG-run helpers of ``tests/pipelines/_dag_runs.py``.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

_TESTS = Path(__file__).resolve().parents[1]
for _folder in ("faults", "pipelines"):
    if str(_TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / _folder))

import _dag_runs  # noqa: E402
from _robustness import (  # noqa: E402, F401 - re-exported for the tests
    FAST_VARIABLE,
    catalog_batch,
    expected_names,
    ftp_files,
    ftp_tree,
    items_by_sku,
    load_dag,
    put_ftp_file,
    request_count,
    run_dag,
    running_stack,
    set_connection_extras,
    set_variable,
    snapshot_items,
    temp_uploads,
    threekit_client,
    upload_batch,
)
from threekit_pipeline.devtools.stack import LocalStack  # noqa: E402

#: Threekit calls that change something: none may happen again when nothing changed.
WRITE_ROUTES = (
    "POST /api/products/import",
    "POST /api/products/translations",
    "POST /api/files",
    "POST /api/asset-jobs/import",
)


def run_dag_as(dag, *, run_after: datetime, logical_date: datetime, conf: dict[str, Any] | None = None):
    """``dag.test()`` with a fixed ``run_after``, hence a fixed run id; returns (state, tasks, run_id).

    Running again with the same arguments replaces the DagRun with a fresh one under the same run
    id, which is what clearing a whole run in the UI amounts to (same staging folder, same report
    name).
    """
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    run_conf = {**_dag_runs._PARAM_DEFAULTS.get(id(dag), {}), **(conf or {})}
    dag_run = dag.test(run_after=run_after, logical_date=logical_date, run_conf=run_conf)
    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag.dag_id, DagRun.run_id == dag_run.run_id).one()
        states: dict[str, list[str]] = {}
        for ti in sorted(run.get_task_instances(session=session), key=lambda t: (t.task_id, t.map_index)):
            states.setdefault(ti.task_id, []).append(str(getattr(ti.state, "value", ti.state)))
        return str(getattr(run.state, "value", run.state)), states, run.run_id


def task_env(dag_id: str, run_id: str):
    """The :class:`TaskEnv` a task of that run sees (run facts from the metadata DB, the Variable from env)."""
    import os

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from threekit_pipeline.devtools.stack import VARIABLE_ENV
    from threekit_pipeline.pipelines.config import load_config
    from threekit_pipeline.pipelines.runtime import TaskEnv

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one()
        return TaskEnv(
            dag_id=dag_id,
            run_id=run_id,
            config=load_config(os.environ[VARIABLE_ENV]),
            run_type=str(getattr(run.run_type, "value", run.run_type)),
            params=dict(run.conf or {}),
            logical_date=run.logical_date,
            data_interval_start=run.data_interval_start,
            data_interval_end=run.data_interval_end,
            run_after=run.run_after,
        )


def write_counts(stack: LocalStack) -> dict[str, int]:
    """How often the Threekit sandbox served each state-changing route."""
    return {route: request_count(stack, route) for route in WRITE_ROUTES}


_UPLOAD = re.compile(r"transfer user=\S+ file=(?P<file>.+?) bytes=\d+ direction=upload .*completed=yes")


def ftp_uploads(stack: LocalStack) -> Counter:
    """Completed uploads per top-level FTP folder (``reports``, ``outbound``...), from the server log.

    Uploads go to a temporary name first, so counting by folder (not by final name) is what tells.
    """
    log_file = Path(stack.logs_dir) / "ftp-sandbox.log"
    root = Path(stack.ftp.root).resolve()
    counts: Counter = Counter()
    if not log_file.exists():
        return counts
    for match in _UPLOAD.finditer(log_file.read_text(errors="replace")):
        path = Path(match.group("file"))
        try:
            relative = path.resolve().relative_to(root)
        except ValueError:
            relative = Path(str(path).lstrip("/"))
        counts[relative.parts[0] if relative.parts else ""] += 1
    return counts


def without_reports(tree: dict[str, Any]) -> dict[str, Any]:
    """An FTP tree (``ftp_tree(stack, "/")``) without the per-run reports."""
    return {path: value for path, value in tree.items() if not path.startswith("reports/")}
