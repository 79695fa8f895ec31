"""Retiring discontinued products: a full catalog snapshot retires the SKUs it no longer holds.

A catalog source is a *delta* feed by default (today's behaviour: files only add and update).
Declared a *full snapshot* (``snapshot: full``), each products file of the source is the whole
assortment: after it landed, every SKU this source imported before and that the snapshot no
longer contains is retired:

* ``retire: delete``: soft delete (``DELETE /api/assets/:id``; Threekit keeps the item
  restorable, reference section 5),
* ``retire: tag:<name>``: the item stays but gets the tag ``<name>``,
* ``retire: report``: nothing changes in Threekit; the SKU is only reported.

Configuration, per mapping (top-level ``lifecycle`` block of the mapping YAML) and overridden
per deployment by the Variable key ``catalog_lifecycle``::

    lifecycle:
      snapshot: full          # full | delta (default delta)
      retire: delete          # delete | tag:<name> | report (default report)
      max_retire_ratio: 0.05  # share of the source's live products (default 5 %)
      source: erp_main        # ledger name of the source (default: the mapping's name)

Safety: when a snapshot would retire more than ``max_retire_ratio`` of the source's live
products, nothing is retired, the retirement is stored as *pending* and
:class:`RetireBlocked` names the count; a manual run with ``confirm_retire`` applies the
pending retirement (or its own snapshot's). A products file the transform rejected, or rows
rejected with a SKU, never count as "missing": an incomplete snapshot retires nothing of what
it could not read.

Which SKUs a source imported is kept in the lifecycle ledger
``<staging>/ledger/catalog_lifecycle.sqlite`` (or PostgreSQL, see :mod:`~threekit_pipeline.pipelines.ledgers`) (``members``: source, SKU, Threekit id; recorded
from each run's products files once the delta ledger confirms them; a deployment's SKUs
imported before this ledger existed are not members until a run carries them again).
``retired`` holds what is currently retired (so a re-run does nothing twice), ``events`` the
history, ``pending`` blocked retirements. A retired SKU is also removed from the delta ledger,
so when it comes back it is re-imported; :func:`restore_returning` restores (or untags) its
item before the import, so the import updates it instead of creating a duplicate (when the
restore is refused, the import re-creates it).

No Airflow imports: the DAG tasks call :func:`restore_returning` and :func:`retire_missing`.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from threekit_pipeline.pipelines.ledger import LedgerStore, Migration, TableCopy, ledger_path, portable
from threekit_pipeline.pipelines.ledgers import open_ledger, open_lifecycle_ledger

log = logging.getLogger(__name__)

LIFECYCLE_LEDGER = "catalog_lifecycle"
DEFAULT_MAX_RETIRE_RATIO = 0.05
RETIRE_COLUMNS = ("sku", "threekit_id", "action", "status", "detail")
# The metadata key holding the SKU in the import entries (transform/core.py writes "SKU").
SKU_METADATA = "SKU"


class RetireConfigError(ValueError):
    """The lifecycle configuration is malformed; the message names the key."""


class RetireBlocked(RuntimeError):
    """A snapshot would retire more than ``max_retire_ratio``; nothing was retired."""


class RetireFailed(RuntimeError):
    """Some retirements or restores failed in Threekit (the others were applied and recorded)."""


# --- policy -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetirePolicy:
    """How a catalog source's disappeared SKUs are handled (see the module docstring)."""

    source: str
    snapshot: str = "delta"  # full | delta
    retire: str = "report"  # delete | tag:<name> | report
    max_retire_ratio: float = DEFAULT_MAX_RETIRE_RATIO

    @property
    def full(self) -> bool:
        return self.snapshot == "full"

    @property
    def action(self) -> str:
        """``delete``, ``tag`` or ``report``."""
        return self.retire.split(":", 1)[0]

    @property
    def tag(self) -> str | None:
        return self.retire.split(":", 1)[1] if self.action == "tag" else None


