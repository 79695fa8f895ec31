"""FTP download and upload of a large file: the project's FtpClient against curl, same server.

Both sides talk to one ftp-sandbox process on loopback. Each transfer runs in its own child
process so its peak RSS is its own. Targets: throughput at least 0.8x curl's, peak RSS of the
project's client under 300 MB.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from pathlib import Path

from threekit_pipeline.bench._measure import ratio, run_child

_CLIENT = r"""
import json, sys, time
from pathlib import Path
from threekit_pipeline.ftp.client import FtpClient, FtpSettings
settings = FtpSettings(**json.loads(sys.stdin.readline()))
op, remote, local = sys.argv[1:4]
started = time.perf_counter()
with FtpClient(settings) as ftp:
    if op == "download":
        ftp.download(remote, Path(local))
    else:
        ftp.upload_atomic(Path(local), remote)
print(f"TRANSFER_S {time.perf_counter() - started}")
"""


def _write_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as fh:
        for _ in range(size // len(block)):
            fh.write(block)


def _client(op: str, remote: str, local: Path, settings: dict) -> tuple[float, float, float]:
    """Wall time of the whole child (interpreter start included), its peak RSS, and the
    transfer's own time inside it (connect to close)."""
    import subprocess
    import time

    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, op, remote, str(local)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Credentials go through stdin, never the command line.
    proc.stdin.write(json.dumps(settings) + "\n")
    proc.stdin.close()
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, rusage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"FtpClient {op} failed: {err.strip()[-1500:]}")
    transfer = [float(line.split()[1]) for line in out.splitlines() if line.startswith("TRANSFER_S ")]
    return seconds, rusage.ru_maxrss / 1024, transfer[0] if transfer else seconds


def run(work_dir: Path, size_mib: int = 1024) -> dict:
    from threekit_pipeline.sandbox.ftp_process import FtpSandboxProcess

    size = size_mib << 20
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        tmp_path = Path(tmp)
        password = secrets.token_urlsafe(12)
        server = FtpSandboxProcess(root=tmp_path / "root", user="bench", password=password).start()
        try:
            netrc = tmp_path / "netrc"
            netrc.write_text(f"machine {server.host} login bench password {password}\n")
            netrc.chmod(0o600)
            source = server.root / "big.bin"
            _write_file(source, size)
            upload_source = tmp_path / "upload.bin"
            os.link(source, upload_source)
            settings = {"host": server.host, "port": server.port, "user": "bench", "password": password}
            url = f"ftp://{server.host}:{server.port}"
            curl = ["curl", "--silent", "--show-error", "--fail", "--netrc-file", str(netrc)]

            results: dict[str, dict] = {}
            # Alternate the order (curl first, then ours) and keep the best of two to damp noise.
            for op in ("download", "upload"):
                ours_s, curl_s, ours_rss, transfer_s = [], [], 0.0, []
                for attempt in range(2):
                    if op == "download":
                        c = run_child([*curl, "-o", str(tmp_path / "curl.bin"), f"{url}/big.bin"])
                        s, rss, t = _client("download", "/big.bin", tmp_path / f"ours{attempt}.bin", settings)
                        (tmp_path / "curl.bin").unlink()
                        (tmp_path / f"ours{attempt}.bin").unlink()
                    else:
                        c = run_child([*curl, "-T", str(upload_source), f"{url}/curl-up.bin"])
                        s, rss, t = _client("upload", f"/ours-up-{attempt}.bin", upload_source, settings)
                        (server.root / "curl-up.bin").unlink()
                        (server.root / f"ours-up-{attempt}.bin").unlink()
                    curl_s.append(c.seconds)
                    ours_s.append(s)
                    transfer_s.append(t)
                    ours_rss = max(ours_rss, rss)
                best_ours, best_curl = min(ours_s), min(curl_s)
                results[op] = {
                    "ours_s": round(best_ours, 3),
                    "curl_s": round(best_curl, 3),
                    "ours_mib_s": round(size_mib / best_ours, 1),
                    "curl_mib_s": round(size_mib / best_curl, 1),
                    # Throughput ratio: ours / curl (1.0 = as fast as curl).
                    "throughput_ratio": ratio(best_curl, best_ours),
                    # The same without the interpreter's start-up (a worker is already running):
                    "ours_transfer_s": round(min(transfer_s), 3),
                    "transfer_ratio": ratio(best_curl, min(transfer_s)),
                    "ours_peak_rss_mb": round(ours_rss, 1),
                    "met": best_curl / best_ours >= 0.8 and ours_rss < 300,
                }
        finally:
            server.stop()
    return {
        "size_mib": size_mib,
        **results,
        "target": "throughput >= 0.8x curl, peak RSS < 300 MB",
        "met": all(r["met"] for r in results.values()),
    }


if __name__ == "__main__":
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    print(json.dumps(run(Path(tempfile.gettempdir()), mib), indent=2))
