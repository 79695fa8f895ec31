"""JSON Schema of one Threekit product import entry ``{query, product}`` and two validators.

The schema follows the documented ``importReqBody`` (``files.query`` / ``files.product``):
query by id, name or metadata; product with name, type, description, keywords, tags,
asset, metadata (``String``/``Number``) and attributes (``String``, ``Asset`` part
references to ``#tag`` or ``{assetId}``, ``Pricing`` per pricebook and currency,
``Number``). It is stricter than the documentation where the documentation leaves room
for mistakes the importer would only report later: unknown keys, empty names, metadata
types other than String/Number, currency codes that are not three upper-case letters,
negative or non-finite prices.

* :func:`validate_entry` checks with ``jsonschema`` (the reference).
* :func:`check_entry` is a hand-written equivalent, fast enough to run on every entry of
  a 200,000-product batch; tests assert both accept and reject the same entries. It first
  tries :func:`quick_valid` (the shapes the transform emits, declared as msgspec Structs and
  checked in C; it only ever answers "certainly valid"), then a plain-Python walk of the
  whole schema that gives the verdict and the messages.
"""

from __future__ import annotations

import math
import re
import sys
from functools import lru_cache
from typing import Annotated, Any, Literal

import msgspec

_TEXT = {"type": "string", "minLength": 1}
_ANY_TEXT = {"type": "string"}

_METADATA_ITEM = {
    "type": "object",
    "required": ["name", "type", "defaultValue"],
    "additionalProperties": False,
    "properties": {
        "name": _TEXT,
        "type": {"enum": ["String", "Number"]},
        "defaultValue": {"type": ["string", "number"]},
    },
    "allOf": [
        {
            "if": {"properties": {"type": {"const": "Number"}}},
            "then": {"properties": {"defaultValue": {"type": "number"}}},
        },
        {
            "if": {"properties": {"type": {"const": "String"}}},
            "then": {"properties": {"defaultValue": {"type": "string"}}},
        },
    ],
}

_ASSET_REFERENCE = {
    "anyOf": [
        {"type": "string", "pattern": "^#."},
        {
            "type": "object",
            "required": ["assetId"],
            "additionalProperties": False,
            "properties": {"assetId": _TEXT},
        },
    ]
}

_STRING_ATTRIBUTE = {
    "type": "object",
    "required": ["type", "name", "values"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "String"},
        "name": _TEXT,
        "values": {"type": "array", "items": _TEXT},
        "defaultValue": _ANY_TEXT,
    },
}

_ASSET_ATTRIBUTE = {
    "type": "object",
    "required": ["type", "name", "assetType", "values"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "Asset"},
        "name": _TEXT,
        "assetType": _TEXT,
        "values": {"type": "array", "items": _ASSET_REFERENCE},
        "defaultValue": {
            "anyOf": [
                {"type": "string", "pattern": "^#."},
                {
                    "type": "object",
                    "required": ["assetId"],
                    "additionalProperties": False,
                    "properties": {"assetId": _ANY_TEXT},
                },
            ]
        },
    },
}

_PRICING_ATTRIBUTE = {
    "type": "object",
    "required": ["type", "name", "values"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "Pricing"},
        "name": _TEXT,
        "values": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["pricebook", "currencies"],
                "additionalProperties": False,
                "properties": {
                    "pricebook": _TEXT,
                    "currencies": {
                        "type": "object",
                        "propertyNames": {"pattern": "^[A-Z]{3}$"},
                        "additionalProperties": {"type": "number", "minimum": 0},
                    },
                },
            },
        },
        "defaultValue": {"type": "object"},
    },
}

_NUMBER_ATTRIBUTE = {
    "type": "object",
    "required": ["type", "name"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "Number"},
        "name": _TEXT,
        "step": {"type": "number"},
        "lockToStep": {"type": "boolean"},
        "defaultValue": {"type": "number"},
        "min": {"type": "number"},
        "max": {"type": "number"},
    },
}

_ATTRIBUTE_SCHEMAS = {
    "String": _STRING_ATTRIBUTE,
    "Asset": _ASSET_ATTRIBUTE,
    "Pricing": _PRICING_ATTRIBUTE,
    "Number": _NUMBER_ATTRIBUTE,
}

