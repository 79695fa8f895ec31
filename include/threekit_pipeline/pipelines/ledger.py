"""Delta ledger: which content of each key (SKU) Threekit last confirmed, in SQLite or PostgreSQL.

The ledger survives restarts and is shared by every run of a DAG. Two backends, same semantics
(every write one transaction, upserts so a retried write never duplicates, primary-key lookups):

* **SQLite** (default, single host): ``<staging>/ledger/<name>.sqlite`` in the shared staging
  directory. WAL journaling and a busy timeout let several task processes of one host read and
  write it concurrently; ``BEGIN IMMEDIATE`` queues writers instead of failing half-way.
* **PostgreSQL** (several hosts): a plain libpq DSN (``postgresql://user@host:5432/db``); each
  ledger name gets its own schema (``ledger_<name>``, see :func:`ledger_schema`) holding the same
  tables, so one database serves every ledger of a deployment. Concurrent writers are safe: rows
  are upserted in key order (no deadlocks between overlapping batches) and a transaction that
  still hits a deadlock or serialization failure is retried whole.

Only entries Threekit confirmed (created/updated) are recorded, so a failed or partial import
is re-sent on the next run, and unchanged content is never sent twice.

The schema is versioned (``meta.schema_version``) and migrated on open by numbered migrations
(:data:`DELTA_MIGRATIONS`): each runs once, in one transaction with its version bump, under a
lock (SQLite's write lock, PostgreSQL's advisory lock on the schema), so two processes opening
the same ledger at once migrate it exactly once. A ledger newer than this code is refused.

No Airflow imports (the Airflow connection is turned into a DSN by
:mod:`threekit_pipeline.airflow.hooks.ledger`)::

    with Ledger(path) as ledger:                    # or Ledger(dsn=..., name="catalog_import")
        plan = ledger.plan([("SKU-1", "ab12..."), ("SKU-2", "cd34...")])
        ...send plan.to_send...
        ledger.record(confirmed_pairs, run_id="scheduled__2026-11-23T00:00:00+00:00")
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

log = logging.getLogger(__name__)

# SQLite limits the number of bound parameters per statement; stay far below it. PostgreSQL
# takes a whole array as one parameter (``= ANY(%s)``), so its chunks can be larger.
_LOOKUP_CHUNK = 500
_PG_LOOKUP_CHUNK = 10_000
_PG_WRITE_ATTEMPTS = 5
_T = TypeVar("_T")


class LedgerError(RuntimeError):
    """The ledger cannot be used (corrupt, wrong or newer schema, unwritable, unreachable)."""


class Migration(NamedTuple):
    """One numbered schema step: statements for SQLite and for PostgreSQL (run in order)."""

    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


def portable(*statements: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The same statements for both backends (``Migration(n, text, *portable(...))``)."""
    return statements, statements


#: The delta ledger's migrations. 1: the original tables; 2: the batch-stamp, Pricing and
#: metadata-type tables (ledgers written before version 2 may hold them already: the
#: statements are idempotent).
DELTA_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "meta and entries",
        *portable(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, content_hash TEXT NOT NULL,"
            " imported_at TEXT NOT NULL, run_id TEXT NOT NULL)",
        ),
    ),
    Migration(
        2,
        "batch stamps, confirmed Pricing and metadata types",
        *portable(
            "CREATE TABLE IF NOT EXISTS stamps (key TEXT PRIMARY KEY, stamp TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS pricing (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            # Metadata key -> String | Number, fixed by the first batch that wrote the key.
            "CREATE TABLE IF NOT EXISTS metadata_types (key TEXT PRIMARY KEY, type TEXT NOT NULL)",
        ),
    ),
)

SCHEMA_VERSION = DELTA_MIGRATIONS[-1].version


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


_SCHEMA_UNSAFE = re.compile(r"[^a-z0-9_]+")
_PG_IDENTIFIER_MAX = 63


def ledger_schema(name: str) -> str:
    """PostgreSQL schema of ledger ``name``: ``ledger_<name>``, lower case, ``[a-z0-9_]`` only.

    Names longer than PostgreSQL's 63-byte identifiers are cut and suffixed with 8 hex digits
    of their SHA-1, so two long names never share a schema.
    """
    schema = "ledger_" + (_SCHEMA_UNSAFE.sub("_", name.lower()).strip("_") or "default")
    if len(schema) > _PG_IDENTIFIER_MAX:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        schema = f"{schema[: _PG_IDENTIFIER_MAX - 9]}_{digest}"
    return schema


