"""Probe DAG for the distributed-execution tests: hands a staging file from one task to another.

``write_handoff`` writes a JSON file under the shared staging directory and passes only its path
through XCom; ``read_handoff`` (a different task, so a different process, possibly on another worker)
reads it back. ``check_connections`` resolves ``ftp_default``/``threekit_default`` and the
``threekit_pipeline`` Variable from the environment and logs in to the FTP server, proving the
deployment's connection settings reach the workers. Every task reports the process it ran in (PID and
ancestor PIDs) so the test can prove which executor processes ran it.

The writer and the reader go to their own Celery queues (``handoff_writer``/``handoff_reader``), so a
cluster whose workers serve one of them each proves the file crossed from one worker to another.
Executors without queues (LocalExecutor, ``airflow standalone``) ignore them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
from pathlib import Path

import pendulum
from airflow.sdk import dag, get_current_context, task

log = logging.getLogger(__name__)

HANDOFF_FILE_NAME = "handoff.json"
WRITER_QUEUE = "handoff_writer"
READER_QUEUE = "handoff_reader"


def _describe_process() -> dict:
    """PID, parent chain and host of the current task process (read by the test)."""
    import psutil

    me = psutil.Process()
    return {
        "pid": me.pid,
        "ancestors": [parent.pid for parent in me.parents()],
        "hostname": socket.gethostname(),
    }


def _pipeline_config():
    from airflow.sdk import Variable
    from threekit_pipeline.pipelines.config import VARIABLE_NAME, load_config

    return load_config(Variable.get(VARIABLE_NAME, default=None))


@dag(
    dag_id="distributed_staging_handoff",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["threekit", "selftest"],
    doc_md=__doc__,
    default_args={"retries": 0},
)
def distributed_staging_handoff():
    @task(queue=WRITER_QUEUE)
    def write_handoff() -> dict:
        run_id = get_current_context()["run_id"]
        staging = Path(_pipeline_config().staging_dir)
        # Run ids contain ':' and '+', which are awkward in paths on some filesystems.
        run_dir = staging / "distributed_staging_handoff" / re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        nonce = secrets.token_hex(16)
        writer = _describe_process()
        target = run_dir / HANDOFF_FILE_NAME
        partial = target.with_suffix(".part")
        partial.write_text(json.dumps({"run_id": run_id, "nonce": nonce, "writer": writer}))
        os.replace(partial, target)  # readers never see a half-written file
        log.info("Wrote staging file %s (%d bytes) in process %d", target, target.stat().st_size, writer["pid"])
        return {"path": str(target), "nonce": nonce, "writer": writer}

    @task
    def check_connections() -> dict:
        import ftplib

        from airflow.sdk import BaseHook

        config = _pipeline_config()
        ftp_conn = BaseHook.get_connection(config.ftp_conn_id)
        threekit_conn = BaseHook.get_connection(config.threekit_conn_id)
        with ftplib.FTP() as ftp:
            ftp.connect(ftp_conn.host, ftp_conn.port or 21, timeout=30)
            ftp.login(ftp_conn.login, ftp_conn.password)
            inbound = ftp.nlst(config.folder("inbound_catalog"))
        log.info(
            "Logged in to FTP %s:%s as %s; %s holds %d entries; Threekit API at %s",
            ftp_conn.host,
            ftp_conn.port,
            ftp_conn.login,
            config.folder("inbound_catalog"),
            len(inbound),
            threekit_conn.host,
        )
        return {
            "ftp_login_ok": True,
            "threekit_conn_type": threekit_conn.conn_type,
            "threekit_host": threekit_conn.host,
            "threekit_org_id": threekit_conn.extra_dejson.get("org_id"),
            "worker": _describe_process(),
        }

    @task(queue=READER_QUEUE)
    def read_handoff(handoff: dict) -> dict:
        path = Path(handoff["path"])
        if not path.is_file():
            raise FileNotFoundError(f"staging file {path} written by process {handoff['writer']['pid']} is missing")
        content = json.loads(path.read_text())
        if content["nonce"] != handoff["nonce"]:
            raise ValueError(f"staging file {path} holds nonce {content['nonce']!r}, expected {handoff['nonce']!r}")
        reader = _describe_process()
        log.info("Read staging file %s written by process %d, in process %d", path, content["writer"]["pid"], reader["pid"])
        return {"path": str(path), "nonce_read": content["nonce"], "reader": reader}

    @task
    def summarize(handoff: dict, read: dict, connections: dict) -> dict:
        summary = {
            "writer_pid": handoff["writer"]["pid"],
            "reader_pid": read["reader"]["pid"],
            "nonce_matches": handoff["nonce"] == read["nonce_read"],
            "ftp_login_ok": connections["ftp_login_ok"],
        }
        log.info("Handoff summary: %s", summary)
        return summary

    handoff = write_handoff()
    summarize(handoff, read_handoff(handoff), check_connections())


distributed_staging_handoff()