def parse_policy(data: Mapping[str, Any] | None, *, source: str, label: str = "lifecycle") -> RetirePolicy:
    """Validate a lifecycle block; raises :class:`RetireConfigError` naming the key."""
    data = dict(data or {})
    unknown = sorted(set(data) - {"snapshot", "retire", "max_retire_ratio", "source"})
    if unknown:
        raise RetireConfigError(f"{label}.{unknown[0]}: unknown key (allowed: max_retire_ratio, retire, snapshot, source)")
    snapshot = data.get("snapshot", "delta")
    if snapshot not in ("full", "delta"):
        raise RetireConfigError(f"{label}.snapshot: must be 'full' or 'delta', got {snapshot!r}")
    retire = data.get("retire", "report")
    if not isinstance(retire, str) or not (
        retire in ("delete", "report") or (retire.startswith("tag:") and retire[4:].strip())
    ):
        raise RetireConfigError(f"{label}.retire: must be 'delete', 'report' or 'tag:<name>', got {retire!r}")
    ratio = data.get("max_retire_ratio", DEFAULT_MAX_RETIRE_RATIO)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise RetireConfigError(f"{label}.max_retire_ratio: must be a number in [0, 1], got {ratio!r}")
    name = data.get("source", source)
    if not isinstance(name, str) or not name:
        raise RetireConfigError(f"{label}.source: must be a non-empty string")
    if retire.startswith("tag:"):
        retire = "tag:" + retire[4:].strip()
    return RetirePolicy(source=name, snapshot=snapshot, retire=retire, max_retire_ratio=float(ratio))


def load_policy(config: Any) -> RetirePolicy:
    """The policy of the configured mapping: its ``lifecycle`` block, then the Variable's
    ``catalog_lifecycle`` keys on top. The source defaults to the mapping's ``name``."""
    import yaml

    from threekit_pipeline.transform.mapping import resolve_mapping_path

    path = resolve_mapping_path(config.mapping)
    raw: dict[str, Any] = {}
    if path.is_file():
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    block = raw.get("lifecycle") or {}
    if not isinstance(block, dict):
        raise RetireConfigError(f"{path.name}: lifecycle: must be a mapping")
    merged = {**block, **dict(getattr(config, "catalog_lifecycle", None) or {})}
    return parse_policy(merged, source=str(raw.get("name") or Path(str(config.mapping)).stem), label="lifecycle")


def product_patterns(config: Any) -> list[str]:
    """File-name globs of the mapping's products source (with their ``.gz`` forms)."""
    from threekit_pipeline.transform import load_mapping

    mapping = load_mapping(config.mapping)
    source = mapping.sources.get("products")
    patterns = list(source.patterns) if source else []
    return patterns + [f"{p}.gz" for p in patterns]


# --- lifecycle ledger ------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _by_sku(row: tuple) -> tuple[str, str]:
    return row[0], row[1]


_EVENT_COLUMNS = ("source", "sku", "threekit_id", "event", "action", "at", "run_id")

#: Migrations of the lifecycle ledger. 1: the original tables (ledgers written before
#: versioning have them and start at version 0); 2: history events get an explicit sequence
#: (their order on both backends) and an index by source.
LIFECYCLE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "members, retired, events, pending",
        *portable(
                "CREATE TABLE IF NOT EXISTS members (source TEXT, sku TEXT, threekit_id TEXT, first_run TEXT,"
                " last_run TEXT, PRIMARY KEY (source, sku))",
                "CREATE TABLE IF NOT EXISTS retired (source TEXT, sku TEXT, threekit_id TEXT, action TEXT,"
                " retired_at TEXT, run_id TEXT, PRIMARY KEY (source, sku))",
                "CREATE TABLE IF NOT EXISTS events (source TEXT, sku TEXT, threekit_id TEXT, event TEXT,"
                " action TEXT, at TEXT, run_id TEXT)",
                "CREATE TABLE IF NOT EXISTS pending (source TEXT PRIMARY KEY, run_id TEXT, snapshot TEXT,"
                " protected TEXT, count INTEGER, total INTEGER, at TEXT)",
        ),
    ),
    Migration(
        2,
        "event sequence and index",
        (
            "CREATE TABLE events_v2 (seq INTEGER PRIMARY KEY, source TEXT, sku TEXT, threekit_id TEXT,"
            " event TEXT, action TEXT, at TEXT, run_id TEXT)",
            f"INSERT INTO events_v2 ({', '.join(_EVENT_COLUMNS)}) SELECT {', '.join(_EVENT_COLUMNS)}"
            " FROM events ORDER BY rowid",
            "DROP TABLE events",
            "ALTER TABLE events_v2 RENAME TO events",
            "CREATE INDEX IF NOT EXISTS events_by_source ON events (source, seq)",
        ),
        (
            "ALTER TABLE events ADD COLUMN IF NOT EXISTS seq BIGSERIAL",
            "CREATE INDEX IF NOT EXISTS events_by_source ON events (source, seq)",
        ),
    ),
)

