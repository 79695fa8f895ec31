"""threekit_catalog_import with a full-snapshot source, end to end with ``dag.test()``.

A snapshot missing one of 30 SKUs retires it; one missing a third more fails the run naming
the count and retires nothing; a manual run with ``confirm_retire`` applies it.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _dag_runs import load_dag, put_ftp_file, run_dag, running_stack
from threekit_pipeline.airflow.sync_view.data import ReportStore, sku_history
from threekit_pipeline.samples.catalog import generate_catalog

DAG_ID = "threekit_catalog_import"
INBOUND = "/inbound/catalog"
VARIABLE = {
    "batch_size": 10,
    "import_concurrency": 2,
    "sensor_timeout_seconds": 3,
    "catalog_lifecycle": {"snapshot": "full", "retire": "delete", "max_retire_ratio": 0.05},
}

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]


def _upload(stack, files: dict[str, Path], dropped: set[str], stamp: str) -> None:
    """The batch's CSVs without the rows of ``dropped``, renamed to ``stamp``."""
    for source, path in files.items():
        if source == "prices":  # pricebook names are resolved to ids by the importer (not here)
            continue
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = [r for r in reader if r["sku"] not in dropped]
            fields = reader.fieldnames
        lines = [",".join(fields)] + [
            ",".join(_quote(row[f]) for f in fields) for row in rows
        ]
        put_ftp_file(stack, f"{INBOUND}/{source}_{stamp}.csv", ("\n".join(lines) + "\n").encode("utf-8"))


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\n;') else value


def _live_skus(stack) -> set[str]:
    return {(item.get("metadata") or {}).get("SKU") for item in stack.threekit.items()}


def test_full_snapshot_retires_guarded_by_the_ratio_and_confirm_retire(tmp_path):
    dag = load_dag(DAG_ID, retry_delay_s=0.2)
    files = generate_catalog(tmp_path / "gen", products=30, stamp="20261120", seed=4,
                             options_per_product=1, prices_per_product=1, locales=())
    with open(files["products"], newline="", encoding="utf-8") as handle:
        skus = [row["sku"] for row in csv.DictReader(handle)]
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        _upload(stack, files, set(), "20261121")
        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 21, 10, tzinfo=UTC))
        assert state == "success", tasks
        assert len(_live_skus(stack)) == 30

        _upload(stack, files, {skus[0]}, "20261122")
        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 22, 10, tzinfo=UTC))
        assert state == "success", tasks
        assert tasks["retire_missing"] == ["success"]
        assert _live_skus(stack) == set(skus[1:])
        reports = Path(stack.ftp.root) / "reports" / "catalog_import"
        (retired_json,) = reports.glob("*.retired.json")
        assert [r["sku"] for r in json.loads(retired_json.read_text())["retired"]] == [skus[0]]
        _sync_view_tells_created_unchanged_and_retired(stack, skus)

        dropped = set(skus[:11])
        _upload(stack, files, dropped, "20261123")
        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 23, 10, tzinfo=UTC))
        assert state == "failed" and tasks["retire_missing"] == ["failed"], tasks
        assert tasks["finalize"] == ["success"]
        assert _live_skus(stack) == set(skus[1:])  # nothing retired

        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 23, 11, tzinfo=UTC), conf={"confirm_retire": True})
        assert state == "success", tasks
        assert tasks.get("wait_for_files") in (None, [], ["skipped"])  # no waiting for files
        assert tasks["retire_missing"] == ["success"]
        assert _live_skus(stack) == set(skus) - dropped
        store = ReportStore(stack.staging_dir)
        (confirmed,) = [e for e in sku_history(store, skus[5]) if e.what == "retired"]
        assert store.summary(DAG_ID, confirmed.run_id)["retired"] == len(dropped) - 1


def _sync_view_tells_created_unchanged_and_retired(stack, skus: list[str]) -> None:
    """The sync view's SKU search and run counts, read from the runs' staging folders."""
    store = ReportStore(stack.staging_dir)
    first, retired = sku_history(store, skus[0])[::-1]  # newest first
    assert (first.what, first.file, first.line) == ("created", "products_20261121.csv", "2"), first
    assert first.threekit_id
    assert (retired.what, retired.threekit_id) == ("retired", first.threekit_id), retired
    assert "retire: delete" in retired.reason and retired.file == "products_20261122.csv"
    # A product of both runs: created, then unchanged, each with the file and line it came from.
    second, created = sku_history(store, skus[1])
    assert (created.what, created.file, created.line) == ("created", "products_20261121.csv", "3"), created
    assert (second.what, second.file, second.line) == ("unchanged", "products_20261122.csv", "2"), second
    assert store.summary(DAG_ID, retired.run_id)["retired"] == 1
    assert store.summary(DAG_ID, first.run_id)["retired"] == 0
