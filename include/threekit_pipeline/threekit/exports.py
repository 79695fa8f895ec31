"""Export building blocks: Threekit data streamed to local staging files, with counts.

Every function writes through a temporary name and renames into place, so a staging file
is either complete or absent. Results are small dataclasses with ``to_dict()`` (for XCom).

CSV files meant for partners (:func:`flatten_catalog_to_csv`, :func:`write_render_manifest`)
neutralise spreadsheet formulas: a text cell starting with ``=``, ``+``, ``-``, ``@``, tab
or carriage return gets a leading ``'``. Per-locale translation files are *not* altered,
because they are meant to come back through the translations import unchanged.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from threekit_pipeline.threekit.client import ThreekitClient
from threekit_pipeline.threekit.errors import ThreekitAPIError, ThreekitError

log = logging.getLogger(__name__)

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CATALOG_FIXED_COLUMNS = ("id", "name", "sku", "description", "tags", "keywords")
MANIFEST_COLUMNS = (
    "sku",
    "asset_id",
    "layer_id",
    "configuration",
    "file",
    "size",
    "sha256",
    "format",
    "width",
    "height",
)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ExportResult:
    """A staged export file: path, number of records, byte size and SHA-256."""

    path: str
    count: int
    size: int
    sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TranslationsExport:
    """The translations CSV, its row count, locales and optional per-locale files."""

    path: str
    rows: int
    locales: list[str]
    locale_files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RenderExport:
    """Downloaded render images (manifest rows) and the layers that could not be fetched."""

    rows: list[dict] = field(default_factory=list)
    missing: list[dict] = field(default_factory=list)
    downloaded: int = 0
    unchanged: int = 0

    def to_dict(self) -> dict:
        return {
            "images": len(self.rows),
            "downloaded": self.downloaded,
            "unchanged": self.unchanged,
            "missing": self.missing[:100],
        }


def neutralize_cell(value: Any) -> Any:
    """Prefix text that a spreadsheet would evaluate as a formula with ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def safe_name(name: str, fallback: str) -> str:
    """A file/directory name without path separators or other unsafe characters."""
    cleaned = _UNSAFE_NAME.sub("_", str(name or "")).strip("._")
    return cleaned or fallback


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_json_array(path: Path, what: str) -> list:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except ValueError as exc:
        raise ThreekitError(f"{what} {path.name} is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ThreekitError(f"{what} {path.name}: expected a JSON array, got {type(data).__name__}")
    return data


# -- catalog ---------------------------------------------------------------------------
def export_catalog(
    client: ThreekitClient,
    dest: Path,
    *,
    tags: Sequence[str] | str | None = None,
    keywords: Sequence[str] | str | None = None,
    types: Sequence[str] | str | None = None,
) -> ExportResult:
    """Stream the catalog export (JSON array of ``{query, product}``) to ``dest``."""
    dest = Path(dest)
    streamed = client.stream_to_file(
        "/api/products/export/json",
        dest,
        params={
            k: v
            for k, v in {"tags": _csv(tags), "keywords": _csv(keywords), "type": _csv(types)}.items()
            if v
        },
    )
    try:
        count = len(_load_json_array(dest, "catalog export"))
    except ThreekitError:
        dest.unlink(missing_ok=True)
        raise
    log.info("catalog export: %d products, %d bytes -> %s", count, streamed.size, dest)
    return ExportResult(str(dest), count, streamed.size, streamed.sha256)


def _csv(value: Sequence[str] | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    return ",".join(str(v) for v in value if v) or None


def _metadata_map(metadata: Any) -> dict[str, Any]:
    """Flat ``{name: value}`` from either the stored map or the import-style list of defs."""
    if isinstance(metadata, dict):
        return dict(metadata)
    out: dict[str, Any] = {}
    if isinstance(metadata, list):
        for item in metadata:
            if isinstance(item, dict) and item.get("name") not in (None, ""):
                out[str(item["name"])] = item.get("defaultValue", item.get("value"))
    return out


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        for key in ("value", "assetId", "label", "name"):
            if value.get(key) not in (None, ""):
                return str(value[key])
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if isinstance(value, list):
        return "|".join(_value_text(v) for v in value)
    return str(value)


def _attribute_text(attribute: dict) -> str:
    values = attribute.get("values")
    if isinstance(values, list) and values:
        return "|".join(t for t in (_value_text(v) for v in values) if t != "")
    return _value_text(attribute.get("defaultValue"))


def _flatten_product(entry: Any, pricebook_names: Mapping[str, str]) -> dict[str, Any]:
    entry = entry if isinstance(entry, dict) else {}
    product = entry.get("product") if isinstance(entry.get("product"), dict) else entry
    query = entry.get("query") if isinstance(entry.get("query"), dict) else {}
    metadata = _metadata_map(product.get("metadata"))
    sku = next((v for k, v in metadata.items() if k.lower() == "sku"), None)
    if sku in (None, ""):
        sku = _metadata_map(query.get("metadata")).get("SKU")
    row: dict[str, Any] = {
        "id": product.get("id") or query.get("id") or product.get("assetId") or "",
        "name": product.get("name") or "",
        "sku": sku if sku is not None else "",
        "description": product.get("description") or "",
        "tags": "|".join(str(t) for t in product.get("tags") or []),
        "keywords": "|".join(str(k) for k in product.get("keywords") or []),
    }
    for key, value in metadata.items():
        row[f"metadata:{key}"] = (
            value if isinstance(value, int | float) and not isinstance(value, bool) else _value_text(value)
        )
    for attribute in product.get("attributes") or []:
        if not isinstance(attribute, dict):
            continue
        if attribute.get("type") == "Pricing":
            for price in attribute.get("values") or []:
                if not isinstance(price, dict):
                    continue
                book = str(price.get("pricebook") or "")
                book = pricebook_names.get(book, book)
                for currency, amount in (price.get("currencies") or {}).items():
                    row[f"price:{book}:{currency}"] = amount
            continue
        name = attribute.get("name")
        if name not in (None, ""):
            row[f"attribute:{name}"] = _attribute_text(attribute)
    return row


def flatten_catalog_to_csv(
    json_path: Path,
    csv_path: Path,
    *,
    pricebook_names: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
) -> ExportResult:
    """Flatten a catalog export to one CSV row per product, for partners.

    Columns: ``id, name, sku, description, tags, keywords`` (lists joined with ``|``), then
    ``metadata:<key>`` per metadata key, ``attribute:<name>`` per attribute (values joined
    with ``|``) and ``price:<pricebook>:<currency>`` per price, in first-seen order.
    ``pricebook_names`` maps pricebook ids to the names used in the price columns.
    """
    json_path, csv_path = Path(json_path), Path(csv_path)
    entries = _load_json_array(json_path, "catalog export")
    rows = [_flatten_product(e, pricebook_names or {}) for e in entries]
    columns: dict[str, None] = dict.fromkeys(CATALOG_FIXED_COLUMNS)
    for prefix in ("metadata:", "attribute:", "price:"):
        for row in rows:
            for key in row:
                if key.startswith(prefix):
                    columns.setdefault(key, None)
    header = list(columns)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv_path.with_name(csv_path.name + ".part")
    with open(tmp, "w", newline="", encoding=encoding) as fh:
        writer = csv.writer(fh)
        writer.writerow([neutralize_cell(c) for c in header])
        for row in rows:
            writer.writerow([neutralize_cell(row.get(c, "")) for c in header])
    os.replace(tmp, csv_path)
    log.info("flattened %d products into %d columns -> %s", len(rows), len(header), csv_path)
    return ExportResult(str(csv_path), len(rows), csv_path.stat().st_size, _sha256_file(csv_path))


# -- single asset ------------------------------------------------------------------------
def export_single_asset(client: ThreekitClient, asset_id: str, dest: Path) -> ExportResult:
    """Stream one asset's JSON export to ``dest``."""
    dest = Path(dest)
    streamed = client.stream_to_file(f"/api/assets/export/{asset_id}", dest)
    log.info("asset %s exported: %d bytes -> %s", asset_id, streamed.size, dest)
    return ExportResult(str(dest), 1, streamed.size, streamed.sha256)


# -- translations ------------------------------------------------------------------------
def export_translations(
    client: ThreekitClient,
    dest: Path,
    *,
    asset_id: str | None = None,
    split_per_locale: bool = False,
) -> TranslationsExport:
    """Stream the translations CSV to ``dest``; optionally split it per locale.

    Split files are ``translations_<locale>.csv`` next to ``dest``, each with the columns
    ``Canonical Name,<locale>`` and one row per canonical name.
    """
    dest = Path(dest)
    client.stream_to_file(
        "/api/products/translations", dest, params={"assetId": asset_id} if asset_id else None
    )
    with open(dest, newline="", encoding="utf-8-sig") as fh:
        table = list(csv.reader(fh))
    header, body = (table[0], table[1:]) if table else ([], [])
    if header and header[0].strip() != "Canonical Name":
        raise ThreekitError(
            f"translations export {dest.name}: first column is {header[0]!r}, not 'Canonical Name'"
        )
    locales = [h for h in header[1:] if h.strip()]
    locale_files: dict[str, str] = {}
    if split_per_locale:
        for column, locale in enumerate(header[1:], start=1):
            if not locale.strip():
                continue
            target = dest.parent / f"translations_{safe_name(locale, f'locale{column}')}.csv"
            tmp = target.with_name(target.name + ".part")
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(["Canonical Name", locale])
                for row in body:
                    if row and row[0] != "":
                        writer.writerow([row[0], row[column] if column < len(row) else ""])
            os.replace(tmp, target)
            locale_files[locale] = str(target)
    log.info(
        "translations export: %d names, locales %s -> %s%s",
        len(body),
        ", ".join(locales) or "(none)",
        dest,
        f" (+{len(locale_files)} per-locale files)" if locale_files else "",
    )
    return TranslationsExport(str(dest), len(body), locales, locale_files)


# -- renders ------------------------------------------------------------------------------
def download_renders(
    client: ThreekitClient,
    assets: Mapping[str, str | None] | Iterable[str],
    dest_dir: Path,
) -> RenderExport:
    """Download every layer (render) image of the given assets into ``<dest_dir>/<sku or asset id>/``.

    ``assets`` maps asset id -> SKU (or is a plain list of asset ids). Files already present
    with the same SHA-256 as Threekit's copy are not downloaded again. Returns manifest rows
    (``sku, asset_id, layer_id, configuration`` (JSON), ``file`` (relative to ``dest_dir``),
    ``size, sha256, format, width, height``) and the layers whose file could not be fetched.
    """
    dest_dir = Path(dest_dir)
    mapping = dict(assets) if isinstance(assets, Mapping) else dict.fromkeys(assets)
    result = RenderExport()
    for position, (asset_id, sku) in enumerate(mapping.items(), start=1):
        folder = dest_dir / safe_name(sku or asset_id, "asset")
        used_names: set[str] = set()
        layers = 0
        for layer in client.list_layers(asset_id=asset_id):
            layers += 1
            layer_id = str(layer.get("id") or "")
            file_id = layer.get("fileId")
            if not file_id:
                result.missing.append(
                    {"asset_id": asset_id, "layer_id": layer_id, "reason": "layer has no fileId"}
                )
                continue
            try:
                meta = client.get_file(file_id)
            except ThreekitAPIError as exc:
                log.warning("asset %s layer %s: file %s unavailable: %s", asset_id, layer_id, file_id, exc)
                result.missing.append({"asset_id": asset_id, "layer_id": layer_id, "reason": str(exc)})
                continue
            extension = str(layer.get("format") or meta.get("extension") or "bin").lstrip(".")
            name = safe_name(meta.get("filename") or "", f"{safe_name(layer_id, 'layer')}.{extension}")
            if name in used_names:
                stem, dot, ext = name.rpartition(".")
                name = f"{stem}-{safe_name(layer_id, 'layer')}.{ext}" if dot else f"{name}-{layer_id}"
            used_names.add(name)
            target = folder / name
            expected = str(meta.get("hash") or "").removeprefix("sha256-")
            if expected and target.exists() and _sha256_file(target) == expected:
                sha256, size = expected, target.stat().st_size
                result.unchanged += 1
            else:
                streamed = client.stream_to_file(f"/api/files/{file_id}/content", target)
                sha256, size = streamed.sha256, streamed.size
                result.downloaded += 1
            result.rows.append(
                {
                    "sku": sku or "",
                    "asset_id": asset_id,
                    "layer_id": layer_id,
                    "configuration": json.dumps(
                        layer.get("assetLayerConfiguration") or {}, sort_keys=True, ensure_ascii=False
                    ),
                    "file": target.relative_to(dest_dir).as_posix(),
                    "size": size,
                    "sha256": sha256,
                    "format": layer.get("format") or "",
                    "width": layer.get("width") or "",
                    "height": layer.get("height") or "",
                }
            )
        log.info("renders: asset %d/%d (%s): %d layer(s)", position, len(mapping), sku or asset_id, layers)
    log.info(
        "renders: %d image(s) for %d asset(s): %d downloaded, %d unchanged, %d missing",
        len(result.rows),
        len(mapping),
        result.downloaded,
        result.unchanged,
        len(result.missing),
    )
    return result


def write_render_manifest(rows: Iterable[Mapping[str, Any]], path: Path) -> Path:
    """Write render manifest rows as CSV (columns :data:`MANIFEST_COLUMNS`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(MANIFEST_COLUMNS)
        for row in rows:
            writer.writerow([neutralize_cell(row.get(c, "")) for c in MANIFEST_COLUMNS])
    os.replace(tmp, path)
    return path