_ATTRIBUTE = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": list(_ATTRIBUTE_SCHEMAS)}},
    "allOf": [
        {"if": {"properties": {"type": {"const": name}}, "required": ["type"]}, "then": schema}
        for name, schema in _ATTRIBUTE_SCHEMAS.items()
    ],
}

_RULE = {
    "type": "object",
    "properties": {
        "name": _ANY_TEXT,
        "conditions": {"type": "array", "items": {"type": "object", "required": ["operator"]}},
        "actions": {"type": "array", "items": {"type": "object", "required": ["type"]}},
    },
}

PRODUCT_TYPES = ("item", "model", "material", "scene")

ENTRY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Threekit product import entry (one element of files in importReqBody)",
    "type": "object",
    "required": ["product"],
    "additionalProperties": False,
    "properties": {
        "query": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "id": _TEXT,
                "name": _TEXT,
                "metadata": {"type": "array", "minItems": 1, "items": _METADATA_ITEM},
            },
        },
        "product": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": _TEXT,
                "assetId": _TEXT,
                "asset": {
                    "type": "object",
                    "required": ["assetId"],
                    "additionalProperties": False,
                    "properties": {"assetId": _TEXT, "configuration": {"type": "object"}, "type": _TEXT},
                },
                "type": {"enum": list(PRODUCT_TYPES)},
                "parentFolderId": _TEXT,
                "description": _ANY_TEXT,
                "keywords": {"type": "array", "items": _TEXT},
                "tags": {"type": "array", "items": _TEXT},
                "metadata": {"type": "array", "items": _METADATA_ITEM},
                "attributes": {"type": "array", "items": _ATTRIBUTE},
                "rules": {"type": "array", "items": {"anyOf": [_RULE, {"type": "array", "items": _RULE}]}},
            },
        },
    },
}


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(ENTRY_SCHEMA)
    return jsonschema.Draft202012Validator(ENTRY_SCHEMA)


def _non_finite_paths(value: Any, path: str = "$") -> list[str]:
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{path}: non-finite number {value!r} is not valid JSON"]
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            found.extend(_non_finite_paths(item, f"{path}.{key}"))
        return found
    if isinstance(value, list):
        found = []
        for index, item in enumerate(value):
            found.extend(_non_finite_paths(item, f"{path}[{index}]"))
        return found
    return []


def validate_entry(entry: Any) -> list[str]:
    """Errors of one entry against :data:`ENTRY_SCHEMA` (jsonschema); empty when valid."""
    errors = [
        f"{error.json_path}: {error.message}"
        for error in sorted(_validator().iter_errors(entry), key=lambda e: list(e.absolute_path))
    ]
    return errors + _non_finite_paths(entry)


# --- Fast checker ----------------------------------------------------------------------------

# Same pattern and matching as the schema's propertyNames (re.search, "$" before a final "\n").
_CURRENCY_KEY = re.compile(r"^[A-Z]{3}$").search


def _is_number(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, float)


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _tag(value: Any) -> bool:
    # Same as the schema pattern "^#." under Python's re.search ("." excludes only "\n").
    return isinstance(value, str) and len(value) >= 2 and value[0] == "#" and value[1] != "\n"


def _check_metadata(items: Any, where: str, errors: list[str], *, min_items: int = 0) -> None:
    if not isinstance(items, list):
        errors.append(f"{where}: must be an array")
        return
    if len(items) < min_items:
        errors.append(f"{where}: must not be empty")
    for index, item in enumerate(items):
        here = f"{where}[{index}]"
        if not isinstance(item, dict):
            errors.append(f"{here}: must be an object")
            continue
        if item.keys() - {"name", "type", "defaultValue"}:
            errors.append(f"{here}: unknown keys {sorted(item.keys() - {'name', 'type', 'defaultValue'})}")
        if "name" not in item or "type" not in item or "defaultValue" not in item:
            errors.append(f"{here}: name, type and defaultValue are required")
        if "name" in item and not _text(item["name"]):
            errors.append(f"{here}.name: must be a non-empty string")
        kind = item.get("type")
        if "type" in item and kind not in ("String", "Number"):
            errors.append(f"{here}.type: must be String or Number")
        if "defaultValue" in item:
            value = item["defaultValue"]
            if not (isinstance(value, str) or _is_number(value)):
                errors.append(f"{here}.defaultValue: must be a string or a number")
            elif kind == "Number" and not _is_number(value):
                errors.append(f"{here}.defaultValue: must be a number for Number metadata")
            elif kind == "String" and not isinstance(value, str):
                errors.append(f"{here}.defaultValue: must be a string for String metadata")
            elif isinstance(value, float) and not math.isfinite(value):
                errors.append(f"{here}.defaultValue: must be finite")


