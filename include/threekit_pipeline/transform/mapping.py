"""Declarative mappings: how one ERP/PIM flat-file layout maps onto the canonical catalog model.

A mapping is one YAML file (see ``include/mappings/README.md`` for the full reference and
``include/mappings/*.yaml`` for working examples). It is validated when loaded; every
problem is reported with the file and the key path, e.g.
``mappings/sap.yaml: sources.prices.columns.price: required column mapping missing``.

``load_mapping("canonical")`` resolves a bare name under ``include/mappings/``;
``load_mapping("path/to/layout.yaml")`` loads any file.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from threekit_pipeline.transform.errors import MappingError

MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "mappings"

SOURCE_NAMES = ("products", "options", "prices", "parts")

# Canonical fields per source: name -> required.
SOURCE_FIELDS: dict[str, dict[str, bool]] = {
    "products": {
        "sku": True,
        "name": True,
        "description": False,
        "keywords": False,
        "tags": False,
        "model_asset_id": False,
    },
    "options": {"sku": True, "attribute": True, "value": True, "default": False},
    "prices": {"sku": True, "pricebook": True, "currency": True, "price": True},
    "parts": {"sku": True, "attribute": True, "asset": True, "asset_type": False},
}
# A wide option matrix carries the attribute names in its headers: only the SKU is needed.
WIDE_OPTION_FIELDS = {"sku": True}

DEFAULT_MAX_ERROR_RATIO = 0.05
DEFAULT_MAX_LENGTHS = {"name": 255, "description": 2000, "sku": 255, "attribute": 255, "value": 255, "*": 2000}
# Decompression guards for .gz/.zip inputs.
DEFAULT_MAX_UNCOMPRESSED_BYTES = 1 << 30
DEFAULT_MAX_COMPRESSION_RATIO = 200.0

_SOURCE_KEYS = {
    "patterns",
    "separator",
    "encoding",
    "decimal",
    "thousands",
    "list_separator",
    "sheet",
    "columns",
    "value_maps",
    "constants",
    "metadata",
    "wide",
    "max_error_ratio",
    "identifiers",
    "hidden_rows",
}
_TOP_KEYS = {
    "name", "description", "max_error_ratio", "max_lengths", "input_limits", "sources", "inputs",
    "case_insensitive_skus",
    # Read by pipelines/retire.py (snapshot, retire, max_retire_ratio), not by the transform.
    "lifecycle",
}
_HIDDEN_ROWS = ("report", "read")
_SEPARATORS = {",": ",", ";": ";", "\t": "\t", "tab": "\t", "|": "|"}
_METADATA_TYPES = {"String", "Number"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class WideOptions:
    """A wide option matrix: each listed column becomes one String attribute."""

    # Source header -> attribute name, in output order.
    columns: dict[str, str]
    value_separator: str = "|"
    # Marks the default value (as a prefix or suffix of one value), None when unmarked.
    default_marker: str | None = "*"


@dataclass(frozen=True)
class SourceMapping:
    """How the files of one source (products, options, prices or parts) are read and mapped."""

    name: str
    patterns: tuple[str, ...]
    separator: str | None = None  # None = sniffed among , ; tab |
    encoding: str | None = None  # None = detected (BOM, UTF-8, else cp1252)
    decimal: str = "auto"  # ".", "," or "auto" (the last of . or , is the decimal point)
    thousands: str | None = None
    list_separator: str = ";"
    sheet: str | None = None  # .xlsx sheet name, None = first sheet
    # Canonical field -> source header.
    columns: dict[str, str] = field(default_factory=dict)
    # Canonical field -> {source value: canonical value}, exact match after trimming.
    value_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    # Canonical field -> fixed value used for every row.
    constants: dict[str, str] = field(default_factory=dict)
    metadata_prefix: str | None = None
    # Source header -> metadata key.
    metadata_columns: dict[str, str] = field(default_factory=dict)
    # Metadata key -> "String" | "Number", overriding detection.
    metadata_types: dict[str, str] = field(default_factory=dict)
    wide: WideOptions | None = None
    max_error_ratio: float = DEFAULT_MAX_ERROR_RATIO
    # Metadata keys (or their source headers) declared identifiers: always String, never
    # typed by content, Excel-damaged values reported. Keys named like identifiers (EAN,
    # GTIN, UPC, ISBN, MPN, part/article/item number, ...) are identifiers without declaring.
    identifiers: tuple[str, ...] = ()
    # .xlsx rows hidden in the sheet: "report" (left out, one row error each) or "read".
    hidden_rows: str = "report"

    def header_for(self, canonical_field: str) -> str:
        """The source header that feeds a canonical field (the field name itself for constants)."""
        return self.columns.get(canonical_field, canonical_field)


@dataclass(frozen=True)
class InputLimits:
    """Guards against decompression bombs for compressed inputs."""

    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES
    max_compression_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO


@dataclass(frozen=True)
class Mapping:
    """A validated mapping: sources by name plus batch-wide limits."""

    name: str
    sources: dict[str, SourceMapping]
    description: str = ""
    path: Path | None = None
    max_lengths: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MAX_LENGTHS))
    input_limits: InputLimits = field(default_factory=InputLimits)
    # Export layouts feeding several sources from one file (transform/layouts.py).
    inputs: tuple = ()
    # SKUs equal when case-folded are one product (rows of other files take the products
    # file's spelling); by default they are reported as a conflict.
    case_insensitive_skus: bool = False

    def with_max_error_ratio(self, ratio: float) -> Mapping:
        """This mapping with ``ratio`` as every source's ``max_error_ratio`` (an operator override)."""
        from dataclasses import replace

        if not 0 <= ratio <= 1:
            raise MappingError(f"max_error_ratio must be between 0 and 1, got {ratio!r}")
        sources = {name: replace(source, max_error_ratio=float(ratio)) for name, source in self.sources.items()}
        return replace(self, sources=sources)

    def max_length(self, canonical_field: str) -> int:
        """Longest accepted value of a field (``*`` is the default for unlisted fields)."""
        return self.max_lengths.get(canonical_field, self.max_lengths.get("*", DEFAULT_MAX_LENGTHS["*"]))


