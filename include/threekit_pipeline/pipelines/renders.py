"""Task logic of ``threekit_render_export``: rendered images (layers) of catalog items to FTP folders.

1. :func:`collect_renders` lists the items to render (``render_tags``; empty = every item),
   reads each item's SKU (metadata ``SKU``, else the asset id) and downloads every layer image
   into a render cache kept across runs (``<staging>/<dag_id>/shared/renders/<sku>/<file>``).
   An image already in the cache with Threekit's SHA-256 is not downloaded again. The manifest
   rows (sku, asset_id, configuration, file, size, sha256, ...) are written to the run's
   staging folder as ``manifest_<YYYYMMDD>.csv``.
2. :func:`deliver_renders` runs once per destination folder (``config.render_targets``: DAM,
   partner, archive ...): every image goes to ``<dest>/<sku>/<file>`` and the manifest to
   ``<dest>/manifest_<YYYYMMDD>.csv``, through :mod:`~threekit_pipeline.pipelines.outbound`, so
   only new or changed images are uploaded (sha256 compared with the delivery ledger).

SKU folder names are made safe (no path separators, no ``..``). Images of items that no
longer exist are not deleted from the destinations; the day's manifest lists what is current.
"""

from __future__ import annotations

import csv
import json
import logging
import posixpath
from pathlib import Path
from typing import Any

from threekit_pipeline.pipelines.outbound import deliver_files, open_delivery_ledger, sha256_of
from threekit_pipeline.pipelines.reports import format_table
from threekit_pipeline.pipelines.runtime import TaskEnv
from threekit_pipeline.threekit import exports as tk_exports

log = logging.getLogger(__name__)

ITEM_TYPE = "item"


class RenderChangedError(RuntimeError):
    """A cached image changed between collection and delivery (another run touched the cache)."""


def _sku_of(asset: dict[str, Any]) -> str | None:
    metadata = asset.get("metadata")
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            if str(key).lower() == "sku" and value not in (None, ""):
                return str(value)
    return None


def list_render_items(client: Any, tags: tuple[str, ...]) -> dict[str, str | None]:
    """Item asset id -> SKU for the items carrying any of ``tags`` (every item when empty)."""
    items: dict[str, str | None] = {}
    selections = [{"type": ITEM_TYPE, "tags": tag} for tag in tags] if tags else [{"type": ITEM_TYPE}]
    for filters in selections:
        for asset in client.list_assets(**filters):
            if isinstance(asset, dict) and asset.get("id") and asset.get("type", ITEM_TYPE) == ITEM_TYPE:
                items.setdefault(str(asset["id"]), _sku_of(asset))
    # Deterministic order: by SKU (items without a SKU last, by id).
    ordered = sorted(items.items(), key=lambda kv: (kv[1] is None, kv[1] or "", kv[0]))
    return dict(ordered)


def collect_renders(env: TaskEnv, client: Any) -> list[dict[str, Any]]:
    """Download the render images into the cache and stage the day's manifest.

    Returns one small dict per destination folder (the input of the mapped delivery task).
    """
    cfg = env.config
    items = list_render_items(client, cfg.render_tags)
    without_sku = sum(1 for sku in items.values() if sku is None)
    log.info(
        "Render export: %d item(s) selected (%s)%s",
        len(items),
        f"tags {list(cfg.render_tags)}" if cfg.render_tags else "all items",
        f"; {without_sku} without a SKU use their asset id as folder name" if without_sku else "",
    )
    cache = env.shared_dir("renders")
    result = tk_exports.download_renders(client, items, cache)
    if result.missing:
        log.warning(
            "%d layer image(s) could not be fetched:\n%s",
            len(result.missing),
            format_table(result.missing, ("asset_id", "layer_id", "reason")),
        )
    run_folder = env.run_dir("renders", fresh=True)
    manifest = tk_exports.write_render_manifest(result.rows, run_folder / f"manifest_{env.stamp}.csv")
    rows_path = run_folder / "rows.json"
    rows_path.write_text(json.dumps(result.rows, ensure_ascii=False))
    log.info(
        "Render manifest %s: %d image(s) (%d downloaded, %d already cached)",
        manifest.name,
        len(result.rows),
        result.downloaded,
        result.unchanged,
    )
    return [
        {
            "destination": destination,
            "cache": str(cache),
            "rows": str(rows_path),
            "manifest": str(manifest),
            "images": len(result.rows),
        }
        for destination in cfg.render_targets
    ]


def read_manifest(path: Path) -> list[dict[str, str]]:
    """Rows of a manifest CSV (for checks and tests)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def deliver_renders(env: TaskEnv, ftp: Any, plan: dict[str, Any]) -> dict[str, Any]:
    """Upload new or changed images to ``<dest>/<sku>/<file>``, then ``<dest>/manifest_<day>.csv``.

    The manifest goes last, so a partner reading it finds every image it lists.
    """
    destination = plan["destination"].rstrip("/") or "/"
    cache = Path(plan["cache"])
    rows = json.loads(env.staged(plan["rows"]).read_text())
    pairs: list[tuple[str, str]] = []
    for row in rows:
        local = env.staged(cache / row["file"])
        if sha256_of(local) != row["sha256"]:
            raise RenderChangedError(
                f"{local} changed since the manifest was written (sku {row['sku']}); re-run the whole DAG run"
            )
        pairs.append((str(local), posixpath.join(destination, row["file"])))
    manifest = env.staged(plan["manifest"])
    pairs.append((str(manifest), posixpath.join(destination, manifest.name)))
    with open_delivery_ledger(env.config) as ledger:
        summary = deliver_files(
            ftp,
            pairs,
            ledger=ledger,
            target=env.config.ftp_conn_id,
            run_id=env.run_id,
            dry_run=env.dry_run,
            scratch_dir=env.run_dir("scratch"),
            label=f"renders -> {destination}",
        )
    result = summary.to_dict(limit=20)
    result["destination"] = destination
    result["images"] = len(rows)
    return result


def summarise_render_delivery(results: list[dict[str, Any] | None]) -> dict[str, Any]:
    """One line per destination in the log; totals returned."""
    rows = [r for r in results if r]
    table = [
        {
            "destination": r["destination"],
            "images": r["images"],
            "uploaded": r["uploaded"],
            "unchanged": r["unchanged"],
            "would_upload": r.get("would_upload", 0),
        }
        for r in rows
    ]
    log.info(
        "Render delivery:\n%s",
        format_table(table, ("destination", "images", "uploaded", "unchanged", "would_upload")),
    )
    return {
        "destinations": len(rows),
        "uploaded": sum(r["uploaded"] for r in rows),
        "unchanged": sum(r["unchanged"] for r in rows),
        "per_destination": table,
    }
