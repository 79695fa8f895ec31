"""Readers: encodings, delimiters, multi-line records, .xlsx, .gz, .zip and their guards."""

from __future__ import annotations

import gzip
import io
import re
import zipfile

import openpyxl
import pytest
from threekit_pipeline.transform.errors import FileRejected
from threekit_pipeline.transform.mapping import InputLimits
from threekit_pipeline.transform.readers import (
    LINE_COLUMN,
    InputMember,
    decode_to_utf8,
    open_input,
    read_csv_bytes,
    read_member,
    read_xlsx,
    sniff_separator,
)

UMLAUT_CSV = "sku;name\nA-1;Größe Müller\nA-2;Weiß €\n"


def rows(table) -> list[tuple]:
    return [tuple(r) for r in table.frame.drop(columns=[LINE_COLUMN]).itertuples(index=False, name=None)]


def lines(table) -> list[int]:
    return table.frame[LINE_COLUMN].tolist()


@pytest.mark.parametrize(
    "encoded, expected_encoding",
    [
        (UMLAUT_CSV.encode("utf-8"), "utf-8"),
        (b"\xef\xbb\xbf" + UMLAUT_CSV.encode("utf-8"), "utf-8-sig"),
        (UMLAUT_CSV.encode("utf-16"), "utf-16"),  # with BOM
        (UMLAUT_CSV.encode("utf-16-le"), "utf-16-le"),  # no BOM: recognised by its NUL pattern
        (UMLAUT_CSV.encode("cp1252"), "cp1252"),  # invalid UTF-8 -> cp1252 (the euro sign is 0x80)
    ],
)
def test_encodings_are_detected_and_values_decoded(encoded, expected_encoding):
    table = read_csv_bytes(encoded, name="x.csv")
    assert table.encoding == expected_encoding
    assert table.headers == ["sku", "name"]
    assert rows(table) == [("A-1", "Größe Müller"), ("A-2", "Weiß €")]


def test_bytes_undefined_in_cp1252_fall_back_to_latin1():
    # 0x81 is undefined in cp1252; latin-1 maps every byte.
    table = read_csv_bytes(b"sku,name\nA,x\x81y\xe9\n", name="x.csv")
    assert table.encoding == "latin-1"
    assert rows(table) == [("A", "x\x81yé")]


def test_declared_encoding_is_enforced_with_a_clear_error():
    with pytest.raises(FileRejected, match=r"not valid utf-8 text \(byte \d+"):
        read_csv_bytes("sku\nMüller\n".encode("cp1252"), name="x.csv", encoding="utf-8")


@pytest.mark.parametrize("separator", [",", ";", "\t", "|"])
def test_each_delimiter_is_sniffed(separator):
    text = separator.join(["sku", "name", "price"]) + "\n"
    text += separator.join(["A", "Chair, oak", "12,5"]) + "\n" if separator != "," else 'A,"Chair, oak","12,5"\n'
    table = read_csv_bytes(text.encode(), name="x.csv")
    assert table.separator == separator
    assert rows(table) == [("A", "Chair, oak", "12,5")]


def test_sniffer_prefers_consistent_field_counts():
    sample = "sku;name;note\nA;x, y;z\nB;p, q, r;s\n"
    assert sniff_separator(sample) == ";"


def test_embedded_newlines_keep_the_physical_start_line():
    text = 'sku,name,description\nA,Sofa,"line one\nline two\nline three"\nB,Chair,plain\nC,Table,"x\r\ny"\n'
    table = read_csv_bytes(text.encode(), name="x.csv")
    assert lines(table) == [2, 5, 6]
    assert rows(table)[0] == ("A", "Sofa", "line one\nline two\nline three")
    assert rows(table)[2] == ("C", "Table", "x\r\ny")


def test_blank_lines_are_skipped_but_line_numbers_stay_true():
    text = "sku,name\nA,one\n\nB,two\n,\n\nC,three\n"
    table = read_csv_bytes(text.encode(), name="x.csv")
    assert rows(table) == [("A", "one"), ("B", "two"), ("C", "three")]
    assert lines(table) == [2, 4, 7]


def test_crlf_line_endings():
    table = read_csv_bytes(b"sku,name\r\nA,one\r\nB,two\r\n", name="x.csv")
    assert rows(table) == [("A", "one"), ("B", "two")]
    assert lines(table) == [2, 3]


