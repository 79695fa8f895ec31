"""Inbound file selection, archive layout and quarantine.

Pure rules (stamps, windows, ordering) are tested without any server; archive/reject/replay
behaviour is tested against a running ftp-sandbox with the real FTP client.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from threekit_pipeline.pipelines.inbound import (
    InboundFile,
    InboundSelectionError,
    SelectionWindow,
    archive_dir,
    archive_file,
    group_by_stamp,
    hold_back_incomplete_batches,
    is_within,
    matches_patterns,
    order_files,
    parse_stamp,
    reject_file,
    rejected_dir,
    select_inbound_files,
    selection_window,
    stamp_day,
)


def _dt(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- stamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("products_20261123.csv", _dt(2026, 11, 23)),
        ("products_20261123_101500.csv", _dt(2026, 11, 23, 10, 15)),
        ("/inbound/catalog/prices_20260101.xlsx", _dt(2026, 1, 1)),
        ("catalog_v2_20261123_235959.csv", _dt(2026, 11, 23, 23, 59, 59)),
        ("products.csv", None),
        ("products_2026112.csv", None),
        ("products_20261323.csv", None),  # month 13: not a date
        ("products_20261123_256000.csv", _dt(2026, 11, 23)),  # bad time: the day alone counts
        ("products_123456789.csv", None),
    ],
)
def test_parse_stamp(name, expected):
    assert parse_stamp(name) == expected


def test_stamp_day_falls_back_to_processing_day():
    assert stamp_day("products_20261123_101500.csv", date(2030, 1, 1)) == date(2026, 11, 23)
    assert stamp_day("products.csv", date(2030, 1, 1)) == date(2030, 1, 1)


def test_patterns_are_case_insensitive_globs():
    assert matches_patterns("/in/Products_20261123.CSV", ["products_*.csv"])
    assert not matches_patterns("prices_20261123.csv", ["products_*.csv"])
    assert matches_patterns("anything.csv", [])
    assert not matches_patterns("products.csv.errors.csv", [])
    assert not matches_patterns("products_20261123.csv.errors.csv", ["products*.csv"])


# --- layout ------------------------------------------------------------------------------


def test_archive_and_rejected_layout():
    assert archive_dir("/archive", "catalog", date(2026, 11, 23)) == "/archive/catalog/2026/11/23"
    assert archive_dir("/archive/", "/catalog/", date(2026, 1, 2)) == "/archive/catalog/2026/01/02"
    assert rejected_dir("/rejected", "catalog") == "/rejected/catalog"


def test_is_within():
    assert is_within("/archive/catalog/2026/11/23/a.csv", "/archive/catalog")
    assert not is_within("/archive/catalogue/a.csv", "/archive/catalog")
    assert not is_within("/inbound/../archive/catalog/x", "/inbound")


# --- ordering ----------------------------------------------------------------------------


def _file(name: str, origin: str = "inbound") -> InboundFile:
    return InboundFile.from_remote({"path": f"/in/{name}", "size": 1}, origin=origin)


def test_renamed_later_copies_follow_the_original():
    files = [_file("p_20261123.2.csv"), _file("p_20261123.1.csv"), _file("p_20261123.csv"), _file("o_20261123.csv")]
    assert [f.name for f in order_files(files)] == [
        "o_20261123.csv",
        "p_20261123.csv",
        "p_20261123.1.csv",
        "p_20261123.2.csv",
    ]


def test_order_oldest_stamp_first_unstamped_last():
    files = [_file(n) for n in ["b.csv", "p_20261124.csv", "a.csv", "q_20261123_120000.csv", "p_20261123.csv"]]
    assert [f.name for f in order_files(files)] == [
        "p_20261123.csv",
        "q_20261123_120000.csv",
        "p_20261124.csv",
        "a.csv",
        "b.csv",
    ]


def test_group_by_stamp_batches_same_stamp_together():
    files = [
        _file("products_20261124.csv"),
        _file("prices_20261123.csv"),
        _file("products_20261123.csv"),
        _file("extra.csv"),
        _file("other.csv"),
    ]
    batches = [[f.name for f in batch] for batch in group_by_stamp(files)]
    assert batches == [
        ["prices_20261123.csv", "products_20261123.csv"],
        ["products_20261124.csv"],
        ["extra.csv", "other.csv"],
    ]


def test_inbound_file_round_trips_through_dict():
    original = InboundFile.from_remote(
        {"path": "/a/products_20261123.csv", "size": 12, "modified": "2026-11-23T01:02:03+00:00"},
        origin="archive",
    )
    again = InboundFile.from_dict(original.to_dict())
    assert again == original
    assert again.from_archive
    assert again.stamp_label == "20261123"
    assert _file("x_20261123_010203.csv").stamp_label == "20261123_010203"
    assert _file("x.csv").stamp_label == "unstamped"


# --- run window --------------------------------------------------------------------------


def test_scheduled_and_manual_runs_take_everything_waiting():
    for run_type in ("scheduled", "manual", "asset_triggered"):
        window = selection_window(run_type, {}, _dt(2026, 11, 23), _dt(2026, 11, 23, 1))
        assert not window.replay


def test_backfill_replays_its_data_interval():
    window = selection_window("backfill", {}, _dt(2026, 11, 23), _dt(2026, 11, 24))
    assert window.replay
    assert window.contains(_dt(2026, 11, 23))
    assert window.contains(_dt(2026, 11, 23, 23, 59, 59))
    assert not window.contains(_dt(2026, 11, 24))
    assert window.days() == [date(2026, 11, 23)]


def test_run_type_enum_is_accepted():
    class RunType:
        value = "backfill"

    assert selection_window(RunType(), {}, _dt(2026, 1, 1), _dt(2026, 1, 2)).replay


def test_manual_replay_param_with_explicit_bounds():
    window = selection_window(
        "manual", {"replay": True, "replay_start": "2026-11-21", "replay_end": "2026-11-24"}, None, None
    )
    assert window.replay
    assert window.days() == [date(2026, 11, 21), date(2026, 11, 22), date(2026, 11, 23)]
    assert SelectionWindow.from_dict(window.to_dict()) == window


def test_hourly_interval_touches_one_day():
    window = selection_window("backfill", {}, _dt(2026, 11, 23, 23), _dt(2026, 11, 24))
    assert window.days() == [date(2026, 11, 23)]
    assert not window.contains(_dt(2026, 11, 23))  # a day stamp is 00:00, outside 23:00-24:00


def test_replay_without_interval_is_a_clear_error():
    with pytest.raises(InboundSelectionError, match="replay needs a data interval"):
        selection_window("manual", {"replay": "true"}, None, None)
    with pytest.raises(InboundSelectionError, match="replay window is empty"):
        selection_window("manual", {"replay": True, "replay_start": "2026-11-24", "replay_end": "2026-11-23"}, None, None)
    with pytest.raises(InboundSelectionError, match="not an ISO date"):
        selection_window("manual", {"replay": True, "replay_start": "yesterday", "replay_end": "2026-11-23"}, None, None)


def test_hold_back_keeps_a_batch_out_while_one_of_its_files_is_incomplete():
    ready_files = [_file("products_20261122.csv"), _file("products_20261123.csv"), _file("options_20261123.csv")]
    waiting = [*ready_files, _file("prices_20261123.csv")]  # still being uploaded
    ready, held = hold_back_incomplete_batches(ready_files, waiting)
    assert [f.name for f in ready] == ["products_20261122.csv"]
    assert [f.name for f in held] == ["options_20261123.csv", "products_20261123.csv"]


# --- against the FTP sandbox ---------------------------------------------------------------


@pytest.fixture
def ftp(ftp_sandbox):
    from threekit_pipeline.ftp.client import FtpClient

    with FtpClient(ftp_sandbox.settings()) as client:
        for folder in ("/inbound/catalog", "/archive", "/rejected"):
            client.makedirs(folder)
        yield client


def _put(ftp_sandbox, remote: str, data: bytes) -> None:
    path = Path(ftp_sandbox.root) / remote.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _tree(ftp_sandbox, folder: str) -> dict[str, bytes]:
    base = Path(ftp_sandbox.root) / folder.lstrip("/")
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


ARCHIVE = {"archive_root": "/archive", "source": "catalog"}


def test_archive_moves_into_the_stamp_day_folder(ftp_sandbox, ftp):
    _put(ftp_sandbox, "/inbound/catalog/products_20261123.csv", b"a,b\n")
    _put(ftp_sandbox, "/inbound/catalog/products.csv", b"x\n")

    stamped = archive_file(ftp, "/inbound/catalog/products_20261123.csv", processing_day=date(2030, 1, 2), **ARCHIVE)
    unstamped = archive_file(ftp, "/inbound/catalog/products.csv", processing_day=date(2030, 1, 2), **ARCHIVE)

    assert (stamped.action, stamped.destination) == ("archived", "/archive/catalog/2026/11/23/products_20261123.csv")
    assert unstamped.destination == "/archive/catalog/2030/01/02/products.csv"
    assert _tree(ftp_sandbox, "/inbound") == {}
    assert _tree(ftp_sandbox, "/archive") == {
        "catalog/2026/11/23/products_20261123.csv": b"a,b\n",
        "catalog/2030/01/02/products.csv": b"x\n",
    }
    # A retried call after the move went through reports the archived copy.
    again = archive_file(ftp, "/inbound/catalog/products_20261123.csv", **ARCHIVE)
    assert (again.action, again.destination) == ("already_archived", stamped.destination)


def test_archiving_identical_content_twice_creates_no_duplicate(ftp_sandbox, ftp, tmp_path):
    _put(ftp_sandbox, "/archive/catalog/2026/11/23/products_20261123.csv", b"same\n")
    _put(ftp_sandbox, "/inbound/catalog/products_20261123.csv", b"same\n")
    local = tmp_path / "products_20261123.csv"
    local.write_bytes(b"same\n")

    outcome = archive_file(ftp, "/inbound/catalog/products_20261123.csv", local_copy=local, **ARCHIVE)

    assert outcome.action == "already_archived"
    assert _tree(ftp_sandbox, "/inbound") == {}
    assert _tree(ftp_sandbox, "/archive") == {"catalog/2026/11/23/products_20261123.csv": b"same\n"}


@pytest.mark.parametrize("resent", [b"diff\n", b"longer content\n"], ids=["same-size", "other-size"])
def test_archiving_different_content_under_a_taken_name_never_overwrites(ftp_sandbox, ftp, resent):
    _put(ftp_sandbox, "/archive/catalog/2026/11/23/products_20261123.csv", b"orig\n")
    _put(ftp_sandbox, "/inbound/catalog/products_20261123.csv", resent)

    outcome = archive_file(ftp, "/inbound/catalog/products_20261123.csv", scratch_dir=None, **ARCHIVE)

    assert outcome.action == "archived"
    assert outcome.destination != "/archive/catalog/2026/11/23/products_20261123.csv"
    tree = _tree(ftp_sandbox, "/archive/catalog/2026/11/23")
    assert tree["products_20261123.csv"] == b"orig\n"
    assert tree[outcome.destination.rsplit("/", 1)[1]] == resent
    assert len(tree) == 2


def test_a_replayed_file_stays_in_the_archive(ftp_sandbox, ftp):
    path = "/archive/catalog/2026/11/23/products_20261123.csv"
    _put(ftp_sandbox, path, b"a\n")
    outcome = archive_file(ftp, path, **ARCHIVE)
    assert (outcome.action, outcome.destination) == ("kept_in_archive", path)
    assert _tree(ftp_sandbox, "/archive") == {"catalog/2026/11/23/products_20261123.csv": b"a\n"}


def test_archiving_a_missing_file_is_a_clear_error(ftp):
    with pytest.raises(FileNotFoundError, match="/inbound/catalog/ghost_20261123.csv"):
        archive_file(ftp, "/inbound/catalog/ghost_20261123.csv", **ARCHIVE)


def test_reject_moves_the_file_with_its_errors_csv_and_never_overwrites(ftp_sandbox, ftp, tmp_path):
    errors = tmp_path / "errors.csv"
    errors.write_text("file,line,column,value,reason\nprices_20261123.csv,2,price,x,price is not a number\n")
    kwargs = {"rejected_root": "/rejected", "source": "catalog", "errors_csv": errors, "archive_root": "/archive"}
    _put(ftp_sandbox, "/inbound/catalog/prices_20261123.csv", b"first\n")
    first = reject_file(ftp, "/inbound/catalog/prices_20261123.csv", **kwargs)
    _put(ftp_sandbox, "/inbound/catalog/prices_20261123.csv", b"second\n")
    second = reject_file(ftp, "/inbound/catalog/prices_20261123.csv", **kwargs)

    assert first.destination == "/rejected/catalog/prices_20261123.csv"
    assert first.errors_path == "/rejected/catalog/prices_20261123.csv.errors.csv"
    assert second.destination != first.destination
    assert second.errors_path == second.destination + ".errors.csv"
    tree = _tree(ftp_sandbox, "/rejected/catalog")
    assert tree["prices_20261123.csv"] == b"first\n"
    assert tree[second.destination.rsplit("/", 1)[1]] == b"second\n"
    assert b"price is not a number" in tree["prices_20261123.csv.errors.csv"]
    assert len(tree) == 4
    assert _tree(ftp_sandbox, "/inbound") == {}


def test_reject_completes_a_missing_errors_csv_on_retry(ftp_sandbox, ftp, tmp_path):
    errors = tmp_path / "errors.csv"
    errors.write_text("file,line,column,value,reason\n")
    _put(ftp_sandbox, "/rejected/catalog/prices_20261123.csv", b"moved before a crash\n")
    outcome = reject_file(
        ftp, "/inbound/catalog/prices_20261123.csv", rejected_root="/rejected", source="catalog", errors_csv=errors
    )
    assert outcome.errors_path == "/rejected/catalog/prices_20261123.csv.errors.csv"
    assert set(_tree(ftp_sandbox, "/rejected/catalog")) == {"prices_20261123.csv", "prices_20261123.csv.errors.csv"}


def _select(ftp, window, **kwargs):
    return select_inbound_files(
        ftp,
        inbound_dir="/inbound/catalog",
        archive_root="/archive",
        source="catalog",
        patterns=["products*.csv", "prices*.csv"],
        window=window,
        **kwargs,
    )


def test_scheduled_selection_takes_everything_waiting_in_stamp_order(ftp_sandbox, ftp):
    for name in ("products_20261124.csv", "prices_20261123.csv", "products.csv", "notes.txt"):
        _put(ftp_sandbox, f"/inbound/catalog/{name}", b"x\n")
    _put(ftp_sandbox, "/archive/catalog/2026/11/22/products_20261122.csv", b"x\n")
    files = _select(ftp, SelectionWindow(replay=False))
    assert [f.name for f in files] == ["prices_20261123.csv", "products_20261124.csv", "products.csv"]
    assert all(f.origin == "inbound" and f.size == 2 for f in files)
    # With the sensor's list, only what it reported as complete is taken.
    only = _select(ftp, SelectionWindow(replay=False), complete=[{"path": "/inbound/catalog/products.csv", "size": 2}])
    assert [f.name for f in only] == ["products.csv"]


def test_replay_takes_stamps_in_the_interval_from_archive_and_inbound(ftp_sandbox, ftp):
    _put(ftp_sandbox, "/archive/catalog/2026/11/21/products_20261121.csv", b"x\n")
    _put(ftp_sandbox, "/archive/catalog/2026/11/22/products_20261122.csv", b"x\n")
    _put(ftp_sandbox, "/archive/catalog/2026/11/22/products_20261122.1.csv", b"resent\n")
    _put(ftp_sandbox, "/archive/catalog/2026/11/22/products.csv", b"unstamped, processed that day\n")
    _put(ftp_sandbox, "/archive/catalog/2026/11/22/products_20261122.csv.errors.csv", b"x\n")
    _put(ftp_sandbox, "/archive/catalog/2026/11/24/products_20261124.csv", b"x\n")
    _put(ftp_sandbox, "/inbound/catalog/prices_20261123_120000.csv", b"x\n")
    _put(ftp_sandbox, "/inbound/catalog/prices_20261125.csv", b"x\n")
    _put(ftp_sandbox, "/inbound/catalog/products.csv", b"x\n")
    window = selection_window("backfill", {}, _dt(2026, 11, 22), _dt(2026, 11, 24))

    files = _select(ftp, window)

    assert [(f.name, f.origin) for f in files] == [
        ("products_20261122.csv", "archive"),
        ("products_20261122.1.csv", "archive"),  # same name archived later: replayed after it
        ("prices_20261123_120000.csv", "inbound"),
        ("products.csv", "archive"),  # unstamped, archived on 2026-11-22: in the window, last
    ]


def test_file_param_resolves_inbound_then_archive(ftp_sandbox, ftp):
    _put(ftp_sandbox, "/inbound/catalog/products_20261123.csv", b"new\n")
    _put(ftp_sandbox, "/archive/catalog/2026/11/21/products_20261121.csv", b"old\n")
    window = SelectionWindow(replay=False)
    (inbound,) = _select(ftp, window, only_file="products_20261123.csv")
    (archived,) = _select(ftp, window, only_file="products_20261121.csv")
    (by_path,) = _select(ftp, window, only_file="/archive/catalog/2026/11/21/products_20261121.csv")
    assert (inbound.path, inbound.origin) == ("/inbound/catalog/products_20261123.csv", "inbound")
    assert (archived.path, archived.origin) == ("/archive/catalog/2026/11/21/products_20261121.csv", "archive")
    assert by_path == archived
    with pytest.raises(InboundSelectionError, match="not found"):
        _select(ftp, window, only_file="products_20261120.csv")
    with pytest.raises(InboundSelectionError, match="outside the inbound folder"):
        _select(ftp, window, only_file="/etc/passwd")
    with pytest.raises(InboundSelectionError, match="bare file name"):
        _select(ftp, window, only_file="../archive/x.csv")
