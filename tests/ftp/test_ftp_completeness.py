"""Which remote files count as completely written: pure rules, then against a real server."""

from __future__ import annotations

import ftplib
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from threekit_pipeline.ftp.client import FtpClient
from threekit_pipeline.ftp.completeness import CompletenessPolicy, complete_files, markers_for
from threekit_pipeline.ftp.models import RemoteFile

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def entry(name: str, size: int | None, minute: int = 0, folder: str = "/in", is_dir: bool = False) -> RemoteFile:
    return RemoteFile(path=f"{folder}/{name}", name=name, size=size, modified=T0 + timedelta(minutes=minute),
                      is_dir=is_dir)


def names(files: list[RemoteFile]) -> list[str]:
    return [f.name for f in files]


def roundtrip(snapshot: dict) -> dict:
    """What the snapshot looks like after an Airflow trigger/XCom: plain JSON."""
    return json.loads(json.dumps(snapshot))


def test_first_poll_reports_nothing_and_stable_files_complete_after_the_window():
    policy = CompletenessPolicy(patterns=["*.csv"], stable_seconds=60)
    listing = [entry("a.csv", 10), entry("b.csv", 20)]

    done, snap = complete_files(None, listing, policy, T0)
    assert done == []

    done, snap = complete_files(roundtrip(snap), listing, policy, T0 + timedelta(seconds=30))
    assert done == [], "unchanged for 30 s only"

    done, _ = complete_files(roundtrip(snap), listing, policy, T0 + timedelta(seconds=61))
    assert names(done) == ["a.csv", "b.csv"]


def test_a_growing_file_restarts_its_clock():
    policy = CompletenessPolicy(patterns=["*.csv"], stable_seconds=60)
    _, snap = complete_files(None, [entry("a.csv", 10)], policy, T0)
    done, snap = complete_files(roundtrip(snap), [entry("a.csv", 25, minute=1)], policy, T0 + timedelta(seconds=90))
    assert done == []
    done, snap = complete_files(roundtrip(snap), [entry("a.csv", 25, minute=1)], policy, T0 + timedelta(seconds=120))
    assert done == [], "stable for 30 s only since it last changed"
    done, _ = complete_files(roundtrip(snap), [entry("a.csv", 25, minute=1)], policy, T0 + timedelta(seconds=151))
    assert names(done) == ["a.csv"]


def test_mtime_change_with_same_size_is_a_change():
    policy = CompletenessPolicy(stable_seconds=10)
    _, snap = complete_files(None, [entry("a.csv", 10, minute=0)], policy, T0)
    done, _ = complete_files(roundtrip(snap), [entry("a.csv", 10, minute=5)], policy, T0 + timedelta(minutes=5))
    assert done == []


def test_patterns_ignore_temp_names_and_directories():
    policy = CompletenessPolicy(patterns=["*.csv", "*.xlsx"], stable_seconds=0)
    listing = [
        entry("a.csv", 1), entry("b.xlsx", 1), entry("c.txt", 1), entry(".a.csv.1f2e.part", 1),
        entry("d.csv.tmp", 1), entry("e.csv.filepart", 1), entry("sub.csv", None, is_dir=True),
    ]
    _, snap = complete_files(None, listing, policy, T0)
    done, snap = complete_files(snap, listing, policy, T0 + timedelta(seconds=1))

    assert names(done) == ["a.csv", "b.xlsx"]
    assert sorted(snap) == ["/in/a.csv", "/in/b.xlsx"]


def test_file_that_disappears_leaves_the_snapshot():
    policy = CompletenessPolicy(stable_seconds=0)
    _, snap = complete_files(None, [entry("a.csv", 1), entry("b.csv", 1)], policy, T0)
    _, snap = complete_files(snap, [entry("b.csv", 1)], policy, T0 + timedelta(seconds=1))
    assert list(snap) == ["/in/b.csv"]


