"""Row and file validation: every bad row is excluded with a reason; nothing disappears silently."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import zipfile
from pathlib import Path

import pytest
from threekit_pipeline.transform import TransformResult, load_mapping, read_skus_by_file, transform_files
from threekit_pipeline.transform.core import read_sku_lines

HEADER = "sku,name,description,keywords,tags,model_asset_id\n"


def good_products(count: int, prefix: str = "P") -> str:
    return "".join(f"{prefix}{i:03d},Product {i},Description {i},k{i},t{i},\n" for i in range(count))


@pytest.fixture
def lenient():
    """The canonical mapping without the error-ratio cut-off, to look at row errors only."""
    canonical = load_mapping("canonical")
    sources = {name: dataclasses.replace(s, max_error_ratio=1.0) for name, s in canonical.sources.items()}
    return dataclasses.replace(canonical, sources=sources)


def test_missing_required_columns_reject_the_file_naming_them(write, run):
    products = write("products_20261123.csv", "sku,title\nA,Chair\n")
    outcome = run([products])
    (rejected,) = outcome.result.files_rejected
    assert rejected["file"] == "products_20261123.csv"
    assert "missing required column(s) 'name' (name)" in rejected["reason"]
    assert "found 'sku', 'title'" in rejected["reason"]
    assert outcome.lines == []
    assert outcome.errors == [
        {"file": "products_20261123.csv", "line": "", "column": "", "key": "", "value": "", "reason": rejected["reason"]}
    ]
    assert not outcome.result.ok


@pytest.mark.parametrize(
    "row, column, reason",
    [
        (",Nameless,,,,", "sku", "empty SKU"),
        ("   ,Blank,,,,", "sku", "empty SKU"),
        (" X1,Padded,,,,", "sku", "SKU has leading or trailing whitespace"),
        ("X1 ,Padded,,,,", "sku", "SKU has leading or trailing whitespace"),
        ("A/B,Slash,,,,", "sku", "SKU contains a path character (/ or \\)"),
        ("A\\B,Backslash,,,,", "sku", "SKU contains a path character (/ or \\)"),
        ("X1,,,,,", "name", "empty name"),
        ("X1,Bell\x07,,,,", "name", "contains control characters"),
        ('X1,"Two\nlines",,,,', "name", "contains control characters"),
        ("X1,Esc,desc\x1b,,,", "description", "contains control characters"),
        ("X1," + "n" * 256 + ",,,,", "name", "longer than 255 characters"),
        ("X1,Long," + "d" * 2001 + ",,,", "description", "longer than 2000 characters"),
    ],
)
def test_bad_product_rows_are_excluded_with_a_reason(write, run, lenient, row, column, reason):
    products = write("products_20261123.csv", HEADER + good_products(3) + row + "\n")
    outcome = run([products], lenient)
    assert outcome.result.products_written == 3
    assert set(outcome.entries) == {"P000", "P001", "P002"}
    (error,) = [e for e in outcome.errors if e["line"] == "5"]
    assert (error["file"], error["column"], error["reason"]) == ("products_20261123.csv", column, reason)
    assert outcome.result.rows_rejected == 1


def test_multiline_description_is_allowed(write, run):
    products = write("products_20261123.csv", HEADER + 'A,Sofa,"Soft.\nWashable covers.",,,\n')
    outcome = run([products])
    assert outcome.entries["A"]["product"]["description"] == "Soft.\nWashable covers."


def test_duplicate_sku_rejects_every_later_occurrence_naming_the_first(write, run, lenient):
    text = HEADER + "A,First,,,,\nB,Other,,,,\nA,Second,,,,\nA,Third,,,,\n"
    outcome = run([write("products_20261123.csv", text)], lenient)
    assert outcome.entries["A"]["product"]["name"] == "First"
    duplicates = [(e["line"], e["reason"]) for e in outcome.errors]
    assert duplicates == [("4", "duplicate SKU (first seen on line 2)"), ("5", "duplicate SKU (first seen on line 2)")]


def test_duplicate_sku_across_two_products_files_of_a_batch(write, run, lenient):
    first = write("products_20261123_a.csv", HEADER + "A,First,,,,\n")
    second = write("products_20261123_b.csv", HEADER + "B,Other,,,,\nA,Again,,,,\n")
    outcome = run([first, second], lenient)
    assert outcome.entries["A"]["product"]["name"] == "First"
    assert outcome.error_at("products_20261123_b.csv", 3)[0]["reason"] == (
        "duplicate SKU (first seen in products_20261123_a.csv line 2)"
    )


PRICES = "sku,pricebook,currency,price\n"


@pytest.mark.parametrize(
    "row, column, reason",
    [
        ("A,EU,EUR,abc", "price", "price is not a number"),
        ("A,EU,EUR,12.5.0", "price", "price is not a number"),
        ("A,EU,EUR,", "price", "empty price"),
        ("A,EU,EUR,-3.50", "price", "negative price"),
        ("A,EU,EUR,NaN", "price", "price is NaN or infinite"),
        ("A,EU,EUR,inf", "price", "price is NaN or infinite"),
        ("A,EU,EUR,-Infinity", "price", "price is NaN or infinite"),
        ("A,EU,EUR,1" + "0" * 400, "price", "price is NaN or infinite"),
        ("A,EU,XYZ,10", "currency", "unknown currency code (not ISO 4217): XYZ"),
        ("A,EU,EURO,10", "currency", "unknown currency code (not ISO 4217): EURO"),
        ("A,EU,,10", "currency", "empty currency"),
        ("A,,EUR,10", "pricebook", "empty pricebook"),
    ],
)
def test_bad_price_rows(write, run, lenient, row, column, reason):
    products = write("products_20261123.csv", HEADER + "A,Chair,,,,\n")
    prices = write("prices_20261123.csv", PRICES + "A,US,USD,20\n" + row + "\n")
    outcome = run([products, prices], lenient)
    (error,) = outcome.errors
    assert (error["file"], error["line"], error["column"], error["reason"]) == ("prices_20261123.csv", "3", column, reason)
    pricing = outcome.entries["A"]["product"]["attributes"][-1]
    assert pricing == {
        "type": "Pricing",
        "name": "Pricing",
        "values": [{"pricebook": "US", "currencies": {"USD": 20}}],
        "defaultValue": {},
    }


def test_price_formats_and_currency_case(write, run):
    prices = write(
        "prices_20261123.csv",
        PRICES + 'A,EU,eur,"1299,50"\nA,US,USD,1399.99\nA,CH,chf,"1.234,50"\nA,GB,GBP,"2,345.10"\nA,JP,JPY,0\n',
    )
    pricing = run([prices]).entries["A"]["product"]["attributes"][0]
    assert pricing["values"] == [
        {"pricebook": "CH", "currencies": {"CHF": 1234.5}},
        {"pricebook": "EU", "currencies": {"EUR": 1299.5}},
        {"pricebook": "GB", "currencies": {"GBP": 2345.1}},
        {"pricebook": "JP", "currencies": {"JPY": 0}},
        {"pricebook": "US", "currencies": {"USD": 1399.99}},
    ]


def test_duplicate_price_key_keeps_the_first(write, run, lenient):
    prices = write("prices_20261123.csv", PRICES + "A,EU,EUR,10\nA,EU,EUR,12\n")
    outcome = run([prices], lenient)
    assert outcome.entries["A"]["product"]["attributes"][0]["values"] == [{"pricebook": "EU", "currencies": {"EUR": 10}}]
    assert outcome.errors[0]["line"] == "3"
    assert outcome.errors[0]["reason"] == "duplicate price for this SKU, pricebook and currency (first on line 2)"


def test_rows_for_skus_absent_from_the_batch_products_file(write, run, lenient):
    products = write("products_20261123.csv", HEADER + "A,Chair,,,,\nB,,,,,\n")
    options = write(
        "options_20261123.csv", "sku,attribute,value,default\nA,Color,Red,\nZ,Color,Blue,\nB,Color,Green,\n"
    )
    outcome = run([products, options], lenient)
    assert set(outcome.entries) == {"A"}
    assert outcome.error_at("options_20261123.csv", 3)[0]["reason"] == (
        "SKU not in the batch products file (products_20261123.csv)"
    )
    assert outcome.error_at("options_20261123.csv", 4)[0]["reason"] == (
        "product row for this SKU rejected (products_20261123.csv line 3)"
    )


def test_option_default_values(write, run, lenient):
    options = write(
        "options_20261123.csv",
        "sku,attribute,value,default\nA,Color,Red,no\nA,Color,Blue,YES\nA,Size,S,\nA,Size,M,maybe\n",
    )
    outcome = run([options], lenient)
    color, size = outcome.entries["A"]["product"]["attributes"]
    assert color == {"type": "String", "name": "Color", "values": ["Red", "Blue"], "defaultValue": "Blue"}
    assert size == {"type": "String", "name": "Size", "values": ["S"], "defaultValue": "S"}
    assert outcome.errors[0]["reason"] == "default must be true or false"
    assert outcome.errors[0]["value"] == "maybe"


def test_option_rows_need_attribute_and_value(write, run, lenient):
    options = write("options_20261123.csv", "sku,attribute,value\nA,,Red\nA,Color,\nA,Color,Blue\n")
    outcome = run([options], lenient)
    assert [e["reason"] for e in outcome.errors] == ["empty attribute name", "empty option value"]
    assert outcome.entries["A"]["product"]["attributes"][0]["values"] == ["Blue"]


def test_part_rows(write, run, lenient):
    parts = write(
        "parts_20261123.csv",
        "sku,attribute,asset,asset_type\n"
        "A,Legs,#oak-legs,\n"
        "A,Legs,1f0e2d3c-0000-4000-8000-000000000001,ITEM\n"
        "A,Legs,#oak-legs,item\n"
        "A,Manual,img-1,upload\n"
        "A,Legs,#x,material\n"
        "A,Legs,#,item\n"
        "A,Legs,has space,item\n"
        "A,Legs,x,sofa\n",
    )
    outcome = run([parts], lenient)
    legs, manual = outcome.entries["A"]["product"]["attributes"]
    assert legs == {
        "type": "Asset",
        "name": "Legs",
        "assetType": "item",
        "values": ["#oak-legs", {"assetId": "1f0e2d3c-0000-4000-8000-000000000001"}],
    }
    assert manual == {"type": "Asset", "name": "Manual", "assetType": "upload", "values": [{"assetId": "img-1"}]}
    reasons = {e["line"]: e["reason"] for e in outcome.errors}
    assert reasons["6"] == "asset_type conflicts with 'item' on line 2"
    assert reasons["7"] == "empty tag after '#'"
    assert reasons["8"] == "asset id or tag contains whitespace"
    line_9 = [e["reason"] for e in outcome.error_at("parts_20261123.csv", 9)]
    assert any(r.startswith("unknown asset_type (allowed: item, upload, model, material)") for r in line_9)
    assert outcome.result.rows_rejected == 4


def test_error_ratio_rejects_the_whole_file(write, run):
    # 2 bad rows of 20 = 10% > 5%: nothing of the file is imported.
    rows = good_products(18) + ",No SKU,,,,\nP000,Duplicate,,,,\n"
    outcome = run([write("products_20261123.csv", HEADER + rows)])
    assert outcome.lines == []
    assert outcome.result.per_file[0]["status"] == "rejected"
    assert outcome.result.files_rejected[0]["reason"] == (
        "too many bad rows: 2 of 20 (10.0%) rejected, above the limit of 5.0%"
    )
    assert [e["line"] for e in outcome.errors] == ["", "20", "21"]


def test_error_ratio_at_the_limit_keeps_the_good_rows(write, run):
    rows = good_products(19) + ",No SKU,,,,\n"  # 1 of 20 = 5%: not above the limit
    outcome = run([write("products_20261123.csv", HEADER + rows)])
    assert outcome.result.ok and outcome.result.products_written == 19
    assert outcome.result.per_file[0] == {
        "file": "products_20261123.csv",
        "input": "products_20261123.csv",
        "source": "products",
        "rows": 20,
        "rejected_rows": 1,
        "status": "ok",
        "reason": "",
    }


def test_rejected_products_file_rejects_the_rest_of_the_batch(write, run):
    products = write("products_20261123.csv", HEADER + ",x,,,,\n,y,,,,\n")
    options = write("options_20261123.csv", "sku,attribute,value\nA,Color,Red\n")
    prices = write("prices_20261123.csv", PRICES + "A,EU,EUR,10\n")
    outcome = run([products, options, prices])
    assert outcome.lines == []
    statuses = {p["file"]: (p["status"], p["reason"]) for p in outcome.result.per_file}
    assert statuses["options_20261123.csv"][0] == "rejected"
    assert statuses["options_20261123.csv"][1].startswith("batch products file rejected (products_20261123.csv: too many")
    assert statuses["prices_20261123.csv"][1].startswith("batch products file rejected")
    file_level = [e for e in outcome.errors if e["line"] == ""]
    assert [e["file"] for e in file_level] == ["products_20261123.csv", "options_20261123.csv", "prices_20261123.csv"]


def test_files_without_a_products_file_update_only_what_they_carry(write, run):
    options = write("options_20261123.csv", "sku,attribute,value\nA,Color,Red\n")
    prices = write("prices_20261123.csv", PRICES + "A,EU,EUR,10\nB,EU,EUR,5\n")
    outcome = run([options, prices])
    assert outcome.lines[0] == (
        '{"query":{"metadata":[{"name":"SKU","defaultValue":"A","type":"String"}]},'
        '"product":{"type":"item","metadata":[{"name":"SKU","defaultValue":"A","type":"String"}],'
        '"attributes":[{"type":"String","name":"Color","values":["Red"],"defaultValue":"Red"},'
        '{"type":"Pricing","name":"Pricing","values":[{"pricebook":"EU","currencies":{"EUR":10}}],"defaultValue":{}}]}}'
    )
    assert "name" not in outcome.entries["B"]["product"]
    assert outcome.result.skus_by_file == {"options_20261123.csv": ["A"], "prices_20261123.csv": ["A", "B"]}


def test_metadata_types_and_empty_cells(write, run):
    text = (
        "sku,name,meta:Weight,meta:EAN,meta:Note,meta:Count\n"
        "A,One,\"12,5\",0400638133393,hello,1\n"
        "B,Two,7,4006381333931,,2\n"
        "C,Three,,,,3\n"
    )
    outcome = run([write("products_20261123.csv", text)])
    meta = {sku: e["product"]["metadata"] for sku, e in outcome.entries.items()}
    assert meta["A"] == [
        {"name": "SKU", "defaultValue": "A", "type": "String"},
        {"name": "Weight", "defaultValue": 12.5, "type": "Number"},
        {"name": "EAN", "defaultValue": "0400638133393", "type": "String"},
        {"name": "Note", "defaultValue": "hello", "type": "String"},
        {"name": "Count", "defaultValue": 1, "type": "Number"},
    ]
    assert meta["C"] == [
        {"name": "SKU", "defaultValue": "C", "type": "String"},
        {"name": "Count", "defaultValue": 3, "type": "Number"},
    ]


def test_keywords_and_tags_are_split_trimmed_and_deduplicated(write, run):
    text = HEADER + "A,Chair,, chair ; dining;;chair,new;sale,\n"
    product = run([write("products_20261123.csv", text)]).entries["A"]["product"]
    assert product["keywords"] == ["chair", "dining"]
    assert product["tags"] == ["new", "sale"]


def test_errors_csv_truncates_values_and_neutralises_formulas(write, run, lenient):
    long_name = "=HYPERLINK(" + "x" * 300
    text = HEADER + f"A,{long_name},,,,\n" + "@SUM(1)/x,Name,,,,\n" + "-2/3,Name,,,,\n"
    outcome = run([write("products_20261123.csv", text)], lenient)
    by_line = {e["line"]: e for e in outcome.errors}
    assert by_line["2"]["value"] == "'" + long_name[:200]
    assert by_line["3"]["value"] == "'@SUM(1)/x"
    assert by_line["4"]["value"] == "'-2/3"


def test_nothing_is_lost_every_row_is_written_or_listed(write, run, lenient):
    rows = [f"S{i:03d},Name {i},,,," for i in range(30)]
    rows[3] = ",Missing SKU,,,,"
    rows[7] = "S001,Duplicate,,,,"
    rows[11] = "S0/11,Slash,,,,"
    rows[19] = "S019,,,,,"
    products = write("products_20261123.csv", HEADER + "\n".join(rows) + "\n")
    price_rows = [f"S{i:03d},EU,EUR,{i}.5" for i in range(30)]
    price_rows[5] = "S005,EU,EUR,oops"
    prices = write("prices_20261123.csv", PRICES + "\n".join(price_rows) + "\n")
    outcome = run([products, prices], lenient)
    rejected_lines = {(e["file"], int(e["line"])) for e in outcome.errors if e["line"]}
    for number, row in enumerate(rows, start=2):
        sku = row.split(",")[0]
        written = sku in outcome.entries and outcome.entries[sku]["product"].get("name") == row.split(",")[1]
        assert written != (("products_20261123.csv", number) in rejected_lines), row
    for number, row in enumerate(price_rows, start=2):
        sku = row.split(",")[0]
        priced = sku in outcome.entries and any(
            a["type"] == "Pricing" for a in outcome.entries[sku]["product"].get("attributes", [])
        )
        assert priced != (("prices_20261123.csv", number) in rejected_lines), row
    assert outcome.result.rows_read == 60
    assert outcome.result.rows_rejected == len(rejected_lines)


def test_unknown_file_is_rejected_not_ignored(write, run):
    outcome = run([write("inventory_20261123.csv", "sku,qty\nA,1\n")])
    (rejected,) = outcome.result.files_rejected
    assert rejected["reason"].startswith("file name matches no source of mapping 'canonical' (products: products*.csv")


def test_generic_zip_members_are_classified_one_by_one(tmp_path, run):
    path = tmp_path / "catalog_20261123.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("products_20261123.csv", HEADER + "A,Chair,,,,\n")
        archive.writestr("prices_20261123.csv", PRICES + "A,EU,EUR,10\n")
        archive.writestr("readme.txt", "hello")
    outcome = run([path])
    assert set(outcome.entries) == {"A"}
    assert [(p["file"], p["source"], p["status"]) for p in outcome.result.per_file] == [
        ("catalog_20261123.zip!products_20261123.csv", "products", "ok"),
        ("catalog_20261123.zip!prices_20261123.csv", "prices", "ok"),
        ("catalog_20261123.zip!readme.txt", None, "rejected"),
    ]
    assert outcome.result.skus_by_file == {"catalog_20261123.zip": ["A"]}


def test_zip_named_like_a_source_must_hold_one_file(tmp_path, run):
    path = tmp_path / "products_20261123.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", HEADER)
        archive.writestr("b.csv", HEADER)
    (rejected,) = run([path]).result.files_rejected
    assert rejected["reason"] == "archive named like a products file must hold exactly one data file, found 2: a.csv, b.csv"


def test_wide_option_errors_name_the_source_column(write, run, tmp_path):
    mapping = tmp_path / "wide.yaml"
    mapping.write_text(
        "sources:\n"
        "  options:\n"
        "    patterns: [pim_options*.csv]\n"
        "    columns: {sku: SKU}\n"
        "    wide: {columns: {Colour: Color, Legs: Leg Finish}, value_separator: '|', default_marker: '*'}\n"
        "    max_error_ratio: 1\n",
        encoding="utf-8",
    )
    options = write("pim_options_20261123.csv", "SKU,Colour,Legs\nA,Red|*Blue| |Red,Oak\nB,Gr\x01een,Oak*|Ash\n")
    outcome = run([options], mapping)
    assert outcome.entries["A"]["product"]["attributes"] == [
        {"type": "String", "name": "Color", "values": ["Red", "Blue"], "defaultValue": "Blue"},
        {"type": "String", "name": "Leg Finish", "values": ["Oak"], "defaultValue": "Oak"},
    ]
    assert outcome.entries["B"]["product"]["attributes"] == [
        {"type": "String", "name": "Leg Finish", "values": ["Oak", "Ash"], "defaultValue": "Oak"},
    ]
    (error,) = outcome.errors
    assert (error["line"], error["column"], error["reason"]) == ("3", "Colour", "contains control characters")


def test_rerun_converges_to_identical_files(write, run):
    products = write("products_20261123.csv", HEADER + good_products(5) + ",bad,,,,\n")
    first, second = run([products], "canonical"), run([products], "canonical")
    assert first.lines == second.lines
    for key in ("output", "hashes", "errors", "skus_path", "lines_path"):
        a = getattr(first.result, key)
        b = getattr(second.result, key)
        with open(a, "rb") as fa, open(b, "rb") as fb:
            assert fa.read() == fb.read(), key


def test_side_files_quote_skus_like_the_csv_module(write, run):
    text = HEADER + 'A,One,,,,\n"B,1",Two,,,,\n"C""3",Three,,,,\n'
    outcome = run([write("products_20261123.csv", text)])
    with open(outcome.result.hashes, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert [r[0] for r in rows] == ["sku", "A", "B,1", 'C"3']
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    assert Path(outcome.result.hashes).read_text(encoding="utf-8") == buffer.getvalue()
    assert read_skus_by_file(Path(outcome.result.skus_path)) == {"products_20261123.csv": ["A", "B,1", 'C"3']}
    assert read_sku_lines(outcome.result.lines_path) == {
        "A": ("products_20261123.csv", 2),
        "B,1": ("products_20261123.csv", 3),
        'C"3': ("products_20261123.csv", 4),
    }


def test_every_written_product_keeps_the_file_and_line_it_came_from(write, run):
    """``.lines.csv``: each product's line in its products file (header = 1); a bad row is left out."""
    products = write("products_20261123.csv", HEADER + good_products(20) + "B,,,,,\n" + good_products(20, "Q"))
    outcome = run([products])
    assert outcome.result.rows_rejected == 1
    lines = read_sku_lines(outcome.result.lines_path)
    assert len(lines) == outcome.result.products_written == 40 and "B" not in lines
    assert lines["P000"] == ("products_20261123.csv", 2) and lines["P019"] == ("products_20261123.csv", 21)
    assert lines["Q000"] == ("products_20261123.csv", 23)  # after the rejected row on line 22


