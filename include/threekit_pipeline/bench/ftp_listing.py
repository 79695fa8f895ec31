"""Listing a folder of 1,000 files: round trips and time, with and without MLSD.

One ftp-sandbox without MLSD (like vsftpd or IIS) and one with MLSD, on loopback, holding
the same files. Three ways of listing are measured:

* ``list``: what FtpClient does without MLSD: one ``LIST``, parsed (names, sizes, times);
* ``nlst_size_mdtm``: what it did before: ``NLST`` then ``SIZE`` and ``MDTM`` per file;
* ``mlsd``: FtpClient on the MLSD server, the baseline.

Round trips are the commands sent on the control connection while listing. Loopback hides
latency, so each result also gives the time on a 50 ms link (``round trips x 50 ms`` added
to the measured time). Target: the ``LIST`` listing needs no more round trips than MLSD + 2.
"""

from __future__ import annotations

import ftplib
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

RTT_S = 0.05


class _Counter:
    def __init__(self) -> None:
        self.commands = 0
        self._original = ftplib.FTP.putcmd

    def __enter__(self) -> _Counter:
        counter = self

        def putcmd(ftp, line):
            counter.commands += 1
            return counter._original(ftp, line)

        ftplib.FTP.putcmd = putcmd
        return self

    def __exit__(self, *exc_info: object) -> None:
        ftplib.FTP.putcmd = self._original


def _measure(client, how, folder: str, repeats: int = 3) -> dict:
    best = None
    for _ in range(repeats):
        with _Counter() as counter:
            started = time.perf_counter()
            entries = how(client, folder)
            seconds = time.perf_counter() - started
        if best is None or seconds < best["seconds"]:
            best = {"seconds": round(seconds, 3), "round_trips": counter.commands, "entries": len(entries),
                    "with_sizes_and_times": sum(1 for e in entries if e.size is not None and e.modified)}
    best["seconds_at_50ms_rtt"] = round(best["seconds"] + best["round_trips"] * RTT_S, 1)
    return best


def _old_fallback(client, folder: str) -> list:
    """The listing without MLSD before LIST parsing: NLST, then SIZE + MDTM per file."""
    from threekit_pipeline.ftp.paths import join_remote

    def attempt(ftp):
        names = ftp.nlst(folder)
        ftp.voidcmd("TYPE I")
        return [client._stat_on(ftp, join_remote(folder, name.rsplit("/", 1)[-1])) for name in names]

    return client._retrying("list", folder, attempt)


def run(work_dir: Path, files: int = 1000) -> dict:
    from threekit_pipeline.ftp.client import FtpClient
    from threekit_pipeline.sandbox.ftp_process import FtpSandboxProcess

    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        root = Path(tmp) / "root"
        folder = root / "inbound"
        folder.mkdir(parents=True)
        for number in range(files):
            (folder / f"products_{number:05d}.csv").write_bytes(b"x" * (number % 97))
        password = secrets.token_urlsafe(12)
        plain = FtpSandboxProcess(root=root, user="bench", password=password, no_mlsd=True).start()
        mlsd = FtpSandboxProcess(root=root, user="bench", password=password).start()
        try:
            with FtpClient(plain.settings()) as client:
                assert "MLST" not in client.features
                listed = _measure(client, lambda c, f: c.list_dir(f), "/inbound")
                old = _measure(client, _old_fallback, "/inbound", repeats=1)
            with FtpClient(mlsd.settings()) as client:
                assert "MLST" in client.features
                baseline = _measure(client, lambda c, f: c.list_dir(f), "/inbound")
        finally:
            plain.stop()
            mlsd.stop()
    return {
        "files": files,
        "list": listed,
        "nlst_size_mdtm": old,
        "mlsd": baseline,
        "round_trip_ratio": round(listed["round_trips"] / baseline["round_trips"], 2),
        "speedup_vs_nlst_at_50ms": round(old["seconds_at_50ms_rtt"] / max(listed["seconds_at_50ms_rtt"], 1e-3), 1),
        "target": "LIST listing: all sizes and times, round trips <= MLSD's + 2",
        "met": listed["with_sizes_and_times"] == files and listed["round_trips"] <= baseline["round_trips"] + 2,
    }


if __name__ == "__main__":
    print(json.dumps(run(Path(tempfile.gettempdir()), int(sys.argv[1]) if len(sys.argv) > 1 else 1000), indent=2))