def _check_text_list(items: Any, where: str, errors: list[str]) -> None:
    if not isinstance(items, list):
        errors.append(f"{where}: must be an array")
    elif not all(_text(v) for v in items):
        errors.append(f"{where}: every item must be a non-empty string")


def _check_attribute(attribute: Any, where: str, errors: list[str]) -> None:
    if not isinstance(attribute, dict):
        errors.append(f"{where}: must be an object")
        return
    if "type" not in attribute:
        errors.append(f"{where}.type: required")
        return
    kind = attribute["type"]
    schema = _ATTRIBUTE_SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        errors.append(f"{where}.type: must be one of {', '.join(_ATTRIBUTE_SCHEMAS)}")
        return
    allowed = schema["properties"].keys()
    extra = attribute.keys() - allowed
    if extra:
        errors.append(f"{where}: unknown keys {sorted(extra)} for a {kind} attribute")
    missing = [key for key in schema["required"] if key not in attribute]
    if missing:
        errors.append(f"{where}: missing {', '.join(missing)}")
    if "name" in attribute and not _text(attribute["name"]):
        errors.append(f"{where}.name: must be a non-empty string")

    if kind == "String":
        if "values" in attribute:
            _check_text_list(attribute["values"], f"{where}.values", errors)
        if "defaultValue" in attribute and not isinstance(attribute["defaultValue"], str):
            errors.append(f"{where}.defaultValue: must be a string")
    elif kind == "Asset":
        if "assetType" in attribute and not _text(attribute["assetType"]):
            errors.append(f"{where}.assetType: must be a non-empty string")
        values = attribute.get("values", [])
        if not isinstance(values, list):
            errors.append(f"{where}.values: must be an array")
        else:
            for index, value in enumerate(values):
                if _tag(value):
                    continue
                if isinstance(value, dict) and value.keys() == {"assetId"} and _text(value["assetId"]):
                    continue
                errors.append(f"{where}.values[{index}]: must be '#tag' or {{'assetId': id}}")
        if "defaultValue" in attribute:
            value = attribute["defaultValue"]
            if not (
                _tag(value)
                or (isinstance(value, dict) and value.keys() == {"assetId"} and isinstance(value["assetId"], str))
            ):
                errors.append(f"{where}.defaultValue: must be '#tag' or {{'assetId': id}}")
    elif kind == "Pricing":
        values = attribute.get("values", [])
        if not isinstance(values, list):
            errors.append(f"{where}.values: must be an array")
        else:
            for index, value in enumerate(values):
                here = f"{where}.values[{index}]"
                if not isinstance(value, dict):
                    errors.append(f"{here}: must be an object")
                    continue
                if value.keys() - {"pricebook", "currencies"} or not value.keys() >= {"pricebook", "currencies"}:
                    errors.append(f"{here}: must have exactly pricebook and currencies")
                if "pricebook" in value and not _text(value["pricebook"]):
                    errors.append(f"{here}.pricebook: must be a non-empty string")
                currencies = value.get("currencies", {})
                if not isinstance(currencies, dict):
                    errors.append(f"{here}.currencies: must be an object")
                    continue
                for code, amount in currencies.items():
                    if not (isinstance(code, str) and _CURRENCY_KEY(code)):
                        errors.append(f"{here}.currencies: {code!r} is not a three-letter currency code")
                    if not _is_number(amount) or not amount >= 0 or not math.isfinite(amount):
                        errors.append(f"{here}.currencies.{code}: must be a finite number >= 0")
        if "defaultValue" in attribute:
            if not isinstance(attribute["defaultValue"], dict):
                errors.append(f"{where}.defaultValue: must be an object")
            elif not _finite(attribute["defaultValue"]):
                errors.append(f"{where}.defaultValue: non-finite number")
    else:  # Number
        for key in ("step", "defaultValue", "min", "max"):
            if key in attribute and (not _is_number(attribute[key]) or not math.isfinite(attribute[key])):
                errors.append(f"{where}.{key}: must be a finite number")
        if "lockToStep" in attribute and not isinstance(attribute["lockToStep"], bool):
            errors.append(f"{where}.lockToStep: must be true or false")


