"""Catalog import task logic without a scheduler: a hand-built TaskEnv, real sandboxes.

Covers what the DAG tests do not isolate: newest-batch-wins across stamps, the delta and
its ``force_full_resend``/``dry_run`` switches, entries Threekit rejects (422) ending up in
the report but not in the ledger, and the report helpers.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from threekit_pipeline.ftp.client import FtpClient
from threekit_pipeline.pipelines import catalog_import
from threekit_pipeline.pipelines.config import load_config
from threekit_pipeline.pipelines.ledger import Ledger, ledger_path
from threekit_pipeline.pipelines.reports import (
    FileOutcome,
    RejectedRow,
    RunReport,
    format_table,
    neutralise_cell,
    sanitize_run_id,
)
from threekit_pipeline.pipelines.runtime import TaskEnv
from threekit_pipeline.samples.catalog import generate_catalog
from threekit_pipeline.threekit.client import ThreekitClient


def _env(tmp_path: Path, run_id: str = "manual__2026-11-23T10:00:00+00:00", **params) -> TaskEnv:
    config = load_config({"staging_dir": str(tmp_path / "staging"), "batch_size": 10})
    return TaskEnv(
        dag_id=catalog_import.DAG_ID,
        run_id=run_id,
        config=config,
        params=params,
        logical_date=datetime(2026, 11, 23, 10, tzinfo=UTC),
    )


def _catalog(tmp_path: Path, stamp: str, seed: int, products: int = 12) -> dict[str, Path]:
    return generate_catalog(
        tmp_path / f"in_{stamp}", products=products, stamp=stamp, seed=seed, options_per_product=1,
        prices_per_product=1, locales=(),
    )


def _chunk_entries(chunks: list[str]) -> dict[str, dict]:
    from threekit_pipeline.threekit.importer import entry_key

    entries = {}
    for chunk in chunks:
        for line in Path(chunk).read_text().splitlines():
            entry = json.loads(line)
            entries[entry_key(entry)] = entry
    return entries


def test_batches_merge_oldest_to_newest_and_the_delta_skips_what_the_ledger_vouches_for(tmp_path):
    day22 = _catalog(tmp_path, "20261122", seed=1)
    day23 = _catalog(tmp_path, "20261123", seed=2)
    env = _env(tmp_path)

    planned = catalog_import.transform_and_plan(env, catalog_import.collected_from_local(env, [*day23.values(), *day22.values()]))

    assert planned["products_distinct"] == 12
    assert planned["to_send"] == 12 and planned["unchanged_skipped"] == 0
    assert [Path(c).name for c in planned["chunks"]] == ["chunk_0001.jsonl", "chunk_0002.jsonl"]
    sent = _chunk_entries(planned["chunks"])
    with open(day23["products"], newline="") as handle:
        newest = {row["sku"]: row["name"] for row in csv.DictReader(handle)}
    assert {sku: e["product"]["name"] for sku, e in sent.items()} == newest
    plan = json.loads(Path(planned["plan"]).read_text())
    assert [f["file"] for f in plan["files"]][:4] == sorted(p.name for p in day22.values())  # older batch first

    # Record half as landed: the next plan sends only the other half; force sends all again.
    hashes = {}
    for chunk in planned["chunks"]:
        hashes.update(json.loads(Path(chunk).with_suffix(".hashes.json").read_text()))
    landed = dict(sorted(hashes.items())[:5])
    with Ledger(ledger_path(env.config.staging_dir, catalog_import.LEDGER_NAME)) as ledger:
        ledger.record(landed.items(), run_id=env.run_id)
    again = catalog_import.transform_and_plan(env, catalog_import.collected_from_local(env, [*day22.values(), *day23.values()]))
    assert (again["unchanged_skipped"], again["to_send"]) == (5, 7)
    assert set(_chunk_entries(again["chunks"])) == set(hashes) - set(landed)

    forced_env = _env(tmp_path, force_full_resend=True)
    forced = catalog_import.transform_and_plan(forced_env, catalog_import.collected_from_local(forced_env, list(day23.values())))
    assert forced["to_send"] == 12 and forced["unchanged_skipped"] == 0

    dry_env = _env(tmp_path, dry_run=True)
    dry = catalog_import.transform_and_plan(dry_env, catalog_import.collected_from_local(dry_env, [*day22.values(), *day23.values()]))
    assert dry["chunks"] == [] and dry["to_send"] == 7


def test_entries_threekit_rejects_are_reported_not_recorded(tmp_path, threekit_sandbox, ftp_sandbox):
    files = _catalog(tmp_path, "20261123", seed=3)
    env = _env(tmp_path)
    with FtpClient(ftp_sandbox.settings()) as ftp:
        for path in files.values():
            ftp.makedirs("/inbound/catalog")
            ftp.upload_atomic(path, f"/inbound/catalog/{path.name}")
        sensor_output = [[{"path": f"/inbound/catalog/{p.name}", "size": p.stat().st_size} for p in files.values()]]
        collected = catalog_import.collect_files(env, sensor_output, ftp)
        client = ThreekitClient(threekit_sandbox.base_url, threekit_sandbox.token, threekit_sandbox.org_id)
        planned = catalog_import.transform_and_plan(env, collected, pricebooks=client.list_pricebooks())

        # Threekit refuses one entry (an attribute type it does not know).
        first_chunk = Path(planned["chunks"][0])
        lines = first_chunk.read_text().splitlines()
        bad = json.loads(lines[0])
        bad["product"]["attributes"] = [{"type": "Hologram", "name": "Glow"}]
        lines[0] = json.dumps(bad)
        first_chunk.write_text("\n".join(lines) + "\n")
        from threekit_pipeline.threekit.importer import entry_key

        bad_sku = entry_key(bad)

        with client:
            results = [catalog_import.import_chunk(env, chunk, client) for chunk in planned["chunks"]]
        assert sum(r["rejected"] for r in results) == 1
        assert sum(r["confirmed"] for r in results) == 11

        with Ledger(ledger_path(env.config.staging_dir, catalog_import.LEDGER_NAME)) as ledger:
            assert ledger.get(bad_sku) is None
            assert len(ledger) == 11

        outcome = catalog_import.finalize(env, ftp)

    assert outcome["status"] == "success"
    assert outcome["threekit_rejected"] == 1
    report_dir = Path(ftp_sandbox.root) / "reports" / "catalog_import"
    report = json.loads(next(report_dir.glob("*.json")).read_text())
    (rejected,) = [r for r in report["rejected"] if r["stage"] == "threekit"]
    assert rejected["sku"] == bad_sku
    # Threekit's 422 is generic; the job's failure summary comes with it.
    assert rejected["reason"].startswith("Invalid product data (job ")
    # The SKU is traced back to every file that contributed to the entry.
    assert files["products"].name in rejected["file"].split(", ")
    errors = list(csv.DictReader(next(report_dir.glob("*.errors.csv")).open()))
    assert [e["sku"] for e in errors if e["stage"] == "threekit"] == [bad_sku]
    archived = sorted(p.name for p in (Path(ftp_sandbox.root) / "archive/catalog/2026/11/23").iterdir())
    assert archived == sorted(p.name for p in files.values())


def test_backfill_run_collects_its_interval_from_the_archive(tmp_path, ftp_sandbox):
    day22 = _catalog(tmp_path, "20261122", seed=1)
    root = Path(ftp_sandbox.root)
    for path in day22.values():
        target = root / "archive/catalog/2026/11/22" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    waiting = root / "inbound/catalog/products_20261123.csv"  # outside the interval: not taken
    waiting.parent.mkdir(parents=True)
    waiting.write_bytes(b"sku,name\n")
    env = TaskEnv(
        dag_id=catalog_import.DAG_ID,
        run_id="backfill__2026-11-22T00:00:00+00:00",
        config=load_config({"staging_dir": str(tmp_path / "staging")}),
        run_type="backfill",
        logical_date=datetime(2026, 11, 22, tzinfo=UTC),
        data_interval_start=datetime(2026, 11, 22, tzinfo=UTC),
        data_interval_end=datetime(2026, 11, 23, tzinfo=UTC),
    )
    assert catalog_import.plan_run(env) == []  # no sensor instance: nothing to wait for

    with FtpClient(ftp_sandbox.settings()) as ftp:
        collected = catalog_import.collect_files(env, [], ftp)

    state = json.loads(Path(collected["collected"]).read_text())
    assert sorted(f["path"] for f in state["files"]) == sorted(
        f"/archive/catalog/2026/11/22/{p.name}" for p in day22.values()
    )
    assert all(f["origin"] == "archive" for f in state["files"])
    assert all(Path(f["local"]).read_bytes() == day22[k].read_bytes() for k in day22 for f in state["files"]
               if f["name"] == day22[k].name)
    assert waiting.exists()


def test_merged_entry_equals_importing_both_in_order():
    sku = {"metadata": [{"name": "SKU", "defaultValue": "S-1", "type": "String"}]}
    older = {
        "query": sku,
        "product": {
            "name": "Oslo Sofa",
            "type": "item",
            "metadata": [{"name": "SKU", "defaultValue": "S-1"}, {"name": "Designer", "defaultValue": "Liv"}],
            "attributes": [{"type": "String", "name": "Color", "values": ["Sand"]}],
        },
    }
    prices_only = {
        "query": sku,
        "product": {
            "type": "item",
            "metadata": [{"name": "SKU", "defaultValue": "S-1"}, {"name": "Designer", "defaultValue": "Erik"}],
            "attributes": [{"type": "Pricing", "name": "Pricing", "values": [{"pricebook": "eu"}]}],
        },
    }
    merged = catalog_import.merge_entries(older, prices_only)
    assert merged["query"] == sku
    assert merged["product"]["name"] == "Oslo Sofa"  # a newer batch without the field keeps it
    assert [a["name"] for a in merged["product"]["attributes"]] == ["Color", "Pricing"]
    assert merged["product"]["metadata"] == [
        {"name": "SKU", "defaultValue": "S-1"},
        {"name": "Designer", "defaultValue": "Erik"},
    ]
    recolored = {"query": sku, "product": {"attributes": [{"type": "String", "name": "Color", "values": ["Moss"]}]}}
    again = catalog_import.merge_entries(merged, recolored)
    assert [a.get("values") for a in again["product"]["attributes"]] == [["Moss"], [{"pricebook": "eu"}]]
    assert older["product"]["attributes"] == [{"type": "String", "name": "Color", "values": ["Sand"]}]  # untouched


def test_finalize_without_a_plan_has_nothing_to_do(tmp_path):
    env = _env(tmp_path)
    # collect_files found nothing and said so: a skip.
    (env.run_dir() / catalog_import.NOTHING_FILE).write_text('{"reason": "no catalog file to process"}')
    with pytest.raises(catalog_import.NothingToProcess, match="no catalog file to process"):
        catalog_import.finalize(env, None)


def test_finalize_without_a_plan_after_a_failed_step_fails(tmp_path):
    # collect_files or transform_and_plan failed: finalize must fail the run, not skip it.
    with pytest.raises(catalog_import.FilesNotPrepared, match="left in place"):
        catalog_import.finalize(_env(tmp_path), None)


def test_sensor_output_shapes():
    flatten = catalog_import._flatten_sensor_output
    assert flatten(None) is None
    assert flatten([]) is None  # a skipped (timed-out) sensor leaves no result
    assert flatten([None]) is None
    assert flatten([[{"path": "/a"}, {"path": "/b"}]]) == [{"path": "/a"}, {"path": "/b"}]


def test_only_changes_publish_the_catalog_asset():
    assert catalog_import.should_publish({"status": "success", "changed": 3})
    assert not catalog_import.should_publish({"status": "success", "changed": 0})
    assert not catalog_import.should_publish({"status": "dry_run", "changed": 5})
    assert not catalog_import.should_publish(None)


def test_mapping_patterns_cover_every_source():
    from threekit_pipeline.transform import load_mapping

    patterns = catalog_import.mapping_patterns(load_mapping("canonical"))
    assert {"products*.csv", "options*.csv", "prices*.csv", "parts*.csv"} <= set(patterns)
    assert len(patterns) == len(set(patterns))


# --- reports --------------------------------------------------------------------------------


def test_run_ids_become_safe_file_names():
    assert sanitize_run_id("manual__2026-11-23T10:00:00+00:00") == "manual__2026-11-23T10-00-00-00-00"
    assert sanitize_run_id("scheduled__x/../y z") == "scheduled__x-..-y-z"
    assert sanitize_run_id("///") == "run"


def test_cells_are_formula_neutralised():
    assert neutralise_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert neutralise_cell("-5") == "'-5"
    assert neutralise_cell("Sofa") == "Sofa"
    assert neutralise_cell(7) == 7


def test_format_table_caps_rows_and_cuts_long_cells():
    rows = [{"file": f"f{i}.csv", "reason": "x" * 80} for i in range(25)]
    table = format_table(rows, ["file", "reason"], limit=20, width=30)
    lines = table.splitlines()
    assert lines[0].split() == ["file", "reason"]
    assert len(lines) == 2 + 20 + 1
    assert lines[-1] == "... and 5 more (see the errors CSV)"
    assert all(len(line) < 60 for line in lines[2:-1])
    assert format_table([], ["file"]) == "(none)"


def test_report_files(tmp_path):
    report = RunReport(dag_id="d", run_id="manual__2026-11-23T10:00:00+00:00")
    report.files = [FileOutcome(file="p.csv", remote_path="/in/p.csv", status="imported", destination="/a/p.csv")]
    report.counts = {"created": 1}
    paths = report.write(tmp_path)
    assert set(paths) == {"json", "csv"}  # no rejection, no errors CSV
    report.rejected = [RejectedRow("transform", "p.csv", 3, "name", "=cmd", "name is required")]
    paths = report.write(tmp_path)
    assert paths["errors"].name == "manual__2026-11-23T10-00-00-00-00.errors.csv"
    (row,) = csv.DictReader(paths["errors"].open())
    assert (row["line"], row["column"], row["value"]) == ("3", "name", "'=cmd")
    data = json.loads(paths["json"].read_text())
    assert data["rejected_total"] == 1 and data["counts"] == {"created": 1}
    (file_row,) = csv.DictReader(paths["csv"].open())
    assert file_row["destination"] == "/a/p.csv"


def test_pricebook_names_become_ids_and_an_unknown_one_is_a_row_error(tmp_path, threekit_sandbox):
    folder = tmp_path / "in"
    folder.mkdir()
    products = folder / "products_20261123.csv"
    prices = folder / "prices_20261123.csv"
    products.write_text("sku,name\n" + "".join(f"P-{n:02d},Chair {n}\n" for n in range(30)), encoding="utf-8")
    rows = [f"P-{n:02d},{'eu retail' if n % 2 else 'EU Retail'},EUR,{100 + n}\n" for n in range(30)]
    rows.append("P-07,Mars Retail,EUR,1\n")  # line 32: no such pricebook in the org
    prices.write_text("sku,pricebook,currency,price\n" + "".join(rows), encoding="utf-8")
    env = _env(tmp_path)
    client = ThreekitClient(threekit_sandbox.base_url, threekit_sandbox.token, threekit_sandbox.org_id)
    with client:
        books = client.list_pricebooks()
        planned = catalog_import.transform_and_plan(env, catalog_import.collected_from_local(env, [products, prices]), pricebooks=books)
    retail_id = next(b["id"] for b in books if b["name"] == "EU Retail")

    plan = json.loads(Path(planned["plan"]).read_text())
    [rejected] = plan["rejected"]
    assert (rejected["file"], str(rejected["line"]), rejected["sku"]) == (prices.name, "32", "P-07")
    assert rejected["reason"].startswith("unknown pricebook 'Mars Retail'; known: ")
    assert "EU Retail" in rejected["reason"] and "US Retail" in rejected["reason"]
    entries = _chunk_entries(planned["chunks"])
    assert len(entries) == 30
    for sku, entry in entries.items():
        [pricing] = [a for a in entry["product"]["attributes"] if a["type"] == "Pricing"]
        # Known names (any case) arrive as the pricebook's id; nothing of the bad row is sent.
        assert pricing["values"] == [{"pricebook": retail_id, "currencies": {"EUR": 100 + int(sku[2:])}}]
