"""Retiring discontinued products, against the Threekit and FTP sandboxes (no scheduler).

Each catalog run is the DAG's task sequence called directly: transform_and_plan ->
restore_returning -> import_chunk (each chunk) -> retire_missing.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest
from threekit_pipeline.ftp.client import FtpClient
from threekit_pipeline.pipelines import catalog_import, retire
from threekit_pipeline.pipelines.config import load_config
from threekit_pipeline.pipelines.ledger import Ledger, ledger_path
from threekit_pipeline.pipelines.runtime import TaskEnv
from threekit_pipeline.samples.catalog import generate_catalog
from threekit_pipeline.threekit.client import ThreekitClient

LIFECYCLE = {"snapshot": "full", "retire": "delete"}


def _env(tmp_path: Path, run: int, lifecycle=None, **params) -> TaskEnv:
    config = load_config(
        {"staging_dir": str(tmp_path / "staging"), "batch_size": 500, "catalog_lifecycle": lifecycle or LIFECYCLE}
    )
    return TaskEnv(
        dag_id=catalog_import.DAG_ID,
        run_id=f"manual__2026-11-2{run}T10:00:00+00:00",
        config=config,
        params=params,
        logical_date=datetime(2026, 11, 23, 10, tzinfo=UTC),
    )


def _without(files: dict[str, Path], dropped: set[str], out: Path) -> list[Path]:
    """The batch's CSVs with every row of the ``dropped`` SKUs removed."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source, path in files.items():
        if source in ("translations", "prices"):
            continue
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = [r for r in reader if r["sku"] not in dropped]
            fields = reader.fieldnames
        target = out / path.name
        with open(target, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        written.append(target)
    return written


def _run(env: TaskEnv, files: list[Path], client, ftp=None) -> dict:
    """One catalog run through the task functions; returns retire_missing's summary."""
    planned = catalog_import.transform_and_plan(env, catalog_import.collected_from_local(env, files))
    restored = retire.restore_returning(env, client)
    for chunk in planned["chunks"]:
        catalog_import.import_chunk(env, chunk, client)
    summary = retire.retire_missing(env, client, ftp)
    summary["to_send"] = planned["to_send"]
    summary["restored_before_import"] = restored
    return summary


def _skus(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [row["sku"] for row in csv.DictReader(handle)]


def _live(client: ThreekitClient) -> dict[str, str]:
    """``{SKU: item id}`` of the live catalog items."""
    live = {}
    for item in client.list_assets(type="item"):
        meta = item.get("metadata") or {}
        sku = meta.get("SKU") if isinstance(meta, dict) else None
        if sku:
            live[sku] = item["id"]
    return live


@pytest.fixture
def client(threekit_sandbox):
    with ThreekitClient(threekit_sandbox.base_url, threekit_sandbox.token, threekit_sandbox.org_id) as tk:
        yield tk


def test_full_snapshot_missing_two_of_2000_retires_exactly_those_and_a_rerun_does_nothing(
    tmp_path, client, ftp_sandbox, caplog
):
    files = generate_catalog(tmp_path / "day1", products=2000, options_per_product=1, prices_per_product=1,
                             parts_ratio=0, stamp="20261122", seed=7, locales=())
    all_skus = _skus(files["products"])
    first = _run(_env(tmp_path, 1), _without(files, set(), tmp_path / "full"), client)
    assert first["status"] == "nothing_to_retire" and first["members_recorded"] == 2000
    ids_before = _live(client)
    assert len(ids_before) == 2000

    gone = {all_skus[10], all_skus[1500]}
    second_files = _without(files, gone, tmp_path / "day2")
    caplog.set_level("INFO")
    with FtpClient(ftp_sandbox.settings()) as ftp:
        second = _run(_env(tmp_path, 2), second_files, client, ftp)

    assert second["status"] == "retired" and second["to_send"] == 0
    assert {(r["sku"], r["threekit_id"], r["status"]) for r in second["retired"]} == {
        (sku, ids_before[sku], "retired") for sku in gone
    }
    live = _live(client)
    assert set(ids_before) - set(live) == gone and len(live) == 1998  # visible in the sandbox
    report_dir = Path(ftp_sandbox.root) / "reports" / "catalog_import"
    (report_csv,) = report_dir.glob("*.retired.csv")
    rows = list(csv.DictReader(report_csv.open()))
    assert {(r["sku"], r["threekit_id"]) for r in rows} == {(sku, ids_before[sku]) for sku in gone}
    for sku in gone:  # the task log names each SKU with its Threekit id
        assert any(sku in m and ids_before[sku] in m for m in caplog.messages)

    # The same snapshot again: nothing is retired twice, nothing is re-sent.
    again = _run(_env(tmp_path, 3), second_files, client)
    assert again["status"] == "nothing_to_retire" and again["to_send"] == 0
    with retire.lifecycle_ledger(tmp_path / "staging") as lc:
        assert [e["event"] for e in lc.events("canonical")] == ["retired", "retired"]

    # A returning SKU is restored (same item id) and re-imported.
    back = _run(_env(tmp_path, 4), _without(files, set(), tmp_path / "full"), client)
    assert back["restored_before_import"]["restored"] == 2
    assert back["to_send"] == 2 and back["status"] == "nothing_to_retire"
    live = _live(client)
    assert len(live) == 2000 and all(live[sku] == ids_before[sku] for sku in gone)
    with retire.lifecycle_ledger(tmp_path / "staging") as lc:
        assert lc.retired("canonical") == {}


def test_snapshot_missing_30_percent_retires_nothing_until_confirmed(tmp_path, client):
    files = generate_catalog(tmp_path / "day1", products=200, options_per_product=1, prices_per_product=1,
                             parts_ratio=0, stamp="20261122", seed=3, locales=())
    all_skus = _skus(files["products"])
    _run(_env(tmp_path, 1), _without(files, set(), tmp_path / "full"), client)
    gone = set(all_skus[:60])
    second_files = _without(files, gone, tmp_path / "day2")

    # Dry run: lists what would be retired (and that it would be blocked), changes nothing.
    dry = _run(_env(tmp_path, 2, dry_run=True), second_files, client)
    assert dry["status"] == "dry_run" and {r["sku"] for r in dry["retired"]} == gone
    assert {r["status"] for r in dry["retired"]} == {"would_block"}

    with pytest.raises(retire.RetireBlocked, match=r"would retire 60 of 200 products") as blocked:
        _run(_env(tmp_path, 3), second_files, client)
    assert "confirm_retire" in str(blocked.value)
    assert len(_live(client)) == 200
    with Ledger(ledger_path(tmp_path / "staging", catalog_import.LEDGER_NAME)) as ledger:
        assert len(ledger) == 200

    # A manual run with confirm_retire and no new file applies the pending retirement.
    confirm_env = _env(tmp_path, 4, confirm_retire=True)
    confirmed = retire.retire_missing(confirm_env, client, None)
    assert confirmed["status"] == "retired" and confirmed["candidates"] == 60
    assert set(_live(client)) == set(all_skus) - gone
    with retire.lifecycle_ledger(tmp_path / "staging") as lc:
        assert lc.pending("canonical") is None and set(lc.retired("canonical")) == gone
    # Confirmed once: a later confirm run has nothing left to do.
    assert retire.retire_missing(_env(tmp_path, 5, confirm_retire=True), client, None)["status"] == "no_snapshot"


def test_tag_and_report_policies_and_delta_sources(tmp_path, client):
    files = generate_catalog(tmp_path / "day1", products=40, options_per_product=1, prices_per_product=1,
                             parts_ratio=0, stamp="20261122", seed=5, locales=())
    skus = _skus(files["products"])
    tagging = {"snapshot": "full", "retire": "tag:discontinued"}
    _run(_env(tmp_path, 1, lifecycle=tagging), _without(files, set(), tmp_path / "full"), client)
    second = _without(files, {skus[0]}, tmp_path / "day2")
    tagged = _run(_env(tmp_path, 2, lifecycle=tagging), second, client)
    assert [(r["sku"], r["detail"]) for r in tagged["retired"]] == [(skus[0], "tagged discontinued")]
    (item,) = client.find_products_by_metadata({"SKU": skus[0]})
    assert "discontinued" in item["tags"]
    back = _run(_env(tmp_path, 3, lifecycle=tagging), _without(files, set(), tmp_path / "full"), client)
    assert back["restored_before_import"]["returning"] == [skus[0]]
    (item,) = client.find_products_by_metadata({"SKU": skus[0]})
    assert "discontinued" not in item["tags"]

    reporting = {"snapshot": "full", "retire": "report"}
    reported = _run(_env(tmp_path, 4, lifecycle=reporting), second, client)
    assert [(r["sku"], r["status"]) for r in reported["retired"]] == [(skus[0], "reported")]
    assert len(_live(client)) == 40

    delta = _run(_env(tmp_path, 5, lifecycle={"snapshot": "delta", "retire": "delete"}),
                 _without(files, set(skus[:5]), tmp_path / "day3"), client)
    assert delta["status"] == "delta" and len(_live(client)) == 40


def test_policy_validation_names_the_key():
    assert retire.parse_policy({}, source="s") == retire.RetirePolicy(source="s")
    with pytest.raises(retire.RetireConfigError, match=r"lifecycle.retire"):
        retire.parse_policy({"retire": "tag:"}, source="s")
    with pytest.raises(retire.RetireConfigError, match=r"lifecycle.max_retire_ratio"):
        retire.parse_policy({"max_retire_ratio": 2}, source="s")
    with pytest.raises(retire.RetireConfigError, match=r"lifecycle.snapshots"):
        retire.parse_policy({"snapshots": "full"}, source="s")


def test_rejected_rows_and_files_never_count_as_missing():
    plan = {
        "files": [{"file": "products_1.csv", "stamp": "20261122", "status": "transformed"},
                  {"file": "products_2.csv", "stamp": "20261123", "status": "transformed"},
                  {"file": "prices_2.csv", "stamp": "20261123", "status": "transformed"}],
        "skus_by_file": {"products_1.csv": ["A", "B"], "products_2.csv": ["A"], "prices_2.csv": ["A", "C"]},
        "rejected": [{"sku": "B", "stage": "transform"}],
    }
    snap = retire.run_snapshot(plan, ["products*.csv"])
    assert snap.skus == {"A"} and snap.protected == {"B"} and snap.files == ["products_2.csv"]
    assert snap.all_skus == {"A", "B", "C"} and snap.complete
    plan["files"][1]["status"] = "rejected"
    assert not retire.run_snapshot(plan, ["products*.csv"]).complete
    assert retire.run_snapshot({"files": plan["files"][2:], "skus_by_file": {}}, ["products*.csv"]) is None
