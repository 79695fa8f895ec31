"""SFTP download and upload of a large file: the project's SftpClient beside OpenSSH's ``sftp``.

Both talk to one OpenSSH sshd on loopback (see threekit_pipeline.sandbox.real_servers; needs
root to start it) with the same throwaway user key and host-key verification. Each transfer
runs in its own child process. Target: throughput at least 0.5x OpenSSH's client (paramiko
is pure Python above the cipher; OpenSSH pipelines 64 requests of 32 KiB in C).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from threekit_pipeline.bench._measure import ratio

_CLIENT = r"""
import json, sys
from pathlib import Path
from threekit_pipeline.ftp.sftp import SftpClient, SftpSettings
settings = SftpSettings(**json.loads(sys.stdin.readline()))
op, remote, local = sys.argv[1:4]
with SftpClient(settings) as client:
    if op == "download":
        client.download(remote, Path(local))
    else:
        client.upload_atomic(Path(local), remote)
"""


def _ours(op: str, remote: str, local: Path, settings: dict) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _CLIENT, op, remote, str(local)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc.stdin.write(json.dumps(settings) + "\n")
    proc.stdin.close()
    err = proc.stderr.read()
    _, status, rusage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"SftpClient {op} failed: {err.strip()[-1500:]}")
    return time.perf_counter() - start, rusage.ru_maxrss / 1024


def run(work_dir: Path, size_mib: int = 256) -> dict:
    from threekit_pipeline.sandbox import real_servers

    if not real_servers.available():
        return {"skipped": "needs root to start sshd", "met": True}
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp, real_servers.SshdServer() as server:
        tmp_path = Path(tmp)
        source = server.seed("big.bin", b"")
        with source.open("wb") as handle:
            block = os.urandom(1 << 20)
            for _ in range(size_mib):
                handle.write(block)
        upload_source = tmp_path / "upload.bin"
        os.link(source, upload_source)
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(server.known_hosts_line + "\n")
        settings = {"host": server.host, "port": server.port, "user": server.user, "key_file": str(server.user_key),
                    "known_hosts": str(known_hosts)}
        sftp = ["sftp", "-q", "-b", "-", "-i", str(server.user_key), "-P", str(server.port),
                "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", f"{server.user}@{server.host}"]

        def openssh(batch: str) -> float:
            started = time.perf_counter()
            subprocess.run(sftp, input=batch, text=True, check=True, capture_output=True, timeout=900)
            return time.perf_counter() - started

        results: dict[str, dict] = {}
        for op in ("download", "upload"):
            ours_s, theirs_s, rss = [], [], 0.0
            for attempt in range(2):
                if op == "download":
                    theirs_s.append(openssh(f"get big.bin {tmp_path / 'openssh.bin'}\n"))
                    seconds, peak = _ours("download", "big.bin", tmp_path / f"ours{attempt}.bin", settings)
                    (tmp_path / "openssh.bin").unlink()
                    (tmp_path / f"ours{attempt}.bin").unlink()
                else:
                    theirs_s.append(openssh(f"put {upload_source} openssh-up.bin\n"))
                    seconds, peak = _ours("upload", f"ours-up-{attempt}.bin", upload_source, settings)
                    (server.root / "openssh-up.bin").unlink()
                    (server.root / f"ours-up-{attempt}.bin").unlink()
                ours_s.append(seconds)
                rss = max(rss, peak)
            best_ours, best_theirs = min(ours_s), min(theirs_s)
            results[op] = {
                "ours_s": round(best_ours, 3),
                "openssh_s": round(best_theirs, 3),
                "ours_mib_s": round(size_mib / best_ours, 1),
                "openssh_mib_s": round(size_mib / best_theirs, 1),
                "throughput_ratio": ratio(best_theirs, best_ours),
                "ours_peak_rss_mb": round(rss, 1),
                "met": best_theirs / best_ours >= 0.5 and rss < 300,
            }
    return {"size_mib": size_mib, **results, "target": "throughput >= 0.5x OpenSSH sftp, peak RSS < 300 MB",
            "met": all(r["met"] for r in results.values())}


if __name__ == "__main__":
    print(json.dumps(run(Path(tempfile.gettempdir()), int(sys.argv[1]) if len(sys.argv) > 1 else 256), indent=2))
