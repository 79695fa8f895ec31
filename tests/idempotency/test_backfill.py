"""``airflow backfill create`` of ``threekit_catalog_import`` on a real scheduler, twice.

A LocalExecutor deployment (api-server, scheduler, dag-processor; a PostgreSQL metadata DB of its own,
parallelism 2) runs against the sandboxes. History to onboard: three catalog batches with the
same SKUs and changing content, stamped 02:00, 03:00 and 04:00 on 2026-11-01; the oldest is
already in the archive, the other two wait in the inbound folder, next to a later batch outside
the window. The backfill over 02:00-04:00 (three hourly runs, ``--max-active-runs 1`` so the
batches apply in stamp order) must leave Threekit holding the newest batch, every batch of the
window archived once and the later batch untouched. Backfilling again with
``--reprocess-behavior completed`` re-runs the three runs (replaying from the archive) and must
end in exactly the same items and the same FTP files.

Window: the DAG is hourly and each backfill run costs the scheduler roughly 10-15 s of task
processes on two cores, so a day (24 runs) per backfill would take minutes; three hours keep
both backfills (six runs) and the deployment's start within the test's budget. The daily DAGs
are exports, which document backfill as not meaningful (a snapshot of Threekit now).

The sensor runs in marker mode (``marker_suffixes``): historical files carry no ``.done``
marker, so the scheduled runs the scheduler starts once the DAG is unpaused (backfill runs of a
paused DAG are not executed) never pick them up; only the backfill's interval replays do.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _idempotency import (
    catalog_batch,
    expected_names,
    ftp_files,
    ftp_tree,
    put_ftp_file,
    snapshot_items,
    temp_uploads,
)
from _local_airflow import LocalAirflow
from threekit_pipeline.devtools.cluster import ClusterError
from threekit_pipeline.devtools.stack import LocalStack

DAG_ID = "threekit_catalog_import"
ARCHIVE_DAY = "/archive/catalog/2026/11/01"
INBOUND = "/inbound/catalog"
VARIABLE = {
    "batch_size": 50,
    "marker_suffixes": [".done"],
    "poke_interval_seconds": 0.5,
    "stable_seconds": 1,
    "sensor_timeout_seconds": 3,
}
FROM, TO = "2026-11-01T02:00:00+00:00", "2026-11-01T04:00:00+00:00"
RUN_IDS = [f"backfill__2026-11-01T{hour:02d}:00:00+00:00" for hour in (3, 4, 5)]  # named by interval end

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]


def _place(stack: LocalStack, folder: str, files: dict[str, Path]) -> list[str]:
    for path in files.values():
        put_ftp_file(stack, f"{folder}/{path.name}", path.read_bytes())
    return sorted(path.name for path in files.values())


def _backfill(airflow: LocalAirflow, timeout: float = 240.0) -> list[dict]:
    """Create the backfill, wait until the scheduler completed it; returns its runs."""
    before = {b["id"] for b in airflow.client.request("GET", "/backfills", params={"dag_id": DAG_ID})["backfills"]}
    airflow.airflow(
        "backfill", "create", "--dag-id", DAG_ID, "--from-date", FROM, "--to-date", TO,
        "--reprocess-behavior", "completed", "--max-active-runs", "1",
    )  # fmt: skip
    backfills = airflow.client.request("GET", "/backfills", params={"dag_id": DAG_ID})["backfills"]
    (backfill,) = [b for b in backfills if b["id"] not in before]
    deadline = time.monotonic() + timeout
    while True:
        current = airflow.client.request("GET", f"/backfills/{backfill['id']}")
        runs = [r for r in airflow.client.dag_runs(DAG_ID) if r["run_type"] == "backfill"]
        if current.get("completed_at") and all(r["state"] in ("success", "failed") for r in runs):
            return sorted(runs, key=lambda r: r["dag_run_id"])
        if not airflow.alive():
            raise ClusterError(f"an Airflow component exited during the backfill\n{airflow.logs()}")
        if time.monotonic() > deadline:
            states = {r["dag_run_id"]: r["state"] for r in runs}
            raise ClusterError(f"backfill {backfill['id']} not complete after {timeout:.0f}s: {states}\n{airflow.logs()}")
        time.sleep(1)


@pytest.mark.timeout(600)
def test_backfill_twice_with_reprocessing_converges(tmp_path):
    with LocalStack(tmp_path / "stack") as stack:
        batches = {
            hour: catalog_batch(tmp_path, f"20261101_{hour:02d}0000", products=20, seed=hour) for hour in (2, 3, 4)
        }
        later = catalog_batch(tmp_path, "20261101_070000", products=20, seed=7)
        window_names = _place(stack, ARCHIVE_DAY, batches[2])
        window_names += _place(stack, INBOUND, batches[3]) + _place(stack, INBOUND, batches[4])
        later_names = _place(stack, INBOUND, later)
        originals = {p.name: p.read_bytes() for files in (*batches.values(), later) for p in files.values()}

        with LocalAirflow(tmp_path / "airflow", extra_env=stack.airflow_env(VARIABLE), parallelism=2) as airflow:
            airflow.client.wait_for_dags([DAG_ID], timeout=120)
            airflow.client.unpause(DAG_ID)

            runs = _backfill(airflow)

            assert [(r["dag_run_id"], r["state"]) for r in runs] == [(run_id, "success") for run_id in RUN_IDS], (
                "\n".join(airflow.client.describe_run(DAG_ID, r["dag_run_id"]) for r in runs if r["state"] != "success")
            )
            items = snapshot_items(stack)
            assert {sku: item["name"] for sku, item in items.items()} == expected_names(batches[4])
            tree = ftp_tree(stack, "/")
            archive = ftp_files(stack, "/archive")
            assert sorted(ftp_files(stack, INBOUND)) == later_names  # outside the window: untouched
            assert sorted(ftp_files(stack, ARCHIVE_DAY)) == sorted(window_names)  # each file once
            assert sorted(archive) == sorted(f"catalog/2026/11/01/{name}" for name in window_names)
            for name in window_names:
                assert tree[f"archive/catalog/2026/11/01/{name}"][0] == len(originals[name])
            for name in later_names:
                assert (Path(stack.ftp.root) / INBOUND.strip("/") / name).read_bytes() == originals[name]
            assert ftp_files(stack, "/rejected") == {} and temp_uploads(stack) == []
            report_files = ftp_files(stack, "/reports/catalog_import")
            reports = sorted(report_files)
            stems = [run_id.replace(":", "-").replace("+", "-") for run_id in RUN_IDS]
            assert reports == sorted(f"{stem}.{ext}" for stem in stems for ext in ("csv", "json"))

            # The same backfill again, reprocessing the completed runs: same end state.
            runs = _backfill(airflow)

            assert [(r["dag_run_id"], r["state"]) for r in runs] == [(run_id, "success") for run_id in RUN_IDS]
            assert snapshot_items(stack) == items  # same items, same ids: nothing duplicated
            assert {p: v for p, v in ftp_tree(stack, "/").items() if not p.startswith("reports/")} == {
                p: v for p, v in tree.items() if not p.startswith("reports/")
            }
            assert ftp_files(stack, "/archive") == archive  # same inodes: replayed in place, never moved
            again = ftp_files(stack, "/reports/catalog_import")
            assert sorted(again) == reports  # replaced, not added
            # Every run really ran again: each report was uploaded anew (new inode).
            assert all(again[name][2] != report_files[name][2] for name in reports)
            assert temp_uploads(stack) == []
