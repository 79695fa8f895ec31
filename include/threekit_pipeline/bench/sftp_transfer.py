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

from threekit_pipeline.bench._transfer import (
    baseline,
    compare_download_upload,
    scratch_dir,
    write_random_file,
)

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
        results = compare_download_upload(
            "sftp", size_mib, repetitions, settings, remote_big="big.bin", upload_source=upload_source,
            local_dir=tmp_path, server_root=server.root, baseline_name="openssh",
            baseline_download=lambda target: baseline(sftp, f"get big.bin {target}\n"),
            baseline_upload=lambda name: baseline(sftp, f"put {upload_source} {name}\n"),
            min_ratio=MIN_RATIO)
    return {"size_mib": size_mib, "scratch": str(tmp_path.parent), **results,
            "target": f"throughput >= {MIN_RATIO}x OpenSSH sftp (median of {repetitions}, whole processes), "
                      "peak RSS < 300 MB",
            "met": all(r["met"] for r in results.values())}


if __name__ == "__main__":
    print(json.dumps(run(Path(tempfile.gettempdir()), int(sys.argv[1]) if len(sys.argv) > 1 else 256), indent=2))
