"""Task logic of the ``threekit_catalog_import`` DAG: ERP catalog files on FTP -> Threekit products.

Steps (one function per DAG task; each takes a :class:`~threekit_pipeline.pipelines.runtime.TaskEnv`
and open clients, so everything below runs and is tested without a scheduler):

1. :func:`plan_run` decides how files are selected (everything waiting vs. an interval replay,
   see :mod:`threekit_pipeline.pipelines.inbound`) and whether the completeness sensor waits.
2. :func:`collect_files` selects the files and downloads them to the run's staging folder.
3. :func:`transform_and_plan` transforms each stamp batch (oldest first) to import entries,
   keeps only products whose content hash differs from the ledger's (param
   ``force_full_resend`` ignores it) and writes chunk files of ``batch_size`` entries.
4. :func:`import_chunk` (one mapped task per chunk) imports a chunk and records in the ledger
   the entries Threekit confirmed (created/updated).
5. :func:`finalize` moves each source file to the archive (only when every chunk landed),
   quarantines rejected files with their errors CSV, and uploads the run report.

Nothing but paths and small summaries leaves a task. Everything a task writes lives under
``<staging>/<dag_id>/<run>/`` and is rebuilt when the task runs again; the ledger
(``<staging>/ledger/catalog_import.sqlite``) is shared by all runs.

When several stamp batches of one run carry the same SKU, one entry is sent: the batches'
entries merged oldest to newest the way Threekit applies successive imports (fields of a
newer entry replace older ones, metadata and attributes merge by name, Pricing by
pricebook and currency). Sending each version separately could race in parallel chunks; a
newer batch that carries only prices must not drop what an older batch set.

Across runs the ledger remembers, per SKU, the stamp of the batch that set its content and
the Pricing values Threekit confirmed:

* a batch older than that stamp does not overwrite the SKU: its rows are held and reported
  ("older than what Threekit holds"); a replay/backfill run (an explicit request) applies it;
* a price file that carries only some pricebooks (or currencies) changes only those: the
  entry's Pricing is merged with the confirmed one before it is sent.

A file none of whose entries landed in Threekit is quarantined with the reasons; a file some
of whose rows or entries were rejected or held is archived as ``partially imported``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from threekit_pipeline.pipelines.config import PipelineConfig
from threekit_pipeline.pipelines.inbound import (
    InboundFile,
    SelectionWindow,
    archive_file,
    group_by_stamp,
    hold_back_incomplete_batches,
    matches_patterns,
    reject_file,
    select_inbound_files,
    selection_window,
)
from threekit_pipeline.pipelines.ledgers import open_ledger
from threekit_pipeline.pipelines.reports import (
    MAX_NOTIFIED_REASONS,
    REJECTED_COLUMNS,
    FileOutcome,
    RejectedRow,
    RunReport,
    format_table,
    read_rejections_csv,
    reason_line,
    upload_report,
    write_csv,
)
from threekit_pipeline.pipelines.run_summary import log_rejections, summarize, sync_view_url

log = logging.getLogger(__name__)

DAG_ID = "threekit_catalog_import"
SOURCE = "catalog"
LEDGER_NAME = "catalog_import"
# Reports go to <reports>/catalog_import/<run>.{json,csv,errors.csv}.
REPORTS_SUBDIR = "catalog_import"
TABLE_ROWS = 20

COLLECTED_FILE = "collected.json"
PLAN_FILE = "plan.json"
#: ``sku,file,line`` of every product of the run (created, updated or unchanged): where it came from.
SOURCES_FILE = "sources.csv"
# Written when collect_files finds nothing: finalize then skips instead of failing the run.
NOTHING_FILE = "nothing_to_process.json"
# Outcomes meaning "the product is in Threekit": ``imported`` comes from synchronous imports
# (sync mode, or isolating the invalid entries of a refused batch), whose answer does not
# say whether the item was new.
CONFIRMED = ("created", "updated", "imported")


class NothingToProcess(Exception):
    """No file to process in this run (the DAG task turns this into a skip)."""


class ImportIncomplete(RuntimeError):
    """Some chunks did not land in Threekit; every source file was left where it was."""


class FilesNotPrepared(ImportIncomplete):
    """Collecting or transforming the files failed, so there is no import plan; nothing was moved."""


# --- helpers ----------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def _read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def mapping_patterns(mapping: Any) -> list[str]:
    """The file-name globs of a transform mapping (every source it reads), in mapping order.

    Each glob also comes in its gzip form (``products*.csv`` -> ``products*.csv.gz``): the
    transform reads compressed files, so they must not be left unnoticed in the inbound folder.
    """
    patterns: list[str] = []
    # Export layouts (``inputs:``) read their files first, then the canonical sources.
    readers = [*getattr(mapping, "inputs", ()), *getattr(mapping, "sources", {}).values()]
    for source in readers:
        for pattern in source.patterns:
            for candidate in (pattern, f"{pattern}.gz"):
                if candidate not in patterns:
                    patterns.append(candidate)
    return patterns


def processing_day(env: Any) -> date:
    """The day unstamped files of this run are archived under (stable across retries)."""
    return env.run_moment.astimezone(UTC).date()


# --- 1. plan ---------------------------------------------------------------------------------


def _selection(env: Any) -> tuple[SelectionWindow, list[str]]:
    from threekit_pipeline.transform import load_mapping

    window = selection_window(env.run_type, env.params, env.data_interval_start, env.data_interval_end)
    # A feed's own patterns narrow the pick-up; without them the mapping's patterns apply.
    feed_patterns = getattr(getattr(env, "feed", None), "patterns", None)
    if feed_patterns:
        return window, list(feed_patterns)
    return window, mapping_patterns(load_mapping(env.config.mapping))


def plan_run(env: Any) -> list[dict[str, Any]]:
    """The completeness sensor's arguments: one set when the run waits for files, none otherwise.

    The DAG expands the sensor over this list, so a replay, backfill or ``file`` run has no
    sensor instance at all.
    """
    config: PipelineConfig = env.config
    window, patterns = _selection(env)
    flags = [name for name in ("dry_run", "force_full_resend") if getattr(env, name)]
    if flags:
        log.info("Run flags: %s", ", ".join(flags))
    if env.only_file:
        log.info("Param file=%r: processing that file only, no waiting", env.only_file)
        return []
    if window.replay:
        log.info("%s: %s, no waiting", window.reason, window.describe())
        return []
    from threekit_pipeline.pipelines.runtime import truthy

    if truthy(env.param("confirm_retire", False)):
        log.info("Param confirm_retire: applying the pending retirement, no waiting for files")
        return []
    log.info(
        "Waiting for complete files matching %s in %s (stable %.0f s, timeout %.0f s)",
        patterns,
        config.folder("inbound_catalog"),
        config.stable_seconds,
        config.sensor_timeout_seconds,
    )
    return [
        {
            "ftp_conn_id": config.ftp_conn_id,
            "path": config.folder("inbound_catalog"),
            "patterns": patterns,
            "stable_seconds": config.stable_seconds,
            "marker_suffixes": list(config.marker_suffixes),
            "poke_interval": config.poke_interval_seconds,
            "timeout": config.sensor_timeout_seconds,
        }
    ]


# --- 2. collect ------------------------------------------------------------------------------


def _flatten_sensor_output(sensor_output: Any) -> list[Any] | None:
    """The complete files reported by the (mapped) sensor; None when it did not succeed.

    A mapped task's output arrives as a sequence of per-instance results; a skipped sensor
    (timeout) contributes nothing.
    """
    if sensor_output is None:
        return None
    results = [item for item in list(sensor_output) if item is not None]
    if not results:
        return None
    if all(isinstance(item, (list, tuple)) for item in results):
        return [entry for result in results for entry in result]
    return results


def collect_files(env: Any, sensor_output: Any, ftp: Any) -> dict[str, Any]:
    """Select this run's files and download them to ``<run>/downloads/``.

    Raises :class:`NothingToProcess` when nothing is selected (and notes it for :func:`finalize`).
    """
    # A re-run starts from scratch: later steps must never see a previous attempt's state.
    for stale in (COLLECTED_FILE, PLAN_FILE, NOTHING_FILE):
        (env.run_dir() / stale).unlink(missing_ok=True)
    try:
        return _collect_files(env, sensor_output, ftp)
    except NothingToProcess as exc:
        _write_json(env.run_dir() / NOTHING_FILE, {"reason": str(exc)})
        raise


def _collect_files(env: Any, sensor_output: Any, ftp: Any) -> dict[str, Any]:
    from threekit_pipeline.ftp.paths import safe_local_path

    config: PipelineConfig = env.config
    window, patterns = _selection(env)
    complete = None
    if not window.replay and not env.only_file:
        complete = _flatten_sensor_output(sensor_output)
        if complete is None:
            raise NothingToProcess("no complete catalog file arrived before the sensor timed out")
    day = processing_day(env)
    selected = select_inbound_files(
        ftp,
        inbound_dir=config.folder("inbound_catalog"),
        archive_root=config.folder("archive"),
        source=SOURCE,
        patterns=patterns,
        window=window,
        complete=complete,
        only_file=env.only_file,
        processing_day=day,
    )
    if complete is not None:
        waiting = [
            entry
            for entry in ftp.list_dir(config.folder("inbound_catalog"))
            if not entry.is_dir and matches_patterns(entry.name, patterns)
        ]
        # The sensor's list may be older than the folder (a retried task, another process).
        present = {entry.path: entry for entry in waiting}
        gone = [f for f in selected if f.path not in present]
        for item in gone:
            log.info("%s is no longer in the inbound folder; skipped", item.path)
        selected = [replace(f, size=present[f.path].size) for f in selected if f.path in present]
        selected, held = hold_back_incomplete_batches(selected, waiting)
        for item in held:
            log.info("Held back %s: another file stamped %s is still incomplete", item.name, item.stamp_label)
    if not selected:
        raise NothingToProcess(f"no catalog file to process ({window.describe()})")

    log.info(
        "Files found (%d):\n%s",
        len(selected),
        format_table(
            [
                {"file": f.name, "size": f.size, "stamp": f.stamp_label, "from": f.origin, "path": f.path}
                for f in selected
            ],
            ["file", "size", "stamp", "from", "path"],
            limit=200,
        ),
    )
    downloads = env.run_dir("downloads", fresh=True)
    collected = []
    for index, item in enumerate(selected, start=1):
        local = safe_local_path(downloads / f"{index:03d}", item.name)
        local.parent.mkdir(parents=True, exist_ok=True)
        ftp.download(item.path, local)
        size = local.stat().st_size
        if item.size is not None and size != item.size:
            raise OSError(f"{item.path}: downloaded {size} bytes but the server listed {item.size}")
        collected.append({**item.to_dict(), "local": str(local), "size": size})
        log.info("Downloaded %d/%d %s (%d bytes)", index, len(selected), item.name, size)
    path = env.run_dir() / COLLECTED_FILE
    _write_json(path, {"processing_day": day.isoformat(), "window": window.to_dict(), "files": collected})
    return {"collected": str(path), "files": len(collected), "bytes": sum(f["size"] for f in collected)}


def collected_from_local(env: Any, paths: Iterable[Path], folder: str = "/inbound/catalog") -> dict[str, str]:
    """What :func:`collect_files` hands on, for files already on local disk (no FTP, no selection).

    ``paths`` are taken as inbound files of ``folder``, unstamped, in the order given; returns
    ``{"collected": <path of the run's collected-files list>}`` for :func:`transform_and_plan`.
    Benchmarks and tests plan from local files this way.
    """
    files = [
        {"path": f"{folder.rstrip('/')}/{p.name}", "name": p.name, "size": p.stat().st_size, "modified": None,
         "stamp": None, "origin": "inbound", "local": str(p)}
        for p in paths
    ]
    path = env.run_dir() / COLLECTED_FILE
    _write_json(path, {"processing_day": env.day.isoformat(), "window": {"replay": False}, "files": files})
    return {"collected": str(path)}


# --- 3. transform + delta ----------------------------------------------------------------------


@dataclass
class _BatchResult:
    outcomes: list[FileOutcome]
    rejected: list[RejectedRow]
    entries: list[tuple[str, str, str]]  # (sku, content_hash, jsonl line)
    skus_by_file: dict[str, list[str]]
    lines: dict[str, tuple[str, int]]  # sku -> (inbound file, line) its product came from


def _read_hashes(path: Path) -> dict[str, str]:
    hashes: dict[str, str] = {}
    if path.exists():
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                hashes[row["sku"]] = row["content_hash"]
    return hashes


def _input_name(display_name: str) -> str:
    """The input file a transform error/outcome belongs to (zip members: ``archive.zip!member.csv``)."""
    return Path(str(display_name).split("!", 1)[0]).name


def _transform_batch(
    mapping: Any,
    files: Sequence[Mapping[str, Any]],
    out_dir: Path,
    label: str,
    metadata_types: dict[str, str] | None = None,
    pricebooks: dict[str, str] | None = None,
) -> _BatchResult:
    """Transform one stamp batch; per-file outcomes, rejected rows and (sku, hash, line) entries.

    A file is rejected when every part of it (a zip may hold several members) was rejected;
    otherwise its good rows are imported and the bad ones reported.
    """
    from threekit_pipeline.threekit.importer import entry_key
    from threekit_pipeline.transform import transform_files
    from threekit_pipeline.transform.core import read_sku_lines

    output = out_dir / f"{label}.jsonl"
    result = transform_files(
        mapping,
        [Path(f["local"]) for f in files],
        output,
        errors=out_dir / f"{label}.errors.csv",
        metadata_types=metadata_types,
        pricebooks=pricebooks,
    )
    if metadata_types is not None:
        for key, kind in result.metadata_types.items():
            metadata_types.setdefault(key, kind)

    parts_by_input: dict[str, list[Mapping[str, Any]]] = {}
    for part in result.per_file:
        parts_by_input.setdefault(part.get("input") or _input_name(part["file"]), []).append(part)
    outcomes: list[FileOutcome] = []
    for source in files:
        local_name = Path(source["local"]).name
        parts = parts_by_input.get(local_name, [])
        rejected_parts = [p for p in parts if p.get("status") != "ok"]
        all_rejected = bool(parts) and len(rejected_parts) == len(parts)
        outcomes.append(
            FileOutcome(
                file=source["name"],
                remote_path=source["path"],
                size=source.get("size"),
                stamp=InboundFile.from_dict(source).stamp_label,
                status="rejected" if all_rejected else "transformed",
                rows_read=sum(int(p.get("rows") or 0) for p in parts),
                rows_rejected=sum(int(p.get("rejected_rows") or 0) for p in parts),
                products_written=len(result.skus_by_file.get(local_name, [])),
                reason="; ".join(
                    (f"{p['file']}: " if p["file"] != local_name else "") + str(p.get("reason") or "")
                    for p in rejected_parts
                ),
            )
        )
    local_to_remote = {Path(f["local"]).name: f["name"] for f in files}
    rejected = read_rejections_csv(Path(result.errors), stage="transform")
    for row in rejected:
        row.file = local_to_remote.get(_input_name(row.file), row.file) if row.file else row.file
    skus_by_file = {local_to_remote.get(name, name): list(skus) for name, skus in result.skus_by_file.items()}
    lines = {
        sku: (_remote_display_name(name, local_to_remote), line)
        for sku, (name, line) in read_sku_lines(result.lines_path).items()
    }

    hashes = _read_hashes(Path(result.hashes))
    entries: list[tuple[str, str, str]] = []
    if output.exists():
        with open(output, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                text = line.strip()
                if text:
                    sku = entry_key(json.loads(text), number)
                    entries.append((sku, hashes.get(sku, ""), text))
    return _BatchResult(outcomes, rejected, entries, skus_by_file, lines)


def _remote_display_name(name: str, local_to_remote: Mapping[str, str]) -> str:
    """A transform file name (``local.zip!member.csv``) with the inbound file's name for the local one."""
    local, bang, member = str(name).partition("!")
    local = Path(local).name
    return local_to_remote.get(local, local) + bang + member


def _write_sources(path: Path, sku_lines: Mapping[str, tuple[str, int]]) -> str:
    """Write ``sku,file,line`` (the file and line each product of the run came from); returns the path."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("sku", "file", "line"))
        writer.writerows((sku, file, line) for sku, (file, line) in sorted(sku_lines.items()))
    tmp.replace(path)
    return str(path)


def pricebook_ids_by_name(books: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """``{name: id}`` of the org's pricebooks (``GET /api/orgs/:orgId/pricebooks``, all pages).

    Pricing values need pricebook ids; ERP price lists name pricebooks. The transform
    resolves names case-insensitively against this map (ids are accepted as they are).
    """
    resolved: dict[str, str] = {}
    for book in books:
        book_id = str(book.get("id") or "")
        if book_id:
            resolved.setdefault(str(book.get("name") or book_id), book_id)
    return resolved


def transform_and_plan(
    env: Any, collected: Mapping[str, Any], pricebooks: Iterable[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """Transform the downloaded files batch by batch, apply the ledger delta, write chunk files.

    ``pricebooks``: the org's pricebooks (``[{id, name}...]``, read once per run); price rows
    then name pricebooks by name or id and are sent with ids, and a row naming an unknown
    pricebook is a rejected row (nothing of it is sent). None sends pricebooks as they are.
    Returns ``{"chunks": [paths], "plan": path, ...counts}``; ``chunks`` is empty on a dry run.
    """
    from threekit_pipeline.transform import load_mapping

    config: PipelineConfig = env.config
    state = _read_json(env.staged(collected["collected"]))
    # The downloads, where this task finds them (another worker may have made them).
    state["files"] = [{**f, "local": str(env.staged(f["local"]))} for f in state["files"]]
    (env.run_dir() / PLAN_FILE).unlink(missing_ok=True)
    mapping = load_mapping(config.mapping)
    if config.max_error_ratio is not None:
        # The Variable's max_error_ratio, when set, wins over the mapping's (README).
        mapping = mapping.with_max_error_ratio(config.max_error_ratio)
    replay = bool(state["window"].get("replay")) or bool(env.only_file and env.params.get("apply_older_batches"))
    batches_dir = env.run_dir("batches", fresh=True)
    chunks_dir = env.run_dir("chunks", fresh=True)

    with open_ledger(config, LEDGER_NAME) as ledger:
        metadata_types = ledger.metadata_types()
    files_by_path = {f["path"]: f for f in state["files"]}
    batches = group_by_stamp(InboundFile.from_dict(f) for f in state["files"])
    books = pricebook_ids_by_name(pricebooks) if pricebooks is not None else None
    if books is not None:
        log.info("Pricebooks of the org: %s", ", ".join(sorted(books, key=str.casefold)) or "(none)")
    outcomes: list[FileOutcome] = []
    rejected: list[RejectedRow] = []
    latest: dict[str, tuple[str, str]] = {}  # sku -> (hash, line); later batches win
    sku_stamps: dict[str, str] = {}  # sku -> stamp of the newest batch carrying it (stamped batches only)
    sku_sources: dict[str, list[str]] = {}  # sku -> files of that batch that carry it
    sku_lines: dict[str, tuple[str, int]] = {}  # sku -> (file, line) of its product in that batch
    skus_by_file: dict[str, list[str]] = {}
    superseded = 0
    for number, batch in enumerate(batches, start=1):
        label = f"batch_{number:03d}_{batch[0].stamp_label}"
        result = _transform_batch(
            mapping, [files_by_path[f.path] for f in batch], batches_dir, label, metadata_types, books
        )
        outcomes.extend(result.outcomes)
        rejected.extend(result.rejected)
        skus_by_file.update(result.skus_by_file)
        stamp = batch[0].stamp.replace(tzinfo=None).isoformat() if batch[0].stamp else None
        batch_sources: dict[str, list[str]] = {}
        for name, skus in result.skus_by_file.items():
            for sku in skus:
                batch_sources.setdefault(sku, []).append(name)
        for sku, content_hash, line in result.entries:
            sku_sources[sku] = batch_sources.get(sku, [])
            if sku in result.lines:
                sku_lines[sku] = result.lines[sku]
            if stamp is not None:
                sku_stamps[sku] = stamp
            if sku in latest:
                superseded += 1
                content_hash, line = _merged_line(latest[sku][1], line)
            latest[sku] = (content_hash, line)
        for outcome in result.outcomes:
            log.info(
                "%s: %d rows read, %d products written, %d rows rejected%s",
                outcome.file,
                outcome.rows_read,
                outcome.products_written,
                outcome.rows_rejected,
                f" -> FILE REJECTED: {outcome.reason}" if outcome.status == "rejected" else "",
            )
    if superseded:
        log.info(
            "%d product(s) appear in several batches; their entries are merged oldest to newest", superseded
        )

    held: list[RejectedRow] = []
    with open_ledger(config, LEDGER_NAME) as ledger:
        known_stamps = ledger.stamps(sku_stamps)
        for sku, stamp in sku_stamps.items():
            newer = known_stamps.get(sku)
            if newer is None or newer <= stamp:
                continue
            if replay:
                log.info("%s: stamp %s is older than %s in Threekit; applied (replay)", sku, stamp, newer)
                continue
            del latest[sku]
            held.append(
                RejectedRow(
                    stage="held",
                    file=", ".join(sku_sources.get(sku, [])),
                    line="",
                    column="",
                    value=stamp,
                    sku=sku,
                    reason=(
                        f"older than what Threekit holds: this batch is stamped {stamp}, the SKU's content came "
                        f"from a batch stamped {newer}; not applied (a replay run applies it)"
                    ),
                )
            )
        confirmed_pricing = ledger.pricing(latest)
        for sku, pricing_json in confirmed_pricing.items():
            line = _with_confirmed_pricing(latest[sku][1], pricing_json)
            if line != latest[sku][1]:
                latest[sku] = (hashlib.sha256(line.encode("utf-8")).hexdigest(), line)
        delta = ledger.plan(((sku, value[0]) for sku, value in latest.items()), force=env.force_full_resend)
        if not env.dry_run:
            ledger.fix_metadata_types(metadata_types)
            # Unchanged content is in Threekit already: this batch's stamp now vouches for it.
            ledger.record_stamps(
                (sku, sku_stamps[sku])
                for sku in delta.unchanged
                if sku in sku_stamps and known_stamps.get(sku, "") < sku_stamps[sku]
            )
    log.info("Delta: %s", delta.summary())
    if held:
        log.warning(
            "Held back %d product(s) older than what Threekit holds:\n%s",
            len(held),
            format_table([r.to_dict() for r in held], ["file", "sku", "value", "reason"], limit=TABLE_ROWS),
        )
    rejected.extend(held)

    chunks: list[str] = []
    if env.dry_run:
        log.info("Dry run: %d product(s) would be sent in chunks of %d; nothing is sent", len(delta.to_send), config.batch_size)
    else:
        chunks = _write_chunks(chunks_dir, delta.to_send, latest, config.batch_size, sku_stamps)
        log.info("%d product(s) to send in %d chunk(s) of up to %d", len(delta.to_send), len(chunks), config.batch_size)

    if rejected:
        log_rejections(log, (r.to_dict() for r in rejected))
    plan = {
        "processing_day": state["processing_day"],
        "window": state["window"],
        "dry_run": env.dry_run,
        "force_full_resend": env.force_full_resend,
        "files": [o.to_dict() for o in outcomes],
        "rejected": [r.to_dict() for r in rejected],
        "skus_by_file": skus_by_file,
        "sources": _write_sources(env.run_dir() / SOURCES_FILE, sku_lines),
        "held": [r.sku for r in held],
        "chunks": chunks,
        "counts": {
            "files_found": len(outcomes),
            "files_rejected": sum(1 for o in outcomes if o.status == "rejected"),
            "rows_read": sum(o.rows_read for o in outcomes),
            "products_written": sum(o.products_written for o in outcomes),
            "rows_rejected": sum(o.rows_rejected for o in outcomes),
            "products_distinct": len(latest),
            "unchanged_skipped": len(delta.unchanged),
            "to_send": len(delta.to_send),
            "held_older": len(held),
        },
    }
    path = env.run_dir() / PLAN_FILE
    _write_json(path, plan)
    return {"plan": str(path), "chunks": chunks, **plan["counts"]}


def _merge_named(older: Any, newer: Any) -> Any:
    """Merge two metadata/attribute collections by name (newer wins, order kept)."""
    if isinstance(older, dict) and isinstance(newer, dict):
        return {**older, **newer}
    if not (isinstance(older, list) and isinstance(newer, list)):
        return newer
    merged: dict[Any, Any] = {}
    for position, item in enumerate([*older, *newer]):
        name = item.get("name") if isinstance(item, dict) else None
        key = name if name is not None else ("#", position)
        previous = merged.get(key)
        if (
            isinstance(previous, dict)
            and previous.get("type") == "Pricing"
            and item.get("type") == "Pricing"
        ):
            item = {**item, "values": merge_pricing(previous.get("values") or [], item.get("values") or [])}
        merged[key] = item
    return list(merged.values())


def merge_pricing(older: Sequence[Mapping[str, Any]], newer: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pricing values ``[{pricebook, currencies}]`` of ``older`` updated by ``newer``.

    A source updates only what it carries: pricebooks and currencies ``newer`` does not
    mention keep their ``older`` amounts. Pricebooks sorted by name, currencies by code
    (the transform's order), so equal content gives the same line and hash.
    """
    books: dict[str, dict[str, Any]] = {}
    for values in (older, newer):
        for book in values:
            if isinstance(book, Mapping) and isinstance(book.get("pricebook"), str):
                books.setdefault(book["pricebook"], {}).update(book.get("currencies") or {})
    return [
        {"pricebook": name, "currencies": {code: books[name][code] for code in sorted(books[name])}}
        for name in sorted(books)
    ]


def _with_confirmed_pricing(line: str, confirmed: str) -> str:
    """The entry line with its Pricing merged over the Pricing Threekit confirmed (JSON text)."""
    entry = json.loads(line)
    attributes = (entry.get("product") or {}).get("attributes") or []
    for attribute in attributes:
        if isinstance(attribute, dict) and attribute.get("type") == "Pricing":
            attribute["values"] = merge_pricing(json.loads(confirmed), attribute.get("values") or [])
            return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    return line


def _entry_pricing(line: str) -> str | None:
    """The Pricing values of an entry line as JSON text, None when it carries no prices."""
    for attribute in (json.loads(line).get("product") or {}).get("attributes") or []:
        if isinstance(attribute, dict) and attribute.get("type") == "Pricing":
            return json.dumps(attribute.get("values") or [], ensure_ascii=False, separators=(",", ":"))
    return None


def merge_entries(older: Mapping[str, Any], newer: Mapping[str, Any]) -> dict[str, Any]:
    """One import entry equivalent to importing ``older`` then ``newer`` (same SKU)."""
    merged = {**older, **{k: v for k, v in newer.items() if k != "product"}}
    product = dict(older.get("product") or {})
    for key, value in (newer.get("product") or {}).items():
        product[key] = _merge_named(product[key], value) if key in ("metadata", "attributes") and key in product else value
    merged["product"] = product
    return merged


def _merged_line(older_line: str, newer_line: str) -> tuple[str, str]:
    """(content hash, JSONL line) of two entries merged; the hash is the line's SHA-256, as the transform's."""
    line = json.dumps(
        merge_entries(json.loads(older_line), json.loads(newer_line)), ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(line.encode("utf-8")).hexdigest(), line


def _write_chunks(
    folder: Path,
    skus: Sequence[str],
    latest: Mapping[str, tuple[str, str]],
    size: int,
    stamps: Mapping[str, str] | None = None,
) -> list[str]:
    paths: list[str] = []
    stamps = stamps or {}
    for start in range(0, len(skus), size):
        part = skus[start : start + size]
        path = folder / f"chunk_{len(paths) + 1:04d}.jsonl"
        path.write_text("".join(latest[sku][1] + "\n" for sku in part), encoding="utf-8")
        _write_json(path.with_suffix(".hashes.json"), {sku: latest[sku][0] for sku in part})
        _write_json(path.with_suffix(".stamps.json"), {sku: stamps[sku] for sku in part if sku in stamps})
        paths.append(str(path))
    return paths


# --- 4. import -----------------------------------------------------------------------------------


def chunk_result_path(chunk: Path) -> Path:
    return chunk.with_suffix(".result.json")


def chunk_outcome_path(chunk: Path) -> Path:
    return chunk.with_suffix(".outcome.jsonl")


def import_chunk(env: Any, chunk_path: str, client: Any) -> dict[str, Any]:
    """Import one chunk and record the entries Threekit confirmed in the ledger.

    A retry resumes from the importer's outcome file; entries already confirmed are not sent
    again. The ledger is written only after the import returned.
    """
    from threekit_pipeline.threekit.importer import import_jsonl

    config: PipelineConfig = env.config
    chunk = env.staged(chunk_path)
    result_path = chunk_result_path(chunk)
    result_path.unlink(missing_ok=True)

    def progress(done: int, total: int) -> None:
        log.info("%s: %d/%d entries processed", chunk.name, done, total)

    hashes = _read_json(chunk.with_suffix(".hashes.json"))
    # Threekit's answers do not say created or updated: a SKU the ledger knows existed before.
    with open_ledger(config, LEDGER_NAME) as ledger:
        known = set(ledger.lookup(hashes))
    summary = import_jsonl(
        client,
        chunk,
        chunk_outcome_path(chunk),
        batch_size=config.batch_size,
        mode=config.import_mode,
        concurrency=config.import_concurrency,
        job_deadline_s=config.job_deadline_seconds,
        progress=progress,
        known_keys=known,
    )
    confirmed: list[tuple[str, str]] = []
    # Entries resumed from an earlier attempt of this run (the chunk files are per run) count as
    # what that attempt did: otherwise a retried chunk would report nothing created and the
    # catalog Asset would not be updated for products this run did create.
    resumed_as: dict[str, int] = dict.fromkeys(CONFIRMED, 0)
    for record in _read_outcomes(chunk_outcome_path(chunk)):
        status = record.get("status")
        previous = record.get("previous_status")
        if status in CONFIRMED or (status == "skipped" and previous in CONFIRMED):
            key = record.get("key")
            if key in hashes:
                confirmed.append((key, hashes[key]))
            if status == "skipped":
                resumed_as[previous] += 1
    stamps_path = chunk.with_suffix(".stamps.json")
    stamps = _read_json(stamps_path) if stamps_path.exists() else {}
    confirmed_keys = {key for key, _hash in confirmed}
    pricing: list[tuple[str, str]] = []
    if confirmed_keys:
        from threekit_pipeline.threekit.importer import entry_key

        for number, line in enumerate(chunk.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                key = entry_key(json.loads(line), number)
                values = _entry_pricing(line) if key in confirmed_keys else None
                if values is not None:
                    pricing.append((key, values))
    with open_ledger(config, LEDGER_NAME) as ledger:
        ledger.record(confirmed, run_id=env.run_id)
        ledger.record_stamps((key, stamps[key]) for key in confirmed_keys if key in stamps)
        ledger.record_pricing(pricing)
    result = {
        "chunk": chunk.name,
        "total": summary.total,
        "created": summary.created + resumed_as["created"],
        "updated": summary.updated + resumed_as["updated"],
        "imported": summary.imported + resumed_as["imported"],
        "skipped": summary.skipped,
        "rejected": summary.rejected,
        "confirmed": len(confirmed),
    }
    _write_json(result_path, result)
    log.info(
        "%s: %d entries, %d created, %d updated, %d imported (sync), %d rejected by Threekit "
        "(%d of them confirmed by an earlier attempt of this run); ledger updated for %d",
        chunk.name,
        summary.total,
        result["created"],
        result["updated"],
        result["imported"],
        summary.rejected,
        summary.skipped,
        len(confirmed),
    )
    return result


def _read_outcomes(path: Path) -> Iterable[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    return records


# --- 5. finalize -----------------------------------------------------------------------------------


def _report_from_plan(env: Any, plan: Mapping[str, Any]) -> RunReport:
    window = SelectionWindow.from_dict(plan["window"])
    report = RunReport(
        dag_id=env.dag_id,
        run_id=env.run_id,
        run_type=env.run_type,
        logical_date=env.logical_date.isoformat() if env.logical_date else "",
        selection=f"file {env.only_file}" if env.only_file else window.describe(),
        dry_run=bool(plan["dry_run"]),
        force_full_resend=bool(plan["force_full_resend"]),
    )
    report.files = [FileOutcome(**f) for f in plan["files"]]
    report.rejected = [RejectedRow(**r) for r in plan["rejected"]]
    report.counts = dict(plan["counts"])
    return report


def finalize(env: Any, ftp: Any | None) -> dict[str, Any]:
    """Archive or quarantine the source files and upload the run report.

    When a chunk did not land (its import task failed), no file is moved, the report says
    which chunks are missing and :class:`ImportIncomplete` is raised after the upload. On a
    dry run nothing is moved or uploaded; the report is written to the staging folder only.
    Without an import plan, :class:`NothingToProcess` is raised when the run found no file,
    :class:`FilesNotPrepared` when collecting or transforming failed (the run must not look
    successful).
    """
    config: PipelineConfig = env.config
    plan_path = env.run_dir() / PLAN_FILE
    if not plan_path.exists():
        nothing = env.run_dir() / NOTHING_FILE
        if nothing.exists():
            raise NothingToProcess(_read_json(nothing).get("reason") or "no files were prepared in this run")
        # finalize runs whatever happened upstream; without a plan, collecting or transforming failed.
        raise FilesNotPrepared(
            "no import plan: collecting or transforming this run's files failed (see those tasks' logs); "
            "every source file was left in place and the next run picks them up again"
        )
    plan = _read_json(plan_path)
    report = _report_from_plan(env, plan)
    sku_files: dict[str, list[str]] = {}
    for name, skus in plan["skus_by_file"].items():
        for sku in skus:
            sku_files.setdefault(sku, []).append(name)

    missing: list[str] = []
    totals = {"created": 0, "updated": 0, "imported": 0, "resumed": 0, "threekit_rejected": 0}
    for chunk_name in plan["chunks"]:
        chunk = env.staged(chunk_name)
        result_path = chunk_result_path(chunk)
        if not result_path.exists():
            missing.append(chunk.name)
            continue
        result = _read_json(result_path)
        report.chunks.append(result)
        totals["created"] += result["created"]
        totals["updated"] += result["updated"]
        totals["imported"] += result.get("imported", 0)
        totals["resumed"] += result["skipped"]
        totals["threekit_rejected"] += result["rejected"]
        for record in _read_outcomes(chunk_outcome_path(chunk)):
            if record.get("status") == "rejected":
                sku = str(record.get("key") or "")
                report.rejected.append(
                    RejectedRow(
                        stage="threekit",
                        file=", ".join(sku_files.get(sku, [])),
                        line="",
                        column="",
                        value="",
                        sku=sku,
                        reason=str(record.get("reason") or ""),
                    )
                )
    report.counts.update(totals)
    report_dir = env.run_dir("report", fresh=True)
    summary = summarize(report.to_dict())
    # The log's first line: what happened, in one sentence, and where to look.
    log.info(summary.line(sync_view_url(env.dag_id, env.run_id)))
    if report.rejected:
        log_rejections(log, (r.to_dict() for r in report.rejected))

    if report.dry_run:
        for outcome in report.files:
            outcome.status = "dry_run" if outcome.status != "rejected" else "rejected"
            outcome.destination = "(dry run: not moved)"
        report.notes.append("dry run: nothing was sent to Threekit and no file was moved")
        paths = report.write(report_dir)
        log.info("Dry run: nothing sent or moved; report written to %s", paths["json"])
        return {"status": "dry_run", "report": str(paths["json"]), "summary": summary.to_dict(), **report.counts}

    if missing:
        report.status = "failed"
        report.notes.append(
            f"{len(missing)} of {len(plan['chunks'])} chunk(s) did not land in Threekit ({', '.join(missing)}); "
            "every source file was left in place and the next run re-sends what is missing"
        )
        for outcome in report.files:
            outcome.status = "failed" if outcome.status != "rejected" else outcome.status
            outcome.destination = outcome.remote_path + " (left in place)"
        remote = upload_report(ftp, report, report_dir, config.folder("reports"), REPORTS_SUBDIR)
        log.error("Import incomplete: %s. Report: %s", report.notes[-1], remote["json"])
        raise ImportIncomplete(report.notes[-1])

    _settle_file_statuses(plan, report)
    moves = _move_files(env, ftp, plan, report, report_dir)
    report.counts["files_archived"] = sum(1 for m in moves if m["action"] != "rejected")
    report.counts["files_partially_imported"] = sum(1 for o in report.files if o.status == "partially imported")
    report.counts["files_quarantined"] = sum(1 for o in report.files if o.status == "rejected")
    remote = upload_report(ftp, report, report_dir, config.folder("reports"), REPORTS_SUBDIR)
    log.info(
        "Where each file went:\n%s",
        format_table(
            [{"file": o.file, "status": o.status, "destination": o.destination} for o in report.files],
            ["file", "status", "destination"],
            limit=500,
            width=100,
        ),
    )
    log.info("Run report: %s", ", ".join(remote.values()))
    return {
        "status": report.status,
        "report": remote["json"],
        "changed": totals["created"] + totals["updated"] + totals["imported"],
        **report.counts,
        "summary": summary.to_dict(),
        # Quarantined files (for the feed's partial-run notification).
        "rejected_files": [o.file for o in report.files if o.status == "rejected"],
        # Per quarantined file: file, quarantine_path, errors_path (remote), errors_csv (local copy),
        # first reasons, total_errors (for the feed's quarantine notification).
        "quarantined": [m["quarantined"] for m in moves if m.get("quarantined")],
    }


def _settle_file_statuses(plan: Mapping[str, Any], report: RunReport) -> None:
    """Per transformed file: imported, partially imported, held, or rejected when nothing of it landed.

    A file's entries are the SKUs it contributed (``skus_by_file``); an entry did not land
    when Threekit rejected it or it was held as older than what Threekit holds. A file
    with rows but no landed entry is rejected (quarantined with its reasons), or held when
    every entry was held (archived: a replay applies it); one with some rejected rows or
    entries is ``partially imported``.
    """
    held = set(plan.get("held") or [])
    refused = {row.sku for row in report.rejected if row.stage == "threekit" and row.sku}
    for outcome in report.files:
        if outcome.status == "rejected":
            continue
        skus = set(plan["skus_by_file"].get(outcome.file, []))
        landed = skus - held - refused
        if (outcome.rows_read or skus) and not landed and (skus or outcome.rows_rejected):
            if skus and skus <= held:
                outcome.status = "held"
                outcome.reason = outcome.reason or "every entry is older than what Threekit holds (a replay run applies it)"
            else:
                outcome.status = "rejected"
                outcome.reason = outcome.reason or "no entry of this file landed in Threekit (see the errors CSV)"
        elif outcome.rows_rejected or skus & (held | refused):
            outcome.status = "partially imported"


def _move_files(env: Any, ftp: Any, plan: Mapping[str, Any], report: RunReport, report_dir: Path) -> list[dict]:
    config: PipelineConfig = env.config
    day = date.fromisoformat(plan["processing_day"])
    moves = []
    by_file: dict[str, list[RejectedRow]] = {}
    for row in report.rejected:
        for name in {part.strip() for part in str(row.file).split(",") if part.strip()}:
            by_file.setdefault(name, []).append(row)
    errors_dir = report_dir / "file_errors"
    for outcome in report.files:
        if outcome.status == "rejected":
            errors_dir.mkdir(exist_ok=True)
            errors_csv = errors_dir / f"{outcome.file}.errors.csv"
            rows = by_file.get(outcome.file) or [
                RejectedRow("transform", outcome.file, "", "", "", outcome.reason or "file rejected")
            ]
            write_csv(errors_csv, REJECTED_COLUMNS, (r.to_dict() for r in rows))
            move = reject_file(
                ftp,
                outcome.remote_path,
                rejected_root=config.folder("rejected"),
                source=SOURCE,
                errors_csv=errors_csv,
                archive_root=config.folder("archive"),
            )
            outcome.errors_path = move.errors_path or ""
            # What the feed's quarantine notification says (and attaches: the CSV just uploaded).
            quarantined = {"file": outcome.file, "quarantine_path": move.destination,
                           "errors_path": move.errors_path or "", "errors_csv": str(errors_csv),
                           "reasons": [reason_line(r) for r in rows[:MAX_NOTIFIED_REASONS]],
                           "total_errors": len(rows)}
        else:
            quarantined = None
            move = archive_file(
                ftp,
                outcome.remote_path,
                archive_root=config.folder("archive"),
                source=SOURCE,
                processing_day=day,
                scratch_dir=report_dir,
            )
            if outcome.status not in ("partially imported", "held"):
                outcome.status = "imported"
        outcome.destination = move.destination
        moves.append({**move.to_dict(), **({"quarantined": quarantined} if quarantined else {})})
        _consume_markers(ftp, outcome.remote_path, move.destination, config.marker_suffixes)
    return moves


def _consume_markers(ftp: Any, remote_path: str, destination: str, suffixes: Sequence[str]) -> None:
    """Move the completion markers of a processed file beside it: a marker belongs to one delivery."""
    import posixpath

    if not suffixes or not destination or destination == remote_path:
        return
    target_dir = posixpath.dirname(destination)
    for suffix in suffixes:
        marker = remote_path + suffix
        try:
            found = ftp.stat(marker) if hasattr(ftp, "stat") else None
        except (OSError, FileNotFoundError):
            found = None
        if found is None:
            continue
        final = ftp.move(marker, target_dir)
        log.info("Marker %s consumed with its file -> %s", marker, final)


def should_publish(result: Mapping[str, Any] | None) -> bool:
    """Whether the catalog Asset gets an event: something was created or updated in Threekit."""
    return bool(result) and result.get("status") == "success" and int(result.get("changed", 0)) > 0


def now_utc() -> datetime:
    return datetime.now(UTC)
