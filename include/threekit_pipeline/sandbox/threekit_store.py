"""SQLite state of the threekit-sandbox (assets, files, jobs, layers, translations).

One database file under the data directory, in WAL mode. Writers serialise on one
process-wide lock and run inside ``BEGIN IMMEDIATE`` transactions, so a request either
applies completely or not at all; readers never block. File contents live next to the
database under ``blobs/``, addressed by their sha256.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import queue
import shutil
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from threekit_pipeline.sandbox.threekit_catalog import canonical_value

SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    imported_file TEXT
);
CREATE INDEX IF NOT EXISTS assets_type_name ON assets (org_id, type, name);
CREATE TABLE IF NOT EXISTS asset_terms (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (kind, name, value, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS asset_terms_seq ON asset_terms (seq);
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    running_at REAL NOT NULL,
    due_at REAL NOT NULL,
    data TEXT NOT NULL,
    payload TEXT NOT NULL,
    run TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE TABLE IF NOT EXISTS layers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    asset_id TEXT NOT NULL,
    job_id TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS layers_asset ON layers (asset_id);
CREATE TABLE IF NOT EXISTS translations (
    org_id TEXT NOT NULL,
    key TEXT NOT NULL,
    locale TEXT NOT NULL,
    id TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (org_id, key, locale)
);
CREATE TABLE IF NOT EXISTS pricebooks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS locales (
    org_id TEXT NOT NULL,
    locale TEXT NOT NULL,
    PRIMARY KEY (org_id, locale)
);
"""

TABLES = ("assets", "asset_terms", "files", "jobs", "layers", "translations", "locales", "pricebooks")


