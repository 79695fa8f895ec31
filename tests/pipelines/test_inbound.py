"""Inbound file selection, archive layout and quarantine.

Pure rules (stamps, windows, ordering) are tested without any server; archive/reject/replay
behaviour is tested against a running ftp-sandbox with the real FTP client.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from threekit_pipeline.pipelines.inbound import (
    InboundFile,
    InboundSelectionError,
    SelectionWindow,
    archive_dir,
    group_by_stamp,
    is_within,
    matches_patterns,
    order_files,
    parse_stamp,
    rejected_dir,
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
