"""Threekit misbehaving during a catalog import: 429 storms, 500s, dropped connections, latency, restarts.

Each DAG test runs the real ``threekit_catalog_import`` DAG (``dag.test()``) against a Threekit
sandbox with faults switched on, then checks one of the two acceptable outcomes: the run
completed with every product in Threekit exactly once (no second item for any SKU) and every
file archived once, or it failed leaving every source file in the inbound folder. Then it
re-runs and checks convergence: same catalog, files archived exactly once, no duplicates.
Every test also checks that the faults really were injected (from the sandbox's request log),
so a sandbox that silently stopped injecting them fails the test instead of passing it.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _robustness import (
    IMPORT_ROUTE,
    INBOUND,
    catalog_batch,
    catalog_names,
    expected_names,
    ftp_files,
    injected_faults,
    load_dag,
    request_count,
    run_dag,
    running_stack,
    set_connection_extras,
    snapshot_items,
    temp_uploads,
    upload_batch,
    wait_until,
)
from threekit_pipeline.devtools.stack import LocalStack
from threekit_pipeline.threekit.client import ThreekitClient
from threekit_pipeline.threekit.importer import import_jsonl

DAG_ID = "threekit_catalog_import"
PRODUCTS = 200
# 200 products in chunks of 50: four import jobs, each a POST, polls, the runs and the result file.
VARIABLE = {"batch_size": 50, "import_concurrency": 2, "sensor_timeout_seconds": 4, "job_deadline_seconds": 60}
# What a production connection would allow: enough retries to ride out a storm, bounded in time.
PATIENT_CLIENT = {"max_retries": 10, "max_retry_time": 60}

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]


def _at(hour: int) -> datetime:
    return datetime(2026, 11, 23, hour, tzinfo=UTC)


@pytest.fixture
def dag():
    dag = load_dag(DAG_ID, retry_delay_s=0.2)
    for task in dag.tasks:
        task.retries = 1
    return dag


def _report(stack: LocalStack, run_date: datetime) -> dict:
    folder = Path(stack.ftp.root) / "reports" / "catalog_import"
    reports = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    matching = [r for r in reports if r["logical_date"] == run_date.isoformat()]
    assert len(matching) == 1, [r["logical_date"] for r in reports]
    return matching[0]


def _assert_imported_once(stack: LocalStack, files: dict, names: list[str]) -> None:
    """Every product exactly once, every file archived exactly once, nothing left behind."""
    assert catalog_names(stack) == expected_names(files)
    assert ftp_files(stack, INBOUND) == {}
    assert sorted(ftp_files(stack, "/archive/catalog")) == [f"2026/11/23/{name}" for name in names]
    assert temp_uploads(stack) == []


def _assert_rerun_converges(stack: LocalStack, dag, files: dict, names: list[str], run_date: datetime) -> None:
    """The ERP sends the same batch again: nothing is imported again, nothing archived twice."""
    items_before = snapshot_items(stack)
    archive_before = ftp_files(stack, "/archive/catalog")
    imports_before = request_count(stack, IMPORT_ROUTE)
    upload_batch(stack, files)
    state, tasks = run_dag(dag, logical_date=run_date)
    assert state == "success", tasks
    assert tasks["import_chunk"] == ["skipped"]
    assert request_count(stack, IMPORT_ROUTE) == imports_before
    assert snapshot_items(stack) == items_before
    assert ftp_files(stack, "/archive/catalog") == archive_before  # same inodes: nothing moved twice
    assert ftp_files(stack, INBOUND) == {}
    assert _report(stack, run_date)["counts"]["unchanged_skipped"] == PRODUCTS
    _assert_imported_once(stack, files, names)


@pytest.mark.parametrize(
    ("faults", "expected_fault", "minimum"),
    [
        pytest.param({"rate_limit": 2}, "429", 3, id="429-storm-2-per-second"),
        pytest.param({"fail_rate": 0.1, "seed": 11}, "500", 1, id="10-percent-500s"),
        pytest.param({"drop_rate": 0.1, "seed": 5}, "dropped", 1, id="10-percent-dropped-connections"),
    ],
)
def test_import_rides_out_transient_faults(tmp_path, dag, faults, expected_fault, minimum):
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        set_connection_extras(threekit=PATIENT_CLIENT)
        files = catalog_batch(tmp_path, "20261123", products=PRODUCTS, seed=3)
        names = upload_batch(stack, files)
        stack.threekit.set_faults(**faults)

        state, tasks = run_dag(dag, logical_date=_at(10))

        injected = injected_faults(stack)
        assert injected[expected_fault] >= minimum, f"the sandbox injected too few faults: {dict(injected)}"
        assert state == "success", tasks
        assert tasks["import_chunk"] == ["success"] * 4
        _assert_imported_once(stack, files, names)
        report = _report(stack, _at(10))
        assert report["status"] == "success"
        assert report["counts"]["created"] + report["counts"]["updated"] + report["counts"]["imported"] >= PRODUCTS

        # Faults stay on for the re-run: it sends nothing, so it must not be disturbed by them.
        _assert_rerun_converges(stack, dag, files, names, _at(11))


def test_latency_beyond_the_client_timeout_fails_cleanly_then_converges(tmp_path, dag):
    """1 s answers against a 0.25 s read timeout: every call times out, the run fails with every
    file in place; the re-run with a 4 s timeout imports every product once.

    The read timeout counts from the client's wait on the socket, not from the request: on a
    loaded machine a client held off the CPU for longer than latency - timeout finds the answer
    already there. The margin (0.75 s) keeps that from turning a timeout into an answer."""
    with running_stack(tmp_path / "stack", {**VARIABLE, "batch_size": 100}) as stack:
        set_connection_extras(threekit={"timeout": 0.25, "max_retries": 1, "max_retry_time": 2})
        files = catalog_batch(tmp_path, "20261123", products=PRODUCTS, seed=4)
        names = upload_batch(stack, files)
        stack.threekit.set_faults(latency_ms=1000)

        state, tasks = run_dag(dag, logical_date=_at(10))

        assert state == "failed", tasks
        # The run's first Threekit call is the pricebook listing (transform_and_plan): it times
        # out, so there is no import plan, nothing is sent and the run fails.
        assert tasks["transform_and_plan"] == ["failed"]
        assert tasks["import_chunk"] == ["upstream_failed"]
        assert tasks["finalize"] == ["failed"]
        assert sorted(ftp_files(stack, INBOUND)) == names  # every source file still waiting
        assert ftp_files(stack, "/archive") == {}
        assert ftp_files(stack, "/rejected") == {}
        assert stack.threekit.stats()["requests"].get("POST /api/products/import", 0) == 0
        snapshot_items(stack)

        # Latency stays; a timeout that allows it lets the import through.
        set_connection_extras(threekit={"timeout": 4.0, "max_retries": 6, "max_retry_time": 60})
        state, tasks = run_dag(dag, logical_date=_at(11))

        assert state == "success", tasks
        _assert_imported_once(stack, files, names)
        assert _report(stack, _at(11))["status"] == "success"


def _entries_jsonl(path: Path, count: int) -> Path:
    lines = []
    for number in range(count):
        sku = f"RESTART-{number:04d}"
        metadata = [{"name": "SKU", "defaultValue": sku, "type": "String"}]
        lines.append(
            json.dumps(
                {
                    "query": {"metadata": metadata},
                    "product": {"type": "item", "name": f"Restart chair {number}", "metadata": metadata},
                }
            )
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_importer_polling_survives_a_sandbox_restart_while_the_job_is_pending(tmp_path):
    """The Threekit sandbox restarts while an import job is queued: the job survives (it is stored),
    the importer's polling rides out the refused connections and reads the job's result."""
    with LocalStack(tmp_path / "stack", threekit_faults={"job_delay_ms": 2500}) as stack:
        jsonl = _entries_jsonl(tmp_path / "entries.jsonl", 60)
        outcome = tmp_path / "entries.outcome.jsonl"
        restarted = threading.Event()
        stop = threading.Event()

        def restart_while_pending() -> None:
            if wait_until(lambda: stop.is_set() or stack.threekit.stats()["jobsByStatus"].get("pending"), 20):
                # Let the answer to the POST reach the importer first: the job is due only after 2.5 s.
                time.sleep(0.3)
                if not stop.is_set():
                    stack.threekit.restart()
                    restarted.set()

        watcher = threading.Thread(target=restart_while_pending, daemon=True)
        watcher.start()
        client = ThreekitClient(
            stack.threekit.base_url, stack.threekit.token, stack.org_id, timeout=(2, 10), max_retry_time=30
        )
        try:
            with client:
                summary = import_jsonl(client, jsonl, outcome, batch_size=60, mode="job", poll_interval=0.2)
        finally:
            stop.set()
            watcher.join()

        assert restarted.is_set(), "the sandbox was not restarted while the job was pending"
        assert (summary.created, summary.rejected) == (60, 0)
        assert stack.threekit.stats()["jobs"] == 1  # the restart did not make the importer start another job
        items = snapshot_items(stack)
        assert sorted(items) == [f"RESTART-{n:04d}" for n in range(60)]

        # Re-running the same import resumes from its outcome file: nothing is sent again.
        imports = request_count(stack, IMPORT_ROUTE)
        with ThreekitClient(stack.threekit.base_url, stack.threekit.token, stack.org_id) as client:
            again = import_jsonl(client, jsonl, outcome, batch_size=60, mode="job", poll_interval=0.2)
        assert (again.skipped, again.created, again.updated) == (60, 0, 0)
        assert request_count(stack, IMPORT_ROUTE) == imports
        assert snapshot_items(stack) == items
