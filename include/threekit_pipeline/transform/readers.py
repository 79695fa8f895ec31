"""Readers for ERP/PIM flat files: CSV (any common delimiter and encoding), .xlsx, .gz and .zip.

Every value is read as a string; nothing is converted implicitly. Each row keeps the line
number a person sees in an editor (header = line 1; a record with embedded newlines keeps
the physical line it starts on; for .xlsx, the sheet row number).

Detection when the mapping says ``auto``:

* encoding: a BOM decides (UTF-8, UTF-16, UTF-32); otherwise valid UTF-8 is UTF-8, UTF-16
  without BOM is recognised by its NUL byte pattern, anything else is cp1252 (latin-1 for
  the five bytes cp1252 leaves undefined).
* delimiter: the one of ``,`` ``;`` tab ``|`` that splits the header into the most columns
  with the most consistent field count over the first lines.

Compressed inputs are never extracted to disk. Archive member names that are absolute or
contain ``..`` (zip-slip) reject the archive; total uncompressed size and the compression
ratio are capped (decompression bombs), see :class:`~threekit_pipeline.transform.mapping.InputLimits`.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import decimal as decimal_module
import gzip
import io
import itertools
import logging
import posixpath
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from threekit_pipeline.transform.errors import FileRejected
from threekit_pipeline.transform.mapping import InputLimits

log = logging.getLogger(__name__)

LINE_COLUMN = "__line__"
CANDIDATE_SEPARATORS = (",", ";", "\t", "|")
# Widest accepted header (a spreadsheet's column limit).
MAX_COLUMNS = 16_384
# Compression ratios are only meaningful once the output is large enough to matter.
_RATIO_CHECK_MIN_BYTES = 1 << 20
_CHUNK = 1 << 20
_CSV_SUFFIXES = (".csv", ".txt", ".tsv", ".dat")
_XLSX_SUFFIXES = (".xlsx", ".xlsm")


@dataclass
class InputMember:
    """One readable data file: a plain file, a decompressed .gz, or a member of a .zip."""

    name: str  # shown to people: "products.csv", "batch.zip!products.csv"
    inner_name: str  # decides the format: "products.csv", "products.xlsx"
    data: bytes


@dataclass
class RawTable:
    """A file read as strings: ``frame`` holds one column per header plus ``__line__``."""

    name: str
    headers: list[str]
    frame: pd.DataFrame
    encoding: str | None = None
    separator: str | None = None
    # casefolded header -> 1-based column positions, for headers that occur more than once.
    duplicate_headers: dict[str, list[int]] = field(default_factory=dict)
    # Rows that could not be used: (line, reason[, column[, raw fields]]). The column names
    # the cell when the defect is in one; the raw fields let the caller name the row's key.
    row_errors: list[tuple] = field(default_factory=list)
    # True when no value can hold a control character (tab, CR, LF included): the
    # validators may skip their per-column control-character scans.
    control_free: bool = False
    # How many of ``row_errors`` are .xlsx rows hidden in the sheet (left out as the mapping
    # says: reported, but not bad data, so they do not count towards max_error_ratio).
    hidden_rows: int = 0

    @property
    def rows(self) -> int:
        return len(self.frame) + len(self.row_errors)


# --- Opening inputs (plain, .gz, .zip) ---------------------------------------------------


def open_input(path: Path, limits: InputLimits | None = None) -> list[InputMember]:
    """The data files inside ``path``: itself, its decompressed content, or the members of a zip."""
    limits = limits or InputLimits()
    path = Path(path)
    lower = path.name.lower()
    try:
        if lower.endswith(".gz"):
            return [InputMember(path.name, path.name[:-3], _read_gzip(path, limits))]
        if lower.endswith(".zip"):
            return _read_zip(path, limits)
        return [InputMember(path.name, path.name, path.read_bytes())]
    except OSError as exc:
        raise FileRejected(f"cannot read file: {exc.strerror or exc}") from None


def _check_expansion(total: int, compressed: int, limits: InputLimits, what: str) -> None:
    if total > limits.max_uncompressed_bytes:
        raise FileRejected(
            f"{what} expands beyond {limits.max_uncompressed_bytes:,} bytes (decompression limit); refused"
        )
    if total > _RATIO_CHECK_MIN_BYTES and total > limits.max_compression_ratio * max(compressed, 1):
        raise FileRejected(
            f"{what} has a compression ratio above {limits.max_compression_ratio:g}:1 "
            f"(possible decompression bomb); refused"
        )


def _read_gzip(path: Path, limits: InputLimits) -> bytes:
    compressed = path.stat().st_size
    out = bytearray()
    try:
        with gzip.open(path, "rb") as stream:
            while piece := stream.read(_CHUNK):
                out += piece
                _check_expansion(len(out), compressed, limits, "gzip file")
    except (OSError, EOFError, zlib.error) as exc:
        raise FileRejected(f"not a valid gzip file: {exc}") from None
    return bytes(out)


def _unsafe_member_name(name: str) -> bool:
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or re.match(r"^[A-Za-z]:", normalised):
        return True
    return ".." in normalised.split("/")


def _is_data_member(info: zipfile.ZipInfo) -> bool:
    base = posixpath.basename(info.filename.replace("\\", "/"))
    if info.is_dir() or not base or base.startswith("."):
        return False
    return not info.filename.startswith("__MACOSX/")


def _read_zip(path: Path, limits: InputLimits) -> list[InputMember]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise FileRejected(f"not a valid zip archive: {exc}") from None
    with archive:
        infos = archive.infolist()
        for info in infos:
            if _unsafe_member_name(info.filename):
                raise FileRejected(
                    f"unsafe path in archive: {info.filename!r} (absolute or '..' member paths are refused)"
                )
        members = [info for info in infos if _is_data_member(info)]
        if not members:
            raise FileRejected("zip archive contains no data file")
        declared = sum(info.file_size for info in members)
        _check_expansion(declared, path.stat().st_size, limits, "zip archive")
        result: list[InputMember] = []
        total = 0
        for info in members:
            out = bytearray()
            try:
                with archive.open(info) as stream:
                    # Declared sizes can lie: count what actually comes out.
                    while piece := stream.read(_CHUNK):
                        out += piece
                        total += len(piece)
                        _check_expansion(total, path.stat().st_size, limits, "zip archive")
                        _check_expansion(len(out), info.compress_size, limits, f"member {info.filename!r}")
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                raise FileRejected(f"cannot read archive member {info.filename!r}: {exc}") from None
            base = posixpath.basename(info.filename.replace("\\", "/"))
            result.append(InputMember(f"{path.name}!{info.filename}", base, bytes(out)))
        return result


# --- Parsing ------------------------------------------------------------------------------


def read_member(
    member: InputMember,
    *,
    separator: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    decimal: str = ".",
    limits: InputLimits | None = None,
    hidden_rows: str = "report",
) -> RawTable:
    """Parse one data file into a :class:`RawTable` (CSV or .xlsx, decided by name and content)."""
    lower = member.inner_name.lower()
    if member.name != member.inner_name and lower.endswith((".zip", ".gz")):
        raise FileRejected(
            f"archive inside an archive ({member.inner_name}): nested archives are not opened; "
            f"put the data files in the archive itself"
        )
    if lower.endswith(".xls"):
        raise FileRejected("legacy .xls workbooks are not supported; save the sheet as .xlsx or CSV")
    if lower.endswith(_XLSX_SUFFIXES) or (member.data[:4] == b"PK\x03\x04" and not lower.endswith(_CSV_SUFFIXES)):
        return read_xlsx(member.data, name=member.name, sheet=sheet, decimal=decimal, limits=limits, hidden_rows=hidden_rows)
    return read_csv_bytes(member.data, name=member.name, separator=separator, encoding=encoding)


def read_file(path: Path, **kwargs) -> list[RawTable]:
    """Convenience: open ``path`` (plain, .gz or .zip) and parse every data file in it."""
    limits = kwargs.get("limits")
    return [read_member(member, **kwargs) for member in open_input(Path(path), limits)]


def decode_to_utf8(data: bytes, encoding: str | None = None) -> tuple[bytes, str]:
    """Return the content as UTF-8 bytes without BOM, and the encoding it was read as."""
    if encoding:
        name = codecs.lookup(encoding).name
        if name == "utf-8" and data.startswith(codecs.BOM_UTF8):
            data = data[3:]
        if name == "utf-8":
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FileRejected(f"not valid {encoding} text (byte {exc.start}: {exc.reason})") from None
            return data, name
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise FileRejected(f"not valid {encoding} text (byte {exc.start}: {exc.reason})") from None
        return text.lstrip("\ufeff").encode("utf-8"), name

    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            if codec == "utf-8-sig":
                body = data[3:]
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise FileRejected(f"not valid UTF-8 text after its BOM (byte {exc.start + 3})") from None
                return body, "utf-8-sig"
            try:
                return data.decode(codec).encode("utf-8"), codec
            except UnicodeDecodeError as exc:
                raise FileRejected(f"not valid {codec.upper()} text (byte {exc.start}: {exc.reason})") from None

    utf16 = _guess_bomless_utf16(data)
    if utf16:
        try:
            return data.decode(utf16).encode("utf-8"), utf16
        except UnicodeDecodeError:
            pass
    try:
        data.decode("utf-8")
        return data, "utf-8"
    except UnicodeDecodeError as exc:
        _reject_mixed_encodings(data, exc)
    try:
        return data.decode("cp1252").encode("utf-8"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1").encode("utf-8"), "latin-1"


# A well-formed multi-byte UTF-8 sequence (never produced by typical cp1252 text).
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _reject_mixed_encodings(data: bytes, error: UnicodeDecodeError) -> None:
    """Refuse a file that is not valid UTF-8 but has lines that are: two encodings mixed.

    Decoding it all as cp1252 would silently turn the UTF-8 lines into mojibake
    ("MÃ¼ller"); a file really in cp1252 almost never has a whole line of valid UTF-8
    multi-byte sequences, and a mapping can still declare ``encoding: cp1252``. Binary
    content (NUL bytes) is left to the caller, which reports it as binary.
    """
    if b"\x00" in data:
        return
    position = 0
    while match := _UTF8_MULTIBYTE.search(data, position):
        start = data.rfind(b"\n", 0, match.start()) + 1
        end = data.find(b"\n", match.end())
        end = len(data) if end < 0 else end
        try:
            data[start:end].decode("utf-8")
        except UnicodeDecodeError:
            position = end  # this line is not UTF-8 either: look further
            continue
        raise FileRejected(
            f"mixed text encodings: line {_line_of(data, match.start())} is UTF-8 but line "
            f"{_line_of(data, error.start)} is not (byte 0x{data[error.start]:02x}); export the file in one "
            f"encoding, or declare it in the mapping"
        )


def _guess_bomless_utf16(data: bytes) -> str | None:
    sample = data[:4096]
    if len(sample) < 4 or b"\x00" not in sample:
        return None
    even_zeros = sample[0::2].count(0)
    odd_zeros = sample[1::2].count(0)
    half = len(sample) // 2
    if odd_zeros > 0.4 * half and even_zeros < 0.05 * half:
        return "utf-16-le"
    if even_zeros > 0.4 * half and odd_zeros < 0.05 * half:
        return "utf-16-be"
    return None


def sniff_separator(sample: str) -> str:
    """Pick the delimiter among , ; tab | from the first lines of a CSV text."""
    last_newline = max(sample.rfind("\n"), sample.rfind("\r"))
    complete = sample[: last_newline + 1] if last_newline > 0 else sample
    best: tuple[float, int, int] | None = None
    best_separator = ","
    for rank, candidate in enumerate(CANDIDATE_SEPARATORS):
        reader = csv.reader(io.StringIO(complete, newline=""), delimiter=candidate)
        try:
            rows = [row for row in itertools.islice(reader, 50) if row]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        others = rows[1:]
        consistency = sum(1 for row in others if len(row) == width) / len(others) if others else 1.0
        score = (consistency, width, -rank)
        if best is None or score > best:
            best, best_separator = score, candidate
    return best_separator


def _physical_lines(data: bytes) -> int:
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _header_names(raw: list[str]) -> tuple[list[str], dict[str, list[int]]]:
    names: list[str] = []
    seen: dict[str, list[int]] = {}
    for position, header in enumerate(raw, start=1):
        text = (header or "").replace("\ufeff", "").strip()
        key = text.casefold()
        if text:
            seen.setdefault(key, []).append(position)
        names.append(text)
    duplicates = {key: positions for key, positions in seen.items() if len(positions) > 1}
    unique: list[str] = []
    for position, text in enumerate(names, start=1):
        if not text:
            text = f"(column {position})"
        elif text.casefold() in duplicates and duplicates[text.casefold()][0] != position:
            text = f"{text} (column {position})"
        unique.append(text)
    return unique, duplicates


def read_csv_bytes(
    data: bytes, *, name: str, separator: str | None = None, encoding: str | None = None
) -> RawTable:
    """Parse CSV bytes (any supported encoding) into a :class:`RawTable` of strings."""
    utf8, used_encoding = decode_to_utf8(data, encoding)
    if (nul := utf8.find(b"\x00")) >= 0:
        raise FileRejected(f"contains NUL bytes (first on line {_line_of(utf8, nul)}): a binary file, not CSV text")
    if not utf8.strip():
        raise FileRejected("file is empty (no header line)")
    sample = utf8[:65536].decode("utf-8", errors="ignore")
    if separator is None:
        separator = sniff_separator(sample)
    _check_header_width(utf8, separator)

    # A carriage return not followed by a line feed, in a file whose lines end with LF or
    # CRLF, is data (an Excel cell break pasted into a field), never a record end: it is
    # parked as NUL (refused above, so free) while parsing and put back into the values,
    # where the validators report it as a control character.
    original = utf8
    lone_cr = b"\r" in utf8 and b"\n" in utf8 and _LONE_CR.search(utf8) is not None
    if lone_cr:
        utf8 = _LONE_CR.sub(b"\x00", utf8)

    physical = _physical_lines(utf8)
    table = _read_csv_arrow(utf8, name=name, separator=separator, encoding=used_encoding, sample=sample)
    if table is None or len(table.frame) + 1 != physical:
        # Records spanning lines, blank lines, ragged rows: parse record by record for exact
        # line numbers; a row with fewer or more fields than the header is reported, never padded.
        table = _read_csv_careful(utf8, name=name, separator=separator, encoding=used_encoding)
    else:
        # One record per line, so no value holds CR or LF; check the bytes for the rest.
        table.control_free = _no_control_bytes(original, separator)
    if lone_cr:
        _restore_lone_cr(table)
    table.frame = _drop_blank_rows(table.frame)
    _drop_repeated_headers(table)
    return table


_LONE_CR = re.compile(rb"\r(?!\n)")


def _restore_lone_cr(table: RawTable) -> None:
    """Put back the carriage returns parked as NUL while parsing (values and headers)."""
    table.control_free = False
    table.headers = [h.replace("\x00", "\r") for h in table.headers]
    renamed = {}
    for column in table.frame.columns:
        if column == LINE_COLUMN:
            continue
        values = table.frame[column]
        if "\x00" in column:
            renamed[column] = column.replace("\x00", "\r")
        if values.str.contains("\x00", regex=False).any():
            table.frame[column] = values.str.replace("\x00", "\r", regex=False)
    if renamed:
        table.frame = table.frame.rename(columns=renamed)


def _header_key(text: str) -> str:
    return text.replace("\ufeff", "").strip().casefold()


def _drop_repeated_headers(table: RawTable) -> None:
    """Rows that repeat the header line (two exports joined into one file) are reported, not read.

    A header row read as data would become a phantom product and turn every numeric
    column into text; each such row becomes a row error ``repeated header row``.
    """
    frame = table.frame
    columns = [(h, _header_key(h)) for h in table.headers if not h.startswith("(column ") and h in frame.columns]
    if not len(frame) or not columns:
        return
    first_header, first_key = columns[0]
    candidates = (frame[first_header].str.replace("\ufeff", "", regex=False).str.strip().str.casefold() == first_key)
    mask = candidates.to_numpy(dtype=bool, na_value=False).copy()
    if not mask.any():
        return
    for header, key in columns[1:]:
        values = frame.loc[mask, header].str.replace("\ufeff", "", regex=False).str.strip().str.casefold()
        mask[mask] = (values == key).to_numpy(dtype=bool, na_value=False)
        if not mask.any():
            return
    lines = frame[LINE_COLUMN].to_numpy()[mask].tolist()
    table.row_errors.extend(
        (int(line), "repeated header row: the header line appears again inside the data") for line in lines
    )
    table.row_errors.sort(key=lambda error: error[0])
    table.frame = frame.loc[~mask].reset_index(drop=True)


def _check_header_width(utf8: bytes, separator: str) -> None:
    """Refuse a header line with more columns than any spreadsheet holds.

    Typically a file without line breaks: every record ends up in line 1, and parsing
    millions of columns would exhaust memory long before anything could be reported.
    """
    end = utf8.find(b"\n")
    line = utf8 if end < 0 else utf8[:end]
    marker = separator.encode("utf-8")
    if line.count(marker) < MAX_COLUMNS:
        return
    columns = re.sub(rb'"[^"]*"', b"", line).count(marker) + 1
    if columns > MAX_COLUMNS:
        raise FileRejected(
            f"line 1 has {columns:,} columns, more than the {MAX_COLUMNS:,} supported "
            f"(a file without line breaks?)"
        )


_CONTROL_BYTES = bytes([*range(0, 9), 11, 12, *range(14, 32), 127])
_OTHER_BYTES = bytes(b for b in range(256) if b not in _CONTROL_BYTES)
_C1_CONTROL = re.compile(rb"\xc2[\x80-\x9f]")


def _no_control_bytes(utf8: bytes, separator: str) -> bool:
    """True when the text has no control character except line ends (and tab as separator)."""
    if utf8.translate(None, _OTHER_BYTES):
        return False
    if separator != "\t" and b"\t" in utf8:
        return False
    if utf8.count(b"\r") != utf8.count(b"\r\n"):
        return False
    return not (b"\xc2" in utf8 and _C1_CONTROL.search(utf8))


def _read_csv_arrow(utf8: bytes, *, name: str, separator: str, encoding: str, sample: str) -> RawTable | None:
    """Multi-threaded parse with pyarrow; None when the file needs a more forgiving parser."""
    try:
        header_raw = next(csv.reader(io.StringIO(sample, newline=""), delimiter=separator))
    except (StopIteration, csv.Error):
        return None
    width = len(header_raw)
    try:
        parsed = pa_csv.read_csv(
            pa.py_buffer(utf8),
            read_options=pa_csv.ReadOptions(autogenerate_column_names=True, block_size=1 << 22),
            parse_options=pa_csv.ParseOptions(
                delimiter=separator,
                quote_char='"',
                double_quote=True,
                escape_char=False,
                newlines_in_values=True,
                ignore_empty_lines=False,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in range(width)},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # blank or short lines, ragged rows, unbalanced quotes: handled by the next parser
    if parsed.num_columns != width or parsed.num_rows == 0:
        return None
    header_raw = [str(v) for v in parsed.slice(0, 1).to_pylist()[0].values()]
    headers, duplicates = _header_names(header_raw)
    body = parsed.slice(1).rename_columns(headers).to_pandas()
    body.insert(0, LINE_COLUMN, np.arange(2, len(body) + 2, dtype=np.int64))
    return RawTable(name, headers, body, encoding, separator, duplicates)


def _allow_fields_up_to(size: int) -> None:
    """Raise the csv module's field size limit (128 KiB by default) to ``size``.

    The whole text is already in memory, so no field can be larger; without this a long
    value, or a quote left open early in a big file, raised a bare ``csv.Error``.
    """
    if csv.field_size_limit() < size:
        csv.field_size_limit(size)


def _read_csv_careful(utf8: bytes, *, name: str, separator: str, encoding: str) -> RawTable:
    """Record-by-record parse: exact start lines for multi-line records, ragged rows reported."""
    _allow_fields_up_to(len(utf8))
    reader = csv.reader(io.StringIO(utf8.decode("utf-8"), newline=""), delimiter=separator)
    previous = 0
    header_raw: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    row_errors: list[tuple[int, str]] = []
    width = 0
    for record in reader:
        start = previous + 1
        previous = reader.line_num
        if header_raw is None:
            if not record:
                continue
            header_raw = record
            width = len(record)
            continue
        if not record or all(not v.strip() for v in record):
            continue
        if len(record) > width:
            extra = record[width:]
            if all(not v.strip() for v in extra):
                record = record[:width]
            else:
                row_errors.append((start, f"row has {len(record)} fields, the header has {width}", "", record))
                continue
        elif len(record) < width:
            # A short row is a cut-off or damaged record (an aborted upload ends mid-row):
            # padding it with empty values would import a half product.
            row_errors.append((start, f"row has {len(record)} fields, the header has {width}", "", record))
            continue
        rows.append(record)
        lines.append(start)
    if header_raw is None:
        raise FileRejected("file is empty (no header line)")
    _check_last_record_closed(utf8, start, separator)
    headers, duplicates = _header_names(header_raw)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in headers]
    frame = pd.DataFrame({h: pd.Series(list(col), dtype="str") for h, col in zip(headers, columns, strict=True)})
    frame.insert(0, LINE_COLUMN, np.asarray(lines, dtype=np.int64))
    return RawTable(name, headers, frame, encoding, separator, duplicates, row_errors)


def _check_last_record_closed(utf8: bytes, start: int, separator: str) -> None:
    """Refuse the file when its last record runs to the end inside an open quote."""
    if start < 1 or b'"' not in utf8:
        return
    text = utf8.decode("utf-8")
    offset = 0
    for _ in range(start - 1):
        offset = text.find("\n", offset) + 1
        if offset == 0:
            return
    reader = csv.reader(io.StringIO(text[offset:], newline=""), delimiter=separator, strict=True)
    try:
        for _ in reader:
            pass
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise FileRejected(f"line {start}: a quoted field is never closed (unbalanced '\"')") from None


def _drop_blank_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Blank lines (every field empty or whitespace) are layout, not data."""
    value_columns = [c for c in frame.columns if c != LINE_COLUMN]
    if not len(frame) or not value_columns:
        return frame
    blank = np.ones(len(frame), dtype=bool)
    for column in value_columns:
        blank &= (frame[column].str.strip() == "").to_numpy(dtype=bool)
        if not blank.any():
            return frame
    return frame.loc[~blank].reset_index(drop=True)


