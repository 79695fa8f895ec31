"""Export building blocks against a running threekit-sandbox."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest
from threekit_pipeline.threekit.errors import ThreekitAPIError
from threekit_pipeline.threekit.exports import (
    download_renders,
    export_catalog,
    export_single_asset,
    export_translations,
    flatten_catalog_to_csv,
    write_render_manifest,
)


@pytest.fixture
def catalog(sandbox, make_client, make_entry):
    """A client on a sandbox holding 5 chairs (one with a price and a formula-like description)."""
    client = make_client(sandbox)
    retail = next(b for b in client.list_pricebooks() if b["name"] == "US Retail")
    entries = [make_entry(n) for n in range(5)]
    entries[0]["product"]["description"] = "=cmd|' /C calc'!A0"
    entries[0]["product"]["attributes"].append(
        {
            "type": "Pricing",
            "name": "Pricing",
            "values": [{"pricebook": retail["id"], "currencies": {"USD": 120}}],
        }
    )
    entries[4]["product"]["tags"] = ["tables"]
    answer = client.import_products_sync(entries)
    return client, {p["metadata"]["SKU"]: p["id"] for p in answer}


def test_catalog_export_and_flatten(catalog, tmp_path):
    client, ids = catalog
    result = export_catalog(client, tmp_path / "staging" / "catalog.json", tags=["chairs"])
    assert result.count == 4
    data = json.loads((tmp_path / "staging" / "catalog.json").read_bytes())
    assert result.sha256 == hashlib.sha256((tmp_path / "staging" / "catalog.json").read_bytes()).hexdigest()
    assert {e["query"]["id"] for e in data} == {ids[f"SKU-{n:04d}"] for n in range(4)}
    assert export_catalog(client, tmp_path / "all.json", types="item").count == 5
    tables = client.export_products_json(tmp_path / "tables.json", tags=["tables"], types=["item"])
    assert [e["query"]["id"] for e in json.loads(tables.read_text(encoding="utf-8"))] == [ids["SKU-0004"]]

    names = {b["id"]: b["name"] for b in client.list_pricebooks()}
    flat = flatten_catalog_to_csv(tmp_path / "all.json", tmp_path / "catalog.csv", pricebook_names=names)
    with open(flat.path, newline="", encoding="utf-8") as fh:
        rows = {row["sku"]: row for row in csv.DictReader(fh)}
    assert flat.count == 5 and len(rows) == 5
    first = rows["SKU-0000"]
    assert first["id"] == ids["SKU-0000"]
    assert first["description"] == "'=cmd|' /C calc'!A0"
    assert first["attribute:Color"] == "red|blue"
    assert first["attribute:Height"] == "80"
    assert first["price:US Retail:USD"] == "120"
    assert first["metadata:SKU"] == "SKU-0000"
    assert rows["SKU-0004"]["tags"] == "tables"


def test_single_asset_export(catalog, tmp_path):
    client, ids = catalog
    result = export_single_asset(client, ids["SKU-0002"], tmp_path / "asset.json")
    document = json.loads((tmp_path / "asset.json").read_text(encoding="utf-8"))
    assert document["id"] == ids["SKU-0002"]
    assert result.size == (tmp_path / "asset.json").stat().st_size
    with pytest.raises(ThreekitAPIError) as caught:
        export_single_asset(client, "00000000-0000-0000-0000-000000000000", tmp_path / "missing.json")
    assert caught.value.status == 404
    assert not (tmp_path / "missing.json").exists()
    assert not (tmp_path / "missing.json.part").exists()


def test_translations_export_split_per_locale(catalog, tmp_path):
    client, ids = catalog
    upload = tmp_path / "upload.csv"
    upload.write_text("Canonical Name,fr,de\nChair 1,Chaise 1,Stuhl 1\nred,rouge,\n", encoding="utf-8")
    client.import_translations(upload)
    result = export_translations(client, tmp_path / "out" / "translations.csv", split_per_locale=True)
    assert result.locales == ["de", "fr"] or result.locales == ["fr", "de"]
    assert set(result.locale_files) == {"fr", "de"}
    with open(result.locale_files["fr"], newline="", encoding="utf-8") as fh:
        french = list(csv.reader(fh))
    assert french[0] == ["Canonical Name", "fr"]
    assert ["Chair 1", "Chaise 1"] in french
    assert ["red", "rouge"] in french
    assert len(french) - 1 == result.rows
    with open(result.locale_files["de"], newline="", encoding="utf-8") as fh:
        german = dict(row for row in csv.reader(fh))
    assert german["Chair 1"] == "Stuhl 1" and german["red"] == ""

    single = export_translations(client, tmp_path / "one.csv", asset_id=ids["SKU-0001"])
    assert single.rows < result.rows


def test_render_download_with_manifest_and_rerun(sandbox, catalog, tmp_path):
    client, ids = catalog
    assets = {ids["SKU-0001"]: "SKU-0001", ids["SKU-0002"]: None}
    assert download_renders(client, assets, tmp_path / "none").rows == []  # no render job, no layer
    sandbox.render_stand_in(asset_ids=list(assets))
    first = download_renders(client, assets, tmp_path / "renders")
    assert len(first.rows) == 2 and first.downloaded == 2 and not first.missing
    by_asset = {row["asset_id"]: row for row in first.rows}
    row = by_asset[ids["SKU-0001"]]
    assert row["file"].startswith("SKU-0001/")
    image = tmp_path / "renders" / row["file"]
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert row["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert row["size"] == image.stat().st_size
    assert json.loads(row["configuration"]) == {"Height": 80, "Color": "red"}
    assert by_asset[ids["SKU-0002"]]["file"].startswith(f"{ids['SKU-0002']}/")

    again = download_renders(client, assets, tmp_path / "renders")
    assert (again.downloaded, again.unchanged) == (0, 2)
    assert again.rows == first.rows

    manifest = write_render_manifest(first.rows, tmp_path / "renders" / "manifest.csv")
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["asset_id"] for r in rows} == set(assets)
    assert json.loads(json.dumps(first.to_dict()))["images"] == 2
