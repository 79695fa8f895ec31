"""Clearing and re-running ``threekit_catalog_import``: each task alone, then the whole run, same run id.

After one successful run, every task is run again in the context of that same run (same run
id, hence the same staging folder and report name), the way "Clear" in the Airflow UI re-runs
a task instance: first each task on its own, then the whole run (``dag.test()`` with the same
``run_after`` replaces the DagRun under the same run id). After every step Threekit holds
the same items, nothing was imported again, the archive holds each file once and untouched
(same inode: not moved or uploaded again), nothing waits in the inbound folder and the report
folder holds the same files.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _idempotency import (
    catalog_batch,
    expected_names,
    ftp_files,
    ftp_tree,
    ftp_uploads,
    load_dag,
    run_dag_as,
    running_stack,
    snapshot_items,
    task_env,
    temp_uploads,
    threekit_client,
    upload_batch,
    write_counts,
)
from threekit_pipeline.ftp.client import FtpClient
from threekit_pipeline.pipelines import catalog_import

DAG_ID = "threekit_catalog_import"
INBOUND = "/inbound/catalog"
VARIABLE = {"batch_size": 10, "import_concurrency": 2, "sensor_timeout_seconds": 3}
LOGICAL = datetime(2026, 11, 23, 10, tzinfo=UTC)
RUN_AFTER = datetime(2026, 11, 23, 10, 5, tzinfo=UTC)
VOLATILE_REPORT_FIELDS = ("started_at", "finished_at")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]


def _report(stack, run_id: str) -> dict:
    """The run's report on FTP (there must be exactly one), without its timestamps."""
    folder = Path(stack.ftp.root) / "reports" / "catalog_import"
    matching = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    matching = [r for r in matching if r["run_id"] == run_id]
    assert len(matching) == 1, [r["run_id"] for r in matching]
    return {k: v for k, v in matching[0].items() if k not in VOLATILE_REPORT_FIELDS}


class _State:
    """What must not change when a task of a finished run is re-run."""

    def __init__(self, stack) -> None:
        self.items = snapshot_items(stack)
        self.writes = write_counts(stack)
        self.archive = ftp_files(stack, "/archive/catalog")  # (size, mtime, inode): moves show
        self.tree = {p: v for p, v in ftp_tree(stack, "/").items() if not p.startswith("reports/")}
        self.report_names = sorted(ftp_files(stack, "/reports"))
        self.uploads = ftp_uploads(stack)

    def assert_unchanged(self, stack, step: str) -> None:
        assert snapshot_items(stack) == self.items, step
        assert write_counts(stack) == self.writes, f"{step}: Threekit received writes again"
        assert ftp_files(stack, "/archive/catalog") == self.archive, f"{step}: archive touched"
        assert {p: v for p, v in ftp_tree(stack, "/").items() if not p.startswith("reports/")} == self.tree, step
        assert sorted(ftp_files(stack, "/reports")) == self.report_names, f"{step}: report copies"
        assert ftp_files(stack, INBOUND) == {}
        assert temp_uploads(stack) == []
        # Only the report may be uploaded again (it is replaced under the same name).
        uploads = ftp_uploads(stack)
        assert {k: v for k, v in uploads.items() if k != "reports"} == {
            k: v for k, v in self.uploads.items() if k != "reports"
        }, f"{step}: files uploaded again"


