"""SFTP download and upload of a large file: the project's SftpClient beside OpenSSH's ``sftp -b``.

Both talk to one OpenSSH sshd on loopback (see threekit_pipeline.sandbox.real_servers; needs
root to start it) with the same throwaway user key and host-key verification, alternating,
several repetitions, medians (see :mod:`threekit_pipeline.bench._transfer`). Target:
throughput at least 0.5x OpenSSH's client (paramiko is pure Python above the cipher;
OpenSSH is C end to end), peak RSS under 300 MB.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from threekit_pipeline.bench._transfer import baseline, compare, ours, scratch_dir, write_random_file

MIN_RATIO = 0.5


def run(work_dir: Path, size_mib: int = 256, repetitions: int = 5) -> dict:
    from threekit_pipeline.sandbox import real_servers

    if not real_servers.available():
        return {"skipped": "needs root to start sshd", "met": True}
    with scratch_dir(work_dir, 5 * (size_mib << 20)) as tmp_path, real_servers.SshdServer() as server:
        source = write_random_file(server.seed("big.bin", b""), size_mib)
        upload_source = tmp_path / "upload.bin"
        os.link(source, upload_source)
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(server.known_hosts_line + "\n")
        settings = {"host": server.host, "port": server.port, "user": server.user, "key_file": str(server.user_key),
                    "known_hosts": str(known_hosts)}
        sftp = ["sftp", "-q", "-b", "-", "-i", str(server.user_key), "-P", str(server.port),
                "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", f"{server.user}@{server.host}"]
        written = [tmp_path / "openssh.bin", tmp_path / "ours.bin", server.root / "openssh-up.bin",
                   server.root / "ours-up.bin"]

        def cleanup() -> None:
            for path in written:
                path.unlink(missing_ok=True)

        results = {
            "download": compare(
                size_mib, repetitions,
                lambda _: ours("sftp", "download", "big.bin", tmp_path / "ours.bin", settings),
                lambda _: baseline(sftp, f"get big.bin {tmp_path / 'openssh.bin'}\n"),
                cleanup, "openssh", MIN_RATIO),
            "upload": compare(
                size_mib, repetitions,
                lambda _: ours("sftp", "upload", "ours-up.bin", upload_source, settings),
                lambda _: baseline(sftp, f"put {upload_source} openssh-up.bin\n"),
                cleanup, "openssh", MIN_RATIO),
        }
    return {"size_mib": size_mib, "scratch": str(tmp_path.parent), **results,
            "target": f"throughput >= {MIN_RATIO}x OpenSSH sftp (median of {repetitions}, whole processes), "
                      "peak RSS < 300 MB",
            "met": all(r["met"] for r in results.values())}


if __name__ == "__main__":
    print(json.dumps(run(Path(tempfile.gettempdir()), int(sys.argv[1]) if len(sys.argv) > 1 else 256), indent=2))
