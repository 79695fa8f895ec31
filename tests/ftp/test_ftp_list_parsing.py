"""LIST lines (Unix and Windows/IIS styles) to names, sizes and times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from threekit_pipeline.ftp.client import parse_list_line


def test_unix_lines_recent_and_old():
    name, size, modified, is_dir = parse_list_line(
        "-rw-r--r--    1 1001     1001         1234 Feb 03  2024 Preisliste März 2024.csv")
    assert (name, size, modified, is_dir) == ("Preisliste März 2024.csv", 1234,
                                              datetime(2024, 2, 3, tzinfo=UTC), False)
    now = datetime.now(UTC)
    recent = f"-rw-------    1 ftp      ftp            7 {now:%b} {now.day:2d} {now:%H:%M} products.csv"
    name, size, modified, _ = parse_list_line(recent)
    assert (name, size) == ("products.csv", 7)
    assert modified == now.replace(second=0, microsecond=0)
    assert parse_list_line("drwxr-xr-x    2 ftp      ftp         4096 Nov 28 10:15 archive")[3] is True


def test_windows_iis_lines():
    assert parse_list_line("11-28-26  10:15AM                 1234 products.csv") == (
        "products.csv", 1234, datetime(2026, 11, 28, 10, 15, tzinfo=UTC), False)
    name, _, _, is_dir = parse_list_line("11-28-26  10:15PM       <DIR>          sub folder")
    assert (name, is_dir) == ("sub folder", True)


def test_total_lines_carry_no_entry_and_garbage_is_unparsed():
    assert parse_list_line("total 12")[0] == ""
    assert parse_list_line("this is not a listing line") is None


@pytest.mark.parametrize("line", ["-rw-r--r-- 1 a b 5 Nov 28 10:15 ."])
def test_dot_entries_are_names_the_caller_skips(line):
    assert parse_list_line(line)[0] == "."