#: The lifecycle ledger's tables, as the ledger copy command copies them (events append-only).
LIFECYCLE_TABLES: tuple[TableCopy, ...] = (
    TableCopy("members", ("source", "sku", "threekit_id", "first_run", "last_run"), ("source", "sku")),
    TableCopy("retired", ("source", "sku", "threekit_id", "action", "retired_at", "run_id"), ("source", "sku")),
    TableCopy("events", _EVENT_COLUMNS, ()),
    TableCopy("pending", ("source", "run_id", "snapshot", "protected", "count", "total", "at"), ("source",)),
)


class LifecycleLedger(LedgerStore):
    """Ledger of source membership, current retirements, history and pending plans.

    SQLite (``LifecycleLedger(path)``) or PostgreSQL (``LifecycleLedger(dsn=..., name=...)``),
    versioned by :data:`LIFECYCLE_MIGRATIONS`; every method writes in one transaction.
    """

    MIGRATIONS = LIFECYCLE_MIGRATIONS

    def __enter__(self) -> LifecycleLedger:
        return self

    def _write_many(self, *steps: tuple[str, Iterable[tuple]]) -> None:
        """Run each ``(statement, rows)`` step in one transaction.

        Upserted rows come sorted by key, so concurrent writers lock them in the same order.
        """
        batches = [(sql, list(rows)) for sql, rows in steps]

        def run(cur: Any) -> None:
            for sql, rows in batches:
                cur.executemany(sql, rows)

        self._write(run, what="lifecycle update")

    def members(self, source: str) -> dict[str, str | None]:
        """``{sku: threekit_id or None}`` of every SKU the source imported (retired ones included)."""
        return dict(self._query("SELECT sku, threekit_id FROM members WHERE source = ?", (source,)))

    def add_members(self, source: str, ids: Mapping[str, str | None], run_id: str) -> None:
        """Upsert SKUs as imported by ``source`` (a known id is kept when the new one is None)."""
        self._write_many(
            (
                "INSERT INTO members (source, sku, threekit_id, first_run, last_run) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (source, sku) DO UPDATE SET "
                "threekit_id = COALESCE(excluded.threekit_id, members.threekit_id), last_run = excluded.last_run",
                [(source, sku, ids[sku], run_id, run_id) for sku in sorted(ids)],
            )
        )

    def retired(self, source: str) -> dict[str, dict[str, Any]]:
        """``{sku: {threekit_id, action, retired_at, run_id}}`` of the SKUs currently retired."""
        rows = self._query(
            "SELECT sku, threekit_id, action, retired_at, run_id FROM retired WHERE source = ?", (source,)
        )
        return {r[0]: {"threekit_id": r[1], "action": r[2], "retired_at": r[3], "run_id": r[4]} for r in rows}

    def mark_retired(self, source: str, rows: Iterable[tuple[str, str | None, str]], run_id: str) -> None:
        """Record ``(sku, threekit_id, action)`` as retired now (and in the history), in one transaction."""
        rows = list(rows)
        now = _now()
        self._write_many(
            (
                "INSERT INTO retired (source, sku, threekit_id, action, retired_at, run_id) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (source, sku) DO UPDATE SET threekit_id = excluded.threekit_id, "
                "action = excluded.action, retired_at = excluded.retired_at, run_id = excluded.run_id",
                sorted(((source, sku, tk_id, action, now, run_id) for sku, tk_id, action in rows), key=_by_sku),
            ),
            (
                f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) VALUES (?, ?, ?, 'retired', ?, ?, ?)",
                [(source, sku, tk_id, action, now, run_id) for sku, tk_id, action in rows],
            ),
        )

    def mark_returned(self, source: str, rows: Iterable[tuple[str, str | None, str]], run_id: str) -> None:
        """``(sku, threekit_id, how)`` came back: no longer retired (history keeps ``how``)."""
        rows = list(rows)
        now = _now()
        self._write_many(
            ("DELETE FROM retired WHERE source = ? AND sku = ?", sorted(((source, sku) for sku, _, _ in rows), key=_by_sku)),
            (
                f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) VALUES (?, ?, ?, 'returned', ?, ?, ?)",
                [(source, sku, tk_id, how, now, run_id) for sku, tk_id, how in rows],
            ),
        )

    def events(self, source: str) -> list[dict[str, Any]]:
        """The source's history, oldest first: ``sku, threekit_id, event, action, at, run_id``."""
        rows = self._query(
            "SELECT sku, threekit_id, event, action, at, run_id FROM events WHERE source = ? ORDER BY seq",
            (source,),
        )
        return [dict(zip(("sku", "threekit_id", "event", "action", "at", "run_id"), r, strict=True)) for r in rows]

    def set_pending(self, source: str, run_id: str, snapshot: set[str], protected: set[str], count: int, total: int) -> None:
        self._write_many(
            (
                "INSERT INTO pending (source, run_id, snapshot, protected, count, total, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET run_id = excluded.run_id, "
                "snapshot = excluded.snapshot, protected = excluded.protected, count = excluded.count, "
                "total = excluded.total, at = excluded.at",
                [(source, run_id, json.dumps(sorted(snapshot)), json.dumps(sorted(protected)), count, total, _now())],
            )
        )

    def pending(self, source: str) -> dict[str, Any] | None:
        rows = self._query("SELECT run_id, snapshot, protected, count, total, at FROM pending WHERE source = ?", (source,))
        if not rows:
            return None
        row = rows[0]
        return {
            "run_id": row[0],
            "snapshot": set(json.loads(row[1])),
            "protected": set(json.loads(row[2])),
            "count": row[3],
            "total": row[4],
            "at": row[5],
        }

    def clear_pending(self, source: str) -> None:
        self._write_many(("DELETE FROM pending WHERE source = ?", [(source,)]))


