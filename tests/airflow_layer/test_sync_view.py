"""The Threekit sync view's data layer, pages and login requirement (without a running Airflow)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
from threekit_pipeline.airflow.run_state import PartialRun, check_all_accepted
from threekit_pipeline.airflow.sync_view.app import overview_html, run_html, sku_html
from threekit_pipeline.airflow.sync_view.data import ReportStore, mask_secrets, sku_history
from threekit_pipeline.airflow.sync_view.listener import note_text
from threekit_pipeline.pipelines.run_summary import summarize

DAG = "threekit_catalog_import"
RUN = "manual__2026-11-30T10:00:00+00:00"
RUN_DIR_NAME = "manual__2026-11-30T10-00-00-00-00"
REASON = "name is required: the row has no product name, so Threekit cannot create the item (line left out)"


def _write_run(staging: Path) -> Path:
    run_dir = staging / DAG / RUN_DIR_NAME
    (run_dir / "report").mkdir(parents=True)
    (run_dir / "chunks").mkdir()
    report = {
        "dag_id": DAG,
        "run_id": RUN,
        "status": "success",
        "counts": {
            "created": 2,
            "updated": 0,
            "unchanged_skipped": 1,
            "rows_rejected": 1,
            "threekit_rejected": 0,
            "files_rejected": 0,
            "products_distinct": 3,
        },
        "files": [
            {"file": "products_20261130.csv", "status": "imported", "rows_read": 4, "rows_rejected": 1}
        ],
        "rejected": [
            {
                "stage": "transform",
                "file": "products_20261130.csv",
                "line": 3,
                "column": "name",
                "value": "",
                "sku": "LAMP-007",
                "reason": REASON,
            }
        ],
    }
    (run_dir / "report" / f"{RUN_DIR_NAME}.json").write_text(json.dumps(report))
    (run_dir / "report" / f"{RUN_DIR_NAME}.errors.csv").write_text(
        f'stage,file,line,column,value,sku,reason\ntransform,products_20261130.csv,3,name,,LAMP-007,"{REASON}"\n'
    )
    chunk = run_dir / "chunks" / "chunk_0001.jsonl"
    chunk.with_suffix(".hashes.json").write_text(json.dumps({"CHAIR-1": "h1", "DESK-2": "h2"}))
    chunk.with_suffix(".outcome.jsonl").write_text(
        json.dumps({"line": 1, "key": "CHAIR-1", "status": "created", "id": "item-123", "reason": None})
        + "\n"
    )
    plan = {
        "skus_by_file": {"products_20261130.csv": ["CHAIR-1", "DESK-2", "SOFA-3"]},
        "rejected": report["rejected"],
        "chunks": [str(chunk)],
    }
    (run_dir / "plan.json").write_text(json.dumps(plan))
    (run_dir / "sources.csv").write_text(
        "sku,file,line\nCHAIR-1,products_20261130.csv,2\nDESK-2,products_20261130.csv,4\n"
        "SOFA-3,products_20261130.csv,5\n"
    )
    return run_dir


def _write_retirement(staging: Path, run_dir_name: str, run_id: str) -> dict:
    """A retirement report as retire_missing writes it: one SKU deleted, one refused by Threekit."""
    retirement = {
        "source": "erp",
        "snapshot": "full",
        "retire": "delete",
        "run_id": run_id,
        "status": "retired",
        "snapshot_files": ["products_20261201.csv"],
        "retired": [
            {"sku": "OLD-9", "threekit_id": "item-999", "action": "delete", "status": "retired",
             "detail": "deleted (restorable)"},
            {"sku": "OLD-8", "threekit_id": "item-888", "action": "delete", "status": "failed",
             "detail": "HTTP 500"},
        ],
    }
    folder = staging / DAG / run_dir_name / "retire"
    folder.mkdir(parents=True)
    (folder / f"{run_dir_name}.retired.json").write_text(json.dumps(retirement))
    (folder / f"{run_dir_name}.retired.csv").write_text(
        "sku,threekit_id,action,status,detail\nOLD-9,item-999,delete,retired,deleted (restorable)\n"
        "OLD-8,item-888,delete,failed,HTTP 500\n"
    )
    return retirement


def test_report_store_reads_staging_then_ftp_and_never_raises(tmp_path):
    _write_run(tmp_path)
    calls = []

    @contextmanager
    def ftp(conn_id):
        calls.append(1)
        raise ConnectionRefusedError("ftp://user:secret@host down")
        yield

    store = ReportStore(tmp_path, "/reports", ftp)
    assert store.report(DAG, RUN)["counts"]["created"] == 2
    assert store.errors(DAG, RUN)[0]["reason"] == REASON
    assert calls == []  # staging had it
    assert store.report(DAG, "manual__other") is None and calls == [1]  # FTP tried, failure -> None
    assert store.read("not_an_import_dag", RUN, "json") is None
    assert store.remote_path(DAG, RUN, "errors") == f"/reports/catalog_import/{RUN_DIR_NAME}.errors.csv"


def test_sku_history_tells_created_rejected_and_unchanged_with_id_file_and_line(tmp_path):
    _write_run(tmp_path)
    store = ReportStore(tmp_path)
    created = sku_history(store, "CHAIR-1")
    assert [(e.what, e.threekit_id, e.file, e.line, e.run_id) for e in created] == [
        ("created", "item-123", "products_20261130.csv", "2", RUN)
    ]
    rejected = sku_history(store, "LAMP-007")
    assert [(e.what, e.line, e.reason) for e in rejected] == [("rejected", "3", REASON)]
    # Every outcome names the file and line its product came from, not only rejections.
    assert [(e.what, e.file, e.line) for e in sku_history(store, "SOFA-3")] == [
        ("unchanged", "products_20261130.csv", "5")
    ]
    # Sent, but its chunk did not land.
    assert [(e.what, e.line) for e in sku_history(store, "DESK-2")] == [("planned", "4")]
    assert sku_history(store, "NOPE-0") == [] and sku_history(store, " ") == []


def test_retirements_are_counted_per_run_shown_and_found_by_sku(tmp_path):
    _write_run(tmp_path)
    _write_retirement(tmp_path, RUN_DIR_NAME, RUN)
    # A confirm_retire run imports nothing: a retirement report and no plan.
    confirm_run, confirm_dir = "manual__2026-12-02T08:00:00+00:00", "manual__2026-12-02T08-00-00-00-00"
    _write_retirement(tmp_path, confirm_dir, confirm_run)
    store = ReportStore(tmp_path)

    summary = store.summary(DAG, RUN)
    assert summary["retired"] == 1 and summary["created"] == 2  # the failed retirement is not counted
    assert "1 retired" in summary["line"]
    assert store.summary(DAG, confirm_run)["retired"] == 1
    assert store.summary(DAG, "manual__none") is None
    assert store.remote_path(DAG, RUN, "retired") == f"/reports/catalog_import/{RUN_DIR_NAME}.retired.json"
    assert store.read(DAG, RUN, "retired_csv").startswith(b"sku,threekit_id")

    events = sku_history(store, "OLD-9")
    assert {(e.run_id, e.what, e.threekit_id, e.file) for e in events} == {
        (RUN, "retired", "item-999", "products_20261201.csv"),
        (confirm_run, "retired", "item-999", "products_20261201.csv"),
    }
    assert all("retire: delete" in e.reason and "deleted (restorable)" in e.reason for e in events)
    assert [e.what for e in sku_history(store, "OLD-8")] == ["retire failed", "retire failed"]

    page = run_html(DAG, RUN, store.report(DAG, RUN), store.errors(DAG, RUN), store.retirement(DAG, RUN))
    assert "Retired (1)" in page and "item-999" in page and "kind=retired_csv" in page and "1 retired" in page
    overview = overview_html(
        {DAG: [{"run_id": RUN, "state": "success", "summary": summary, "duration_seconds": 1.0, "start_date": "x"}]},
        {},
    )
    row = overview.split(RUN, 2)[-1]
    cells = [c.split("</td>")[0] for c in row.split("<td>")[1:]]
    assert cells[5] == "1", cells  # the "retired" column


def test_pages_show_counts_whole_reasons_and_escape_input(tmp_path):
    _write_run(tmp_path)
    store = ReportStore(tmp_path)
    report = store.report(DAG, RUN)
    page = run_html(DAG, RUN, report, store.errors(DAG, RUN))
    assert "4 products: 2 created, 0 updated, 1 unchanged, 1 rejected (rows 1)" in page
    assert REASON in page and "LAMP-007" in page and "download errors CSV" in page
    summary = summarize(report).to_dict()
    overview = overview_html(
        {
            DAG: [
                {
                    "run_id": RUN,
                    "state": "success",
                    "summary": summary,
                    "duration_seconds": 75.0,
                    "start_date": "x",
                }
            ]
        },
        {"folders": {"inbound_catalog": "/inbound/catalog"}},
    )
    assert "partial success" in overview and "1 min 15 s" in overview and "/inbound/catalog" in overview
    assert "<script>" not in sku_html("<script>alert(1)</script>", [])


def test_configuration_shown_in_the_view_masks_secrets():
    masked = mask_secrets(
        {"ftp_conn_id": "ftp_default", "api_token": "abc", "nested": {"password": "p", "x": 1}}
    )
    assert masked == {"ftp_conn_id": "ftp_default", "api_token": "***", "nested": {"password": "***", "x": 1}}


def test_run_note_and_all_accepted_follow_the_summary():
    partial = summarize(
        {"dag_id": DAG, "counts": {"created": 3, "rows_rejected": 2, "products_distinct": 3}}
    ).to_dict()
    clean = summarize({"dag_id": DAG, "counts": {"created": 3, "products_distinct": 3}}).to_dict()
    assert note_text(partial).startswith("⚠ Partial success: 5 products") and note_text(clean).startswith(
        "✓ All accepted"
    )
    with pytest.raises(PartialRun, match=r"2 rejected \(rows 2\)"):
        check_all_accepted({"summary": partial})
    assert check_all_accepted({"summary": clean}).startswith("3 products")


def test_run_note_leaves_a_run_held_by_no_session_alone_without_an_error(caplog):
    """dag.test() hands the listener a detached run: no note, and no ERROR in the test's log."""
    import logging

    from airflow.models.dagrun import DagRun
    from sqlalchemy.orm import make_transient_to_detached
    from sqlalchemy.orm.exc import DetachedInstanceError
    from threekit_pipeline.airflow.sync_view import listener

    run = DagRun(dag_id=DAG, run_id=RUN, run_type="manual")
    run.id = 7
    make_transient_to_detached(run)
    with pytest.raises(DetachedInstanceError):
        run.note  # noqa: B018 - what the listener used to trip on
    with caplog.at_level(logging.DEBUG, logger=listener.__name__):
        assert listener.set_run_note(run) is None
        listener.on_dag_run_success(run, "")
        listener.on_dag_run_failed(run, "")
    records = [r for r in caplog.records if r.name == listener.__name__]
    assert records and all(r.levelno == logging.DEBUG for r in records), [r.getMessage() for r in records]
    assert "not held by a session" in records[0].getMessage()


