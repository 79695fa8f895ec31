"""Catalog rules of the threekit-sandbox: validation of product-import entries, upsert
matching rules (answered by the store's indexes, :meth:`~.threekit_store.Store.match_item`),
merge semantics and the JSON shapes the API returns.

Documented behaviour (mirrors Threekit's product import API):

* An entry is ``{"query": {...}, "product": {...}}``. ``query`` selects the existing item by
  ``id``, ``name`` and/or ``metadata`` (the documented list form
  ``[{"name", "defaultValue", "type"}]`` or a ``{key: value}`` map); every given criterion
  must match. When several items match, the oldest one (first created) is updated. When
  the query is absent or empty, the item is matched by ``product.name``.
* No match creates a new item; its id is ``query.id`` when the query names one (so that an
  id-keyed import is repeatable), otherwise a new UUID.
* Updates merge: metadata and attributes merge by name (an entry's attribute replaces the
  stored attribute of the same name, others stay), every other field absent from the entry
  stays unchanged. Stored metadata is a flat ``{name: value}`` map; Number metadata is
  stored as a number.
"""

from __future__ import annotations

import copy
import json
import math
import uuid
from typing import Any

ATTRIBUTE_TYPES = ("Asset", "Number", "Pricing", "String")
METADATA_TYPES = {"string": "String", "number": "Number"}
ASSET_TYPES = ("item", "model", "material", "texture", "font", "vector", "scene", "folder", "composite")
# ``product.type`` of an import entry: the asset type the product becomes (reference section
# 4 shows ``type: "item"``; the asset listing's types are in section 5). Folders are not
# products.
PRODUCT_TYPES = tuple(t for t in ASSET_TYPES if t != "folder")
# Product fields with dedicated handling; every other product field is kept verbatim.
CORE_PRODUCT_FIELDS = {
    "name",
    "type",
    "description",
    "keywords",
    "tags",
    "metadata",
    "attributes",
    "rules",
    "orgId",
}


class EntryError(Exception):
    """One or more problems with an import entry; ``messages`` name entry and field."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def to_number(value: Any) -> int | float | None:
    """``value`` as a finite number (numeric strings accepted); None when not numeric."""
    if _is_number(value):
        return value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        return (
            int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
        )
    return None


def canonical_value(value: Any) -> str:
    """Comparison key for metadata values: 5, 5.0 and "5" are the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if value is None:
        return ""
    return str(value)