def describe_dsn(dsn: str) -> str:
    """``postgresql://user@host:port/db`` of a DSN, without its password (for logs and errors)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - a malformed DSN must not be echoed (it may hold a password)
        return "postgresql://<unparsable DSN>"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host') or 'localhost'}{port}/{parts.get('dbname') or ''}"


def _scrub(text: str, dsn: str | None) -> str:
    """``text`` without the DSN's password (driver messages may quote connection strings)."""
    if not dsn:
        return text
    from psycopg.conninfo import conninfo_to_dict

    try:
        password = conninfo_to_dict(dsn).get("password")
    except Exception:  # noqa: BLE001
        return text.replace(dsn, "<dsn>")
    text = text.replace(dsn, "<dsn>")
    return text.replace(str(password), "***") if password else text


class LedgerStore:
    """A versioned SQL store on SQLite (``path``) or PostgreSQL (``dsn`` + ``name``).

    Subclasses declare :attr:`MIGRATIONS`; opening applies those not applied yet (up to
    ``schema_version``, default the newest). Statements are written once with ``?``
    placeholders and portable SQL (``INSERT ... ON CONFLICT``); :meth:`_write` runs a function
    in one transaction and, on PostgreSQL, retries it whole after a deadlock or serialization
    failure. Raises :class:`LedgerError` when the store cannot be opened or written.
    """

    MIGRATIONS: ClassVar[tuple[Migration, ...]] = DELTA_MIGRATIONS

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        dsn: str | None = None,
        name: str | None = None,
        busy_timeout_s: float = 30.0,
        schema_version: int | None = None,
    ) -> None:
        if (path is None) == (dsn is None):
            raise ValueError("give either a SQLite path or a PostgreSQL dsn (with a ledger name)")
        self._dsn = dsn
        self.path: Path | None = None
        self.schema: str | None = None
        target = self.MIGRATIONS[-1].version if schema_version is None else schema_version
        if path is not None:
            self.path = Path(path)
            self.name = name or self.path.stem
            self.label = str(self.path.name)
            self.dialect = "sqlite"
        else:
            if not name:
                raise ValueError("a PostgreSQL ledger needs its name (it selects the schema)")
            self.name = name
            self.schema = ledger_schema(name)
            self.label = f"{name} ({describe_dsn(dsn)}, schema {self.schema})"
            self.dialect = "postgresql"
        self._conn: Any = None
        try:
            self._open(busy_timeout_s, target)
        except LedgerError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            if self._is_db_error(exc):
                raise LedgerError(f"ledger {self.label}: {_scrub(str(exc), dsn)}") from None
            raise

    # --- connection ------------------------------------------------------------------------

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def _open(self, busy_timeout_s: float, target: int) -> None:
        """Connect and migrate. SQLite answers "database is locked" at once, without waiting on the
        busy timeout, to a connection switching the file to WAL while another process does the
        same; such an open is retried (closed first) until the busy timeout has passed."""
        import tenacity

        def locked(exc: BaseException) -> bool:
            return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)

        def reset(_state: Any) -> None:
            self.close()

        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception(locked),
            stop=tenacity.stop_after_delay(busy_timeout_s),
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=1.0),
            before_sleep=reset,
            reraise=True,
        ):
            with attempt:
                self._connect(busy_timeout_s)
                self._migrate(target)

    def _connect(self, busy_timeout_s: float) -> None:
        if self.is_postgres:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict

            options = {} if "connect_timeout" in conninfo_to_dict(self._dsn) else {"connect_timeout": int(max(busy_timeout_s, 1))}
            self._conn = psycopg.connect(self._dsn, autocommit=True, **options)
            self._conn.execute("SELECT set_config('search_path', %s, false)", (f'"{self.schema}"',))
            self._conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(busy_timeout_s * 1000)}ms",))
            return
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None)
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")

    @staticmethod
    def _is_db_error(exc: BaseException) -> bool:
        if isinstance(exc, sqlite3.Error):
            return True
        try:
            import psycopg
        except ImportError:  # pragma: no cover - psycopg is a pinned dependency
            return False
        return isinstance(exc, psycopg.Error)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # --- statements ---------------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.is_postgres else statement

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of one read statement (outside any write transaction)."""
        try:
            cursor = self._conn.execute(self._sql(statement), params)
            return [tuple(row) for row in cursor.fetchall()]
        except Exception as exc:
            if self._is_db_error(exc):
                raise LedgerError(f"ledger {self.label}: {_scrub(str(exc), self._dsn)}") from None
            raise

    def _in(self, column: str, keys: Sequence[str]) -> tuple[str, list[Any]]:
        """``column IN (...)`` for one chunk of keys: the condition and its parameters."""
        if self.is_postgres:
            return f"{column} = ANY(?)", [list(keys)]
        return f"{column} IN ({','.join('?' * len(keys))})", list(keys)

    def _key_chunks(self, keys: Iterable[str]) -> Iterator[list[str]]:
        size = _PG_LOOKUP_CHUNK if self.is_postgres else _LOOKUP_CHUNK
        yield from _chunks(list(dict.fromkeys(keys)), size)

    def _write(self, work: Callable[[_Cursor], _T], *, what: str = "write") -> _T:
        """Run ``work(cursor)`` in one transaction (retried whole on a PostgreSQL deadlock)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._transaction(work)
            except Exception as exc:
                if self.is_postgres and attempt < _PG_WRITE_ATTEMPTS and _retryable(exc):
                    log.warning("Ledger %s: %s hit %s, retrying (attempt %d)", self.label, what, type(exc).__name__, attempt)
                    continue
                if self._is_db_error(exc):
                    raise LedgerError(f"ledger {self.label}: {what} failed: {_scrub(str(exc), self._dsn)}") from None
                raise

    def _transaction(self, work: Callable[[_Cursor], _T]) -> _T:
        if self.is_postgres:
            with self._conn.transaction(), self._conn.cursor() as cursor:
                return work(_Cursor(cursor, self))
        # IMMEDIATE takes the write lock up front, so concurrent writers queue on the busy
        # timeout instead of failing half-way.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(_Cursor(self._conn.cursor(), self))
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return result

    # --- schema ---------------------------------------------------------------------------------

    def _table_exists(self, table: str, cursor: _Cursor | None = None) -> bool:
        if self.is_postgres:
            statement, params = "SELECT to_regclass(?) IS NOT NULL", [f'"{self.schema}".{table}']
        else:
            statement, params = "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]
        rows = cursor.execute(statement, params).fetchall() if cursor else self._query(statement, params)
        return bool(rows[0][0])

    def _version(self, cursor: _Cursor | None = None) -> int:
        if not self._table_exists("meta", cursor):
            return 0
        statement = "SELECT value FROM meta WHERE key = 'schema_version'"
        rows = cursor.execute(statement).fetchall() if cursor else self._query(statement)
        return int(rows[0][0]) if rows else 0

    @property
    def schema_version(self) -> int:
        """The version the store's schema is at (``meta.schema_version``; 0 before any)."""
        return self._version()

    def _migrate(self, target: int) -> None:
        newest = self.MIGRATIONS[-1].version
        if self._version() == target:
            return

        def apply(cursor: _Cursor) -> list[int]:
            if self.is_postgres:
                # Two processes opening a new ledger at once: the advisory lock lets one create
                # the schema and migrate while the other waits, then finds it done.
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(?))", [f"threekit_ledger:{self.schema}"])
                cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            current = self._version(cursor)
            if current > newest:
                raise LedgerError(
                    f"ledger {self.label}: schema version {current} is newer than this code's {newest}; "
                    "upgrade the pipelines"
                )
            applied = []
            for migration in self.MIGRATIONS:
                if current < migration.version <= target:
                    for statement in migration.postgres if self.is_postgres else migration.sqlite:
                        cursor.execute(statement)
                    applied.append(migration.version)
            if applied:
                cursor.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                cursor.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [str(applied[-1])],
                )
            return applied

        applied = self._write(apply, what="schema migration")
        if applied:
            log.info("Ledger %s: schema migrated to version %d (applied %s)", self.label, applied[-1], applied)


