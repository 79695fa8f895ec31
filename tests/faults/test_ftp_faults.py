"""The FTP side failing during a catalog import: server restarts mid-transfer, dropped uploads, full disk.

Faults are placed exactly, not by timing: :class:`FreezeOnFileEvent` freezes the FTP sandbox
the instant it reads, creates or renames the file in question (Linux inotify), then kills it
and starts it again, so the client is always cut off in the middle of that transfer or move.
Each test runs the real ``threekit_catalog_import`` DAG and checks that the run either
completed with every product imported once and every file archived once, or failed with a
clear error and every source file still in place, and that a re-run converges.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _robustness import (
    IMPORT_ROUTE,
    INBOUND,
    FreezeOnFileEvent,
    catalog_batch,
    catalog_names,
    expected_names,
    ftp_files,
    ftp_tree,
    load_dag,
    local_parts,
    request_count,
    run_dag,
    running_stack,
    set_connection_extras,
    snapshot_items,
    temp_uploads,
    upload_batch,
)

DAG_ID = "threekit_catalog_import"
PRODUCTS = 60
VARIABLE = {"batch_size": 30, "import_concurrency": 2, "sensor_timeout_seconds": 4}
# Reconnects back off 1 s, 2 s, 4 s, 8 s: far longer than the server is down for a restart.
FTP_EXTRAS = {"retries": 4}
# The products file padded to ~8 MiB with a column the mapping ignores: big enough that a
# restart certainly lands in the middle of its download.
PAD_BYTES = 8 * 1024 * 1024 // PRODUCTS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]


def _at(hour: int) -> datetime:
    return datetime(2026, 11, 23, hour, tzinfo=UTC)


@pytest.fixture
def dag():
    dag = load_dag(DAG_ID, retry_delay_s=0.2)
    for task in dag.tasks:
        task.retries = 1
    return dag


def _reports(stack) -> dict[str, dict]:
    folder = Path(stack.ftp.root) / "reports" / "catalog_import"
    return {p.name: json.loads(p.read_text()) for p in folder.glob("*.json")}


def _assert_imported_once(stack, files: dict, names: list[str]) -> None:
    assert catalog_names(stack) == expected_names(files)
    assert ftp_files(stack, INBOUND) == {}
    assert sorted(ftp_files(stack, "/archive/catalog")) == [f"2026/11/23/{name}" for name in names]
    assert temp_uploads(stack) == []


def _messages(caplog, text: str) -> list[str]:
    """Log messages (with their exception's text, for task failures) that contain ``text``."""
    found = []
    for record in caplog.records:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += f"\n{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        if text in message:
            found.append(message)
    return found


def test_download_resumes_after_the_ftp_server_restarts_mid_transfer(tmp_path, dag, caplog):
    caplog.set_level(logging.INFO)
    # Served at 8 MiB/s, the 8 MiB file takes about a second: the server reads it in many separate
    # steps even when the watcher is held off the CPU (inotify merges repeated events it has not read).
    with running_stack(tmp_path / "stack", VARIABLE, ftp_download_limit=8 * 2**20) as stack:
        set_connection_extras(ftp=FTP_EXTRAS)
        files = catalog_batch(tmp_path, "20261123", products=PRODUCTS, seed=1, pad_bytes_per_row=PAD_BYTES)
        names = upload_batch(stack, files)
        products = files["products"]
        original_sha = hashlib.sha256(products.read_bytes()).hexdigest()
        inbound_dir = Path(stack.ftp.root) / INBOUND.strip("/")

        # The server is frozen after its third read of the products file, mid-download.
        with FreezeOnFileEvent(stack, inbound_dir, "access", products.name, count=3) as fault:
            state, tasks = run_dag(dag, logical_date=_at(10))

        assert fault.fired.is_set() and fault.restarted.is_set(), fault.watcher_output
        assert state == "success", tasks
        assert tasks["collect_files"] == ["success"]
        resumed = _messages(caplog, f"Resuming download of {INBOUND}/{products.name}")
        assert resumed, "the download did not resume after the restart"
        staged = list(Path(stack.staging_dir).glob(f"{DAG_ID}/*/downloads/*/{products.name}"))
        assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in staged] == [original_sha]
        assert local_parts(stack.staging_dir) == []
        _assert_imported_once(stack, files, names)

        # The same batch sent again converges: nothing imported, nothing archived twice.
        archive = ftp_files(stack, "/archive/catalog")
        imports = request_count(stack, IMPORT_ROUTE)
        upload_batch(stack, files)
        state, tasks = run_dag(dag, logical_date=_at(11))
        assert state == "success", tasks
        assert request_count(stack, IMPORT_ROUTE) == imports
        assert ftp_files(stack, "/archive/catalog") == archive
        _assert_imported_once(stack, files, names)


@pytest.mark.parametrize(
    ("where", "event", "name"),
    [
        # The first archive rename lands, the server dies before the client hears back.
        pytest.param("archive/catalog/2026/11/23", "moved_to", "*", id="during-the-archive-moves"),
        # The report's first temporary upload file is created, the server dies mid-upload.
        pytest.param("reports/catalog_import", "create", ".*.part", id="during-the-report-upload"),
    ],
)
def test_connection_drop_while_finalizing_converges(tmp_path, dag, where, event, name, caplog):
    caplog.set_level(logging.INFO)
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        set_connection_extras(ftp=FTP_EXTRAS)
        files = catalog_batch(tmp_path, "20261123", products=PRODUCTS, seed=2)
        names = upload_batch(stack, files)

        with FreezeOnFileEvent(stack, Path(stack.ftp.root) / where, event, name) as fault:
            state, tasks = run_dag(dag, logical_date=_at(10))

        assert fault.fired.is_set() and fault.restarted.is_set(), fault.watcher_output
        assert _messages(caplog, "reconnecting and retrying"), "the client never saw the dropped connection"
        assert state == "success", tasks
        assert tasks["finalize"] == ["success"]
        _assert_imported_once(stack, files, names)  # no "name.1.csv" second copies, no temp files
        reports = _reports(stack)
        assert len(reports) == 1
        (report,) = reports.values()
        assert report["status"] == "success"
        assert {f["file"]: f["status"] for f in report["files"]} == {n: "imported" for n in names}
        uploaded = sorted(ftp_files(stack, "/reports/catalog_import"))
        stem = Path(next(iter(reports))).stem
        assert uploaded == sorted([f"{stem}.csv", f"{stem}.json"])


