"""threekit_catalog_import end to end: ``dag.test()`` against real FTP and Threekit sandboxes.

Every test starts its own LocalStack (both sandboxes on free loopback ports, own data dirs),
so tests are independent. Catalogs are small (30 products, 3 import chunks of 10) and the
sensor timings tiny.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _dag_runs import ftp_files, load_dag, put_ftp_file, request_count, run_dag, running_stack
from threekit_pipeline.samples.catalog import generate_catalog, rewrite_rows

DAG_ID = "threekit_catalog_import"
IMPORT_ROUTE = "POST /api/products/import"
INBOUND = "/inbound/catalog"
VARIABLE = {"batch_size": 10, "import_concurrency": 2, "sensor_timeout_seconds": 3}

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]


def _at(hour: int, day: int = 23) -> datetime:
    """Distinct logical dates give distinct runs (and run ids, hence report names)."""
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def _catalog(tmp_path: Path, stamp: str, seed: int = 0, products: int = 30) -> dict[str, Path]:
    return generate_catalog(
        tmp_path / f"gen_{stamp}_{seed}",
        products=products,
        stamp=stamp,
        seed=seed,
        options_per_product=2,
        prices_per_product=1,
        locales=(),
    )


def _upload(stack, files: dict[str, Path]) -> list[str]:
    for path in files.values():
        put_ftp_file(stack, f"{INBOUND}/{path.name}", path.read_bytes())
    return sorted(path.name for path in files.values())


def _names_by_sku(path: Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["sku"]: row["name"] for row in csv.DictReader(handle)}


def _items(stack) -> dict[str, list[dict]]:
    """Threekit items grouped by their SKU metadata."""
    found: dict[str, list[dict]] = {}
    for item in stack.threekit.items():
        metadata = item.get("metadata") or {}
        found.setdefault(metadata.get("SKU"), []).append(item)
    return found


def _item_names(stack) -> dict[str, str]:
    items = _items(stack)
    assert all(len(copies) == 1 for copies in items.values()), "an SKU exists more than once"
    return {sku: copies[0]["name"] for sku, copies in items.items()}


def _catalog_state(stack) -> dict[str, dict]:
    """What Threekit holds per SKU, without bookkeeping fields (ids, timestamps)."""
    fields = ("name", "description", "keywords", "tags", "metadata", "attributes")
    return {sku: {f: copies[0].get(f) for f in fields} for sku, copies in _items(stack).items()}


def _catalog_asset_events() -> int:
    """How many catalog Asset events this DAG has emitted (in this worker's metadata DB)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from threekit_pipeline.pipelines.assets import THREEKIT_CATALOG

    with create_session() as session:
        return (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == THREEKIT_CATALOG.uri, AssetEvent.source_dag_id == DAG_ID)
            .count()
        )


def _ledger(stack) -> dict[str, tuple[str, str]]:
    path = Path(stack.staging_dir) / "ledger" / "catalog_import.sqlite"
    if not path.exists():
        return {}
    conn = sqlite3.connect(path)
    try:
        return {key: (digest, run) for key, digest, run in conn.execute("SELECT key, content_hash, run_id FROM entries")}
    finally:
        conn.close()


def _reports(stack) -> list[dict]:
    folder = Path(stack.ftp.root) / "reports" / "catalog_import"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)]


def _report_for(stack, run_date: datetime) -> dict:
    """The report of the run with this logical date."""
    matching = [r for r in _reports(stack) if r["logical_date"] == run_date.isoformat()]
    assert len(matching) == 1, [(r["run_id"], r["logical_date"]) for r in _reports(stack)]
    return matching[0]


def _report_stem(report: dict) -> str:
    return report["run_id"].replace(":", "-").replace("+", "-")


@pytest.fixture
def dag():
    return load_dag(DAG_ID, retry_delay_s=0.2)


