"""import_jsonl against a running threekit-sandbox: isolation of invalid entries, idempotency, resume."""

from __future__ import annotations

import json
import logging

import pytest
from threekit_pipeline.threekit.errors import ThreekitRetryExhausted
from threekit_pipeline.threekit.importer import import_jsonl

INVALID_LINES = (5, 23, 50)  # 1-based lines holding invalid entries


def _outcomes(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _imports(proc) -> int:
    return proc.stats()["requests"].get("POST /api/products/import", 0)


@pytest.fixture
def mixed_jsonl(tmp_path, make_entry, write_jsonl):
    entries = [make_entry(n, valid=n not in INVALID_LINES) for n in range(1, 51)]
    return write_jsonl(tmp_path / "catalog.jsonl", entries)


@pytest.mark.parametrize("mode", ["job", "sync"])
def test_invalid_entries_are_isolated_and_the_rest_lands(sandbox, make_client, mixed_jsonl, tmp_path, mode):
    outcome = tmp_path / "outcome.jsonl"
    summary = import_jsonl(
        make_client(sandbox), mixed_jsonl, outcome, batch_size=50, mode=mode, poll_interval=0.02
    )
    assert summary.total == 50
    assert summary.rejected == 3
    assert summary.created + summary.updated + summary.imported == 47
    if mode == "job":
        assert summary.created == 47
    assert summary.batches == 1
    assert [r["key"] for r in summary.rejected_reasons] == [f"SKU-{n:04d}" for n in INVALID_LINES]
    for reason in summary.rejected_reasons:
        # Threekit's generic 422, plus (job mode) what the job said about its failures.
        if mode == "job":
            assert reason["reason"].startswith("Invalid product data (job ")
            assert "reported 3 failed task(s)" in reason["reason"]
        else:
            assert reason["reason"] == "Invalid product data"
    assert sorted(item["metadata"]["SKU"] for item in sandbox.items()) == [
        f"SKU-{n:04d}" for n in range(1, 51) if n not in INVALID_LINES
    ]
    records = _outcomes(outcome)
    assert [r["line"] for r in records] == list(range(1, 51))
    rejected = [r["line"] for r in records if r["status"] == "rejected"]
    assert rejected == list(INVALID_LINES)
    assert all(r["id"] for r in records if r["status"] != "rejected")
    assert json.loads(json.dumps(summary.to_dict()))["outcome_path"] == str(outcome)


@pytest.mark.parametrize("mode", ["job", "sync"])
def test_detailed_errors_give_the_field_as_reason(sandbox_factory, make_client, mixed_jsonl, tmp_path, mode):
    proc = sandbox_factory(detailed_errors=True)
    summary = import_jsonl(
        make_client(proc), mixed_jsonl, tmp_path / "o.jsonl", batch_size=50, mode=mode, poll_interval=0.02
    )
    assert [r["key"] for r in summary.rejected_reasons] == [f"SKU-{n:04d}" for n in INVALID_LINES]
    for reason in summary.rejected_reasons:
        assert reason["reason"].startswith("product.attributes[0].defaultValue: must be a number")


def test_created_and_updated_come_from_what_existed_before(
    sandbox, make_client, make_entry, write_jsonl, tmp_path
):
    client = make_client(sandbox)
    client.import_products_sync([make_entry(n) for n in range(5)])  # made outside this import
    source = write_jsonl(tmp_path / "catalog.jsonl", [make_entry(n) for n in range(10)])
    summary = import_jsonl(client, source, tmp_path / "o.jsonl", batch_size=4, poll_interval=0.02)
    assert (summary.created, summary.updated, summary.rejected) == (5, 5, 0)
    records = _outcomes(tmp_path / "o.jsonl")
    assert [r["status"] for r in records] == ["updated"] * 5 + ["created"] * 5
    ids = {item["metadata"]["SKU"]: item["id"] for item in sandbox.items()}
    assert {r["key"]: r["id"] for r in records} == ids
    # Known keys (the ledger) count as existing without a lookup of the org's items.
    scans = sandbox.stats()["requests"].get("GET /api/assets", 0)
    again = import_jsonl(
        client,
        source,
        tmp_path / "again.jsonl",
        poll_interval=0.02,
        known_keys=[f"SKU-{n:04d}" for n in range(10)],
    )
    assert (again.created, again.updated) == (0, 10)
    assert sandbox.stats()["requests"].get("GET /api/assets", 0) == scans


def test_sync_isolation_bisects_instead_of_sending_each_entry(sandbox, make_client, mixed_jsonl, tmp_path):
    import_jsonl(make_client(sandbox), mixed_jsonl, tmp_path / "o.jsonl", batch_size=50, mode="sync")
    # 3 culprits among 50 take far fewer requests than 50 single-entry ones.
    assert 1 < _imports(sandbox) < 40


def test_rerun_creates_nothing_new(sandbox, make_client, make_entry, write_jsonl, tmp_path):
    source = write_jsonl(tmp_path / "catalog.jsonl", [make_entry(n) for n in range(30)])
    client = make_client(sandbox)
    first = import_jsonl(client, source, tmp_path / "first.jsonl", batch_size=10, poll_interval=0.02)
    assert (first.created, first.updated) == (30, 0)
    items_before = sandbox.items()
    second = import_jsonl(client, source, tmp_path / "second.jsonl", batch_size=10, poll_interval=0.02)
    assert (second.created, second.updated, second.rejected) == (0, 30, 0)
    items_after = sandbox.items()
    assert len(items_after) == 30
    assert {i["id"]: i["updatedAt"] for i in items_after} == {i["id"]: i["updatedAt"] for i in items_before}


def test_resume_skips_what_an_earlier_attempt_imported(
    sandbox, make_client, make_entry, write_jsonl, tmp_path
):
    source = write_jsonl(tmp_path / "catalog.jsonl", [make_entry(n, valid=n != 3) for n in range(12)])
    outcome = tmp_path / "outcome.jsonl"
    client = make_client(sandbox)
    first = import_jsonl(client, source, outcome, batch_size=5, poll_interval=0.02)
    assert (first.created, first.rejected) == (11, 1)
    sent = _imports(sandbox)
    again = import_jsonl(client, source, outcome, batch_size=5, poll_interval=0.02)
    assert (again.skipped, again.rejected, again.created, again.total) == (11, 1, 0, 12)
    # Only the rejected entry was tried again: one job, then one synchronous import naming it.
    assert _imports(sandbox) == sent + 2
    records = _outcomes(outcome)
    assert [r["line"] for r in records] == list(range(1, 13))
    skipped = [r for r in records if r["status"] == "skipped"]
    assert {r["previous_status"] for r in skipped} == {"created"}
    assert all(r["id"] for r in skipped)


def test_changed_input_discards_previous_outcomes(sandbox, make_client, make_entry, write_jsonl, tmp_path):
    outcome = tmp_path / "outcome.jsonl"
    client = make_client(sandbox)
    source = write_jsonl(tmp_path / "catalog.jsonl", [make_entry(n) for n in range(4)])
    import_jsonl(client, source, outcome, poll_interval=0.02)
    write_jsonl(source, [make_entry(n) for n in range(6)])
    summary = import_jsonl(client, source, outcome, poll_interval=0.02)
    assert (summary.skipped, summary.updated, summary.created) == (0, 4, 2)


class _Crash(Exception):
    pass


def test_crash_halfway_then_rerun_converges(sandbox, make_client, make_entry, write_jsonl, tmp_path):
    source = write_jsonl(tmp_path / "catalog.jsonl", [make_entry(n) for n in range(40)])
    outcome = tmp_path / "outcome.jsonl"
    client = make_client(sandbox)

    def crash_after_two_batches(done: int, total: int) -> None:
        if done >= 20:
            raise _Crash(f"worker died at {done}/{total}")

    with pytest.raises(_Crash):
        import_jsonl(
            client,
            source,
            outcome,
            batch_size=10,
            concurrency=1,
            poll_interval=0.02,
            progress=crash_after_two_batches,
        )
    assert len(sandbox.items()) == 20
    # The crash also tore the journal: the last batch's outcomes never reached the disk.
    lines = outcome.read_text(encoding="utf-8").splitlines()
    outcome.write_text("\n".join(lines[:12]) + '\n{"line": 13, "ke', encoding="utf-8")

    summary = import_jsonl(client, source, outcome, batch_size=10, poll_interval=0.02)
    assert summary.total == 40
    assert summary.skipped == 12
    assert summary.updated == 8  # re-sent; the upsert found them
    assert summary.created == 20
    items = sandbox.items()
    assert len(items) == 40
    assert sorted(i["metadata"]["SKU"] for i in items) == [f"SKU-{n:04d}" for n in range(40)]
    assert [r["line"] for r in _outcomes(outcome)] == list(range(1, 41))


def test_unreadable_lines_are_rejected_locally(sandbox, make_client, make_entry, tmp_path):
    source = tmp_path / "catalog.jsonl"
    source.write_text(
        json.dumps(make_entry(1))
        + "\n\n"
        + '{"query": {}, "product": {"name": "broken"\n'
        + json.dumps({"query": {"name": "x"}})
        + "\n"
        + json.dumps(make_entry(2))
        + "\n",
        encoding="utf-8",
    )
    summary = import_jsonl(make_client(sandbox), source, tmp_path / "o.jsonl", poll_interval=0.02)
    assert (summary.total, summary.created, summary.rejected) == (4, 2, 2)
    reasons = {r["line"]: r["reason"] for r in summary.rejected_reasons}
    assert reasons[3].startswith("invalid JSON")
    assert "'product' object" in reasons[4]
    assert [r["key"] for r in summary.rejected_reasons] == ["line 3", "line 4"]


def test_progress_is_logged_per_batch(sandbox, make_client, make_entry, write_jsonl, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="threekit_pipeline.threekit")
    source = write_jsonl(tmp_path / "catalog.jsonl", [make_entry(n, valid=n != 7) for n in range(25)])
    progress = []
    import_jsonl(
        make_client(sandbox),
        source,
        tmp_path / "o.jsonl",
        batch_size=10,
        concurrency=2,
        poll_interval=0.02,
        progress=lambda done, total: progress.append((done, total)),
    )
    batch_lines = sorted(r.getMessage() for r in caplog.records if r.getMessage().startswith("batch "))
    assert len(batch_lines) == 3
    assert any(
        msg.startswith("batch 1/3: 10 entries, 9 created/updated, 1 rejected (") for msg in batch_lines
    )
    assert any(msg.startswith("batch 3/3: 5 entries, 5 created/updated, 0 rejected (") for msg in batch_lines)
    assert any("line 8 (SKU-0007) rejected: Invalid product data" in r.getMessage() for r in caplog.records)
    assert progress[-1] == (25, 25)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


def test_outage_stops_the_import_and_keeps_finished_batches(
    sandbox_factory, make_client, make_entry, write_jsonl, tmp_path
):
    proc = sandbox_factory()
    source = write_jsonl(tmp_path / "catalog.jsonl", [make_entry(n) for n in range(20)])
    outcome = tmp_path / "outcome.jsonl"
    client = make_client(proc, max_retries=2, backoff_base=0.01)

    def outage_after_first_batch(done: int, total: int) -> None:
        proc.set_faults(fail_rate=1.0)

    with pytest.raises(ThreekitRetryExhausted):
        import_jsonl(
            client,
            source,
            outcome,
            mode="sync",
            batch_size=10,
            concurrency=1,
            progress=outage_after_first_batch,
        )
    assert len(_outcomes(outcome)) == 10
    proc.set_faults(fail_rate=0.0)
    summary = import_jsonl(client, source, outcome, mode="sync", batch_size=10)
    assert (summary.skipped, summary.created) == (10, 10)
    assert len(proc.items()) == 20


def test_token_absent_from_outcomes_and_logs(sandbox, make_client, mixed_jsonl, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    outcome = tmp_path / "outcome.jsonl"
    import_jsonl(make_client(sandbox), mixed_jsonl, outcome, batch_size=20, poll_interval=0.02)
    assert sandbox.token not in caplog.text
    for path in tmp_path.iterdir():
        if path.is_file():
            assert sandbox.token not in path.read_text(encoding="utf-8", errors="replace"), path


def test_arguments_are_checked(sandbox, make_client, tmp_path):
    client = make_client(sandbox)
    with pytest.raises(ValueError, match="mode"):
        import_jsonl(client, tmp_path / "x.jsonl", tmp_path / "o.jsonl", mode="fast")
    with pytest.raises(ValueError, match="batch_size"):
        import_jsonl(client, tmp_path / "x.jsonl", tmp_path / "o.jsonl", batch_size=0)


@pytest.mark.parametrize("sync_partial", [False, True], ids=["sync-atomic", "sync-partial"])
@pytest.mark.parametrize("mode", ["job", "sync"])
def test_public_shape_answers_fresh_import_and_one_invalid_entry(
    sandbox_factory, make_client, make_entry, write_jsonl, tmp_path, mode, sync_partial
):
    """Acceptance against answers in the public shape (no per-entry status anywhere).

    Both guesses about synchronous imports (a bad entry refuses the whole request, or only
    leaves it out of the answer) lead to the same outcome.
    """
    proc = sandbox_factory(sync_partial=sync_partial)
    client = make_client(proc)
    fresh = write_jsonl(tmp_path / "fresh.jsonl", [make_entry(n) for n in range(300)])
    summary = import_jsonl(client, fresh, tmp_path / "fresh.out.jsonl", batch_size=100, mode=mode, poll_interval=0.02)
    assert (summary.created, summary.updated, summary.rejected) == (300, 0, 0)

    mixed = write_jsonl(
        tmp_path / "mixed.jsonl", [make_entry(n, valid=n != 1150) for n in range(1000, 1100)] + [make_entry(1150, valid=False)]
    )
    summary = import_jsonl(client, mixed, tmp_path / "mixed.out.jsonl", batch_size=101, mode=mode, poll_interval=0.02)
    assert (summary.created, summary.rejected) == (100, 1)
    assert [(r["line"], r["key"]) for r in summary.rejected_reasons] == [(101, "SKU-1150")]
    skus = {item["metadata"]["SKU"] for item in proc.items()}
    assert len(skus) == 400 and "SKU-1150" not in skus


def _lookups(proc) -> int:
    return proc.stats()["requests"].get("GET /api/assets", 0)


@pytest.mark.parametrize(
    ("page_cost", "way"), [(10_000, "single"), (0, "scan")], ids=["large-org", "small-org"]
)
def test_existence_lookup_takes_the_cheaper_way_and_answers_the_same(
    sandbox, make_client, make_entry, write_jsonl, tmp_path, monkeypatch, page_cost, way
):
    """Entries the ledger does not know: one lookup each when the org is large, one scan when small."""
    from threekit_pipeline.threekit import importer

    monkeypatch.setattr(importer, "SCAN_PAGE_COST", page_cost)
    client = make_client(sandbox)
    client.import_products_sync([make_entry(n) for n in range(150)])  # made outside this import
    source = write_jsonl(tmp_path / "catalog.jsonl", [make_entry(n) for n in range(140, 180)])
    before = _lookups(sandbox)
    summary = import_jsonl(client, source, tmp_path / "o.jsonl", batch_size=40, poll_interval=0.02)
    assert (summary.created, summary.updated, summary.rejected) == (30, 10, 0)
    records = _outcomes(tmp_path / "o.jsonl")
    assert [r["status"] for r in records] == ["updated"] * 10 + ["created"] * 30
    # One count of the org's items, then 40 single lookups or the 2 pages of 150 items.
    assert _lookups(sandbox) - before == (1 + 40 if way == "single" else 1 + 2)


def test_empty_org_needs_no_existence_lookup(sandbox, make_client, make_entry, write_jsonl, tmp_path):
    client = make_client(sandbox)
    source = write_jsonl(tmp_path / "catalog.jsonl", [make_entry(n) for n in range(60)])
    summary = import_jsonl(client, source, tmp_path / "o.jsonl", batch_size=60, poll_interval=0.02)
    assert (summary.created, summary.updated) == (60, 0)
    assert _lookups(sandbox) == 1  # the count that found the org empty