class _Validator:
    """Collects field-level problems of one entry with their paths."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.messages: list[str] = []

    def fail(self, path: str, reason: str) -> None:
        self.messages.append(f"entry {self.index}: {path}: {reason}")

    def string(self, value: Any, path: str, allow_empty: bool = True) -> bool:
        if not isinstance(value, str):
            self.fail(path, f"must be a string, not {_json_type(value)}")
            return False
        if not allow_empty and not value.strip():
            self.fail(path, "must be a non-empty string")
            return False
        return True

    def string_list(self, value: Any, path: str) -> bool:
        if not isinstance(value, list):
            self.fail(path, f"must be a list of strings, not {_json_type(value)}")
            return False
        ok = True
        for i, element in enumerate(value):
            if not isinstance(element, str):
                self.fail(f"{path}[{i}]", f"must be a string, not {_json_type(element)}")
                ok = False
        return ok


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _metadata_list(v: _Validator, value: Any, path: str, for_query: bool) -> dict[str, Any] | None:
    """Validate the documented metadata list form; return it as a flat map."""
    if not isinstance(value, list):
        v.fail(path, f"must be a list of {{name, defaultValue, type}} objects, not {_json_type(value)}")
        return None
    flat: dict[str, Any] = {}
    for i, element in enumerate(value):
        here = f"{path}[{i}]"
        if not isinstance(element, dict):
            v.fail(here, f"must be an object with name, defaultValue and type, not {_json_type(element)}")
            continue
        name = element.get("name")
        if name is None:
            v.fail(f"{here}.name", "is required")
            continue
        if not v.string(name, f"{here}.name", allow_empty=False):
            continue
        raw_type = element.get("type")
        default = element.get("defaultValue")
        if raw_type is None:
            kind = "Number" if _is_number(default) else "String"
        elif not isinstance(raw_type, str) or raw_type.lower() not in METADATA_TYPES:
            v.fail(f"{here}.type", f"must be String or Number, not {json.dumps(raw_type)}")
            continue
        else:
            kind = METADATA_TYPES[raw_type.lower()]
        if kind == "Number":
            if "defaultValue" not in element:
                v.fail(f"{here}.defaultValue", "is required for Number metadata")
                continue
            number = to_number(default)
            if number is None:
                v.fail(
                    f"{here}.defaultValue", f"must be numeric for Number metadata, not {json.dumps(default)}"
                )
                continue
            flat[name] = number
        else:
            if default is None and "defaultValue" not in element and not for_query:
                default = ""
            if not isinstance(default, str):
                v.fail(
                    f"{here}.defaultValue", f"must be a string for String metadata, not {_json_type(default)}"
                )
                continue
            flat[name] = default
    return flat


def _metadata_criteria(v: _Validator, value: Any, path: str) -> dict[str, Any] | None:
    if isinstance(value, dict):
        criteria = {}
        for key, element in value.items():
            if not key:
                v.fail(path, "metadata keys must be non-empty")
            elif element is not None and not isinstance(element, str | int | float | bool):
                v.fail(f"{path}.{key}", f"must be a string or a number, not {_json_type(element)}")
            else:
                criteria[key] = element
        return criteria
    return _metadata_list(v, value, path, for_query=True)


def _validate_asset_reference(v: _Validator, value: Any, path: str, allow_empty: bool) -> None:
    if isinstance(value, str):
        if not (value.startswith("#") and len(value) > 1):
            v.fail(path, f'must be {{"assetId": "..."}} or a "#tag" string, not {json.dumps(value)}')
    elif isinstance(value, dict):
        asset_id = value.get("assetId")
        if asset_id is None and allow_empty and not value:
            return
        if not isinstance(asset_id, str) or (not asset_id and not allow_empty):
            v.fail(path, f'must be {{"assetId": "..."}} or a "#tag" string, not {json.dumps(value)}')
    elif not (allow_empty and value is None):
        v.fail(path, f'must be {{"assetId": "..."}} or a "#tag" string, not {_json_type(value)}')


def _validate_attribute(v: _Validator, attribute: Any, path: str) -> dict[str, Any] | None:
    if not isinstance(attribute, dict):
        v.fail(path, f"must be an object, not {_json_type(attribute)}")
        return None
    before = len(v.messages)
    name = attribute.get("name")
    if name is None:
        v.fail(f"{path}.name", "is required")
    else:
        v.string(name, f"{path}.name", allow_empty=False)
    kind = attribute.get("type")
    if kind not in ATTRIBUTE_TYPES:
        v.fail(
            f"{path}.type",
            f"unknown attribute type {json.dumps(kind)} (allowed: {', '.join(ATTRIBUTE_TYPES)})",
        )
        return None
    values = attribute.get("values")
    if values is not None and not isinstance(values, list):
        v.fail(f"{path}.values", f"must be a list, not {_json_type(values)}")
        values = None
    default = attribute.get("defaultValue")
    if kind == "Number":
        for key in ("step", "min", "max"):
            if attribute.get(key) is not None and not _is_number(attribute[key]):
                v.fail(f"{path}.{key}", f"must be a number, not {_json_type(attribute[key])}")
        if "lockToStep" in attribute and not isinstance(attribute["lockToStep"], bool):
            v.fail(f"{path}.lockToStep", f"must be a boolean, not {_json_type(attribute['lockToStep'])}")
        if default is not None and not _is_number(default):
            v.fail(f"{path}.defaultValue", f"must be a number, not {_json_type(default)}")
        for i, element in enumerate(values or []):
            if not _is_number(element):
                v.fail(f"{path}.values[{i}]", f"must be a number, not {_json_type(element)}")
    elif kind == "String":
        for i, element in enumerate(values or []):
            if not isinstance(element, str):
                v.fail(f"{path}.values[{i}]", f"must be a string, not {_json_type(element)}")
        if default is not None and not isinstance(default, str):
            v.fail(f"{path}.defaultValue", f"must be a string, not {_json_type(default)}")
    elif kind == "Asset":
        if attribute.get("assetType") is not None and not isinstance(attribute["assetType"], str):
            v.fail(f"{path}.assetType", f"must be a string, not {_json_type(attribute['assetType'])}")
        for i, element in enumerate(values or []):
            _validate_asset_reference(v, element, f"{path}.values[{i}]", allow_empty=False)
        if "defaultValue" in attribute:
            _validate_asset_reference(v, default, f"{path}.defaultValue", allow_empty=True)
    elif kind == "Pricing":
        for i, price in enumerate(values or []):
            here = f"{path}.values[{i}]"
            if not isinstance(price, dict):
                v.fail(here, f"must be an object with pricebook and currencies, not {_json_type(price)}")
                continue
            pricebook = price.get("pricebook")
            if pricebook is None:
                v.fail(f"{here}.pricebook", "is required")
            else:
                v.string(pricebook, f"{here}.pricebook", allow_empty=False)
            currencies = price.get("currencies")
            if not isinstance(currencies, dict):
                v.fail(
                    f"{here}.currencies",
                    f"must be an object of currency: amount, not {_json_type(currencies)}",
                )
                continue
            for code, amount in currencies.items():
                if not code.strip():
                    v.fail(f"{here}.currencies", "currency codes must be non-empty")
                elif not _is_number(amount):
                    v.fail(f"{here}.currencies.{code}", f"amount must be a number, not {_json_type(amount)}")
        if default is not None and not isinstance(default, dict):
            v.fail(f"{path}.defaultValue", f"must be an object, not {_json_type(default)}")
    if len(v.messages) > before:
        return None
    return copy.deepcopy(attribute)


def _validate_rules(v: _Validator, rules: Any, path: str) -> None:
    if not isinstance(rules, list):
        v.fail(path, f"must be a list, not {_json_type(rules)}")
        return
    for i, rule in enumerate(rules):
        # The documentation nests rules in an extra list; production importers send them flat.
        group = rule if isinstance(rule, list) else [rule]
        for j, element in enumerate(group):
            here = f"{path}[{i}][{j}]" if isinstance(rule, list) else f"{path}[{i}]"
            if not isinstance(element, dict):
                v.fail(here, f"must be a rule object, not {_json_type(element)}")
                continue
            for key in ("conditions", "actions"):
                if key in element and not isinstance(element[key], list):
                    v.fail(f"{here}.{key}", f"must be a list, not {_json_type(element[key])}")


def validate_entry(
    entry: Any, index: int, org_id: str, pricebook_ids: set[str] | None = None
) -> dict[str, Any]:
    """Check one import entry against the documented schema and normalise it.

    ``pricebook_ids``: the org's pricebook ids; a Pricing value naming another pricebook is
    an error (Pricing values carry pricebook *ids*: reference section 4, JTK). None skips
    the check.

    Returns ``{"query": {"id", "name", "metadata"}, "product": {...}}`` where product
    metadata is a flat map and unknown product fields sit under ``"extras"``. Raises
    :class:`EntryError` naming the entry index and field path of every problem found.
    """
    v = _Validator(index)
    if not isinstance(entry, dict):
        v.fail("entry", f"must be an object with query and product, not {_json_type(entry)}")
        raise EntryError(v.messages)
    query_in = entry.get("query")
    query: dict[str, Any] = {"id": None, "name": None, "metadata": None}
    if query_in is not None:
        if not isinstance(query_in, dict):
            v.fail("query", f"must be an object, not {_json_type(query_in)}")
        else:
            if query_in.get("id") is not None and v.string(query_in["id"], "query.id", allow_empty=False):
                query["id"] = query_in["id"]
            if query_in.get("name") is not None and v.string(
                query_in["name"], "query.name", allow_empty=False
            ):
                query["name"] = query_in["name"]
            if query_in.get("metadata") is not None:
                query["metadata"] = _metadata_criteria(v, query_in["metadata"], "query.metadata") or None
    product_in = entry.get("product")
    if product_in is None:
        v.fail("product", "is required")
        raise EntryError(v.messages)
    if not isinstance(product_in, dict):
        v.fail("product", f"must be an object, not {_json_type(product_in)}")
        raise EntryError(v.messages)
    product: dict[str, Any] = {}
    if "name" in product_in and v.string(product_in["name"], "product.name", allow_empty=False):
        product["name"] = product_in["name"]
    if "description" in product_in and v.string(product_in["description"], "product.description"):
        product["description"] = product_in["description"]
    for key in ("keywords", "tags"):
        if key in product_in and v.string_list(product_in[key], f"product.{key}"):
            product[key] = list(dict.fromkeys(product_in[key]))
    if "type" in product_in and v.string(product_in["type"], "product.type", allow_empty=False):
        if product_in["type"] not in PRODUCT_TYPES:
            v.fail("product.type", f"unknown type {json.dumps(product_in['type'])}")
        else:
            product["type"] = product_in["type"]
    if product_in.get("orgId") is not None and product_in["orgId"] != org_id:
        v.fail("product.orgId", "does not match the organization of the request")
    if "metadata" in product_in:
        flat = _metadata_list(v, product_in["metadata"], "product.metadata", for_query=False)
        if flat is not None:
            product["metadata"] = flat
    if "attributes" in product_in:
        attributes = product_in["attributes"]
        if not isinstance(attributes, list):
            v.fail("product.attributes", f"must be a list, not {_json_type(attributes)}")
        else:
            seen: dict[str, int] = {}
            checked = []
            for i, attribute in enumerate(attributes):
                normalised = _validate_attribute(v, attribute, f"product.attributes[{i}]")
                if normalised is None:
                    continue
                if normalised["name"] in seen:
                    v.fail(
                        f"product.attributes[{i}].name",
                        f"duplicate attribute name {json.dumps(normalised['name'])} "
                        f"(also attributes[{seen[normalised['name']]}])",
                    )
                    continue
                seen[normalised["name"]] = i
                checked.append(normalised)
            product["attributes"] = checked
    if "rules" in product_in:
        _validate_rules(v, product_in["rules"], "product.rules")
        product["rules"] = copy.deepcopy(product_in["rules"])
    for key in ("parentFolderId", "assetId", "proxyId", "customId"):
        if product_in.get(key) is not None:
            v.string(product_in[key], f"product.{key}")
    if product_in.get("asset") is not None and not isinstance(product_in["asset"], dict):
        v.fail("product.asset", f"must be an object, not {_json_type(product_in['asset'])}")
    extras = {k: copy.deepcopy(val) for k, val in product_in.items() if k not in CORE_PRODUCT_FIELDS}
    if extras:
        product["extras"] = extras
    if pricebook_ids is not None:
        for i, attribute in enumerate(product.get("attributes") or []):
            if attribute.get("type") != "Pricing":
                continue
            for j, price in enumerate(attribute.get("values") or []):
                book = price.get("pricebook") if isinstance(price, dict) else None
                if isinstance(book, str) and book and book not in pricebook_ids:
                    v.fail(
                        f"product.attributes[{i}].values[{j}].pricebook",
                        f"unknown pricebook id {json.dumps(book)}",
                    )
    if v.messages:
        raise EntryError(v.messages)
    return {"query": query, "product": product}


# --- merging ----------------------------------------------------------------------------


def new_item(item_id: str | None, org_id: str, now: str) -> dict[str, Any]:
    """An empty item record (filled by :func:`merge_product`)."""
    return {
        "id": item_id or str(uuid.uuid4()),
        "orgId": org_id,
        "type": "item",
        "name": "",
        "description": "",
        "keywords": [],
        "tags": [],
        "metadata": {},
        "attributes": [],
        "rules": None,
        "extras": {},
        "importedFileId": None,
        "fileSize": None,
        "createdAt": now,
        "updatedAt": now,
    }


def merge_product(item: dict[str, Any], product: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``item`` with ``product`` merged in (see the module docstring)."""
    merged = copy.deepcopy(item)
    for key in ("type", "name", "description", "keywords", "tags"):
        if key in product:
            merged[key] = copy.deepcopy(product[key])
    if "metadata" in product:
        merged["metadata"] = {**merged["metadata"], **product["metadata"]}
    if "attributes" in product:
        by_name = {a["name"]: i for i, a in enumerate(merged["attributes"])}
        for attribute in product["attributes"]:
            if attribute["name"] in by_name:
                merged["attributes"][by_name[attribute["name"]]] = copy.deepcopy(attribute)
            else:
                by_name[attribute["name"]] = len(merged["attributes"])
                merged["attributes"].append(copy.deepcopy(attribute))
    if "rules" in product:
        merged["rules"] = copy.deepcopy(product["rules"])
    if "extras" in product:
        merged["extras"] = {**merged["extras"], **copy.deepcopy(product["extras"])}
    return merged


