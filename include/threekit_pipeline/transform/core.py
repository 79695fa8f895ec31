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
* ``<output>.lines.csv``: ``sku,file,line``, where each written product comes from: its row
  in the batch's products file (else the first row of another file that carries it), ``line``
  counted as in the errors CSV (header = 1; zip members: ``archive.zip!member.csv``);
* the errors CSV (``<output>.errors.csv`` unless given): ``file, line, column, key, value,
  reason`` (``key``: the row's SKU).

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
import gc
import hashlib
import logging
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from threekit_pipeline.transform.batches import classify
from threekit_pipeline.transform.currencies import ISO_4217_CODES
from threekit_pipeline.transform.errors import (
    ErrorRow,
    FileRejected,
    atomic_write,
    errors_frame,
    write_errors_csv,
)
from threekit_pipeline.transform.mapping import (
    SOURCE_FIELDS,
    WIDE_OPTION_FIELDS,
    Mapping,
    SourceMapping,
    load_mapping,
)
from threekit_pipeline.transform.readers import LINE_COLUMN, RawTable, open_input, read_member
from threekit_pipeline.transform.schema import check_entry, quick_valid

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
# Invisible, format and non-ASCII space characters: never part of a key (U+00A0 no-break
# space, soft hyphen, zero-width space/joiners, direction marks, word joiner, BOM, ...).
_INVISIBLE_KEY = (
    r"[\u00a0\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180e\u2000-\u200f\u2028-\u202f"
    r"\u205f-\u206f\u3000\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb]"
)
# Values only a spreadsheet's number conversion produces, never a real identifier.
_EXCEL_DAMAGE = (
    (r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+", "identifier in scientific notation (a spreadsheet turned it into a number and its digits are lost); export the column as text"),
    (r"\d+\.0+", "identifier ends in '.0' (a spreadsheet turned it into a number); export the column as text"),
    (r'="[^"]*"', "identifier wrapped as a spreadsheet formula (=\"...\"); export the column as text"),
)
# Metadata keys that name identifiers: always String, whatever their values look like.
_IDENTIFIER_KEY = re.compile(
    r"(?:^|[^a-z])(?:ean|ean13|ean8|gtin|gtin\d+|upc|isbn|mpn|sku|barcode|id)s?(?:$|[^a-z])"
    r"|(?:part|article|item|material|product|catalog|model|order|artikel|material|teile)[ _.-]*"
    r"(?:no|nr|num|number|nummer|code|id)(?:$|[^a-z])"
    r"|nummer$"
)
# One "," or "." followed by exactly three digits ("1,299", "12.500"): a grouped thousand in
# one convention and a decimal in the other. With decimal: auto it is reported, never guessed.
_AMBIGUOUS_NUMBER = r"[+-]?[1-9]\d{0,2}[.,]\d{3}"
_NOT_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
_TRUE = frozenset({"true", "1", "yes", "y", "x"})
_FALSE = frozenset({"false", "0", "no", "n", ""})
_PROGRESS_EVERY = 50_000

# Compact UTF-8 JSON, keys in insertion order (byte-identical to json.dumps with
# separators=(",", ":") and ensure_ascii=False, several times faster). Entries are checked
# to hold only finite numbers before they are encoded.
_encode = msgspec.json.Encoder().encode


# --- Result --------------------------------------------------------------------------------


@dataclass
class TransformResult:
    """Outcome of one batch transform (JSON-serialisable with :meth:`to_dict`)."""

    mapping: str
    output: str
    hashes: str
    errors: str
    skus_path: str
    # ``sku,file,line`` of every written product (see the module docstring); "" before it exists.
    lines_path: str = ""
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
    # "Canonical Name" + locale columns from per-locale export columns ("" when none).
    translations: str = ""
    # Metadata key -> "String" | "Number" as written in this batch (to fix types across batches).
    metadata_types: dict[str, str] = field(default_factory=dict)

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
    # Translation frames (Canonical Name + locales) from an export layout's per-locale columns.
    translations: list[pd.DataFrame] = field(default_factory=list)

    @property
    def readable(self) -> bool:
        return self.frame is not None and self.status == "ok"

    def reject(self, reason: str) -> None:
        self.status = "rejected"
        self.reason = reason

    def file_error(self, reason: str, column: str = "", value: str = "") -> None:
        self.errors.append(errors_frame([ErrorRow(self.name, None, column, value, reason)]))

    def flag(
        self, mask: np.ndarray, field_name: str, reason, values: pd.Series | None = None, *, cell_only: bool = False
    ) -> None:
        """Record one error line per masked row; mark the rows bad, or with ``cell_only`` blank
        the cell instead (the value is left out and reported, the rest of the row is kept)."""
        if not mask.any():
            return
        assert self.frame is not None and self.bad is not None
        frame = self.frame
        if values is None:
            values = frame[field_name].copy()
        if cell_only:
            frame.loc[mask, field_name] = ""
        else:
            self.bad |= mask
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
                    "key": frame["sku"].to_numpy(dtype=object)[mask] if "sku" in frame.columns else np.full(count, "", dtype=object),
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
    metadata_types: dict[str, str] | None = None,
    pricebooks: dict[str, str] | None = None,
) -> TransformResult:
    """Transform one batch of ERP/PIM files into an importReqBody JSONL file (see module doc).

    ``metadata_types`` (key -> ``"String"``/``"Number"``): types earlier batches chose for
    metadata keys. They count as declared (the mapping's own ``metadata.types`` and
    identifiers win), so a key never flips type between batches: a value that does not fit
    a known Number key is a row error. The types this batch wrote are in
    :attr:`TransformResult.metadata_types`.

    ``progress(stage, done, total)`` is called after each file is read and periodically
    while entries are written. ``pricebooks`` (pricebook name -> id, the org's pricebooks)
    turns on pricebook resolution: a price row's pricebook may be a name (matched
    case-insensitively) or an id and is written as the id; a row naming no known pricebook
    is rejected (``unknown pricebook 'X'; known: ...``). None leaves pricebooks as they are.
    """
    started = time.perf_counter()
    mapping = load_mapping(mapping) if not isinstance(mapping, Mapping) else mapping
    if metadata_types:
        mapping = _with_known_types(mapping, metadata_types)
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
    layout_translations = [frame for sf in source_files for frame in sf.translations]
    for sf in source_files:
        if sf.readable:
            _validate_rows(sf, mapping, pricebooks)
    products = [sf for sf in source_files if sf.source == "products"]
    _check_duplicate_products(products, mapping.case_insensitive_skus)
    _check_batch_conflicts(source_files)
    for sf in products:
        _apply_error_ratio(sf)
    rejected_products = [sf for sf in products if sf.status != "ok"]
    if rejected_products:
        cause = "; ".join(f"{sf.name}: {sf.reason}" for sf in rejected_products)
        for sf in source_files:
            if sf.source != "products" and sf.status == "ok":
                sf.reject(f"batch products file rejected ({cause})")
    elif products:
        others = [sf for sf in source_files if sf.source not in (None, "products")]
        if mapping.case_insensitive_skus:
            _adopt_product_spelling(products, others)
        _check_against_products(products, others)
    for sf in source_files:
        if sf.source != "products":
            _apply_error_ratio(sf)

    accepted = [sf for sf in source_files if sf.status == "ok" and sf.frame is not None]
    # Millions of small dicts and lists, none of them cyclic: the cyclic garbage collector
    # would rescan the growing heap over and over (several seconds) for nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        written_skus, schema_errors, entry_counts = _write_output(mapping, accepted, output, hashes_path, progress)
    finally:
        if gc_was_enabled:
            gc.enable()
    result.products_written, result.attributes_written, result.metadata_types = entry_counts

    for sf in source_files:
        if sf.status != "ok":
            sf.file_error(sf.reason)
    all_errors = [_sorted_errors(sf.errors) for sf in source_files if sf.errors]
    for frame in all_errors:
        _log_row_errors(frame)
    if schema_errors is not None and len(schema_errors):
        all_errors.append(schema_errors)
    result.error_lines = write_errors_csv(errors_path, all_errors)
    if layout_translations:
        from threekit_pipeline.transform.layouts import write_translations

        translations_path = output.with_name(output.name + ".translations.csv")
        write_translations(translations_path, layout_translations)
        result.translations = str(translations_path)

    result.skus_by_file = _skus_by_file(accepted, written_skus)
    lines_path = output.with_name(output.name + ".lines.csv")
    _write_sku_lines(lines_path, accepted, written_skus)
    result.lines_path = str(lines_path)
    _write_pairs_csv(
        skus_path,
        ("file", "sku"),
        ((name, skus) for name, skus in sorted(result.skus_by_file.items())),
    )

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


def _with_known_types(mapping: Mapping, known: dict[str, str]) -> Mapping:
    """The mapping with earlier batches' metadata types as declared types (the mapping's own win)."""
    from dataclasses import replace

    spec = mapping.sources.get("products")
    if spec is None:
        return mapping
    types = {
        key: kind
        for key, kind in known.items()
        if kind in ("String", "Number") and not is_identifier_key(key, spec)
    }
    types.update(spec.metadata_types)
    return replace(mapping, sources={**mapping.sources, "products": replace(spec, metadata_types=types)})


def _load_inputs(mapping: Mapping, paths: list[Path], progress: Progress | None) -> list[_SourceFile]:
    source_files: list[_SourceFile] = []
    if mapping.inputs:
        paths = _load_layout_inputs(mapping, paths, source_files)
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
                    hidden_rows=spec.hidden_rows,
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


def _load_layout_inputs(mapping: Mapping, paths: list[Path], source_files: list[_SourceFile]) -> list[Path]:
    """Export files matched by the mapping's ``inputs`` (transform/layouts.py): reshaped into
    canonical tables, one source file each; returns the paths left for ``sources``."""
    from threekit_pipeline.transform.layouts import LIST_SEPARATOR, META_PREFIX, reshape_inputs

    rest, derived, translations = reshape_inputs(mapping, paths)
    for d in derived:
        sf = _SourceFile(len(source_files), d.name, d.input_name, d.source)
        source_files.append(sf)
        if d.reject_reason:
            sf.reject(d.reject_reason)
            continue
        columns = {name: name for name in d.table.headers if not name.startswith(META_PREFIX)}
        sf.spec = SourceMapping(
            name=d.source,
            patterns=("(export layout)",),
            decimal=d.decimal,
            thousands=d.thousands,
            list_separator=LIST_SEPARATOR,
            columns=columns,
            metadata_prefix=META_PREFIX if d.source == "products" else None,
            metadata_types=d.metadata_types,
            max_error_ratio=d.max_error_ratio,
        )
        sf.table = d.table
        try:
            _map_columns(sf, mapping)
        except FileRejected as exc:
            sf.reject(exc.reason)
            sf.frame = None
        if d.notes is not None and len(d.notes):
            sf.errors.append(d.notes)
    if translations and source_files:
        source_files[0].translations.extend(translations)
    return rest


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
            if key in table.duplicate_headers:
                positions = ", ".join(str(p) for p in table.duplicate_headers[key])
                raise FileRejected(f"column {header!r} appears more than once (columns {positions})")
            if key in by_key:
                wide_headers.append((by_key[key], attribute))
            else:
                missing.append(f"{header!r} (option column)")
    if missing:
        found = ", ".join(repr(_shown_header(h)) for h in table.headers[:12])
        more = ", ..." if len(table.headers) > 12 else ""
        raise FileRejected(f"missing required column(s) {', '.join(missing)}; found {found}{more}")

    raw = table.frame
    sf.rows = table.rows
    data: dict[str, Any] = {LINE_COLUMN: raw[LINE_COLUMN].to_numpy()}
    for canonical, header in selected.items():
        values = _nfc(raw[header])
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
    if sf.source == "products":
        sf.meta = _metadata_columns(spec, table.headers, selected, sf)
        for header, _key in sf.meta:
            # A repeated metadata column would land under a made-up key ("Color (column 4)").
            if (positions := table.duplicate_headers.get(header.casefold())) is not None:
                listed = ", ".join(str(p) for p in positions)
                raise FileRejected(f"column {header!r} appears more than once (columns {listed})")
        # Collected before the frame is built: inserting thousands of columns one by one
        # into a DataFrame is quadratic (a 10,000-column export took minutes).
        for header, _key in sf.meta:
            data[f"meta\x00{header}"] = _nfc(raw[header]).str.strip().reset_index(drop=True)
    frame = pd.DataFrame(data)
    if spec.wide:
        frame = _melt_wide(frame, raw, wide_headers, spec)
    sf.frame = frame
    sf.bad = np.zeros(len(frame), dtype=bool)
    if table.row_errors:
        sku_position = table.headers.index(selected["sku"]) if "sku" in selected else -1
        sf.errors.append(errors_frame(_row_error(sf.name, error, sku_position) for error in table.row_errors))
    used = {*selected.values(), *(m[0] for m in sf.meta), *(w[0] for w in wide_headers)}
    unused = [h for h in table.headers if h not in used and not h.startswith("(column ")]
    if unused:
        shown = ", ".join(_shown_header(h) for h in unused[:20])
        more = f", ... ({len(unused) - 20} more)" if len(unused) > 20 else ""
        log.info("%s: %d column(s) not used by mapping %s: %s%s", sf.name, len(unused), mapping.name, shown, more)


def _row_error(file_name: str, error: tuple, sku_position: int) -> ErrorRow:
    """An ErrorRow from a reader's ``(line, reason[, column[, raw fields]])`` row error."""
    line, reason = error[0], error[1]
    column = error[2] if len(error) > 2 else ""
    fields = error[3] if len(error) > 3 else None
    key = ""
    if fields is not None and 0 <= sku_position < len(fields):
        key = unicodedata.normalize("NFC", str(fields[sku_position]))
    return ErrorRow(file_name, line, column, "", reason, key)


def _nfc(values: pd.Series) -> pd.Series:
    """Unicode NFC of a string Series (a no-op scan when the text is all ASCII)."""
    if not len(values):
        return values
    array = _strings(values)
    if pc.all(pc.string_is_ascii(array)).as_py():
        return values
    normalised = pc.utf8_normalize(array, form="NFC")
    if normalised.equals(array):
        return values
    return pd.Series(normalised.to_pandas(), index=values.index, dtype="str")


def _shown_header(header: str, limit: int = 60) -> str:
    """A header as quoted in messages and logs, cut short: a header line can be megabytes long."""
    return header if len(header) <= limit else f"{header[:limit]}... ({len(header):,} characters)"


def _required_fields(spec: SourceMapping) -> set[str]:
    fields = WIDE_OPTION_FIELDS if spec.wide else SOURCE_FIELDS[spec.name]
    return {name for name, required in fields.items() if required}


def _metadata_columns(
    spec: SourceMapping, headers: list[str], selected: dict[str, str], sf: _SourceFile | None = None
) -> list[tuple[str, str]]:
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
        key = unicodedata.normalize("NFC", key)
        if not key or key.casefold() == "sku" or key in seen_keys:
            log.warning("Column %r ignored: metadata key %r is empty, reserved or repeated", header, key)
            if sf is not None:
                sf.file_error(f"column ignored: metadata key {key!r} is empty, reserved or repeated", column=header)
            continue
        seen_keys.add(key)
        meta.append((header, key))
    for folded, key in explicit.items():
        if folded not in found_explicit:
            log.warning("Metadata column for %r not present in this file; nothing written for it", key)
            if sf is not None:
                header = next((h for h in spec.metadata_columns if h.strip().casefold() == folded), key)
                sf.file_error(f"metadata column for {key!r} missing from this file; nothing written for it", column=header)
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


def _strings(values) -> pa.Array:
    """A pandas string Series/Index (or a list) as one contiguous Arrow large_string array."""
    if isinstance(values, (pd.Series, pd.Index)) and values.dtype != "str":
        values = values.astype("str")
    array = pa.array(values, type=pa.large_string())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _concat_strings(arrays: list[pa.Array]) -> pa.Array:
    """Several Arrow string arrays end to end (chunks are joined, never converted)."""
    if not arrays:
        return pa.array([], type=pa.large_string())
    return pa.chunked_array(arrays, type=pa.large_string()).combine_chunks()


def _isin(series: pd.Series, values) -> np.ndarray:
    """Vectorised membership test of a string Series (pyarrow; pandas' isin is slow on large sets)."""
    array = _strings(series)
    value_set = values if isinstance(values, pa.Array) else pa.array(list(values), type=pa.large_string())
    return pc.is_in(array, value_set=value_set).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _validate_rows(sf: _SourceFile, mapping: Mapping, pricebooks: dict[str, str] | None = None) -> None:
    frame = sf.frame
    assert frame is not None
    # control_free: the file's bytes hold no control character at all. Constants and
    # value-map results come from the mapping, which refuses control characters.
    control_free = sf.table is not None and sf.table.control_free
    _check_sku(sf, mapping, control_free)
    for canonical in [c for c in frame.columns if c not in (LINE_COLUMN, "sku", "_column")]:
        values = frame[canonical]
        meta = canonical.startswith("meta\x00")
        pattern = _CONTROL_FREE_TEXT if canonical in _FREE_TEXT_FIELDS else _CONTROL_STRICT
        if meta:
            header = canonical.split("\x00", 1)[1]
            sf.headers.setdefault(canonical, header)
        if not control_free:
            sf.flag(_mask(values.str.contains(pattern, regex=True)), canonical, "contains control characters")
        limit = mapping.max_length("metadata" if meta else canonical)
        too_long = _mask(values.str.len() > limit)
        sf.flag(too_long, canonical, f"longer than {limit} characters")

    source = sf.source
    if source == "products":
        sf.flag(_mask(frame["name"] == ""), "name", "empty name")
        _validate_metadata(sf)
    elif source == "options":
        sf.flag(_mask(frame["attribute"] == ""), "attribute", "empty attribute name")
        sf.flag(_mask(frame["value"] == ""), "value", "empty option value")
        if "default" in frame.columns:
            lowered = frame["default"].str.lower()
            bad_default = ~_isin(lowered, _TRUE | _FALSE)
            sf.flag(bad_default, "default", "default must be true or false")
            frame["default"] = _isin(lowered, _TRUE)
    elif source == "prices":
        _validate_prices(sf, pricebooks)
    elif source == "parts":
        _validate_parts(sf)
    _count_rejected(sf)


def _count_rejected(sf: _SourceFile) -> None:
    """Rejected source rows: unparseable rows plus distinct lines with at least one problem
    (rows hidden in a workbook are reported but not counted: they were left out on purpose)."""
    parse_errors = len(sf.table.row_errors) - sf.table.hidden_rows if sf.table is not None else 0
    lines = sf.frame[LINE_COLUMN].to_numpy()[sf.bad]
    sf.rejected_rows = parse_errors + int(np.unique(lines).size)


def _check_sku(sf: _SourceFile, mapping: Mapping, control_free: bool = False) -> None:
    sku = sf.frame["sku"]
    stripped = sku.str.strip()
    empty = _mask(stripped == "")
    sf.flag(empty, "sku", "empty SKU")
    sf.flag(~empty & _mask(stripped != sku), "sku", "SKU has leading or trailing whitespace")
    sf.flag(_mask(sku.str.contains(r"[/\\]", regex=True)), "sku", "SKU contains a path character (/ or \\)")
    if not pc.all(pc.string_is_ascii(_strings(sku))).as_py():
        invisible = _mask(sku.str.contains(_INVISIBLE_KEY, regex=True))
        if invisible.any():
            found = sku[invisible].str.extract(f"({_INVISIBLE_KEY})", expand=False)
            reasons = pd.Series(np.full(len(sku), "", dtype=object), index=sku.index, dtype="str")
            reasons[invisible] = "SKU contains an invisible or space character (U+" + found.map(lambda c: f"{ord(c):04X}") + ")"
            sf.flag(invisible, "sku", reasons)
    _check_excel_damage(sf, "sku", sku)
    if not control_free:
        sf.flag(_mask(sku.str.contains(_CONTROL_STRICT, regex=True)), "sku", "SKU contains control characters")
    limit = mapping.max_length("sku")
    sf.flag(_mask(sku.str.len() > limit), "sku", f"SKU longer than {limit} characters")


def _check_excel_damage(sf: _SourceFile, field_name: str, values: pd.Series, *, cell_only: bool = False) -> None:
    """Report identifiers a spreadsheet mangled (``4.00638E+12``, ``123.0``, ``="000123"``).

    The SKU makes the row bad; a metadata identifier (``cell_only``) is left out of the item and
    reported, the product itself is still imported.
    """
    candidates = _mask(values.str.contains(r'[eE.="]', regex=True))
    if not candidates.any():
        return
    for pattern, reason in _EXCEL_DAMAGE:
        if cell_only:
            # A metadata identifier may hold a list ("3.65275E+11, 3.65275E+11"): any damaged item.
            token = rf"(?:^|[,;|]\s*)(?:{pattern})\s*(?=$|[,;|])"
            damaged = candidates & _mask(values.str.contains(token, regex=True))
        else:
            damaged = candidates & _mask(values.str.fullmatch(pattern))
        if cell_only:
            reason = f"{reason}; value left out, the product is imported without it"
        sf.flag(damaged, field_name, reason, values, cell_only=cell_only)


def is_identifier_key(key: str, spec: SourceMapping | None = None, header: str | None = None) -> bool:
    """True for a metadata key that holds an identifier (never typed by its content).

    Declared in the mapping (``identifiers``, by key or source header) or named like one
    (EAN, GTIN, UPC, ISBN, MPN, barcode, part/article/item number...).
    """
    if spec is not None:
        declared = {name.strip().casefold() for name in spec.identifiers}
        if key.casefold() in declared or (header is not None and header.strip().casefold() in declared):
            return True
        if spec.metadata_types.get(key) == "String" and key.casefold() in declared:
            return True
    return _IDENTIFIER_KEY.search(key.casefold()) is not None


def ambiguous_numbers(values: pd.Series) -> np.ndarray:
    """Mask of values that read differently with ``,``/``.`` as grouping or as decimal point."""
    return _mask(values.str.strip().str.fullmatch(_AMBIGUOUS_NUMBER))


def _validate_metadata(sf: _SourceFile) -> None:
    """Per metadata column: identifiers checked for spreadsheet damage, numbers read or refused.

    * identifier keys: Excel damage reported (the column is always String);
    * declared ``Number``: every non-empty value must be a number (else a row error);
    * otherwise a column that would be Number but for values ambiguous under
      ``decimal: auto`` (``1,250``) reports those values instead of typing them.
    """
    spec, frame = sf.spec, sf.frame
    for header, key in sf.meta:
        column = f"meta\x00{header}"
        values = frame[column]
        if is_identifier_key(key, spec, header):
            _check_excel_damage(sf, column, values, cell_only=True)
            continue
        forced = spec.metadata_types.get(key)
        if forced == "String":
            continue
        non_empty = _mask(values != "")
        if not non_empty.any():
            continue
        numeric = _mask(normalise_decimals(values, spec.decimal, spec.thousands).str.fullmatch(_METADATA_NUMBER))
        ambiguous = ambiguous_numbers(values) if spec.decimal == "auto" else np.zeros(len(values), dtype=bool)
        if forced == "Number":
            sf.flag(ambiguous & non_empty, column, f"ambiguous number: ',' or '.' may group thousands or mark decimals (metadata {key!r}); declare decimal and thousands in the mapping")
            sf.flag(non_empty & ~numeric & ~ambiguous, column, f"not a number (metadata {key!r} is Number: declared in the mapping or so typed by an earlier batch)")
        elif ambiguous.any() and (numeric | ambiguous | ~non_empty).all():
            sf.flag(ambiguous, column, f"ambiguous number: ',' or '.' may group thousands or mark decimals (metadata {key!r}); declare decimal and thousands in the mapping")


def normalise_decimals(values: pd.Series, decimal: str, thousands: str | None) -> pd.Series:
    """Rewrite decimal numbers to use ``.`` and no grouping; malformed values stay malformed."""
    values = values.str.strip()
    if thousands:
        grouped = _mask(values.str.contains(thousands, regex=False))
        if grouped.any():
            # Grouping only separates threes of digits of the integer part: "1,234.56" in a
            # layout grouping with "." is another locale's number, not 1.23456.
            point = re.escape("," if decimal == "," else ".")
            pattern = rf"[+-]?\d{{1,3}}(?:{re.escape(thousands)}\d{{3}})+(?:{point}\d*)?"
            misplaced = grouped & ~_mask(values.str.fullmatch(pattern))
            values = values.where(~misplaced, values + " (misplaced grouping)")
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


MAX_KNOWN_PRICEBOOKS_SHOWN = 20


def _resolve_pricebooks(sf: _SourceFile, pricebooks: dict[str, str]) -> None:
    """Replace pricebook names by ids; flag rows naming none of the org's pricebooks."""
    frame = sf.frame
    ids = {str(book_id) for book_id in pricebooks.values()}
    by_name: dict[str, str] = {}
    for name, book_id in pricebooks.items():
        by_name.setdefault(str(name).casefold(), str(book_id))
    values = frame["pricebook"]
    resolved = values.map(lambda v: v if v in ids else by_name.get(v.casefold(), ""))
    unknown = _mask((values != "") & (resolved == ""))
    if unknown.any():
        names = sorted(pricebooks, key=str.casefold)
        shown = ", ".join(names[:MAX_KNOWN_PRICEBOOKS_SHOWN]) or "(none)"
        if len(names) > MAX_KNOWN_PRICEBOOKS_SHOWN:
            shown += f", ... ({len(names) - MAX_KNOWN_PRICEBOOKS_SHOWN} more)"
        reason = "unknown pricebook '" + values + "'; known: " + shown
        sf.flag(unknown, "pricebook", reason.astype("str"))
    frame["pricebook"] = resolved.where(~unknown, values)


def _validate_prices(sf: _SourceFile, pricebooks: dict[str, str] | None = None) -> None:
    frame, spec = sf.frame, sf.spec
    sf.flag(_mask(frame["pricebook"] == ""), "pricebook", "empty pricebook")
    if pricebooks is not None:
        _resolve_pricebooks(sf, pricebooks)
    currency = frame["currency"].str.upper()
    empty_currency = _mask(currency == "")
    sf.flag(empty_currency, "currency", "empty currency")
    unknown = ~empty_currency & ~_isin(currency, ISO_4217_CODES)
    sf.flag(unknown, "currency", "unknown currency code (not ISO 4217): " + frame["currency"])
    frame["currency"] = currency

    raw_price = frame["price"]
    normalised = normalise_decimals(raw_price, spec.decimal, spec.thousands)
    empty = _mask(raw_price == "")
    sf.flag(empty, "price", "empty price")
    valid = _mask(normalised.str.fullmatch(_NUMBER))
    ambiguous = ambiguous_numbers(raw_price) if spec.decimal == "auto" else np.zeros(len(raw_price), dtype=bool)
    sf.flag(
        ambiguous,
        "price",
        "ambiguous price: ',' or '.' may group thousands or mark decimals; declare decimal and thousands in the mapping",
    )
    not_finite = ~valid & _isin(raw_price.str.strip().str.lower(), _NOT_FINITE)
    sf.flag(not_finite, "price", "price is NaN or infinite")
    layout = "" if spec.decimal == "auto" else f" (decimal {spec.decimal!r}, thousands {spec.thousands or 'none'!r})"
    sf.flag(~empty & ~valid & ~not_finite & ~ambiguous, "price", "price is not a number" + layout)
    valid = valid & ~ambiguous
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
        ~_isin(asset_type, ASSET_TYPES),
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


def _check_duplicate_products(products: list[_SourceFile], case_insensitive: bool = False) -> None:
    """Every occurrence of a SKU after the first (across the batch's products files) is rejected.

    SKUs equal when case-folded (``SOFA-001`` / ``sofa-001``) are reported too: as a
    letter-case conflict, or as duplicates when the mapping declares SKUs case-insensitive.
    The first occurrence stays.
    """
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
    non_empty = (combined["sku"] != "").to_numpy(dtype=bool)
    duplicated = combined["sku"].duplicated(keep="first").to_numpy() & non_empty
    combined["folded"] = combined["sku"].str.casefold()
    twins = combined["folded"].duplicated(keep="first").to_numpy() & non_empty & ~duplicated
    if not duplicated.any() and not twins.any():
        return
    first = combined.groupby("sku", sort=False)[["file", "line"]].transform("first")
    first_folded = combined.groupby("folded", sort=False)[["file", "line", "sku"]].transform("first")

    def where(file_index: int, line: int, own: int) -> str:
        return f"line {line}" if file_index == own else f"{readable[file_index].name} line {line}"

    offset = 0
    for i, sf in enumerate(readable):
        n = len(sf.frame)
        reasons = np.full(n, "", dtype=object)
        dup = duplicated[offset : offset + n]
        twin = twins[offset : offset + n]
        for k in np.flatnonzero(dup).tolist():
            at = where(int(first["file"].iat[offset + k]), int(first["line"].iat[offset + k]), i)
            reasons[k] = f"duplicate SKU (first seen {'on' if at.startswith('line') else 'in'} {at})"
        for k in np.flatnonzero(twin).tolist():
            at = where(int(first_folded["file"].iat[offset + k]), int(first_folded["line"].iat[offset + k]), i)
            other = first_folded["sku"].iat[offset + k]
            if case_insensitive:
                reasons[k] = f"duplicate SKU: same as {other!r} ignoring letter case ({at})"
            else:
                reasons[k] = f"SKU differs only in letter case from {other!r} ({at}): likely the same product"
        bad = dup | twin
        if bad.any():
            sf.flag(bad, "sku", pd.Series(reasons, dtype="str"))
            _count_rejected(sf)
        offset += n


def _adopt_product_spelling(products: list[_SourceFile], others: list[_SourceFile]) -> None:
    """Case-insensitive SKUs: rows of other files take the spelling of the batch's products file."""
    spelling: dict[str, str] = {}
    for sf in products:
        if sf.readable:
            good = sf.frame["sku"][~sf.bad]
            for folded, sku in zip(good.str.casefold().tolist(), good.tolist(), strict=True):
                spelling.setdefault(folded, sku)
    for sf in others:
        if sf.readable and len(sf.frame):
            mapped = sf.frame["sku"].str.casefold().map(spelling)
            sf.frame["sku"] = mapped.fillna(sf.frame["sku"]).astype("str")


def _check_batch_conflicts(source_files: list[_SourceFile]) -> None:
    """A key given twice with different values across the batch's files is reported, never settled by order.

    Prices: the same (SKU, pricebook, currency) in two price files with different amounts
    (repeats inside one file are reported by the price check). Options: a second row marking
    a different default for one (SKU, attribute), inside a file or across files. The first
    occurrence (file order, then line) stays; each later one is a row error naming it.
    """
    prices = [sf for sf in source_files if sf.source == "prices" and sf.readable and len(sf.frame)]
    if len(prices) > 1:
        _report_conflicts(
            prices,
            ["sku", "pricebook", "currency"],
            "price",
            lambda sf: np.ones(len(sf.frame), dtype=bool),
            "conflicting price for this SKU, pricebook and currency: {value} in {at}",
        )
    options = [sf for sf in source_files if sf.source == "options" and sf.readable and len(sf.frame) and "default" in sf.frame]
    if options:
        _report_conflicts(
            options,
            ["sku", "attribute"],
            "value",
            lambda sf: sf.frame["default"].to_numpy(dtype=bool),
            "a second default for this SKU and attribute: {value!r} is already the default in {at}",
            column="default",
        )


def _report_conflicts(files, key: list[str], value: str, selected, template: str, column: str | None = None) -> None:
    """Rows (among ``selected`` good rows) whose key was already given a different ``value``."""
    parts = []
    for i, sf in enumerate(files):
        rows = np.flatnonzero(selected(sf) & ~sf.bad)
        if not len(rows):
            continue
        part = sf.frame.iloc[rows][[*key, value, LINE_COLUMN]].copy()
        part["_file"] = i
        part["_row"] = rows
        parts.append(part)
    if not parts:
        return
    combined = pd.concat(parts, ignore_index=True)
    first = combined.groupby(key, sort=False)[[value, LINE_COLUMN, "_file"]].transform("first")
    conflict = (combined[value] != first[value]).to_numpy(dtype=bool)
    if not conflict.any():
        return
    for i, sf in enumerate(files):
        own = conflict & (combined["_file"].to_numpy() == i)
        if not own.any():
            continue
        mask = np.zeros(len(sf.frame), dtype=bool)
        reasons = np.full(len(sf.frame), "", dtype=object)
        for k in np.flatnonzero(own).tolist():
            other = int(first["_file"].iat[k])
            at = f"line {first[LINE_COLUMN].iat[k]}" if other == i else f"{files[other].name} line {first[LINE_COLUMN].iat[k]}"
            shown = first[value].iat[k]
            if isinstance(shown, float):
                shown = _json_numbers(np.array([shown]))[0]
            row = int(combined["_row"].iat[k])
            mask[row] = True
            reasons[row] = template.format(value=shown, at=at)
        shown_values = sf.frame[value]
        if shown_values.dtype == np.float64:
            shown_values = pd.Series(_json_numbers(shown_values.to_numpy()), index=shown_values.index)
        sf.flag(mask, column or value, pd.Series(reasons, dtype="str"), values=shown_values.astype("str"))
        _count_rejected(sf)


def _check_against_products(products: list[_SourceFile], others: list[_SourceFile]) -> None:
    """Rows for SKUs the batch's products file(s) do not define, or define in a rejected row."""
    readable = [sf for sf in products if sf.readable]
    good = _concat_strings([_strings(sf.frame["sku"]).filter(pa.array(~sf.bad)) for sf in readable])
    names = ", ".join(sf.name for sf in products)
    rejected_at: dict[str, str] | None = None
    for sf in others:
        if not sf.readable:
            continue
        sku = sf.frame["sku"]
        candidates = ~_isin(sku, good) & ~sf.bad
        if not candidates.any():
            continue
        if rejected_at is None:
            # Only needed when some row does not match: where each rejected product row was.
            rejected_at = {}
            for product_file in readable:
                skus = product_file.frame["sku"].to_numpy()[product_file.bad].tolist()
                lines = product_file.frame[LINE_COLUMN].to_numpy()[product_file.bad].tolist()
                for product_sku, line in zip(skus, lines, strict=True):
                    rejected_at.setdefault(product_sku, f"{product_file.name} line {line}")
        reasons = np.full(len(sku), f"SKU not in the batch products file ({names})", dtype=object)
        if rejected_at:
            where = sku.map(rejected_at)
            known = where.notna().to_numpy(dtype=bool)
            if known.any():
                reasons[known] = [f"product row for this SKU rejected ({w})" for w in where[known].tolist()]
        sf.flag(candidates, "sku", pd.Series(reasons, dtype="str"))
        _count_rejected(sf)


def _skus_by_file(accepted: list[_SourceFile], written: set[str]) -> dict[str, list[str]]:
    """Input file name -> sorted SKUs its accepted rows contributed to the output."""
    arrays: dict[str, list[pa.Array]] = {}
    for sf in accepted:
        skus = _strings(sf.frame["sku"])
        if sf.bad.any():
            skus = skus.filter(pa.array(~sf.bad))
        arrays.setdefault(sf.input_name, []).append(skus)
    result: dict[str, list[str]] = {}
    for name, parts in arrays.items():
        unique = pc.unique(_concat_strings(parts))
        # Arrow sorts strings by UTF-8 bytes, which is code point order: the same as sorted().
        skus = unique.take(pc.array_sort_indices(unique)).to_pylist()
        result[name] = skus if written.issuperset(skus) else [sku for sku in skus if sku in written]
    return result


def _write_sku_lines(path: Path, accepted: list[_SourceFile], written: set[str]) -> None:
    """``sku,file,line`` of each written SKU: its first good row, products files first."""
    parts = []
    for sf in accepted:
        keep = ~sf.bad if sf.bad is not None and sf.bad.any() else slice(None)
        frame = sf.frame.loc[keep, ["sku", LINE_COLUMN]]
        parts.append(
            pd.DataFrame(
                {
                    "rank": 0 if sf.source == "products" else 1,
                    "order": sf.index,
                    "sku": frame["sku"].astype("str").to_numpy(),
                    "file": sf.name,
                    "line": frame[LINE_COLUMN].to_numpy(),
                }
            )
        )
    if parts:
        lines = pd.concat(parts, ignore_index=True).sort_values(["rank", "order", "line"], kind="stable")
        lines = lines.drop_duplicates(subset="sku", keep="first")
        lines = lines.loc[_isin(lines["sku"], written)].sort_values("sku", kind="stable")
    else:
        lines = pd.DataFrame({"sku": [], "file": [], "line": []})
    with atomic_write(path, newline="") as handle:
        handle.write("sku,file,line\n")
        if len(lines):
            handle.write(
                "\n".join(
                    map(
                        ",".join,
                        zip(
                            _csv_fields(lines["sku"].tolist()),
                            _csv_fields(lines["file"].tolist()),
                            lines["line"].astype("int64").astype("str").tolist(),
                            strict=True,
                        ),
                    )
                )
            )
            handle.write("\n")


def read_sku_lines(path: str | Path) -> dict[str, tuple[str, int]]:
    """Read a ``<output>.lines.csv`` side file: ``{sku: (file, line)}`` ({} when missing)."""
    result: dict[str, tuple[str, int]] = {}
    if not path or not Path(path).is_file():
        return result
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            result[row["sku"]] = (row["file"], int(row["line"]))
    return result


_NEEDS_QUOTING = frozenset(',"\r\n')


def _csv_fields(values: list[str]) -> list[str]:
    """CSV fields with minimal quoting (as csv.writer); a few C-level scans when none needs it."""
    joined = "".join(values)
    if not any(character in joined for character in _NEEDS_QUOTING):
        return values
    return [v if _NEEDS_QUOTING.isdisjoint(v) else '"' + v.replace('"', '""') + '"' for v in values]


def _write_pairs_csv(path: Path, header: tuple[str, str], groups, values_first: bool = False) -> None:
    """Write a two-column CSV fast (same bytes as csv.writer with minimal quoting).

    ``groups`` yields ``(first, seconds)``: a constant first column and a list for the
    second (``values_first=False``), or two parallel lists (``values_first=True``).
    """
    with atomic_write(path, newline="") as handle:
        handle.write(f"{header[0]},{header[1]}\n")
        for first, seconds in groups:
            if not seconds:
                continue
            if values_first:
                lines = map(",".join, zip(_csv_fields(first), _csv_fields(seconds), strict=True))
            else:
                prefix = _csv_fields([first])[0] + ","
                lines = (prefix + value for value in _csv_fields(seconds))
            handle.write("\n".join(lines))
            handle.write("\n")


def _sorted_errors(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One file's errors by line (file-level errors first), each distinct error once."""
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.drop_duplicates(subset=["line", "column", "value", "reason"])
    return frame.sort_values("line", kind="stable", na_position="first")


def _log_row_errors(frame: pd.DataFrame, examples: int = 3) -> None:
    """One log line per file with rejected rows: how many, and the first few reasons."""
    rows = frame.loc[frame["line"].notna()]
    if not len(rows):
        return
    shown = "; ".join(
        f"line {line}{f' [{column}]' if column else ''}: {reason}"
        for line, column, reason in rows[["line", "column", "reason"]].head(examples).itertuples(index=False)
    )
    log.warning("%s: %d rejected row error(s), first: %s", rows["file"].iloc[0], len(rows), shown)


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


def _split_lists(values: pd.Series, separator: str) -> list[list[str] | None]:
    """``"a; b;;a"`` -> ``["a", "b"]`` for each value: trimmed, empty items dropped, first
    occurrence kept; None for an empty value. Vectorised; Python only fixes the rare rows
    with empty or repeated items."""
    lists = pc.split_pattern(_strings(values), pattern=separator)
    items = pc.utf8_trim_whitespace(lists.flatten())
    parents = pc.list_parent_indices(lists).to_numpy()
    trimmed = pa.LargeListArray.from_arrays(pa.array(lists.offsets, type=pa.int64()), items)
    result = trimmed.to_pylist()
    empty_items = pc.equal(items, "").to_numpy(zero_copy_only=False)
    repeated = pd.DataFrame({"row": parents, "item": pd.Series(items.to_pandas(), dtype="str")}).duplicated().to_numpy()
    for row in np.unique(parents[empty_items | repeated]).tolist():
        result[row] = list(dict.fromkeys(item for item in result[row] if item))
    empty_values = (values == "").to_numpy(dtype=bool)
    for row in np.flatnonzero(empty_values).tolist():
        result[row] = None
    return result


def _json_numbers(amounts: np.ndarray) -> list:
    """Float amounts as JSON-ready Python numbers: integral values as int (``12`` not ``12.0``)."""
    values = amounts.astype(object)
    integral = np.isfinite(amounts) & (np.mod(amounts, 1) == 0) & (np.abs(amounts) < 2**53)
    if integral.any():
        values[integral] = amounts[integral].astype(np.int64).astype(object)
    return values.tolist()


@dataclass
class _Attributes:
    """Prebuilt attribute objects of one source, grouped by SKU.

    The attributes of ``skus[k]`` are ``items[lo[k]:hi[k]]`` (already in output order).
    Everything is computed on integer codes with numpy; Python only builds the final objects.
    """

    skus: pd.Index
    lo: np.ndarray
    hi: np.ndarray
    items: list[dict[str, Any]]

    def spans(self, ordered: pa.Array) -> tuple[list[int], list[int]]:
        """(lo, hi) per SKU of ``ordered``; an empty span for SKUs without attributes here."""
        if not len(self.skus):
            zeros = [0] * len(ordered)
            return zeros, zeros
        position = _positions(ordered, _strings(self.skus))
        present = position >= 0
        lo = np.where(present, self.lo[position], 0)
        hi = np.where(present, self.hi[position], 0)
        return lo.tolist(), hi.tolist()


def _positions(values: pa.Array, within: pa.Array) -> np.ndarray:
    """Position of each value in ``within`` (unique strings), -1 where absent."""
    found = pc.index_in(values, value_set=within)
    return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


_NO_ATTRIBUTES = _Attributes(pd.Index([], dtype="str"), np.zeros(0, np.int64), np.zeros(0, np.int64), [])


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """The given columns of several frames, one below the other, with a fresh 0..n-1 index."""
    if len(frames) == 1:
        return frames[0].loc[:, columns].reset_index(drop=True)
    return pd.concat([frame.loc[:, columns] for frame in frames], ignore_index=True)


def _codes(values: pd.Series, sort: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and the distinct values as a Python object array (one str object each)."""
    codes, uniques = pd.factorize(values, sort=sort)
    return codes.astype(np.int64, copy=False), np.asarray(uniques, dtype=object)


def _starts(keys: np.ndarray) -> np.ndarray:
    """Positions where a sorted key array changes (the first position is always a start)."""
    change = np.ones(len(keys), dtype=bool)
    change[1:] = keys[1:] != keys[:-1]
    return np.flatnonzero(change)


def _group_runs(sku_codes: np.ndarray, run_starts: np.ndarray, sku_names: np.ndarray):
    """For runs sorted by SKU: the SKUs having runs and each one's run range."""
    run_skus = sku_codes[run_starts]
    first_run = _starts(run_skus)
    end_run = np.append(first_run[1:], len(run_starts))
    return pd.Index(sku_names[run_skus[first_run]], dtype="str"), first_run, end_run


def _group_options(frames: list[pd.DataFrame]) -> _Attributes:
    """String attributes: per SKU, attributes in order of first appearance, values in file order
    without duplicates; the default is the first row marked default, else the first value."""
    rows = _concat([f.assign(default=f["default"] if "default" in f else False) for f in frames], ["sku", "attribute", "value", "default"])
    if not len(rows):
        return _NO_ATTRIBUTES
    sku_codes, sku_names = _codes(rows["sku"], sort=True)
    attribute_codes, attribute_names = _codes(rows["attribute"])
    value_codes, value_names = _codes(rows["value"])
    # (SKU, attribute) pairs numbered in order of first appearance in the file(s).
    pairs, _ = pd.factorize(sku_codes * len(attribute_names) + attribute_codes)
    pairs = pairs.astype(np.int64, copy=False)
    marked = np.flatnonzero(rows["default"].to_numpy(dtype=bool))
    # Repeated (SKU, attribute, value) rows: the first stays.
    keep = ~pd.Series(pairs * len(value_names) + value_codes).duplicated().to_numpy()
    kept = np.flatnonzero(keep)
    order = kept[np.lexsort((kept, pairs[kept], sku_codes[kept]))]
    pair_sorted = pairs[order]
    starts = _starts(pair_sorted)
    ends = np.append(starts[1:], len(order))
    run_pairs = pair_sorted[starts]
    # Default per pair: its first marked row, else its first value.
    default_code = np.empty(len(run_pairs) and pairs.max() + 1, dtype=np.int64)
    default_code[run_pairs] = value_codes[order[starts]]
    if len(marked):
        marked_pairs, first = np.unique(pairs[marked], return_index=True)
        default_code[marked_pairs] = value_codes[marked[first]]
    values = value_names[value_codes[order]].tolist()
    names = attribute_names[attribute_codes[order[starts]]].tolist()
    defaults = value_names[default_code[run_pairs]].tolist()
    items = [
        {"type": "String", "name": name, "values": values[a:b], "defaultValue": default}
        for name, a, b, default in zip(names, starts.tolist(), ends.tolist(), defaults, strict=True)
    ]
    skus, lo, hi = _group_runs(sku_codes[order], starts, sku_names)
    return _Attributes(skus, lo, hi, items)


def _group_parts(frames: list[pd.DataFrame]) -> _Attributes:
    """Asset attributes: per SKU, attributes in order of first appearance, references without duplicates."""
    rows = _concat(frames, ["sku", "attribute", "asset", "asset_type"])
    if not len(rows):
        return _NO_ATTRIBUTES
    sku_codes, sku_names = _codes(rows["sku"], sort=True)
    attribute_codes, attribute_names = _codes(rows["attribute"])
    asset_codes, asset_names = _codes(rows["asset"])
    type_codes, type_names = _codes(rows["asset_type"])
    pairs, _ = pd.factorize(sku_codes * len(attribute_names) + attribute_codes)
    pairs = pairs.astype(np.int64, copy=False)
    keep = ~pd.Series(pairs * len(asset_names) + asset_codes).duplicated().to_numpy()
    kept = np.flatnonzero(keep)
    order = kept[np.lexsort((kept, pairs[kept], sku_codes[kept]))]
    starts = _starts(pairs[order])
    ends = np.append(starts[1:], len(order))
    references = [a if a.startswith("#") else {"assetId": a} for a in asset_names[asset_codes[order]].tolist()]
    names = attribute_names[attribute_codes[order[starts]]].tolist()
    asset_types = type_names[type_codes[order[starts]]].tolist()
    items = [
        {"type": "Asset", "name": name, "assetType": asset_type, "values": references[a:b]}
        for name, asset_type, a, b in zip(names, asset_types, starts.tolist(), ends.tolist(), strict=True)
    ]
    skus, lo, hi = _group_runs(sku_codes[order], starts, sku_names)
    return _Attributes(skus, lo, hi, items)


def _group_prices(frames: list[pd.DataFrame]) -> _Attributes:
    """One Pricing attribute per SKU: pricebooks sorted by name, currencies sorted by code."""
    rows = _concat(frames, ["sku", "pricebook", "currency", "price"])
    if not len(rows):
        return _NO_ATTRIBUTES
    sku_codes, sku_names = _codes(rows["sku"], sort=True)
    book_codes, book_names = _codes(rows["pricebook"], sort=True)
    currency_codes, currency_names = _codes(rows["currency"], sort=True)
    order = np.lexsort((currency_codes, book_codes, sku_codes))
    sku_sorted = sku_codes[order]
    # One run per (SKU, pricebook).
    starts = _starts(sku_sorted * (len(book_names) + 1) + book_codes[order])
    ends = np.append(starts[1:], len(order))
    currencies = currency_names[currency_codes[order]].tolist()
    amounts = _json_numbers(rows["price"].to_numpy(dtype=np.float64)[order])
    books = book_names[book_codes[order[starts]]].tolist()
    book_items = [
        {
            "pricebook": book,
            "currencies": {currencies[a]: amounts[a]} if b - a == 1 else dict(zip(currencies[a:b], amounts[a:b], strict=True)),
        }
        for book, a, b in zip(books, starts.tolist(), ends.tolist(), strict=True)
    ]
    skus, first_run, end_run = _group_runs(sku_sorted, starts, sku_names)
    items = [
        {"type": "Pricing", "name": "Pricing", "values": book_items[a:b], "defaultValue": {}}
        for a, b in zip(first_run.tolist(), end_run.tolist(), strict=True)
    ]
    position = np.arange(len(items), dtype=np.int64)
    return _Attributes(skus, position, position + 1, items)


def _build_products(columns: dict[str, list], meta_lists: list[tuple[str, str, list]]) -> list[dict[str, Any]]:
    """Product objects (without attributes) in the order of the accepted product rows."""
    products: list[dict[str, Any]] = []
    for i, (sku, name, description, keywords, tags, model) in enumerate(
        zip(
            columns["sku"],
            columns["name"],
            columns["description"],
            columns["keywords"],
            columns["tags"],
            columns["model_asset_id"],
            strict=True,
        )
    ):
        product: dict[str, Any] = {"name": name, "type": "item"}
        if description:
            product["description"] = description
        if keywords:
            product["keywords"] = keywords
        if tags:
            product["tags"] = tags
        if model:
            product["asset"] = {"assetId": model, "type": "model"}
        metadata = [{"name": "SKU", "defaultValue": sku, "type": "String"}]
        for key, kind, values in meta_lists:
            value = values[i]
            if value is not None:
                metadata.append({"name": key, "defaultValue": value, "type": kind})
        product["metadata"] = metadata
        products.append(product)
    return products


def _write_output(
    mapping: Mapping,
    accepted: list[_SourceFile],
    output: Path,
    hashes_path: Path,
    progress: Progress | None,
) -> tuple[set[str], pd.DataFrame | None, tuple[int, int, dict[str, str]]]:
    by_source: dict[str, list[pd.DataFrame]] = {}
    product_files: list[_SourceFile] = []
    for sf in accepted:
        by_source.setdefault(sf.source, []).append(sf.frame.loc[~sf.bad] if sf.bad.any() else sf.frame)
        if sf.source == "products":
            product_files.append(sf)

    # Products: one accepted row per SKU (duplicates were rejected).
    spec = product_files[0].spec if product_files else mapping.sources.get("products")
    product_index: dict[str, int] = {}
    products: list[dict[str, Any]] = []
    origins: list[tuple[str, int]] = []
    written_types: dict[str, str] = {}
    if product_files:
        frames = []
        meta_keys: list[str] = []
        identifier_keys: set[str] = set()
        for sf in product_files:
            good = (sf.frame.loc[~sf.bad] if sf.bad.any() else sf.frame).rename(columns={f"meta\x00{h}": f"meta\x00{k}" for h, k in sf.meta})
            frames.append(good)
            origins.extend((sf.name, line) for line in good[LINE_COLUMN].tolist())
            meta_keys.extend(key for _header, key in sf.meta if key not in meta_keys)
            identifier_keys.update(key for header, key in sf.meta if is_identifier_key(key, spec, header))
        rows = pd.concat(frames, ignore_index=True)
        n = len(rows)
        columns = {
            name: rows[name].tolist() if name in rows.columns else [""] * n
            for name in ("sku", "name", "description", "model_asset_id")
        }
        for name in ("keywords", "tags"):
            columns[name] = _split_lists(rows[name], spec.list_separator) if name in rows.columns else [None] * n
        product_index = {sku: i for i, sku in enumerate(columns["sku"])}
        # Declared metadata types of every products file of the batch (the first declaration wins).
        metadata_types = {k: v for sf in reversed(product_files) for k, v in sf.spec.metadata_types.items()}
        meta_lists: list[tuple[str, str, list]] = []
        for key in meta_keys:
            values = rows.get(f"meta\x00{key}")
            values = values.fillna("") if values is not None else pd.Series([""] * n, dtype="str")
            forced = "String" if key in identifier_keys else metadata_types.get(key)
            numbers = None if forced == "String" else _number_values(values, spec.decimal, spec.thousands)
            if numbers is not None:
                meta_lists.append((key, "Number", numbers))
            else:
                meta_lists.append((key, "String", [v if v != "" else None for v in values.tolist()]))
        written_types = {key: kind for key, kind, _values in meta_lists}
        products = _build_products(columns, meta_lists)
        del rows, columns, meta_lists

    options = _group_options(by_source["options"]) if "options" in by_source else _NO_ATTRIBUTES
    parts = _group_parts(by_source["parts"]) if "parts" in by_source else _NO_ATTRIBUTES
    prices = _group_prices(by_source["prices"]) if "prices" in by_source else _NO_ATTRIBUTES
    del by_source

    # Every SKU once, in code point order (Arrow sorts UTF-8 bytes: the same order as sorted()).
    product_skus = pa.array(list(product_index), type=pa.large_string())
    all_skus = _concat_strings([product_skus, *(_strings(group.skus) for group in (options, parts, prices))])
    unique = pc.unique(all_skus)
    unique = unique.take(pc.array_sort_indices(unique))
    ordered = unique.to_pylist()
    product_positions = _positions(unique, product_skus).tolist() if product_index else [-1] * len(ordered)
    option_lo, option_hi = options.spans(unique)
    part_lo, part_hi = parts.spans(unique)
    price_lo, price_hi = prices.spans(unique)
    total = len(ordered)
    failed: set[str] = set()
    schema_errors: list[ErrorRow] = []
    attributes_written = 0
    sha256 = hashlib.sha256
    hashed_skus: list[str] = []
    hashes: list[str] = []
    pending: list[bytes] = []
    option_items, part_items, price_items = options.items, parts.items, prices.items

    with atomic_write(output, mode="wb") as out:
        for done, (sku, i, a, b, c, d, e, f) in enumerate(
            zip(ordered, product_positions, option_lo, option_hi, part_lo, part_hi, price_lo, price_hi, strict=True),
            start=1,
        ):
            if i >= 0:
                product = products[i]
                sku_meta = product["metadata"][0]
            else:
                sku_meta = {"name": "SKU", "defaultValue": sku, "type": "String"}
                product = {"type": "item", "metadata": [sku_meta]}
            attributes = option_items[a:b]
            if d:
                attributes += part_items[c:d]
            if f:
                attributes.append(price_items[e])
            if attributes:
                product["attributes"] = attributes
                attributes_written += len(attributes)
            entry = {"query": {"metadata": [sku_meta]}, "product": product}
            # check_entry's own fast path, inlined: the detailed check runs only when it fails.
            problems = None if quick_valid(entry) else check_entry(entry)
            if problems:
                attributes_written -= len(attributes)
                failed.add(sku)
                file_name, line = origins[i] if i >= 0 else ("", None)
                schema_errors.append(
                    ErrorRow(file_name, line, "", sku, "entry fails the import schema: " + "; ".join(problems[:3]), sku)
                )
                continue
            line = _encode(entry)
            pending.append(line)
            hashed_skus.append(sku)
            hashes.append(sha256(line).hexdigest())
            if done % 10_000 == 0:
                pending.append(b"")
                out.write(b"\n".join(pending))
                pending = []
                if done % _PROGRESS_EVERY == 0:
                    log.info("Wrote %d of %d products", done, total)
                    if progress:
                        progress("write", done, total)
        if pending:
            pending.append(b"")
            out.write(b"\n".join(pending))
    _write_pairs_csv(hashes_path, ("sku", "content_hash"), [(hashed_skus, hashes)], values_first=True)
    if progress:
        progress("write", total, total)
    frame = errors_frame(schema_errors) if schema_errors else None
    written = set(ordered) - failed if failed else set(ordered)
    return written, frame, (len(written), attributes_written, written_types)
