"""Real commerce/PIM exports through the catalog import tasks into the Threekit sandbox.

The export files are uploaded to the FTP sandbox exactly as exported (names included),
collected, transformed with the system's shipped mapping, imported, and the sandbox then
holds the same items the command-line transform writes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from threekit_pipeline.ftp.client import FtpClient
from threekit_pipeline.pipelines import catalog_import
from threekit_pipeline.pipelines.config import load_config
from threekit_pipeline.pipelines.runtime import TaskEnv
from threekit_pipeline.threekit.client import ThreekitClient
from threekit_pipeline.transform import transform_files

EXPORTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "cases" / "pim-exports"
SYSTEMS = ["woocommerce", "shopify", "akeneo", "magento", "prestashop"]


def _env(tmp_path: Path, mapping: str) -> TaskEnv:
    config = load_config({"staging_dir": str(tmp_path / "staging"), "batch_size": 10, "mapping": mapping})
    return TaskEnv(
        dag_id=catalog_import.DAG_ID,
        run_id="manual__2026-11-30T10:00:00+00:00",
        config=config,
        params={},
        logical_date=datetime(2026, 11, 30, 10, tzinfo=UTC),
    )


@pytest.mark.parametrize("system", SYSTEMS)
def test_export_imports_through_the_catalog_import_tasks(tmp_path, threekit_sandbox, ftp_sandbox, system):
    folder = EXPORTS / system
    if not folder.is_dir():
        pytest.skip(f"real exports not found at {folder.resolve()} (shared/ must sit beside the clone)")
    files = sorted(folder.iterdir())
    expected_out = tmp_path / "cli" / "out.jsonl"
    expected_out.parent.mkdir()
    transform_files(system, files, expected_out)
    expected = {}
    for line in expected_out.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        expected[entry["query"]["metadata"][0]["defaultValue"]] = entry["product"]

    # The mapping names its pricebooks; the org must have them (Threekit makes pricebooks in its
    # UI only), and the import sends their ids.
    currencies: dict[str, set[str]] = {}
    for product in expected.values():
        for attribute in product.get("attributes", []):
            if attribute["type"] == "Pricing":
                for value in attribute["values"]:
                    currencies.setdefault(value["pricebook"], set()).update(value["currencies"])
    known = {book["name"] for book in threekit_sandbox.pricebooks()}
    missing = [{"name": name, "currencies": sorted(c)} for name, c in currencies.items() if name not in known]
    if missing:
        threekit_sandbox.add_pricebooks(missing)
    ids = {book["name"]: book["id"] for book in threekit_sandbox.pricebooks()}

    env = _env(tmp_path, system)
    with FtpClient(ftp_sandbox.settings()) as ftp:
        ftp.makedirs("/inbound/catalog")
        for path in files:
            ftp.upload_atomic(path, f"/inbound/catalog/{path.name}")
        sensor_output = [[{"path": f"/inbound/catalog/{p.name}", "size": p.stat().st_size} for p in files]]
        collected = catalog_import.collect_files(env, sensor_output, ftp)
        client = ThreekitClient(threekit_sandbox.base_url, threekit_sandbox.token, threekit_sandbox.org_id)
        with client:
            planned = catalog_import.transform_and_plan(env, collected, pricebooks=client.list_pricebooks())
            assert planned["to_send"] == len(expected)
            results = [catalog_import.import_chunk(env, chunk, client) for chunk in planned["chunks"]]
        assert sum(r["rejected"] for r in results) == 0
        assert sum(r["confirmed"] for r in results) == len(expected)
        outcome = catalog_import.finalize(env, ftp)
    assert outcome["status"] == "success"

    stored = {}
    for item in threekit_sandbox.items():
        metadata = item.get("metadata") or {}
        sku = metadata.get("SKU") if isinstance(metadata, dict) else None
        stored.setdefault(sku, []).append(item)
    assert set(stored) == set(expected)
    for sku, product in expected.items():
        (item,) = stored[sku]
        assert item["name"] == product["name"]
        kept = {a["name"]: a.get("values") for a in item.get("attributes") or []}
        for attribute in product.get("attributes", []):
            values = attribute["values"]
            if attribute["type"] == "Pricing":
                # One value per pricebook; their order carries no meaning.
                values = sorted(({**value, "pricebook": ids[value["pricebook"]]} for value in values), key=str)
                assert sorted(kept[attribute["name"]], key=str) == values, (sku, attribute["name"])
                continue
            assert kept[attribute["name"]] == values, (sku, attribute["name"])
