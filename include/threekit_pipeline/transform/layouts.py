"""Real commerce/PIM exports -> the canonical source frames the transform already handles.

A mapping may declare ``inputs:`` (see ``include/mappings/README.md``, "Export layouts"):
each input is one export file layout (WooCommerce, Shopify, Akeneo, ...) that feeds
several canonical sources (products, options, prices) from the same file, with its own
row filter per source. This module parses that part of a mapping
(:func:`parse_inputs`) and reshapes the files of one batch (:func:`reshape_inputs`) into
:class:`Derived` tables whose headers are the canonical fields (``sku``, ``name``, ...,
``meta:<key>``). The transform then validates and writes them exactly like canonical
files, so every existing check (SKU rules, price parsing, duplicates, error ratio,
schema) still applies.

Shapes (all frames hold ``str`` values plus the ``__line__`` column of the source line):

* products: ``sku, name, description, keywords, tags, meta:<key>...`` (one row per item;
  list fields joined by :data:`LIST_SEPARATOR`);
* options: ``sku, attribute, value, default`` (one row per value; ``default`` is
  ``"true"``/``"false"``);
* prices: ``sku, pricebook, currency, price`` (one row per item, pricebook and currency;
  ``price`` as written, without currency symbol).

Rows a layout cannot represent (store-view overrides, rows without identifier, variants
whose parent is missing, per-variant prices that differ from the item's) are listed in the
errors CSV with line, column, value and reason; they are *reported*, not counted as bad
rows, so they never push a file over ``max_error_ratio``. Everything is vectorised pandas
(melt, explode, groupby/ffill, ``str`` methods).
"""

from __future__ import annotations

import fnmatch
import html
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threekit_pipeline.transform.errors import FileRejected, MappingError
from threekit_pipeline.transform.readers import LINE_COLUMN, RawTable, open_input, read_member

# Joins list values (tags, keywords) in derived products frames: a character no export uses
# and that the control-character checks accept.
LIST_SEPARATOR = "\u2063"
META_PREFIX = "meta:"

_PLACEHOLDERS = {
    "n": r"(?P<n>\d+)",
    "locale": r"(?P<locale>[A-Za-z]{2,3}(?:_[A-Za-z0-9]{2,4}){0,2})",
    "currency": r"(?P<currency>[A-Za-z]{3})",
    "unit": r"(?P<unit>[^()\[\]]+?)",
    "*": r".+?",
}
_PLACEHOLDER_RE = re.compile(r"\{(n|locale|currency|unit|\*)\}")
_TEMPLATE_RE = re.compile(r"\{([^{}]+)\}")
_TAG_RE = r"<[^>]*>"
_NUMBER_RE = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_ISO_CODE_RE = r"[A-Z]{3}"

_INPUT_KEYS = {
    "name",
    "patterns",
    "separator",
    "encoding",
    "decimal",
    "thousands",
    "sheet",
    "max_error_ratio",
    "item",
    "fill_down",
    "report",
    "sources",
    "translations",
}
_ITEM_KEYS = {"key", "parent", "parent_lookup", "children", "orphans", "aliases"}
_SOURCE_KEYS = {
    "products": {"where", "columns", "metadata", "ignore"},
    "item_metadata": {"where", "metadata"},
    "options": {"where", "rows", "pairs", "packed", "records", "columns", "axes", "default_row"},
    "prices": {"where", "rows", "columns", "currency", "currency_symbols", "choose", "tiers"},
}
_OPS = {"pairs", "trim", "strip_html", "unescape", "split", "path", "map", "boolean", "number", "unit", "extract", "lower", "upper"}


