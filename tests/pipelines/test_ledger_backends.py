"""The ledger contract on both backends: SQLite files and PostgreSQL (the real server on 127.0.0.1).

Every test taking ``backend`` runs twice, against a SQLite file and against a schema of a
throwaway PostgreSQL database created for the test session (and dropped after it).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from _postgres import throwaway_database
from threekit_pipeline import cli
from threekit_pipeline.pipelines.ledger import (
    SCHEMA_VERSION,
    Ledger,
    LedgerError,
    LedgerStore,
    ledger_path,
    ledger_schema,
)
from threekit_pipeline.pipelines.ledgers import copy_sqlite_ledgers, open_ledger
from threekit_pipeline.pipelines.retire import LIFECYCLE_LEDGER, LifecycleLedger, lifecycle_ledger

WORKER_DEADLINE_S = 240.0


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    with throwaway_database() as dsn:
        yield dsn


class Backend:
    """Opens ledgers of one backend; each test gets its own ledger names (no shared state)."""

    def __init__(self, kind: str, tmp_path: Path, dsn: str | None) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.dsn = dsn
        self.prefix = f"t{uuid.uuid4().hex[:10]}"

    def name(self, base: str = "delta") -> str:
        return f"{self.prefix}_{base}"

    def location(self, base: str = "delta") -> dict:
        """Keyword arguments of the ledger classes for ledger ``base``."""
        if self.kind == "postgresql":
            return {"dsn": self.dsn, "name": self.name(base)}
        return {"path": self.tmp_path / "ledger" / f"{self.name(base)}.sqlite"}

    def open(self, base: str = "delta", cls: type[LedgerStore] = Ledger, **kwargs):
        return cls(**self.location(base), **kwargs)

    def raw_rows(self, base: str, statement: str) -> list[tuple]:
        """Rows of a statement run directly on the backend's storage (not through the ledger)."""
        if self.kind == "postgresql":
            with psycopg.connect(self.dsn) as conn:
                conn.execute(f'SET search_path TO "{ledger_schema(self.name(base))}"')
                return [tuple(r) for r in conn.execute(statement).fetchall()]
        conn = sqlite3.connect(self.location(base)["path"])
        try:
            return conn.execute(statement).fetchall()
        finally:
            conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path) -> Backend:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None
    return Backend(request.param, tmp_path, dsn)


# --- record, lookup, unchanged detection ----------------------------------------------------


def test_record_lookup_and_unchanged_detection(backend):
    moment = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    with backend.open() as ledger:
        assert ledger.schema_version == SCHEMA_VERSION
        assert ledger.record([("A", "h1"), ("B", "h2")], run_id="run-1", imported_at=moment) == 2
        plan = ledger.plan([("A", "h1"), ("B", "h2-new"), ("C", "h3")])
        assert (plan.unchanged, plan.to_send, plan.new, plan.changed) == (["A"], ["B", "C"], 1, 1)
        assert ledger.plan([("A", "h1"), ("C", "h3")], force=True).to_send == ["A", "C"]
    with backend.open() as ledger:  # survives reopening
        entry = ledger.get("A")
        assert (entry.content_hash, entry.run_id, entry.imported_at) == ("h1", "run-1", moment)
        assert ledger.get("missing") is None
        assert len(ledger) == 2
        assert ledger.forget(["A", "Z"]) == 1
        assert ledger.plan([("A", "h1"), ("B", "h2")]).to_send == ["A"]


def test_lookups_over_many_keys_and_the_side_tables(backend):
    pairs = [(f"SKU-{i:05d}", f"h{i}") for i in range(12_500)]
    with backend.open() as ledger:
        assert ledger.record(pairs, run_id="r") == 12_500
        plan = ledger.plan(pairs[:11_000] + [("SKU-NEW", "x")])
        assert len(plan.unchanged) == 11_000 and plan.to_send == ["SKU-NEW"]
        assert ledger.record_stamps([("SKU-00001", "2026-11-23T00:00:00")]) == 1
        assert ledger.record_pricing([("SKU-00001", '[{"p": 1}]')]) == 1
        assert ledger.stamps(["SKU-00001", "SKU-00002"]) == {"SKU-00001": "2026-11-23T00:00:00"}
        assert ledger.pricing(["SKU-00001"]) == {"SKU-00001": '[{"p": 1}]'}
        assert ledger.fix_metadata_types({"Width": "Number", "Color": "String"}) == 2
        assert ledger.fix_metadata_types({"Width": "String", "Depth": "Number"}) == 1  # a known key keeps its type
        assert ledger.metadata_types() == {"Width": "Number", "Color": "String", "Depth": "Number"}