def test_golden_path_imports_archives_reports_and_updates_ledger(tmp_path, dag):
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        files = _catalog(tmp_path, "20261123")
        names = _upload(stack, files)
        events_before = _catalog_asset_events()

        state, tasks = run_dag(dag, logical_date=_at(10))

        assert state == "success", tasks
        assert _catalog_asset_events() == events_before + 1
        assert tasks["wait_for_files"] == ["success"]
        assert tasks["import_chunk"] == ["success"] * 3  # 30 products in chunks of 10
        assert tasks["publish_catalog"] == ["success"]
        assert _item_names(stack) == _names_by_sku(files["products"])
        assert ftp_files(stack, INBOUND) == {}
        assert sorted(ftp_files(stack, "/archive/catalog")) == [f"2026/11/23/{n}" for n in names]

        report = _report_for(stack, _at(10))
        assert report["status"] == "success"
        assert report["counts"]["created"] == 30
        assert report["counts"]["to_send"] == 30
        assert {f["file"]: f["status"] for f in report["files"]} == {n: "imported" for n in names}
        assert all(f["destination"].startswith("/archive/catalog/2026/11/23/") for f in report["files"])
        uploaded = ftp_files(stack, "/reports/catalog_import")
        stem = _report_stem(report)
        assert {f"{stem}.json", f"{stem}.csv"} <= set(uploaded)

        ledger = _ledger(stack)
        assert set(ledger) == set(_names_by_sku(files["products"]))
        assert {run for _, run in ledger.values()} == {report["run_id"]}


def test_rerun_sends_nothing_twice_and_duplicates_nothing(tmp_path, dag):
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        files = _catalog(tmp_path, "20261123")
        _upload(stack, files)
        assert run_dag(dag, logical_date=_at(10))[0] == "success"
        imports_after_first = request_count(stack, IMPORT_ROUTE)
        items_after_first = _items(stack)
        ledger_after_first = _ledger(stack)
        archive_after_first = ftp_files(stack, "/archive/catalog")

        # The ERP sends the very same files again.
        _upload(stack, files)
        events_before = _catalog_asset_events()
        state, tasks = run_dag(dag, logical_date=_at(11))
        assert state == "success", tasks
        assert _catalog_asset_events() == events_before  # nothing changed: exports are not triggered
        assert tasks["import_chunk"] == ["skipped"]  # nothing changed: no chunk at all
        assert tasks["publish_catalog"] == ["skipped"]
        assert request_count(stack, IMPORT_ROUTE) == imports_after_first
        assert _items(stack) == items_after_first
        assert _ledger(stack) == ledger_after_first
        # Same name and content: the inbound copies are dropped, the archive is untouched.
        assert ftp_files(stack, INBOUND) == {}
        assert ftp_files(stack, "/archive/catalog") == archive_after_first
        report = _report_for(stack, _at(11))
        assert report["counts"]["unchanged_skipped"] == 30
        assert report["counts"]["to_send"] == 0

        # Clearing and re-running that same run: nothing is waiting any more.
        state, tasks = run_dag(dag, logical_date=_at(11))
        assert state == "success"
        assert tasks["wait_for_files"] == ["skipped"]
        assert tasks["finalize"] == ["skipped"]
        assert request_count(stack, IMPORT_ROUTE) == imports_after_first
        assert ftp_files(stack, "/archive/catalog") == archive_after_first


def test_bad_file_is_quarantined_and_the_others_imported(tmp_path, dag):
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        files = _catalog(tmp_path, "20261123")
        # Line 6 of the products file (header = line 1): a product without a name.
        rewrite_rows(files["products"], lambda number, row: {**row, "name": ""} if number == 6 else row)
        # Every price is text: the prices file is rejected as a whole.
        rewrite_rows(files["prices"], lambda number, row: {**row, "price": "lots"})
        names = _upload(stack, files)

        state, tasks = run_dag(dag, logical_date=_at(10))

        assert state == "success", tasks
        prices_name = files["prices"].name
        rejected = ftp_files(stack, "/rejected/catalog")
        assert set(rejected) == {prices_name, f"{prices_name}.errors.csv"}
        errors = list(csv.DictReader((Path(stack.ftp.root) / "rejected/catalog" / f"{prices_name}.errors.csv").open()))
        assert errors and all(e["file"] == prices_name and e["reason"] for e in errors)
        archived = sorted(ftp_files(stack, "/archive/catalog"))
        assert archived == [f"2026/11/23/{n}" for n in names if n != prices_name]
        assert ftp_files(stack, INBOUND) == {}

        expected = _names_by_sku(files["products"])
        bad_sku = next(sku for sku, name in expected.items() if not name)
        del expected[bad_sku]
        assert _item_names(stack) == expected  # 29 products; the nameless one was not sent

        report = _report_for(stack, _at(10))
        statuses = {f["file"]: f["status"] for f in report["files"]}
        assert statuses[prices_name] == "rejected"
        assert statuses[files["products"].name] == "partially imported"  # the nameless row was rejected
        row = next(r for r in report["rejected"] if r["file"] == files["products"].name)
        assert (str(row["line"]), row["column"]) == ("6", "name")
        stem = _report_stem(report)
        errors_csv = Path(stack.ftp.root) / "reports/catalog_import" / f"{stem}.errors.csv"
        listed = list(csv.DictReader(errors_csv.open()))
        assert any(r["file"] == files["products"].name and r["line"] == "6" for r in listed)
        assert any(r["file"] == prices_name for r in listed)