CONTENT_FIELDS = (
    "type",
    "name",
    "description",
    "keywords",
    "tags",
    "metadata",
    "attributes",
    "rules",
    "extras",
)


def content_of(item: dict[str, Any]) -> str:
    """Canonical JSON of the user-visible content of an item (for change detection)."""
    return json.dumps({k: item.get(k) for k in CONTENT_FIELDS}, sort_keys=True, ensure_ascii=False)


def layer_configuration(item: dict[str, Any]) -> dict[str, Any]:
    """The configuration an item's render layer shows: each attribute at its default value."""
    return {a["name"]: a["defaultValue"] for a in item["attributes"] if a.get("defaultValue") is not None}


# --- JSON shapes ------------------------------------------------------------------------


def result_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item as a catalog-import result lists it: ``{id, name, metadata{}}`` (JTK)."""
    return {"id": item["id"], "name": item["name"], "metadata": dict(item["metadata"])}


def product_summary(item: dict[str, Any]) -> dict[str, Any]:
    """The item as listed in a synchronous import answer and in catalog listings."""
    return {
        "id": item["id"],
        "name": item["name"],
        "description": item["description"],
        "orgId": item["orgId"],
        "type": item["type"],
        "sku": {},
        "keywords": list(item["keywords"]),
        "tags": list(item["tags"]),
        "categories": [],
        "metadata": dict(item["metadata"]),
        "proxyId": item["extras"].get("proxyId"),
    }


def asset_document(item: dict[str, Any]) -> dict[str, Any]:
    """The full stored asset (``GET /api/assets/:id`` and ``/api/assets/export/:id``)."""
    document = {key: copy.deepcopy(value) for key, value in item["extras"].items()}
    document.update(
        {
            "id": item["id"],
            "name": item["name"],
            "type": item["type"],
            "orgId": item["orgId"],
            "description": item["description"],
            "keywords": list(item["keywords"]),
            "tags": list(item["tags"]),
            "metadata": dict(item["metadata"]),
            "attributes": copy.deepcopy(item["attributes"]),
            "rules": copy.deepcopy(item["rules"]) if item["rules"] is not None else [],
            "importedFileId": item["importedFileId"],
            "fileSize": item["fileSize"],
            "createdAt": item["createdAt"],
            "updatedAt": item["updatedAt"],
            "deletedAt": item.get("deletedAt"),
        }
    )
    document.setdefault("parentFolderId", None)
    document.setdefault("proxyId", None)
    return document


def metadata_as_list(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """A flat metadata map in the documented import form, with types."""
    return [
        {"name": name, "defaultValue": value, "type": "Number" if _is_number(value) else "String"}
        for name, value in metadata.items()
    ]


def export_entry(item: dict[str, Any]) -> dict[str, Any]:
    """The item as a re-importable ``{query, product}`` entry."""
    product: dict[str, Any] = {key: copy.deepcopy(value) for key, value in item["extras"].items()}
    product.update(
        {
            "name": item["name"],
            "type": item["type"],
            "description": item["description"],
            "keywords": list(item["keywords"]),
            "tags": list(item["tags"]),
            "metadata": metadata_as_list(item["metadata"]),
            "attributes": copy.deepcopy(item["attributes"]),
        }
    )
    if item["rules"] is not None:
        product["rules"] = copy.deepcopy(item["rules"])
    return {"query": {"id": item["id"]}, "product": product}


def translatable_strings(item: dict[str, Any]) -> set[str]:
    """Strings of an item that the translations CSV lists."""
    strings = {item["name"]}
    for attribute in item["attributes"]:
        strings.add(attribute["name"])
        if attribute.get("type") == "String":
            strings.update(v for v in attribute.get("values") or [] if isinstance(v, str))
            if isinstance(attribute.get("defaultValue"), str):
                strings.add(attribute["defaultValue"])
    strings.update(value for value in item["metadata"].values() if isinstance(value, str))
    strings.update(item["tags"])
    strings.discard("")
    return strings
