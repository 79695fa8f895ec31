"""Every export-layout example of ``include/mappings/README.md`` runs and does what the text says.

The README's examples are fenced blocks tagged ``yaml example=<name>`` (the mapping) and
``csv example=<name> file=<file name>`` (the export); this test writes them out, runs the
transform and checks the outcome stated under each example.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml
from threekit_pipeline.transform import MappingError, transform_files
from threekit_pipeline.transform.mapping import MAPPINGS_DIR, parse_mapping

README = MAPPINGS_DIR / "README.md"
_BLOCK = re.compile(r"^```(yaml|csv) example=(\w+)(?: file=(\S+))?\n(.*?)^```", re.MULTILINE | re.DOTALL)


def examples() -> dict[str, dict]:
    found: dict[str, dict] = {}
    for kind, name, file_name, body in _BLOCK.findall(README.read_text(encoding="utf-8")):
        example = found.setdefault(name, {"files": {}})
        if kind == "yaml":
            example["mapping"] = body
        else:
            example["files"][file_name] = body
    return found


EXAMPLES = examples()


def run_example(tmp_path: Path, name: str):
    example = EXAMPLES[name]
    mapping = parse_mapping(yaml.safe_load(example["mapping"]), label=f"README example {name}")
    paths = []
    for file_name, body in example["files"].items():
        path = tmp_path / file_name
        path.write_text(body, encoding="utf-8")
        paths.append(path)
    result = transform_files(mapping, paths, tmp_path / "out.jsonl", errors=tmp_path / "err.csv")
    assert result.ok, result.files_rejected
    items = {}
    for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        items[entry["query"]["metadata"][0]["defaultValue"]] = entry["product"]
    with open(tmp_path / "err.csv", encoding="utf-8", newline="") as handle:
        errors = list(csv.DictReader(handle))
    return result, items, errors


def options(product: dict) -> dict[str, tuple[list[str], str]]:
    return {a["name"]: (a["values"], a["defaultValue"]) for a in product.get("attributes", []) if a["type"] == "String"}


def prices(product: dict) -> dict[str, dict]:
    pricing = [a for a in product.get("attributes", []) if a["type"] == "Pricing"]
    return {book["pricebook"]: book["currencies"] for book in (pricing[0]["values"] if pricing else [])}


def meta(product: dict) -> dict[str, object]:
    return {m["name"]: m["defaultValue"] for m in product["metadata"]}


def test_every_example_is_checked():
    assert set(EXAMPLES) == {"variants", "filters", "packed", "records", "prices", "metadata", "translations", "report"}
    assert all("mapping" in e and e["files"] for e in EXAMPLES.values())


def test_variants(tmp_path):
    result, items, errors = run_example(tmp_path, "variants")
    assert list(items) == ["tee"]
    assert options(items["tee"]) == {"Color": (["Red", "Blue"], "Red"), "Size": (["S", "M"], "S")}
    assert prices(items["tee"]) == {"default": {"EUR": 19.5}}
    assert meta(items["tee"])["Variant SKUs"] == "tee-red-s, tee-blue-m"
    assert errors == [] and result.rows_rejected == 0


def test_filters(tmp_path):
    _, items, errors = run_example(tmp_path, "filters")
    assert set(items) == {"A-1", "A-2"}
    assert prices(items["A-1"]) == {"default": {"EUR": 10}} and prices(items["A-2"]) == {}
    assert errors == []


def test_packed(tmp_path):
    _, items, errors = run_example(tmp_path, "packed")
    assert list(items) == ["7"]
    assert options(items["7"]) == {"Color": (["Blue"], "Blue"), "Disk": (["16GB", "32GB"], "32GB")}
    assert [(e["file"], e["line"]) for e in errors] == [("combinations.csv", "4")]
    assert "cannot be paired" in errors[0]["reason"]


def test_records(tmp_path):
    _, items, errors = run_example(tmp_path, "records")
    assert list(items) == ["T"]
    assert options(items["T"]) == {"Size": (["S", "M"], "S")}
    assert errors == []


def test_prices(tmp_path):
    _, items, errors = run_example(tmp_path, "prices")
    assert prices(items["M1"]) == {"default": {"EUR": 5, "GBP": 4.5}, "web": {"USD": 6.1}}
    assert prices(items["M2"]) == {"web": {"CHF": 8}, "shop": {"USD": 7.5}}
    (tier,) = errors
    assert tier["line"] == "3" and tier["column"] == "tier price" and "quantity 10" in tier["reason"]


def test_metadata(tmp_path):
    _, items, errors = run_example(tmp_path, "metadata")
    shelf = items["0001"]
    assert shelf["description"] == "Oak & steel"
    assert shelf["tags"] == ["Home / Living", "Sale"]
    assert meta(shelf) == {
        "SKU": "0001",
        "Width (cm)": 0.5,
        "Depth (cm)": 45,
        "Active": "true",
        "color": "Oak",
        "ean": "0400638133393",
    }
    types = {m["name"]: m["type"] for m in shelf["metadata"]}
    assert types["ean"] == "String" and types["Width (cm)"] == "Number"
    rack = meta(items["0002"])
    assert rack["Depth (in)"] == 12 and "Active" not in rack
    (maybe,) = errors
    assert (maybe["line"], maybe["value"]) == ("3", "maybe") and "true/false" in maybe["reason"]


def test_translations(tmp_path):
    result, items, _ = run_example(tmp_path, "translations")
    assert items["S1"]["description"] == "Stool in ash"
    with open(result.translations, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"Canonical Name": "Stool in ash", "de-DE": "Hocker aus Esche", "fr-FR": "Tabouret en frêne"}]


def test_report(tmp_path):
    result, items, errors = run_example(tmp_path, "report")
    assert items["K1"]["name"] == "Kettle"
    (override,) = errors
    assert (override["line"], override["column"], override["value"]) == ("3", "store", "fr")
    assert override["reason"] == "override for store fr not imported"
    # Listed, not counted as a bad row: it can never reject the file.
    assert result.rows_rejected == 0 and result.ok


@pytest.mark.parametrize(
    "change, message",
    [
        ({"item": {"key": "SKU", "parnet": "Parent"}}, "inputs[0].item.parnet: unknown key"),
        ({"sources": {"options": {"pairs": {"name": "Attribute name", "value": "Attribute value"}}}}, "must contain {n}"),
        ({"sources": {"products": {"columns": {"name": {"column": "Name", "ops": ["shout"]}}}}}, "unknown operator 'shout'"),
        ({"sources": {"prices": {"columns": [{"column": "Price"}]}}}, "inputs[0].sources.prices.columns[0]"),
        ({"sources": {"products": {"where": {"Type": {"like": "x"}}, "columns": {"name": "Name"}}}}, "unknown condition 'like'"),
    ],
)
def test_layout_mistakes_name_the_key(change, message):
    document = {"name": "broken", "inputs": [{"patterns": ["*.csv"], "item": {"key": "SKU"}, "sources": {"products": {"columns": {"name": "Name"}}}}]}
    document["inputs"][0].update(change)
    with pytest.raises(MappingError) as caught:
        parse_mapping(document, label="broken.yaml")
    assert str(caught.value).startswith("broken.yaml: ") and message in str(caught.value)


def test_layout_overview_in_the_readme_is_a_valid_mapping():
    readme = README.read_text(encoding="utf-8")
    (block,) = [b.split("\n", 1)[1] for b in readme.split("```")[1::2] if b.startswith("yaml overview\n")]
    mapping = parse_mapping(yaml.safe_load(block), label="README.md")
    (layout,) = mapping.inputs
    assert layout.patterns == ("*.csv",) and set(layout.sources) == {"products", "options", "prices"}
