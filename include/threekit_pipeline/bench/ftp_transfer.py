"""FTP download and upload of a large file: the project's FtpClient beside curl, same server.

Both sides talk to one ftp-sandbox process on loopback, alternating, several repetitions,
medians (see :mod:`threekit_pipeline.bench._transfer`). Targets: throughput at least 0.8x
curl's (whole processes), peak RSS of the project's client under 300 MB.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from pathlib import Path

from threekit_pipeline.bench._transfer import (
    baseline,
    compare_download_upload,
    scratch_dir,
    write_random_file,
)

MIN_RATIO = 0.8


def run(work_dir: Path, size_mib: int = 1024, repetitions: int = 5) -> dict:
    from threekit_pipeline.sandbox.ftp_process import FtpSandboxProcess

    # The source, one copy per client and the two uploads at most at once.
    with scratch_dir(work_dir, 5 * (size_mib << 20)) as tmp_path:
        password = secrets.token_urlsafe(12)
        server = FtpSandboxProcess(root=tmp_path / "root", user="bench", password=password).start()
        try:
            netrc = tmp_path / "netrc"
            netrc.write_text(f"machine {server.host} login bench password {password}\n")
            netrc.chmod(0o600)
            source = write_random_file(server.root / "big.bin", size_mib)
            upload_source = tmp_path / "upload.bin"
            os.link(source, upload_source)
            settings = {"host": server.host, "port": server.port, "user": "bench", "password": password}
            url = f"ftp://{server.host}:{server.port}"
            curl = ["curl", "--silent", "--show-error", "--fail", "--netrc-file", str(netrc)]
            results = compare_download_upload(
                "ftp", size_mib, repetitions, settings, remote_big="/big.bin", upload_source=upload_source,
                local_dir=tmp_path, server_root=server.root, baseline_name="curl",
                baseline_download=lambda target: baseline([*curl, "-o", str(target), f"{url}/big.bin"]),
                baseline_upload=lambda name: baseline([*curl, "-T", str(upload_source), f"{url}/{name}"]),
                min_ratio=MIN_RATIO)
        finally:
            server.stop()
    return {
        "size_mib": size_mib,
        "scratch": str(tmp_path.parent),
        **results,
        "target": f"throughput >= {MIN_RATIO}x curl (median of {repetitions}, whole processes), peak RSS < 300 MB",
        "met": all(r["met"] for r in results.values()),
    }


if __name__ == "__main__":
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    print(json.dumps(run(Path(tempfile.gettempdir()), mib), indent=2))