# --- Parsed mapping -------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """Where one value comes from and how it is cleaned.

    ``columns``: headers or header patterns tried in order (the first non-empty cell wins);
    ``template``: a text with ``{Header}`` references; ``constant``: a fixed value.
    ``ops``: the operator pipeline, each ``(name, argument)``.
    """

    columns: tuple[str, ...] = ()
    template: str | None = None
    constant: str | None = None
    ops: tuple[tuple[str, Any], ...] = ()
    rows: str = "item"  # products metadata: item | variants | all
    type: str | None = None  # forced metadata type

    def headers(self, table_headers: list[str]) -> list[str]:
        """The table headers this value reads, in the order they are tried."""
        found: list[str] = []
        for column in self.columns:
            for header in match_headers(column, table_headers):
                if header not in found:
                    found.append(header)
        if self.template:
            by_fold = {h.casefold(): h for h in table_headers}
            for name in _TEMPLATE_RE.findall(self.template):
                if name.casefold() in by_fold and by_fold[name.casefold()] not in found:
                    found.append(by_fold[name.casefold()])
        return found


@dataclass(frozen=True)
class Condition:
    column: str
    op: str  # in | not_in | empty | nonzero
    values: tuple[str, ...] = ()
    flag: bool = True


@dataclass(frozen=True)
class ReportRule:
    where: tuple[Condition, ...]
    reason: str
    skip: bool = True
    column: str = ""


@dataclass(frozen=True)
class ItemSpec:
    key: tuple[Value, ...]
    parent: Value | None = None
    parent_lookup: tuple[str, str] | None = None  # (prefix, column): "id:44" -> the row whose ID is 44
    children: dict[str, str] | None = None  # column, records, pairs, assign, key
    orphans: str = "report"  # report | own_item
    # Other columns by which variants in any file of the batch may name this item
    # (PrestaShop combinations keyed by "Product Reference" instead of the Product ID).
    aliases: tuple[Value, ...] = ()


@dataclass(frozen=True)
class InputSpec:
    """One export layout: which files, how they are read, and what each source takes."""

    name: str
    patterns: tuple[str, ...]
    separator: str | None = None
    encoding: str | None = None
    decimal: str = "."
    thousands: str | None = None
    sheet: str | None = None
    max_error_ratio: float = 0.05
    item: ItemSpec | None = None
    fill_down: tuple[str, ...] = ()
    report: tuple[ReportRule, ...] = ()
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    translations: dict[str, Any] | None = None

    def matches(self, file_name: str) -> bool:
        name = posixpath.basename(file_name.replace("\\", "/")).lower()
        candidates = [name, name[:-3]] if name.endswith(".gz") else [name]
        return any(fnmatch.fnmatchcase(c, p.lower()) for p in self.patterns for c in candidates)


def match_headers(column: str, headers: list[str]) -> list[str]:
    """Headers matching a column name (case-insensitive) or a pattern with ``{n}``,
    ``{locale}``, ``{currency}`` or ``{*}`` placeholders, in table order."""
    if not _PLACEHOLDER_RE.search(column):
        folded = column.strip().casefold()
        return [h for h in headers if h.strip().casefold() == folded]
    regex = header_regex(column)
    return [h for h in headers if regex.fullmatch(h.strip())]


def header_regex(pattern: str) -> re.Pattern:
    """A header pattern as a regular expression with named groups (``n``, ``locale``, ``currency``)."""
    parts: list[str] = []
    last = 0
    seen: set[str] = set()
    for m in _PLACEHOLDER_RE.finditer(pattern):
        parts.append(re.escape(pattern[last : m.start()]))
        name = m.group(1)
        if name in seen and name != "*":
            parts.append(f"(?P={name})")
        else:
            parts.append(_PLACEHOLDERS[name])
            seen.add(name)
        last = m.end()
    parts.append(re.escape(pattern[last:]))
    return re.compile("".join(parts), re.IGNORECASE)


class _Ctx:
    def __init__(self, label: str):
        self.label = label

    def fail(self, key: str, message: str):
        raise MappingError(f"{self.label}: {key}: {message}")

    def keys(self, key: str, data: dict, allowed: set[str]):
        unknown = sorted(str(k) for k in data if k not in allowed)
        if unknown:
            self.fail(f"{key}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _text(ctx: _Ctx, key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        ctx.fail(key, f"must be a string, got {type(value).__name__}")
    return str(value)


def _texts(ctx: _Ctx, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return (str(value),)
    if isinstance(value, bool):
        return ("true" if value else "false",)
    if not isinstance(value, list):
        ctx.fail(key, "must be a string or a list of strings")
    return tuple(_scalar(ctx, f"{key}[{i}]", v) for i, v in enumerate(value))


def _scalar(ctx: _Ctx, key: str, value: Any) -> str:
    # YAML reads unquoted yes/no/TRUE as booleans: the words mean the text.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return _text(ctx, key, value)


def parse_value(ctx: _Ctx, key: str, data: Any, *, allow_rows: bool = False) -> Value:
    """A value declaration: a header (or header pattern), a list of them, or a mapping with
    ``column``/``columns``, ``template`` or ``value``, plus ``ops``, ``rows`` and ``type``."""
    if isinstance(data, (str, int, float)) and not isinstance(data, bool):
        return Value(columns=(str(data),))
    if isinstance(data, list):
        return Value(columns=_texts(ctx, key, data))
    if not isinstance(data, dict):
        ctx.fail(key, "must be a column name, a list of column names, or a mapping with column/template/value")
    allowed = {"column", "columns", "template", "value", "ops", "type"} | ({"rows"} if allow_rows else set())
    ctx.keys(key, data, allowed)
    columns = _texts(ctx, f"{key}.column", data.get("column")) + _texts(ctx, f"{key}.columns", data.get("columns"))
    template = data.get("template")
    if template is not None:
        template = _text(ctx, f"{key}.template", template)
    constant = data.get("value")
    if constant is not None:
        constant = _scalar(ctx, f"{key}.value", constant)
    if not columns and template is None and constant is None:
        ctx.fail(key, "needs column, columns, template or value")
    ops = tuple(_parse_op(ctx, f"{key}.ops[{i}]", op) for i, op in enumerate(data.get("ops") or []))
    rows = data.get("rows", "item")
    if rows not in ("item", "variants", "all"):
        ctx.fail(f"{key}.rows", f"must be item, variants or all; got {rows!r}")
    kind = data.get("type")
    if kind is not None and kind not in ("String", "Number"):
        ctx.fail(f"{key}.type", f"must be String or Number, got {kind!r}")
    if any(name in ("number", "unit") for name, _ in ops):
        kind = kind or "Number"
    return Value(columns=columns, template=template, constant=constant, ops=ops, rows=rows, type=kind)


def _parse_op(ctx: _Ctx, key: str, op: Any) -> tuple[str, Any]:
    if isinstance(op, str):
        name, arg = op, None
    elif isinstance(op, dict) and len(op) == 1:
        name, arg = next(iter(op.items()))
    else:
        ctx.fail(key, f"an operator is a name or a one-key mapping (operators: {', '.join(sorted(_OPS))})")
    if name not in _OPS:
        ctx.fail(key, f"unknown operator {name!r} (operators: {', '.join(sorted(_OPS))})")
    if name == "split":
        arg = _text(ctx, f"{key}.split", arg) if arg is not None else ","
    elif name == "path":
        if isinstance(arg, str):
            arg = {"separator": arg}
        if not isinstance(arg, dict):
            ctx.fail(f"{key}.path", "must be a separator or {separator, keep}")
        keep = arg.get("keep", "whole")
        if keep not in ("whole", "levels", "leaf"):
            ctx.fail(f"{key}.path.keep", f"must be whole, levels or leaf; got {keep!r}")
        arg = {"separator": _text(ctx, f"{key}.path.separator", arg.get("separator", ">")), "keep": keep}
    elif name == "map":
        if not isinstance(arg, dict):
            ctx.fail(f"{key}.map", "must map source values to values")
        arg = {_scalar(ctx, key, k): _scalar(ctx, key, v) for k, v in arg.items()}
    elif name == "boolean":
        if not isinstance(arg, dict) or not {"true", "false"} <= {_scalar(ctx, key, k) for k in arg}:
            ctx.fail(f"{key}.boolean", "must list the words for true and for false: {true: [...], false: [...]}")
        words = {_scalar(ctx, key, k): v for k, v in arg.items()}
        arg = {
            "true": tuple(w.casefold() for w in _texts(ctx, f"{key}.boolean.true", words["true"])),
            "false": tuple(w.casefold() for w in _texts(ctx, f"{key}.boolean.false", words["false"])),
        }
    elif name == "unit":
        if arg in (None, "in_value"):
            arg = {"from": "value"}
        elif isinstance(arg, dict) and set(arg) <= {"column", "header", "default"}:
            arg = {k: _text(ctx, f"{key}.unit.{k}", v) for k, v in arg.items()}
            arg["from"] = "column" if "column" in arg else "value"
        else:
            ctx.fail(f"{key}.unit", "must be in_value or {column: <unit column>, default: <unit>}")
    elif name == "extract":
        arg = _text(ctx, f"{key}.extract", arg)
        try:
            if re.compile(arg).groups < 1:
                ctx.fail(f"{key}.extract", "the regular expression needs one group")
        except re.error as exc:
            ctx.fail(f"{key}.extract", f"invalid regular expression: {exc}")
    elif name == "number":
        arg = None
    elif name == "pairs":
        arg = arg if isinstance(arg, dict) else {"separator": arg or ","}
        fmt = _text(ctx, key, arg.get("format", "name=value"))
        arg = {
            "separator": _text(ctx, key, arg.get("separator", ",")),
            "assign": _text(ctx, key, arg.get("assign", "=")),
            # "name:value:position": fields after the value are dropped.
            "trailing": max(fmt.count(_text(ctx, key, arg.get("assign", "="))) - 1, 0),
        }
    return name, arg


def _parse_where(ctx: _Ctx, key: str, data: Any) -> tuple[Condition, ...]:
    if data is None:
        return ()
    if not isinstance(data, dict):
        ctx.fail(key, "must map column names to a condition: {in: [...]}, {not_in: [...]}, {empty: true}, {nonzero: true}")
    conditions = []
    for column, cond in data.items():
        column = _text(ctx, key, column)
        if isinstance(cond, list):
            cond = {"in": cond}
        if not isinstance(cond, dict) or len(cond) != 1:
            ctx.fail(f"{key}.{column}", "must be one of {in: [...]}, {not_in: [...]}, {empty: true|false}, {nonzero: true}")
        op, arg = next(iter(cond.items()))
        if op in ("in", "not_in"):
            conditions.append(Condition(column, op, _texts(ctx, f"{key}.{column}.{op}", arg)))
        elif op in ("empty", "nonzero"):
            if not isinstance(arg, bool):
                ctx.fail(f"{key}.{column}.{op}", "must be true or false")
            conditions.append(Condition(column, op, (), arg))
        else:
            ctx.fail(f"{key}.{column}", f"unknown condition {op!r} (in, not_in, empty, nonzero)")
    return tuple(conditions)


def parse_inputs(data: Any, *, label: str) -> tuple[InputSpec, ...]:
    """Validate the ``inputs:`` list of a mapping; raises :class:`MappingError` naming file and key."""
    ctx = _Ctx(label)
    if not isinstance(data, list) or not data:
        ctx.fail("inputs", "must be a non-empty list of export layouts")
    return tuple(_parse_input(ctx, f"inputs[{i}]", d) for i, d in enumerate(data))


def _parse_input(ctx: _Ctx, key: str, data: Any) -> InputSpec:
    if not isinstance(data, dict):
        ctx.fail(key, "must be a mapping (patterns, item, sources, ...)")
    ctx.keys(key, data, _INPUT_KEYS)
    patterns = _texts(ctx, f"{key}.patterns", data.get("patterns"))
    if not patterns:
        ctx.fail(f"{key}.patterns", "required: file name globs, e.g. ['*.csv']")
    separator = data.get("separator")
    separators = {",": ",", ";": ";", "tab": "\t", "\t": "\t", "|": "|"}
    if separator in (None, "auto"):
        separator = None
    elif separator in separators:
        separator = separators[separator]
    else:
        ctx.fail(f"{key}.separator", f"must be auto or one of ',', ';', '|', tab; got {separator!r}")
    decimal = data.get("decimal", ".")
    if decimal not in (".", ",", "auto"):
        ctx.fail(f"{key}.decimal", f"must be '.', ',' or auto; got {decimal!r}")
    thousands = data.get("thousands")
    if thousands is not None and decimal == "auto":
        ctx.fail(f"{key}.thousands", "needs decimal '.' or ','")
    if thousands is not None:
        thousands = _text(ctx, f"{key}.thousands", thousands)
        if thousands == decimal or thousands not in (".", ",", " ", "'", "\u00a0", "\u202f"):
            ctx.fail(f"{key}.thousands", f"must be one of '.', ',', ' ', \"'\" and differ from decimal; got {thousands!r}")
    ratio = data.get("max_error_ratio", 0.05)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        ctx.fail(f"{key}.max_error_ratio", f"must be a number between 0 and 1, got {ratio!r}")

    item_data = data.get("item")
    if not isinstance(item_data, dict) or "key" not in item_data:
        ctx.fail(f"{key}.item", "required: {key: <identifier column(s)>, parent: ..., children: ...}")
    ctx.keys(f"{key}.item", item_data, _ITEM_KEYS)
    raw_keys = item_data["key"] if isinstance(item_data["key"], list) else [item_data["key"]]
    keys = tuple(parse_value(ctx, f"{key}.item.key[{i}]", k) for i, k in enumerate(raw_keys))
    parent = parse_value(ctx, f"{key}.item.parent", item_data["parent"]) if item_data.get("parent") else None
    lookup = None
    if item_data.get("parent_lookup"):
        pl = item_data["parent_lookup"]
        if not isinstance(pl, dict) or set(pl) != {"prefix", "column"}:
            ctx.fail(f"{key}.item.parent_lookup", "must be {prefix: 'id:', column: ID}")
        lookup = (_text(ctx, key, pl["prefix"]), _text(ctx, key, pl["column"]))
    children = None
    if item_data.get("children"):
        ch = item_data["children"]
        if not isinstance(ch, dict) or "column" not in ch or "key" not in ch:
            ctx.fail(f"{key}.item.children", "must be {column, key, records, pairs, assign}")
        ctx.keys(f"{key}.item.children", ch, {"column", "key", "records", "pairs", "assign"})
        children = {
            "column": _text(ctx, key, ch["column"]),
            "key": _text(ctx, key, ch["key"]),
            "records": _text(ctx, key, ch.get("records", "|")),
            "pairs": _text(ctx, key, ch.get("pairs", ",")),
            "assign": _text(ctx, key, ch.get("assign", "=")),
        }
    orphans = item_data.get("orphans", "report")
    if orphans not in ("report", "own_item"):
        ctx.fail(f"{key}.item.orphans", f"must be report or own_item; got {orphans!r}")
    raw_aliases = item_data.get("aliases") or []
    raw_aliases = raw_aliases if isinstance(raw_aliases, list) else [raw_aliases]
    aliases = tuple(parse_value(ctx, f"{key}.item.aliases[{i}]", a) for i, a in enumerate(raw_aliases))
    item = ItemSpec(keys, parent, lookup, children, orphans, aliases)

    reports = []
    for i, rule in enumerate(data.get("report") or []):
        rkey = f"{key}.report[{i}]"
        if not isinstance(rule, dict) or "where" not in rule or "reason" not in rule:
            ctx.fail(rkey, "must be {where: {...}, reason: '...', skip: true|false}")
        ctx.keys(rkey, rule, {"where", "reason", "skip", "column"})
        skip = rule.get("skip", True)
        if not isinstance(skip, bool):
            ctx.fail(f"{rkey}.skip", "must be true or false")
        reports.append(
            ReportRule(
                _parse_where(ctx, f"{rkey}.where", rule["where"]),
                _text(ctx, f"{rkey}.reason", rule["reason"]),
                skip,
                _text(ctx, f"{rkey}.column", rule.get("column", "")),
            )
        )

    raw_sources = data.get("sources")
    if not isinstance(raw_sources, dict) or not raw_sources:
        ctx.fail(f"{key}.sources", "required: at least one of products, options, prices")
    sources = {}
    for name, sdata in raw_sources.items():
        skey = f"{key}.sources.{name}"
        if name not in _SOURCE_KEYS:
            ctx.fail(skey, f"unknown source (known: {', '.join(_SOURCE_KEYS)})")
        if not isinstance(sdata, dict):
            ctx.fail(skey, "must be a mapping")
        ctx.keys(skey, sdata, _SOURCE_KEYS[name])
        sources[name] = _PARSERS[name](ctx, skey, sdata)

    translations = None
    if data.get("translations") is not None:
        tdata = data["translations"]
        tkey = f"{key}.translations"
        if not isinstance(tdata, dict) or "default_locale" not in tdata or "fields" not in tdata:
            ctx.fail(tkey, "must be {default_locale: en_US, fields: {name: 'name-{locale}', ...}}")
        ctx.keys(tkey, tdata, {"default_locale", "fields"})
        fields = {}
        for fname, fdata in (tdata["fields"] or {}).items():
            value = parse_value(ctx, f"{tkey}.fields.{fname}", fdata)
            if not any("{locale}" in c for c in value.columns):
                ctx.fail(f"{tkey}.fields.{fname}", "the column pattern must contain {locale}")
            fields[str(fname)] = value
        translations = {"default_locale": _texts(ctx, f"{tkey}.default_locale", tdata["default_locale"]), "fields": fields}

    return InputSpec(
        name=str(data.get("name", f"input {key}")),
        patterns=patterns,
        separator=separator,
        encoding=None if data.get("encoding") in (None, "auto") else _text(ctx, f"{key}.encoding", data["encoding"]),
        decimal=decimal,
        thousands=thousands,
        sheet=data.get("sheet"),
        max_error_ratio=float(ratio),
        item=item,
        fill_down=_texts(ctx, f"{key}.fill_down", data.get("fill_down")),
        report=tuple(reports),
        sources=sources,
        translations=translations,
    )


def _parse_products(ctx: _Ctx, key: str, data: dict) -> dict:
    columns = data.get("columns") or {}
    if not isinstance(columns, dict) or "name" not in columns:
        ctx.fail(f"{key}.columns", "required: at least name (the SKU is the item key)")
    allowed = {"name", "description", "keywords", "tags", "model_asset_id"}
    for field_name in columns:
        if field_name not in allowed:
            ctx.fail(f"{key}.columns.{field_name}", f"unknown field (fields: {', '.join(sorted(allowed))})")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        ctx.fail(f"{key}.metadata", "must map metadata keys to values")
    meta = {}
    for mkey, mdata in metadata.items():
        if str(mkey).casefold() == "sku":
            ctx.fail(f"{key}.metadata.{mkey}", "metadata key SKU is reserved (always the SKU)")
        meta[str(mkey)] = parse_value(ctx, f"{key}.metadata.{mkey}", mdata, allow_rows=True)
    return {
        "where": _parse_where(ctx, f"{key}.where", data.get("where")),
        "columns": {f: parse_value(ctx, f"{key}.columns.{f}", v) for f, v in columns.items()},
        "metadata": meta,
        "ignore": _texts(ctx, f"{key}.ignore", data.get("ignore")),
    }


def _rows(ctx: _Ctx, key: str, data: dict) -> str:
    rows = data.get("rows", "all")
    if rows not in ("item", "variants", "all"):
        ctx.fail(f"{key}.rows", f"must be item, variants or all; got {rows!r}")
    return rows


def _parse_options(ctx: _Ctx, key: str, data: dict) -> dict:
    kinds = [k for k in ("pairs", "packed", "records", "columns", "axes") if data.get(k) is not None]
    if len(kinds) != 1:
        ctx.fail(key, "needs exactly one of pairs, packed, records, columns, axes")
    kind = kinds[0]
    spec = data[kind]
    parsed: dict[str, Any] = {"kind": kind, "where": _parse_where(ctx, f"{key}.where", data.get("where")), "rows": _rows(ctx, key, data)}
    if kind == "pairs":
        if not isinstance(spec, dict) or "name" not in spec or "value" not in spec:
            ctx.fail(f"{key}.pairs", "must be {name: 'Attribute {n} name', value: 'Attribute {n} value(s)', ...}")
        ctx.keys(f"{key}.pairs", spec, {"name", "value", "default", "split", "skip_values"})
        parsed.update(
            name=_text(ctx, key, spec["name"]),
            value=_text(ctx, key, spec["value"]),
            default=_text(ctx, key, spec["default"]) if spec.get("default") else None,
            split=_text(ctx, key, spec["split"]) if spec.get("split") else None,
            skip_values=_texts(ctx, f"{key}.pairs.skip_values", spec.get("skip_values")),
        )
        if "{n}" not in parsed["name"] or "{n}" not in parsed["value"]:
            ctx.fail(f"{key}.pairs", "name and value patterns must contain {n}")
    elif kind == "packed":
        if not isinstance(spec, dict) or "names" not in spec or "values" not in spec:
            ctx.fail(f"{key}.packed", "must be {names: {column, format}, values: {column, format}, split}")
        ctx.keys(f"{key}.packed", spec, {"names", "values", "split"})
        parts = {}
        for side in ("names", "values"):
            sd = spec[side]
            if not isinstance(sd, dict) or "column" not in sd:
                ctx.fail(f"{key}.packed.{side}", "must be {column: <header>, format: 'name:type:position'}")
            fmt = _text(ctx, key, sd.get("format", "value"))
            parts[side] = (_text(ctx, key, sd["column"]), fmt.count(":"))
        parsed.update(names=parts["names"], values=parts["values"], split=_text(ctx, key, spec.get("split", ",")))
    elif kind == "records":
        if not isinstance(spec, dict) or "column" not in spec:
            ctx.fail(f"{key}.records", "must be {column, records, pairs, assign, identifier, labels}")
        ctx.keys(f"{key}.records", spec, {"column", "records", "pairs", "assign", "identifier", "labels"})
        labels = spec.get("labels")
        if labels is not None:
            if isinstance(labels, str):
                labels = {"column": labels}
            if not isinstance(labels, dict) or "column" not in labels:
                ctx.fail(f"{key}.records.labels", "must be a column name or {column, pairs, assign}")
        parsed.update(
            column=_text(ctx, key, spec["column"]),
            records=_text(ctx, key, spec.get("records", "|")),
            pairs=_text(ctx, key, spec.get("pairs", ",")),
            assign=_text(ctx, key, spec.get("assign", "=")),
            identifier=_texts(ctx, f"{key}.records.identifier", spec.get("identifier")),
            labels=labels and {
                "column": _text(ctx, key, labels["column"]),
                "pairs": _text(ctx, key, labels.get("pairs", spec.get("pairs", ","))),
                "assign": _text(ctx, key, labels.get("assign", spec.get("assign", "="))),
            },
        )
    elif kind == "axes":
        if not isinstance(spec, dict) or "columns" not in spec:
            ctx.fail(f"{key}.axes", "must be {columns: [<headers or patterns>], ignore: [...], split: ','}")
        ctx.keys(f"{key}.axes", spec, {"columns", "ignore", "split"})
        parsed.update(
            columns=_texts(ctx, f"{key}.axes.columns", spec["columns"]),
            ignore=_texts(ctx, f"{key}.axes.ignore", spec.get("ignore")),
            split=_text(ctx, key, spec["split"]) if spec.get("split") else None,
        )
    else:
        if not isinstance(spec, dict) or not spec:
            ctx.fail(f"{key}.columns", "must map attribute names to values")
        parsed["columns"] = {str(a): parse_value(ctx, f"{key}.columns.{a}", v) for a, v in spec.items()}
    default_row = data.get("default_row")
    if default_row is not None:
        if not isinstance(default_row, dict) or "column" not in default_row:
            ctx.fail(f"{key}.default_row", "must be {column: <flag column>, true: ['1']}")
        parsed["default_row"] = (_text(ctx, key, default_row["column"]), _texts(ctx, key, default_row.get("true", ["1"])))
    return parsed


def _parse_prices(ctx: _Ctx, key: str, data: dict) -> dict:
    columns = data.get("columns")
    if not isinstance(columns, list) or not columns:
        ctx.fail(f"{key}.columns", "required: a list of {column, pricebook, currency}")
    entries = []
    for i, entry in enumerate(columns):
        ekey = f"{key}.columns[{i}]"
        if not isinstance(entry, dict) or "column" not in entry or "pricebook" not in entry:
            ctx.fail(ekey, "must be {column: <header or pattern>, pricebook: <name>, currency: <ISO code>}")
        ctx.keys(ekey, entry, {"column", "pricebook", "currency", "currency_column", "tier_quantity"})
        entries.append(
            {
                "currency_column": _text(ctx, ekey, entry["currency_column"]) if entry.get("currency_column") else None,
                "column": _text(ctx, ekey, entry["column"]),
                "pricebook": _text(ctx, ekey, entry["pricebook"]),
                "currency": _text(ctx, ekey, entry["currency"]).upper() if entry.get("currency") else None,
                "tier_quantity": _text(ctx, ekey, entry["tier_quantity"]) if entry.get("tier_quantity") else None,
            }
        )
    choose = data.get("choose", "first")
    if choose not in ("first", "min"):
        ctx.fail(f"{key}.choose", f"must be first or min; got {choose!r}")
    tiers = data.get("tiers", "report")
    if tiers != "report" and not (isinstance(tiers, dict) and "pricebook" in tiers):
        ctx.fail(f"{key}.tiers", "must be report or {pricebook: 'tier-{qty}'}")
    symbols = data.get("currency_symbols") or {}
    if not isinstance(symbols, dict):
        ctx.fail(f"{key}.currency_symbols", "must map symbols to ISO codes, e.g. {'$': USD}")
    return {
        "where": _parse_where(ctx, f"{key}.where", data.get("where")),
        "rows": _rows(ctx, key, data),
        "columns": entries,
        "currency": _text(ctx, key, data["currency"]).upper() if data.get("currency") else None,
        "currency_symbols": {_text(ctx, key, k): _text(ctx, key, v).upper() for k, v in symbols.items()},
        "choose": choose,
        "tiers": tiers,
    }


def _parse_item_metadata(ctx: _Ctx, key: str, data: dict) -> dict:
    metadata = data.get("metadata")
    if not isinstance(metadata, dict) or not metadata:
        ctx.fail(f"{key}.metadata", "required: metadata keys -> columns, collected onto each row's item")
    return {
        "where": _parse_where(ctx, f"{key}.where", data.get("where")),
        "metadata": {str(k): parse_value(ctx, f"{key}.metadata.{k}", v) for k, v in metadata.items()},
    }


_PARSERS = {
    "products": _parse_products,
    "options": _parse_options,
    "prices": _parse_prices,
    "item_metadata": _parse_item_metadata,
}


# --- Reshaping ------------------------------------------------------------------------------------


@dataclass
class Derived:
    """One canonical source table made from an export file (or a file-level rejection)."""

    name: str  # display name of the export file
    input_name: str
    source: str  # products | options | prices
    table: RawTable | None
    decimal: str = "."
    thousands: str | None = None
    max_error_ratio: float = 0.05
    metadata_types: dict[str, str] = field(default_factory=dict)
    # Reported rows: file, line, column, value, reason (listed, not counted as bad rows).
    notes: pd.DataFrame | None = None
    reject_reason: str = ""


@dataclass
class _Prepared:
    spec: InputSpec
    name: str
    input_name: str
    table: RawTable
    frame: pd.DataFrame  # raw columns + LINE_COLUMN, reported-and-skipped rows removed
    key: pd.Series  # the row's own identifier
    item: pd.Series  # the item the row belongs to
    notes: list[pd.DataFrame] = field(default_factory=list)
    default_locale: str = ""  # the locale whose texts the items carry ({default_locale})
    meta_limit: int = 2000  # longest metadata value the transform accepts


def reshape_inputs(mapping, paths: list[Path]) -> tuple[list[Path], list[Derived], list[pd.DataFrame]]:
    """Split ``paths`` into the files no input layout claims (returned first, for the
    canonical sources) and :class:`Derived` tables for the others; plus translation frames
    (``Canonical Name`` + one column per locale)."""
    rest: list[Path] = []
    prepared: list[_Prepared] = []
    derived: list[Derived] = []
    for path in paths:
        spec = next((s for s in mapping.inputs if s.matches(path.name)), None)
        if spec is None:
            rest.append(path)
            continue
        try:
            members = open_input(path, mapping.input_limits)
            if len(members) != 1:
                raise FileRejected(f"an export archive must hold exactly one data file, found {len(members)}")
            table = read_member(
                members[0],
                separator=spec.separator,
                encoding=spec.encoding,
                sheet=spec.sheet,
                decimal=spec.decimal,
                limits=mapping.input_limits,
            )
            prepared.append(_prepare(spec, members[0].name, path.name, table))
            prepared[-1].meta_limit = mapping.max_length("metadata")
        except FileRejected as exc:
            derived.append(Derived(path.name, path.name, next(iter(spec.sources)), None, reject_reason=exc.reason))
    # Two-level variants (Akeneo: product -> sub-model -> root model): a row whose item is
    # itself a variant of another item belongs to that one, across the batch's files.
    variant_of = pd.concat([p.item[(p.key != p.item).to_numpy()].set_axis(p.key[(p.key != p.item).to_numpy()]) for p in prepared]) if prepared else pd.Series(dtype="str")
    variant_of = variant_of[~variant_of.index.duplicated()]
    if len(variant_of):
        for p in prepared:
            for _ in range(3):
                upper = p.item.map(variant_of)
                moved = upper.notna() & (upper != p.item)
                if not moved.any():
                    break
                p.item = p.item.where(~moved, upper.astype("str"))
    item_keys = set()
    for p in prepared:
        item_keys.update(p.key[(p.key == p.item).to_numpy()].tolist())
    # Variants naming their item by an alias (its reference) belong to the item's key.
    alias_parts = []
    for p in prepared:
        own = (p.key == p.item).to_numpy()
        for alias in p.spec.item.aliases:
            names = _cells(p.frame, p.table.headers, alias)[own]
            alias_parts.append(pd.Series(p.item[own].to_numpy(), index=names.to_numpy())[names.to_numpy() != ""])
    if alias_parts:
        by_alias = pd.concat(alias_parts)
        by_alias = by_alias[~by_alias.index.duplicated(keep=False) & ~by_alias.index.isin(list(item_keys))]
        for p in prepared:
            unknown = (p.key != p.item).to_numpy() & ~p.item.isin(item_keys).to_numpy()
            if unknown.any() and len(by_alias):
                resolved = p.item.map(by_alias)
                use = unknown & resolved.notna().to_numpy()
                p.item = p.item.where(~use, resolved.astype("str"))
    translations: list[pd.DataFrame] = []
    for p in prepared:
        _resolve_orphans(p, item_keys)
    # Metadata one file collects for items another file of the batch defines (combination
    # references onto their product): item key -> {metadata key: joined values}.
    collected: dict[str, pd.Series] = {}
    for p in prepared:
        if "item_metadata" in p.spec.sources:
            _collect_item_metadata(p, p.spec.sources["item_metadata"], collected, item_keys)
        _collect_variant_metadata(p, collected)
    for p in prepared:
        derived.extend(_derive(p, collected))
        if p.spec.translations:
            frame = _translations(p)
            if frame is not None:
                translations.append(frame)
    return rest, derived, translations


def _note(p: _Prepared, mask: np.ndarray, column: str, values, reasons) -> None:
    if not mask.any():
        return
    count = int(mask.sum())
    lines = p.frame[LINE_COLUMN].to_numpy()[mask]
    values = values[mask] if not isinstance(values, str) else np.full(count, values, dtype=object)
    reasons = reasons[mask] if not isinstance(reasons, str) else np.full(count, reasons, dtype=object)
    p.notes.append(
        pd.DataFrame(
            {
                "file": np.full(count, p.name, dtype=object),
                "line": pd.array(lines, dtype="Int64"),
                "column": np.full(count, column, dtype=object) if isinstance(column, str) else column[mask],
                "value": pd.Series(np.asarray(values, dtype=object)).astype("str").to_numpy(dtype=object),
                "reason": pd.Series(np.asarray(reasons, dtype=object)).astype("str").to_numpy(dtype=object),
            }
        )
    )


def _cells(frame: pd.DataFrame, headers: list[str], value: Value, strip: bool = True) -> pd.Series:
    """The value's text per row (first non-empty of its columns; "" when none). Trimmed,
    unless ``strip`` is False (identifiers: kept exactly as written, so that the transform
    reports surrounding spaces instead of silently changing the SKU)."""
    n = len(frame)
    if value.constant is not None:
        return pd.Series(np.full(n, value.constant, dtype=object), index=frame.index, dtype="str")
    if value.template is not None:
        return _template(frame, headers, value.template)
    result = pd.Series(np.full(n, "", dtype=object), index=frame.index, dtype="str")
    for header in value.headers(headers):
        raw = frame[header].fillna("").astype("str")
        trimmed = raw.str.strip()
        cells = trimmed if strip else raw.where(trimmed != "", "")
        result = result.where(result != "", cells)
    return result


def _template(frame: pd.DataFrame, headers: list[str], template: str) -> pd.Series:
    """``"id:{ID}"`` per row; empty when a referenced cell is empty."""
    by_fold = {h.casefold(): h for h in headers}
    n = len(frame)
    result = pd.Series(np.full(n, "", dtype=object), index=frame.index, dtype="str")
    empty = np.zeros(n, dtype=bool)
    last = 0
    for m in _TEMPLATE_RE.finditer(template):
        result = result + template[last : m.start()]
        header = by_fold.get(m.group(1).casefold())
        cells = frame[header].fillna("").astype("str").str.strip() if header else pd.Series([""] * n, index=frame.index, dtype="str")
        empty |= (cells == "").to_numpy()
        result = result + cells
        last = m.end()
    result = result + template[last:]
    return result.where(~empty, "")


def _condition_mask(frame: pd.DataFrame, headers: list[str], conditions: tuple[Condition, ...]) -> np.ndarray:
    mask = np.ones(len(frame), dtype=bool)
    for cond in conditions:
        # A header pattern tests the first non-empty cell of the matching columns.
        cells = _cells(frame, headers, Value(columns=(cond.column,)))
        if cond.op == "in":
            ok = cells.isin(cond.values).to_numpy()
        elif cond.op == "not_in":
            ok = ~cells.isin(cond.values).to_numpy()
        elif cond.op == "empty":
            ok = (cells == "").to_numpy() == cond.flag
        else:  # nonzero
            # Zero in any decimal notation ("0", "0.000000", "0,000000", "-0"); empty is zero.
            zero = cells.str.fullmatch(r"[+-]?0*(?:[.,]0*)?").to_numpy(dtype=bool, na_value=False)
            ok = ~zero == cond.flag
        mask &= ok
    return mask


def _prepare(spec: InputSpec, name: str, input_name: str, table: RawTable) -> _Prepared:
    frame = table.frame.reset_index(drop=True)
    headers = table.headers
    p = _Prepared(spec, name, input_name, table, frame, pd.Series(dtype="str"), pd.Series(dtype="str"))
    if table.row_errors:
        p.notes.append(
            pd.DataFrame(
                {
                    "file": [name] * len(table.row_errors),
                    "line": pd.array([line for line, _ in table.row_errors], dtype="Int64"),
                    "column": [""] * len(table.row_errors),
                    "value": [""] * len(table.row_errors),
                    "reason": [reason for _, reason in table.row_errors],
                }
            )
        )
    keep = np.ones(len(frame), dtype=bool)
    for rule in spec.report:
        hit = _condition_mask(frame, headers, rule.where) & keep
        reason = _template_text(frame, headers, rule.reason)
        column = rule.column or (rule.where[0].column if rule.where else "")
        found = match_headers(column, headers) if column else []
        values = frame[found[0]].fillna("").astype("str").to_numpy(dtype=object) if found else ""
        _note(p, hit, column, values, reason.to_numpy(dtype=object))
        if rule.skip:
            keep &= ~hit
    item_spec = spec.item
    key = pd.Series(np.full(len(frame), "", dtype=object), dtype="str")
    for value in item_spec.key:
        key = key.where(key != "", _apply_scalar_ops(p, _cells(frame, headers, value, strip=False), value, ""))
    no_key = keep & (key == "").to_numpy()
    shown = ", ".join(c for v in item_spec.key for c in (v.columns or ((v.template,) if v.template else ())))
    _note(p, no_key, shown, "", "row has no identifier (" + shown + "): not imported")
    keep &= ~no_key
    item = key.copy()
    if item_spec.parent is not None:
        parent = _cells(frame, headers, item_spec.parent)
        if item_spec.parent_lookup:
            prefix, column = item_spec.parent_lookup
            found = match_headers(column, headers)
            if found:
                ids = frame[found[0]].fillna("").astype("str").str.strip()
                lookup = pd.Series(key.to_numpy(), index=ids.to_numpy())
                lookup = lookup[~lookup.index.duplicated()]
                referenced = parent.str.startswith(prefix) & (parent != "")
                resolved = parent.str.slice(len(prefix)).map(lookup)
                parent = parent.where(~(referenced & resolved.notna()), resolved.fillna("").astype("str"))
        item = item.where(parent == "", parent)
    if item_spec.children:
        ch = item_spec.children
        found = match_headers(ch["column"], headers)
        if found:
            records = frame[found[0]].fillna("").astype("str").str.split(re.escape(ch["records"]), regex=True).explode()
            pairs = _packed_pairs(records, ch["pairs"], ch["assign"])
            child = pairs[pairs["name"] == ch["key"]]
            owners = key.to_numpy()[child.index.to_numpy()]
            child_map = pd.Series(owners, index=child["value"].to_numpy())
            child_map = child_map[~child_map.index.duplicated()]
            parent = key.map(child_map)
            is_child = parent.notna() & (parent != key)
            item = item.where(~is_child, parent.fillna("").astype("str"))
    p.default_locale = _default_locale(spec, headers)
    frame = frame.loc[keep].reset_index(drop=True)
    p.frame = frame
    p.key = key[keep].reset_index(drop=True).astype("str")
    p.item = item[keep].reset_index(drop=True).astype("str")
    return p


def _default_locale(spec: InputSpec, headers: list[str]) -> str:
    """The first declared default locale that the file's per-locale columns have, else the
    first locale they have ("" without translations)."""
    if not spec.translations:
        return ""
    found: list[str] = []
    for value in spec.translations["fields"].values():
        for column in value.columns:
            regex = header_regex(column)
            for header in match_headers(column, headers):
                locale = regex.fullmatch(header.strip())["locale"]
                if locale not in found:
                    found.append(locale)
    folded = {f.casefold(): f for f in found}
    for wanted in spec.translations["default_locale"]:
        if wanted.casefold() in folded:
            return folded[wanted.casefold()]
    return found[0] if found else ""


def _localized(value: Value, locale: str) -> Value:
    """``{default_locale}`` in a value's columns replaced by the file's default locale."""
    if not any("{default_locale}" in c for c in value.columns):
        return value
    columns = tuple(c.replace("{default_locale}", locale) for c in value.columns if locale or "{default_locale}" not in c)
    return Value(columns=columns, template=value.template, constant=value.constant, ops=value.ops, rows=value.rows, type=value.type)


def _template_text(frame: pd.DataFrame, headers: list[str], text: str) -> pd.Series:
    """A reason text with ``{Header}`` references filled in per row."""
    by_fold = {h.casefold(): h for h in headers}
    result = pd.Series(np.full(len(frame), "", dtype=object), index=frame.index, dtype="str")
    last = 0
    for m in _TEMPLATE_RE.finditer(text):
        header = by_fold.get(m.group(1).casefold())
        result = result + text[last : m.start()]
        result = result + (frame[header].fillna("").astype("str").str.strip() if header else m.group(0))
        last = m.end()
    return result + text[last:]


def _resolve_orphans(p: _Prepared, item_keys: set[str]) -> None:
    """Variant rows whose item is not in the batch: their own item, or reported and left out."""
    variant = (p.key != p.item).to_numpy()
    if not variant.any():
        _finish(p)
        return
    missing = variant & ~p.item.isin(item_keys).to_numpy()
    if missing.any():
        if p.spec.item.orphans == "own_item":
            p.item = p.item.where(~missing, p.key)
        else:
            _note(p, missing, "", p.item.to_numpy(dtype=object), "variant of " + p.item + " which is not in this batch: not imported")
            keep = ~missing
            p.frame = p.frame.loc[keep].reset_index(drop=True)
            p.key = p.key[keep].reset_index(drop=True)
            p.item = p.item[keep].reset_index(drop=True)
    _finish(p)


def _finish(p: _Prepared) -> None:
    """Role of each row (the item row: the first row whose own key is its item) and fill-down."""
    frame = p.frame
    own = (p.key == p.item).to_numpy()
    first_own = own & ~pd.Series(p.item.where(own, "\x00")).duplicated().to_numpy()
    frame["__item__"] = p.item.to_numpy()
    frame["__is_item__"] = first_own
    frame["__own__"] = own
    # Continuation rows (same key as the item, after its first row) and variants take the
    # item's values of the fill-down columns when their own cell is empty.
    for column in p.spec.fill_down:
        for header in match_headers(column, p.table.headers):
            cells = frame[header].fillna("").astype("str")
            filled = cells.where(cells.str.strip() != "").groupby(frame["__item__"], sort=False).ffill()
            frame[header] = filled.fillna("").astype("str")


def _rows_mask(frame: pd.DataFrame, rows: str) -> np.ndarray:
    if rows == "item":
        return frame["__is_item__"].to_numpy()
    if rows == "variants":
        return ~frame["__is_item__"].to_numpy()
    return np.ones(len(frame), dtype=bool)


# --- Value operators --------------------------------------------------------------------------------


def strip_html(values: pd.Series) -> pd.Series:
    """HTML to text: tags removed (block ends become a space), entities unescaped, spaces collapsed."""
    has_markup = values.str.contains(r"[<&]", regex=True).to_numpy(dtype=bool)
    if not has_markup.any():
        return values
    text = values[has_markup].str.replace(r"<(?:br|/p|/div|/li|/h\d)\b[^>]*>", " ", regex=True, case=False)
    text = text.str.replace(_TAG_RE, "", regex=True)
    text = unescape(text)
    text = text.str.replace(r"[ \t\u00a0]+", " ", regex=True).str.replace(r"\s*\n\s*", "\n", regex=True).str.strip()
    return values.where(~has_markup, text)


def unescape(values: pd.Series) -> pd.Series:
    """HTML entities (``&amp;``, ``&nbsp;``, ``&#39;``) to characters; only cells with ``&`` are touched."""
    has_entity = values.str.contains("&", regex=False).to_numpy(dtype=bool)
    if not has_entity.any():
        return values
    return values.where(~has_entity, values[has_entity].map(html.unescape).astype("str"))


def split_values(values: pd.Series, separator: str) -> pd.Series:
    """Exploded values (index = row) split at ``separator`` (a backslash before the separator
    escapes it), trimmed, empty pieces dropped."""
    sep = separator.strip() or separator
    escaped = values.str.contains("\\", regex=False).to_numpy(dtype=bool, na_value=False)
    if escaped.any():
        pattern = rf"(?<!\\){re.escape(sep)}"
        pieces = pd.concat([values[~escaped].str.split(sep, regex=False), values[escaped].str.split(pattern, regex=True)]).sort_index(kind="stable")
        pieces = pieces.explode().fillna("").astype("str").str.replace("\\" + sep, sep, regex=False)
    else:
        pieces = values.str.split(sep, regex=False).explode().fillna("").astype("str")
    pieces = pieces.str.strip()
    return pieces[pieces != ""]


def _path(values: pd.Series, separator: str, keep: str) -> pd.Series:
    sep = separator.strip() or separator
    if keep == "leaf":
        return values.str.split(re.escape(sep), regex=True).str[-1].str.strip()
    if keep == "levels":
        return split_values(values, sep)
    # "Clothing>Hoodies", "Clothing /Hoodies/" -> "Clothing > Hoodies": one spacing, no empty levels.
    joined = values.str.replace(rf"\s*(?:{re.escape(sep)}\s*)+", f" {sep} ", regex=True)
    return joined.str.replace(rf"^\s*{re.escape(sep)}\s*|\s*{re.escape(sep)}\s*$", "", regex=True).str.strip()


def _apply_ops(p: _Prepared, frame: pd.DataFrame, cells: pd.Series, value: Value, column: str) -> tuple[pd.Series, pd.Series]:
    """Run a value's operator pipeline. Returns (values, units), aligned, index = row
    position (repeated after a ``split``); units are "" unless a ``unit`` operator ran.
    Empty values are dropped; cells an operator cannot read are reported and left out."""
    values = cells[cells != ""]
    units = pd.Series(np.full(len(values), "", dtype=object), index=values.index, dtype="str")
    for name, arg in value.ops:
        keep = None
        if name in ("trim", "pairs"):
            values = values.str.strip()
        elif name == "lower":
            values = values.str.lower()
        elif name == "upper":
            values = values.str.upper()
        elif name == "strip_html":
            values = strip_html(values)
        elif name == "unescape":
            values = unescape(values)
        elif name == "split" or (name == "path" and arg["keep"] == "levels"):
            values = split_values(values, arg) if name == "split" else _path(values, arg["separator"], "levels")
            units = pd.Series(np.full(len(values), "", dtype=object), index=values.index, dtype="str")
        elif name == "path":
            values = _path(values, arg["separator"], arg["keep"])
        elif name == "map":
            values = values.replace(arg)
        elif name == "extract":
            extracted = values.str.extract(arg, expand=False)
            keep = extracted.notna().to_numpy()
            _note_values(p, frame, values, ~keep, column, f"does not match {arg!r}: left out")
            values = extracted.where(keep, "").astype("str").str.strip()
        elif name == "boolean":
            folded = values.str.strip().str.casefold()
            is_true = folded.isin(arg["true"]).to_numpy()
            keep = is_true | folded.isin(arg["false"]).to_numpy()
            words = ", ".join(arg["true"] + arg["false"])
            _note_values(p, frame, values, ~keep, column, f"not a declared true/false word ({words}): left out")
            values = pd.Series(np.where(is_true, "true", "false"), index=values.index, dtype="str")
        elif name == "number":
            numbers, keep = _numbers(values, p.spec)
            _note_values(p, frame, values, ~keep, column, "not a number: left out")
            values = numbers
        elif name == "unit":
            if arg["from"] == "column":
                found = match_headers(arg["column"], p.table.headers)
                unit_cells = frame[found[0]].fillna("").astype("str").str.strip().to_numpy() if found else None
                numbers = values
                unit_values = pd.Series(
                    unit_cells[values.index.to_numpy()] if unit_cells is not None else np.full(len(values), "", dtype=object),
                    index=values.index,
                    dtype="str",
                )
            else:
                parts = values.str.extract(r"^\s*([+-]?(?:\d[\d.,' ]*|[.,]\d+))\s*([^\d\s].*?)?\s*$")
                numbers = parts[0].fillna(values).astype("str").str.strip()
                unit_values = parts[1].fillna("").astype("str")
            unit_values = unit_values.where(unit_values != "", arg.get("default", ""))
            numbers, keep = _numbers(numbers, p.spec)
            _note_values(p, frame, values, ~keep, column, "not a number with a unit: left out")
            values, units = numbers, unit_values
        if keep is not None:
            values, units = values[keep], units[keep]
        present = (values != "").to_numpy()
        values, units = values[present], units[present]
    return values, units


def _numbers(values: pd.Series, spec: InputSpec) -> tuple[pd.Series, np.ndarray]:
    """Numbers in plain form (``.5`` -> ``0.5``, grouping removed); mask of readable ones.
    Grouping counts only between threes of digits of the integer part (``1,2`` is not 12)."""
    text = values.str.strip().str.replace(r"\s+", " ", regex=True)
    ok = np.ones(len(text), dtype=bool)
    if spec.thousands:
        grouped = text.str.contains(spec.thousands, regex=False).to_numpy(dtype=bool)
        point = re.escape(spec.decimal)
        pattern = rf"[+-]?\d{{1,3}}(?:{re.escape(spec.thousands)}\d{{3}})+(?:{point}\d*)?"
        ok &= ~grouped | text.str.fullmatch(pattern).to_numpy(dtype=bool, na_value=False)
        text = text.str.replace(spec.thousands, "", regex=False)
    if spec.decimal == ",":
        text = text.str.replace(".", "..", regex=False).str.replace(",", ".", regex=False)
    elif spec.decimal == "auto":
        # The shop's own decimal separator (WooCommerce writes "1299,99" in a shop set to ","):
        # the last of . and , is the decimal point, as for the canonical sources.
        from threekit_pipeline.transform.core import normalise_decimals

        text = normalise_decimals(text, "auto", None)
    ok &= text.str.fullmatch(_NUMBER_RE).to_numpy(dtype=bool, na_value=False)
    # Plain form, touching only the cells that need it (".5", "+3", "7.", "007").
    odd = text.str.match(r"[+-]?\.|\+|-?0\d").to_numpy(dtype=bool, na_value=False) | text.str.endswith(".").to_numpy(dtype=bool, na_value=False)
    if odd.any():
        fixed = text[odd].str.replace(r"^([+-]?)\.", r"\g<1>0.", regex=True).str.replace(r"^\+", "", regex=True)
        fixed = fixed.str.replace(r"\.$", "", regex=True).str.replace(r"^(-?)0+(?=\d)", r"\1", regex=True)
        text = text.copy()
        text[odd] = fixed
    return text, ok


def _note_values(p: _Prepared, frame: pd.DataFrame, values: pd.Series, bad: np.ndarray, column: str, reason: str) -> None:
    if not bad.any():
        return
    rows = values.index.to_numpy()[bad]
    count = len(rows)
    p.notes.append(
        pd.DataFrame(
            {
                "file": [p.name] * count,
                "line": pd.array(frame[LINE_COLUMN].to_numpy()[rows], dtype="Int64"),
                "column": [column] * count,
                "value": values.to_numpy(dtype=object)[bad],
                "reason": [f"{reason} (SKU {s})" for s in frame["__item__"].to_numpy()[rows]],
            }
        )
    )


def _apply_scalar_ops(p: _Prepared, cells: pd.Series, value: Value, column: str) -> pd.Series:
    if not value.ops:
        return cells
    frame = p.frame if len(p.frame) == len(cells) else cells.to_frame()
    if "__item__" not in frame.columns:
        frame = frame.assign(__item__="")
    values, _ = _apply_ops(p, frame, cells, value, column)
    out = pd.Series(np.full(len(cells), "", dtype=object), index=cells.index, dtype="str")
    first = values[~values.index.duplicated()]
    out.loc[first.index] = first.to_numpy()
    return out


def join_groups(keys, values, separator: str) -> pd.Series:
    """Values joined per key (``{key: "a, b"}``), in order of appearance, each distinct
    (key, value) once. Vectorised: sorted by key, the separator prefixed to every value but
    a group's first, then one ``np.add.reduceat`` concatenation per group (no per-group
    pandas calls)."""
    frame = pd.DataFrame({"key": np.asarray(keys, dtype=object), "value": np.asarray(values, dtype=object)}).drop_duplicates()
    if not len(frame):
        return pd.Series(dtype="str")
    codes, uniques = pd.factorize(frame["key"])
    order = np.argsort(codes, kind="stable")
    codes = codes[order]
    texts = frame["value"].to_numpy(dtype=object)[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    later = np.ones(len(texts), dtype=bool)
    later[starts] = False
    if later.any():
        texts = texts.copy()
        texts[later] = separator + texts[later]
    joined = np.add.reduceat(texts, starts) if len(texts) else texts
    return pd.Series(joined, index=pd.Index(np.asarray(uniques, dtype=object)[codes[starts]]), dtype="str")


def _joined(values: pd.Series, n: int, separator: str) -> pd.Series:
    """Exploded values (index = row position) joined back per row, first occurrence kept."""
    out = pd.Series(np.full(n, "", dtype=object), dtype="str")
    if not len(values):
        return out
    if not values.index.has_duplicates:
        out.iloc[values.index.to_numpy()] = values.to_numpy()
        return out
    joined = join_groups(values.index.to_numpy(), values.to_numpy(), separator)
    out.iloc[joined.index.to_numpy(dtype=np.int64)] = joined.to_numpy()
    return out


def _column_label(value: Value) -> str:
    return ", ".join(value.columns) if value.columns else (value.template or "(constant)")


# --- Sources ----------------------------------------------------------------------------------------


def _table(p: _Prepared, data: dict[str, Any], lines: np.ndarray) -> RawTable:
    frame = pd.DataFrame({k: pd.Series(v, dtype="str").reset_index(drop=True) for k, v in data.items()})
    frame[LINE_COLUMN] = lines
    headers = list(data)
    return RawTable(name=p.name, headers=headers, frame=frame, encoding=p.table.encoding, separator=p.table.separator)


def _collect_item_metadata(p: _Prepared, spec: dict, collected: dict[str, pd.Series], item_keys: set[str]) -> None:
    frame, headers = p.frame, p.table.headers
    selected = _condition_mask(frame, headers, spec["where"])
    for key, value in spec["metadata"].items():
        cells = _cells(frame, headers, value).where(selected, "")
        values, _ = _apply_ops(p, frame, cells, value, _column_label(value))
        owners = frame["__item__"].to_numpy()[values.index.to_numpy()]
        joined = join_groups(owners, values.to_numpy(), ", ")
        previous = collected.get(key)
        collected[key] = joined if previous is None else pd.concat([previous, joined[~joined.index.isin(previous.index)]])


def _derive(p: _Prepared, collected: dict[str, pd.Series] | None = None) -> list[Derived]:
    result: list[Derived] = []
    for source, sspec in p.spec.sources.items():
        if source == "item_metadata":
            continue
        if source == "products":
            table, types = _products(p, sspec, collected or {})
        else:
            table, types = {"options": _options, "prices": _prices}[source](p, sspec)
        result.append(
            Derived(
                p.name,
                p.input_name,
                source,
                table,
                decimal=p.spec.decimal if source == "prices" else ".",
                thousands=p.spec.thousands if source == "prices" else None,
                max_error_ratio=p.spec.max_error_ratio,
                metadata_types=types,
            )
        )
    if p.notes and result:
        result[0].notes = pd.concat(p.notes, ignore_index=True)
    return result


def _expand_metadata(spec: dict, headers: list[str]) -> list[tuple[str, Value]]:
    """Metadata entries with ``{header}`` expanded: one per matching column that no other
    field uses and ``ignore`` does not list, named after its header."""
    used = {h for v in spec["columns"].values() for h in v.headers(headers)}
    used |= {h for k, v in spec["metadata"].items() if "{header}" not in k for h in v.headers(headers)}
    used |= {h for pattern in spec["ignore"] for h in match_headers(pattern, headers)}
    metadata: list[tuple[str, Value]] = []
    for key, value in spec["metadata"].items():
        if "{header}" in key:
            for header in value.headers(headers):
                if header not in used and not header.startswith("__"):
                    metadata.append((key.replace("{header}", header.strip()), Value(columns=(header,), ops=value.ops, rows=value.rows, type=value.type)))
        else:
            metadata.append((key, value))
    return metadata


def _local_spec(p: _Prepared, spec: dict) -> dict:
    return {
        **spec,
        "columns": {k: _localized(v, p.default_locale) for k, v in spec["columns"].items()},
        "metadata": {k: _localized(v, p.default_locale) for k, v in spec["metadata"].items()},
    }


def _collect_variant_metadata(p: _Prepared, collected: dict[str, pd.Series]) -> None:
    """Variant rows whose item row is in another file of the batch (Akeneo variant products
    of a model): their ``rows: variants|all`` metadata, for that item."""
    spec = p.spec.sources.get("products")
    if spec is None:
        return
    frame, headers = p.frame, p.table.headers
    own_items = set(frame.loc[frame["__is_item__"].to_numpy(), "__item__"].tolist())
    foreign = ~frame["__item__"].isin(own_items).to_numpy()
    if not foreign.any():
        return
    spec = _local_spec(p, spec)
    for key, value in _expand_metadata(spec, headers):
        if value.rows == "item" or "{" in key:
            continue
        cells = _cells(frame, headers, value).where(foreign, "")
        values, _ = _apply_ops(p, frame, cells, value, _column_label(value))
        owners = frame["__item__"].to_numpy()[values.index.to_numpy()]
        joined = join_groups(owners, values.to_numpy(), ", ")
        previous = collected.get(key)
        collected[key] = joined if previous is None else pd.concat([previous, joined[~joined.index.isin(previous.index)]])


def _products(p: _Prepared, spec: dict, collected: dict[str, pd.Series]) -> tuple[RawTable, dict[str, str]]:
    frame, headers = p.frame, p.table.headers
    spec = _local_spec(p, spec)
    selected = _rows_mask(frame, "item") & _condition_mask(frame, headers, spec["where"])
    # Duplicate item rows (a key seen twice, not as continuation) stay: the transform
    # reports them as duplicate SKUs.
    own_duplicates = frame["__own__"].to_numpy() & ~frame["__is_item__"].to_numpy() & _condition_mask(frame, headers, spec["where"])
    if p.spec.fill_down:
        own_duplicates[:] = False
    rows = np.flatnonzero(selected | own_duplicates)
    n = len(frame)
    data: dict[str, Any] = {"sku": frame["__item__"].to_numpy()[rows]}
    for field_name, value in spec["columns"].items():
        cells = _cells(frame, headers, value)
        values, _ = _apply_ops(p, frame, cells, value, _column_label(value))
        if field_name in ("tags", "keywords"):
            data[field_name] = _joined(values, n, LIST_SEPARATOR).to_numpy()[rows]
        else:
            data[field_name] = _joined(values[~values.index.duplicated()], n, "").to_numpy()[rows]
    types: dict[str, str] = {}
    item_position = pd.Series(np.arange(n), index=frame["__item__"].to_numpy())
    item_position = item_position[frame["__is_item__"].to_numpy()]
    for key, value in _expand_metadata(spec, headers):
        if "{key}" in key:
            # Packed "k=v,k2=v2" cells: one metadata entry per key ("{key}" in the name).
            pairs_op = dict(value.ops).get("pairs") or {"separator": ",", "assign": "="}
            cells = _cells(frame, headers, value).where(frame["__is_item__"].to_numpy(), "")
            cells = cells[cells != ""]
            pairs = _packed_pairs(cells, pairs_op["separator"], pairs_op["assign"])
            malformed = pairs["name"].isna().to_numpy() | (pairs["name"] == "").to_numpy()
            _note_values(p, frame, cells.loc[pairs.index[malformed]], np.ones(int(malformed.sum()), dtype=bool), _column_label(value), "not a key=value pair: left out")
            pairs = pairs[~malformed]
            if pairs_op.get("trailing"):
                pieces = pairs["value"].str.rsplit(pairs_op["assign"], n=pairs_op["trailing"])
                pairs = pairs.assign(value=pieces.str[0].astype("str").str.strip())
            for name in pd.unique(pairs["name"]):
                mkey = key.replace("{key}", str(name))
                if mkey.casefold() == "sku" or META_PREFIX + mkey in data:
                    continue
                chosen = pairs[(pairs["name"] == name).to_numpy()]["value"]
                data[META_PREFIX + mkey] = _joined(chosen[~chosen.index.duplicated()], n, "").to_numpy()[rows]
                types[mkey] = "String"
            continue
        if "{unit}" in key:
            # "Weight ({unit})": the unit the header carries ("Weight (lbs)").
            unit = ""
            for column in value.columns:
                for header in match_headers(column, headers):
                    unit = unit or (header_regex(column).fullmatch(header.strip()).groupdict().get("unit") or "")
            if not unit:
                continue
            key = key.replace("{unit}", unit.strip())
        cells = _cells(frame, headers, value)
        mask = _rows_mask(frame, value.rows)
        cells = cells.where(mask, "")
        values, units = _apply_ops(p, frame, cells, value, _column_label(value))
        if not len(values):
            continue
        if value.rows == "item":
            values = values[~values.index.duplicated()]
            units = units[~units.index.duplicated()]
            if (units != "").any():
                for unit in pd.unique(units[units != ""]):
                    ukey = f"{key} ({unit})"
                    data[META_PREFIX + ukey] = _joined(values[(units == unit).to_numpy()], n, "").to_numpy()[rows]
                    types[ukey] = "Number"
                values = values[(units == "").to_numpy()]
                if not len(values):
                    continue
            data[META_PREFIX + key] = _joined(values, n, "").to_numpy()[rows]
            types[key] = value.type or "String"
        else:
            # Collected over the item's rows: distinct values in file order, joined with ", ".
            owners = frame["__item__"].to_numpy()[values.index.to_numpy()]
            joined = join_groups(owners, values.to_numpy(), ", ")
            data[META_PREFIX + key] = pd.Series(frame["__item__"].to_numpy()[rows]).map(joined).fillna("").astype("str").to_numpy()
            types[key] = "String"
    list_keys = {k for k, v in _expand_metadata(spec, headers) if v.rows != "item"} | set(collected)
    skus = pd.Series(data["sku"])
    for key, joined in collected.items():
        more = skus.map(joined).fillna("").astype("str")
        if not (more != "").any():
            continue
        if META_PREFIX + key in data and types.get(key) == "String":
            # Values of this file's rows first, then those collected from the batch's other files.
            mine = pd.Series(data[META_PREFIX + key], dtype="str")
            both = (mine != "") & (more != "")
            data[META_PREFIX + key] = mine.where(~both, mine + ", " + more).where(mine != "", more).to_numpy()
        elif META_PREFIX + key not in data:
            data[META_PREFIX + key] = more.to_numpy()
            types[key] = "String"
    _split_long_lists(p, data, types, [k for k in list_keys if META_PREFIX + k in data])
    _drop_long_values(p, data, list(types), frame[LINE_COLUMN].to_numpy()[rows])
    return _table(p, data, frame[LINE_COLUMN].to_numpy()[rows]), types


def _drop_long_values(p: _Prepared, data: dict[str, Any], keys: list[str], lines: np.ndarray) -> None:
    """A metadata value longer than the transform accepts is listed and left out, so one
    long attribute text does not cost the whole product."""
    for key in keys:
        column = META_PREFIX + key
        if column not in data:
            continue
        values = pd.Series(data[column], dtype="str")
        long = (values.str.len() > p.meta_limit).to_numpy()
        if not long.any():
            continue
        count = int(long.sum())
        p.notes.append(
            pd.DataFrame(
                {
                    "file": [p.name] * count,
                    "line": pd.array(lines[long], dtype="Int64"),
                    "column": [key] * count,
                    "value": values[long].to_numpy(dtype=object),
                    "reason": [f"metadata {key} longer than {p.meta_limit} characters: left out (SKU {s})" for s in np.asarray(data["sku"])[long]],
                }
            )
        )
        data[column] = values.where(~long, "").to_numpy()


def _split_long_lists(p: _Prepared, data: dict[str, Any], types: dict[str, str], keys: list[str]) -> None:
    """Collected lists longer than a metadata value may be (a product with hundreds of
    variant SKUs) continue under ``Key (2)``, ``Key (3)``, ... instead of being cut or
    getting the product rejected."""
    limit = p.meta_limit
    for key in keys:
        values = pd.Series(data[META_PREFIX + key], dtype="str")
        long = np.flatnonzero((values.str.len() > limit).to_numpy())
        if not len(long):
            continue
        extra: dict[int, list[str]] = {}
        for row in long.tolist():  # rare: only the over-long cells
            chunks, current = [], ""
            for piece in values.iat[row].split(", "):
                candidate = f"{current}, {piece}" if current else piece
                if len(candidate) > limit and current:
                    chunks.append(current)
                    candidate = piece
                current = candidate
            chunks.append(current)
            values.iat[row] = chunks[0]
            for number, chunk in enumerate(chunks[1:], start=2):
                extra.setdefault(number, [""] * len(values))[row] = chunk
        data[META_PREFIX + key] = values.to_numpy()
        for number, column in sorted(extra.items()):
            data[META_PREFIX + f"{key} ({number})"] = np.asarray(column, dtype=object)
            types[f"{key} ({number})"] = "String"


def _options(p: _Prepared, spec: dict) -> tuple[RawTable, dict[str, str]]:
    frame, headers = p.frame, p.table.headers
    selected = _rows_mask(frame, spec["rows"]) & _condition_mask(frame, headers, spec["where"])
    kind = spec["kind"]
    parts: list[pd.DataFrame] = []  # row, order, attribute, value, explicit default
    if kind == "pairs":
        name_re = header_regex(spec["name"])
        numbers = sorted({int(m["n"]) for h in headers if (m := name_re.fullmatch(h.strip()))})
        for n in numbers:
            name_h = match_headers(spec["name"].replace("{n}", str(n)), headers)
            value_h = match_headers(spec["value"].replace("{n}", str(n)), headers)
            if not name_h or not value_h:
                continue
            names = frame[name_h[0]].fillna("").astype("str").str.strip()
            cells = frame[value_h[0]].fillna("").astype("str").str.strip()
            default_h = match_headers(spec["default"].replace("{n}", str(n)), headers) if spec["default"] else []
            defaults = frame[default_h[0]].fillna("").astype("str").str.strip() if default_h else None
            usable = selected & (names != "").to_numpy() & (cells != "").to_numpy()
            cells = cells[usable]
            values = split_values(cells, spec["split"]) if spec["split"] else cells
            if spec["skip_values"]:
                values = values[~values.isin(spec["skip_values"])]
            rows = values.index.to_numpy()
            explicit = np.zeros(len(rows), dtype=bool)
            if defaults is not None:
                explicit = (defaults.to_numpy()[rows] == values.to_numpy()) & (values.to_numpy() != "")
            parts.append(
                pd.DataFrame(
                    {"row": rows, "order": n, "attribute": names.to_numpy()[rows], "value": values.to_numpy(), "explicit": explicit, "column": value_h[0]}
                )
            )
    elif kind == "packed":
        names_h = match_headers(spec["names"][0], headers)
        values_h = match_headers(spec["values"][0], headers)
        if names_h and values_h:
            names = frame[names_h[0]].fillna("").astype("str").str.strip()
            cells = frame[values_h[0]].fillna("").astype("str").str.strip()
            usable = selected & ((names != "") | (cells != "")).to_numpy()
            name_items = _packed_items(names[usable], spec["split"], spec["names"][1])
            value_items = _packed_items(cells[usable], spec["split"], spec["values"][1])
            name_count = name_items.groupby(level=0).size()
            value_count = value_items.groupby(level=0).size()
            counts = pd.concat([name_count.rename("names"), value_count.rename("values")], axis=1).fillna(0)
            mismatch_rows = counts.index[(counts["names"] != counts["values"]).to_numpy()].to_numpy()
            bad = np.zeros(len(frame), dtype=bool)
            bad[mismatch_rows] = True
            broken = name_items.isna() | (name_items == "")
            broken_v = value_items.isna() | (value_items == "")
            bad[np.unique(name_items.index[broken.to_numpy()].to_numpy())] = True
            bad[np.unique(value_items.index[broken_v.to_numpy()].to_numpy())] = True
            label = f"{names_h[0]} / {values_h[0]}"
            reason = "combination cells cannot be paired (" + spec["names"][0] + " = '" + names + "', " + spec["values"][0] + " = '" + cells + "'): not imported (SKU " + frame["__item__"] + ")"
            _note(p, bad, label, cells.to_numpy(dtype=object), reason.to_numpy(dtype=object))
            ni = name_items[~np.isin(name_items.index.to_numpy(), np.flatnonzero(bad))]
            vi = value_items[~np.isin(value_items.index.to_numpy(), np.flatnonzero(bad))]
            position = ni.groupby(level=0).cumcount().to_numpy()
            parts.append(
                pd.DataFrame(
                    {"row": ni.index.to_numpy(), "order": position, "attribute": ni.to_numpy(), "value": vi.to_numpy(), "explicit": False, "column": values_h[0]}
                )
            )
    elif kind == "records":
        found = match_headers(spec["column"], headers)
        if found:
            cells = frame[found[0]].fillna("").astype("str")
            cells = cells[selected & (cells.str.strip() != "").to_numpy()]
            records = cells.str.split(re.escape(spec["records"]), regex=True).explode()
            records = records[records.astype("str").str.strip() != ""]
            pairs = _packed_pairs(records, spec["pairs"], spec["assign"])
            malformed = pairs["name"].isna().to_numpy() | (pairs["name"] == "").to_numpy()
            if malformed.any():
                bad_rows = np.zeros(len(frame), dtype=bool)
                bad_rows[np.unique(pairs.index.to_numpy()[malformed])] = True
                _note(p, bad_rows, found[0], frame[found[0]].to_numpy(dtype=object), "option record without name=value: part left out")
            pairs = pairs[~malformed & ~pairs["name"].isin(spec["identifier"]).to_numpy() & (pairs["value"] != "").to_numpy()]
            attribute = pairs["name"]
            if spec["labels"]:
                lh = match_headers(spec["labels"]["column"], headers)
                if lh:
                    label_cells = frame[lh[0]].fillna("").astype("str")
                    label_pairs = _packed_pairs(label_cells[label_cells.str.strip() != ""], spec["labels"]["pairs"], spec["labels"]["assign"])
                    label_pairs = label_pairs[label_pairs["name"].notna()]
                    keys = frame["__item__"].to_numpy()[label_pairs.index.to_numpy()] + "\x00" + label_pairs["name"].to_numpy().astype(object)
                    label_map = pd.Series(label_pairs["value"].to_numpy(), index=keys)
                    label_map = label_map[~label_map.index.duplicated()]
                    lookup = pd.Series(frame["__item__"].to_numpy()[pairs.index.to_numpy()] + "\x00" + attribute.to_numpy().astype(object))
                    labelled = lookup.map(label_map)
                    attribute = pd.Series(np.where(labelled.notna(), labelled.to_numpy(dtype=object), attribute.to_numpy(dtype=object)), index=pairs.index)
            parts.append(
                pd.DataFrame(
                    {"row": pairs.index.to_numpy(), "order": pairs.groupby(level=0).cumcount().to_numpy(), "attribute": attribute.to_numpy(), "value": pairs["value"].to_numpy(), "explicit": False, "column": found[0]}
                )
            )
    elif kind == "axes":
        # Variant axes: the candidate columns whose values differ between the rows rolled
        # into one item (Akeneo: the variant products of a product model).
        ignored = {h for pattern in spec["ignore"] for h in match_headers(pattern, headers)}
        candidates = [h for c in spec["columns"] for h in match_headers(c, headers) if h not in ignored and not h.startswith("__")]
        candidates = list(dict.fromkeys(candidates))
        if candidates:
            sub = frame.loc[selected, candidates].fillna("").astype("str")
            owners = frame.loc[selected, "__item__"]
            distinct = sub.where(sub.apply(lambda column: column.str.strip()) != "").groupby(owners.to_numpy(), sort=False).nunique()
            for order, header in enumerate(candidates):
                axis_items = distinct.index[(distinct[header] > 1).to_numpy()]
                if not len(axis_items):
                    continue
                use = selected & frame["__item__"].isin(axis_items).to_numpy()
                cells = frame[header].fillna("").astype("str").str.strip()[use]
                cells = cells[cells != ""]
                values = split_values(cells, spec["split"]) if spec["split"] else cells
                parts.append(
                    pd.DataFrame(
                        {"row": values.index.to_numpy(), "order": order, "attribute": header, "value": values.to_numpy(), "explicit": False, "column": header}
                    )
                )
    else:
        for order, (attribute, value) in enumerate(spec["columns"].items()):
            cells = _cells(frame, headers, value).where(selected, "")
            values, _ = _apply_ops(p, frame, cells, value, _column_label(value))
            values = values[values != ""]
            parts.append(
                pd.DataFrame(
                    {"row": values.index.to_numpy(), "order": order, "attribute": attribute, "value": values.to_numpy(), "explicit": False, "column": _column_label(value)}
                )
            )
    long = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["row", "order", "attribute", "value", "explicit", "column"])
    long = long.astype({"row": np.int64, "order": np.int64, "explicit": bool})
    long["attribute"] = long["attribute"].astype("str").str.strip()
    long["value"] = long["value"].astype("str").str.strip()
    long = long[(long["value"] != "") & (long["attribute"] != "")]
    rows = long["row"].to_numpy()
    is_item = frame["__is_item__"].to_numpy()[rows]
    item = frame["__item__"].to_numpy()[rows]
    long["item"] = item
    # Default: the value a default column names, else the flagged default row's, else the
    # first variant row's, else the first value.
    priority = np.full(len(long), 3, dtype=np.int64)
    # Variant rows: rows rolled into an item, and the item row itself when the item spans
    # continuation rows of its own key (Shopify: the first row is the first variant).
    continued = pd.Series(frame["__own__"].to_numpy()).groupby(frame["__item__"].to_numpy()).transform("sum").to_numpy() > 1
    priority[~is_item | continued[rows]] = 2
    if spec.get("default_row"):
        column, words = spec["default_row"]
        found = match_headers(column, headers)
        if found:
            flagged = frame[found[0]].fillna("").astype("str").str.strip().isin(words).to_numpy()[rows]
            priority[flagged] = 1
    priority[long["explicit"].to_numpy()] = 0
    long["priority"] = priority
    # Values in order: the item row's first, then the variants' in file order.
    long["item_first"] = ~is_item
    long = long.sort_values(["item_first", "row", "order"], kind="stable")
    long["default"] = False
    if len(long):
        candidates = long[long["priority"] < 3]
        if len(candidates):
            best = candidates.sort_values(["priority"], kind="stable").drop_duplicates(["item", "attribute"])
            long.loc[best.index, "default"] = True
    data = {
        "sku": long["item"].to_numpy(),
        "attribute": long["attribute"].to_numpy(),
        "value": long["value"].to_numpy(),
        "default": np.where(long["default"].to_numpy(), "true", "false"),
    }
    table = _table(p, data, frame[LINE_COLUMN].to_numpy()[long["row"].to_numpy()])
    return table, {}


def _packed_items(cells: pd.Series, separator: str, trailing_fields: int) -> pd.Series:
    """``"Color:color:0, Size:select:1"`` -> exploded ``Color``, ``Size`` (index = row): the
    first field of each item, counting ``trailing_fields`` ``:``-fields from the right, so the
    first field may itself contain ``:``. NaN where an item has too few fields."""
    items = cells.str.split(re.escape(separator.strip() or separator), regex=True).explode().astype("str").str.strip()
    items = items[items != ""]
    if trailing_fields == 0:
        return items
    pieces = items.str.rsplit(":", n=trailing_fields)
    ok = pieces.str.len() == trailing_fields + 1
    first = pieces.str[0].astype("str").str.strip()
    return first.where(ok.to_numpy(), np.nan)


def _packed_pairs(records: pd.Series, pairs: str, assign: str) -> pd.DataFrame:
    """``"k=v,k2=v2"`` per record -> rows (index = source row) with name and value
    (name NaN where a piece has no ``assign``)."""
    pieces = records.astype("str").str.split(re.escape(pairs), regex=True).explode().astype("str").str.strip()
    pieces = pieces[pieces != ""]
    split = pieces.str.split(re.escape(assign), n=1, regex=True)
    has = split.str.len() == 2
    names = split.str[0].astype("str").str.strip().where(has.to_numpy(), np.nan)
    values = split.str[1].where(has.to_numpy(), "").fillna("").astype("str").str.strip()
    return pd.DataFrame({"name": names, "value": values}, index=pieces.index)


def _prices(p: _Prepared, spec: dict) -> tuple[RawTable, dict[str, str]]:
    frame, headers = p.frame, p.table.headers
    selected = _rows_mask(frame, spec["rows"]) & _condition_mask(frame, headers, spec["where"])
    parts = []
    for order, entry in enumerate(spec["columns"]):
        regex = header_regex(entry["column"])
        for header in match_headers(entry["column"], headers):
            match = regex.fullmatch(header.strip())
            header_currency = (match.groupdict().get("currency") or "").upper() if match else ""
            cells = frame[header].fillna("").astype("str").str.strip()
            usable = selected & (cells != "").to_numpy()
            rows = np.flatnonzero(usable)
            part = pd.DataFrame(
                {
                    "row": rows,
                    "order": order,
                    "column": header,
                    "pricebook": entry["pricebook"],
                    "raw": cells.to_numpy()[rows],
                    "currency": header_currency or "",
                    "label": "",
                }
            )
            if entry["currency_column"]:
                # "All Websites [USD]": the currency named in another column of the row.
                found = match_headers(entry["currency_column"], headers)
                if found:
                    part["label"] = frame[found[0]].fillna("").astype("str").str.strip().to_numpy()[rows]
            if entry["tier_quantity"]:
                qh = match_headers(entry["tier_quantity"], headers)
                quantity = frame[qh[0]].fillna("").astype("str").str.strip().to_numpy()[rows] if qh else np.full(len(rows), "")
                tiered = (quantity != "") & (quantity != "1")
                if spec["tiers"] == "report":
                    bad = np.zeros(len(frame), dtype=bool)
                    bad[rows[tiered]] = True
                    _note(p, bad, header, cells.to_numpy(dtype=object), "tier price for quantity " + frame[qh[0]].astype("str") + " is not represented (SKU " + frame["__item__"] + ")")
                    part = part[~tiered]
                else:
                    part.loc[tiered, "pricebook"] = pd.Series(quantity[tiered]).map(lambda q: spec["tiers"]["pricebook"].replace("{qty}", q)).to_numpy()
            parts.append(part)
    long = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["row", "order", "column", "pricebook", "raw", "currency", "label"])
    long = long.astype({"row": np.int64, "order": np.int64})
    raw = long["raw"].astype("str")
    # Currency written in the cell: an ISO code ("19.99 USD", "[USD]") or a declared symbol ("$19.99").
    code = raw.str.extract(r"\[(" + _ISO_CODE_RE + r")\]|(?:^|\s)(" + _ISO_CODE_RE + r")(?:\s|$)")
    in_cell = code[0].fillna(code[1]).fillna("").astype("str")
    labels = long["label"].fillna("").astype("str") if "label" in long else pd.Series([""] * len(long), dtype="str")
    label_code = labels.str.extract(r"\[(" + _ISO_CODE_RE + r")\]|(?:^|\s)(" + _ISO_CODE_RE + r")(?:\s|$)")
    in_cell = in_cell.where(in_cell != "", label_code[0].fillna(label_code[1]).fillna("").astype("str"))
    amount = raw.str.strip()
    coded = (in_cell != "").to_numpy()
    if coded.any():
        amount = amount.copy()
        amount[coded] = raw[coded].str.replace(r"\[" + _ISO_CODE_RE + r"\]|(?:^|\s)" + _ISO_CODE_RE + r"(?=\s|$)", "", regex=True).str.strip()
    for symbol, iso in spec["currency_symbols"].items():
        has = amount.str.contains(symbol, regex=False).to_numpy()
        in_cell = in_cell.where(~(has & (in_cell == "").to_numpy()), iso)
        amount = amount.str.replace(symbol, "", regex=False).str.strip()
    currency = long["currency"].astype("str").where(long["currency"] != "", in_cell)
    currency = currency.where(currency != "", spec["currency"] or "")
    long["currency"] = currency.str.upper()
    long["price"] = amount
    rows = long["row"].to_numpy()
    long["item"] = frame["__item__"].to_numpy()[rows]
    long["is_item"] = frame["__is_item__"].to_numpy()[rows]
    # One amount per item, pricebook and currency: the item row's, else the first variant's
    # (or the lowest, with choose: min). Other variants' differing amounts are reported.
    numbers, readable = _numbers(long["price"].astype("str"), p.spec)
    long["number"] = pd.to_numeric(numbers.where(readable, ""), errors="coerce")
    order_keys = ["item", "pricebook", "currency"]
    if spec["choose"] == "min":
        ranked = long.assign(rank=np.where(long["is_item"], 0, 1)).sort_values(["rank", "number", "row"], kind="stable", na_position="last")
    else:
        ranked = long.assign(rank=np.where(long["is_item"], 0, 1)).sort_values(["rank", "row", "order"], kind="stable")
    # The item's first price column picks the row its amounts come from (the anchor); the
    # other pricebooks (a sale or compare-at price) are taken from that same row (or the item's
    # own row) only, so a regular price and another variant's sale price are never mixed.
    first_order = long.groupby("item")["order"].transform("min")
    base = ranked[(ranked["order"] == first_order.loc[ranked.index]) & ranked["number"].notna()]
    anchor = long["item"].map(base.drop_duplicates("item").set_index("item")["row"])
    eligible = (long["order"] <= first_order) | (long["row"] == anchor) | anchor.isna() | long["is_item"].astype(bool)
    chosen = ranked[eligible.loc[ranked.index]].drop_duplicates(order_keys)
    chosen_number = long[order_keys].merge(chosen[[*order_keys, "number", "price"]], on=order_keys, how="left")
    differs = (long["number"].to_numpy() != chosen_number["number"].to_numpy()) & long["number"].notna().to_numpy() & chosen_number["number"].notna().to_numpy()
    # A variant's sale price where the anchor row has none: listed, not taken.
    stray = ~eligible.to_numpy() & chosen_number["number"].isna().to_numpy() & long["number"].notna().to_numpy()
    if differs.any() or stray.any():
        # One entry per price cell (a row may differ in its regular and its sale price).
        d = long[differs | stray]
        item_price = chosen_number["price"][differs | stray].fillna("").astype("str").to_numpy(dtype=object)
        reason = np.where(
            stray[differs | stray],
            "variant price " + d["price"] + " " + d["currency"] + " (" + d["pricebook"] + ") is not taken: the item's prices come from another variant, which has none in "
            + d["pricebook"] + "; per-variant prices are not represented (SKU " + d["item"] + ")",
            "variant price " + d["price"] + " " + d["currency"] + " (" + d["pricebook"] + ") differs from the item's "
            + item_price + ": per-variant prices are not represented (SKU " + d["item"] + ")",
        )
        p.notes.append(
            pd.DataFrame(
                {
                    "file": np.full(len(d), p.name, dtype=object),
                    "line": pd.array(frame[LINE_COLUMN].to_numpy()[d["row"].to_numpy()], dtype="Int64"),
                    "column": d["column"].to_numpy(dtype=object),
                    "value": d["raw"].astype("str").to_numpy(dtype=object),
                    "reason": reason.astype(object),
                }
            )
        )
    chosen = chosen.sort_values("row", kind="stable")
    data = {
        "sku": chosen["item"].to_numpy(),
        "pricebook": chosen["pricebook"].to_numpy(),
        "currency": chosen["currency"].to_numpy(),
        "price": chosen["price"].to_numpy(),
    }
    return _table(p, data, frame[LINE_COLUMN].to_numpy()[chosen["row"].to_numpy()]), {}


