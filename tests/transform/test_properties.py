"""Property-based tests: every emitted entry is schema-valid, output is deterministic, and the
fast checker agrees with the jsonschema reference on valid and broken entries alike."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threekit_pipeline.transform import check_entry, load_mapping, transform_files, validate_entry

CANONICAL = load_mapping("canonical")
RELAXED = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that exercises the validators: separators, quotes, newlines, control characters, unicode.
nasty_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(",;|\t\"' \n\r/\\#*=+-@.0123456789€ßÜ\x00\x07\x1b\x85")),
        st.characters(blacklist_categories=("Cs",)),
    ),
    max_size=12,
)
sku_text = st.one_of(st.sampled_from(["A1", "B2", "C3", "D-4", "é5", " F6", "G/7", ""]), nasty_text)
number_text = st.one_of(
    st.sampled_from(["12", "12.50", "12,5", "1.234,50", "-3", "NaN", "inf", "abc", "", "0", "007", "1e3"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
)


def csv_text(header: list[str], rows: list[list[str]], separator: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=separator, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@st.composite
def batches(draw):
    separator = draw(st.sampled_from([",", ";", "\t", "|"]))
    files: dict[str, str] = {}
    if draw(st.booleans()):
        rows = draw(
            st.lists(
                st.tuples(sku_text, nasty_text, nasty_text, nasty_text, nasty_text, nasty_text, number_text, nasty_text),
                max_size=8,
            )
        )
        header = ["sku", "name", "description", "keywords", "tags", "model_asset_id", "meta:Weight", "meta:Note"]
        files["products_20261123.csv"] = csv_text(header, [list(r) for r in rows], separator)
    option_rows = draw(
        st.lists(
            st.tuples(sku_text, st.sampled_from(["Color", "Size", ""]), nasty_text, st.sampled_from(["true", "", "x1"])),
            max_size=10,
        )
    )
    files["options_20261123.csv"] = csv_text(["sku", "attribute", "value", "default"], [list(r) for r in option_rows], separator)
    price_rows = draw(
        st.lists(
            st.tuples(sku_text, st.sampled_from(["EU", "US", ""]), st.sampled_from(["EUR", "usd", "XYZ", ""]), number_text),
            max_size=8,
        )
    )
    files["prices_20261123.csv"] = csv_text(["sku", "pricebook", "currency", "price"], [list(r) for r in price_rows], separator)
    part_rows = draw(
        st.lists(
            st.tuples(sku_text, st.sampled_from(["Legs", "Top"]), st.sampled_from(["#oak", "#", "id-1", "a b", ""]), st.sampled_from(["", "item", "upload", "bogus"])),
            max_size=6,
        )
    )
    files["parts_20261123.csv"] = csv_text(["sku", "attribute", "asset", "asset_type"], [list(r) for r in part_rows], separator)
    return files


def transform_batch(files: dict[str, str], folder: Path, run: str):
    inputs = folder / "in"
    inputs.mkdir(exist_ok=True)
    paths = []
    for name, text in sorted(files.items()):
        path = inputs / name
        path.write_text(text, encoding="utf-8", newline="")
        paths.append(path)
    return transform_files(CANONICAL, paths, folder / run / "catalog.jsonl")


@RELAXED
@given(batches())
def test_every_emitted_entry_validates_and_reruns_are_byte_identical(files):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        first = transform_batch(files, folder, "first")
        second = transform_batch(files, folder, "second")
        lines = Path(first.output).read_text(encoding="utf-8").splitlines()
        skus = []
        for line in lines:
            entry = json.loads(line)
            assert validate_entry(entry) == [], line
            assert check_entry(entry) == []
            assert entry["query"]["metadata"][0] == entry["product"]["metadata"][0]
            skus.append(entry["query"]["metadata"][0]["defaultValue"])
        assert skus == sorted(skus) and len(set(skus)) == len(skus)
        assert first.products_written == len(lines)
        side_files = ("output", "hashes", "errors", "skus_path", "lines_path")
        for name in side_files:
            assert Path(getattr(first, name)).read_bytes() == Path(getattr(second, name)).read_bytes(), name
        summary = {k: v for k, v in first.to_dict().items() if k not in (*side_files, "duration_s")}
        again = {k: v for k, v in second.to_dict().items() if k not in (*side_files, "duration_s")}
        assert summary == again
        json.dumps(first.to_dict(include_skus=True))


# --- Checker equivalence ----------------------------------------------------------------------

text = st.text(max_size=6)
name_text = st.text(min_size=1, max_size=6)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
metadata_item = st.one_of(
    st.fixed_dictionaries({"name": name_text, "defaultValue": text, "type": st.just("String")}),
    st.fixed_dictionaries({"name": name_text, "defaultValue": st.one_of(st.integers(), finite), "type": st.just("Number")}),
)
currency_code = st.one_of(st.sampled_from(["EUR", "USD", "GBP"]), st.from_regex(r"[A-Z]{3}", fullmatch=True))
amount = st.one_of(st.integers(min_value=0, max_value=10**9), st.floats(min_value=0, max_value=1e9))
asset_value = st.one_of(
    st.from_regex(r"#[a-z]{1,5}", fullmatch=True), st.fixed_dictionaries({"assetId": name_text})
)
attribute = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("String"), "name": name_text, "values": st.lists(name_text, max_size=3)},
        optional={"defaultValue": text},
    ),
    st.fixed_dictionaries(
        {"type": st.just("Asset"), "name": name_text, "assetType": st.sampled_from(["item", "upload"]), "values": st.lists(asset_value, max_size=3)},
        optional={"defaultValue": st.one_of(st.just({"assetId": ""}), asset_value)},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("Pricing"),
            "name": st.just("Pricing"),
            "values": st.lists(
                st.fixed_dictionaries({"pricebook": name_text, "currencies": st.dictionaries(currency_code, amount, max_size=3)}),
                max_size=3,
            ),
        },
        optional={"defaultValue": st.just({})},
    ),
    st.fixed_dictionaries(
        {"type": st.just("Number"), "name": name_text},
        optional={"step": finite, "lockToStep": st.booleans(), "defaultValue": finite, "min": finite, "max": finite},
    ),
)
rule = st.fixed_dictionaries(
    {},
    optional={
        "name": text,
        "conditions": st.lists(st.fixed_dictionaries({"operator": text, "value": text, "attributeId": text}), max_size=2),
        "actions": st.lists(st.fixed_dictionaries({"type": text, "name": text}), max_size=2),
    },
)
product = st.fixed_dictionaries(
    {},
    optional={
        "name": name_text,
        "type": st.sampled_from(["item", "model", "material", "scene"]),
        "description": text,
        "keywords": st.lists(name_text, max_size=3),
        "tags": st.lists(name_text, max_size=3),
        "asset": st.fixed_dictionaries({"assetId": name_text}, optional={"type": name_text, "configuration": st.just({"a": 1})}),
        "assetId": name_text,
        "parentFolderId": name_text,
        "metadata": st.lists(metadata_item, max_size=3),
        "attributes": st.lists(attribute, max_size=4),
        "rules": st.lists(st.one_of(rule, st.lists(rule, max_size=2)), max_size=2),
    },
)
query = st.fixed_dictionaries(
    {}, optional={"id": name_text, "name": name_text, "metadata": st.lists(metadata_item, min_size=1, max_size=2)}
).filter(bool)
valid_entry = st.fixed_dictionaries({"product": product}, optional={"query": query})

odd_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=5),
    st.sampled_from([math.nan, math.inf, -math.inf, -1.5, 0.0, 2.5]),
    st.sampled_from(["", "x", "#", "#\n", "#t", "eur", "EUR", "EUR\n", "Number", "String", "item"]),
    st.just([]),
    st.just({}),
    st.just(["", "x"]),
    st.just({"assetId": ""}),
)


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


@st.composite
def mutated_entries(draw):
    # Deep copies: st.just() hands out the same object every time, and mutating a shared
    # object would leak into other examples (or make a cycle).
    entry = copy.deepcopy(draw(valid_entry))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in _paths(entry) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = entry
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "add_key"]))
        if action == "replace":
            parent[path[-1]] = copy.deepcopy(draw(odd_value))
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            key = draw(st.sampled_from(["extra", "name", "type", "values", "defaultValue", "currencies"]))
            parent[key] = copy.deepcopy(draw(odd_value))
    return entry


@settings(max_examples=400, deadline=None)
@given(valid_entry)
def test_generated_valid_entries_pass_both_validators(entry):
    assert validate_entry(entry) == []
    assert check_entry(entry) == []


@settings(max_examples=1500, deadline=None)
@given(mutated_entries())
def test_fast_checker_agrees_with_jsonschema(entry):
    snapshot = copy.deepcopy(entry)
    reference = validate_entry(entry)
    fast = check_entry(entry)
    assert bool(reference) == bool(fast), (reference, fast)
    assert entry == snapshot or entry != entry  # validators never modify the entry (nan != nan)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=3)),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.sampled_from(["query", "product", "metadata", "name", "type", "attributes", "values"]), children, max_size=3),
        ),
        max_leaves=12,
    )
)
def test_fast_checker_agrees_on_arbitrary_json(value):
    assert bool(validate_entry(value)) == bool(check_entry(value))


def test_known_invalid_entries_are_caught_by_both():
    base = {
        "query": {"metadata": [{"name": "SKU", "defaultValue": "A", "type": "String"}]},
        "product": {"name": "A", "type": "item", "attributes": []},
    }
    broken = [
        {"product": {"name": ""}},
        {"query": {}, "product": {}},
        {"product": {"type": "sofa"}},
        {"product": {"metadata": [{"name": "W", "defaultValue": "12", "type": "Number"}]}},
        {"product": {"metadata": [{"name": "W", "defaultValue": math.nan, "type": "Number"}]}},
        {"product": {"attributes": [{"type": "Pricing", "name": "Pricing", "values": [{"pricebook": "EU", "currencies": {"EUR": -1}}]}]}},
        {"product": {"attributes": [{"type": "Pricing", "name": "Pricing", "values": [{"pricebook": "EU", "currencies": {"eur": 1}}]}]}},
        {"product": {"attributes": [{"type": "Pricing", "name": "Pricing", "values": [{"pricebook": "EU", "currencies": {"EUR": math.inf}}]}]}},
        {"product": {"attributes": [{"type": "Asset", "name": "Legs", "assetType": "item", "values": ["oak"]}]}},
        {"product": {"attributes": [{"type": "String", "name": "Color", "values": [""]}]}},
        {"product": {"attributes": [{"type": "Color", "name": "Color", "values": []}]}},
        {"product": {"colour": "red"}},
        {**base, "extra": 1},
    ]
    assert validate_entry(base) == [] and check_entry(base) == []
    for entry in broken:
        assert validate_entry(entry), entry
        assert check_entry(entry), entry