def test_short_and_long_rows_are_reported_with_both_field_counts_never_padded():
    text = "sku,name,description\nA,one\nB,two,d,EXTRA\nC,three,d\n"
    table = read_csv_bytes(text.encode(), name="x.csv")
    assert rows(table) == [("C", "three", "d")]
    assert lines(table) == [4]
    assert [error[:2] for error in table.row_errors] == [
        (2, "row has 2 fields, the header has 3"),
        (3, "row has 4 fields, the header has 3"),
    ]


def test_values_are_never_converted():
    table = read_csv_bytes(b"sku,ean,price,flag\n007,0400638133393,1e3,NA\n", name="x.csv")
    assert rows(table) == [("007", "0400638133393", "1e3", "NA")]


def test_unbalanced_quote_rejects_the_file_naming_the_line():
    with pytest.raises(FileRejected, match=r"line 3: a quoted field is never closed"):
        read_csv_bytes(b'sku,name\nA,ok\nB,"never closed\nC,x\n', name="x.csv")


@pytest.mark.parametrize("data", [b"", b"\n\n  \n"])
def test_empty_file_is_rejected(data):
    with pytest.raises(FileRejected, match="empty"):
        read_csv_bytes(data, name="x.csv")


def test_binary_content_is_rejected():
    with pytest.raises(FileRejected, match="NUL bytes"):
        read_csv_bytes(b"sku,name\nA,\x00\x01\x02\x00\x00\x00\x00\n", name="x.csv")


def test_duplicate_headers_are_recorded():
    table = read_csv_bytes(b"sku,Name,name\nA,x,y\n", name="x.csv")
    assert table.duplicate_headers == {"name": [2, 3]}
    assert table.headers == ["sku", "Name", "name (column 3)"]


def test_decode_strips_bom_only_once():
    utf8, encoding = decode_to_utf8(b"\xef\xbb\xbfsku\n")
    assert (utf8, encoding) == (b"sku\n", "utf-8-sig")


# --- .xlsx ------------------------------------------------------------------------------------


def _workbook_bytes(build) -> bytes:
    workbook = openpyxl.Workbook()
    build(workbook)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_xlsx_first_sheet_with_typed_cells():
    def build(wb):
        ws = wb.active
        ws.append(["sku", "price", "count", "flag"])
        ws.append(["A", 12.5, 3, True])
        ws.append([None, None, None, None])  # empty row: skipped, numbering kept
        ws.append([100234, 1299.0, 0, False])

    table = read_xlsx(_workbook_bytes(build), name="x.xlsx")
    assert rows(table) == [("A", "12.5", "3", "true"), ("100234", "1299", "0", "false")]
    assert lines(table) == [2, 4]


def test_xlsx_numbers_use_the_mappings_decimal_separator():
    def build(wb):
        wb.active.append(["sku", "price"])
        wb.active.append(["A", 12.5])

    table = read_xlsx(_workbook_bytes(build), name="x.xlsx", decimal=",")
    assert rows(table) == [("A", "12,5")]


def test_xlsx_named_sheet_and_missing_sheet():
    def build(wb):
        wb.active.title = "Notes"
        wb.active["A1"] = "read me"
        options = wb.create_sheet("Options")
        options.append(["sku", "Color"])
        options.append(["A", "Red"])

    data = _workbook_bytes(build)
    assert rows(read_xlsx(data, name="x.xlsx", sheet="Options")) == [("A", "Red")]
    with pytest.raises(FileRejected, match=r"sheet 'Prices' not found \(sheets: Notes, Options\)"):
        read_xlsx(data, name="x.xlsx", sheet="Prices")


