"""`make test` distributes with `--dist loadgroup`: a test's xdist group must reach the scheduler."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.xdist_group("grouping_check")
def test_a_grouped_test_carries_its_group_to_the_scheduler(request):
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not distributed with --dist loadgroup")
    assert request.node.nodeid.endswith("@grouping_check"), request.node.nodeid


@pytest.mark.timeout(300)
def test_tests_of_one_group_run_on_one_worker_under_loadgroup(tmp_path):
    """Two workers, two modules of one group and free tests: the group never spans workers."""
    (tmp_path / "conftest.py").write_text("from xdist_groups import pytest_collection_modifyitems  # noqa: F401\n")
    body = (
        "import pytest\n"
        "pytestmark = pytest.mark.xdist_group('together')\n"
        + "".join(f"def test_{n}():\n    pass\n" for n in range(6))
    )
    (tmp_path / "test_a.py").write_text(body)
    (tmp_path / "test_b.py").write_text(body)
    (tmp_path / "test_free.py").write_text(
        "".join(f"def test_free_{n}():\n    pass\n" for n in range(12))
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider", "-v"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO / "tests")},
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    # "[gw0] [  4%] PASSED test_a.py::test_0@together"
    placed = [line.split()[0] for line in result.stdout.splitlines() if "PASSED" in line and "@together" in line]
    assert len(placed) == 12 and len(set(placed)) == 1, result.stdout[-3000:]
