"""ERP/PIM flat files -> Threekit product import entries (JSONL), with row-level validation.

:func:`transform_files` treats its files as ONE batch (group files first with
:func:`~threekit_pipeline.transform.batches.group_batches`). It writes, atomically:

* ``output``: one ``{"query": ..., "product": ...}`` entry per line, sorted by SKU,
  compact JSON with keys in a fixed order (byte-identical for identical input);
* ``<output>.hashes.csv``: ``sku,content_hash`` where the hash is the SHA-256 of the entry's
  line as written (its canonical JSON), for delta imports;
* ``<output>.skus.csv``: ``file,sku``, the SKUs each input file contributed to the output
  (also in :attr:`TransformResult.skus_by_file`, left out of ``to_dict()`` by default to
  keep it small enough for XCom);
* the errors CSV (``<output>.errors.csv`` unless given): ``file, line, column, value, reason``.

Model (see ``include/mappings/README.md``): every product is matched by its SKU (metadata
``SKU``) so a re-import updates instead of duplicating. Option rows become ``String``
attributes, price rows one ``Pricing`` attribute, part rows ``Asset`` attributes. A file
that arrives without a products file updates only what it carries. An empty cell leaves
the existing value untouched (the key is omitted), it never clears it.

Rejections: a bad row is excluded and listed with its reason; a file with more than
``max_error_ratio`` bad rows, or that cannot be read, is rejected as a whole; when a
products file of the batch is rejected, the other files of the batch are rejected too
("batch products file rejected"), since their rows refer to its products.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threekit_pipeline.transform.batches import classify
from threekit_pipeline.transform.currencies import ISO_4217_CODES
from threekit_pipeline.transform.errors import (
    ErrorRow,
    FileRejected,
    atomic_write,
    errors_frame,
    write_errors_csv,
)
from threekit_pipeline.transform.mapping import Mapping, SourceMapping, load_mapping
from threekit_pipeline.transform.readers import LINE_COLUMN, RawTable, open_input, read_member
from threekit_pipeline.transform.schema import check_entry

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

ASSET_TYPES = ("item", "upload", "model", "material")
# Control characters never valid in a value; free text (descriptions) may keep tab and newlines.
_CONTROL_STRICT = r"[\x00-\x1f\x7f-\x9f]"
_CONTROL_FREE_TEXT = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_FREE_TEXT_FIELDS = frozenset({"description"})
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
# Metadata is Number only for plain decimals without leading zeros (codes such as EAN
# "0042..." stay strings) and within the exactly representable integer range.
_METADATA_NUMBER = r"-?(?:0|[1-9]\d{0,14})(?:\.\d+)?"
_NOT_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
_TRUE = frozenset({"true", "1", "yes", "y", "x"})
_FALSE = frozenset({"false", "0", "no", "n", ""})
_PROGRESS_EVERY = 50_000

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False).encode


# --- Result --------------------------------------------------------------------------------


@dataclass
class TransformResult:
    """Outcome of one batch transform (JSON-serialisable with :meth:`to_dict`)."""

    mapping: str
    output: str
    hashes: str
    errors: str
    skus_path: str
    rows_read: int = 0
    rows_read_by_file: dict[str, int] = field(default_factory=dict)
    products_written: int = 0
    attributes_written: int = 0
    rows_rejected: int = 0
    error_lines: int = 0
    # [{file, reason}] for every file rejected as a whole.
    files_rejected: list[dict[str, str]] = field(default_factory=list)
    # [{file, input, source, rows, rejected_rows, status: "ok"|"rejected", reason}]
    per_file: list[dict[str, Any]] = field(default_factory=list)
    # Input file name (as in per_file["input"]) -> SKUs it contributed to the output, sorted.
    skus_by_file: dict[str, list[str]] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no file was rejected (row rejections may still exist)."""
        return not self.files_rejected

    def to_dict(self, include_skus: bool = False) -> dict[str, Any]:
        """Plain JSON-ready dict; ``skus_by_file`` only on request (it can be large, see ``skus_path``)."""
        data = asdict(self)
        if not include_skus:
            data.pop("skus_by_file")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransformResult:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def read_skus_by_file(path: Path) -> dict[str, list[str]]:
    """Read a ``<output>.skus.csv`` side file back into ``{file: [sku, ...]}``."""
    result: dict[str, list[str]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            result.setdefault(row["file"], []).append(row["sku"])
    return result


# --- Per-file working state ------------------------------------------------------------------


@dataclass
class _SourceFile:
    index: int
    name: str  # display name (zip members: "archive.zip!member.csv")
    input_name: str  # basename of the input path given by the caller
    source: str | None
    spec: SourceMapping | None = None
    table: RawTable | None = None
    frame: pd.DataFrame | None = None  # __line__ + canonical fields (+ _column for wide options)
    headers: dict[str, str] = field(default_factory=dict)  # canonical field -> source header
    meta: list[tuple[str, str]] = field(default_factory=list)  # (source header, metadata key)
    bad: np.ndarray | None = None
    errors: list[pd.DataFrame] = field(default_factory=list)
    rows: int = 0
    rejected_rows: int = 0
    status: str = "ok"
    reason: str = ""

    @property
    def readable(self) -> bool:
        return self.frame is not None and self.status == "ok"

    def reject(self, reason: str) -> None:
        self.status = "rejected"
        self.reason = reason

    def file_error(self, reason: str, column: str = "", value: str = "") -> None:
        self.errors.append(errors_frame([ErrorRow(self.name, None, column, value, reason)]))

    def flag(self, mask: np.ndarray, field_name: str, reason, values: pd.Series | None = None) -> None:
        """Mark rows bad and record one error line per row."""
        if not mask.any():
            return
        assert self.frame is not None and self.bad is not None
        self.bad |= mask
        frame = self.frame
        if values is None:
            values = frame[field_name]
        if "_column" in frame.columns and field_name in ("attribute", "value", "default"):
            columns = frame["_column"][mask].to_numpy(dtype=object)
        else:
            columns = self.headers.get(field_name, field_name)
        count = int(mask.sum())
        if isinstance(reason, pd.Series):
            reasons = reason[mask].astype("str").to_numpy(dtype=object)
        else:
            reasons = reason
        self.errors.append(
            pd.DataFrame(
                {
                    "file": np.full(count, self.name, dtype=object),
                    "line": pd.array(frame[LINE_COLUMN].to_numpy()[mask], dtype="Int64"),
                    "column": columns if not isinstance(columns, str) else np.full(count, columns, dtype=object),
                    "value": values[mask].astype("str").to_numpy(dtype=object),
                    "reason": reasons if not isinstance(reasons, str) else np.full(count, reasons, dtype=object),
                }
            )
        )


# --- Entry point ------------------------------------------------------------------------------


def transform_files(
    mapping: Mapping | str,
    files: list[Path],
    output: Path,
    errors: Path | None = None,
    progress: Progress | None = None,
) -> TransformResult:
    """Transform one batch of ERP/PIM files into an importReqBody JSONL file (see module doc).

    ``progress(stage, done, total)`` is called after each file is read and periodically
    while entries are written.
    """
    started = time.perf_counter()
    mapping = load_mapping(mapping) if not isinstance(mapping, Mapping) else mapping
    output = Path(output)
    errors_path = Path(errors) if errors is not None else output.with_name(output.name + ".errors.csv")
    hashes_path = output.with_name(output.name + ".hashes.csv")
    skus_path = output.with_name(output.name + ".skus.csv")
    result = TransformResult(
        mapping=mapping.name,
        output=str(output),
        hashes=str(hashes_path),
        errors=str(errors_path),
        skus_path=str(skus_path),
    )

    source_files = _load_inputs(mapping, [Path(f) for f in files], progress)
    for sf in source_files:
        if sf.readable:
            _validate_rows(sf, mapping)
    products = [sf for sf in source_files if sf.source == "products"]
    _check_duplicate_products(products)
    for sf in products:
        _apply_error_ratio(sf)
    rejected_products = [sf for sf in products if sf.status != "ok"]
    if rejected_products:
        cause = "; ".join(f"{sf.name}: {sf.reason}" for sf in rejected_products)
        for sf in source_files:
            if sf.source != "products" and sf.status == "ok":
                sf.reject(f"batch products file rejected ({cause})")
    elif products:
        _check_against_products(products, [sf for sf in source_files if sf.source not in (None, "products")])
    for sf in source_files:
        if sf.source != "products":
            _apply_error_ratio(sf)

    accepted = [sf for sf in source_files if sf.status == "ok" and sf.frame is not None]
    written_skus, schema_errors, entry_counts = _write_output(
        mapping, accepted, output, hashes_path, progress
    )
    result.products_written, result.attributes_written = entry_counts

    for sf in source_files:
        if sf.status != "ok":
            sf.file_error(sf.reason)
    all_errors = [_sorted_errors(sf.errors) for sf in source_files if sf.errors]
    if schema_errors is not None and len(schema_errors):
        all_errors.append(schema_errors)
    result.error_lines = write_errors_csv(errors_path, all_errors)

    skus_by_file: dict[str, set[str]] = {}
    for sf in accepted:
        assert sf.frame is not None and sf.bad is not None
        skus = set(pd.unique(sf.frame["sku"].to_numpy()[~sf.bad]).tolist())
        skus_by_file.setdefault(sf.input_name, set()).update(skus & written_skus)
    result.skus_by_file = {name: sorted(skus) for name, skus in skus_by_file.items()}
    with atomic_write(skus_path, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["file", "sku"])
        for name in sorted(result.skus_by_file):
            writer.writerows([name, sku] for sku in result.skus_by_file[name])

    for sf in source_files:
        result.rows_read += sf.rows
        result.rows_read_by_file[sf.name] = sf.rows
        result.rows_rejected += sf.rejected_rows
        result.per_file.append(
            {
                "file": sf.name,
                "input": sf.input_name,
                "source": sf.source,
                "rows": sf.rows,
                "rejected_rows": sf.rejected_rows,
                "status": sf.status,
                "reason": sf.reason,
            }
        )
        if sf.status != "ok":
            result.files_rejected.append({"file": sf.name, "reason": sf.reason})
    result.duration_s = round(time.perf_counter() - started, 3)
    log.info(
        "Transform %s: %d rows read from %d file(s), %d products written with %d attributes, "
        "%d rows rejected, %d file(s) rejected, %.1f s",
        mapping.name,
        result.rows_read,
        len(source_files),
        result.products_written,
        result.attributes_written,
        result.rows_rejected,
        len(result.files_rejected),
        result.duration_s,
    )
    for rejected in result.files_rejected:
        log.warning("Rejected file %s: %s", rejected["file"], rejected["reason"])
    return result


# --- Loading -----------------------------------------------------------------------------------


def _load_inputs(mapping: Mapping, paths: list[Path], progress: Progress | None) -> list[_SourceFile]:
    source_files: list[_SourceFile] = []
    for number, path in enumerate(paths, start=1):
        input_name = path.name
        source = classify(path.name, mapping)
        try:
            members = open_input(path, mapping.input_limits)
        except FileRejected as exc:
            sf = _SourceFile(len(source_files), input_name, input_name, source)
            sf.reject(exc.reason)
            source_files.append(sf)
            continue
        if source is not None and len(members) > 1:
            sf = _SourceFile(len(source_files), input_name, input_name, source)
            names = ", ".join(m.name.split("!", 1)[1] for m in members[:5])
            sf.reject(f"archive named like a {source} file must hold exactly one data file, found {len(members)}: {names}")
            source_files.append(sf)
            continue
        for member in members:
            member_source = source or classify(member.inner_name, mapping)
            sf = _SourceFile(len(source_files), member.name, input_name, member_source)
            source_files.append(sf)
            if member_source is None:
                patterns = "; ".join(f"{s}: {', '.join(spec.patterns)}" for s, spec in mapping.sources.items())
                sf.reject(f"file name matches no source of mapping {mapping.name!r} ({patterns})")
                continue
            spec = mapping.sources[member_source]
            sf.spec = spec
            try:
                sf.table = read_member(
                    member,
                    separator=spec.separator,
                    encoding=spec.encoding,
                    sheet=spec.sheet,
                    decimal="," if spec.decimal == "," else ".",
                    limits=mapping.input_limits,
                )
                _map_columns(sf, mapping)
            except FileRejected as exc:
                sf.reject(exc.reason)
                sf.frame = None
            else:
                log.info(
                    "Read %s as %s: %d rows (encoding %s, separator %r)",
                    sf.name,
                    member_source,
                    sf.rows,
                    sf.table.encoding or "xlsx",
                    sf.table.separator or "",
                )
        if progress:
            progress("read", number, len(paths))
    return source_files


def _map_columns(sf: _SourceFile, mapping: Mapping) -> None:
    """Rename source headers to canonical fields, apply constants and value maps."""
    table, spec = sf.table, sf.spec
    assert table is not None and spec is not None
    by_key = {h.casefold(): h for h in table.headers}
    missing: list[str] = []
    selected: dict[str, str] = {}
    for canonical, header in spec.columns.items():
        key = header.strip().casefold()
        if key in table.duplicate_headers:
            positions = ", ".join(str(p) for p in table.duplicate_headers[key])
            raise FileRejected(f"column {header!r} appears more than once (columns {positions})")
        if key in by_key:
            selected[canonical] = by_key[key]
        elif canonical in _required_fields(spec):
            missing.append(f"{header!r} ({canonical})")
    wide_headers: list[tuple[str, str]] = []
    if spec.wide:
        for header, attribute in spec.wide.columns.items():
            key = header.strip().casefold()
            if key in by_key:
                wide_headers.append((by_key[key], attribute))
            else:
                missing.append(f"{header!r} (option column)")
    if missing:
        found = ", ".join(repr(h) for h in table.headers[:12])
        more = ", ..." if len(table.headers) > 12 else ""
        raise FileRejected(f"missing required column(s) {', '.join(missing)}; found {found}{more}")

    raw = table.frame
    sf.rows = table.rows
    data: dict[str, Any] = {LINE_COLUMN: raw[LINE_COLUMN].to_numpy()}
    for canonical, header in selected.items():
        values = raw[header]
        if canonical != "sku":
            values = values.str.strip()
        value_map = spec.value_maps.get(canonical)
        if value_map:
            values = values.replace(value_map)
        data[canonical] = values.reset_index(drop=True)
        sf.headers[canonical] = header
    for canonical, constant in spec.constants.items():
        data[canonical] = pd.Series(np.full(len(raw), constant, dtype=object), dtype="str")
        sf.headers[canonical] = f"(constant {canonical})"
    frame = pd.DataFrame(data)

    if sf.source == "products":
        sf.meta = _metadata_columns(spec, table.headers, selected)
        for header, _key in sf.meta:
            frame[f"meta\x00{header}"] = raw[header].str.strip().reset_index(drop=True)
    if spec.wide:
        frame = _melt_wide(frame, raw, wide_headers, spec)
    sf.frame = frame
    sf.bad = np.zeros(len(frame), dtype=bool)
    if table.row_errors:
        sf.errors.append(
            errors_frame(ErrorRow(sf.name, line, "", "", reason) for line, reason in table.row_errors)
        )
    unused = [h for h in table.headers if h not in selected.values() and h not in {m[0] for m in sf.meta}]
    unused = [h for h in unused if h not in {w[0] for w in wide_headers} and not h.startswith("(column ")]
    if unused:
        log.info("%s: columns not used by mapping %s: %s", sf.name, mapping.name, ", ".join(unused))


def _required_fields(spec: SourceMapping) -> set[str]:
    from threekit_pipeline.transform.mapping import SOURCE_FIELDS, WIDE_OPTION_FIELDS

    fields = WIDE_OPTION_FIELDS if spec.wide else SOURCE_FIELDS[spec.name]
    return {name for name, required in fields.items() if required}


def _metadata_columns(spec: SourceMapping, headers: list[str], selected: dict[str, str]) -> list[tuple[str, str]]:
    meta: list[tuple[str, str]] = []
    seen_keys: set[str] = set()
    explicit = {h.strip().casefold(): key for h, key in spec.metadata_columns.items()}
    found_explicit: set[str] = set()
    mapped = set(selected.values())
    prefix = spec.metadata_prefix.casefold() if spec.metadata_prefix else None
    for header in headers:
        folded = header.casefold()
        key = None
        if folded in explicit:
            key = explicit[folded]
            found_explicit.add(folded)
        elif prefix and folded.startswith(prefix) and header not in mapped:
            key = header[len(spec.metadata_prefix) :].strip()
        if key is None:
            continue
        if not key or key.casefold() == "sku" or key in seen_keys:
            log.warning("Column %r ignored: metadata key %r is empty, reserved or repeated", header, key)
            continue
        seen_keys.add(key)
        meta.append((header, key))
    for folded, key in explicit.items():
        if folded not in found_explicit:
            log.warning("Metadata column for %r not present in this file; nothing written for it", key)
    return meta


def _melt_wide(frame: pd.DataFrame, raw: pd.DataFrame, wide_headers: list[tuple[str, str]], spec) -> pd.DataFrame:
    """Wide option matrix -> long rows (sku, attribute, value, default) with the source column."""
    assert spec.wide is not None
    separator, marker = spec.wide.value_separator, spec.wide.default_marker
    parts = []
    for order, (header, attribute) in enumerate(wide_headers):
        cells = raw[header].reset_index(drop=True)
        pieces = cells.str.split(separator, regex=False).explode()
        pieces = pieces.astype("str").str.strip()
        keep = (pieces != "").to_numpy(dtype=bool)
        pieces = pieces[keep]
        rows = pieces.index.to_numpy()
        default = np.zeros(len(pieces), dtype=bool)
        if marker:
            # The default value carries the marker as a prefix or a suffix ("Oak*" or "*Oak").
            starts = _mask(pieces.str.startswith(marker))
            pieces = pieces.where(~starts, pieces.str.slice(len(marker)))
            ends = _mask(pieces.str.endswith(marker))
            pieces = pieces.where(~ends, pieces.str.slice(0, -len(marker))).str.strip()
            default = starts | ends
        parts.append(
            pd.DataFrame(
                {
                    "_row": rows,
                    "_order": order,
                    LINE_COLUMN: frame[LINE_COLUMN].to_numpy()[rows],
                    "sku": frame["sku"].to_numpy()[rows],
                    "attribute": attribute,
                    "value": pieces.to_numpy(),
                    "default": np.where(default, "true", "false"),
                    "_column": header,
                }
            )
        )
    if not parts:
        return frame.iloc[0:0]
    long = pd.concat(parts, ignore_index=True)
    long = long.sort_values(["_row", "_order"], kind="stable").drop(columns=["_row", "_order"])
    long = long.reset_index(drop=True)
    for column in ("sku", "attribute", "value", "default", "_column"):
        long[column] = long[column].astype("str")
    return long


# --- Row validation ------------------------------------------------------------------------------


def _mask(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype=bool, na_value=False)


def _validate_rows(sf: _SourceFile, mapping: Mapping) -> None:
    frame = sf.frame
    assert frame is not None
    _check_sku(sf, mapping)
    for canonical in [c for c in frame.columns if c not in (LINE_COLUMN, "sku", "_column")]:
        values = frame[canonical]
        meta = canonical.startswith("meta\x00")
        pattern = _CONTROL_FREE_TEXT if canonical in _FREE_TEXT_FIELDS else _CONTROL_STRICT
        if meta:
            header = canonical.split("\x00", 1)[1]
            sf.headers.setdefault(canonical, header)
        sf.flag(_mask(values.str.contains(pattern, regex=True)), canonical, "contains control characters")
        limit = mapping.max_length("metadata" if meta else canonical)
        too_long = _mask(values.str.len() > limit)
        sf.flag(too_long, canonical, f"longer than {limit} characters")

    source = sf.source
    if source == "products":
        sf.flag(_mask(frame["name"] == ""), "name", "empty name")
    elif source == "options":
        sf.flag(_mask(frame["attribute"] == ""), "attribute", "empty attribute name")
        sf.flag(_mask(frame["value"] == ""), "value", "empty option value")
        if "default" in frame.columns:
            lowered = frame["default"].str.lower()
            bad_default = ~_mask(lowered.isin(_TRUE | _FALSE))
            sf.flag(bad_default, "default", "default must be true or false")
            frame["default"] = lowered.isin(_TRUE)
    elif source == "prices":
        _validate_prices(sf)
    elif source == "parts":
        _validate_parts(sf)
    _count_rejected(sf)


def _count_rejected(sf: _SourceFile) -> None:
    """Rejected source rows: unparseable rows plus distinct lines with at least one problem."""
    parse_errors = len(sf.table.row_errors) if sf.table is not None else 0
    lines = sf.frame[LINE_COLUMN].to_numpy()[sf.bad]
    sf.rejected_rows = parse_errors + int(np.unique(lines).size)


def _check_sku(sf: _SourceFile, mapping: Mapping) -> None:
    sku = sf.frame["sku"]
    stripped = sku.str.strip()
    empty = _mask(stripped == "")
    sf.flag(empty, "sku", "empty SKU")
    sf.flag(~empty & _mask(stripped != sku), "sku", "SKU has leading or trailing whitespace")
    sf.flag(_mask(sku.str.contains(r"[/\\]", regex=True)), "sku", "SKU contains a path character (/ or \\)")
    sf.flag(_mask(sku.str.contains(_CONTROL_STRICT, regex=True)), "sku", "SKU contains control characters")
    limit = mapping.max_length("sku")
    sf.flag(_mask(sku.str.len() > limit), "sku", f"SKU longer than {limit} characters")


def normalise_decimals(values: pd.Series, decimal: str, thousands: str | None) -> pd.Series:
    """Rewrite decimal numbers to use ``.`` and no grouping; malformed values stay malformed."""
    values = values.str.strip()
    if thousands:
        values = values.str.replace(thousands, "", regex=False)
    if decimal == ",":
        # A "." where "," is the decimal point (and not the grouping) is an error: keep it
        # malformed by turning it into a second separator.
        values = values.str.replace(".", "..", regex=False).str.replace(",", ".", regex=False)
    elif decimal == "auto":
        has_comma = _mask(values.str.contains(",", regex=False))
        if has_comma.any():
            both = has_comma & _mask(values.str.contains(".", regex=False))
            if both.any():
                # The rightmost of . and , is the decimal point; the other one groups thousands.
                last_comma = values.str.rfind(",")
                last_dot = values.str.rfind(".")
                comma_decimal = _mask(last_comma > last_dot)
                fixed = values.copy()
                fixed = fixed.where(~(both & comma_decimal), values.str.replace(".", "", regex=False))
                fixed = fixed.where(~(both & ~comma_decimal), values.str.replace(",", "", regex=False))
                values = fixed
            values = values.str.replace(",", ".", regex=False)
    return values


def _validate_prices(sf: _SourceFile) -> None:
    frame, spec = sf.frame, sf.spec
    sf.flag(_mask(frame["pricebook"] == ""), "pricebook", "empty pricebook")
    currency = frame["currency"].str.upper()
    empty_currency = _mask(currency == "")
    sf.flag(empty_currency, "currency", "empty currency")
    unknown = ~empty_currency & ~_mask(currency.isin(ISO_4217_CODES))
    sf.flag(unknown, "currency", "unknown currency code (not ISO 4217): " + frame["currency"])
    frame["currency"] = currency

    raw_price = frame["price"]
    normalised = normalise_decimals(raw_price, spec.decimal, spec.thousands)
    empty = _mask(raw_price == "")
    sf.flag(empty, "price", "empty price")
    valid = _mask(normalised.str.fullmatch(_NUMBER))
    not_finite = ~valid & _mask(raw_price.str.strip().str.lower().isin(_NOT_FINITE))
    sf.flag(not_finite, "price", "price is NaN or infinite")
    sf.flag(~empty & ~valid & ~not_finite, "price", "price is not a number")
    amounts = pd.to_numeric(normalised.where(valid, "nan"), errors="coerce").to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        negative = valid & (amounts < 0)
        huge = valid & ~np.isfinite(amounts)
    sf.flag(negative, "price", "negative price")
    sf.flag(huge, "price", "price is NaN or infinite")
    frame["price"] = amounts

    key = ["sku", "pricebook", "currency"]
    duplicated = frame.duplicated(subset=key, keep="first").to_numpy() & ~(frame["sku"] == "").to_numpy(dtype=bool)
    if duplicated.any():
        first_line = frame.groupby(key, sort=False)[LINE_COLUMN].transform("first")
        reason = "duplicate price for this SKU, pricebook and currency (first on line " + first_line.astype(
            "str"
        ) + ")"
        sf.flag(duplicated, "price", reason.astype("str"), values=raw_price)


def _validate_parts(sf: _SourceFile) -> None:
    frame = sf.frame
    sf.flag(_mask(frame["attribute"] == ""), "attribute", "empty attribute name")
    asset = frame["asset"]
    empty = _mask(asset == "")
    sf.flag(empty, "asset", "empty asset (an asset id or a #tag)")
    sf.flag(_mask(asset == "#"), "asset", "empty tag after '#'")
    sf.flag(~empty & _mask(asset.str.contains(r"\s", regex=True)), "asset", "asset id or tag contains whitespace")
    if "asset_type" in frame.columns:
        asset_type = frame["asset_type"].str.lower()
        asset_type = asset_type.where(asset_type != "", "item")
    else:
        asset_type = pd.Series(np.full(len(frame), "item", dtype=object), dtype="str")
        sf.headers["asset_type"] = "(default asset_type)"
    sf.flag(
        ~_mask(asset_type.isin(ASSET_TYPES)),
        "asset_type",
        f"unknown asset_type (allowed: {', '.join(ASSET_TYPES)})",
        values=frame["asset_type"] if "asset_type" in frame.columns else asset_type,
    )
    frame["asset_type"] = asset_type
    if len(frame):
        key = ["sku", "attribute"]
        first_type = frame.groupby(key, sort=False)["asset_type"].transform("first")
        first_line = frame.groupby(key, sort=False)[LINE_COLUMN].transform("first")
        conflict = _mask(first_type != asset_type)
        if conflict.any():
            reason = "asset_type conflicts with '" + first_type + "' on line " + first_line.astype("str")
            sf.flag(conflict, "asset_type", reason.astype("str"))


def _check_duplicate_products(products: list[_SourceFile]) -> None:
    """Every occurrence of a SKU after the first (across the batch's products files) is rejected."""
    readable = [sf for sf in products if sf.readable]
    if not readable:
        return
    combined = pd.DataFrame(
        {
            "sku": pd.concat([sf.frame["sku"] for sf in readable], ignore_index=True),
            "file": np.concatenate([np.full(len(sf.frame), i) for i, sf in enumerate(readable)]),
            "line": np.concatenate([sf.frame[LINE_COLUMN].to_numpy() for sf in readable]),
        }
    )
    duplicated = combined["sku"].duplicated(keep="first").to_numpy() & (combined["sku"] != "").to_numpy(dtype=bool)
    if not duplicated.any():
        return
    first = combined.groupby("sku", sort=False)[["file", "line"]].transform("first")
    offset = 0
    for i, sf in enumerate(readable):
        n = len(sf.frame)
        dup = duplicated[offset : offset + n]
        if dup.any():
            first_file = first["file"].to_numpy()[offset : offset + n]
            first_line = first["line"].to_numpy()[offset : offset + n]
            reasons = np.array(
                [
                    f"duplicate SKU (first seen on line {line})"
                    if f == i
                    else f"duplicate SKU (first seen in {readable[f].name} line {line})"
                    for f, line in zip(first_file[dup], first_line[dup], strict=True)
                ],
                dtype=object,
            )
            full = np.full(n, "", dtype=object)
            full[dup] = reasons
            sf.flag(dup, "sku", pd.Series(full, dtype="str"))
            _count_rejected(sf)
        offset += n


def _check_against_products(products: list[_SourceFile], others: list[_SourceFile]) -> None:
    """Rows for SKUs the batch's products file(s) do not define, or define in a rejected row."""
    readable = [sf for sf in products if sf.readable]
    good: set[str] = set()
    rejected_at: dict[str, str] = {}
    for sf in readable:
        skus = sf.frame["sku"].to_numpy()
        good.update(skus[~sf.bad].tolist())
        lines = sf.frame[LINE_COLUMN].to_numpy()
        for sku, line in zip(skus[sf.bad].tolist(), lines[sf.bad].tolist(), strict=True):
            rejected_at.setdefault(sku, f"{sf.name} line {line}")
    rejected_at = {sku: where for sku, where in rejected_at.items() if sku not in good}
    names = ", ".join(sf.name for sf in products)
    good_index = pd.Index(list(good))
    for sf in others:
        if not sf.readable:
            continue
        sku = sf.frame["sku"]
        known = _mask(sku.isin(good_index))
        candidates = ~known & ~sf.bad
        if not candidates.any():
            continue
        where = sku.map(rejected_at)
        reasons = ("product row for this SKU rejected (" + where + ")").fillna(
            f"SKU not in the batch products file ({names})"
        )
        sf.flag(candidates, "sku", reasons.astype("str"))
        _count_rejected(sf)


def _sorted_errors(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One file's errors by line (file-level errors first), each distinct error once."""
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.drop_duplicates(subset=["line", "column", "value", "reason"])
    return frame.sort_values("line", kind="stable", na_position="first")


def _apply_error_ratio(sf: _SourceFile) -> None:
    if sf.status != "ok" or sf.spec is None:
        return
    if sf.rows and sf.rejected_rows / sf.rows > sf.spec.max_error_ratio:
        share = sf.rejected_rows / sf.rows
        sf.reject(
            f"too many bad rows: {sf.rejected_rows} of {sf.rows} ({share:.1%}) rejected, "
            f"above the limit of {sf.spec.max_error_ratio:.1%}"
        )


# --- Output ----------------------------------------------------------------------------------------


def _number_values(values: pd.Series, decimal: str, thousands: str | None) -> list | None:
    """Typed metadata values if every non-empty value is a plain number, else None."""
    non_empty = values != ""
    normalised = normalise_decimals(values, decimal, thousands)
    ok = _mask(normalised.str.fullmatch(_METADATA_NUMBER))
    if not (ok | ~_mask(non_empty)).all() or not _mask(non_empty).any():
        return None
    result: list = []
    for text in normalised.where(_mask(non_empty), "").tolist():
        if not text:
            result.append(None)
        elif "." in text:
            result.append(float(text))
        else:
            result.append(int(text))
    return result


def _split_list(text: str, separator: str) -> list[str]:
    items: list[str] = []
    for piece in text.split(separator):
        piece = piece.strip()
        if piece and piece not in items:
            items.append(piece)
    return items


def _price_number(amount: float):
    return int(amount) if amount.is_integer() and abs(amount) < 2**53 else amount


def _write_output(
    mapping: Mapping,
    accepted: list[_SourceFile],
    output: Path,
    hashes_path: Path,
    progress: Progress | None,
) -> tuple[set[str], pd.DataFrame | None, tuple[int, int]]:
    by_source: dict[str, list[_SourceFile]] = {}
    for sf in accepted:
        by_source.setdefault(sf.source, []).append(sf)

    def good_rows(sf: _SourceFile) -> pd.DataFrame:
        return sf.frame.loc[~sf.bad]

    # Products: one accepted row per SKU (duplicates were rejected).
    product_rows: dict[str, tuple] = {}
    product_origin: dict[str, tuple[str, int]] = {}
    meta_keys: list[str] = []
    if "products" in by_source:
        frames = []
        for sf in by_source["products"]:
            good = good_rows(sf).copy()
            good["_file"] = sf.name
            rename = {f"meta\x00{header}": f"meta\x00{key}" for header, key in sf.meta}
            good = good.rename(columns=rename)
            frames.append(good)
            for _header, key in sf.meta:
                if key not in meta_keys:
                    meta_keys.append(key)
        products = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        n = len(products)
        spec = mapping.sources["products"]

        def column(name: str) -> list:
            return products[name].tolist() if name in products.columns else [""] * n

        meta_lists: list[tuple[str, str, list]] = []
        for key in meta_keys:
            name = f"meta\x00{key}"
            values = products[name] if name in products.columns else pd.Series([""] * n, dtype="str")
            values = values.fillna("")
            forced = spec.metadata_types.get(key)
            numbers = None if forced == "String" else _number_values(values, spec.decimal, spec.thousands)
            if forced == "Number" and numbers is None:
                log.warning("Metadata %r declared Number but has non-numeric values; written as String", key)
            if numbers is not None:
                meta_lists.append((key, "Number", numbers))
            else:
                meta_lists.append((key, "String", [v if v != "" else None for v in values.tolist()]))
        columns = [column(c) for c in ("sku", "name", "description", "keywords", "tags", "model_asset_id")]
        metas = [m[2] for m in meta_lists]
        lines = products[LINE_COLUMN].tolist() if n else []
        files = products["_file"].tolist() if n else []
        for i, row in enumerate(zip(*columns, strict=True)):
            product_rows[row[0]] = row + (tuple(m[i] for m in metas),)
            product_origin[row[0]] = (files[i], lines[i])
        products_spec = spec
    else:
        meta_lists = []
        products_spec = None

    # Options: sku -> {attribute: [values, seen, default]} in file order.
    options: dict[str, dict[str, list]] = {}
    for sf in by_source.get("options", []):
        good = good_rows(sf)
        defaults = good["default"].tolist() if "default" in good.columns else [False] * len(good)
        for sku, attribute, value, is_default in zip(
            good["sku"].tolist(), good["attribute"].tolist(), good["value"].tolist(), defaults, strict=True
        ):
            attributes = options.get(sku)
            if attributes is None:
                attributes = options[sku] = {}
            slot = attributes.get(attribute)
            if slot is None:
                slot = attributes[attribute] = [[], set(), None]
            if value not in slot[1]:
                slot[1].add(value)
                slot[0].append(value)
            if is_default and slot[2] is None:
                slot[2] = value

    # Parts: sku -> {attribute: [asset_type, values, seen]}.
    parts: dict[str, dict[str, list]] = {}
    for sf in by_source.get("parts", []):
        good = good_rows(sf)
        for sku, attribute, asset, asset_type in zip(
            good["sku"].tolist(),
            good["attribute"].tolist(),
            good["asset"].tolist(),
            good["asset_type"].tolist(),
            strict=True,
        ):
            attributes = parts.setdefault(sku, {})
            slot = attributes.get(attribute)
            if slot is None:
                slot = attributes[attribute] = [asset_type, [], set()]
            if asset not in slot[2]:
                slot[2].add(asset)
                slot[1].append(asset if asset.startswith("#") else {"assetId": asset})

    # Prices: sku -> {pricebook: {currency: amount}}.
    prices: dict[str, dict[str, dict[str, Any]]] = {}
    for sf in by_source.get("prices", []):
        good = good_rows(sf)
        for sku, pricebook, currency, amount in zip(
            good["sku"].tolist(),
            good["pricebook"].tolist(),
            good["currency"].tolist(),
            good["price"].tolist(),
            strict=True,
        ):
            books = prices.get(sku)
            if books is None:
                books = prices[sku] = {}
            books.setdefault(pricebook, {})[currency] = _price_number(amount)

    all_skus = set(product_rows) | set(options) | set(parts) | set(prices)
    ordered = sorted(all_skus)
    total = len(ordered)
    list_separator = products_spec.list_separator if products_spec else ";"
    meta_names = [(key, kind) for key, kind, _ in meta_lists]
    origin_of_other: dict[str, str] = {}
    written: set[str] = set()
    schema_errors: list[ErrorRow] = []
    products_written = 0
    attributes_written = 0
    sha256 = hashlib.sha256

    with (
        atomic_write(output, newline="\n") as out,
        atomic_write(hashes_path, newline="") as hashes_handle,
    ):
        hashes_writer = csv.writer(hashes_handle, lineterminator="\n")
        hashes_writer.writerow(["sku", "content_hash"])
        hash_rows = []
        for done, sku in enumerate(ordered, start=1):
            sku_meta = {"name": "SKU", "defaultValue": sku, "type": "String"}
            product: dict[str, Any] = {}
            row = product_rows.get(sku)
            metadata = [sku_meta]
            if row is not None:
                _sku, name, description, keywords, tags, model_asset_id, meta_values = row
                product["name"] = name
                product["type"] = "item"
                if description:
                    product["description"] = description
                if keywords:
                    items = _split_list(keywords, list_separator)
                    if items:
                        product["keywords"] = items
                if tags:
                    items = _split_list(tags, list_separator)
                    if items:
                        product["tags"] = items
                if model_asset_id:
                    product["asset"] = {"assetId": model_asset_id, "type": "model"}
                for (key, kind), value in zip(meta_names, meta_values, strict=True):
                    if value is not None:
                        metadata.append({"name": key, "defaultValue": value, "type": kind})
            else:
                product["type"] = "item"
            product["metadata"] = metadata
            attributes: list[dict[str, Any]] = []
            for attribute, (values, _seen, default) in options.get(sku, {}).items():
                attributes.append(
                    {"type": "String", "name": attribute, "values": values, "defaultValue": default or values[0]}
                )
            for attribute, (asset_type, values, _seen) in parts.get(sku, {}).items():
                attributes.append({"type": "Asset", "name": attribute, "assetType": asset_type, "values": values})
            books = prices.get(sku)
            if books:
                attributes.append(
                    {
                        "type": "Pricing",
                        "name": "Pricing",
                        "values": [
                            {"pricebook": book, "currencies": dict(sorted(books[book].items()))}
                            for book in sorted(books)
                        ],
                        "defaultValue": {},
                    }
                )
            if attributes:
                product["attributes"] = attributes
            entry = {"query": {"metadata": [sku_meta]}, "product": product}
            problems = check_entry(entry)
            if problems:
                file_name, line = product_origin.get(sku, (origin_of_other.get(sku, ""), None))
                schema_errors.append(
                    ErrorRow(file_name, line, "", sku, "entry fails the import schema: " + "; ".join(problems[:3]))
                )
                continue
            text = _dumps(entry)
            out.write(text)
            out.write("\n")
            hash_rows.append((sku, sha256(text.encode("utf-8")).hexdigest()))
            written.add(sku)
            products_written += 1
            attributes_written += len(attributes)
            if done % _PROGRESS_EVERY == 0:
                log.info("Wrote %d of %d products", done, total)
                if progress:
                    progress("write", done, total)
        hashes_writer.writerows(hash_rows)
    if progress:
        progress("write", total, total)
    frame = errors_frame(schema_errors) if schema_errors else None
    return written, frame, (products_written, attributes_written)