def utc_now() -> str:
    """The current time as ISO-8601 UTC with milliseconds (``2024-01-02T03:04:05.678Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Store:
    """Thread-safe access to the sandbox database and blob directory."""

    def __init__(self, data_dir: Path, org_id: str) -> None:
        self.data_dir = Path(data_dir)
        self.org_id = org_id
        self.blob_dir = self.data_dir / "blobs"
        self.tmp_dir = self.data_dir / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / "threekit-sandbox.sqlite3"
        self._write_lock = threading.RLock()
        self._pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        with self.connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            self._migrate(conn)

    # -- connections ----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=NORMAL")
        # Python's lower() (full Unicode) for the case-insensitive name filter; SQLite's is ASCII-only.
        conn.create_function("py_lower", 1, str.lower, deterministic=True)
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection in autocommit mode (each statement sees committed data)."""
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._connect()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.rollback()
            self._pool.put(conn)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One atomic write transaction; rolled back if the block raises."""
        with self._write_lock, self.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def close(self) -> None:
        """Close every connection (at shutdown)."""
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()

    def reset(self) -> None:
        """Delete every record and stored file content."""
        with self.write() as conn:
            for table in TABLES:
                conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            shutil.rmtree(self.blob_dir, ignore_errors=True)
            self.blob_dir.mkdir(parents=True, exist_ok=True)

    # -- assets ---------------------------------------------------------------------------
    # Every lookup the API offers is answered from an index, so a listing page, a query match
    # or a by-id read costs the same with a million assets as with ten: ``assets.id`` (unique),
    # ``(org_id, type, name)``, and ``asset_terms`` rows ``(kind, name, value, seq)`` for each
    # metadata entry (``meta``: key, canonical value), tag (``tag``) and keyword (``keyword``).
    @staticmethod
    def _asset_from_row(row: sqlite3.Row) -> dict[str, Any]:
        item = json.loads(row["data"])
        item["seq"] = row["seq"]
        return item

    @staticmethod
    def _terms(seq: int, item: dict[str, Any]) -> list[tuple[str, str, str, int]]:
        terms = {("meta", str(key), canonical_value(value), seq) for key, value in (item.get("metadata") or {}).items()}
        terms.update(("tag", "", str(tag), seq) for tag in item.get("tags") or [])
        terms.update(("keyword", "", str(word), seq) for word in item.get("keywords") or [])
        return sorted(terms)

    def _index_asset(self, conn: sqlite3.Connection, seq: int, item: dict[str, Any], *, fresh: bool) -> None:
        if not fresh:
            conn.execute("DELETE FROM asset_terms WHERE seq = ?", (seq,))
        conn.executemany("INSERT OR IGNORE INTO asset_terms VALUES (?, ?, ?, ?)", self._terms(seq, item))

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring a database made before the asset indexes up to date (columns, terms)."""
        columns = {row["name"] for row in conn.execute("PRAGMA table_info(assets)")}
        if "deleted" in columns:
            self._late_indexes(conn)
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("ALTER TABLE assets ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0")
            conn.execute("ALTER TABLE assets ADD COLUMN imported_file TEXT")
            rows = conn.execute("SELECT seq, data FROM assets").fetchall()
            for row in rows:
                item = json.loads(row["data"])
                conn.execute(
                    "UPDATE assets SET deleted = ?, imported_file = ? WHERE seq = ?",
                    (1 if item.get("deletedAt") else 0, item.get("importedFileId"), row["seq"]),
                )
                self._index_asset(conn, row["seq"], item, fresh=False)
            self._late_indexes(conn)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    @staticmethod
    def _late_indexes(conn: sqlite3.Connection) -> None:
        """Indexes on the columns :meth:`_migrate` may have added."""
        conn.execute("CREATE INDEX IF NOT EXISTS assets_imported_file ON assets (imported_file)")
        # Counting an org's live assets of a type reads this index only.
        conn.execute("CREATE INDEX IF NOT EXISTS assets_live ON assets (org_id, type, deleted)")

    def assets(
        self,
        conn: sqlite3.Connection,
        types: list[str] | None = None,
        asset_id: str | None = None,
        include_deleted: bool = False,
        name: str | None = None,
    ) -> list[dict[str, Any]]:
        """The organization's assets (optionally of ``types``, one id or one name), oldest first.

        Deleted assets (``deletedAt`` set) are left out unless ``include_deleted``.
        """
        return self.find_assets(
            conn, types=types, asset_id=asset_id, name=name, include_deleted=include_deleted
        )[0]

    def find_assets(
        self,
        conn: sqlite3.Connection,
        *,
        types: list[str] | tuple[str, ...] | None = None,
        asset_id: str | None = None,
        name: str | None = None,
        name_like: str | None = None,
        tags: set[str] | None = None,
        keywords: set[str] | None = None,
        metadata: dict[str, Any] | None = None,
        imported_file: str | None = None,
        include_deleted: bool = False,
        order: str = "createdAt",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
        with_count: bool = False,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Assets matching every given filter, as the API's listings filter them.

        ``tags``/``keywords``: any one of them; ``metadata``: every ``key: value`` (values
        compared canonically, 5 = 5.0 = "5"); ``name_like``: case-insensitive substring.
        ``order``: ``createdAt`` (insertion), ``updatedAt`` or ``name``, ties by insertion.
        Returns ``(assets of the page, total matches or None unless with_count)``.
        """
        # Query plans: with a term filter (metadata, tags, keywords), an id or an imported file
        # the match set is small and found through its own index; otherwise a page in insertion
        # order walks the table in ``seq`` order and stops at the page's end. In both cases
        # ``+`` keeps SQLite from reading every asset of the type through (org_id, type, name)
        # and sorting them all for each page.
        selective = bool(metadata or tags or keywords or asset_id is not None or imported_file is not None)
        walk = selective or (order == "createdAt" and name is None)
        where = ["{plain}org_id = ?"]
        params: list[Any] = [self.org_id]
        if types:
            where.append(f"{{plain}}type IN ({','.join('?' * len(types))})")
            params += list(types)
        if asset_id is not None:
            where.append("id = ?")
            params.append(asset_id)
        if name is not None:
            where.append("name = ?")
            params.append(name)
        if name_like:
            where.append("instr(py_lower(name), ?) > 0")
            params.append(name_like.lower())
        if imported_file is not None:
            where.append("imported_file = ?")
            params.append(imported_file)
        if not include_deleted:
            # By name: the (org_id, type, name) index finds the few assets of that name; ``+``
            # keeps SQLite from taking (org_id, type, deleted), which holds every live asset.
            where.append("+deleted = 0" if name is not None else "deleted = 0")
        for kind, words in (("tag", tags), ("keyword", keywords)):
            if words:
                where.append(
                    f"seq IN (SELECT seq FROM asset_terms WHERE kind = ? AND name = '' "
                    f"AND value IN ({','.join('?' * len(words))}))"
                )
                params += [kind, *sorted(words)]
        for key, value in (metadata or {}).items():
            where.append("seq IN (SELECT seq FROM asset_terms WHERE kind = 'meta' AND name = ? AND value = ?)")
            params += [str(key), canonical_value(value)]
        template = " AND ".join(where)
        count = None
        if with_count:
            counted = template.format(plain="+" if selective else "")
            count = conn.execute(f"SELECT COUNT(*) FROM assets WHERE {counted}", params).fetchone()[0]  # noqa: S608
        clause = template.format(plain="+" if walk else "")
        direction = "DESC" if descending else "ASC"
        sort = {
            "createdAt": f"seq {direction}",
            "name": f"name {direction}, seq {direction}",
            "updatedAt": f"json_extract(data, '$.updatedAt') {direction}, seq {direction}",
        }[order]
        if limit is not None and not selective and order == "createdAt":
            # A page deep into a listing: skip ``offset`` entries of the (org_id, type, deleted)
            # index (in seq order within one type), not ``offset`` whole rows of the table.
            inner = template.format(plain="")
            sql = (
                f"SELECT seq, data FROM assets WHERE seq IN (SELECT seq FROM assets WHERE {inner} "  # noqa: S608
                f"ORDER BY {sort} LIMIT ? OFFSET ?) ORDER BY {sort}"
            )
            params += [limit, offset]
        else:
            sql = f"SELECT seq, data FROM assets WHERE {clause} ORDER BY {sort}"  # noqa: S608 - fixed fragments
            if limit is not None:
                sql += " LIMIT ? OFFSET ?"
                params += [limit, offset]
        return [self._asset_from_row(row) for row in conn.execute(sql, params)], count

    def match_item(
        self,
        conn: sqlite3.Connection,
        types: tuple[str, ...],
        query: dict[str, Any],
        product_name: str | None,
    ) -> dict[str, Any] | None:
        """The oldest live asset of ``types`` matching every criterion of an import ``query``.

        ``query``: validated ``{id?, name?, metadata?: {key: value}}``; with no criterion the
        asset is matched by ``product_name`` (none without it). One indexed query.
        """
        criteria = {
            "asset_id": query.get("id") or None,
            "name": query.get("name") or None,
            "metadata": query.get("metadata") or None,
        }
        if not any(criteria.values()):
            if not product_name:
                return None
            criteria["name"] = product_name
        found, _count = self.find_assets(conn, types=types, limit=1, **criteria)
        return found[0] if found else None

    def get_asset(
        self, conn: sqlite3.Connection, asset_id: str, include_deleted: bool = False
    ) -> dict[str, Any] | None:
        """One asset by id (a deleted one only with ``include_deleted``)."""
        found = self.assets(conn, asset_id=asset_id, include_deleted=include_deleted)
        return found[0] if found else None

    def asset_id_taken(self, conn: sqlite3.Connection, asset_id: str) -> bool:
        """Whether any asset already uses ``asset_id``."""
        return conn.execute("SELECT 1 FROM assets WHERE id = ?", (asset_id,)).fetchone() is not None

    def insert_asset(self, conn: sqlite3.Connection, item: dict[str, Any]) -> dict[str, Any]:
        """Store a new asset; returns it with its ``seq``."""
        data = {k: v for k, v in item.items() if k != "seq"}
        cursor = conn.execute(
            "INSERT INTO assets (id, org_id, type, name, data, deleted, imported_file) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                item["id"],
                self.org_id,
                item["type"],
                item["name"],
                json.dumps(data, ensure_ascii=False),
                1 if data.get("deletedAt") else 0,
                data.get("importedFileId"),
            ),
        )
        self._index_asset(conn, cursor.lastrowid, data, fresh=True)
        return {**data, "seq": cursor.lastrowid}

    def update_asset(self, conn: sqlite3.Connection, item: dict[str, Any]) -> None:
        """Replace a stored asset's content."""
        data = {k: v for k, v in item.items() if k != "seq"}
        conn.execute(
            "UPDATE assets SET type = ?, name = ?, data = ?, deleted = ?, imported_file = ? WHERE id = ?",
            (
                item["type"],
                item["name"],
                json.dumps(data, ensure_ascii=False),
                1 if data.get("deletedAt") else 0,
                data.get("importedFileId"),
                item["id"],
            ),
        )
        seq = item.get("seq")
        if seq is None:
            row = conn.execute("SELECT seq FROM assets WHERE id = ?", (item["id"],)).fetchone()
            seq = row["seq"] if row else None
        if seq is not None:
            self._index_asset(conn, seq, data, fresh=False)

    def count(self, conn: sqlite3.Connection, table: str, where: str = "", params: tuple = ()) -> int:
        """Row count of one of the sandbox tables."""
        if table not in TABLES:
            raise ValueError(table)
        return conn.execute(f"SELECT COUNT(*) FROM {table} {where}", params).fetchone()[0]  # noqa: S608

    # -- files ----------------------------------------------------------------------------
    def blob_path(self, hex_digest: str) -> Path:
        """Where the content with this sha256 is stored."""
        return self.blob_dir / hex_digest

    def spool_blob(self, source: BinaryIO) -> tuple[str, int]:
        """Copy ``source`` into the blob store; return (sha256 hex, size).

        Content is written to a temporary file first and renamed into place, so a blob is
        either complete or absent.
        """
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            hex_digest = digest.hexdigest()
            target = self.blob_path(hex_digest)
            if target.exists():
                os.unlink(tmp_name)
            else:
                os.replace(tmp_name, target)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise
        return hex_digest, size

    def put_bytes_blob(self, content: bytes) -> tuple[str, int]:
        """Store in-memory content in the blob store; return (sha256 hex, size)."""
        hex_digest = hashlib.sha256(content).hexdigest()
        target = self.blob_path(hex_digest)
        if not target.exists():
            fd, tmp_name = tempfile.mkstemp(dir=self.tmp_dir)
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            os.replace(tmp_name, target)
        return hex_digest, len(content)

    def register_file(
        self,
        conn: sqlite3.Connection,
        hex_digest: str,
        size: int,
        filename: str,
        mime_type: str | None = None,
    ) -> dict[str, Any]:
        """The File record for stored content; created on first sight of these bytes."""
        content_hash = f"sha256-{hex_digest}"
        row = conn.execute("SELECT data FROM files WHERE hash = ?", (content_hash,)).fetchone()
        if row is not None:
            return json.loads(row["data"])
        extension = Path(filename).suffix.lower().lstrip(".")
        if not mime_type or mime_type == "application/octet-stream":
            mime_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        record = {
            "id": str(uuid.uuid4()),
            "orgId": self.org_id,
            "userId": None,
            "filename": filename,
            "size": size,
            "hash": content_hash,
            "extension": extension,
            "mimeType": mime_type,
            "encodings": {},
            "createdAt": utc_now(),
        }
        conn.execute(
            "INSERT INTO files (id, org_id, hash, data) VALUES (?, ?, ?, ?)",
            (record["id"], self.org_id, content_hash, json.dumps(record, ensure_ascii=False)),
        )
        return record

    def get_file(self, conn: sqlite3.Connection, file_id: str) -> dict[str, Any] | None:
        """A File record by id."""
        row = conn.execute("SELECT data FROM files WHERE id = ?", (file_id,)).fetchone()
        return json.loads(row["data"]) if row else None

    def get_file_by_hash(self, conn: sqlite3.Connection, content_hash: str) -> dict[str, Any] | None:
        """A File record by ``sha256-<hex>`` (the bare hex digest is accepted too)."""
        if not content_hash.startswith("sha256-"):
            content_hash = f"sha256-{content_hash.lower()}"
        row = conn.execute("SELECT data FROM files WHERE hash = ?", (content_hash,)).fetchone()
        return json.loads(row["data"]) if row else None

    def file_blob(self, record: dict[str, Any]) -> Path:
        """The path of a File's content."""
        return self.blob_path(record["hash"].split("-", 1)[1])

    # -- pricebooks -----------------------------------------------------------------------
    def pricebooks(self, conn: sqlite3.Connection) -> list[dict[str, Any]]:
        """The organization's pricebooks, oldest first."""
        rows = conn.execute("SELECT data FROM pricebooks WHERE org_id = ? ORDER BY seq", (self.org_id,))
        return [json.loads(row["data"]) for row in rows]

    def put_pricebook(self, conn: sqlite3.Connection, book: dict[str, Any]) -> None:
        """Store (or replace) a pricebook."""
        conn.execute(
            "INSERT INTO pricebooks (id, org_id, name, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET name = excluded.name, data = excluded.data",
            (book["id"], self.org_id, book["name"], json.dumps(book, ensure_ascii=False)),
        )

    # -- layers ---------------------------------------------------------------------------
    def layer_of(self, conn: sqlite3.Connection, asset_id: str) -> dict[str, Any] | None:
        """The render layer of an asset."""
        row = conn.execute("SELECT data FROM layers WHERE asset_id = ?", (asset_id,)).fetchone()
        return json.loads(row["data"]) if row else None

    def put_layer(self, conn: sqlite3.Connection, layer: dict[str, Any]) -> None:
        """Store ``layer`` as its asset's only render layer."""
        conn.execute("DELETE FROM layers WHERE asset_id = ?", (layer["assetId"],))
        conn.execute(
            "INSERT INTO layers (id, asset_id, job_id, data) VALUES (?, ?, ?, ?)",
            (layer["id"], layer["assetId"], layer["jobId"], json.dumps(layer, ensure_ascii=False)),
        )

    def put_render_layer(self, conn: sqlite3.Connection, layer: dict[str, Any]) -> None:
        """Store a render job's ``layer``, replacing the asset's layer of the same configuration and stage."""
        key = (layer["assetLayerConfiguration"], layer.get("stageId"), layer.get("stageConfiguration"))
        for row in conn.execute("SELECT id, data FROM layers WHERE asset_id = ?", (layer["assetId"],)).fetchall():
            old = json.loads(row["data"])
            if (old["assetLayerConfiguration"], old.get("stageId"), old.get("stageConfiguration")) == key:
                conn.execute("DELETE FROM layers WHERE id = ?", (row["id"],))
        conn.execute(
            "INSERT INTO layers (id, asset_id, job_id, data) VALUES (?, ?, ?, ?)",
            (layer["id"], layer["assetId"], layer["jobId"], json.dumps(layer, ensure_ascii=False)),
        )

    def layers(self, conn: sqlite3.Connection) -> list[dict[str, Any]]:
        """Every layer, oldest first."""
        return [json.loads(row["data"]) for row in conn.execute("SELECT data FROM layers ORDER BY seq")]

    # -- jobs -----------------------------------------------------------------------------
    def insert_job(
        self,
        conn: sqlite3.Connection,
        job: dict[str, Any],
        payload: Any,
        running_at: float,
        due_at: float,
    ) -> None:
        """Store a new job with its input and schedule (epoch seconds)."""
        conn.execute(
            "INSERT INTO jobs (id, org_id, type, status, running_at, due_at, data, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job["id"],
                self.org_id,
                job["type"],
                job["status"],
                running_at,
                due_at,
                json.dumps(job, ensure_ascii=False),
                json.dumps(payload, ensure_ascii=False),
            ),
        )

    def save_job(
        self, conn: sqlite3.Connection, job: dict[str, Any], run: dict[str, Any] | None = None
    ) -> None:
        """Persist a job's new state (and its run once it has one)."""
        conn.execute(
            "UPDATE jobs SET status = ?, data = ?, run = COALESCE(?, run) WHERE id = ?",
            (
                job["status"],
                json.dumps(job, ensure_ascii=False),
                json.dumps(run, ensure_ascii=False) if run is not None else None,
                job["id"],
            ),
        )

    def get_job(self, conn: sqlite3.Connection, job_id: str) -> dict[str, Any] | None:
        """A job by id."""
        row = conn.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return json.loads(row["data"]) if row else None

    def job_row(self, conn: sqlite3.Connection, job_id: str) -> sqlite3.Row | None:
        """The raw job row (schedule, payload, run)."""
        return conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()

    def jobs(self, conn: sqlite3.Connection, statuses: list[str] | None = None) -> list[dict[str, Any]]:
        """Jobs, oldest first, optionally filtered by status."""
        sql = "SELECT data FROM jobs WHERE org_id = ?"
        params: list[Any] = [self.org_id]
        if statuses:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            params += statuses
        return [json.loads(row["data"]) for row in conn.execute(sql + " ORDER BY seq", params)]

    def runs(self, conn: sqlite3.Connection, job_id: str | None) -> list[dict[str, Any]]:
        """Runs of finished jobs (of one job when ``job_id`` is given), oldest first."""
        sql = "SELECT run FROM jobs WHERE run IS NOT NULL"
        params: tuple = ()
        if job_id is not None:
            sql += " AND id = ?"
            params = (job_id,)
        return [json.loads(row["run"]) for row in conn.execute(sql + " ORDER BY seq", params)]

    def unfinished_jobs(self, conn: sqlite3.Connection) -> list[sqlite3.Row]:
        """Pending and running jobs with their schedule, oldest first."""
        return list(
            conn.execute(
                "SELECT id, status, running_at, due_at FROM jobs "
                "WHERE status IN ('pending', 'running') ORDER BY seq"
            )
        )

    # -- translations ---------------------------------------------------------------------
    def locales(self, conn: sqlite3.Connection) -> list[str]:
        """Every locale ever imported, sorted."""
        rows = conn.execute("SELECT locale FROM locales WHERE org_id = ? ORDER BY locale", (self.org_id,))
        return [row["locale"] for row in rows]

    def translations(self, conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
        """``{(key, locale): value}`` of the organization."""
        rows = conn.execute("SELECT key, locale, value FROM translations WHERE org_id = ?", (self.org_id,))
        return {(row["key"], row["locale"]): row["value"] for row in rows}

    def put_translation(self, conn: sqlite3.Connection, key: str, locale: str, value: str) -> dict[str, Any]:
        """Store (or overwrite) one translation; returns its record."""
        conn.execute("INSERT OR IGNORE INTO locales (org_id, locale) VALUES (?, ?)", (self.org_id, locale))
        row = conn.execute(
            "SELECT id FROM translations WHERE org_id = ? AND key = ? AND locale = ?",
            (self.org_id, key, locale),
        ).fetchone()
        translation_id = row["id"] if row else str(uuid.uuid4())
        conn.execute(
            "INSERT OR REPLACE INTO translations (org_id, key, locale, id, value) VALUES (?, ?, ?, ?, ?)",
            (self.org_id, key, locale, translation_id, value),
        )
        return {"id": translation_id, "key": key, "value": value, "locale": locale, "orgId": self.org_id}

    def add_locale(self, conn: sqlite3.Connection, locale: str) -> None:
        """Remember a locale seen in an imported CSV header."""
        conn.execute("INSERT OR IGNORE INTO locales (org_id, locale) VALUES (?, ?)", (self.org_id, locale))
