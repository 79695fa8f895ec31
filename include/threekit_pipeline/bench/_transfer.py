"""Measuring code shared by the transfer benchmarks (FTP beside curl, SFTP beside OpenSSH's sftp).

Each transfer runs in its own child process, so its peak RSS and CPU time are its own:
the project's client in a fresh interpreter (settings through stdin, never the command
line), the baseline tool as it is. The two alternate (baseline first on even repetitions,
ours first on odd ones) so neither always inherits the other's page-cache and write-back
state, and dirty pages are flushed (``os.sync``) before every timed transfer. Figures are
medians over the repetitions, ratios are computed from those medians of the same run.

The files and the server's folder live on a RAM file system (``/dev/shm``) when it has room
(:func:`scratch_dir`): both clients then write to memory, so the figures compare the
clients, not the disk's state or other processes' I/O on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from threekit_pipeline.bench._measure import ratio

_CLIENT = r"""
import json, sys, time
from pathlib import Path
kind, op, remote, local = sys.argv[1:5]
values = json.loads(sys.stdin.readline())
if kind == "sftp":
    from threekit_pipeline.ftp.sftp import SftpClient as Client, SftpSettings as Settings
else:
    from threekit_pipeline.ftp.client import FtpClient as Client
    from threekit_pipeline.ftp.models import FtpSettings as Settings
started = time.perf_counter()
with Client(Settings(**values)) as client:
    if op == "download":
        client.download(remote, Path(local))
    else:
        client.upload_atomic(Path(local), remote)