def _check_rule(rule: Any, where: str, errors: list[str]) -> None:
    if not isinstance(rule, dict):
        errors.append(f"{where}: must be an object")
        return
    if "name" in rule and not isinstance(rule["name"], str):
        errors.append(f"{where}.name: must be a string")
    for key, required in (("conditions", "operator"), ("actions", "type")):
        if key not in rule:
            continue
        items = rule[key]
        if not isinstance(items, list) or not all(isinstance(i, dict) and required in i for i in items):
            errors.append(f"{where}.{key}: must be an array of objects with {required!r}")
    if not _finite(rule):
        errors.append(f"{where}: non-finite number")


_PRODUCT_KEYS = frozenset(ENTRY_SCHEMA["properties"]["product"]["properties"])


# --- Fast path: the emitted shapes declared as msgspec Structs ---------------------------------
# msgspec checks a Python object against these types in C, about twice as fast as the best
# plain-Python walk. The Structs cover only the shapes the transform emits and are at least
# as strict as ENTRY_SCHEMA (unknown keys forbidden, non-empty strings, bounded numbers so
# NaN and infinity fail, no free-form objects): when they accept an entry, it is valid.
# Anything else (rules, Number attributes, configurations, ...) goes to the detailed
# checker below, which gives the verdict. The property tests compare check_entry with
# validate_entry on generated valid and broken entries.

_Text = Annotated[str, msgspec.Meta(min_length=1)]
_Finite = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
_Amount = Annotated[int, msgspec.Meta(ge=0)] | Annotated[float, msgspec.Meta(ge=0, le=sys.float_info.max)]


class _StringMetadata(msgspec.Struct, tag_field="type", tag="String", forbid_unknown_fields=True):
    name: _Text
    defaultValue: str


class _NumberMetadata(msgspec.Struct, tag_field="type", tag="Number", forbid_unknown_fields=True):
    name: _Text
    defaultValue: int | _Finite


_Metadata = _StringMetadata | _NumberMetadata


class _Query(msgspec.Struct, forbid_unknown_fields=True):
    id: _Text | msgspec.UnsetType = msgspec.UNSET
    name: _Text | msgspec.UnsetType = msgspec.UNSET
    metadata: Annotated[list[_Metadata], msgspec.Meta(min_length=1)] | msgspec.UnsetType = msgspec.UNSET


class _StringAttribute(msgspec.Struct, tag_field="type", tag="String", forbid_unknown_fields=True):
    name: _Text
    values: list[_Text]
    defaultValue: str | msgspec.UnsetType = msgspec.UNSET


class _AssetReference(msgspec.Struct, forbid_unknown_fields=True):
    assetId: _Text


class _AssetAttribute(msgspec.Struct, tag_field="type", tag="Asset", forbid_unknown_fields=True):
    name: _Text
    assetType: _Text
    values: list[Annotated[str, msgspec.Meta(pattern="^#.")] | _AssetReference]


