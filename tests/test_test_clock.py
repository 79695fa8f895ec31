"""THREEKIT_TEST_CLOCK: the moved clock is parsed right and reaches child processes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

CLOCK_DIR = Path(__file__).resolve().parent / "clock"
sys.path.insert(0, str(CLOCK_DIR))
import _test_clock  # noqa: E402


def test_offsets_in_days_hours_and_seconds():
    assert _test_clock.parse_offset("+76d", now=0.0) == 76 * 86400
    assert _test_clock.parse_offset("-3h", now=0.0) == -3 * 3600
    assert _test_clock.parse_offset("+12.5s", now=0.0) == 12.5


def test_a_date_keeps_the_time_of_day_and_a_datetime_is_exact():
    now = datetime(2026, 11, 30, 21, 15, 7, tzinfo=UTC).timestamp()
    moved = now + _test_clock.parse_offset("2027-02-14", now=now)
    assert datetime.fromtimestamp(moved, UTC) == datetime(2027, 2, 14, 21, 15, 7, tzinfo=UTC)
    moved = now + _test_clock.parse_offset("2027-02-14T08:00:00+01:00", now=now)
    assert datetime.fromtimestamp(moved, UTC) == datetime(2027, 2, 14, 7, 0, tzinfo=UTC)


def test_a_malformed_value_names_the_variable():
    with pytest.raises(ValueError, match="THREEKIT_TEST_CLOCK='next week'"):
        _test_clock.parse_offset("next week", now=0.0)


def test_a_child_interpreter_runs_on_the_moved_clock(tmp_path):
    """The child's clock is compared with the kernel's (a new file's mtime is not moved)."""
    probe = (
        "import os, time, datetime; open('f', 'w').close(); "
        "print(time.time() - os.stat('f').st_mtime, datetime.date.today().isoformat())"
    )
    env = {
        **os.environ,
        "THREEKIT_TEST_CLOCK": "+40d",
        "PYTHONPATH": os.pathsep.join([str(CLOCK_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert abs(float(out[0]) - 40 * 86400) < 120
    env.pop("THREEKIT_TEST_CLOCK")
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert abs(float(out[0])) < 120
