"""Task logic of rendering on demand in ``threekit_render_export`` (no Airflow imports).

1. :func:`plan_renders` selects the items of the render spec, expands each one's
   configurations and keeps the (SKU, configuration) pairs whose hash of (item content,
   configuration, render settings) differs from the render ledger
   (``<staging>/ledger/render_delivery.sqlite``), then starts one render job per item for its
   new or changed configurations. Without a spec (or ``render: existing``) nothing is
   rendered and the export delivers the layers that exist, as before.
2. The DAG waits for the jobs in the triggerer (deferrable, see
   :mod:`threekit_pipeline.airflow.triggers.threekit_render`).
3. :func:`collect_rendered` downloads the layer image of every rendered configuration into
   the render cache and writes this run's manifest (sku, configuration, file, size, sha256,
   ...). A failed or timed-out job is listed with its item and configurations; the other
   images still go out.
4. Delivery is the existing per-destination task (:func:`~threekit_pipeline.pipelines.renders.deliver_renders`).
5. :func:`finish_renders` records the delivered combinations in the ledger (only after every
   destination got them; not on a dry run) and raises :class:`RendersFailed` naming what failed.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from threekit_pipeline.pipelines.reports import format_table
from threekit_pipeline.threekit import renders as tk_renders

log = logging.getLogger(__name__)

LEDGER_NAME = "render_delivery"
PLAN_FILE = "render_plan.json"
ROWS_FILE = "render_rows.json"
FAILURES_FILE = "render_failures.json"
ITEM_TYPE = "item"


class RendersFailed(RuntimeError):
    """Some renders failed or timed out; the message names each item and configuration."""


def load_spec(env: Any) -> tk_renders.RenderSpec | None:
    return tk_renders.parse_render_spec(getattr(env.config, "render_spec", None))


def _sku_of(item: dict[str, Any]) -> str:
    metadata = item.get("metadata")
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            if str(key).lower() == "sku" and value not in (None, ""):
                return str(value)
    return str(item["id"])


def select_items(env: Any, client: Any, spec: tk_renders.RenderSpec) -> list[dict[str, Any]]:
    """The items of the spec: by tags (else the Variable's ``render_tags``, else all), then
    narrowed to ``skus`` and to the SKUs the ``source`` imported; sorted by SKU."""
    tags = spec.tags or tuple(env.config.render_tags)
    found: dict[str, dict[str, Any]] = {}
    for filters in ([{"type": ITEM_TYPE, "tags": t} for t in tags] or [{"type": ITEM_TYPE}]):
        for item in client.list_assets(**filters):
            if isinstance(item, dict) and item.get("id") and item.get("type", ITEM_TYPE) == ITEM_TYPE:
                found.setdefault(str(item["id"]), item)
    items = list(found.values())
    if spec.skus:
        wanted = set(spec.skus)
        items = [i for i in items if _sku_of(i) in wanted]
    if spec.source:
        from threekit_pipeline.pipelines.ledgers import open_lifecycle_ledger

        with open_lifecycle_ledger(env.config) as lc:
            members, retired = lc.members(spec.source), lc.retired(spec.source)
        items = [i for i in items if _sku_of(i) in members and _sku_of(i) not in retired]
    return sorted(items, key=lambda i: (_sku_of(i), str(i["id"])))


def plan_renders(env: Any, client: Any) -> dict[str, Any]:
    """Start render jobs for the new or changed combinations; returns the wait plan.

    Shape: ``{"mode": "existing"}`` or ``{"mode": "on_demand", "jobs": [job id],
    "requested": n, "unchanged": n, "threekit_conn_id", "poll_seconds", "timeout_seconds"}``.
    On a dry run nothing is requested (the combinations are only listed).
    """
    from threekit_pipeline.pipelines.ledgers import open_ledger

    spec = load_spec(env)
    folder = env.run_dir("render_on_demand", fresh=True)
    if spec is None or spec.mode == "existing":
        log.info("Render spec: %s; delivering the layers that exist", "none" if spec is None else "render: existing")
        return {"mode": "existing", "jobs": []}
    items = select_items(env, client, spec)
    combos: list[dict[str, Any]] = []
    for item in items:
        sku = _sku_of(item)
        for configuration in tk_renders.item_configurations(item, spec):
            combos.append(
                {
                    "sku": sku,
                    "asset_id": str(item["id"]),
                    "configuration": configuration,
                    "key": tk_renders.combination_key(sku, configuration),
                    "hash": tk_renders.combination_hash(item, configuration, spec),
                }
            )
    with open_ledger(env.config, LEDGER_NAME) as ledger:
        delta = ledger.plan((c["key"], c["hash"]) for c in combos)
    wanted = set(delta.to_send)
    todo = [c for c in combos if c["key"] in wanted]
    log.info(
        "Render spec (%s, %s, %dx%d): %d item(s), %d combination(s): %s",
        spec.renderer, spec.format, spec.width, spec.height, len(items), len(combos), delta.summary(),
    )
    by_item: dict[str, list[dict[str, Any]]] = {}
    for combo in todo:
        by_item.setdefault(combo["asset_id"], []).append(combo)
    requests: list[dict[str, Any]] = []
    for asset_id, group in by_item.items():
        entry: dict[str, Any] = {"asset_id": asset_id, "sku": group[0]["sku"], "combos": group, "job_id": None}
        if not env.dry_run:
            try:
                entry["job_id"] = tk_renders.request_render(client, asset_id, [c["configuration"] for c in group], spec)
            except Exception as exc:  # noqa: BLE001 - this item fails, the others still render
                entry["error"] = f"render request refused: {exc}"
                log.warning("SKU %s (%s): %s", entry["sku"], asset_id, entry["error"])
        requests.append(entry)
    if todo:
        log.info(
            "%s %d render(s) in %d job(s):\n%s",
            "Dry run: would request" if env.dry_run else "Requested",
            len(todo),
            len(requests),
            format_table(
                [{"sku": c["sku"], "configuration": tk_renders.configuration_key(c["configuration"])} for c in todo],
                ["sku", "configuration"],
                limit=50,
            ),
        )
    plan = {
        "mode": "on_demand",
        "spec": spec.settings(),
        "requests": requests,
        "timeout_seconds": spec.timeout_seconds,
    }
    (folder / PLAN_FILE).write_text(json.dumps(plan, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    return {
        "mode": "on_demand",
        "jobs": [r["job_id"] for r in requests if r.get("job_id")],
        "requested": len(todo),
        "unchanged": len(delta.unchanged),
        "threekit_conn_id": env.config.threekit_conn_id,
        "poll_seconds": spec.poll_seconds,
        "timeout_seconds": spec.timeout_seconds,
    }


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def image_name(sku: str, configuration: dict[str, Any], extension: str) -> str:
    """``<sku>/<sku>_<values>_<hash8>.<ext>``: readable and unique per configuration."""
    from threekit_pipeline.threekit.exports import safe_name

    values = "-".join(_UNSAFE.sub("", str(v)) for v in configuration.values())[:60] or "default"
    digest = tk_renders.hashlib.sha256(tk_renders.configuration_key(configuration).encode()).hexdigest()[:8]
    folder = safe_name(sku, "item")
    return f"{folder}/{folder}_{values}_{digest}.{extension}"


def collect_rendered(env: Any, client: Any, outcomes: dict[str, str] | None) -> list[dict[str, Any]]:
    """Download the images of the finished jobs, write the manifest; returns the delivery plans.

    ``outcomes``: ``{job id: succeeded|failed|timeout}`` from the wait. Returns one plan per
    destination (the input of ``deliver_renders``), or ``[]`` when no image is new.
    """
    from threekit_pipeline.threekit.exports import write_render_manifest

    folder = env.run_dir("render_on_demand")
    plan = json.loads((folder / PLAN_FILE).read_text(encoding="utf-8"))
    outcomes = outcomes or {}
    cache = env.shared_dir("renders")
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []

    def failed(entry: dict[str, Any], combos: list[dict[str, Any]], reason: str) -> None:
        for combo in combos:
            failures.append(
                {"sku": entry["sku"], "asset_id": entry["asset_id"], "job_id": entry.get("job_id") or "",
                 "configuration": tk_renders.configuration_key(combo["configuration"]), "reason": reason}
            )

    for entry in plan["requests"]:
        job_id = entry.get("job_id")
        if env.dry_run and not job_id:
            continue
        if not job_id:
            failed(entry, entry["combos"], entry.get("error") or "no render job")
            continue
        state = outcomes.get(job_id, "timeout")
        if state == "timeout":
            failed(entry, entry["combos"], f"render job {job_id} did not finish within {plan['timeout_seconds']:.0f} s")
            continue
        if state != "succeeded":
            failed(entry, entry["combos"], tk_renders.job_failure_message(client, job_id))
            continue
        layers = {
            tk_renders.configuration_key(layer.get("assetLayerConfiguration") or {}): layer
            for layer in tk_renders.job_layers(client, job_id)
        }
        for combo in entry["combos"]:
            layer = layers.get(tk_renders.configuration_key(combo["configuration"]))
            if layer is None or not layer.get("fileId"):
                failed(entry, [combo], f"render job {job_id} left no layer for this configuration")
                continue
            extension = str(layer.get("format") or plan["spec"]["format"]).lower().replace("jpeg", "jpg")
            name = image_name(entry["sku"], combo["configuration"], extension)
            streamed = client.stream_to_file(f"/api/files/{layer['fileId']}/content", cache / name)
            rows.append(
                {
                    "sku": entry["sku"],
                    "asset_id": entry["asset_id"],
                    "layer_id": str(layer.get("id") or ""),
                    "configuration": tk_renders.configuration_key(combo["configuration"]),
                    "file": name,
                    "size": streamed.size,
                    "sha256": streamed.sha256,
                    "format": layer.get("format") or "",
                    "width": layer.get("width") or "",
                    "height": layer.get("height") or "",
                    "key": combo["key"],
                    "hash": combo["hash"],
                }
            )
    (folder / ROWS_FILE).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    (folder / FAILURES_FILE).write_text(json.dumps(failures, ensure_ascii=False), encoding="utf-8")
    if failures:
        log.error(
            "%d render(s) failed or timed out (the other images are delivered):\n%s",
            len(failures),
            format_table(failures, ["sku", "configuration", "job_id", "reason"], limit=100, width=90),
        )
    log.info("Rendered images: %d downloaded, %d failed", len(rows), len(failures))
    if not rows:
        return []
    moment = env.run_moment.strftime("%Y%m%dT%H%M%S")
    manifest = write_render_manifest(rows, folder / f"manifest_{moment}.csv")
    return [
        {"destination": d, "cache": str(cache), "rows": str(folder / ROWS_FILE), "manifest": str(manifest),
         "images": len(rows)}
        for d in env.config.render_targets
    ]


def finish_renders(env: Any) -> dict[str, Any]:
    """After every destination got the images: record them in the ledger; fail naming what failed.

    Nothing is recorded on a dry run or in ``render: existing`` mode.
    """
    from threekit_pipeline.pipelines.ledgers import open_ledger

    folder = env.run_dir("render_on_demand")
    rows_path, failures_path = folder / ROWS_FILE, folder / FAILURES_FILE
    rows = json.loads(rows_path.read_text(encoding="utf-8")) if rows_path.exists() else []
    failures = json.loads(failures_path.read_text(encoding="utf-8")) if failures_path.exists() else []
    recorded = 0
    if rows and not env.dry_run:
        with open_ledger(env.config, LEDGER_NAME) as ledger:
            recorded = ledger.record(((r["key"], r["hash"]) for r in rows), run_id=env.run_id)
    if failures:
        raise RendersFailed(
            f"{len(failures)} render(s) failed or timed out ({recorded} delivered): "
            + "; ".join(f"SKU {f['sku']} configuration {f['configuration']}: {f['reason']}" for f in failures[:10])
        )
    return {"delivered": len(rows), "recorded": recorded}


def manifest_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a manifest CSV (for checks and tests)."""
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