def resolve_mapping_path(name_or_path: str | Path) -> Path:
    """A bare name (``canonical``) resolves under ``include/mappings/``; anything else is a path."""
    text = str(name_or_path)
    if re.fullmatch(r"[A-Za-z0-9_.-]+", text) and not text.endswith((".yaml", ".yml")):
        return MAPPINGS_DIR / f"{text}.yaml"
    path = Path(text)
    if not path.exists() and not path.is_absolute() and (MAPPINGS_DIR / path.name).exists() and path.parent == Path():
        return MAPPINGS_DIR / path.name
    return path


def available_mappings() -> list[str]:
    """Names of the mappings shipped under ``include/mappings/``."""
    return sorted(p.stem for p in MAPPINGS_DIR.glob("*.yaml"))


def load_mapping(name_or_path: str | Path) -> Mapping:
    """Load and validate a mapping by name or path; raises :class:`MappingError` naming file and key."""
    if isinstance(name_or_path, Mapping):
        return name_or_path
    path = resolve_mapping_path(name_or_path)
    label = _label(path)
    if not path.is_file():
        known = ", ".join(available_mappings()) or "none"
        raise MappingError(f"{label}: mapping file not found (shipped mappings: {known})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise MappingError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise MappingError(f"{label}: invalid YAML{where}: {problem}") from None
    return parse_mapping(data, label=label, path=path)


def parse_mapping(data: Any, *, label: str = "<mapping>", path: Path | None = None) -> Mapping:
    """Validate an already-parsed mapping document (a dict as loaded from YAML)."""
    ctx = _Context(label)
    if not isinstance(data, dict):
        ctx.fail("", "the document must be a mapping of keys (name, sources, ...)")
    ctx.unknown_keys("", data, _TOP_KEYS)
    name = data.get("name", path.stem if path else "mapping")
    if not isinstance(name, str) or not name:
        ctx.fail("name", "must be a non-empty string")
    description = data.get("description", "") or ""
    if not isinstance(description, str):
        ctx.fail("description", "must be a string")
    default_ratio = _ratio(ctx, "max_error_ratio", data.get("max_error_ratio", DEFAULT_MAX_ERROR_RATIO))

    max_lengths = dict(DEFAULT_MAX_LENGTHS)
    raw_lengths = data.get("max_lengths") or {}
    if not isinstance(raw_lengths, dict):
        ctx.fail("max_lengths", "must map field names to positive integers")
    for key, value in raw_lengths.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            ctx.fail(f"max_lengths.{key}", f"must be a positive integer, got {value!r}")
        max_lengths[str(key)] = value

    limits_data = data.get("input_limits") or {}
    if not isinstance(limits_data, dict):
        ctx.fail("input_limits", "must be a mapping")
    ctx.unknown_keys("input_limits", limits_data, {"max_uncompressed_bytes", "max_compression_ratio"})
    max_bytes = limits_data.get("max_uncompressed_bytes", DEFAULT_MAX_UNCOMPRESSED_BYTES)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        ctx.fail("input_limits.max_uncompressed_bytes", f"must be a positive integer, got {max_bytes!r}")
    max_ratio = limits_data.get("max_compression_ratio", DEFAULT_MAX_COMPRESSION_RATIO)
    if isinstance(max_ratio, bool) or not isinstance(max_ratio, (int, float)) or max_ratio < 1:
        ctx.fail("input_limits.max_compression_ratio", f"must be a number >= 1, got {max_ratio!r}")
    limits = InputLimits(max_uncompressed_bytes=max_bytes, max_compression_ratio=float(max_ratio))

    inputs = ()
    if data.get("inputs") is not None:
        from threekit_pipeline.transform.layouts import parse_inputs

        inputs = parse_inputs(data["inputs"], label=label)
    case_insensitive = data.get("case_insensitive_skus", False)
    if not isinstance(case_insensitive, bool):
        ctx.fail("case_insensitive_skus", f"must be true or false, got {case_insensitive!r}")

    raw_sources = data.get("sources")
    if inputs and raw_sources is None:
        raw_sources = {}
    elif not isinstance(raw_sources, dict) or not raw_sources:
        ctx.fail("sources", f"required: a mapping with at least one of {', '.join(SOURCE_NAMES)}")
    sources: dict[str, SourceMapping] = {}
    for source_name, source_data in raw_sources.items():
        if source_name not in SOURCE_NAMES:
            ctx.fail(f"sources.{source_name}", f"unknown source (known: {', '.join(SOURCE_NAMES)})")
        sources[source_name] = _parse_source(ctx, source_name, source_data, default_ratio)
    ordered = {name: sources[name] for name in SOURCE_NAMES if name in sources}
    return Mapping(
        name=name,
        sources=ordered,
        description=description,
        path=path,
        max_lengths=max_lengths,
        input_limits=limits,
        inputs=inputs,
        case_insensitive_skus=case_insensitive,
    )


class _Context:
    def __init__(self, label: str):
        self.label = label

    def fail(self, key: str, message: str):
        where = f"{self.label}: {key}: " if key else f"{self.label}: "
        raise MappingError(where + message)

    def unknown_keys(self, key: str, data: dict, allowed: set[str]):
        unknown = sorted(str(k) for k in data if k not in allowed)
        if unknown:
            prefix = f"{key}." if key else ""
            self.fail(f"{prefix}{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _label(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(MAPPINGS_DIR.parent))
    except ValueError:
        return str(path)


def _ratio(ctx: _Context, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        ctx.fail(key, f"must be a number between 0 and 1, got {value!r}")
    return float(value)


def _text(ctx: _Context, key: str, value: Any, *, allow_empty: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        ctx.fail(key, f"must be a string, got {type(value).__name__}")
    text = str(value)
    if not text and not allow_empty:
        ctx.fail(key, "must not be empty")
    return text


def _string_map(ctx: _Context, key: str, value: Any, *, allow_empty_values: bool = False) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        ctx.fail(key, "must be a mapping")
    result: dict[str, str] = {}
    for k, v in value.items():
        # YAML turns unquoted J/N/yes/no into booleans; a value map means the text.
        k_text = _yaml_scalar_text(k)
        v_text = _yaml_scalar_text(v)
        if k_text is None or v_text is None:
            ctx.fail(f"{key}.{k}", "keys and values must be plain strings or numbers")
        if not v_text and not allow_empty_values:
            ctx.fail(f"{key}.{k}", "must not be empty")
        if _CONTROL.search(v_text):
            ctx.fail(f"{key}.{k}", "must not contain control characters")
        result[k_text] = v_text
    return result


def _yaml_scalar_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _separator(ctx: _Context, key: str, value: Any) -> str | None:
    if value in (None, "auto"):
        return None
    if value not in _SEPARATORS:
        ctx.fail(key, f"must be auto or one of ',', ';', '|', tab; got {value!r}")
    return _SEPARATORS[value]


def _parse_source(ctx: _Context, source: str, data: Any, default_ratio: float) -> SourceMapping:
    base = f"sources.{source}"
    if not isinstance(data, dict):
        ctx.fail(base, "must be a mapping (patterns, columns, ...)")
    ctx.unknown_keys(base, data, _SOURCE_KEYS)

    patterns = data.get("patterns")
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
        ctx.fail(f"{base}.patterns", "required: a non-empty list of file name globs, e.g. ['products*.csv']")

    separator = _separator(ctx, f"{base}.separator", data.get("separator"))

    encoding = data.get("encoding")
    if encoding in (None, "auto"):
        encoding = None
    else:
        encoding = _text(ctx, f"{base}.encoding", encoding)
        try:
            codecs.lookup(encoding)
        except LookupError:
            ctx.fail(f"{base}.encoding", f"unknown encoding {encoding!r}")

    decimal = data.get("decimal", "auto")
    if decimal not in (".", ",", "auto"):
        ctx.fail(f"{base}.decimal", f"must be '.', ',' or auto; got {decimal!r}")
    thousands = data.get("thousands")
    if thousands is not None:
        thousands = _text(ctx, f"{base}.thousands", thousands)
        if thousands not in (".", ",", " ", "'", "\u00a0", "\u202f"):
            ctx.fail(f"{base}.thousands", f"must be one of '.', ',', ' ', \"'\"; got {thousands!r}")
        if thousands == decimal:
            ctx.fail(f"{base}.thousands", "must differ from the decimal separator")
        if decimal == "auto":
            ctx.fail(f"{base}.decimal", "must be '.' or ',' when a thousands separator is set")

    list_separator = _text(ctx, f"{base}.list_separator", data.get("list_separator", ";"))
    sheet = data.get("sheet")
    if sheet is not None:
        sheet = _text(ctx, f"{base}.sheet", sheet)

    ratio = _ratio(ctx, f"{base}.max_error_ratio", data.get("max_error_ratio", default_ratio))

    wide = None
    if data.get("wide") is not None:
        if source != "options":
            ctx.fail(f"{base}.wide", "only the options source can be a wide matrix")
        wide = _parse_wide(ctx, f"{base}.wide", data["wide"])

    fields = WIDE_OPTION_FIELDS if wide else SOURCE_FIELDS[source]
    known_fields = set(SOURCE_FIELDS[source]) if not wide else set(WIDE_OPTION_FIELDS)

    columns = _string_map(ctx, f"{base}.columns", data.get("columns"))
    constants = _string_map(ctx, f"{base}.constants", data.get("constants"))
    for key_name, mapping in (("columns", columns), ("constants", constants)):
        for canonical in mapping:
            if canonical not in known_fields:
                ctx.fail(
                    f"{base}.{key_name}.{canonical}",
                    f"unknown field (fields of {source}{' (wide)' if wide else ''}: {', '.join(known_fields)})",
                )
    for canonical in constants:
        if canonical in columns:
            ctx.fail(f"{base}.constants.{canonical}", "field is also mapped in columns; use one or the other")
    for canonical, required in fields.items():
        if required and canonical not in columns and canonical not in constants:
            ctx.fail(f"{base}.columns.{canonical}", "required column mapping missing")
    headers = [h.strip().casefold() for h in columns.values()]
    duplicates = sorted({h for h in headers if headers.count(h) > 1})
    if duplicates:
        ctx.fail(f"{base}.columns", f"source header {duplicates[0]!r} mapped to more than one field")

    value_maps: dict[str, dict[str, str]] = {}
    raw_maps = data.get("value_maps") or {}
    if not isinstance(raw_maps, dict):
        ctx.fail(f"{base}.value_maps", "must map field names to {source value: canonical value}")
    for canonical, value_map in raw_maps.items():
        if canonical not in known_fields:
            ctx.fail(f"{base}.value_maps.{canonical}", f"unknown field (fields: {', '.join(known_fields)})")
        value_maps[canonical] = _string_map(
            ctx, f"{base}.value_maps.{canonical}", value_map, allow_empty_values=True
        )

    metadata_prefix = None
    metadata_columns: dict[str, str] = {}
    metadata_types: dict[str, str] = {}
    raw_meta = data.get("metadata")
    if raw_meta is not None:
        if source != "products":
            ctx.fail(f"{base}.metadata", "only the products source carries metadata")
        if not isinstance(raw_meta, dict):
            ctx.fail(f"{base}.metadata", "must be a mapping with prefix and/or columns")
        ctx.unknown_keys(f"{base}.metadata", raw_meta, {"prefix", "columns", "types"})
        if raw_meta.get("prefix") is not None:
            metadata_prefix = _text(ctx, f"{base}.metadata.prefix", raw_meta["prefix"])
        meta_cols = raw_meta.get("columns")
        if isinstance(meta_cols, list):
            for i, header in enumerate(meta_cols):
                header = _text(ctx, f"{base}.metadata.columns[{i}]", header)
                metadata_columns[header] = header
        elif meta_cols is not None:
            metadata_columns = _string_map(ctx, f"{base}.metadata.columns", meta_cols)
        for header, key in metadata_columns.items():
            if key.casefold() == "sku":
                ctx.fail(f"{base}.metadata.columns.{header}", "metadata key SKU is reserved (always the SKU)")
        metadata_types = _string_map(ctx, f"{base}.metadata.types", raw_meta.get("types"))
        for key, type_name in metadata_types.items():
            if type_name not in _METADATA_TYPES:
                ctx.fail(f"{base}.metadata.types.{key}", f"must be String or Number, got {type_name!r}")

    raw_identifiers = data.get("identifiers") or []
    if isinstance(raw_identifiers, str):
        raw_identifiers = [raw_identifiers]
    if not isinstance(raw_identifiers, list):
        ctx.fail(f"{base}.identifiers", "must be a list of metadata keys or source headers")
    if raw_identifiers and source != "products":
        ctx.fail(f"{base}.identifiers", "only the products source carries metadata identifiers")
    identifiers = tuple(_text(ctx, f"{base}.identifiers[{i}]", v) for i, v in enumerate(raw_identifiers))
    for key in identifiers:
        if metadata_types.get(key) == "Number":
            ctx.fail(f"{base}.metadata.types.{key}", "an identifier is always String")

    hidden_rows = data.get("hidden_rows", "report")
    if hidden_rows not in _HIDDEN_ROWS:
        ctx.fail(f"{base}.hidden_rows", f"must be one of {', '.join(_HIDDEN_ROWS)}; got {hidden_rows!r}")

    if wide:
        clash = [h for h in wide.columns if h.strip().casefold() in headers]
        if clash:
            ctx.fail(f"{base}.wide.columns", f"column {clash[0]!r} is also mapped in columns")

    return SourceMapping(
        name=source,
        patterns=tuple(patterns),
        separator=separator,
        encoding=encoding,
        decimal=decimal,
        thousands=thousands,
        list_separator=list_separator,
        sheet=sheet,
        columns=columns,
        value_maps=value_maps,
        constants=constants,
        metadata_prefix=metadata_prefix,
        metadata_columns=metadata_columns,
        metadata_types=metadata_types,
        wide=wide,
        max_error_ratio=ratio,
        identifiers=identifiers,
        hidden_rows=hidden_rows,
    )


def _parse_wide(ctx: _Context, key: str, data: Any) -> WideOptions:
    if not isinstance(data, dict):
        ctx.fail(key, "must be a mapping with columns, value_separator, default_marker")
    ctx.unknown_keys(key, data, {"columns", "value_separator", "default_marker"})
    raw_columns = data.get("columns")
    columns: dict[str, str] = {}
    if isinstance(raw_columns, list):
        for i, header in enumerate(raw_columns):
            header = _text(ctx, f"{key}.columns[{i}]", header)
            columns[header] = header
    elif isinstance(raw_columns, dict):
        columns = _string_map(ctx, f"{key}.columns", raw_columns)
    if not columns:
        ctx.fail(f"{key}.columns", "required: the option columns (list, or mapping header -> attribute name)")
    separator = _text(ctx, f"{key}.value_separator", data.get("value_separator", "|"))
    marker = data.get("default_marker", "*")
    if marker is not None:
        marker = _text(ctx, f"{key}.default_marker", marker)
        if marker == separator:
            ctx.fail(f"{key}.default_marker", "must differ from value_separator")
    return WideOptions(columns=columns, value_separator=separator, default_marker=marker)