# --- staging disk full --------------------------------------------------------------------------


def _mount_tmpfs(directory: Path, size: str) -> bool:
    directory.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _umount(directory: Path) -> None:
    subprocess.run(["umount", "-l", str(directory)], capture_output=True, timeout=10)


@pytest.fixture
def small_staging_fs(tmp_path):
    """A 2 MiB tmpfs for the staging directory (needs mount rights: root or CAP_SYS_ADMIN).

    Growing it later (``remount``) is how the test "frees space" for the re-run.
    """
    mount_point = tmp_path / "staging_fs"
    if not _mount_tmpfs(mount_point, "2m"):
        pytest.skip("mounting a tmpfs is not permitted here; the RLIMIT_FSIZE variant covers a full disk")
    try:
        yield mount_point
    finally:
        _umount(mount_point)


def test_staging_disk_full_fails_clearly_and_rerun_with_space_converges(tmp_path, dag, small_staging_fs, capfd):
    staging = small_staging_fs / "staging"
    with running_stack(tmp_path / "stack", {**VARIABLE, "staging_dir": str(staging)}) as stack:
        files = catalog_batch(tmp_path, "20261123", products=PRODUCTS, seed=3, pad_bytes_per_row=PAD_BYTES)
        names = upload_batch(stack, files)
        inbound_before = ftp_tree(stack, INBOUND)

        state, tasks = run_dag(dag, logical_date=_at(10))

        assert state == "failed", tasks
        assert tasks["collect_files"] == ["failed"]
        assert tasks["finalize"] == ["failed"]  # no plan after a failed download: the run must not pass
        assert ftp_tree(stack, INBOUND) == inbound_before  # every source file in place, unchanged
        assert ftp_files(stack, "/archive") == {} and ftp_files(stack, "/rejected") == {}
        assert stack.threekit.items() == []
        assert local_parts(staging) == []  # the partial download was removed
        # The task's failure (Airflow prints it with the traceback) names the file, the staging path and why.
        output = "".join(capfd.readouterr())
        failures = [line for line in output.splitlines() if line.startswith("OSError: [Errno 28] FTP download")]
        assert failures, "the task failure does not say the disk is full"
        assert all(
            f"{INBOUND}/{files['products'].name}" in line and str(staging) in line and "No space left" in line
            for line in failures
        ), failures

        # Space is freed; the next run picks the same files up.
        remount = subprocess.run(
            ["mount", "-o", "remount,size=64m", str(small_staging_fs)], capture_output=True, timeout=10
        )
        assert remount.returncode == 0, remount.stderr
        state, tasks = run_dag(dag, logical_date=_at(11))

        assert state == "success", tasks
        _assert_imported_once(stack, files, names)
        assert snapshot_items(stack).keys() == expected_names(files).keys()


def test_staging_file_size_limit_fails_clearly_and_rerun_converges(tmp_path):
    """The disk-full case without mount rights: the download step (the DAG's ``collect_files`` task
    function) runs in a subprocess whose RLIMIT_FSIZE is 1 MiB, so writing the 8 MiB download
    fails with EFBIG the way a full disk fails with ENOSPC. The same step without the limit then
    succeeds from the same, untouched inbound files."""
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        files = catalog_batch(tmp_path, "20261123", products=PRODUCTS, seed=4, pad_bytes_per_row=PAD_BYTES)
        upload_batch(stack, files)
        inbound_before = ftp_tree(stack, INBOUND)
        settings = stack.ftp.settings()
        job = {
            "ftp": {"host": settings.host, "port": settings.port, "user": settings.user},
            "staging_dir": str(stack.staging_dir),
            "file": files["products"].name,
        }
        script = Path(__file__).with_name("_collect_step.py")
        env = {**os.environ, "FTP_SANDBOX_PASSWORD_FOR_STEP": stack.ftp.password}

        limited = subprocess.run(
            [sys.executable, str(script), json.dumps(job), str(1024 * 1024)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

        assert limited.returncode == 1, limited.stdout + limited.stderr
        outcome = json.loads(limited.stdout.strip().splitlines()[-1])
        assert outcome["errno"] == errno.EFBIG
        assert files["products"].name in outcome["error"] and str(stack.staging_dir) in outcome["error"]
        assert ftp_tree(stack, INBOUND) == inbound_before
        assert local_parts(stack.staging_dir) == []

        unlimited = subprocess.run(
            [sys.executable, str(script), json.dumps(job), "0"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert unlimited.returncode == 0, unlimited.stdout + unlimited.stderr
        collected = json.loads(unlimited.stdout.strip().splitlines()[-1])
        assert collected["files"] == 1
        staged = json.loads(Path(collected["collected"]).read_text())["files"][0]
        assert Path(staged["local"]).read_bytes() == files["products"].read_bytes()
        assert ftp_tree(stack, INBOUND) == inbound_before  # collecting moves nothing