def _stop_threekit_after_first_chunk(stack, stop: threading.Event) -> threading.Thread:
    """Turns the Threekit sandbox into a 100% failure once the first chunk is in the ledger."""

    def watch() -> None:
        while not stop.is_set():
            try:
                landed = len(_ledger(stack))
            except Exception:  # the ledger is being written (SQLite busy): look again
                landed = 0
            if landed >= 10:
                stack.threekit.set_faults(fail_rate=1.0)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_threekit_outage_mid_import_leaves_files_and_rerun_converges(tmp_path, dag):
    for task in dag.tasks:
        task.retries = 1
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        files = _catalog(tmp_path, "20261123")
        names = _upload(stack, files)
        stop = threading.Event()
        watcher = _stop_threekit_after_first_chunk(stack, stop)
        try:
            state, tasks = run_dag(dag, logical_date=_at(10))
        finally:
            stop.set()
            watcher.join()

        assert state == "failed", tasks
        assert "failed" in tasks["import_chunk"]
        assert tasks["finalize"] == ["failed"]
        assert tasks["publish_catalog"] == ["upstream_failed"]
        # Nothing moved: every source file is still waiting.
        assert sorted(ftp_files(stack, INBOUND)) == names
        assert ftp_files(stack, "/archive/catalog") == {}
        landed = _ledger(stack)
        assert 10 <= len(landed) < 30
        failed_report = _report_for(stack, _at(10))
        assert failed_report["status"] == "failed"

        stack.threekit.set_faults(fail_rate=0.0)
        state, tasks = run_dag(dag, logical_date=_at(11))

        assert state == "success", tasks
        assert _item_names(stack) == _names_by_sku(files["products"])  # every product exactly once
        assert ftp_files(stack, INBOUND) == {}
        assert sorted(ftp_files(stack, "/archive/catalog")) == [f"2026/11/23/{n}" for n in names]
        ledger = _ledger(stack)
        assert len(ledger) == 30
        # What landed before the outage was not sent again.
        assert all(ledger[sku] == landed[sku] for sku in landed)
        report = _report_for(stack, _at(11))
        assert report["counts"]["unchanged_skipped"] == len(landed)
        assert report["counts"]["to_send"] == 30 - len(landed)


def test_file_still_being_uploaded_is_not_picked_up(tmp_path, dag):
    with running_stack(tmp_path / "stack", {**VARIABLE, "stable_seconds": 1.5}) as stack:
        files = _catalog(tmp_path, "20261123")
        full = files["products"].read_bytes()
        lines = full.splitlines(keepends=True)
        for key in ("options", "prices", "parts"):
            put_ftp_file(stack, f"{INBOUND}/{files[key].name}", files[key].read_bytes())
        growing = put_ftp_file(stack, f"{INBOUND}/{files['products'].name}", b"".join(lines[:2]))
        done = threading.Event()

        def keep_uploading() -> None:
            # Appends a row every 0.1 s; the file is complete only at the end.
            with open(growing, "ab") as handle:
                for line in lines[2:]:
                    if done.is_set():
                        return
                    handle.write(line)
                    handle.flush()
                    time.sleep(0.1)
                # Still open by the "uploader": its mtime keeps moving, so it never looks stable,
                # however late the run starts on a loaded machine.
                while not done.wait(0.1):
                    os.utime(growing)

        writer = threading.Thread(target=keep_uploading, daemon=True)
        writer.start()
        try:
            state, tasks = run_dag(dag, logical_date=_at(10))
        finally:
            done.set()
            writer.join()
        # The options/prices/parts files were complete, but their batch was not: nothing imported.
        assert state == "success", tasks
        assert tasks["collect_files"] == ["skipped"]
        assert request_count(stack, IMPORT_ROUTE) == 0
        assert len(ftp_files(stack, INBOUND)) == 4

        growing.write_bytes(full)  # the upload finishes
        state, tasks = run_dag(dag, logical_date=_at(11))
        assert state == "success", tasks
        assert _item_names(stack) == _names_by_sku(files["products"])
        assert ftp_files(stack, INBOUND) == {}


