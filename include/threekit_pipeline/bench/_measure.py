"""Measuring helpers shared by the benchmarks: wall time and peak RSS of a child process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ChildRun:
    seconds: float
    peak_rss_mb: float
    stdout: str


def run_child(argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None) -> ChildRun:
    """Run ``argv`` to completion; return its wall time and its own peak RSS (from wait4)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, text=True)
    out, err = "", ""
    # communicate() would reap the child itself; read the pipes, then reap with wait4 for its rusage.
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    _, status, rusage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {err.strip()[-2000:]}")
    # ru_maxrss is in KiB on Linux.
    return ChildRun(seconds=seconds, peak_rss_mb=rusage.ru_maxrss / 1024, stdout=out)


def python_child(code: str, *args: str, env: dict[str, str] | None = None) -> ChildRun:
    """Run a snippet of Python in a fresh interpreter (so peak RSS is the snippet's own)."""
    return run_child([sys.executable, "-c", code, *args], env=env)


def ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else float("inf")