def lifecycle_ledger(staging_dir: str | Path, *, dsn: str | None = None) -> LifecycleLedger:
    """The lifecycle ledger: in PostgreSQL when ``dsn`` is given, else ``<staging>/ledger/catalog_lifecycle.sqlite``."""
    if dsn:
        return LifecycleLedger(dsn=dsn, name=LIFECYCLE_LEDGER)
    return LifecycleLedger(ledger_path(staging_dir, LIFECYCLE_LEDGER))


# --- the snapshot of a run --------------------------------------------------------------------


@dataclass
class Snapshot:
    """The SKUs a run's newest products file(s) hold, and what must never count as missing."""

    skus: set[str] = field(default_factory=set)
    protected: set[str] = field(default_factory=set)  # SKUs of rejected rows
    files: list[str] = field(default_factory=list)
    complete: bool = True
    reason: str = ""
    all_skus: set[str] = field(default_factory=set)  # every SKU of the run, any stamp or source


def run_snapshot(plan: Mapping[str, Any], patterns: Iterable[str]) -> Snapshot | None:
    """The snapshot carried by a catalog import plan (``plan.json``), or None without a products file.

    The newest stamp with a products file is the snapshot (two nightly exports in one run: the
    latest is the truth). Shape of ``plan``: ``files`` (file outcomes with ``file``, ``stamp``,
    ``status``), ``skus_by_file`` (``{file: [sku]}``), ``rejected`` (rows with ``sku``).
    """
    patterns = list(patterns)
    products = [f for f in plan.get("files", []) if any(fnmatch.fnmatch(f["file"], p) for p in patterns)]
    snap = Snapshot()
    for skus in (plan.get("skus_by_file") or {}).values():
        snap.all_skus.update(skus)
    if not products:
        return None
    newest = max(str(f.get("stamp") or "") for f in products)
    chosen = [f for f in products if str(f.get("stamp") or "") == newest]
    snap.files = [f["file"] for f in chosen]
    for outcome in chosen:
        snap.skus.update((plan.get("skus_by_file") or {}).get(outcome["file"], []))
        if outcome.get("status") == "rejected":
            snap.complete = False
            snap.reason = f"products file {outcome['file']} was rejected: {outcome.get('reason') or ''}".strip()
    snap.protected = {str(r.get("sku")) for r in plan.get("rejected", []) if r.get("sku")}
    return snap


# --- Threekit actions ---------------------------------------------------------------------------


