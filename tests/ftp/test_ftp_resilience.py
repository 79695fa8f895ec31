"""Dropped connections, server restarts and idle timeouts: the client must converge."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import select

import pytest
from threekit_pipeline.ftp.client import FtpClient
from threekit_pipeline.ftp.errors import FtpTransientError
from threekit_pipeline.sandbox.ftp_process import FtpSandboxProcess

USER = "erp"
PASSWORD = "r3silient-pw-0b9e"
TRANSFER_LINE = re.compile(
    r"transfer user=(\S+) file=(\S+) bytes=(\d+) direction=(\w+) command=(\w+) completed=(\w+)")


def transfers(log_text: str, name: str) -> list[tuple[str, int, str]]:
    """(direction, bytes, completed) of each logged transfer of a file named ``name``."""
    return [
        (m.group(4), int(m.group(3)), m.group(6))
        for m in TRANSFER_LINE.finditer(log_text)
        if m.group(2).rsplit("/", 1)[-1] == name
    ]


@pytest.fixture
def sandbox(tmp_path):
    server = FtpSandboxProcess(root=tmp_path / "root", user=USER, password=PASSWORD, log_file=tmp_path / "ftp.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_download_resumes_after_the_server_restarts_mid_transfer(sandbox, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="threekit_pipeline.ftp.client")
    size = 20 * 1024 * 1024
    (sandbox.root / "catalog.bin").write_bytes(os.urandom(size))
    expected = hashlib.sha256((sandbox.root / "catalog.bin").read_bytes()).hexdigest()
    seen: list[int] = []
    state = {"restarted": False}

    def restart_once(done: int, total: int | None) -> None:
        seen.append(done)
        if not state["restarted"] and done >= 5 * 1024 * 1024:
            state["restarted"] = True
            sandbox.restart()

    target = tmp_path / "staging" / "catalog.bin"
    with FtpClient(sandbox.settings(retry_backoff=0.05)) as client:
        client.download("/catalog.bin", target, progress=restart_once)

    assert state["restarted"]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == expected
    assert not target.with_name("catalog.bin.part").exists()
    assert seen == sorted(seen), "progress went backwards: the download restarted from zero"
    assert seen[-1] == size
    assert "Resuming download of /catalog.bin" in caplog.text
    # People reading the task log see progress and a summary with throughput.
    assert re.search(r"Downloading /catalog\.bin: [\d.]+ MiB of 20\.0 MiB \(\d0%\)", caplog.text)
    assert re.search(r"Downloaded /catalog\.bin: 20\.0 MiB in [\d.]+ s \([\d.]+ MiB/s\) to .*resumed 1 time",
                     caplog.text)
    # Server side: the first RETR was cut short and the second one sent only the rest.
    downloads = transfers(sandbox.log_file.read_text(), "catalog.bin")
    assert downloads[-1][0] == "download" and downloads[-1][2] == "yes"
    assert 0 < downloads[-1][1] < size
    assert sum(b for d, b, _ in downloads if d == "download") < 2 * size


def test_upload_converges_after_the_connection_drops(sandbox, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="threekit_pipeline.ftp.client")
    size = 6 * 1024 * 1024
    source = tmp_path / "prices.csv"
    source.write_bytes(os.urandom(size))
    (sandbox.root / "out").mkdir()
    (sandbox.root / "out" / "prices.csv").write_bytes(b"yesterday")
    calls = {"n": 0}

    def drop_once(done: int, total: int | None) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            sandbox.restart()

    with FtpClient(sandbox.settings(retry_backoff=0.05)) as client:
        assert client.upload_atomic(source, "/out/prices.csv", progress=drop_once) == "/out/prices.csv"
        # Running it again (a task retry) converges to the same state.
        client.upload_atomic(source, "/out/prices.csv")

    assert (sandbox.root / "out" / "prices.csv").read_bytes() == source.read_bytes()
    assert sorted(p.name for p in (sandbox.root / "out").iterdir()) == ["prices.csv"], "temporary files left"
    assert "retrying" in caplog.text, "the connection never dropped; the test proved nothing"
    # The interrupted attempt's temporary file was removed on the new connection.
    assert re.search(r"Removed temporary upload /out/\.prices\.csv\.[0-9a-f]{8}\.part", caplog.text)
    assert transfers(sandbox.log_file.read_text(), "prices.csv") == [], "the final name was never written to"


def test_idle_timeout_421_is_handled_by_reconnecting(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="threekit_pipeline.ftp.client")
    with FtpSandboxProcess(root=tmp_path / "root", user=USER, password=PASSWORD, idle_timeout=1) as server:
        (server.root / "a.csv").write_bytes(b"1")
        with FtpClient(server.settings(retry_backoff=0.05)) as client:
            assert [f.name for f in client.list_dir("/")] == ["a.csv"]
            # Wait for the server's 421 on the idle control connection (the socket turns readable),
            # not for a fixed time: a loaded machine may check idleness late.
            control = client._ftp.sock
            readable, _, _ = select.select([control], [], [], 60)
            assert readable, "the server never closed the idle connection"
            assert [f.name for f in client.list_dir("/")] == ["a.csv"]
            assert client.read_bytes("/a.csv") == b"1"
    assert "retrying" in caplog.text
    assert PASSWORD not in caplog.text


def test_unreachable_server_gives_up_after_the_configured_retries(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="threekit_pipeline.ftp.client")
    server = FtpSandboxProcess(root=tmp_path / "root", user=USER, password=PASSWORD)
    server.start()
    settings = server.settings(retries=2, retry_backoff=0.01)
    server.stop()
    with FtpClient(settings) as client, pytest.raises(FtpTransientError) as info:
        client.stat("/a.csv")
    assert "stat '/a.csv'" in str(info.value) and f"{settings.host}:{settings.port}" in str(info.value)
    assert caplog.text.count("retrying") == 2


def test_client_recovers_when_the_server_comes_back(sandbox):
    with FtpClient(sandbox.settings(retry_backoff=0.05)) as client:
        client.write_bytes_atomic(b"before", "/state.txt")
        sandbox.restart()  # the client's control connection is now dead
        assert client.read_bytes("/state.txt") == b"before"
        client.write_bytes_atomic(b"after", "/state.txt")
        client.delete("/state.txt")
        assert not client.exists("/state.txt")


def test_download_starts_over_when_the_remote_file_changes_between_attempts(sandbox, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="threekit_pipeline.ftp.client")
    remote_file = sandbox.root / "stock.csv"
    remote_file.write_bytes(os.urandom(8 * 1024 * 1024))
    replacement = os.urandom(6 * 1024 * 1024)
    state = {"changed": False}

    def change_then_drop(done: int, total: int | None) -> None:
        if not state["changed"] and done >= 2 * 1024 * 1024:
            state["changed"] = True
            remote_file.write_bytes(replacement)  # the partner replaced the file meanwhile
            sandbox.restart()

    target = tmp_path / "stock.csv"
    with FtpClient(sandbox.settings(retry_backoff=0.05)) as client:
        client.download("/stock.csv", target, progress=change_then_drop)

    assert state["changed"]
    assert target.read_bytes() == replacement, "bytes of two versions were spliced together"
    assert "changed on the server during the download" in caplog.text