class _PriceList(msgspec.Struct, forbid_unknown_fields=True):
    pricebook: _Text
    currencies: dict[Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")], _Amount]


class _PricingAttribute(msgspec.Struct, tag_field="type", tag="Pricing", forbid_unknown_fields=True):
    name: _Text
    values: list[_PriceList]
    defaultValue: Annotated[dict[str, Any], msgspec.Meta(max_length=0)] | msgspec.UnsetType = msgspec.UNSET


class _ModelAsset(msgspec.Struct, forbid_unknown_fields=True):
    assetId: _Text
    type: _Text | msgspec.UnsetType = msgspec.UNSET


class _Product(msgspec.Struct, forbid_unknown_fields=True):
    name: _Text | msgspec.UnsetType = msgspec.UNSET
    assetId: _Text | msgspec.UnsetType = msgspec.UNSET
    asset: _ModelAsset | msgspec.UnsetType = msgspec.UNSET
    type: Literal["item", "model", "material", "scene"] | msgspec.UnsetType = msgspec.UNSET
    parentFolderId: _Text | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    keywords: list[_Text] | msgspec.UnsetType = msgspec.UNSET
    tags: list[_Text] | msgspec.UnsetType = msgspec.UNSET
    metadata: list[_Metadata] | msgspec.UnsetType = msgspec.UNSET
    attributes: list[_StringAttribute | _AssetAttribute | _PricingAttribute] | msgspec.UnsetType = (
        msgspec.UNSET
    )


class _Entry(msgspec.Struct, forbid_unknown_fields=True):
    product: _Product
    query: _Query | msgspec.UnsetType = msgspec.UNSET


def quick_valid(entry: Any) -> bool:
    """True only when ``entry`` is certainly valid; False means "ask :func:`check_entry`"."""
    try:
        checked = msgspec.convert(entry, _Entry)
    except Exception:  # noqa: BLE001 - any failure only means "not certainly valid"
        return False
    query = checked.query
    # ENTRY_SCHEMA wants a query with at least one key; Structs cannot say so.
    return query is msgspec.UNSET or not (
        query.id is msgspec.UNSET and query.name is msgspec.UNSET and query.metadata is msgspec.UNSET
    )


def check_entry(entry: Any) -> list[str]:
    """Fast equivalent of :func:`validate_entry` (same verdict; shorter messages)."""
    if quick_valid(entry):
        return []
    errors: list[str] = []
    if not isinstance(entry, dict):
        return ["$: entry must be an object"]
    extra = entry.keys() - {"query", "product"}
    if extra:
        errors.append(f"$: unknown keys {sorted(extra)}")

    if "query" in entry:
        query = entry["query"]
        if not isinstance(query, dict):
            errors.append("$.query: must be an object")
        else:
            if not query:
                errors.append("$.query: must not be empty")
            if query.keys() - {"id", "name", "metadata"}:
                errors.append(f"$.query: unknown keys {sorted(query.keys() - {'id', 'name', 'metadata'})}")
            for key in ("id", "name"):
                if key in query and not _text(query[key]):
                    errors.append(f"$.query.{key}: must be a non-empty string")
            if "metadata" in query:
                _check_metadata(query["metadata"], "$.query.metadata", errors, min_items=1)

    if "product" not in entry:
        errors.append("$.product: required")
        return errors
    product = entry["product"]
    if not isinstance(product, dict):
        errors.append("$.product: must be an object")
        return errors
    extra = product.keys() - _PRODUCT_KEYS
    if extra:
        errors.append(f"$.product: unknown keys {sorted(extra)}")
    for key in ("name", "assetId", "parentFolderId"):
        if key in product and not _text(product[key]):
            errors.append(f"$.product.{key}: must be a non-empty string")
    if "description" in product and not isinstance(product["description"], str):
        errors.append("$.product.description: must be a string")
    if "type" in product and product["type"] not in PRODUCT_TYPES:
        errors.append(f"$.product.type: must be one of {', '.join(PRODUCT_TYPES)}")
    if "asset" in product:
        asset = product["asset"]
        if not isinstance(asset, dict):
            errors.append("$.product.asset: must be an object")
        else:
            if asset.keys() - {"assetId", "configuration", "type"}:
                errors.append("$.product.asset: unknown keys")
            if not _text(asset.get("assetId")):
                errors.append("$.product.asset.assetId: required non-empty string")
            if "type" in asset and not _text(asset["type"]):
                errors.append("$.product.asset.type: must be a non-empty string")
            if "configuration" in asset and (
                not isinstance(asset["configuration"], dict) or not _finite(asset["configuration"])
            ):
                errors.append("$.product.asset.configuration: must be an object")
    for key in ("keywords", "tags"):
        if key in product:
            _check_text_list(product[key], f"$.product.{key}", errors)
    if "metadata" in product:
        _check_metadata(product["metadata"], "$.product.metadata", errors)
    if "attributes" in product:
        attributes = product["attributes"]
        if not isinstance(attributes, list):
            errors.append("$.product.attributes: must be an array")
        else:
            for index, attribute in enumerate(attributes):
                _check_attribute(attribute, f"$.product.attributes[{index}]", errors)
    if "rules" in product:
        rules = product["rules"]
        if not isinstance(rules, list):
            errors.append("$.product.rules: must be an array")
        else:
            for index, rule in enumerate(rules):
                if isinstance(rule, list):
                    for inner, item in enumerate(rule):
                        _check_rule(item, f"$.product.rules[{index}][{inner}]", errors)
                else:
                    _check_rule(rule, f"$.product.rules[{index}]", errors)
    return errors
