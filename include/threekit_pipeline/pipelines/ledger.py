"""Delta ledger: which content of each key (SKU) Threekit last confirmed, kept in SQLite.

The ledger survives restarts and is shared by every run of a DAG: it lives in the shared
staging directory (``<staging>/ledger/<name>.sqlite``). WAL journaling and a busy timeout
let several task processes read and write it concurrently. Only entries Threekit confirmed
(created/updated) are recorded, so a failed or partial import is re-sent on the next run,
and unchanged content is never sent twice.

No Airflow imports::

    with Ledger(path) as ledger:
        plan = ledger.plan([("SKU-1", "ab12..."), ("SKU-2", "cd34...")])
        ...send plan.to_send...
        ledger.record(confirmed_pairs, run_id="scheduled__2026-11-23T00:00:00+00:00")
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# SQLite limits the number of bound parameters per statement; stay far below it.
_LOOKUP_CHUNK = 500


class LedgerError(RuntimeError):
    """The ledger file cannot be used (corrupt, wrong schema, unwritable)."""


@dataclass(frozen=True)
class LedgerEntry:
    """Last confirmed import of one key."""

    key: str
    content_hash: str
    imported_at: datetime
    run_id: str


@dataclass
class DeltaPlan:
    """Keys split into those whose content changed (or are new) and those already in Threekit."""

    to_send: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    new: int = 0
    changed: int = 0
    forced: bool = False

    def summary(self) -> str:
        if self.forced:
            return f"ledger ignored (force_full_resend): {len(self.to_send)} to send"
        return (
            f"{len(self.unchanged)} unchanged skipped, {len(self.to_send)} to send "
            f"({self.new} new, {self.changed} changed)"
        )


def ledger_path(staging_dir: str | Path, name: str) -> Path:
    """``<staging>/ledger/<name>.sqlite`` (the directory is created)."""
    folder = Path(staging_dir) / "ledger"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.sqlite"


class Ledger:
    """SQLite-backed map ``key -> (content_hash, imported_at, run_id)``.

    Open it as a context manager (or call :meth:`close`). Every write is one transaction,
    so a crash leaves either the old or the new state, never a mix.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"ledger {self.path}: {exc}") from exc

    def _init_schema(self) -> None:
        with self._transaction() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            cur.execute(
                "CREATE TABLE IF NOT EXISTS entries ("
                " key TEXT PRIMARY KEY,"
                " content_hash TEXT NOT NULL,"
                " imported_at TEXT NOT NULL,"
                " run_id TEXT NOT NULL)"
            )
            # Which batch stamp produced each key's current content, and the Pricing values
            # Threekit holds for it (added tables: older ledgers gain them empty).
            cur.execute("CREATE TABLE IF NOT EXISTS stamps (key TEXT PRIMARY KEY, stamp TEXT NOT NULL)")
            cur.execute("CREATE TABLE IF NOT EXISTS pricing (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            # Metadata key -> String | Number, fixed by the first batch that wrote the key.
            cur.execute("CREATE TABLE IF NOT EXISTS metadata_types (key TEXT PRIMARY KEY, type TEXT NOT NULL)")
            row = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                cur.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise LedgerError(f"ledger {self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}")

    class _Tx:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> sqlite3.Cursor:
            # IMMEDIATE takes the write lock up front, so concurrent writers queue on the
            # busy timeout instead of failing half-way.
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn.cursor()

        def __exit__(self, exc_type, exc, tb) -> None:
            self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def _transaction(self) -> Ledger._Tx:
        return Ledger._Tx(self._conn)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def get(self, key: str) -> LedgerEntry | None:
        """The last confirmed import of ``key``, or None."""
        return self.lookup([key]).get(key)

    def lookup(self, keys: Iterable[str]) -> dict[str, LedgerEntry]:
        """Entries for the given keys (missing keys are absent from the result)."""
        found: dict[str, LedgerEntry] = {}
        for chunk in _chunks(list(dict.fromkeys(keys)), _LOOKUP_CHUNK):
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT key, content_hash, imported_at, run_id FROM entries WHERE key IN ({marks})", chunk
            )
            for key, content_hash, imported_at, run_id in rows:
                found[key] = LedgerEntry(key, content_hash, datetime.fromisoformat(imported_at), run_id)
        return found

    def plan(self, items: Iterable[tuple[str, str]], *, force: bool = False) -> DeltaPlan:
        """Split ``(key, content_hash)`` pairs into to-send and unchanged (``force`` sends all).

        A key appearing several times counts once, with its last hash.
        """
        latest = dict(items)
        if force:
            return DeltaPlan(to_send=list(latest), forced=True)
        known = self.lookup(latest)
        plan = DeltaPlan()
        for key, content_hash in latest.items():
            entry = known.get(key)
            if entry is None:
                plan.new += 1
            elif entry.content_hash == content_hash:
                plan.unchanged.append(key)
                continue
            else:
                plan.changed += 1
            plan.to_send.append(key)
        return plan

    def record(
        self,
        items: Iterable[tuple[str, str]],
        *,
        run_id: str,
        imported_at: datetime | None = None,
    ) -> int:
        """Record confirmed ``(key, content_hash)`` pairs (upsert, one transaction); returns the count."""
        moment = (imported_at or datetime.now(UTC)).astimezone(UTC).isoformat()
        rows = [(key, content_hash, moment, run_id) for key, content_hash in dict(items).items()]
        if not rows:
            return 0
        try:
            with self._transaction() as cur:
                cur.executemany(
                    "INSERT INTO entries (key, content_hash, imported_at, run_id) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET content_hash = excluded.content_hash, "
                    "imported_at = excluded.imported_at, run_id = excluded.run_id",
                    rows,
                )
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"ledger {self.path}: recording {len(rows)} entries failed: {exc}") from exc
        log.info("Ledger %s: recorded %d confirmed entr%s", self.path.name, len(rows), "y" if len(rows) == 1 else "ies")
        return len(rows)

    def forget(self, keys: Iterable[str]) -> int:
        """Remove keys (their next import is sent again); returns how many existed."""
        removed = 0
        with self._transaction() as cur:
            for chunk in _chunks(list(dict.fromkeys(keys)), _LOOKUP_CHUNK):
                marks = ",".join("?" * len(chunk))
                removed += cur.execute(f"DELETE FROM entries WHERE key IN ({marks})", chunk).rowcount
        return removed


    def _values(self, table: str, keys: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in _chunks(list(dict.fromkeys(keys)), _LOOKUP_CHUNK):
            marks = ",".join("?" * len(chunk))
            for key, value in self._conn.execute(f"SELECT key, {_COLUMN[table]} FROM {table} WHERE key IN ({marks})", chunk):
                found[key] = value
        return found

    def _store(self, table: str, items: Iterable[tuple[str, str]]) -> int:
        rows = list(dict(items).items())
        if rows:
            with self._transaction() as cur:
                cur.executemany(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)", rows)
        return len(rows)

    def stamps(self, keys: Iterable[str]) -> dict[str, str]:
        """``key -> stamp`` (sortable text, e.g. ``2026-11-24T00:00:00``) of the batch that set each key's content."""
        return self._values("stamps", keys)

    def record_stamps(self, items: Iterable[tuple[str, str]]) -> int:
        """Remember the batch stamp of confirmed keys (upsert)."""
        return self._store("stamps", items)

    def pricing(self, keys: Iterable[str]) -> dict[str, str]:
        """``key -> JSON list`` of the Pricing values last confirmed in Threekit."""
        return self._values("pricing", keys)

    def record_pricing(self, items: Iterable[tuple[str, str]]) -> int:
        """Remember the Pricing values (JSON text) of confirmed keys (upsert)."""
        return self._store("pricing", items)


    def metadata_types(self) -> dict[str, str]:
        """Every metadata key's type as first written (``String`` or ``Number``)."""
        return dict(self._conn.execute("SELECT key, type FROM metadata_types"))

    def fix_metadata_types(self, types: dict[str, str]) -> int:
        """Record the types of keys not seen before (a known key keeps its type); returns how many were new."""
        rows = list(types.items())
        if not rows:
            return 0
        with self._transaction() as cur:
            before = cur.execute("SELECT COUNT(*) FROM metadata_types").fetchone()[0]
            cur.executemany("INSERT OR IGNORE INTO metadata_types VALUES (?, ?)", rows)
            return cur.execute("SELECT COUNT(*) FROM metadata_types").fetchone()[0] - before


_COLUMN = {"stamps": "stamp", "pricing": "value"}


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