# --- .xlsx -----------------------------------------------------------------------------------


def _cell_text(value, decimal: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        text = str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
        return text.replace(".", ",") if decimal == "," else text
    if isinstance(value, decimal_module.Decimal):
        text = format(value, "f")
        return text.replace(".", ",") if decimal == "," else text
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


_ZERO_PADDED_FORMAT = re.compile(r"0+")


def _displayed_value(cell):
    """The cell's value; an integer with a zero-padded number format as the text it shows."""
    value = cell.value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number_format = cell.number_format or ""
        if len(number_format) > 1 and _ZERO_PADDED_FORMAT.fullmatch(number_format) and float(value).is_integer() and value >= 0:
            return str(int(value)).zfill(len(number_format))
    return value


def _default_sheet(book):
    """The sheet a person sees on opening the workbook: the active one if visible, else the first visible."""
    active = book.active
    if active is not None and getattr(active, "sheet_state", "visible") == "visible":
        return active
    for worksheet in book.worksheets:
        if worksheet.sheet_state == "visible":
            return worksheet
    raise FileRejected("workbook has no visible sheet (the mapping's 'sheet' names the one to read)")


def _check_xlsx_size(data: bytes, limits: InputLimits) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise FileRejected(f"not a valid .xlsx workbook: {exc}") from None
    _check_expansion(total, len(data), limits, "workbook")


def read_xlsx(
    data: bytes,
    *,
    name: str,
    sheet: str | None = None,
    decimal: str = ".",
    limits: InputLimits | None = None,
    hidden_rows: str = "report",
) -> RawTable:
    """Read the named sheet of an .xlsx workbook, else its active visible sheet, as strings.

    A hidden sheet is never read unless named: the workbook's active sheet when it is
    visible, else the first visible one (a workbook with no visible sheet is refused).
    Rows hidden in the sheet (a filter) are reported as row errors and left out, or read
    when ``hidden_rows="read"``. Cells whose cached value is a formula error (``#N/A``,
    ``#REF!``, ``#VALUE!``...) make their row a row error naming the column. Integers shown
    with a zero-padded number format (``000000``) are read as displayed (``"000123"``).
    Formulas give their cached values; a formula without a cached value (a workbook saved by
    a program that does not calculate) rejects the file rather than reading it as empty.
    Merged data cells repeat their value in every covered cell; merged header cells are
    refused. Numbers are written with the mapping's decimal separator so they parse like
    the CSV exports of the same layout.
    """
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    hidden_rows_policy = hidden_rows
    _check_xlsx_size(data, limits or InputLimits())
    try:
        values_book = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
        formula_book = openpyxl.load_workbook(io.BytesIO(data), data_only=False, read_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise FileRejected(f"not a readable .xlsx workbook: {exc}") from None
    try:
        if sheet is not None:
            if sheet not in values_book.sheetnames:
                raise FileRejected(f"sheet {sheet!r} not found (sheets: {', '.join(values_book.sheetnames)})")
            worksheet = values_book[sheet]
        else:
            worksheet = _default_sheet(values_book)
        formula_sheet = formula_book[worksheet.title]

        grid: dict[int, list] = {}
        # Row number -> [(column index, error text)] for cached formula errors (#N/A, #REF!, ...).
        formula_errors: dict[int, list[tuple[int, str]]] = {}
        for row in worksheet.iter_rows():
            values = [_displayed_value(cell) for cell in row]
            if any(v is not None and str(v).strip() != "" for v in values):
                grid[row[0].row] = values
                failed = [(i, str(cell.value)) for i, cell in enumerate(row) if cell.data_type == "e"]
                if failed:
                    formula_errors[row[0].row] = failed
        hidden_rows = {number for number, dimension in worksheet.row_dimensions.items() if dimension.hidden}
        if not grid:
            others = [name for name in values_book.sheetnames if name != worksheet.title]
            hint = f"; other sheets: {', '.join(others)} (the mapping's 'sheet' names the one to read)" if others else ""
            raise FileRejected(f"sheet {worksheet.title!r} is empty (no header row){hint}")
        header_row = min(grid)

        for row in formula_sheet.iter_rows():
            for cell in row:
                if getattr(cell, "data_type", None) == "f":
                    cached = worksheet.cell(row=cell.row, column=cell.column).value
                    if cached is None:
                        raise FileRejected(
                            f"cell {cell.coordinate}: formula without a cached value; open and save the "
                            f"workbook in a spreadsheet program so values are calculated"
                        )

        width = max(len(v) for v in grid.values())
        for merged in worksheet.merged_cells.ranges:
            if merged.min_row <= header_row <= merged.max_row:
                raise FileRejected(f"merged header cells {merged.coord} are not supported; unmerge them")
            top_left = worksheet.cell(row=merged.min_row, column=merged.min_col).value
            for row_number in range(merged.min_row, merged.max_row + 1):
                values = grid.setdefault(row_number, [None] * width)
                if len(values) < merged.max_col:
                    values.extend([None] * (merged.max_col - len(values)))
                for col in range(merged.min_col, merged.max_col + 1):
                    values[col - 1] = top_left
    finally:
        values_book.close()
        formula_book.close()

    header_values = grid[header_row]
    last_header = max((i for i, v in enumerate(header_values) if v is not None and str(v).strip()), default=-1)
    header_raw = [_cell_text(v, ".") for v in header_values[: last_header + 1]]
    headers, duplicates = _header_names(header_raw)
    width = len(headers)
    lines: list[int] = []
    rows: list[list[str]] = []
    row_errors: list[tuple] = []
    hidden_count = 0
    for row_number in sorted(r for r in grid if r > header_row):
        values = grid[row_number]
        overflow = [v for v in values[width:] if v is not None and str(v).strip()]
        if overflow:
            row_errors.append((row_number, f"row has values beyond the last header column ({width} columns)"))
            continue
        texts = [_cell_text(v, decimal) for v in values[:width]]
        texts.extend([""] * (width - len(texts)))
        if not any(t.strip() for t in texts):
            continue
        if row_number in formula_errors:
            for index, error in formula_errors[row_number]:
                column = headers[index] if index < width else ""
                row_errors.append((row_number, f"cached formula error {error} in the cell", column, texts))
            continue
        if row_number in hidden_rows:
            if hidden_rows_policy == "read":
                log.warning("%s: row %d is hidden in the sheet (filtered out); read as the mapping says", name, row_number)
            else:
                row_errors.append(
                    (row_number, "row is hidden in the sheet (filtered out); left out (mapping hidden_rows: read to import it)", "", texts)
                )
                hidden_count += 1
                continue
        rows.append(texts)
        lines.append(row_number)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in headers]
    frame = pd.DataFrame({h: pd.Series(list(col), dtype="str") for h, col in zip(headers, columns, strict=True)})
    frame.insert(0, LINE_COLUMN, np.asarray(lines, dtype=np.int64))
    table = RawTable(name, headers, frame, None, None, duplicates, row_errors, hidden_rows=hidden_count)
    _drop_repeated_headers(table)
    return table