def test_lookups_use_the_primary_key_index(backend):
    with backend.open() as ledger:
        ledger.record([(f"K{i}", "h") for i in range(2_000)], run_id="r")
    if backend.kind == "postgresql":
        with psycopg.connect(backend.dsn) as conn:
            conn.execute(f'SET search_path TO "{ledger_schema(backend.name())}"')
            conn.execute("ANALYZE entries")
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN SELECT * FROM entries WHERE key = ANY(%s)", (["K1", "K2"],)))
        assert "entries_pkey" in plan
    else:
        plan = " ".join(str(r) for r in backend.raw_rows("delta", "EXPLAIN QUERY PLAN SELECT * FROM entries WHERE key IN ('K1', 'K2')"))
        assert "sqlite_autoindex_entries_1" in plan


# --- retries ---------------------------------------------------------------------------------


def test_retried_writes_never_duplicate(backend):
    pairs = [(f"SKU-{i}", f"h{i}") for i in range(300)]
    with backend.open() as ledger:
        for attempt in range(3):  # the same task attempt recorded three times
            assert ledger.record(pairs, run_id=f"run-1-try-{attempt}") == 300
            ledger.record_stamps([(k, "2026-11-23") for k, _ in pairs])
            ledger.record_pricing([(k, "[]") for k, _ in pairs])
            ledger.fix_metadata_types({"Width": "Number"})
        assert len(ledger) == 300
        assert ledger.get("SKU-7").run_id == "run-1-try-2"
    for table in ("entries", "stamps", "pricing", "metadata_types"):
        assert backend.raw_rows("delta", f"SELECT COUNT(*), COUNT(DISTINCT key) FROM {table}")[0] == (
            (1, 1) if table == "metadata_types" else (300, 300)
        )
    with backend.open("lifecycle", LifecycleLedger) as lc:
        for _ in range(2):
            lc.add_members("erp", {"A": "id-a", "B": None}, "run-1")
            lc.set_pending("erp", "run-1", {"A"}, set(), 1, 2)
        lc.add_members("erp", {"B": "id-b", "A": None}, "run-2")  # a known id is kept when the new one is None
        assert lc.members("erp") == {"A": "id-a", "B": "id-b"}
        assert lc.pending("erp")["snapshot"] == {"A"}


def test_lifecycle_history_keeps_its_order(backend):
    with backend.open("lifecycle", LifecycleLedger) as lc:
        lc.mark_retired("erp", [("B", "id-b", "delete"), ("A", "id-a", "delete")], "run-1")
        lc.mark_returned("erp", [("A", "id-a", "restored")], "run-2")
        lc.mark_retired("erp", [("A", "id-a", "tag:retired")], "run-3")
        assert set(lc.retired("erp")) == {"A", "B"}
        events = lc.events("erp")
    assert [(e["sku"], e["event"]) for e in events][-2:] == [("A", "returned"), ("A", "retired")]
    assert sorted((e["sku"], e["event"]) for e in events[:2]) == [("A", "retired"), ("B", "retired")]


# --- concurrent writers from several processes -----------------------------------------------