def test_three_day_replay_from_archive_reaches_the_same_state(tmp_path, dag):
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        days = {day: _catalog(tmp_path, f"202611{day}", seed=day) for day in (21, 22, 23)}
        for files in days.values():
            _upload(stack, files)

        # One scheduled-style run processes the three stamped batches, oldest first.
        state, tasks = run_dag(dag, logical_date=_at(10))
        assert state == "success", tasks
        assert _item_names(stack) == _names_by_sku(days[23]["products"])  # the newest batch wins
        final_state = _catalog_state(stack)
        archive = ftp_files(stack, "/archive/catalog")
        assert sorted({path.rsplit("/", 1)[0] for path in archive}) == ["2026/11/21", "2026/11/22", "2026/11/23"]

        # A backfill-like replay, one day per run, takes the files from the archive in order.
        for day in (21, 22, 23):
            conf = {"replay": True, "replay_start": f"2026-11-{day}", "replay_end": f"2026-11-{day + 1}"}
            state, tasks = run_dag(dag, logical_date=_at(12, day=day), conf=conf)
            assert state == "success", tasks
            assert "wait_for_files" not in tasks or tasks["wait_for_files"] == ["skipped"]
            assert _item_names(stack) == _names_by_sku(days[day]["products"])
            report = _report_for(stack, _at(12, day=day))
            assert {f["file"] for f in report["files"]} == {p.name for p in days[day].values()}
            assert {f["destination"] for f in report["files"]} == {
                f"/archive/catalog/2026/11/{day}/{p.name}" for p in days[day].values()
            }

        assert _catalog_state(stack) == final_state
        assert ftp_files(stack, "/archive/catalog") == archive  # replayed files stay, untouched
        assert ftp_files(stack, INBOUND) == {}


def test_dry_run_sends_and_moves_nothing(tmp_path, dag):
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        names = _upload(stack, _catalog(tmp_path, "20261123"))

        state, tasks = run_dag(dag, logical_date=_at(10), conf={"dry_run": True})

        assert state == "success", tasks
        assert tasks["transform_and_plan"] == ["success"]
        assert tasks["import_chunk"] == ["skipped"]
        assert tasks["publish_catalog"] == ["skipped"]
        assert request_count(stack, IMPORT_ROUTE) == 0
        assert stack.threekit.items() == []
        assert sorted(ftp_files(stack, INBOUND)) == names
        assert ftp_files(stack, "/archive") == {}
        assert ftp_files(stack, "/reports") == {}
        assert _ledger(stack) == {}
        local_reports = list(Path(stack.staging_dir).glob(f"{DAG_ID}/*/report/*.json"))
        assert len(local_reports) == 1
        report = json.loads(local_reports[0].read_text())
        assert report["dry_run"] is True
        assert report["counts"]["to_send"] == 30


def test_file_param_processes_only_that_file(tmp_path, dag):
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        day22 = _catalog(tmp_path, "20261122", seed=22)
        day23 = _catalog(tmp_path, "20261123", seed=23)
        _upload(stack, day22)
        _upload(stack, day23)
        chosen = day23["products"].name

        state, tasks = run_dag(dag, logical_date=_at(10), conf={"file": chosen})

        assert state == "success", tasks
        assert "wait_for_files" not in tasks or tasks["wait_for_files"] == ["skipped"]
        assert list(ftp_files(stack, "/archive/catalog")) == [f"2026/11/23/{chosen}"]
        waiting = set(ftp_files(stack, INBOUND))
        assert chosen not in waiting and len(waiting) == 7
        assert _item_names(stack) == _names_by_sku(day23["products"])