class _Cursor:
    """A DB-API cursor taking ``?`` placeholders on both backends."""

    def __init__(self, cursor: Any, store: LedgerStore) -> None:
        self._cursor = cursor
        self._store = store

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        self._cursor.execute(self._store._sql(statement), params)
        return self._cursor

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run ``statement`` for each row; returns the number of rows it changed."""
        if not rows:
            return 0
        self._cursor.executemany(self._store._sql(statement), rows)
        return max(self._cursor.rowcount, 0)


def _retryable(exc: BaseException) -> bool:
    try:
        from psycopg import errors
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (errors.DeadlockDetected, errors.SerializationFailure, errors.LockNotAvailable))


class Ledger(LedgerStore):
    """Map ``key -> (content_hash, imported_at, run_id)``, on SQLite (``path``) or PostgreSQL.

    ``Ledger(path)`` opens ``path`` (SQLite); ``Ledger(dsn=..., name=...)`` opens ledger
    ``name`` in a PostgreSQL database; :meth:`open` picks by whether a DSN is given. Open it as
    a context manager (or call :meth:`close`). Every write is one transaction, so a crash
    leaves either the old or the new state, never a mix. Raises :class:`LedgerError`.
    """

    MIGRATIONS = DELTA_MIGRATIONS

    @classmethod
    def open(cls, staging_dir: str | Path, name: str, *, dsn: str | None = None, **kwargs: Any) -> Ledger:
        """Ledger ``name``: in PostgreSQL when ``dsn`` is given, else ``<staging>/ledger/<name>.sqlite``."""
        if dsn:
            return cls(dsn=dsn, name=name, **kwargs)
        return cls(ledger_path(staging_dir, name), **kwargs)

    def __enter__(self) -> Ledger:
        return self

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM entries")[0][0])

    def get(self, key: str) -> LedgerEntry | None:
        """The last confirmed import of ``key``, or None."""
        return self.lookup([key]).get(key)

    def lookup(self, keys: Iterable[str]) -> dict[str, LedgerEntry]:
        """Entries for the given keys (missing keys are absent from the result); primary-key lookups."""
        found: dict[str, LedgerEntry] = {}
        for chunk in self._key_chunks(keys):
            condition, params = self._in("key", chunk)
            rows = self._query(f"SELECT key, content_hash, imported_at, run_id FROM entries WHERE {condition}", params)
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
        """Record confirmed ``(key, content_hash)`` pairs (upsert, one transaction); returns the count.

        Recording the same pairs again (a retried task) changes nothing but ``imported_at`` and
        ``run_id``; it never adds a row.
        """
        moment = (imported_at or datetime.now(UTC)).astimezone(UTC).isoformat()
        # Key order: two writers upserting overlapping keys lock them in the same order.
        rows = sorted((key, content_hash, moment, run_id) for key, content_hash in dict(items).items())
        if not rows:
            return 0
        self._write(
            lambda cur: cur.executemany(
                "INSERT INTO entries (key, content_hash, imported_at, run_id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET content_hash = excluded.content_hash, "
                "imported_at = excluded.imported_at, run_id = excluded.run_id",
                rows,
            ),
            what=f"recording {len(rows)} entries",
        )
        log.info("Ledger %s: recorded %d confirmed entr%s", self.label, len(rows), "y" if len(rows) == 1 else "ies")
        return len(rows)

    def forget(self, keys: Iterable[str]) -> int:
        """Remove keys (their next import is sent again); returns how many existed."""
        chunks = list(self._key_chunks(keys))

        def delete(cur: _Cursor) -> int:
            removed = 0
            for chunk in chunks:
                condition, params = self._in("key", chunk)
                removed += max(cur.execute(f"DELETE FROM entries WHERE {condition}", params).rowcount, 0)
            return removed

        return self._write(delete, what="forgetting entries")

    def _values(self, table: str, keys: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in self._key_chunks(keys):
            condition, params = self._in("key", chunk)
            found.update(self._query(f"SELECT key, {_COLUMN[table]} FROM {table} WHERE {condition}", params))
        return found

    def _store(self, table: str, items: Iterable[tuple[str, str]]) -> int:
        rows = sorted(dict(items).items())
        if rows:
            column = _COLUMN[table]
            self._write(
                lambda cur: cur.executemany(
                    f"INSERT INTO {table} (key, {column}) VALUES (?, ?) "
                    f"ON CONFLICT (key) DO UPDATE SET {column} = excluded.{column}",
                    rows,
                ),
                what=f"recording {len(rows)} {table}",
            )
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
        return dict(self._query("SELECT key, type FROM metadata_types"))

    def fix_metadata_types(self, types: dict[str, str]) -> int:
        """Record the types of keys not seen before (a known key keeps its type); returns how many were new."""
        rows = sorted(types.items())
        if not rows:
            return 0

        def insert(cur: _Cursor) -> int:
            added = 0
            for row in rows:
                statement = "INSERT INTO metadata_types (key, type) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"
                added += max(cur.execute(statement, row).rowcount, 0)
            return added

        return self._write(insert, what="recording metadata types")


_COLUMN = {"stamps": "stamp", "pricing": "value"}


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- copying a ledger ---------------------------------------------------------------------------


class TableCopy(NamedTuple):
    """How one table is copied: its columns and the key an upsert matches on (empty: append-only)."""

    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]


#: The delta ledger's tables, as :func:`copy_ledger` copies them.
DELTA_TABLES: tuple[TableCopy, ...] = (
    TableCopy("entries", ("key", "content_hash", "imported_at", "run_id"), ("key",)),
    TableCopy("stamps", ("key", "stamp"), ("key",)),
    TableCopy("pricing", ("key", "value"), ("key",)),
    TableCopy("metadata_types", ("key", "type"), ("key",)),
)

_COPY_BATCH = 2_000


@dataclass(frozen=True)
class CopiedTable:
    """Outcome of copying one table: rows read from the source, rows the target did not have."""

    table: str
    read: int
    added: int


def copy_ledger(source: LedgerStore, target: LedgerStore, tables: Sequence[TableCopy] = DELTA_TABLES) -> list[CopiedTable]:
    """Copy every row of ``tables`` from ``source`` into ``target`` (both open, same schema version).

    Idempotent: keyed rows are upserted (the source's values win), append-only rows (no key)
    are inserted only when the target lacks an identical row, so copying twice adds nothing.
    Each table is copied in one transaction of the target. Returns one :class:`CopiedTable`
    per table, in order.
    """
    results = []
    for spec in tables:
        columns = ", ".join(spec.columns)
        marks = ", ".join("?" * len(spec.columns))
        if spec.key:
            updates = ", ".join(f"{c} = excluded.{c}" for c in spec.columns if c not in spec.key)
            conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
            statement = (
                f"INSERT INTO {spec.table} ({columns}) VALUES ({marks}) ON CONFLICT ({', '.join(spec.key)}) {conflict}"
            )
            order = f" ORDER BY {', '.join(spec.key)}"  # key order: no deadlock with a concurrent writer
        else:
            same = "IS NOT DISTINCT FROM" if target.is_postgres else "IS"
            match = " AND ".join(f"{c} {same} ?" for c in spec.columns)
            statement = (
                f"INSERT INTO {spec.table} ({columns}) SELECT {marks} "
                f"WHERE NOT EXISTS (SELECT 1 FROM {spec.table} WHERE {match})"
            )
            order = " ORDER BY seq" if spec.table == "events" else ""

        def copy(cur: _Cursor, spec: TableCopy = spec, statement: str = statement, order: str = order) -> tuple[int, int]:
            before = int(cur.execute(f"SELECT COUNT(*) FROM {spec.table}").fetchone()[0])
            read = 0
            # Streamed in batches: a ledger of millions of rows never sits in memory whole.
            rows = source._conn.execute(f"SELECT {', '.join(spec.columns)} FROM {spec.table}{order}")
            while batch := rows.fetchmany(_COPY_BATCH):
                read += len(batch)
                cur.executemany(statement, [tuple(r) if spec.key else (*r, *r) for r in batch])
            return read, int(cur.execute(f"SELECT COUNT(*) FROM {spec.table}").fetchone()[0]) - before

        read, added = target._write(copy, what=f"copying {spec.table}")
        results.append(CopiedTable(spec.table, read, added))
        log.info("Ledger %s: copied %s, %d row(s) read, %d new", target.label, spec.table, read, added)
    return results