def test_progress_is_reported_per_file_and_at_the_end(write, tmp_path):
    products = write("products_20261123.csv", HEADER + good_products(3))
    prices = write("prices_20261123.csv", PRICES + "P000,EU,EUR,1\n")
    calls = []
    transform_files(load_mapping("canonical"), [products, prices], tmp_path / "o.jsonl", progress=lambda *a: calls.append(a))
    assert calls == [("read", 1, 2), ("read", 2, 2), ("write", 3, 3)]


def test_result_round_trips_through_json(write, run):
    outcome = run([write("products_20261123.csv", HEADER + good_products(2))])
    data = json.loads(json.dumps(outcome.result.to_dict()))
    assert "skus_by_file" not in data
    assert TransformResult.from_dict(data).products_written == 2
    assert outcome.result.to_dict(include_skus=True)["skus_by_file"] == {"products_20261123.csv": ["P000", "P001"]}


def test_an_entry_failing_the_schema_check_is_not_written_but_reported(write, run, monkeypatch):
    import threekit_pipeline.transform.core as core

    def reject_b(entry):
        return entry["query"]["metadata"][0]["defaultValue"] != "P001"

    monkeypatch.setattr(core, "quick_valid", reject_b)
    monkeypatch.setattr(core, "check_entry", lambda entry: [] if reject_b(entry) else ["$.product: broken"])
    products = write("products_20261123.csv", HEADER + good_products(3))
    prices = write("prices_20261123.csv", PRICES + "P001,EU,EUR,1\nP002,EU,EUR,2\n")
    outcome = run([products, prices])
    assert sorted(outcome.entries) == ["P000", "P002"]
    assert outcome.result.products_written == 2 and outcome.result.attributes_written == 1
    assert outcome.errors == [
        {
            "file": "products_20261123.csv",
            "line": "3",
            "column": "",
            "key": "P001",
            "value": "P001",
            "reason": "entry fails the import schema: $.product: broken",
        }
    ]
    assert "P001" not in Path(outcome.result.hashes).read_text(encoding="utf-8")
    assert outcome.result.skus_by_file == {"products_20261123.csv": ["P000", "P002"], "prices_20261123.csv": ["P002"]}