def test_marker_mode_needs_the_marker_and_nothing_else():
    policy = CompletenessPolicy(patterns=["*"], stable_seconds=0, marker_suffixes=(".done", ".ok"))
    listing = [entry("a.csv", 5), entry("b.csv", 5), entry("b.csv.done", 0), entry("c.csv", 5), entry("c.csv.ok", 0)]

    done, snap = complete_files(None, listing, policy, T0)
    assert names(done) == ["b.csv", "c.csv"], "markers count on the first poll and are not data files"

    later, _ = complete_files(roundtrip(snap), listing, policy, T0 + timedelta(hours=1))
    assert "a.csv" not in names(later), "stability alone is not enough once markers are configured"
    assert markers_for(done[0], listing, policy) == [entry("b.csv.done", 0)]


def test_snapshot_is_json_and_accepts_older_two_element_entries():
    policy = CompletenessPolicy(stable_seconds=5)
    listing = [entry("a.csv", 3)]
    _, snap = complete_files(None, listing, policy, T0.timestamp())
    assert roundtrip(snap) == snap

    done, snap = complete_files({"/in/a.csv": [3, listing[0].modified.isoformat()]}, listing, policy, T0)
    assert done == [] and snap["/in/a.csv"][2] == T0.timestamp()


def test_policy_validation():
    with pytest.raises(ValueError):
        CompletenessPolicy(patterns=[])
    with pytest.raises(ValueError):
        CompletenessPolicy(stable_seconds=-1)
    with pytest.raises(ValueError):
        CompletenessPolicy(marker_suffixes=("",))
    assert CompletenessPolicy(patterns="*.csv").patterns == ("*.csv",)


def test_growing_upload_versus_stable_file_on_a_real_server(ftp_sandbox):
    """A second client appends to one file in chunks while another file sits still."""
    settings = ftp_sandbox.settings()
    policy = CompletenessPolicy(patterns=["*.csv"], stable_seconds=30)
    writer = ftplib.FTP(timeout=10)
    writer.connect(ftp_sandbox.host, ftp_sandbox.port)
    writer.login(ftp_sandbox.user, ftp_sandbox.password)
    try:
        with FtpClient(settings) as watcher:
            watcher.makedirs("/in")
            watcher.write_bytes_atomic(b"sku;name\n1;chair\n", "/in/stable.csv")
            writer.storbinary("STOR /in/growing.csv", io.BytesIO(b"sku;name\n"))

            # Poll times are supplied, so the window passes without sleeping.
            now = T0
            done, snap = complete_files(None, watcher.list_dir("/in"), policy, now)
            assert done == []
            for chunk in range(3):
                writer.storbinary("APPE /in/growing.csv", io.BytesIO(f"{chunk};item {chunk}\n".encode()))
                now += timedelta(seconds=31)
                done, snap = complete_files(roundtrip(snap), watcher.list_dir("/in"), policy, now)
                assert names(done) == ["stable.csv"], f"growing.csv reported complete after chunk {chunk}"

            now += timedelta(seconds=31)
            done, snap = complete_files(roundtrip(snap), watcher.list_dir("/in"), policy, now)
            assert sorted(names(done)) == ["growing.csv", "stable.csv"]
            growing = next(f for f in done if f.name == "growing.csv")
            assert growing.size == len(b"sku;name\n0;item 0\n1;item 1\n2;item 2\n")
    finally:
        writer.quit()


def test_growing_upload_is_detected_without_mlsd(tmp_path):
    from threekit_pipeline.sandbox.ftp_process import FtpSandboxProcess

    policy = CompletenessPolicy(patterns=["*.csv"], stable_seconds=10)
    with FtpSandboxProcess(root=tmp_path / "root", user="u", password="p-0", no_mlsd=True) as server:
        with FtpClient(server.settings()) as client:
            client.write_bytes_atomic(b"a", "/g.csv")
            _, snap = complete_files(None, client.list_dir("/"), policy, T0)
            (server.root / "g.csv").write_bytes(b"ab")  # the partner's upload grows on disk
            done, snap = complete_files(snap, client.list_dir("/"), policy, T0 + timedelta(seconds=11))
            assert done == []
            done, _ = complete_files(snap, client.list_dir("/"), policy, T0 + timedelta(seconds=22))
            assert names(done) == ["g.csv"] and done[0].size == 2
