"""Idempotent delivery of local files to FTP folders, against a running ftp-sandbox."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from threekit_pipeline.ftp.client import FtpClient
from threekit_pipeline.pipelines.outbound import (
    ACTION_UNCHANGED,
    ACTION_UPLOADED,
    ACTION_WOULD_UPLOAD,
    deliver_file,
    deliver_files,
    open_delivery_ledger,
    sha256_of,
)


@pytest.fixture
def ftp(ftp_sandbox):
    with FtpClient(ftp_sandbox.settings()) as client:
        yield client


@pytest.fixture
def ledger(tmp_path):
    with open_delivery_ledger(tmp_path / "staging") as opened:
        yield opened


def _local(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "out" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _on_server(ftp_sandbox, remote: str) -> Path:
    return Path(ftp_sandbox.root) / remote.lstrip("/")


def test_new_file_is_uploaded_into_a_created_folder_then_left_alone(tmp_path, ftp, ftp_sandbox, ledger):
    local = _local(tmp_path, "catalog.json", b'{"a": 1}\n')
    first = deliver_file(ftp, local, "/outbound/x/y/catalog.json", ledger=ledger, target="ftp", run_id="r1")
    assert first.action == ACTION_UPLOADED and first.reason == "new"
    assert first.sha256 == sha256_of(local)
    on_disk = _on_server(ftp_sandbox, "/outbound/x/y/catalog.json")
    assert on_disk.read_bytes() == local.read_bytes()
    inode = on_disk.stat().st_ino

    second = deliver_file(ftp, local, "/outbound/x/y/catalog.json", ledger=ledger, target="ftp", run_id="r2")
    assert second.action == ACTION_UNCHANGED
    assert "ledger" in second.reason
    assert on_disk.stat().st_ino == inode  # not replaced


def test_changed_content_is_uploaded_again(tmp_path, ftp, ftp_sandbox, ledger):
    local = _local(tmp_path, "a.csv", b"sku\nA\n")
    deliver_file(ftp, local, "/outbound/a.csv", ledger=ledger, target="ftp", run_id="r1")
    local.write_bytes(b"sku\nB\n")  # same size, different content
    outcome = deliver_file(ftp, local, "/outbound/a.csv", ledger=ledger, target="ftp", run_id="r2")
    assert outcome.action == ACTION_UPLOADED and outcome.reason == "content differs"
    assert _on_server(ftp_sandbox, "/outbound/a.csv").read_bytes() == b"sku\nB\n"
    local.write_bytes(b"sku\nBB\n")
    outcome = deliver_file(ftp, local, "/outbound/a.csv", ledger=ledger, target="ftp", run_id="r3")
    assert outcome.action == ACTION_UPLOADED and outcome.reason.startswith("size differs")


def test_without_ledger_entry_an_identical_remote_copy_is_hashed_not_reuploaded(tmp_path, ftp, ftp_sandbox):
    local = _local(tmp_path, "a.json", b"[1, 2, 3]")
    with open_delivery_ledger(tmp_path / "first") as ledger:
        deliver_file(ftp, local, "/outbound/a.json", ledger=ledger, target="ftp", run_id="r1")
    inode = _on_server(ftp_sandbox, "/outbound/a.json").stat().st_ino
    # A lost staging directory (new ledger) must not cause a re-upload.
    with open_delivery_ledger(tmp_path / "second") as ledger:
        outcome = deliver_file(ftp, local, "/outbound/a.json", ledger=ledger, target="ftp", run_id="r2")
        assert outcome.action == ACTION_UNCHANGED and "hashed" in outcome.reason
        again = deliver_file(ftp, local, "/outbound/a.json", ledger=ledger, target="ftp", run_id="r3")
        assert "ledger" in again.reason  # recorded by the previous call
    assert _on_server(ftp_sandbox, "/outbound/a.json").stat().st_ino == inode


def test_remote_file_replaced_behind_our_back_is_repaired(tmp_path, ftp, ftp_sandbox, ledger):
    local = _local(tmp_path, "a.json", b"[1, 2, 3]")
    deliver_file(ftp, local, "/outbound/a.json", ledger=ledger, target="ftp", run_id="r1")
    on_disk = _on_server(ftp_sandbox, "/outbound/a.json")
    on_disk.write_bytes(b"[9, 9, 9]")  # same size, someone else's content
    later = on_disk.stat().st_mtime + 5
    os.utime(on_disk, (later, later))
    outcome = deliver_file(ftp, local, "/outbound/a.json", ledger=ledger, target="ftp", run_id="r2")
    assert outcome.action == ACTION_UPLOADED and outcome.reason == "content differs"
    assert on_disk.read_bytes() == b"[1, 2, 3]"


def test_dry_run_uploads_nothing_and_records_nothing(tmp_path, ftp, ftp_sandbox, ledger):
    local = _local(tmp_path, "a.json", b"{}")
    outcome = deliver_file(
        ftp, local, "/outbound/dry/a.json", ledger=ledger, target="ftp", run_id="r1", dry_run=True
    )
    assert outcome.action == ACTION_WOULD_UPLOAD
    assert not _on_server(ftp_sandbox, "/outbound/dry/a.json").exists()
    assert len(ledger) == 0


def test_deliver_files_counts_and_keeps_targets_apart(tmp_path, ftp, ftp_sandbox, ledger):
    files = [_local(tmp_path, f"f{i}.txt", f"file {i}".encode()) for i in range(3)]
    pairs = [(f, f"/outbound/many/{f.name}") for f in files]
    first = deliver_files(ftp, pairs, ledger=ledger, target="ftp", run_id="r1")
    assert (first.uploaded, first.unchanged, first.bytes_uploaded) == (
        3,
        0,
        sum(f.stat().st_size for f in files),
    )
    files[1].write_bytes(b"changed content")
    second = deliver_files(ftp, pairs, ledger=ledger, target="ftp", run_id="r2")
    assert (second.uploaded, second.unchanged) == (1, 2)
    assert second.to_dict()["deliveries"][1]["action"] == ACTION_UPLOADED
    # The same remote path on another FTP target is a different delivery.
    other = deliver_file(ftp, files[0], "/outbound/many/f0.txt", ledger=ledger, target="other", run_id="r3")
    assert other.action == ACTION_UNCHANGED and "hashed" in other.reason


def test_missing_local_file_and_relative_remote_path_are_clear_errors(tmp_path, ftp, ledger):
    with pytest.raises(FileNotFoundError, match="no such local file"):
        deliver_file(
            ftp, tmp_path / "nope.json", "/outbound/nope.json", ledger=ledger, target="ftp", run_id="r"
        )
    local = _local(tmp_path, "a.json", b"{}")
    with pytest.raises(ValueError, match="absolute"):
        deliver_file(ftp, local, "outbound/a.json", ledger=ledger, target="ftp", run_id="r")