def test_every_task_and_the_whole_run_can_be_cleared_and_rerun(tmp_path):
    dag = load_dag(DAG_ID, retry_delay_s=0.2)
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        files = catalog_batch(tmp_path, "20261123", products=30, seed=7)
        names = upload_batch(stack, files)

        state, tasks, run_id = run_dag_as(dag, run_after=RUN_AFTER, logical_date=LOGICAL)
        assert state == "success", tasks
        assert tasks["import_chunk"] == ["success"] * 3
        assert {sku: item["name"] for sku, item in snapshot_items(stack).items()} == expected_names(files)
        assert sorted(ftp_files(stack, "/archive/catalog")) == [f"2026/11/23/{n}" for n in names]
        before = _State(stack)
        first_report = _report(stack, run_id)

        env = task_env(DAG_ID, run_id)
        assert env.run_dir() == Path(stack.staging_dir) / DAG_ID / env.run_name
        collected = json.loads((env.run_dir() / catalog_import.COLLECTED_FILE).read_text())
        plan = json.loads((env.run_dir() / catalog_import.PLAN_FILE).read_text())
        # What the sensor handed to collect_files in the run: the batch's files in the inbound folder.
        sensor_output = [[{k: f[k] for k in ("path", "name", "size")} for f in collected["files"]]]

        # plan_run: the same sensor arguments.
        assert catalog_import.plan_run(env)[0]["path"] == INBOUND
        before.assert_unchanged(stack, "plan_run")

        # Each import_chunk: resumes from its outcome file, sends nothing.
        for chunk in plan["chunks"]:
            with threekit_client(stack) as client:
                result = catalog_import.import_chunk(env, chunk, client)
            # Every entry resumed; they still count as created (by this run's first attempt).
            assert (result["skipped"], result["created"], result["confirmed"]) == (10, 10, 10)
            before.assert_unchanged(stack, f"import_chunk {Path(chunk).name}")

        # finalize: the files are already archived; the same report is uploaded again in place.
        with FtpClient(stack.ftp.settings()) as ftp:
            result = catalog_import.finalize(env, ftp)
        assert result["status"] == "success"
        assert catalog_import.should_publish(result)  # publish_catalog would emit the same event
        before.assert_unchanged(stack, "finalize")
        # The same report, except that it now also says the chunks were resumed by a second attempt.
        report = _report(stack, run_id)
        assert report["counts"].pop("resumed") == 30 and first_report["counts"].pop("resumed") == 0
        assert [c.pop("skipped") for c in report["chunks"]] == [10, 10, 10]
        assert [c.pop("skipped") for c in first_report["chunks"]] == [0, 0, 0]
        assert report == first_report

        # transform_and_plan: everything is in the ledger now, so nothing is left to send...
        with threekit_client(stack) as client:  # as the DAG's task: the org's pricebooks, read once
            planned = catalog_import.transform_and_plan(
                env, {"collected": str(env.run_dir() / "collected.json")}, pricebooks=client.list_pricebooks()
            )
        assert planned["chunks"] == [] and planned["unchanged_skipped"] == 30 and planned["to_send"] == 0
        before.assert_unchanged(stack, "transform_and_plan")
        # ...and finalize after it moves nothing; the report now says what this attempt did.
        with FtpClient(stack.ftp.settings()) as ftp:
            result = catalog_import.finalize(env, ftp)
        assert result["status"] == "success" and result["changed"] == 0
        assert not catalog_import.should_publish(result)
        before.assert_unchanged(stack, "finalize after transform_and_plan")
        report = _report(stack, run_id)
        assert report["counts"]["unchanged_skipped"] == 30
        assert {f["file"]: f["destination"] for f in report["files"]} == {
            f["file"]: f["destination"] for f in first_report["files"]
        }

        # collect_files: the sensor's files were archived meanwhile; nothing is collected, and the
        # finalize that follows (trigger rule all_done) skips instead of failing.
        with FtpClient(stack.ftp.settings()) as ftp:
            with pytest.raises(catalog_import.NothingToProcess):
                catalog_import.collect_files(env, sensor_output, ftp)
            with pytest.raises(catalog_import.NothingToProcess):
                catalog_import.finalize(env, ftp)
        before.assert_unchanged(stack, "collect_files")

        # The whole run cleared and re-run under the same run id: nothing waits, everything skips.
        state, tasks, again = run_dag_as(dag, run_after=RUN_AFTER, logical_date=LOGICAL)
        assert again == run_id
        assert state == "success", tasks
        assert tasks["wait_for_files"] == ["skipped"]
        assert tasks["finalize"] == ["skipped"] and tasks["publish_catalog"] == ["skipped"]
        before.assert_unchanged(stack, "whole run")
        assert sorted(ftp_files(stack, "/archive/catalog")) == [f"2026/11/23/{n}" for n in names]
