"""Real-world input defects: every value is read right or its row is reported, never guessed.

Each kind is tested twice: with the shared case files (``../shared/cases/input-defects``
beside the clone; skipped when absent) and with files generated here in the same shape, so
the rule is tested and not one file.
"""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path

import openpyxl
import pytest
import yaml
from threekit_pipeline.transform import load_mapping
from threekit_pipeline.transform.mapping import MAPPINGS_DIR, parse_mapping
from threekit_pipeline.transform.readers import read_csv_bytes

CASES = Path(__file__).resolve().parents[2] / ".." / "shared" / "cases" / "input-defects"


def case(name: str) -> Path:
    folder = CASES / name
    if not folder.is_dir():
        pytest.skip(f"shared input-defect cases not found at {CASES.resolve()} (CI puts shared/ beside the clone)")
    return folder


def lenient(name: str = "canonical", **source_changes):
    """A shipped mapping with max_error_ratio 1.0 (every good row must still come out), plus changes.

    ``source_changes``: ``{source: {key: value}}`` merged into that source's mapping.
    """
    data = yaml.safe_load((MAPPINGS_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    data["max_error_ratio"] = 1.0
    top = source_changes.pop("top", {})
    data.update(top)
    for source, changes in source_changes.items():
        data["sources"][source].pop("max_error_ratio", None)
        data["sources"][source].update(changes)
    for source in data["sources"].values():
        source.pop("max_error_ratio", None)
    return parse_mapping(data, label=f"{name} (lenient)")


def metadata(entry: dict) -> dict[str, tuple]:
    return {m["name"]: (m["defaultValue"], m["type"]) for m in entry["product"]["metadata"]}


def pricing(entry: dict) -> dict[str, dict]:
    for attribute in entry["product"].get("attributes", []):
        if attribute["type"] == "Pricing":
            return {book["pricebook"]: book["currencies"] for book in attribute["values"]}
    return {}


def attribute(entry: dict, name: str) -> dict:
    return next(a for a in entry["product"].get("attributes", []) if a["name"] == name)


def errors_at(outcome, file: str, line: int, column: str | None = None) -> list[dict]:
    return [e for e in outcome.error_at(file, line) if column is None or e["column"] == column]


def assert_every_row_error_names_its_key(outcome) -> None:
    for error in outcome.errors:
        if error["line"] and "header" not in error["reason"]:
            assert error["key"], error


# --- 1. Identifiers are text --------------------------------------------------------------------


def test_case_ean_is_string_in_every_batch(run):
    folder = case("ean-type-flips-per-batch")
    first = run([folder / "products_20261123.csv"])
    second = run([folder / "products_20261124.csv"])
    assert metadata(first.entries["SOFA-001"])["EAN"] == ("4006381333931", "String")
    assert metadata(first.entries["CHAIR-001"])["EAN"] == ("4006381333948", "String")
    assert metadata(second.entries["CHAIR-001"])["EAN"] == ("0400638133393", "String")
    for outcome in (first, second):
        assert metadata(outcome.entries["SOFA-001"])["Weight kg"] == (42.5, "Number")
        assert metadata(outcome.entries["CHAIR-001"])["Weight kg"] == (6, "Number")
        assert outcome.errors == []


@pytest.mark.parametrize("header", ["meta:GTIN", "meta:UPC", "meta:Part Number", "meta:Artikelnummer", "meta:ISBN-13", "meta:Supplier code"])
def test_identifier_columns_are_never_typed_by_content(run, write, header):
    mapping = lenient(products={"identifiers": ["Supplier code"]})
    path = write("products_20261123.csv", f"sku,name,{header},meta:Width\nA-1,One,12345,10\nA-2,Two,67890,20\n")
    outcome = run([path], mapping)
    key = header.split(":", 1)[1]
    assert metadata(outcome.entries["A-1"])[key] == ("12345", "String")
    assert metadata(outcome.entries["A-2"])["Width"] == (20, "Number")
    assert outcome.errors == []


@pytest.mark.parametrize(
    ("column", "value"),
    [("sku", "1.23457E+11"), ("sku", "4006381333948.0"), ("sku", '="000123"'), ("meta:EAN", "4.00638E+12"), ("meta:GTIN", "12345.0"), ("meta:EAN", '="0400638133393"'), ("meta:EAN", "9,78E+12")],
)
def test_spreadsheet_damaged_identifiers_are_reported_not_imported(run, write, column, value):
    sku, ean_header = ("X", "meta:EAN") if column == "sku" else ("GOOD-1", column)
    cell_sku = value if column == "sku" else sku
    cell_ean = "4006381333931" if column == "sku" else value
    quoted = lambda text: '"' + text.replace('"', '""') + '"'  # noqa: E731
    text = f"sku,name,{ean_header}\n{quoted(cell_sku)},Damaged,{quoted(cell_ean)}\nOK-1,Fine,4006381333948\n"
    outcome = run([write("products_20261123.csv", text)], lenient())
    assert [e["column"] for e in errors_at(outcome, "products_20261123.csv", 2)] == [column]
    key = ean_header.split(":")[1]
    if column == "sku":
        assert sorted(outcome.entries) == ["OK-1"]
    else:
        # A damaged metadata identifier is left out and reported; the product itself is imported.
        assert sorted(outcome.entries) == ["GOOD-1", "OK-1"]
        assert metadata(outcome.entries["GOOD-1"]).get(key, ("", "String"))[0] == ""
        assert "left out" in errors_at(outcome, "products_20261123.csv", 2)[0]["reason"]
    assert metadata(outcome.entries["OK-1"])[key] == ("4006381333948", "String")


def test_case_excel_mangled_identifiers(run):
    folder = case("excel-mangled-identifiers")
    outcome = run([folder / "products_20261123.csv"], lenient())
    assert {e["column"] for e in errors_at(outcome, "products_20261123.csv", 2)} <= {"sku", "meta:EAN"}
    assert errors_at(outcome, "products_20261123.csv", 2)
    assert "1.23457E+11" not in outcome.entries
    chair = outcome.entries.get("CHAIR-001")
    if chair is None:
        assert errors_at(outcome, "products_20261123.csv", 3, "meta:EAN")
    else:
        ean = metadata(chair).get("EAN", ("", "String"))
        if ean[0] == "":
            assert errors_at(outcome, "products_20261123.csv", 3, "meta:EAN"), "EAN left out without a report"
        else:
            assert ean == ("4006381333948", "String")
        assert chair["product"]["name"] == "Bergen Chair"
    assert "E+" not in "\n".join(outcome.lines) and "4006381333948.0" not in "\n".join(outcome.lines)
    assert_every_row_error_names_its_key(outcome)


def test_xlsx_zero_padded_number_format_is_read_as_displayed(run, tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["sku", "name", "meta:EAN"])
    sheet.append([123, "Padded", 400638133393])
    sheet["A2"].number_format = "000000"
    sheet["C2"].number_format = "0000000000000"
    path = tmp_path / "products_20261123.xlsx"
    book.save(path)
    outcome = run([path])
    assert metadata(outcome.entries["000123"])["EAN"] == ("0400638133393", "String")


# --- 2. Numbers are read or refused ---------------------------------------------------------------


def test_case_ambiguous_thousands_are_reported_never_the_smaller_reading(run):
    folder = case("ambiguous-thousands-grouping")
    outcome = run(sorted(folder.glob("*.csv")), lenient())
    prices = {sku: pricing(entry) for sku, entry in outcome.entries.items()}
    expected = {"SOFA-001": {"US Retail": {"USD": 1299}, "EU Retail": {"EUR": 1299}}, "TABLE-001": {"US Retail": {"USD": 12500}}}
    for line, (sku, book) in {2: ("SOFA-001", "US Retail"), 3: ("SOFA-001", "EU Retail"), 4: ("TABLE-001", "US Retail")}.items():
        written = prices.get(sku, {}).get(book)
        assert written == expected[sku][book] or (written is None and errors_at(outcome, "prices_20261123.csv", line, "price"))
    assert prices["CHAIR-001"] == {"US Retail": {"USD": 189.5}}
    stock = {sku: metadata(entry).get("Stock") for sku, entry in outcome.entries.items()}
    assert stock["CHAIR-001"] == (87, "Number")
    for line, (sku, value) in {2: ("SOFA-001", 1250), 3: ("TABLE-001", 2000)}.items():
        assert stock.get(sku) == (value, "Number") or errors_at(outcome, "products_20261123.csv", line, "meta:Stock")
    text = "\n".join(outcome.lines)
    for wrong in ("1.299", "12.5,", '"USD":12.5', "1.25,", '"defaultValue":2,'):
        assert wrong not in text
    assert_every_row_error_names_its_key(outcome)


@pytest.mark.parametrize(
    ("price", "expected"),
    [("2.500", None), ('"-1,000"', None), ("999.999", None), ('"0,125"', 0.125), ('"1,299.00"', 1299), ('"1.299,5"', 1299.5), ("12.50", 12.5), ('"1,5"', 1.5)],
)
def test_decimal_auto_reads_only_unambiguous_numbers(run, write, price, expected):
    products = write("products_20261123.csv", "sku,name\nP-1,One\n")
    prices = write("prices_20261123.csv", f"sku,pricebook,currency,price\nP-1,Retail,EUR,{price}\n")
    outcome = run([products, prices], lenient())
    if expected is None:
        reasons = [e["reason"] for e in errors_at(outcome, "prices_20261123.csv", 2, "price")]
        assert reasons and "ambiguous" in reasons[0] or "not a number" in reasons[0]
        assert pricing(outcome.entries["P-1"]) == {}
    else:
        assert pricing(outcome.entries["P-1"]) == {"Retail": {"EUR": expected}}


def test_declared_locale_is_applied_exactly(run, write):
    mapping = lenient(prices={"decimal": ",", "thousands": "."}, products={"decimal": ".", "thousands": ","})
    products = write("products_20261123.csv", 'sku,name,meta:Stock\nP-1,One,"1,250"\nP-2,Two,87\n')
    prices = write("prices_20261123.csv", 'sku,pricebook,currency,price\nP-1,Retail,EUR,1.299\nP-2,Retail,EUR,"12,5"\n')
    outcome = run([products, prices], mapping)
    assert pricing(outcome.entries["P-1"]) == {"Retail": {"EUR": 1299}}
    assert pricing(outcome.entries["P-2"]) == {"Retail": {"EUR": 12.5}}
    assert metadata(outcome.entries["P-1"])["Stock"] == (1250, "Number")
    assert outcome.errors == []


def test_declared_number_metadata_refuses_text_as_row_errors(run, write):
    mapping = lenient(products={"metadata": {"prefix": "meta:", "types": {"Width": "Number"}}})
    path = write("products_20261123.csv", "sku,name,meta:Width\nP-1,One,12\nP-2,Two,wide\n")
    outcome = run([path], mapping)
    assert metadata(outcome.entries["P-1"])["Width"] == (12, "Number")
    [error] = errors_at(outcome, "products_20261123.csv", 3, "meta:Width")
    assert error["key"] == "P-2" and "is Number" in error["reason"]


def test_a_metadata_type_chosen_by_an_earlier_batch_stays(tmp_path, write):
    from threekit_pipeline.transform import transform_files

    first = transform_files(lenient(), [write("products_20261123.csv", "sku,name,meta:Size\nP-1,One,10\n")], tmp_path / "a.jsonl")
    assert first.metadata_types == {"Size": "Number"}
    second = transform_files(
        lenient(),
        [write("products_20261124.csv", "sku,name,meta:Size,meta:Note\nP-1,One,10A,\nP-2,Two,12,7\n")],
        tmp_path / "b.jsonl",
        metadata_types={**first.metadata_types, "Note": "String"},
    )
    assert second.metadata_types == {"Size": "Number", "Note": "String"}
    lines = (tmp_path / "b.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"name":"Size","defaultValue":12,"type":"Number"' in lines[0]
    assert '"name":"Note","defaultValue":"7","type":"String"' in lines[0]
    errors = (tmp_path / "b.jsonl.errors.csv").read_text()
    assert "products_20261124.csv,2,meta:Size,P-1,10A" in errors


# --- 3. Structure ---------------------------------------------------------------------------------


def test_case_truncated_rows(run):
    folder = case("truncated-rows")
    outcome = run(sorted(folder.glob("*.csv")), lenient())
    [short] = errors_at(outcome, "products_20261123.csv", 5)
    assert "2 fields" in short["reason"] and "9" in short["reason"] and short["key"] == "TABLE-001"
    assert "fields" in errors_at(outcome, "prices_20261123.csv", 3)[0]["reason"]
    assert "TABLE-001" not in outcome.entries
    sofa, chair = outcome.entries["SOFA-001"], outcome.entries["CHAIR-001"]
    assert sofa["product"]["name"] == "Oslo Sofa" and "\nRemovable covers." in sofa["product"]["description"]
    assert metadata(sofa)["Weight kg"] == (42.5, "Number") and metadata(sofa)["EAN"] == ("4006381333931", "String")
    assert pricing(sofa) == {"EU Retail": {"EUR": 1299}}
    assert chair["product"]["name"] == "Bergen Chair" and metadata(chair)["Weight kg"] == (6, "Number")
    assert pricing(chair) == {"EU Retail": {"EUR": 189.5}}


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("where", ["middle", "last"])
def test_short_rows_are_never_padded(run, write, newline, where):
    rows = ["A-1,One,first", "A-2,Tw", "A-3,Three,third"] if where == "middle" else ["A-1,One,first", "A-3,Three,third", "A-2,Tw"]
    text = newline.join(["sku,name,description", *rows])
    outcome = run([write("products_20261123.csv", text)], lenient())
    line = 3 if where == "middle" else 4
    [error] = errors_at(outcome, "products_20261123.csv", line)
    assert error["reason"] == "row has 2 fields, the header has 3" and error["key"] == "A-2"
    assert sorted(outcome.entries) == ["A-1", "A-3"]


def test_case_stray_carriage_return(run):
    folder = case("stray-carriage-return")
    mixed = run([folder / "products_20261123.csv"])
    assert {sku: (e["product"]["name"], e["product"]["description"]) for sku, e in mixed.entries.items()} == {
        "SOFA-001": ("Oslo Sofa", "Three-seat sofa"),
        "CHAIR-001": ("Bergen Chair", "Dining chair"),
        "TABLE-001": ("Turku Table", "Extendable"),
    }
    assert mixed.errors == []
    lone = run([folder / "products_20261124.csv"], lenient())
    assert "Chair" not in lone.entries
    for sku in ("SOFA-001", "TABLE-001"):
        assert metadata(lone.entries[sku])["Collection"] == ("Nordic", "String")
    chair = lone.entries.get("CHAIR-001")
    assert chair is None and errors_at(lone, "products_20261124.csv", 3) or chair["product"]["description"] == "Dining chair"


def test_lone_cr_never_splits_a_record_quoted_or_not(write, run):
    text = 'sku,name,description\r\nA-1,Split\rname,plain\nA-2,Fine,"kept\rinside quotes"\r\nA-3,Last,x\n'
    table = read_csv_bytes(text.encode(), name="x.csv")
    assert table.frame["sku"].tolist() == ["A-1", "A-2", "A-3"]
    assert table.frame["__line__"].tolist() == [2, 3, 4]
    outcome = run([write("products_20261123.csv", text)], lenient())
    assert errors_at(outcome, "products_20261123.csv", 2, "name")
    assert outcome.entries["A-2"]["product"]["description"] == "kept\rinside quotes"
    assert sorted(outcome.entries) == ["A-2", "A-3"]


def test_case_repeated_header_rows(run):
    folder = case("repeated-header-row")
    canonical = run([folder / "products_20261123.csv"], lenient())
    assert "repeated header" in errors_at(canonical, "products_20261123.csv", 3)[0]["reason"]
    assert sorted(canonical.entries) == ["CHAIR-001", "SOFA-001"]
    assert metadata(canonical.entries["SOFA-001"])["Weight kg"] == (42.5, "Number")
    assert metadata(canonical.entries["CHAIR-001"])["Weight kg"] == (6, "Number")
    sap = run([folder / "Materialstamm_20261123.csv"], lenient("sap_de"))
    assert "repeated header" in errors_at(sap, "Materialstamm_20261123.csv", 3)[0]["reason"]
    assert "Materialnummer" not in sap.entries
    assert {sku: (metadata(e)["Gewicht"], metadata(e)["Lagerbestand"]) for sku, e in sap.entries.items()} == {
        "100234": ((18.5, "Number"), (1250, "Number")),
        "100235": ((32, "Number"), (87, "Number")),
        "100236": ((24.75, "Number"), (0, "Number")),
    }
    assert "3D-Modell" not in "\n".join(sap.lines)


@pytest.mark.parametrize("prefix", ["", "\ufeff", " "])
def test_a_header_line_inside_the_data_is_reported_and_does_not_retype_columns(run, write, prefix):
    text = f"sku;name;meta:Height\nA-1;One;12\n{prefix}SKU;Name;Meta:Height\nA-2;Two;7,5\n"
    outcome = run([write("products_20261123.csv", text)], lenient())
    assert "repeated header" in errors_at(outcome, "products_20261123.csv", 3)[0]["reason"]
    assert sorted(outcome.entries) == ["A-1", "A-2"]
    assert metadata(outcome.entries["A-2"])["Height"] == (7.5, "Number")


# --- 4. Keys -----------------------------------------------------------------------------------


def test_case_invisible_characters_and_case_twins(run):
    folder = case("sku-invisible-chars-and-case-twins")
    outcome = run(sorted(folder.glob("*.csv")), lenient())
    for line in (4, 5, 6):
        assert errors_at(outcome, "products_20261123.csv", line, "sku")
    assert errors_at(outcome, "products_20261123.csv", 3, "sku") or errors_at(outcome, "products_20261123.csv", 2, "sku")
    assert not ("SOFA-001" in outcome.entries and "sofa-001" in outcome.entries)
    for sku in outcome.entries:
        assert sku.isprintable() and sku == sku.strip() and "\u200b" not in sku and "\ufeff" not in sku
    if "SOFA-001" in outcome.entries:
        assert outcome.entries["SOFA-001"]["product"]["name"] == "Oslo Sofa"
        assert pricing(outcome.entries["SOFA-001"]) == {"EU Retail": {"EUR": 1299}}
    assert errors_at(outcome, "prices_20261123.csv", 3, "sku")
    assert_every_row_error_names_its_key(outcome)


@pytest.mark.parametrize("character", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00a0", "\u00ad", "\u202f", "\u3000"])
@pytest.mark.parametrize("position", ["start", "middle", "end"])
def test_invisible_characters_in_a_sku_are_errors(run, write, character, position):
    sku = {"start": character + "K-1", "middle": "K" + character + "-1", "end": "K-1" + character}[position]
    outcome = run([write("products_20261123.csv", f"sku,name\n{sku},Ghost\nK-2,Real\n")], lenient())
    assert errors_at(outcome, "products_20261123.csv", 2, "sku")
    assert sorted(outcome.entries) == ["K-2"]


def test_text_is_nfc_normalised_before_comparison_and_output(run, write):
    decomposed = unicodedata.normalize("NFD", "CAFÉ-1")
    composed = unicodedata.normalize("NFC", "CAFÉ-1")
    products = write("products_20261123.csv", f"sku,name\n{decomposed},{unicodedata.normalize('NFD', 'Crème')}\n")
    prices = write("prices_20261123.csv", f"sku,pricebook,currency,price\n{composed},Retail,EUR,10\n")
    outcome = run([products, prices])
    assert list(outcome.entries) == [composed]
    assert outcome.entries[composed]["product"]["name"] == unicodedata.normalize("NFC", "Crème")
    assert pricing(outcome.entries[composed]) == {"Retail": {"EUR": 10}}
    assert outcome.errors == []


def test_case_twins_across_products_files_are_a_conflict(run, write):
    first = write("products_20261123.csv", "sku,name\nAbc-1,First\n")
    second = write("products_extra_20261123.csv", "sku,name\nABC-1,Second\n")
    outcome = run([first, second], lenient())
    [error] = errors_at(outcome, "products_extra_20261123.csv", 2, "sku")
    assert "letter case" in error["reason"] and "products_20261123.csv line 2" in error["reason"]
    assert list(outcome.entries) == ["Abc-1"]


def test_declared_case_insensitive_skus_take_the_products_spelling(run, write):
    mapping = lenient(top={"case_insensitive_skus": True})
    products = write("products_20261123.csv", "sku,name\nSOFA-001,Sofa\nsofa-001,Twin\n")
    prices = write("prices_20261123.csv", "sku,pricebook,currency,price\nSofa-001,Retail,EUR,10\n")
    outcome = run([products, prices], mapping)
    assert list(outcome.entries) == ["SOFA-001"]
    assert pricing(outcome.entries["SOFA-001"]) == {"Retail": {"EUR": 10}}
    assert "duplicate SKU" in errors_at(outcome, "products_20261123.csv", 3, "sku")[0]["reason"]


# --- 5. Conflicts inside a batch ------------------------------------------------------------------


def test_case_conflicting_rows_across_files(run):
    folder = case("conflicting-rows-across-files")
    outcome = run(sorted(folder.glob("*.csv")), lenient())
    price_errors = errors_at(outcome, "prices_20261123.csv", 2, "price") + errors_at(outcome, "prices_outlet_20261123.csv", 2, "price")
    assert len(price_errors) == 1 and "line 2" in price_errors[0]["reason"]
    other = "prices_outlet_20261123.csv" if price_errors[0]["file"] == "prices_20261123.csv" else "prices_20261123.csv"
    assert other in price_errors[0]["reason"]
    assert errors_at(outcome, "options_20261123.csv", 3)
    [extra] = errors_at(outcome, "options_extra_20261123.csv", 2)
    assert "options_20261123.csv" in extra["reason"]
    books = {sku: pricing(entry) for sku, entry in outcome.entries.items()}
    assert books["SOFA-001"]["US Retail"] == {"USD": 1399.99}
    assert books["SOFA-001"]["EU Retail"]["EUR"] in (1299, 999)
    assert books["CHAIR-001"] == {"EU Retail": {"EUR": 189.5}, "US Retail": {"USD": 199}}
    assert books["TABLE-001"] == {"EU Retail": {"EUR": 849}, "US Retail": {"USD": 899}}
    assert attribute(outcome.entries["SOFA-001"], "Color")["defaultValue"] == "Sand"
    assert_every_row_error_names_its_key(outcome)


def test_same_price_repeated_in_another_file_is_not_a_conflict_but_a_different_one_is(run, write):
    a = write("prices_a_20261123.csv", "sku,pricebook,currency,price\nP-1,Retail,EUR,10\nP-2,Retail,EUR,20\n")
    b = write("prices_b_20261123.csv", "sku,pricebook,currency,price\nP-1,Retail,EUR,10.00\nP-2,Retail,EUR,21\n")
    c = write("prices_c_20261123.csv", "sku,pricebook,currency,price\nP-2,Retail,EUR,22\n")
    outcome = run([a, b, c], lenient())
    assert errors_at(outcome, "prices_b_20261123.csv", 2) == []
    assert "prices_a_20261123.csv line 3" in errors_at(outcome, "prices_b_20261123.csv", 3, "price")[0]["reason"]
    assert "prices_a_20261123.csv line 3" in errors_at(outcome, "prices_c_20261123.csv", 2, "price")[0]["reason"]
    assert pricing(outcome.entries["P-2"]) == {"Retail": {"EUR": 20}}


def test_two_defaults_for_one_attribute_in_a_wide_or_long_file_are_reported(run, write):
    options = write("options_20261123.csv", "sku,attribute,value,default\nS-1,Leg,Oak,yes\nS-1,Leg,Ash,yes\nS-1,Top,Glass,yes\nS-2,Leg,Ash,yes\n")
    outcome = run([options], lenient())
    [error] = errors_at(outcome, "options_20261123.csv", 3, "default")
    assert "'Oak'" in error["reason"] and error["key"] == "S-1"
    assert attribute(outcome.entries["S-1"], "Leg")["defaultValue"] == "Oak"
    assert attribute(outcome.entries["S-2"], "Leg")["defaultValue"] == "Ash"


# --- 6. Excel workbooks ----------------------------------------------------------------------------


def test_case_xlsx_hidden_sheet_and_rows(run):
    folder = case("xlsx-hidden-sheet-and-rows")
    prices = run([folder / "prices_20261123.xlsx"])
    assert pricing(prices.entries["SOFA-001"]) == {"EU Retail": {"EUR": 1299}}
    assert pricing(prices.entries["CHAIR-001"]) == {"EU Retail": {"EUR": 189.5}}
    products = run([folder / "products_20261123.xlsx"])  # the shipped 5 %: a hidden row is no bad row
    assert sorted(products.entries) == ["CHAIR-001", "SOFA-001"]
    assert "hidden" in errors_at(products, "products_20261123.xlsx", 3)[0]["reason"]


def _workbook(tmp_path: Path, name: str, build) -> Path:
    book = openpyxl.Workbook()
    build(book)
    buffer = io.BytesIO()
    book.save(buffer)
    path = tmp_path / name
    path.write_bytes(buffer.getvalue())
    return path


def test_hidden_sheet_is_never_the_default_source(run, tmp_path):
    def build(book):
        stale = book.active
        stale.title = "Old"
        stale.append(["sku", "pricebook", "currency", "price"])
        stale.append(["P-1", "Retail", "EUR", 1])
        stale.sheet_state = "hidden"
        current = book.create_sheet("Now")
        current.append(["sku", "pricebook", "currency", "price"])
        current.append(["P-1", "Retail", "EUR", 2])
        book.active = 1

    outcome = run([_workbook(tmp_path, "prices_20261123.xlsx", build)])
    assert pricing(outcome.entries["P-1"]) == {"Retail": {"EUR": 2}}


def test_hidden_rows_are_reported_or_read_as_the_mapping_says(run, tmp_path):
    def build(book):
        sheet = book.active
        sheet.append(["sku", "name"])
        sheet.append(["H-1", "Visible"])
        sheet.append(["H-2", "Filtered out"])
        sheet.row_dimensions[3].hidden = True

    path = _workbook(tmp_path, "products_20261123.xlsx", build)
    reported = run([path], lenient())
    assert list(reported.entries) == ["H-1"]
    [error] = errors_at(reported, "products_20261123.xlsx", 3)
    assert "hidden" in error["reason"] and error["key"] == "H-2"
    read = run([path], lenient(products={"hidden_rows": "read"}))
    assert sorted(read.entries) == ["H-1", "H-2"]


@pytest.mark.parametrize("error_value", ["#N/A", "#REF!", "#VALUE!", "#DIV/0!"])
def test_cached_formula_errors_are_row_errors_naming_the_column(run, tmp_path, error_value):
    def build(book):
        sheet = book.active
        sheet.append(["sku", "pricebook", "currency", "price"])
        sheet.append(["F-1", "Retail", "EUR", error_value])
        sheet.append(["F-2", "Retail", "EUR", 5])

    outcome = run([_workbook(tmp_path, "prices_20261123.xlsx", build)], lenient())
    [error] = errors_at(outcome, "prices_20261123.xlsx", 2)
    assert error["column"] == "price" and error_value in error["reason"] and error["key"] == "F-1"
    assert sorted(outcome.entries) == ["F-2"]


# --- 8. What the analyst sees: the errors CSV names each row's key -------------------------------


def test_errors_csv_has_a_key_column_after_file_line_column(run, write):
    path = write("products_20261123.csv", "sku,name\nK-1,\nK-2,Fine\n")
    outcome = run([path], lenient())
    header = Path(outcome.result.errors).read_text(encoding="utf-8").splitlines()[0]
    assert header == "file,line,column,key,value,reason"
    assert outcome.errors[0]["key"] == "K-1"


def test_missing_declared_metadata_column_reaches_the_errors_csv(run, write):
    mapping = lenient(products={"metadata": {"columns": {"Weight": "Weight"}}})
    outcome = run([write("products_20261123.csv", "sku,name\nK-1,One\n")], mapping)
    assert any(e["column"] == "Weight" and "missing" in e["reason"] for e in outcome.errors)


def test_shipped_mappings_still_load():
    for name in ("canonical", "sap_de", "pim_wide"):
        assert load_mapping(name).sources