print(f"TRANSFER_S {time.perf_counter() - started}")
"""


@dataclass(frozen=True)
class Sample:
    """One transfer: wall seconds of the whole process, seconds of the transfer itself (connect
    to close; the whole process for a baseline tool), CPU seconds (user + system, including the
    process's own children such as the ``ssh`` that ``sftp`` runs) and peak RSS in MB."""

    wall_s: float
    transfer_s: float
    cpu_s: float
    peak_rss_mb: float


def _wait(proc: subprocess.Popen, started: float, what: str, err: str) -> tuple[float, float, float]:
    _, status, rusage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{what} failed: {err.strip()[-1500:]}")
    # ru_maxrss is in KiB on Linux.
    return seconds, rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss / 1024


def ours(kind: str, op: str, remote: str, local: Path, settings: dict) -> Sample:
    """Run the project's ``kind`` (``ftp`` or ``sftp``) client for one ``op`` (``download`` of
    ``remote`` to ``local``, or ``upload`` of ``local`` to ``remote``) in a fresh interpreter."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _CLIENT, kind, op, remote, str(local)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdin.write(json.dumps(settings) + "\n")
    proc.stdin.close()
    out, err = proc.stdout.read(), proc.stderr.read()
    wall, cpu, rss = _wait(proc, started, f"{kind} client {op}", err)
    transfer = [float(line.split()[1]) for line in out.splitlines() if line.startswith("TRANSFER_S ")]
    return Sample(wall, transfer[0] if transfer else wall, cpu, rss)


def baseline(argv: list[str], stdin: str | None = None) -> Sample:
    """Run a baseline tool (curl, sftp) to completion; its transfer time is its whole run."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.close()
    _, err = proc.stdout.read(), proc.stderr.read()
    wall, cpu, rss = _wait(proc, started, argv[0], err)
    return Sample(wall, wall, cpu, rss)


def compare(size_mib: int, repetitions: int, run_ours: Callable[[int], Sample],
            run_baseline: Callable[[int], Sample], cleanup: Callable[[], None], baseline_name: str,
            min_ratio: float) -> dict:
    """Alternate ``run_baseline(i)`` and ``run_ours(i)`` ``repetitions`` times; medians and ratios.

    ``cleanup()`` runs after each pair (remove what the transfers wrote). Throughput ratios are
    ours / baseline (1.0 = as fast): ``throughput_ratio`` compares whole processes (our
    interpreter's start-up included), ``transfer_ratio`` our transfer alone (a worker that is
    already running) against the baseline's whole run, ``cpu_ratio`` the baseline's CPU time
    over ours (above 1 = we use less). ``met`` is ``throughput_ratio >= min_ratio`` with a peak
    RSS under 300 MB.
    """
    mine: list[Sample] = []
    theirs: list[Sample] = []
    for attempt in range(repetitions):
        order = [(run_baseline, theirs), (run_ours, mine)]
        for run, into in order if attempt % 2 == 0 else reversed(order):
            os.sync()  # the previous transfer's dirty pages are not this one's write-back
            into.append(run(attempt))
        cleanup()

    def median(samples: list[Sample], field: str) -> float:
        return statistics.median(getattr(sample, field) for sample in samples)

    ours_s, base_s = median(mine, "wall_s"), median(theirs, "wall_s")
    transfer_s, ours_cpu, base_cpu = median(mine, "transfer_s"), median(mine, "cpu_s"), median(theirs, "cpu_s")
    peak = max(sample.peak_rss_mb for sample in mine)
    return {
        "repetitions": repetitions,
        "ours_s": round(ours_s, 3),
        f"{baseline_name}_s": round(base_s, 3),
        "ours_mib_s": round(size_mib / ours_s, 1),
        f"{baseline_name}_mib_s": round(size_mib / base_s, 1),
        "throughput_ratio": ratio(base_s, ours_s),
        "ours_transfer_s": round(transfer_s, 3),
        "transfer_ratio": ratio(base_s, transfer_s),
        "ours_cpu_s": round(ours_cpu, 3),
        f"{baseline_name}_cpu_s": round(base_cpu, 3),
        "cpu_ratio": ratio(base_cpu, ours_cpu),
        "ours_peak_rss_mb": round(peak, 1),
        "samples_ours_s": [round(sample.wall_s, 3) for sample in mine],
        f"samples_{baseline_name}_s": [round(sample.wall_s, 3) for sample in theirs],
        "met": base_s / ours_s >= min_ratio and peak < 300,
    }


def compare_download_upload(kind: str, size_mib: int, repetitions: int, settings: dict, *,
                            remote_big: str, upload_source: Path, local_dir: Path, server_root: Path,
                            baseline_name: str, baseline_download: Callable[[Path], Sample],
                            baseline_upload: Callable[[str], Sample], min_ratio: float) -> dict:
    """Both directions with :func:`compare`: ``{"download": {...}, "upload": {...}}``.

    The project's ``kind`` client downloads ``remote_big`` to ``<local_dir>/ours.bin`` and uploads
    ``upload_source`` as ``ours-up.bin`` (relative to the login folder); the baseline downloads
    to the path it is given and uploads as the remote name it is given. Every file written (in
    ``local_dir`` and on the server's disk under ``server_root``) is removed after each pair.
    """
    remote_dir = "/" if remote_big.startswith("/") else ""
    written = [local_dir / f"{baseline_name}.bin", local_dir / "ours.bin",
               server_root / f"{baseline_name}-up.bin", server_root / "ours-up.bin"]

    def cleanup() -> None:
        for path in written:
            path.unlink(missing_ok=True)

    return {
        "download": compare(
            size_mib, repetitions,
            lambda _: ours(kind, "download", remote_big, local_dir / "ours.bin", settings),
            lambda _: baseline_download(local_dir / f"{baseline_name}.bin"),
            cleanup, baseline_name, min_ratio),
        "upload": compare(
            size_mib, repetitions,
            lambda _: ours(kind, "upload", f"{remote_dir}ours-up.bin", upload_source, settings),
            lambda _: baseline_upload(f"{baseline_name}-up.bin"),
            cleanup, baseline_name, min_ratio),
    }


@contextlib.contextmanager
def scratch_dir(work_dir: Path, needed_bytes: int) -> Iterator[Path]:
    """A temporary directory on ``/dev/shm`` when it has ``needed_bytes`` free (plus a margin),
    else under ``work_dir``; removed on exit. Also the default of :mod:`tempfile` meanwhile, so
    servers that make their own temporary folders (sshd) put their data there too."""
    ram = Path("/dev/shm")
    base = work_dir
    if ram.is_dir() and os.access(ram, os.W_OK) and shutil.disk_usage(ram).free > needed_bytes * 1.5:
        base = ram
    previous = tempfile.tempdir
    path = Path(tempfile.mkdtemp(prefix="bench-", dir=base))
    path.chmod(0o755)  # a server's own account (sshd) must reach its folder inside
    tempfile.tempdir = str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(path, ignore_errors=True)


def write_random_file(path: Path, size_mib: int) -> Path:
    """``size_mib`` MiB of random bytes (incompressible) at ``path``."""
    block = os.urandom(1 << 20)
    with path.open("wb") as handle:
        for _ in range(size_mib):
            handle.write(block)
    return path
