"""Task logic of the export DAGs: catalog, translations and per-asset exports from Threekit to FTP.

Each export runs in two steps so that a Threekit outage and an FTP outage are retried
separately: a *stage* step streams Threekit's data into the run's staging folder
(``<staging>/<dag_id>/<run>/``) and returns the staged paths, and a *deliver* step hands those
files to :mod:`threekit_pipeline.pipelines.outbound`, which uploads only what is new or changed.
File names carry the run's day (:attr:`TaskEnv.stamp`, the logical date, or ``run_after`` for
asset-triggered runs).

* Catalog: ``<outbound_catalog>/catalog_<YYYYMMDD>.json`` (Threekit's export, filtered by
  ``export_tags``/``export_keywords``/``export_types``) and ``catalog_<YYYYMMDD>.csv``, one row
  per product for partners, with spreadsheet formulas neutralised.
* Translations: ``<outbound_translations>/translations_<YYYYMMDD>.csv`` and, with
  ``translations_per_locale``, also ``translations_<locale>_<YYYYMMDD>.csv`` per locale.
* Assets: ``<outbound_assets>/<assetId>.json`` for every asset in ``export_asset_ids`` and every
  asset carrying one of ``export_asset_tags``; resolved once, then exported in chunks (one
  mapped task per chunk).

No Airflow imports here; the DAG tasks build a :class:`TaskEnv` and open the clients.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from threekit_pipeline.pipelines.outbound import deliver_files, open_delivery_ledger
from threekit_pipeline.pipelines.reports import format_table
from threekit_pipeline.pipelines.runtime import TaskEnv
from threekit_pipeline.threekit import exports as tk_exports
from threekit_pipeline.threekit.errors import ThreekitAPIError

log = logging.getLogger(__name__)

# Asset exports per mapped task: small enough that a retry redoes little work, large enough
# that hundreds of assets do not become hundreds of task instances.
ASSET_CHUNK_SIZE = 25


class ExportConfigError(ValueError):
    """The export configuration selects nothing usable; the message says which setting."""


def _remote(folder: str, name: str) -> str:
    return posixpath.join(folder.rstrip("/") or "/", name)


def _deliver(env: TaskEnv, ftp: Any, pairs: Sequence[tuple[str, str]], label: str) -> dict[str, Any]:
    with open_delivery_ledger(env.config) as ledger:
        summary = deliver_files(
            ftp,
            pairs,
            ledger=ledger,
            target=env.config.ftp_conn_id,
            run_id=env.run_id,
            dry_run=env.dry_run,
            scratch_dir=env.run_dir("scratch"),
            label=label,
        )
    return summary.to_dict()


# --- catalog -------------------------------------------------------------------------------


def _pricebook_names(client: Any) -> dict[str, str]:
    """Pricebook id -> name for the price columns; ids are kept when the listing fails."""
    try:
        books = client.list_pricebooks()
    except ThreekitAPIError as exc:
        log.warning("Pricebook names unavailable (%s); price columns use pricebook ids", exc)
        return {}
    return {str(b["id"]): str(b.get("name") or b["id"]) for b in books if isinstance(b, dict) and b.get("id")}


def stage_catalog_export(env: TaskEnv, client: Any) -> dict[str, Any]:
    """Export the configured catalog slice to ``catalog_<day>.json`` + ``.csv`` in staging."""
    cfg = env.config
    folder = env.run_dir("catalog", fresh=True)
    json_path = folder / f"catalog_{env.stamp}.json"
    csv_path = folder / f"catalog_{env.stamp}.csv"
    log.info(
        "Exporting the catalog (tags=%s, keywords=%s, types=%s) for %s",
        list(cfg.export_tags) or "any",
        list(cfg.export_keywords) or "any",
        list(cfg.export_types) or "any",
        env.describe(),
    )
    exported = tk_exports.export_catalog(
        client, json_path, tags=cfg.export_tags, keywords=cfg.export_keywords, types=cfg.export_types
    )
    flattened = tk_exports.flatten_catalog_to_csv(
        json_path, csv_path, pricebook_names=_pricebook_names(client)
    )
    log.info(
        "Staged %d products: %s (%d bytes) and %s (%d bytes)",
        exported.count,
        json_path.name,
        exported.size,
        csv_path.name,
        flattened.size,
    )
    if exported.count == 0:
        log.warning("The catalog export is empty: check export_tags/export_keywords/export_types")
    return {
        "products": exported.count,
        "files": [str(json_path), str(csv_path)],
        "folder": cfg.folder("outbound_catalog"),
    }


def deliver_staged(env: TaskEnv, ftp: Any, staged: dict[str, Any], label: str) -> dict[str, Any]:
    """Deliver staged files (``staged["files"]``) into ``staged["folder"]`` under their own names."""
    folder = staged["folder"]
    pairs = [(str(env.staged(path)), _remote(folder, Path(path).name)) for path in staged["files"]]
    result = _deliver(env, ftp, pairs, label)
    result["folder"] = folder
    return result


# --- translations ----------------------------------------------------------------------------


def stage_translations_export(env: TaskEnv, client: Any) -> dict[str, Any]:
    """Export translations to ``translations_<day>.csv`` (+ per-locale files) in staging."""
    cfg = env.config
    folder = env.run_dir("translations", fresh=True)
    main = folder / f"translations_{env.stamp}.csv"
    # The per-locale split is written to a sub-folder, then renamed to carry the day.
    split_dir = folder / "per_locale"
    exported = tk_exports.export_translations(
        client, split_dir / "all.csv", split_per_locale=cfg.translations_per_locale
    )
    Path(exported.path).replace(main)
    files = [str(main)]
    for locale, path in sorted(exported.locale_files.items()):
        dated = folder / f"translations_{tk_exports.safe_name(locale, 'locale')}_{env.stamp}.csv"
        Path(path).replace(dated)
        files.append(str(dated))
    log.info(
        "Staged translations: %d names, locales %s, %d file(s)",
        exported.rows,
        ", ".join(exported.locales) or "(none)",
        len(files),
    )
    return {
        "names": exported.rows,
        "locales": exported.locales,
        "files": files,
        "folder": cfg.folder("outbound_translations"),
    }


# --- assets ----------------------------------------------------------------------------------


def resolve_export_assets(client: Any, asset_ids: Iterable[str], asset_tags: Iterable[str]) -> list[str]:
    """Configured asset ids plus every asset carrying one of the tags (order kept, no duplicates)."""
    resolved: dict[str, None] = {str(a).strip(): None for a in asset_ids if str(a).strip()}
    for tag in asset_tags:
        tag = str(tag).strip()
        if not tag:
            continue
        found = [str(a["id"]) for a in client.list_assets(tags=tag) if isinstance(a, dict) and a.get("id")]
        log.info("Tag %r selects %d asset(s)", tag, len(found))
        for asset_id in sorted(found):
            resolved.setdefault(asset_id, None)
    return list(resolved)


def chunk(items: Sequence[str], size: int = ASSET_CHUNK_SIZE) -> list[list[str]]:
    """Consecutive slices of at most ``size`` items."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def plan_asset_export(env: TaskEnv, client: Any, chunk_size: int = ASSET_CHUNK_SIZE) -> list[list[str]]:
    """Resolve the assets to export and split them into chunks (one mapped task each)."""
    cfg = env.config
    if not cfg.export_asset_ids and not cfg.export_asset_tags:
        raise ExportConfigError(
            "asset export has nothing to export: set export_asset_ids and/or export_asset_tags "
            "in the threekit_pipeline Variable"
        )
    asset_ids = resolve_export_assets(client, cfg.export_asset_ids, cfg.export_asset_tags)
    chunks = chunk(asset_ids, chunk_size)
    log.info("Asset export: %d asset(s) in %d chunk(s) of up to %d", len(asset_ids), len(chunks), chunk_size)
    return chunks


