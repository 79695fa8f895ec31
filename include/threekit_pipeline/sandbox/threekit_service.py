"""Business operations of the threekit-sandbox: product imports, jobs, asset imports,
pricebooks, asset deletion and translations, on top of :class:`~.threekit_store.Store`.

What the sandbox answers is limited to what public evidence shows Threekit answering
(``docs/threekit-fidelity.md``): an import's result is the array of created/updated items
``{id, name, metadata}``; failures show only in the job (``taskResultFailures``) and its
runs (``resultCode``, ``resultMessage``); nothing renders a layer (layers come from render
jobs only). ``detailed_errors`` (CLI ``--detailed-errors``) is a local debugging aid that
puts the validation details back into 422 messages and run messages; it is off by default.

Jobs are processed by a background worker. A job's whole effect (every applied entry,
its result file and its final state) is written in one transaction, so a job interrupted
by a shutdown is simply processed again after the restart and never applies an entry twice.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
import time
import uuid
from typing import Any

from threekit_pipeline.sandbox.threekit_catalog import (
    PRODUCT_TYPES,
    EntryError,
    content_of,
    layer_configuration,
    merge_product,
    new_item,
    result_item,
    translatable_strings,
    validate_entry,
)
from threekit_pipeline.sandbox.threekit_png import RENDER_HEIGHT, RENDER_WIDTH, render_item_png
from threekit_pipeline.sandbox.threekit_store import Store, utc_now

log = logging.getLogger(__name__)

# The import formats Threekit documents ("Importing Assets", community.threekit.com/
# platform-documentation/project-data/assets/asset-management/importing-assets), by the
# kind of asset the sandbox makes of them. ``.svg`` is listed both as a model and an image
# format; the sandbox makes a vector asset of it. ``.zip`` has "limited support".
MODEL_EXTENSIONS = {
    "dxf", "fbx", "gltf", "gltfzip", "glb", "iges", "igs", "obj", "objzip", "pbrtex", "pbrmat",
    "pbrzip", "stl", "step", "stp", "usdz", "usda", "usdc", "vccglb", "vrscene", "vrscenezip", "zip",
}
TEXTURE_EXTENSIONS = {"exr", "gif", "hdr", "jpg", "jpeg", "png"}
FONT_EXTENSIONS = {"otf", "ttf"}
VECTOR_EXTENSIONS = {"svg"}
GENERIC_422_MESSAGE = "Invalid product data"
# Pricebooks of a new sandbox org. Threekit has no public API to create a pricebook (they are
# made in the platform UI), so the sandbox seeds these; ``--pricebook`` replaces them.
DEFAULT_PRICEBOOKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("EU Retail", ("EUR",)),
    ("US Retail", ("USD",)),
    ("EU Trade", ("EUR",)),
    ("UK Retail", ("GBP",)),
    ("endkunden-de", ("EUR", "CHF")),
    ("fachhandel-de", ("EUR", "CHF")),
    ("pim-retail", ("EUR", "USD", "GBP", "CHF")),
)
MAX_REPORTED_ERRORS = 50
PROGRESS_EVERY = 500


def pricebook_id(org_id: str, name: str) -> str:
    """A stable UUID for a seeded pricebook (same org and name -> same id across restarts)."""
    return str(uuid.uuid5(uuid.UUID(int=0), f"threekit-sandbox/{org_id}/pricebook/{name}"))


class ImportRejected(Exception):
    """A synchronous import with invalid entries; nothing was written."""

    def __init__(self, messages: list[str]) -> None:
        shown = messages[:MAX_REPORTED_ERRORS]
        text = "; ".join(shown)
        if len(messages) > len(shown):
            text += f"; ... and {len(messages) - len(shown)} more"
        super().__init__(text)
        self.messages = messages


class TranslationsRejected(Exception):
    """A translations CSV that cannot be read (names the row and the reason)."""


def _sync_flag(value: Any, default: bool = True) -> bool:
    """Threekit's ``sync`` flag: only an explicit false value means asynchronous."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return str(value).strip().lower() not in ("false", "0", "no", "off")


def parse_sync_flag(value: Any, default: bool = True) -> bool:
    """Public alias of the ``sync`` flag parser (used by the HTTP layer)."""
    return _sync_flag(value, default)


