"""The three shipped mappings against hand-checked expected output, and the CLI around them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from threekit_pipeline.cli import main
from threekit_pipeline.transform import load_mapping, transform_files
from threekit_pipeline.transform.mapping import MAPPINGS_DIR

EXPECTED = Path(__file__).parent / "expected"
MAPPINGS = ("canonical", "sap_de", "pim_wide")


def sample_files(name: str) -> list[Path]:
    return sorted((MAPPINGS_DIR / "samples" / name).iterdir())


@pytest.mark.parametrize("name", MAPPINGS)
def test_samples_match_the_golden_output(tmp_path, name):
    output = tmp_path / f"{name}.jsonl"
    result = transform_files(load_mapping(name), sample_files(name), output)
    assert result.ok and result.rows_rejected == 0
    assert output.read_bytes() == (EXPECTED / f"{name}.jsonl").read_bytes()
    assert Path(result.hashes).read_bytes() == (EXPECTED / f"{name}.hashes.csv").read_bytes()
    # The hash is the SHA-256 of the entry's line exactly as written.
    lines = output.read_bytes().splitlines()
    hashes = Path(result.hashes).read_text().splitlines()[1:]
    assert [h.split(",")[1] for h in hashes] == [hashlib.sha256(line).hexdigest() for line in lines]


def entries(name: str) -> dict[str, dict]:
    result = {}
    for line in (EXPECTED / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        result[entry["query"]["metadata"][0]["defaultValue"]] = entry["product"]
    return result


def attribute(product: dict, name: str) -> dict:
    (found,) = [a for a in product["attributes"] if a["name"] == name]
    return found


def test_canonical_golden_facts():
    products = entries("canonical")
    assert list(products) == ["CHAIR-001", "SOFA-001", "TABLE-001"]
    sofa = products["SOFA-001"]
    assert sofa["description"] == 'Three-seat sofa with "soft" cushions.\nRemovable covers.'
    assert sofa["asset"] == {"assetId": "7f3c2a10-0000-4000-8000-000000000001", "type": "model"}
    assert attribute(sofa, "Color") == {
        "type": "String",
        "name": "Color",
        "values": ["Sand", "Slate", "Moss"],
        "defaultValue": "Slate",
    }
    assert attribute(sofa, "Fabric")["defaultValue"] == "Linen"  # none marked: the first
    assert attribute(sofa, "Cushions")["values"] == [
        {"assetId": "9a1b0c2d-0000-4000-8000-0000000000c1"},
        {"assetId": "9a1b0c2d-0000-4000-8000-0000000000c2"},
    ]
    assert attribute(sofa, "Legs") == {"type": "Asset", "name": "Legs", "assetType": "item", "values": ["#sofa-legs"]}
    assert attribute(sofa, "Pricing")["values"] == [
        {"pricebook": "EU Retail", "currencies": {"EUR": 1299}},
        {"pricebook": "US Retail", "currencies": {"USD": 1399.99}},
    ]
    assert {m["name"]: (m["defaultValue"], m["type"]) for m in sofa["metadata"]} == {
        "SKU": ("SOFA-001", "String"),
        "Collection": ("Nordic", "String"),
        "Weight kg": (42.5, "Number"),
        "EAN": ("4006381333931", "String"),  # another row has a leading zero: the column stays text
    }
    assert "EAN" not in {m["name"] for m in products["CHAIR-001"]["metadata"]}  # empty cell: untouched
    assert attribute(products["TABLE-001"], "Pricing")["values"][1] == {"pricebook": "US Retail", "currencies": {"USD": 899}}


def test_sap_golden_facts():
    products = entries("sap_de")
    armchair = products["100234"]
    assert armchair["name"] == "Ohrensessel Müller"
    assert armchair["keywords"] == ["Sessel", "Ohrensessel"]
    assert {m["name"]: m["defaultValue"] for m in armchair["metadata"]} == {
        "SKU": "100234",
        "Gewicht": 18.5,
        "Lagerbestand": 1250,
        "Herkunftsland": "Österreich",
    }
    assert attribute(armchair, "Farbe") == {"type": "String", "name": "Farbe", "values": ["Grün", "Weiß"], "defaultValue": "Weiß"}
    assert attribute(armchair, "Pricing")["values"] == [
        {"pricebook": "endkunden-de", "currencies": {"CHF": 1389.5, "EUR": 1299}},
        {"pricebook": "fachhandel-de", "currencies": {"EUR": 899.9}},
    ]
    desk = products["100235"]
    assert desk["description"] == "Höhenverstellbarer Schreibtisch; Tischplatte 180 × 80 cm"
    assert attribute(desk, "Pricing")["values"][0] == {"pricebook": "endkunden-de", "currencies": {"EUR": 2450}}
    assert attribute(desk, "Montageanleitung")["assetType"] == "upload"
    assert attribute(desk, "Kabelkanal")["values"] == ["#kabelkanal"]


def test_pim_wide_golden_facts():
    products = entries("pim_wide")
    sofa = products["PIM-SOFA-10"]
    assert [a["name"] for a in sofa["attributes"]] == ["Color", "Fabric", "Leg Finish", "Pricing"]
    assert attribute(sofa, "Color")["values"] == ["Sand", "Slate", "Moss"]
    assert attribute(sofa, "Color")["defaultValue"] == "Sand"
    assert attribute(sofa, "Fabric")["defaultValue"] == "Velvet"
    assert attribute(sofa, "Pricing")["values"] == [{"pricebook": "pim-retail", "currencies": {"EUR": 2199, "USD": 2399}}]
    assert sofa["tags"] == ["living", "bestseller"]
    table = products["PIM-TABLE-30"]
    assert [a["name"] for a in table["attributes"]] == ["Leg Finish", "Pricing"]
    assert table["metadata"] == [{"name": "SKU", "defaultValue": "PIM-TABLE-30", "type": "String"}]
    assert products["PIM-CHAIR-20"]["name"] == "Malmö Lounge Chair"


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_transform_ok_exits_0(tmp_path, capsys):
    output = tmp_path / "out.jsonl"
    files = [str(p) for p in sample_files("sap_de")]
    assert main(["transform", "--mapping", "sap_de", "--output", str(output), *files]) == 0
    printed = capsys.readouterr().out
    assert "Rows read:         20" in printed
    assert "Products written:  3" in printed
    assert "Files rejected:    0" in printed
    assert output.read_bytes() == (EXPECTED / "sap_de.jsonl").read_bytes()


def test_cli_rejected_file_exits_1_and_shows_first_rejected_rows(tmp_path, capsys):
    products = tmp_path / "products_20261123.csv"
    products.write_text("sku,name\nA,Chair\n,Nameless\nB/2,Slash\n", encoding="utf-8")
    errors = tmp_path / "errors.csv"
    code = main(["transform", "--output", str(tmp_path / "out.jsonl"), "--errors", str(errors), str(products)])
    assert code == 1
    printed = capsys.readouterr().out
    assert "products_20261123.csv: too many bad rows: 2 of 3" in printed
    assert "products_20261123.csv:3 [sku]: empty SKU" in printed
    assert "products_20261123.csv:4 [sku] 'B/2': SKU contains a path character" in printed
    assert errors.read_text(encoding="utf-8").startswith("file,line,column,value,reason,sku\n")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["transform", "--mapping", "nope", "--output", "o.jsonl", "x.csv"], "mapping file not found"),
        (["transform", "--output", "o.jsonl", "missing_20261123.csv"], "input file(s) not found"),
        (["transform", "x.csv"], "the following arguments are required: --output"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_cli_usage_and_mapping_errors_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_mapping_error_names_the_key(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("sources:\n  prices:\n    patterns: [p*.csv]\n    columns: {sku: s}\n", encoding="utf-8")
    assert main(["transform", "--mapping", str(broken), "--output", str(tmp_path / "o.jsonl"), str(broken)]) == 2
    assert "sources.prices.columns.pricebook: required column mapping missing" in capsys.readouterr().err


def test_console_script_runs(tmp_path):
    script = Path(sys.executable).parent / "threekit-pipeline"
    files = [str(p) for p in sample_files("canonical")]
    done = subprocess.run(
        [str(script), "transform", "--output", str(tmp_path / "out.jsonl"), *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Products written:  3" in done.stdout


def test_cli_translations(tmp_path, capsys):
    source = tmp_path / "translations_20261123.csv"
    source.write_text("Canonical Name,en,fr,French\nSofa,Sofa,Canapé,?\nSofa,Sofa,Divan,?\n", encoding="utf-8")
    assert main(["translations", str(source), "--output", str(tmp_path / "clean.csv")]) == 0
    printed = capsys.readouterr().out
    assert "Locales:           en, fr" in printed
    assert "column 'French'" in printed
    assert (tmp_path / "clean.csv").read_text(encoding="utf-8") == '"Canonical Name","en","fr"\n"Sofa","Sofa","Canapé"\n'