def test_row_errors_name_the_sku_and_pricebooks_resolve_to_ids(tmp_path):
    from threekit_pipeline.transform import transform_files

    folder = tmp_path / "pb"
    folder.mkdir()
    (folder / "products_20261123.csv").write_text("sku,name\n" + "".join(f"S-{n},Chair {n}\n" for n in range(40)))
    prices = "".join(f"S-{n},{'eu retail' if n % 2 else 'EU Retail'},EUR,{n}\n" for n in range(40))
    (folder / "prices_20261123.csv").write_text("sku,pricebook,currency,price\n" + prices + "S-3,Mars,EUR,1\n")
    result = transform_files(
        "canonical",
        [folder / "products_20261123.csv", folder / "prices_20261123.csv"],
        folder / "out.jsonl",
        pricebooks={"EU Retail": "pb-1", "US Retail": "pb-2"},
    )
    import csv as _csv
    import json as _json

    with open(result.errors, newline="", encoding="utf-8") as handle:
        [row] = list(_csv.DictReader(handle))
    assert (row["file"], row["line"], row["key"], row["value"]) == ("prices_20261123.csv", "42", "S-3", "Mars")
    assert row["reason"] == "unknown pricebook 'Mars'; known: EU Retail, US Retail"
    books = {
        book["pricebook"]
        for line in open(result.output, encoding="utf-8")
        for a in _json.loads(line)["product"].get("attributes", [])
        if a["type"] == "Pricing"
        for book in a["values"]
    }
    assert books == {"pb-1"}
