"""Where the pipelines' ledgers live: SQLite in the staging directory, or PostgreSQL.

Every ledger of the pipelines (delta ledgers of the catalog, translations and source-asset
imports, the delivery and render ledgers, the catalog lifecycle ledger) is opened through
:func:`open_ledger` / :func:`open_lifecycle_ledger`. With the ``threekit_pipeline`` Variable's
``ledger_conn_id`` unset (default) they are SQLite files ``<staging>/ledger/<name>.sqlite``,
as a single host needs; set to the id of a ``postgres`` connection, they are schemas
``ledger_<name>`` of that database, which every worker host reaches without a shared disk.

The connection is read (lazily, only when configured) by
:class:`~threekit_pipeline.airflow.hooks.ledger.LedgerDatabaseHook`; the ledgers themselves
receive a plain DSN. :func:`copy_sqlite_ledgers` moves existing SQLite ledgers into PostgreSQL.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threekit_pipeline.pipelines.ledger import (
    DELTA_TABLES,
    CopiedTable,
    Ledger,
    LedgerError,
    LedgerStore,
    copy_ledger,
    ledger_path,
)

log = logging.getLogger(__name__)


def ledger_dsn(config: Any) -> str | None:
    """DSN of the configured ledger database, or None for SQLite (``ledger_conn_id`` unset).

    ``config`` is a :class:`~threekit_pipeline.pipelines.config.PipelineConfig` (or anything
    with ``ledger_conn_id``); a staging directory path means SQLite.
    """
    conn_id = getattr(config, "ledger_conn_id", "") or ""
    if not conn_id:
        return None
    from threekit_pipeline.airflow.hooks.ledger import LedgerDatabaseHook

    return LedgerDatabaseHook(conn_id).get_dsn()


def _staging(config: Any) -> str | Path:
    return getattr(config, "staging_dir", config)


def open_ledger(config: Any, name: str) -> Ledger:
    """Delta ledger ``name`` where ``config`` says (the caller closes it, e.g. ``with``).

    ``config``: the pipeline configuration, or just a staging directory (SQLite).
    Raises :class:`~threekit_pipeline.pipelines.ledger.LedgerError`.
    """
    return Ledger.open(_staging(config), name, dsn=ledger_dsn(config))


def open_lifecycle_ledger(config: Any) -> Any:
    """The catalog lifecycle ledger (:class:`~threekit_pipeline.pipelines.retire.LifecycleLedger`)."""
    from threekit_pipeline.pipelines.retire import lifecycle_ledger

    return lifecycle_ledger(_staging(config), dsn=ledger_dsn(config))


@dataclass(frozen=True)
class CopiedLedger:
    """One SQLite ledger copied into PostgreSQL: its name, source file and per-table counts."""

    name: str
    source: Path
    tables: list[CopiedTable]

    def describe(self) -> str:
        parts = ", ".join(f"{t.table} {t.read} read/{t.added} new" for t in self.tables)
        return f"{self.name} ({self.source}): {parts}"


def _is_lifecycle(path: Path) -> bool:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'members'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"ledger {path.name}: {exc}") from None
    finally:
        conn.close()
    return bool(row[0])


def sqlite_ledgers(staging_dir: str | Path) -> list[Path]:
    """The SQLite ledger files of a staging directory (``<staging>/ledger/*.sqlite``), sorted."""
    return sorted((Path(staging_dir) / "ledger").glob("*.sqlite"))


def copy_sqlite_ledgers(files: Iterable[str | Path], dsn: str) -> list[CopiedLedger]:
    """Copy SQLite ledger files into the PostgreSQL database ``dsn`` (ledger name = file stem).

    Each file is first brought to the current schema version (what the pipelines would do on
    their next run), then every table is copied with :func:`~threekit_pipeline.pipelines.ledger.copy_ledger`:
    idempotent, so running it again (or after the pipelines wrote more) adds only what is
    missing. Raises :class:`~threekit_pipeline.pipelines.ledger.LedgerError`.
    """
    from threekit_pipeline.pipelines.retire import LIFECYCLE_TABLES, LifecycleLedger

    copied = []
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise LedgerError(f"ledger {path}: no such file")
        kind: type[LedgerStore]
        kind, tables = (LifecycleLedger, LIFECYCLE_TABLES) if _is_lifecycle(path) else (Ledger, DELTA_TABLES)
        with kind(path) as source, kind(dsn=dsn, name=path.stem) as target:
            result = CopiedLedger(path.stem, path, copy_ledger(source, target, tables))
        log.info("Copied ledger %s", result.describe())
        copied.append(result)
    return copied


__all__ = [
    "CopiedLedger",
    "copy_sqlite_ledgers",
    "ledger_dsn",
    "ledger_path",
    "open_ledger",
    "open_lifecycle_ledger",
    "sqlite_ledgers",
]