def _with_cached_value(data: bytes, cell: str, value: str) -> bytes:
    """Add a cached value to a formula cell, as a spreadsheet program does when saving."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                text = content.decode()
                text, count = re.subn(
                    rf'(<c r="{cell}"[^>]*>)(<f>[^<]*</f>)(<v\s*/>|<v></v>)?', rf"\1\2<v>{value}</v>", text
                )
                assert count == 1
                content = text.encode()
            target.writestr(info, content)
    return out.getvalue()


def test_xlsx_formulas_read_as_cached_values():
    def build(wb):
        wb.active.append(["sku", "price"])
        wb.active.append(["A", "=10*2.5"])

    data = _with_cached_value(_workbook_bytes(build), "B2", "25")
    assert rows(read_xlsx(data, name="x.xlsx")) == [("A", "25")]


def test_xlsx_formula_without_cached_value_is_rejected():
    def build(wb):
        wb.active.append(["sku", "price"])
        wb.active.append(["A", "=10*2.5"])

    with pytest.raises(FileRejected, match=r"cell B2: formula without a cached value"):
        read_xlsx(_workbook_bytes(build), name="x.xlsx")


def test_xlsx_merged_data_cells_repeat_their_value():
    def build(wb):
        ws = wb.active
        ws.append(["sku", "attribute", "value"])
        ws.append(["SOFA-1", "Color", "Red"])
        ws.append([None, "Color", "Blue"])
        ws.append([None, "Fabric", "Linen"])
        ws.merge_cells("A2:A4")

    assert rows(read_xlsx(_workbook_bytes(build), name="x.xlsx")) == [
        ("SOFA-1", "Color", "Red"),
        ("SOFA-1", "Color", "Blue"),
        ("SOFA-1", "Fabric", "Linen"),
    ]


def test_xlsx_merged_header_cells_are_rejected():
    def build(wb):
        ws = wb.active
        ws.append(["sku", "Color", None])
        ws.append(["A", "Red", "Blue"])
        ws.merge_cells("B1:C1")

    with pytest.raises(FileRejected, match=r"merged header cells B1:C1 are not supported"):
        read_xlsx(_workbook_bytes(build), name="x.xlsx")


def test_corrupt_xlsx_is_rejected():
    with pytest.raises(FileRejected, match=r"\.xlsx"):
        read_member(InputMember("x.xlsx", "x.xlsx", b"PK\x03\x04 not really a workbook"))


# --- compressed inputs ---------------------------------------------------------------------------


def test_gzip_input(tmp_path):
    path = tmp_path / "products_20261123.csv.gz"
    path.write_bytes(gzip.compress(UMLAUT_CSV.encode("cp1252")))
    (member,) = open_input(path)
    assert (member.name, member.inner_name) == ("products_20261123.csv.gz", "products_20261123.csv")
    assert rows(read_member(member)) == [("A-1", "Größe Müller"), ("A-2", "Weiß €")]


def test_corrupt_gzip_is_rejected(tmp_path):
    path = tmp_path / "x.csv.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(FileRejected, match="not a valid gzip file"):
        open_input(path)


def test_zip_members_are_read_in_memory(tmp_path):
    path = tmp_path / "batch_20261123.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export/products_20261123.csv", "sku,name\nA,Chair\n")
        archive.writestr("export/", "")
        archive.writestr("__MACOSX/export/._products_20261123.csv", "junk")
        archive.writestr("options_20261123.csv", "sku,attribute,value\nA,Color,Red\n")
    members = open_input(path)
    assert [m.name for m in members] == [
        "batch_20261123.zip!export/products_20261123.csv",
        "batch_20261123.zip!options_20261123.csv",
    ]
    assert [m.inner_name for m in members] == ["products_20261123.csv", "options_20261123.csv"]


@pytest.mark.parametrize("member", ["../../etc/cron.d/evil.csv", "/etc/passwd.csv", "a/../../b.csv", "C:\\x.csv", "..\\x.csv"])
def test_zip_slip_paths_reject_the_archive(tmp_path, member):
    path = tmp_path / "products_20261123.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("products.csv", "sku,name\nA,x\n")
        archive.writestr(member, "sku,name\nB,y\n")
    with pytest.raises(FileRejected, match=r"unsafe path in archive"):
        open_input(path)
    assert not (tmp_path.parent / "etc").exists()


def test_zip_bomb_is_refused_by_ratio(tmp_path):
    path = tmp_path / "products_20261123.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("products.csv", b"sku,name\n" + b"0" * (20 << 20))
    with pytest.raises(FileRejected, match=r"compression ratio above 200:1 \(possible decompression bomb\)"):
        open_input(path)


def test_zip_over_the_size_cap_is_refused(tmp_path):
    path = tmp_path / "products_20261123.zip"
    payload = b"sku,name\n" + b"A,x\n" * 100_000
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("products.csv", payload)
    limits = InputLimits(max_uncompressed_bytes=100_000, max_compression_ratio=1000)
    with pytest.raises(FileRejected, match=r"zip archive expands beyond 100,000 bytes"):
        open_input(path, limits)
    assert len(open_input(path, InputLimits(max_uncompressed_bytes=1_000_000))[0].data) == len(payload)


def test_gzip_bomb_is_refused(tmp_path):
    path = tmp_path / "products_20261123.csv.gz"
    path.write_bytes(gzip.compress(b"sku,name\n" + b"0" * (30 << 20), compresslevel=9))
    with pytest.raises(FileRejected, match=r"gzip file has a compression ratio above"):
        open_input(path)


def test_corrupt_zip_is_rejected(tmp_path):
    path = tmp_path / "x.zip"
    path.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(FileRejected, match="not a valid zip archive"):
        open_input(path)