def export_asset_chunk(env: TaskEnv, client: Any, ftp: Any, asset_ids: Sequence[str]) -> dict[str, Any]:
    """Export each asset of a chunk to staging and deliver ``<outbound_assets>/<assetId>.json``.

    An id Threekit does not know (404) is listed under ``missing`` and the others continue;
    the run's summary step fails on missing assets once every chunk is done.
    """
    folder_remote = env.config.folder("outbound_assets")
    staging = env.run_dir("assets")
    pairs: list[tuple[str, str]] = []
    missing: list[dict[str, str]] = []
    for position, asset_id in enumerate(asset_ids, start=1):
        name = tk_exports.safe_name(asset_id, "asset") + ".json"
        try:
            tk_exports.export_single_asset(client, asset_id, staging / name)
        except ThreekitAPIError as exc:
            if exc.status != 404:
                raise
            log.error("Asset %s: not found in Threekit (%s)", asset_id, exc.message)
            missing.append({"asset_id": asset_id, "reason": f"not found in Threekit: {exc.message}"})
            continue
        pairs.append((str(staging / name), _remote(folder_remote, name)))
        if position % 10 == 0:
            log.info("Exported %d/%d assets of this chunk", position, len(asset_ids))
    result = _deliver(env, ftp, pairs, "asset export")
    result["exported"] = len(pairs)
    result["missing"] = missing
    return result


def summarise_asset_export(results: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
    """Totals over every chunk; ``missing`` lists the configured assets Threekit does not have."""
    total = {"chunks": 0, "exported": 0, "uploaded": 0, "unchanged": 0, "would_upload": 0, "missing": []}
    for result in results:
        if not result:
            continue
        total["chunks"] += 1
        for key in ("exported", "uploaded", "unchanged", "would_upload"):
            total[key] += int(result.get(key, 0))
        total["missing"].extend(result.get("missing", []))
    log.info(
        "Asset export: %d exported in %d chunk(s): %d uploaded, %d unchanged, %d missing",
        total["exported"],
        total["chunks"],
        total["uploaded"],
        total["unchanged"],
        len(total["missing"]),
    )
    if total["missing"]:
        log.error("Assets not exported:\n%s", format_table(total["missing"], ("asset_id", "reason")))
    return total