def _sku_query(sku: str) -> dict[str, Any]:
    return {"metadata": [{"name": SKU_METADATA, "defaultValue": sku, "type": "String"}]}


def find_item(client: Any, sku: str) -> dict[str, Any] | None:
    """The live catalog item whose metadata ``SKU`` is ``sku`` (``GET /api/catalog/products``)."""
    found = client.find_products_by_metadata({SKU_METADATA: sku})
    return found[0] if found else None


def _set_tag(client: Any, sku: str, tag: str, present: bool) -> str | None:
    """Add or remove ``tag`` on the SKU's item with a synchronous import; returns its id (None: no item)."""
    item = find_item(client, sku)
    if item is None:
        return None
    tags = [t for t in (item.get("tags") or []) if t != tag]
    if present:
        tags.append(tag)
    if tags != list(item.get("tags") or []):
        client.import_products_sync([{"query": _sku_query(sku), "product": {"tags": tags}}])
    return str(item.get("id") or "") or None


def _status_code(exc: Exception) -> int | None:
    return getattr(exc, "status", None) or getattr(exc, "status_code", None)


def _retire_one(client: Any, policy: RetirePolicy, sku: str, tk_id: str | None) -> tuple[str | None, str, str]:
    """Apply the policy to one SKU; returns ``(threekit_id, status, detail)``."""
    if policy.action == "tag":
        found = _set_tag(client, sku, policy.tag or "", present=True)
        return (found or tk_id, "retired", f"tagged {policy.tag}") if found else (tk_id, "retired", "no live item")
    if policy.action == "report":
        return tk_id, "reported", "still live in Threekit (retire: report)"
    if not tk_id:
        item = find_item(client, sku)
        if item is None:
            return None, "retired", "no live item (already deleted?)"
        tk_id = str(item["id"])
    try:
        client.delete_asset(tk_id)
    except Exception as exc:  # noqa: BLE001 - a 404 means it is already gone
        if _status_code(exc) == 404:
            return tk_id, "retired", "already deleted"
        raise
    return tk_id, "retired", "deleted (restorable)"


# --- DAG task logic -----------------------------------------------------------------------------


def _read_plan(env: Any) -> dict[str, Any] | None:
    from threekit_pipeline.pipelines.catalog_import import PLAN_FILE

    path = env.run_dir() / PLAN_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def restore_returning(env: Any, client: Any | None) -> dict[str, Any]:
    """Before the import: bring back the retired SKUs this run carries again.

    ``delete``: the item is restored (``POST /api/assets/:id/restore``); if Threekit refuses
    (404), the import re-creates it. ``tag:<name>``: the tag is removed. The import that
    follows re-sends these SKUs (retirement removed them from the delta ledger). On a dry run
    (or ``client`` None) the SKUs are only listed. Returns ``{"returning": [sku], "restored": n}``.
    """
    plan = _read_plan(env)
    if plan is None:
        return {"returning": [], "restored": 0}
    policy = load_policy(env.config)
    carried = run_snapshot(plan, ["*"]) or Snapshot()
    with open_lifecycle_ledger(env.config) as ledger:
        retired = ledger.retired(policy.source)
        returning = sorted(sku for sku in carried.all_skus if sku in retired)
        if not returning:
            return {"returning": [], "restored": 0}
        log.info("%d retired SKU(s) are back in this run: %s", len(returning), ", ".join(returning[:50]))
        if env.dry_run or client is None:
            return {"returning": returning, "restored": 0, "dry_run": True}
        done: list[tuple[str, str | None, str]] = []
        for sku in returning:
            record = retired[sku]
            tk_id, action = record["threekit_id"], record["action"]
            how = "returned"
            if action == "delete" and tk_id:
                try:
                    client.restore_asset(tk_id)
                    how = "restored"
                except Exception as exc:  # noqa: BLE001
                    if _status_code(exc) != 404:
                        raise
                    how = "re-created by the import (restore refused: 404)"
            elif action.startswith("tag") and policy.tag:
                _set_tag(client, sku, policy.tag, present=False)
                how = f"untagged {policy.tag}"
            log.info("SKU %s (Threekit id %s): %s", sku, tk_id, how)
            done.append((sku, tk_id, how))
        ledger.mark_returned(policy.source, done, env.run_id)
    return {"returning": returning, "restored": sum(1 for _, _, how in done if how == "restored")}