# --- Translations -----------------------------------------------------------------------------------


def _translations(p: _Prepared) -> pd.DataFrame | None:
    """``Canonical Name`` (the default-locale text) + one column per other locale, from the
    item rows' per-locale columns."""
    from threekit_pipeline.transform.translations import normalise_locale

    spec = p.spec.translations
    frame, headers = p.frame, p.table.headers
    item_rows = frame["__is_item__"].to_numpy()
    default = p.default_locale.casefold()
    out: list[pd.DataFrame] = []
    for value in spec["fields"].values():
        by_locale: dict[str, pd.Series] = {}
        for column in value.columns:
            regex = header_regex(column)
            for header in match_headers(column, headers):
                locale = regex.fullmatch(header.strip())["locale"]
                cells = frame[header].fillna("").astype("str").str.strip()
                if value.ops:
                    cells = _apply_scalar_ops(p, cells, Value(ops=value.ops), header)
                previous = by_locale.get(locale.casefold())
                by_locale[locale.casefold()] = cells if previous is None else previous.where(previous != "", cells)
        if default not in by_locale:
            continue
        canonical = by_locale.pop(default)
        keep = item_rows & (canonical != "").to_numpy()
        if not keep.any() or not by_locale:
            continue
        translated = np.zeros(len(frame), dtype=bool)
        for cells in by_locale.values():
            translated |= (cells != "").to_numpy()
        keep &= translated
        if not keep.any():
            continue
        data = {"Canonical Name": canonical[keep].to_numpy()}
        for locale, cells in by_locale.items():
            data[normalise_locale(locale) or locale] = cells[keep].to_numpy()
        out.append(pd.DataFrame(data))
    if not out:
        return None
    return pd.concat(out, ignore_index=True).fillna("")


def write_translations(path: Path, frames: list[pd.DataFrame]) -> int:
    """Write ``Canonical Name`` + locale columns (all fields quoted, first occurrence of a
    name kept) for the translations upload; returns the number of rows."""
    import csv

    from threekit_pipeline.transform.errors import atomic_write

    frame = pd.concat(frames, ignore_index=True).fillna("")
    frame = frame.drop_duplicates(subset=["Canonical Name"], keep="first")
    columns = ["Canonical Name", *sorted(c for c in frame.columns if c != "Canonical Name")]
    with atomic_write(path, newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(columns)
        writer.writerows(frame[columns].itertuples(index=False, name=None))
    return len(frame)