_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from threekit_pipeline.pipelines.ledger import Ledger

    spec = json.loads(sys.argv[1])
    Path(spec["ready"]).touch()
    go = Path(spec["go"])
    deadline = time.monotonic() + 120
    while not go.exists():  # start together with the other writers
        if time.monotonic() > deadline:
            sys.exit("never told to go")
        time.sleep(0.005)
    where = {"dsn": spec["dsn"], "name": spec["name"]} if spec["dsn"] else {"path": spec["path"]}
    worker = spec["worker"]
    for batch in range(spec["batches"]):
        # Every open migrates a fresh ledger if needed: the writers race on that too.
        with Ledger(**where) as ledger:
            own = [(f"W{worker}-{batch}-{i}", f"h{worker}") for i in range(spec["size"])]
            shared = [(f"SHARED-{(batch * 7 + i) % 60}", f"h{worker}") for i in range(spec["size"])]
            ledger.record(own + shared, run_id=f"run-{worker}")
            ledger.record_stamps((k, f"s{worker}") for k, _ in shared)
    """
)


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_concurrent_writers_in_several_processes_lose_and_duplicate_nothing(backend, tmp_path):
    workers, batches, size = 4, 12, 40
    location = backend.location()
    processes = []
    for worker in range(workers):
        spec = {
            "worker": worker,
            "batches": batches,
            "size": size,
            "dsn": location.get("dsn"),
            "name": location.get("name"),
            "path": str(location.get("path", "")),
            "ready": str(tmp_path / f"ready-{worker}"),
            "go": str(tmp_path / "go"),
        }
        processes.append(
            subprocess.Popen([sys.executable, "-c", _WORKER, json.dumps(spec)], stderr=subprocess.PIPE, text=True)
        )
    _wait_for(lambda: all((tmp_path / f"ready-{n}").exists() for n in range(workers)), 120, "the writers to start")
    (tmp_path / "go").touch()
    for process in processes:
        _, stderr = process.communicate(timeout=WORKER_DEADLINE_S)
        assert process.returncode == 0, stderr[-3000:]

    with backend.open() as ledger:
        assert ledger.schema_version == SCHEMA_VERSION
        assert len(ledger) == workers * batches * size + 60
        own = ledger.lookup(f"W{w}-{b}-{i}" for w in range(workers) for b in range(batches) for i in range(size))
        assert len(own) == workers * batches * size
        assert all(entry.content_hash == f"h{key[1]}" for key, entry in own.items())
        shared = ledger.lookup(f"SHARED-{n}" for n in range(60))
        assert len(shared) == 60 and {e.content_hash for e in shared.values()} <= {f"h{w}" for w in range(workers)}
        assert len(ledger.stamps(f"SHARED-{n}" for n in range(60))) == 60
    assert backend.raw_rows("delta", "SELECT COUNT(*), COUNT(DISTINCT key) FROM entries")[0] == (
        workers * batches * size + 60,
    ) * 2
    assert backend.raw_rows("delta", "SELECT key, value FROM meta") == [("schema_version", str(SCHEMA_VERSION))]


# --- migrations ------------------------------------------------------------------------------


def test_an_older_schema_is_migrated_on_open_keeping_its_rows(backend):
    with backend.open(schema_version=1) as old:
        assert old.schema_version == 1
        old.record([("A", "h1")], run_id="run-old")
    assert backend.raw_rows("delta", "SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]
    with pytest.raises(LedgerError):  # version 1 has no stamps table yet
        with backend.open(schema_version=1) as old:
            old.stamps(["A"])
    with backend.open() as ledger:
        assert ledger.schema_version == SCHEMA_VERSION == 2
        assert ledger.get("A").content_hash == "h1"
        assert ledger.record_stamps([("A", "2026-11-23")]) == 1
        assert ledger.stamps(["A"]) == {"A": "2026-11-23"}
    with backend.open() as again:  # migrating is idempotent: opening again changes nothing
        assert again.schema_version == 2 and len(again) == 1


def test_a_newer_schema_is_refused(backend):
    with backend.open() as ledger:
        ledger.record([("A", "h")], run_id="r")
        ledger._write(lambda cur: cur.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'"))
    with pytest.raises(LedgerError, match="schema version 99 is newer"):
        backend.open()


def test_sqlite_ledgers_written_before_versioned_migrations_open_unchanged(tmp_path):
    """A delta ledger as the first release wrote it, and a lifecycle ledger without any version."""
    delta = tmp_path / "catalog_import.sqlite"
    conn = sqlite3.connect(delta)
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE entries (key TEXT PRIMARY KEY, content_hash TEXT NOT NULL, imported_at TEXT NOT NULL,"
        " run_id TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema_version', '1');"
        "INSERT INTO entries VALUES ('A', 'h1', '2026-11-23T10:00:00+00:00', 'run-1');"
    )
    conn.commit()
    conn.close()
    with Ledger(delta) as ledger:
        assert ledger.schema_version == 2
        assert ledger.plan([("A", "h1")]).unchanged == ["A"]
        ledger.record_pricing([("A", "[]")])

    lifecycle = tmp_path / "catalog_lifecycle.sqlite"
    conn = sqlite3.connect(lifecycle)
    conn.executescript(
        "CREATE TABLE members (source TEXT, sku TEXT, threekit_id TEXT, first_run TEXT, last_run TEXT,"
        " PRIMARY KEY (source, sku));"
        "CREATE TABLE retired (source TEXT, sku TEXT, threekit_id TEXT, action TEXT, retired_at TEXT, run_id TEXT,"
        " PRIMARY KEY (source, sku));"
        "CREATE TABLE events (source TEXT, sku TEXT, threekit_id TEXT, event TEXT, action TEXT, at TEXT, run_id TEXT);"
        "CREATE TABLE pending (source TEXT PRIMARY KEY, run_id TEXT, snapshot TEXT, protected TEXT, count INTEGER,"
        " total INTEGER, at TEXT);"
        "INSERT INTO events VALUES ('erp', 'Z', 'id-z', 'retired', 'delete', 't1', 'r1');"
        "INSERT INTO events VALUES ('erp', 'A', 'id-a', 'retired', 'delete', 't2', 'r2');"
    )
    conn.commit()
    conn.close()
    with LifecycleLedger(lifecycle) as lc:
        assert lc.schema_version == 2
        lc.mark_returned("erp", [("Z", "id-z", "restored")], "r3")
        assert [(e["sku"], e["event"]) for e in lc.events("erp")] == [
            ("Z", "retired"), ("A", "retired"), ("Z", "returned")
        ]


def test_a_corrupt_sqlite_file_or_an_unreachable_database_gives_a_clear_error(tmp_path):
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="l.sqlite"):
        Ledger(path)
    secret = "pw-s3cr3t-ledger"
    with pytest.raises(LedgerError) as refused:
        Ledger(dsn=f"postgresql://nobody:{secret}@127.0.0.1:1/none?connect_timeout=5", name="x")
    assert secret not in str(refused.value)
    assert "postgresql://nobody@127.0.0.1:1/none" in str(refused.value)


# --- copying SQLite ledgers into PostgreSQL --------------------------------------------------


def _staging_with_ledgers(staging: Path) -> None:
    with Ledger(ledger_path(staging, "catalog_import")) as ledger:
        ledger.record([(f"SKU-{i}", f"h{i}") for i in range(250)], run_id="run-1")
        ledger.record_stamps([(f"SKU-{i}", "2026-11-23") for i in range(100)])
        ledger.record_pricing([("SKU-1", "[]")])
        ledger.fix_metadata_types({"Width": "Number"})
    with Ledger(ledger_path(staging, "deliveries")) as ledger:
        ledger.record([("ftp|/out/a.csv", "sha:1")], run_id="run-1")
    with lifecycle_ledger(staging) as lc:
        lc.add_members("canonical", {"SKU-1": "id-1", "SKU-2": None}, "run-1")
        lc.mark_retired("canonical", [("SKU-2", None, "delete")], "run-1")
        lc.mark_returned("canonical", [("SKU-2", None, "restored")], "run-2")
        lc.set_pending("canonical", "run-2", {"SKU-1"}, set(), 1, 2)


def test_copy_command_moves_sqlite_ledgers_into_postgresql_idempotently(tmp_path, pg_dsn, monkeypatch, capsys):
    staging = tmp_path / "staging"
    _staging_with_ledgers(staging)
    with throwaway_database("ledger_copy") as dsn:
        monkeypatch.setenv(cli.LEDGER_DSN_ENV, dsn)
        assert cli.main(["ledger-copy", "--staging-dir", str(staging)]) == cli.EXIT_OK
        first = capsys.readouterr().out
        assert "Ledgers copied:    3" in first
        assert "entries                250 read        250 new" in first
        assert "events                   2 read          2 new" in first
        assert dsn.split("@")[1] in first

        # The pipelines kept writing to SQLite meanwhile; copying again adds just that.
        with Ledger(ledger_path(staging, "catalog_import")) as ledger:
            ledger.record([("SKU-0", "h0-new"), ("SKU-NEW", "x")], run_id="run-3")
        assert cli.main(["ledger-copy", "--staging-dir", str(staging)]) == cli.EXIT_OK
        second = capsys.readouterr().out
        assert "entries                251 read          1 new" in second
        assert "events                   2 read          0 new" in second

        with Ledger(dsn=dsn, name="catalog_import") as ledger:
            assert len(ledger) == 251 and ledger.get("SKU-0").content_hash == "h0-new"
            assert len(ledger.stamps(f"SKU-{i}" for i in range(250))) == 100
            assert ledger.metadata_types() == {"Width": "Number"}
        with Ledger(dsn=dsn, name="deliveries") as ledger:
            assert ledger.get("ftp|/out/a.csv").content_hash == "sha:1"
        with LifecycleLedger(dsn=dsn, name=LIFECYCLE_LEDGER) as lc:
            assert lc.members("canonical") == {"SKU-1": "id-1", "SKU-2": None}
            assert [e["event"] for e in lc.events("canonical")] == ["retired", "returned"]
            assert lc.retired("canonical") == {}
            assert lc.pending("canonical")["snapshot"] == {"SKU-1"}


def test_copy_through_an_airflow_connection_and_its_errors(tmp_path, pg_dsn, monkeypatch, capsys):
    staging = tmp_path / "staging"
    with Ledger(ledger_path(staging, "translations_import")) as ledger:
        ledger.record([("de.csv", "h")], run_id="r")
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_COPY_TARGET", pg_dsn.replace("postgresql://", "postgres://"))
    file = str(ledger_path(staging, "translations_import"))
    assert cli.main(["ledger-copy", "--conn-id", "ledger_copy_target", file]) == cli.EXIT_OK
    assert "entries                  1 read          1 new" in capsys.readouterr().out
    with Ledger(dsn=pg_dsn, name="translations_import") as ledger:
        assert ledger.get("de.csv").content_hash == "h"

    monkeypatch.delenv(cli.LEDGER_DSN_ENV, raising=False)
    assert cli.main(["ledger-copy", "--staging-dir", str(staging)]) == cli.EXIT_USAGE
    assert "--conn-id" in capsys.readouterr().err
    assert cli.main(["ledger-copy", "--dsn", pg_dsn, str(tmp_path / "missing.sqlite")]) == cli.EXIT_REJECTED
    assert "no such file" in capsys.readouterr().err
    assert copy_sqlite_ledgers([], pg_dsn) == []


# --- opening from the configuration ----------------------------------------------------------


def test_open_ledger_follows_the_configured_connection(tmp_path, pg_dsn, monkeypatch):
    from threekit_pipeline.pipelines.config import load_config

    sqlite_config = load_config({"staging_dir": str(tmp_path / "staging")})
    assert sqlite_config.ledger_conn_id is None
    with open_ledger(sqlite_config, "configured") as ledger:
        assert ledger.dialect == "sqlite" and ledger.path == tmp_path / "staging" / "ledger" / "configured.sqlite"

    monkeypatch.setenv("AIRFLOW_CONN_THREEKIT_LEDGER_CFG", pg_dsn.replace("postgresql://", "postgres://"))
    pg_config = load_config({"staging_dir": str(tmp_path / "staging"), "ledger_conn_id": "threekit_ledger_cfg"})
    with open_ledger(pg_config, "configured_pg") as ledger:
        assert ledger.dialect == "postgresql" and ledger.schema == "ledger_configured_pg"
        ledger.record([("A", "h")], run_id="r")
    with Ledger(dsn=pg_dsn, name="configured_pg") as ledger:
        assert ledger.get("A") is not None
    assert not (tmp_path / "staging" / "ledger" / "configured_pg.sqlite").exists()


def test_ledger_schema_names_are_safe_identifiers():
    assert ledger_schema("catalog_import") == "ledger_catalog_import"
    assert ledger_schema("Feed-DE/Main") == "ledger_feed_de_main"
    long_a, long_b = ledger_schema("x" * 100 + "a"), ledger_schema("x" * 100 + "b")
    assert len(long_a) == 63 and long_a != long_b


# --- a catalog import with its ledger in PostgreSQL ------------------------------------------


def _import_run(run_id: str, config, files: dict[str, Path], ftp_sandbox, client) -> tuple[dict, list[dict]]:
    from threekit_pipeline.ftp.client import FtpClient
    from threekit_pipeline.pipelines import catalog_import
    from threekit_pipeline.pipelines.runtime import TaskEnv

    env = TaskEnv(
        dag_id=catalog_import.DAG_ID, run_id=run_id, config=config, logical_date=datetime(2026, 11, 23, 10, tzinfo=UTC)
    )
    with FtpClient(ftp_sandbox.settings()) as ftp:
        ftp.makedirs("/inbound/catalog")
        for path in files.values():
            ftp.upload_atomic(path, f"/inbound/catalog/{path.name}")
        sensor_output = [[{"path": f"/inbound/catalog/{p.name}", "size": p.stat().st_size} for p in files.values()]]
        collected = catalog_import.collect_files(env, sensor_output, ftp)
        planned = catalog_import.transform_and_plan(env, collected, pricebooks=client.list_pricebooks())
        results = [catalog_import.import_chunk(env, chunk, client) for chunk in planned["chunks"]]
        outcome = catalog_import.finalize(env, ftp)
    assert outcome["status"] == "success", outcome
    return planned, results


def test_catalog_import_with_the_ledger_in_postgresql_then_a_resend_sends_nothing(
    tmp_path, monkeypatch, threekit_sandbox, ftp_sandbox
):
    from threekit_pipeline.pipelines import catalog_import
    from threekit_pipeline.pipelines.config import load_config
    from threekit_pipeline.samples.catalog import generate_catalog
    from threekit_pipeline.threekit.client import ThreekitClient

    files = generate_catalog(
        tmp_path / "in", products=30, stamp="20261123", seed=5, options_per_product=1, prices_per_product=1, locales=()
    )
    with throwaway_database("ledger_pipeline") as dsn:
        monkeypatch.setenv("AIRFLOW_CONN_THREEKIT_LEDGER_PIPELINE", dsn.replace("postgresql://", "postgres://"))
        config = load_config(
            {"staging_dir": str(tmp_path / "staging"), "batch_size": 10, "ledger_conn_id": "threekit_ledger_pipeline"}
        )
        client = ThreekitClient(threekit_sandbox.base_url, threekit_sandbox.token, threekit_sandbox.org_id)
        with client:
            first, results = _import_run("manual__2026-11-23T10:00:00+00:00", config, files, ftp_sandbox, client)
            assert first["to_send"] == first["products_distinct"] > 0
            assert sum(r["confirmed"] for r in results) == first["to_send"]
            assert sum(r["rejected"] for r in results) == 0

            with Ledger(dsn=dsn, name=catalog_import.LEDGER_NAME) as ledger:
                assert len(ledger) == first["to_send"]
                assert ledger.metadata_types()
            assert not (tmp_path / "staging" / "ledger" / f"{catalog_import.LEDGER_NAME}.sqlite").exists()

            again, resent = _import_run("manual__2026-11-23T11:00:00+00:00", config, files, ftp_sandbox, client)
        assert again["to_send"] == 0 and resent == []
        assert again["unchanged_skipped"] == first["to_send"]