def confirm_retire(env: Any) -> bool:
    from threekit_pipeline.pipelines.runtime import truthy

    return truthy(env.param("confirm_retire", False))


def retire_missing(env: Any, client: Any | None, ftp: Any | None) -> dict[str, Any]:
    """After the import: record the source's members, retire what a full snapshot no longer holds.

    Returns a summary ``{"status", "source", "snapshot", "candidates", "retired": [{sku,
    threekit_id, action, status, detail}], "report": ...}``; ``status`` is one of ``delta``
    (not a full-snapshot source), ``no_snapshot``, ``incomplete_snapshot``, ``dry_run``,
    ``nothing_to_retire``, ``retired``. Raises :class:`RetireBlocked` above the ratio (nothing
    retired, pending stored), :class:`RetireFailed` when Threekit refused some actions (the
    others are recorded). ``client``/``ftp`` may be None on a dry run.
    """
    from threekit_pipeline.pipelines.catalog_import import LEDGER_NAME, _read_outcomes, chunk_outcome_path

    config = env.config
    policy = load_policy(config)
    plan = _read_plan(env)
    snap = run_snapshot(plan, product_patterns(config)) if plan else None
    confirm = confirm_retire(env)
    summary: dict[str, Any] = {
        "source": policy.source,
        "snapshot": policy.snapshot,
        "retire": policy.retire,
        "max_retire_ratio": policy.max_retire_ratio,
        "confirm_retire": confirm,
        "dry_run": env.dry_run,
        "retired": [],
    }
    with open_lifecycle_ledger(config) as lc:
        # 1. Membership: this run's SKUs that the delta ledger confirms, with ids from the chunks.
        if plan and not env.dry_run:
            ids: dict[str, str | None] = {}
            for chunk in plan.get("chunks", []):
                for record in _read_outcomes(chunk_outcome_path(env.staged(chunk))):
                    if record.get("id") and record.get("key"):
                        ids[str(record["key"])] = str(record["id"])
            carried = run_snapshot(plan, ["*"]) or Snapshot()
            with open_ledger(config, LEDGER_NAME) as ledger:
                confirmed = set(ledger.lookup(carried.all_skus))
            lc.add_members(policy.source, {sku: ids.get(sku) for sku in confirmed}, env.run_id)
            summary["members_recorded"] = len(confirmed)

        if not policy.full:
            summary["status"] = "delta"
            log.info("Source %r is a delta feed (snapshot: delta): nothing is retired", policy.source)
            return summary
        pending = lc.pending(policy.source)
        if snap is None and confirm and pending:
            log.info(
                "confirm_retire: applying the pending retirement of run %s (%d SKU(s))", pending["run_id"], pending["count"]
            )
            snap = Snapshot(skus=pending["snapshot"], protected=pending["protected"], files=["(pending)"])
        if snap is None:
            summary["status"] = "no_snapshot"
            log.info("No products file in this run: no snapshot, nothing to retire")
            return summary
        if not snap.complete:
            summary["status"] = "incomplete_snapshot"
            log.warning("Snapshot %s is incomplete (%s): nothing is retired", snap.files, snap.reason)
            return summary

        members = lc.members(policy.source)
        retired = lc.retired(policy.source)
        live = {sku: tk_id for sku, tk_id in members.items() if sku not in retired}
        candidates = sorted(sku for sku in live if sku not in snap.skus and sku not in snap.protected)
        ratio = len(candidates) / len(live) if live else 0.0
        summary.update(
            candidates=len(candidates), live_products=len(live), ratio=round(ratio, 6), snapshot_files=snap.files
        )
        log.info(
            "Snapshot %s of source %r: %d SKU(s); %d live product(s) of this source; %d missing (%.1f %%)",
            ", ".join(snap.files), policy.source, len(snap.skus), len(live), len(candidates), ratio * 100,
        )
        if not candidates:
            if not env.dry_run:
                lc.clear_pending(policy.source)
            summary["status"] = "nothing_to_retire"
            return summary
        rows = [{"sku": sku, "threekit_id": live[sku] or "", "action": policy.retire, "status": "", "detail": ""}
                for sku in candidates]
        blocked = ratio > policy.max_retire_ratio and not confirm
        if env.dry_run:
            for row in rows:
                row["status"] = "would_retire" if not blocked else "would_block"
            summary.update(status="dry_run", retired=rows)
            _log_rows("Dry run: would retire", rows)
            _write_report(env, ftp, summary, upload=False)
            return summary
        if blocked:
            lc.set_pending(policy.source, env.run_id, snap.skus, snap.protected, len(candidates), len(live))
            message = (
                f"snapshot {', '.join(snap.files)} would retire {len(candidates)} of {len(live)} products of source "
                f"{policy.source!r} ({ratio:.1%} > max_retire_ratio {policy.max_retire_ratio:.1%}); nothing was "
                "retired. If the export really dropped them, trigger threekit_catalog_import with "
                "confirm_retire=true to apply it."
            )
            for row in rows:
                row["status"], row["detail"] = "blocked", "above max_retire_ratio"
            summary.update(status="blocked", retired=rows, message=message)
            _log_rows("Blocked (not retired)", rows)
            _write_report(env, ftp, summary, upload=ftp is not None)
            raise RetireBlocked(message)

        # 2. Apply, one SKU at a time; each success is recorded before the next.
        failures = []
        with open_ledger(config, LEDGER_NAME) as delta:
            for row in rows:
                try:
                    tk_id, status, detail = _retire_one(client, policy, row["sku"], row["threekit_id"] or None)
                except Exception as exc:  # noqa: BLE001 - reported per SKU, the others still go
                    row.update(status="failed", detail=str(exc)[:300])
                    failures.append(row)
                    continue
                row.update(threekit_id=tk_id or "", status=status, detail=detail)
                lc.mark_retired(policy.source, [(row["sku"], tk_id, policy.action)], env.run_id)
                if policy.action != "report":
                    delta.forget([row["sku"]])
        lc.clear_pending(policy.source)
    summary.update(status="retired", retired=rows, failed=len(failures))
    _log_rows(f"Retired ({policy.retire})", rows)
    _write_report(env, ftp, summary, upload=ftp is not None)
    if failures:
        raise RetireFailed(
            f"{len(failures)} of {len(rows)} retirement(s) failed: "
            + "; ".join(f"{r['sku']} ({r['threekit_id'] or 'no id'}): {r['detail']}" for r in failures[:10])
        )
    return summary