class _StoredItems:
    """Query matching for one import, answered by the store's indexes (one query per entry).

    Writes go through the same connection (and transaction) as the lookups, so an item created
    or changed by an earlier entry of the import is seen by the later ones; ``add``/``remove``
    have nothing to do.
    """

    def __init__(self, store: Store, conn) -> None:
        self.store = store
        self.conn = conn

    def find(self, query: dict[str, Any], product_name: str | None) -> dict[str, Any] | None:
        """The oldest live product-type asset matching every criterion of ``query``."""
        return self.store.match_item(self.conn, PRODUCT_TYPES, query, product_name)

    def add(self, item: dict[str, Any]) -> None:
        """Nothing to do: the store indexed ``item`` when it was written."""

    def remove(self, item: dict[str, Any]) -> None:
        """Nothing to do: the store re-indexes an asset when it is written."""


def _product_name(raw: Any) -> str | None:
    if isinstance(raw, dict) and isinstance(raw.get("product"), dict):
        name = raw["product"].get("name")
        return name if isinstance(name, str) else None
    return None


class Sandbox:
    """The sandbox's state machine (everything except HTTP)."""

    def __init__(
        self,
        store: Store,
        job_delay_ms: int = 200,
        *,
        detailed_errors: bool = False,
        pricebooks: tuple[tuple[str, tuple[str, ...]], ...] | None = None,
        sync_partial: bool = False,
    ) -> None:
        self.store = store
        self.sync_partial = sync_partial
        self.org_id = store.org_id
        self.job_delay_ms = job_delay_ms
        self.detailed_errors = detailed_errors
        self.seed_pricebooks = DEFAULT_PRICEBOOKS if pricebooks is None else tuple(pricebooks)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._seed()

    # -- state ----------------------------------------------------------------------------
    def _seed(self) -> None:
        """Create the seed pricebooks when the org has none (first start, after a reset)."""
        with self.store.write() as conn:
            if self.store.pricebooks(conn):
                return
            now = utc_now()
            for name, currencies in self.seed_pricebooks:
                self.store.put_pricebook(conn, self._pricebook(name, currencies, now))

    def _pricebook(self, name: str, currencies: tuple[str, ...] | list[str], now: str) -> dict[str, Any]:
        return {
            "id": pricebook_id(self.org_id, name),
            "name": name,
            "orgId": self.org_id,
            "currencies": list(currencies),
            "createdAt": now,
            "createdBy": None,
            "deletedAt": None,
        }

    def reset(self) -> None:
        """Forget everything, then seed the pricebooks again."""
        self.store.reset()
        self._seed()

    def pricebooks(self) -> list[dict[str, Any]]:
        """The org's pricebooks, oldest first."""
        with self.store.connection() as conn:
            return self.store.pricebooks(conn)

    def add_pricebooks(self, books: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
        """Add (or replace by name) pricebooks; stands in for the platform UI in tests."""
        now = utc_now()
        created = [self._pricebook(name, currencies, now) for name, currencies in books]
        with self.store.write() as conn:
            for book in created:
                self.store.put_pricebook(conn, book)
        return created

    def _pricebook_ids(self, conn) -> set[str]:
        return {book["id"] for book in self.store.pricebooks(conn)}

    def public_message(self, messages: list[str]) -> str:
        """The 422 message: Threekit's generic one, or the details with ``detailed_errors``."""
        if not self.detailed_errors:
            return GENERIC_422_MESSAGE
        return str(ImportRejected(messages))

    # -- assets ---------------------------------------------------------------------------
    def delete_asset(self, asset_id: str) -> dict[str, Any] | None:
        """Soft-delete an asset (``deletedAt`` set); None when it is unknown or already deleted."""
        with self.store.write() as conn:
            asset = self.store.get_asset(conn, asset_id)
            if asset is None:
                return None
            now = utc_now()
            asset.update({"deletedAt": now, "updatedAt": now})
            self.store.update_asset(conn, asset)
        log.info("asset %s deleted (restorable)", asset_id)
        return asset

    def restore_asset(self, asset_id: str) -> dict[str, Any] | None:
        """Undo a soft delete; None when no asset (deleted or not) has that id."""
        with self.store.write() as conn:
            asset = self.store.get_asset(conn, asset_id, include_deleted=True)
            if asset is None:
                return None
            if asset.get("deletedAt"):
                asset.update({"deletedAt": None, "updatedAt": utc_now()})
                self.store.update_asset(conn, asset)
                log.info("asset %s restored", asset_id)
        return asset

    # -- render stand-in (admin) ----------------------------------------------------------
    def render_stand_in(self, asset_ids: list[str] | None, tags: list[str] | None) -> list[dict[str, Any]]:
        """Give items a stub PNG layer, standing in for a render job (admin/test hook only).

        Threekit makes layers only through render jobs (reference sections 6-7); the sandbox
        never draws one on import. Until it runs render jobs, tests and the demo call this
        (``POST /_sandbox/render``). Each item's layer shows it at its default configuration;
        an unchanged item keeps its layer and file.
        """
        wanted_ids = set(asset_ids or ())
        wanted_tags = set(tags or ())
        now = utc_now()
        layers = []
        with self.store.write() as conn:
            for item in self.store.assets(conn, ["item"]):
                if wanted_ids and item["id"] not in wanted_ids:
                    continue
                if wanted_tags and not wanted_tags.intersection(item["tags"]):
                    continue
                layers.append(self._stand_in_layer(conn, item, now))
        log.info("render stand-in: %d layer(s)", len(layers))
        return layers

    def _stand_in_layer(self, conn, item: dict[str, Any], now: str) -> dict[str, Any]:
        configuration = layer_configuration(item)
        hex_digest, size = self.store.put_bytes_blob(render_item_png(item["name"], configuration))
        file = self.store.register_file(conn, hex_digest, size, f"render-{item['id']}.png", "image/png")
        existing = self.store.layer_of(conn, item["id"])
        if existing is not None and existing["fileId"] == file["id"]:
            return existing
        layer = {
            "id": str(uuid.uuid4()),
            "assetId": item["id"],
            "assetLayer": None,
            "assetLayerConfiguration": configuration,
            "stageId": None,
            "stageConfiguration": {},
            "metadata": {},
            "orgId": self.org_id,
            "jobId": None,
            "fileId": file["id"],
            "format": "png",
            "width": RENDER_WIDTH,
            "height": RENDER_HEIGHT,
            "createdAt": now,
        }
        self.store.put_layer(conn, layer)
        return layer

    # -- product import -------------------------------------------------------------------
    def _apply(
        self, conn, index: _StoredItems, entry: dict[str, Any], position: int, job_id: str | None, now: str
    ) -> tuple[str, dict[str, Any]]:
        """Upsert one validated entry; returns ("created"|"updated", item)."""
        query, product = entry["query"], entry["product"]
        match = index.find(query, product.get("name"))
        if match is None:
            if "name" not in product:
                raise EntryError([f"entry {position}: product.name: is required to create a new item"])
            item_id = query.get("id")
            if item_id and self.store.asset_id_taken(conn, item_id):
                raise EntryError(
                    [f"entry {position}: query.id: {item_id} is the id of an asset that is not an item"]
                )
            item = merge_product(new_item(item_id, self.org_id, now), product)
            item = self.store.insert_asset(conn, item)
            index.add(item)
            return "created", item
        merged = merge_product(match, product)
        if content_of(merged) != content_of(match):
            merged["updatedAt"] = now
            self.store.update_asset(conn, merged)
            index.remove(match)
            index.add(merged)
        return "updated", merged

    def import_sync(self, raw_entries: list[Any]) -> list[dict[str, Any]]:
        """Validate and apply the entries; returns the created/updated items.

        GUESS (no public evidence either way), selected by ``sync_partial``: by default a
        synchronous import with an invalid entry writes nothing (:class:`ImportRejected`,
        answered 422); with ``sync_partial`` (CLI ``--sync-partial``) the valid entries land
        and the invalid ones are only absent from the answer, as in a job's result file.
        """
        messages: list[str] = []
        entries = []
        with self.store.connection() as conn:
            books = self._pricebook_ids(conn)
        for position, raw in enumerate(raw_entries):
            try:
                entries.append(validate_entry(raw, position, self.org_id, books))
            except EntryError as exc:
                messages.extend(exc.messages)
        if messages and self.sync_partial and entries:
            log.info("synchronous import: %d problem(s); applying the %d valid entries", len(messages), len(entries))
            messages = []
        if messages:
            log.info(
                "synchronous import of %d entries rejected: %d problem(s)", len(raw_entries), len(messages)
            )
            raise ImportRejected(messages)
        now = utc_now()
        created = updated = 0
        results = []
        with self.store.write() as conn:
            index = _StoredItems(self.store, conn)
            for position, entry in enumerate(entries):
                try:
                    status, item = self._apply(conn, index, entry, position, None, now)
                except EntryError as exc:
                    messages.extend(exc.messages)
                    continue
                created += status == "created"
                updated += status == "updated"
                results.append(item)
            if messages and not (self.sync_partial and results):
                raise ImportRejected(messages)  # rolls the transaction back
        log.info("synchronous import: %d created, %d updated", created, updated)
        return results

    # -- jobs -----------------------------------------------------------------------------
    def _new_job(
        self, job_type: str, title: str, task_count: int, parameters: dict[str, Any]
    ) -> dict[str, Any]:
        now = utc_now()
        return {
            "id": str(uuid.uuid4()),
            "type": job_type,
            "title": title,
            "orgId": self.org_id,
            "createdBy": None,
            "createdAt": now,
            "updatedAt": now,
            "parameters": parameters,
            "priority": 0,
            "schedulerState": "active",
            "status": "pending",
            "taskCount": task_count,
            "taskProgress": None,
            "taskStatusPending": task_count,
            "taskStatusRunning": 0,
            "taskStatusStopped": 0,
            "taskResultSuccesses": 0,
            "taskResultFailures": 0,
            "tasks": [],
            "duration": None,
            "timeElapsed": None,
            "timeRemaining": None,
        }

    def _schedule(self, conn, job: dict[str, Any], payload: Any, delay_ms: int | None = None) -> None:
        delay = (self.job_delay_ms if delay_ms is None else delay_ms) / 1000.0
        started = time.time()
        self.store.insert_job(conn, job, payload, running_at=started + delay / 2, due_at=started + delay)

    def create_catalog_job(self, raw_entries: list[Any], source: bytes, filename: str) -> dict[str, Any]:
        """Queue a catalog-import job for ``raw_entries`` (``source``: the uploaded JSON)."""
        with self.store.write() as conn:
            hex_digest, size = self.store.put_bytes_blob(source)
            file = self.store.register_file(conn, hex_digest, size, filename, "application/json")
            job = self._new_job(
                "catalog-import",
                f"Catalog import of {len(raw_entries)} entries",
                len(raw_entries),
                {"fileId": file["id"], "sync": False, "entryCount": len(raw_entries)},
            )
            self._schedule(conn, job, {"entries": raw_entries})
        log.info("catalog-import job %s queued with %d entries", job["id"], len(raw_entries))
        self._wake.set()
        return job

    def create_asset_job(self, file_id: str, title: str | None, asset_id: str | None, settings: dict) -> dict:
        """Queue an asset-import job turning an uploaded file into a model or texture asset."""
        with self.store.write() as conn:
            file = self.store.get_file(conn, file_id)
            job = self._new_job(
                "asset-import",
                title or f"Import {file['filename'] if file else file_id}",
                1,
                {"fileId": file_id, "assetId": asset_id, "settings": settings},
            )
            self._schedule(conn, job, {"fileId": file_id, "assetId": asset_id})
        log.info("asset-import job %s queued for file %s", job["id"], file_id)
        self._wake.set()
        return job

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        """A job by id."""
        with self.store.connection() as conn:
            return self.store.get_job(conn, job_id)

    def _finish(self, job: dict[str, Any], successes: int, failures: int, now: str) -> None:
        job.update(
            {
                "status": "stopped",
                "updatedAt": now,
                "taskProgress": 1,
                "taskStatusPending": 0,
                "taskStatusRunning": 0,
                "taskStatusStopped": job["taskCount"],
                "taskResultSuccesses": successes,
                "taskResultFailures": failures,
                "timeRemaining": 0,
            }
        )

    def _run(self, job: dict[str, Any], code: str, message: str, results: dict[str, Any], now: str) -> dict:
        return {
            "id": str(uuid.uuid4()),
            "jobId": job["id"],
            "taskId": None,
            "orgId": self.org_id,
            "resultCode": code,
            "resultMessage": message,
            "results": results,
            "createdAt": now,
            "updatedAt": now,
        }

    def _run_catalog_import(self, conn, job: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        """Apply a job's entries; the result file lists only the created/updated items.

        Public shape (JTK ``process_API_Items``): a JSON array of ``{id, name, metadata}``;
        a failed entry is absent from it and counted in ``taskResultFailures``. The run's
        ``resultCode`` is ``Failed`` when any entry failed.
        """
        entries = payload.get("entries") or []
        now = utc_now()
        index = _StoredItems(self.store, conn)
        books = self._pricebook_ids(conn)
        results: list[dict[str, Any]] = []
        problems: list[str] = []
        successes = failures = 0
        for position, raw in enumerate(entries):
            try:
                entry = validate_entry(raw, position, self.org_id, books)
                _status, item = self._apply(conn, index, entry, position, job["id"], now)
            except EntryError as exc:
                failures += 1
                problems.extend(exc.messages)
            else:
                successes += 1
                results.append(result_item(item))
            if (position + 1) % PROGRESS_EVERY == 0:
                log.info("job %s: %d of %d entries processed", job["id"], position + 1, len(entries))
        content = json.dumps(results, ensure_ascii=False, indent=1).encode("utf-8")
        hex_digest, size = self.store.put_bytes_blob(content)
        file = self.store.register_file(
            conn, hex_digest, size, f"catalog-import-{job['id']}.json", "application/json"
        )
        self._finish(job, successes, failures, now)
        if failures:
            # GUESS: the text of a failed run's resultMessage is not published.
            code = "Failed"
            message = (
                self.public_message(problems) if self.detailed_errors else f"{failures} task(s) failed"
            )
        else:
            code, message = "Success", ""
        log.info("catalog-import job %s finished: %d succeeded, %d failed", job["id"], successes, failures)
        if problems:
            log.info("job %s problems: %s", job["id"], "; ".join(problems[:MAX_REPORTED_ERRORS]))
        return self._run(job, code, message, {"files": [file]}, now)

    def _run_asset_import(self, conn, job: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        now = utc_now()
        file = self.store.get_file(conn, payload["fileId"])

        def failed(message: str) -> dict[str, Any]:
            self._finish(job, 0, 1, now)
            log.info("asset-import job %s failed: %s", job["id"], message)
            return self._run(job, "Failed", message, {"files": [file] if file else []}, now)

        if file is None:
            return failed(f"file {payload['fileId']} not found")
        extension = (file["extension"] or "").lower()
        if extension in MODEL_EXTENSIONS:
            kind = "model"
        elif extension in TEXTURE_EXTENSIONS:
            kind = "texture"
        elif extension in FONT_EXTENSIONS:
            kind = "font"
        elif extension in VECTOR_EXTENSIONS:
            kind = "vector"
        else:
            return failed(
                f"unsupported file type .{extension}" if extension else "unsupported file type (none)"
            )
        if file["size"] == 0:
            return failed("file is empty")
        target_id = payload.get("assetId")
        if target_id:
            asset = self.store.get_asset(conn, target_id)
            if asset is None:
                return failed(f"asset {target_id} not found")
        else:
            # Like Threekit's importer, an asset is matched by its name (the file name).
            candidates = self.store.assets(conn, [kind], name=file["filename"])
            asset = candidates[0] if candidates else None
        if asset is None:
            asset = new_item(None, self.org_id, now)
            asset.update(
                {
                    "type": kind,
                    "name": file["filename"],
                    "importedFileId": file["id"],
                    "fileSize": file["size"],
                }
            )
            asset = self.store.insert_asset(conn, asset)
        else:
            asset.update(
                {"type": kind, "importedFileId": file["id"], "fileSize": file["size"], "updatedAt": now}
            )
            self.store.update_asset(conn, asset)
        self._finish(job, 1, 0, now)
        log.info("asset-import job %s: %s asset %s from %s", job["id"], kind, asset["id"], file["filename"])
        # Runs report the job's files only (RESTPKG getJobOutputFiles); the asset is found
        # by ``GET /api/assets?importedFileId=<file id>``.
        return self._run(job, "Success", "", {"files": [file]}, now)

    # -- render jobs (reference sections 6-7) ---------------------------------------------
    def set_render_faults(self, faults: dict[str, str]) -> None:
        """Test hook: ``{asset id: "fail" | "hang"}`` makes that asset's render jobs fail or never end."""
        self._render_faults = dict(faults)

    def create_render_job(self, asset_id: str, renderer: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Queue a render job of one item (None when the item is unknown or deleted).

        ``payload``: ``configurations`` (list of ``{attribute: value}``), ``stageId``,
        ``stageConfiguration``, ``width``, ``height``, ``format``. After the job delay it
        leaves one PNG layer per configuration (``jobId`` set), replacing the item's layer of
        the same configuration and stage.
        """
        with self.store.write() as conn:
            item = self.store.get_asset(conn, asset_id)
            if item is None:
                return None
            configurations = payload["configurations"]
            job = self._new_job("render", f"Render {item['name']} ({renderer})", len(configurations), {"assetId": asset_id})
            self._schedule(conn, job, {**payload, "assetId": asset_id, "renderer": renderer})
        log.info("render job %s queued for %s: %d configuration(s)", job["id"], asset_id, len(configurations))
        self._wake.set()
        return job

    def _run_render(self, conn, job: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any] | None:
        now = utc_now()
        fault = getattr(self, "_render_faults", {}).get(payload["assetId"])
        if fault == "hang":
            return None
        item = self.store.get_asset(conn, payload["assetId"])
        if item is None or fault == "fail":
            self._finish(job, 0, job["taskCount"], now)
            message = "render failed: asset not found" if item is None else "render failed: V-Ray task error"
            return self._run(job, "Failed", message, {"files": []}, now)
        files = []
        width, height = int(payload.get("width") or RENDER_WIDTH), int(payload.get("height") or RENDER_HEIGHT)
        for configuration in payload["configurations"]:
            hex_digest, size = self.store.put_bytes_blob(render_item_png(item["name"], configuration))
            name = f"render-{item['id']}-{hex_digest[:12]}.png"
            file = self.store.register_file(conn, hex_digest, size, name, "image/png")
            files.append(file)
            self.store.put_render_layer(
                conn,
                {
                    "id": str(uuid.uuid4()),
                    "assetId": item["id"],
                    "assetLayer": None,
                    "assetLayerConfiguration": configuration,
                    "stageId": payload.get("stageId") or None,
                    "stageConfiguration": payload.get("stageConfiguration") or {},
                    "metadata": {},
                    "orgId": self.org_id,
                    "jobId": job["id"],
                    "fileId": file["id"],
                    # The sandbox draws PNGs only; the requested size is recorded as asked.
                    "format": "png",
                    "width": width,
                    "height": height,
                    "createdAt": now,
                },
            )
        self._finish(job, len(files), 0, now)
        return self._run(job, "Success", "", {"files": files}, now)

    def process_job(self, job_id: str) -> None:
        """Process a pending or running job now (no-op when it is already stopped)."""
        with self.store.write() as conn:
            row = self.store.job_row(conn, job_id)
            if row is None or row["status"] not in ("pending", "running"):
                return
            job = json.loads(row["data"])
            payload = json.loads(row["payload"])
            if job["type"] == "catalog-import":
                run = self._run_catalog_import(conn, job, payload)
            elif job["type"] == "render":
                run = self._run_render(conn, job, payload)
                if run is None:  # a "hang" fault: the job stays running
                    return
            else:
                run = self._run_asset_import(conn, job, payload)
            self.store.save_job(conn, job, run)

    def _fail_job(self, job_id: str, message: str) -> None:
        with self.store.write() as conn:
            job = self.store.get_job(conn, job_id)
            if job is None or job["status"] == "stopped":
                return
            now = utc_now()
            self._finish(job, 0, job["taskCount"], now)
            self.store.save_job(conn, job, self._run(job, "Failed", message, {"files": []}, now))

    def _mark_running(self, job_id: str) -> None:
        with self.store.write() as conn:
            job = self.store.get_job(conn, job_id)
            if job is None or job["status"] != "pending":
                return
            job.update(
                {
                    "status": "running",
                    "updatedAt": utc_now(),
                    "taskStatusPending": 0,
                    "taskStatusRunning": job["taskCount"],
                    "taskProgress": 0,
                }
            )
            self.store.save_job(conn, job)

    def cancel_job(self, job_id: str) -> dict[str, Any] | None:
        """Stop a pending or running job without applying anything; returns the job."""
        with self.store.write() as conn:
            job = self.store.get_job(conn, job_id)
            if job is None or job["status"] == "stopped":
                return job
            now = utc_now()
            # Cancelled tasks count as failures, so "stopped without failures" still means success.
            self._finish(job, 0, job["taskCount"], now)
            self.store.save_job(
                conn,
                job,
                self._run(job, "Cancelled", "job cancelled before it was processed", {"files": []}, now),
            )
        log.info("job %s cancelled", job_id)
        return job

    def process_due_jobs(self) -> float:
        """Advance every job whose time has come; returns seconds until the next event."""
        with self.store.connection() as conn:
            rows = self.store.unfinished_jobs(conn)
        next_event = 1.0
        for row in rows:
            now = time.time()
            try:
                if row["due_at"] <= now:
                    self.process_job(row["id"])
                    continue
                if row["status"] == "pending" and row["running_at"] <= now:
                    self._mark_running(row["id"])
                    next_event = min(next_event, row["due_at"] - now)
                elif row["status"] == "pending":
                    next_event = min(next_event, row["running_at"] - now)
                else:
                    next_event = min(next_event, row["due_at"] - now)
            except Exception:
                log.exception("job %s could not be processed; marking it failed", row["id"])
                self._fail_job(row["id"], "internal error while processing the job")
        return max(next_event, 0.005)

    def start_worker(self) -> None:
        """Start the background job worker (also resumes jobs left unfinished by a restart)."""
        with self.store.connection() as conn:
            left = len(self.store.unfinished_jobs(conn))
        if left:
            log.info("resuming %d unfinished job(s)", left)
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="threekit-sandbox-jobs", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.process_due_jobs()
            except Exception:
                log.exception("job worker iteration failed")
                wait = 1.0
            self._wake.wait(timeout=wait)
            self._wake.clear()

    def stop_worker(self, timeout: float = 10) -> None:
        """Stop the job worker (a job being processed finishes its transaction first)."""
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout)

    # -- translations ---------------------------------------------------------------------
    def translations_csv(self, asset_id: str | None = None) -> str | None:
        """The translations CSV of the organization (or one asset; None if it is unknown)."""
        with self.store.connection() as conn:
            if asset_id is not None:
                item = self.store.get_asset(conn, asset_id)
                if item is None:
                    return None
                items = [item]
            else:
                items = self.store.assets(conn, ["item"])
            locales = self.store.locales(conn)
            stored = self.store.translations(conn)
        keys: set[str] = set()
        for item in items:
            keys |= translatable_strings(item)

        def cell(value: str) -> str:
            return '"' + value.replace('"', '""') + '"' if value else ""

        lines = [",".join(cell(v) for v in ["Canonical Name", *locales])]
        for key in sorted(keys):
            lines.append(",".join([cell(key), *(cell(stored.get((key, loc), "")) for loc in locales)]))
        return "\n".join(lines) + "\n"

    def translations_for(self, locale: str) -> dict[str, str]:
        """``{canonical: translated}`` for one locale."""
        with self.store.connection() as conn:
            stored = self.store.translations(conn)
        return {key: value for (key, loc), value in stored.items() if loc == locale}

    def import_translations(self, text: str) -> list[dict[str, Any]]:
        """Store the translations of a CSV (``Canonical Name`` + one column per locale)."""
        try:
            rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        except csv.Error as exc:
            raise TranslationsRejected(f"malformed CSV: {exc}") from None
        numbered = [(number, row) for number, row in enumerate(rows, start=1) if any(c.strip() for c in row)]
        if not numbered:
            raise TranslationsRejected('the CSV is empty; expected a header with "Canonical Name"')
        header_number, header = numbered[0]
        header = [h.strip() for h in header]
        key_column = next((i for i, h in enumerate(header) if h.lower() == "canonical name"), None)
        if key_column is None:
            raise TranslationsRejected(f'row {header_number}: the header has no "Canonical Name" column')
        locales: dict[int, str] = {}
        for i, name in enumerate(header):
            if i == key_column:
                continue
            if not name:
                raise TranslationsRejected(f"row {header_number}: column {i + 1} has no locale name")
            if name in locales.values():
                raise TranslationsRejected(f"row {header_number}: locale {name!r} appears twice")
            locales[i] = name
        pending: list[tuple[str, str, str]] = []
        for number, row in numbered[1:]:
            if len(row) > len(header) and any(c.strip() for c in row[len(header) :]):
                raise TranslationsRejected(f"row {number}: {len(row)} cells but the header has {len(header)}")
            key = row[key_column].strip() if key_column < len(row) else ""
            values = {locales[i]: row[i] for i in locales if i < len(row) and row[i].strip()}
            if not key:
                if values:
                    raise TranslationsRejected(f"row {number}: translations without a Canonical Name")
                continue
            pending.extend((key, locale, value) for locale, value in values.items())
        with self.store.write() as conn:
            for locale in locales.values():
                self.store.add_locale(conn, locale)
            stored = [self.store.put_translation(conn, key, locale, value) for key, locale, value in pending]
        log.info(
            "translations imported: %d value(s) for locale(s) %s", len(stored), ", ".join(locales.values())
        )
        return stored