def test_every_route_refuses_requests_without_login():
    from fastapi.testclient import TestClient
    from threekit_pipeline.airflow.sync_view.app import create_app

    client = TestClient(create_app())
    for path in (
        "/",
        "/api/runs",
        f"/run?dag_id={DAG}&run_id=x",
        f"/file?dag_id={DAG}&run_id=x&kind=errors",
        "/sku?sku=A",
    ):
        response = client.get(path)
        assert response.status_code == 401, (path, response.status_code)


def test_long_glob_lists_are_counted_not_repeated_in_sensor_logs():
    from threekit_pipeline.airflow.sensors.ftp import patterns_text

    assert patterns_text(["*.csv"]) == "*.csv"
    globs = [f"products_{n}*.csv" for n in range(40)]
    assert patterns_text(globs) == "products_0*.csv, products_1*.csv, products_2*.csv and 37 more patterns"


def test_mapped_chunks_are_labelled_with_their_product_range(tmp_path):
    from threekit_pipeline.airflow.operators.threekit import chunk_label

    chunk = tmp_path / "chunk_0003.jsonl"
    chunk.with_suffix(".hashes.json").write_text(json.dumps({"CHAIR-001": "a", "DESK-005": "b", "LAMP-010": "c"}))
    assert chunk_label(str(chunk)) == "3 products: CHAIR-001 … LAMP-010"
    assert chunk_label(str(tmp_path / "missing.jsonl")) == "missing.jsonl"


