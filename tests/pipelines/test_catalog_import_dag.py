"""threekit_catalog_import end to end: ``dag.test()`` against real FTP and Threekit sandboxes.

Every test starts its own LocalStack (both sandboxes on free loopback ports, own data dirs),
so tests are independent. Catalogs are small (30 products) and sensor timings tiny.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from _dag_runs import ftp_files, load_dag, put_ftp_file, run_dag, running_stack
from threekit_pipeline.samples.catalog import generate_catalog

DAG_ID = "threekit_catalog_import"
IMPORT_ROUTE = "POST /api/products/import"
VARIABLE = {"batch_size": 10, "import_concurrency": 2}

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]


def _catalog(tmp_path: Path, stamp: str, products: int = 30, seed: int = 0) -> dict[str, Path]:
    files = generate_catalog(tmp_path / f"gen_{stamp}_{seed}", products=products, stamp=stamp, seed=seed,
                             options_per_product=2, prices_per_product=1, locales=())
    return files


def _upload(stack, files: dict[str, Path], folder: str = "/inbound/catalog") -> list[str]:
    names = []
    for path in files.values():
        put_ftp_file(stack, f"{folder}/{path.name}", path.read_bytes())
        names.append(path.name)
    return sorted(names)


def _items_by_sku(stack) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for item in stack.threekit.items():
        metadata = item.get("metadata") or {}
        sku = metadata.get("SKU") if isinstance(metadata, dict) else None
        found.setdefault(sku, []).append(item)
    return found


def _ledger_rows(stack) -> dict[str, tuple[str, str]]:
    path = Path(stack.staging_dir) / "ledger" / "catalog_import.sqlite"
    with sqlite3.connect(path) as conn:
        return {key: (h, run) for key, h, run in conn.execute("SELECT key, content_hash, run_id FROM entries")}


def _report(stack) -> tuple[dict, list[dict]]:
    reports = sorted(p for p in (Path(stack.ftp.root) / "reports" / "catalog_import").glob("*.json"))
    assert reports, "no report uploaded"
    data = json.loads(reports[-1].read_text())
    return data, reports


@pytest.fixture
def dag():
    return load_dag(DAG_ID, retry_delay_s=0.2)


def test_golden_path_imports_archives_reports_and_updates_ledger(tmp_path, dag):
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        files = _catalog(tmp_path, "20261123")
        names = _upload(stack, files)

        state, tasks = run_dag(dag)

        assert state == "success", tasks
        assert tasks["wait_for_files"] == ["success"]
        assert tasks["import_chunk"] == ["success"] * 3  # 30 products in chunks of 10
        assert tasks["publish_catalog"] == ["success"]
        items = _items_by_sku(stack)
        skus = {row["sku"] for row in csv.DictReader(files["products"].open())}
        assert set(items) == skus
        assert all(len(v) == 1 for v in items.values())
        assert ftp_files(stack, "/inbound/catalog") == {}
        archived = ftp_files(stack, "/archive/catalog")
        assert sorted(archived) == [f"2026/11/23/{n}" for n in names]
        report, _ = _report(stack)
        assert report["status"] == "success"
        assert report["counts"]["created"] == 30
        assert {f["file"]: f["status"] for f in report["files"]} == {n: "imported" for n in names}
        assert (Path(stack.ftp.root) / "reports" / "catalog_import" / (Path(_report(stack)[1][-1]).stem + ".csv")).exists()
        ledger = _ledger_rows(stack)
        assert set(ledger) == skus
