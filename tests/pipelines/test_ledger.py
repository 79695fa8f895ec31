"""The delta ledger: SQLite persistence, delta planning, concurrent writers."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime

import pytest
from threekit_pipeline.pipelines.ledger import Ledger, LedgerError, ledger_path


def test_ledger_path_is_under_staging_ledger_dir(tmp_path):
    path = ledger_path(tmp_path / "staging", "catalog_import")
    assert path == tmp_path / "staging" / "ledger" / "catalog_import.sqlite"
    assert path.parent.is_dir()


def test_plan_splits_new_changed_and_unchanged(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.record([("A", "h1"), ("B", "h2")], run_id="run-1")
        plan = ledger.plan([("A", "h1"), ("B", "h2-new"), ("C", "h3")])
    assert plan.unchanged == ["A"]
    assert plan.to_send == ["B", "C"]
    assert (plan.new, plan.changed) == (1, 1)
    assert "1 unchanged skipped, 2 to send" in plan.summary()


def test_force_sends_everything(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.record([("A", "h1")], run_id="run-1")
        plan = ledger.plan([("A", "h1"), ("B", "h2")], force=True)
    assert plan.to_send == ["A", "B"]
    assert plan.unchanged == []
    assert plan.forced


def test_entries_survive_reopening_and_upsert_keeps_latest(tmp_path):
    path = tmp_path / "l.sqlite"
    moment = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    with Ledger(path) as ledger:
        ledger.record([("A", "h1")], run_id="run-1", imported_at=moment)
        ledger.record([("A", "h2")], run_id="run-2", imported_at=moment)
    with Ledger(path) as ledger:
        entry = ledger.get("A")
        assert len(ledger) == 1
    assert entry.content_hash == "h2"
    assert entry.run_id == "run-2"
    assert entry.imported_at == moment


def test_wal_mode_is_enabled(tmp_path):
    path = tmp_path / "l.sqlite"
    Ledger(path).close()
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode.lower() == "wal"


def test_lookup_handles_more_keys_than_one_statement_binds(tmp_path):
    pairs = [(f"SKU-{i:05d}", f"h{i}") for i in range(1_700)]
    with Ledger(tmp_path / "l.sqlite") as ledger:
        assert ledger.record(pairs, run_id="r") == 1_700
        plan = ledger.plan(pairs[:1_200] + [("SKU-NEW", "x")])
    assert len(plan.unchanged) == 1_200
    assert plan.to_send == ["SKU-NEW"]


def test_forget_makes_keys_sendable_again(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.record([("A", "h"), ("B", "h")], run_id="r")
        assert ledger.forget(["A", "Z"]) == 1
        assert ledger.plan([("A", "h"), ("B", "h")]).to_send == ["A"]


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "l.sqlite"
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            with Ledger(path) as ledger:
                for batch in range(10):
                    ledger.record(
                        [(f"W{worker}-{batch}-{i}", "h") for i in range(20)], run_id=f"run-{worker}"
                    )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Ledger(path) as ledger:
        assert len(ledger) == 4 * 10 * 20


def test_corrupt_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="l.sqlite"):
        Ledger(path)