PIM_DAG = "threekit_catalog_import__pim"


def test_a_second_catalog_feed_is_read_from_its_own_reports_folder_and_connection(tmp_path):
    from threekit_pipeline.feeds import ImportDag

    _write_run(tmp_path)
    (tmp_path / DAG).rename(tmp_path / PIM_DAG)
    pim = ImportDag(dag_id=PIM_DAG, feed_id="pim", kind="catalog", transfer="pim_sftp",
                    reports_folder="/pim/reports", reports_subdir="catalog_import")
    asked = []

    @contextmanager
    def transfer(conn_id):
        asked.append(conn_id)
        raise ConnectionRefusedError("down")
        yield

    store = ReportStore(tmp_path, "/reports", transfer, dags={PIM_DAG: pim})
    assert store.report(PIM_DAG, RUN)["counts"]["created"] == 2
    assert store.remote_path(PIM_DAG, RUN, "errors") == f"/pim/reports/catalog_import/{RUN_DIR_NAME}.errors.csv"
    assert store.report(PIM_DAG, "manual__other") is None and asked == ["pim_sftp"]
    assert store.read(DAG, RUN, "json") is None  # not an import DAG of this feeds file
    events = sku_history(store, "CHAIR-1")
    assert events and {event.dag_id for event in events} == {PIM_DAG}


def test_the_view_lists_every_import_feed_of_the_feeds_file_in_force(tmp_path, monkeypatch):
    import yaml
    from threekit_pipeline.airflow.sync_view.data import import_dags_in_force

    default = Path(__file__).resolve().parents[2] / "include" / "feeds" / "default.yaml"
    feeds = yaml.safe_load(default.read_text())
    feeds["inbound"].append({"id": "pim", "kind": "catalog", "transfer": "pim_sftp", "folder": "/pim/catalog",
                             "mapping": "sap_de", "schedule": "30 * * * *", "reports": "/pim/reports"})
    path = tmp_path / "feeds.yaml"
    path.write_text(yaml.safe_dump(feeds))
    monkeypatch.setenv("THREEKIT_FEEDS_FILE", str(path))
    dags = import_dags_in_force()
    assert set(dags) >= {DAG, "threekit_translations_import", "threekit_source_assets_import"}
    [pim] = [dag for dag in dags.values() if dag.feed_id == "pim"]
    assert (pim.kind, pim.transfer, pim.reports_folder) == ("catalog", "pim_sftp", "/pim/reports")
    path.write_text("version: 1\ninbound: [{id: broken}]\n")  # invalid: the view keeps the defaults
    assert set(import_dags_in_force()) == {DAG, "threekit_translations_import", "threekit_source_assets_import"}
