"""Run the catalog import's download step (``collect_files``) under a file-size limit.

``python _collect_step.py '<job json>' <max file bytes, 0 = unlimited>``; the FTP password comes
from ``FTP_SANDBOX_PASSWORD_FOR_STEP``. With a limit, ``RLIMIT_FSIZE`` is set and ``SIGXFSZ``
ignored, so writing past the limit fails with ``EFBIG`` like a full disk fails with ``ENOSPC``.
The last stdout line is JSON: the step's result (exit 0) or ``{"error", "errno"}`` (exit 1).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from datetime import UTC, datetime


def main() -> int:
    job = json.loads(sys.argv[1])
    limit = int(sys.argv[2])
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    from threekit_pipeline.ftp.client import FtpClient
    from threekit_pipeline.ftp.models import FtpSettings
    from threekit_pipeline.pipelines import catalog_import
    from threekit_pipeline.pipelines.config import load_config
    from threekit_pipeline.pipelines.runtime import TaskEnv

    moment = datetime(2026, 11, 23, 10, tzinfo=UTC)
    env = TaskEnv(
        dag_id=catalog_import.DAG_ID,
        run_id="manual__2026-11-23T10:00:00+00:00",
        config=load_config({"staging_dir": job["staging_dir"]}),
        params={"file": job["file"]},
        logical_date=moment,
        data_interval_start=moment,
        data_interval_end=moment,
    )
    settings = FtpSettings(password=os.environ["FTP_SANDBOX_PASSWORD_FOR_STEP"], retry_backoff=0.2, **job["ftp"])
    try:
        with FtpClient(settings) as ftp:
            result = catalog_import.collect_files(env, None, ftp)
    except OSError as exc:
        print(json.dumps({"error": str(exc), "errno": exc.errno}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
