"""Run notes for the import DAGs, written by the scheduler when a run ends.

Airflow 3 gives tasks no way to set their run's note, so this listener (registered by
``plugins/threekit_sync.py``) does it where the run's state is decided: when an import run
succeeds or fails, it reads the ``summary`` its reporting task returned (XCom) and sets the note
to ``⚠ Partial success: 2,000 products: ... 5 rejected (rows 3, files 1)`` or
``✓ All accepted: ...``. The run list and the grid's run tooltip show notes, so a partial run is
told apart without opening a log. A note somebody already wrote is never replaced. Any error here
is logged and swallowed: a note must never disturb scheduling.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

#: Import DAG -> the task whose return value carries the run summary.
SUMMARY_TASKS = {
    "threekit_catalog_import": "finalize",
    "threekit_translations_import": "report",
    "threekit_source_assets_import": "report",
}


def note_text(summary: Mapping[str, Any]) -> str:
    mark = "⚠ Partial success" if summary.get("partial") else "✓ All accepted"
    return f"{mark}: {summary.get('line', '')}"


def _summary_of(dag_run: Any, session: Any) -> Mapping[str, Any] | None:
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    row = session.scalars(
        select(XComModel).where(
            XComModel.dag_id == dag_run.dag_id,
            XComModel.run_id == dag_run.run_id,
            XComModel.task_id == SUMMARY_TASKS[dag_run.dag_id],
            XComModel.map_index == -1,
            XComModel.key == "return_value",
        )
    ).first()
    if row is None:
        return None
    value = XComModel.deserialize_value(row)
    summary = value.get("summary") if isinstance(value, Mapping) else None
    return summary if isinstance(summary, Mapping) else None


def set_run_note(dag_run: Any) -> str | None:
    """Set the note of a finished import run from its summary; returns the note (None: left alone).

    The note is written through the session the scheduler holds the run in. A run held by no
    session (``dag.test()`` hands the listener a detached run: its note cannot be read or written
    without a session of its own, next to the test's open one) is left alone, logged at debug.
    """
    from sqlalchemy import inspect
    from sqlalchemy.orm import object_session

    if dag_run.dag_id not in SUMMARY_TASKS:
        return None
    session = object_session(dag_run)
    if session is None or not inspect(dag_run).persistent:
        log.debug("Run %s %s is not held by a session (dag.test?): no note", dag_run.dag_id, dag_run.run_id)
        return None
    if dag_run.note:
        return None
    summary = _summary_of(dag_run, session)
    if summary is None:
        return None
    dag_run.note = note_text(summary)
    return dag_run.note


def _note_finished_run(dag_run) -> None:
    """A listener never fails the run it observes: a note that cannot be set is logged."""
    try:
        set_run_note(dag_run)
    except Exception:
        log.exception("Could not set the run note of %s %s", dag_run.dag_id, dag_run.run_id)


@hookimpl
def on_dag_run_success(dag_run, msg):
    _note_finished_run(dag_run)


@hookimpl
def on_dag_run_failed(dag_run, msg):
    _note_finished_run(dag_run)