def _log_rows(title: str, rows: list[dict[str, Any]]) -> None:
    from threekit_pipeline.pipelines.reports import format_table

    log.info("%s: %d SKU(s)\n%s", title, len(rows), format_table(rows, list(RETIRE_COLUMNS), limit=200))


def _write_report(env: Any, ftp: Any | None, summary: dict[str, Any], *, upload: bool) -> None:
    """``<run>.retired.json`` and ``<run>.retired.csv`` in the run folder, uploaded to
    ``<reports>/catalog_import/`` unless ``upload`` is False."""
    from threekit_pipeline.pipelines.catalog_import import REPORTS_SUBDIR
    from threekit_pipeline.pipelines.reports import neutralise_cell, sanitize_run_id

    folder = env.run_dir("retire", fresh=True)
    name = sanitize_run_id(env.run_id)
    json_path = folder / f"{name}.retired.json"
    json_path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    csv_path = folder / f"{name}.retired.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(RETIRE_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for row in summary.get("retired", []):
            writer.writerow({k: neutralise_cell(v) for k, v in row.items()})
    summary["report"] = str(json_path)
    if not upload or ftp is None:
        return
    remote_dir = "/" + "/".join(p.strip("/") for p in (env.config.folder("reports"), REPORTS_SUBDIR) if p.strip("/"))
    ftp.makedirs(remote_dir)
    remote = [ftp.upload_atomic(p, f"{remote_dir}/{p.name}") or f"{remote_dir}/{p.name}" for p in (json_path, csv_path)]
    summary["report"] = remote[0]
    log.info("Retirement report uploaded: %s", ", ".join(remote))


def policy_dict(policy: RetirePolicy) -> dict[str, Any]:
    return asdict(policy)


def has_work(env: Any) -> bool:
    """Whether :func:`retire_missing` has anything to look at: this run's import plan, or a
    ``confirm_retire`` run (which applies the pending retirement)."""
    return _read_plan(env) is not None or confirm_retire(env)
