"""SftpClient against a real OpenSSH server (Debian's openssh-server, started on a loopback port
with throwaway host and user keys; see threekit_pipeline.sandbox.real_servers)."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from datetime import UTC, datetime, timedelta

import pytest
from threekit_pipeline.ftp.completeness import CompletenessPolicy, complete_files
from threekit_pipeline.ftp.errors import FtpNotFound, FtpPermanentError
from threekit_pipeline.ftp.sftp import SftpClient, SftpSettings
from threekit_pipeline.sandbox import real_servers

pytestmark = pytest.mark.skipif(not real_servers.available(), reason="sshd needs root and apt-get")


@pytest.fixture
def known_hosts(sshd, tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text(sshd.known_hosts_line + "\n")
    return path


@pytest.fixture
def folder(sshd, request):
    """A fresh folder under the server's root for one test (relative to the login folder)."""
    name = f"t-{request.node.name[:40]}-{os.urandom(3).hex()}".replace("[", "-").replace("]", "")
    sshd.mkdir(name)
    return name


def settings(sshd, known_hosts=None, **overrides) -> SftpSettings:
    values = dict(host=sshd.host, port=sshd.port, user=sshd.user, password=sshd.password,
                  known_hosts=str(known_hosts) if known_hosts else None, connect_timeout=20, retry_backoff=0.2)
    values.update(overrides)
    return SftpSettings(**values)


def test_password_login_round_trip_with_atomic_upload_and_moves(sshd, known_hosts, folder, tmp_path):
    payload = os.urandom(3_000_000) + b"end"
    source = tmp_path / "render.png"
    source.write_bytes(payload)
    with SftpClient(settings(sshd, known_hosts)) as client:
        client.makedirs(f"{folder}/out/renders")
        client.makedirs(f"{folder}/out/renders")
        assert client.upload_atomic(source, f"{folder}/out/renders/render.png") == f"{folder}/out/renders/render.png"
        assert (sshd.root / folder / "out/renders/render.png").read_bytes() == payload
        # Replacing an existing file goes through posix-rename: one step, no window without the file.
        client.write_bytes_atomic(b"v2", f"{folder}/out/renders/render.png")
        assert client.read_bytes(f"{folder}/out/renders/render.png") == b"v2"
        client.upload_atomic(source, f"{folder}/out/renders/render.png")

        [entry] = client.list_dir(f"{folder}/out/renders")
        assert (entry.name, entry.size, entry.is_dir) == ("render.png", len(payload), False)
        # The server's time (its disk's mtime), whatever the client's clock says.
        mtime = datetime.fromtimestamp((sshd.root / folder / "out/renders/render.png").stat().st_mtime, UTC)
        assert abs(entry.modified - mtime) < timedelta(seconds=2)
        assert client.stat(f"{folder}/out").is_dir and client.stat(f"{folder}/nothing") is None

        target = client.download(f"{folder}/out/renders/render.png", tmp_path / "back" / "render.png")
        assert target.read_bytes() == payload
        assert sorted(p.name for p in target.parent.iterdir()) == ["render.png"]

        client.makedirs(f"{folder}/in")
        client.write_bytes_atomic(b"x", f"{folder}/in/a.csv")
        assert client.move(f"{folder}/in/a.csv", f"{folder}/archive") == f"{folder}/archive/a.csv"
        client.write_bytes_atomic(b"y", f"{folder}/in/a.csv")
        assert client.move(f"{folder}/in/a.csv", f"{folder}/archive") == f"{folder}/archive/a.1.csv"
        assert client.read_bytes(f"{folder}/archive/a.csv") == b"x"
        client.rename(f"{folder}/archive/a.1.csv", f"{folder}/quarantine-a.csv")
        client.delete(f"{folder}/quarantine-a.csv")
        with pytest.raises(FtpNotFound):
            client.delete(f"{folder}/quarantine-a.csv")
    assert not [p for p in (sshd.root / folder).rglob("*") if p.name.endswith(".part")]


def test_key_login_with_host_key_extra(sshd, folder):
    key_line = f"{sshd.host_key_type} {sshd.host_key_base64}"
    with SftpClient(settings(sshd, password="", key_file=str(sshd.user_key), host_key=key_line)) as client:
        client.write_bytes_atomic(b"k", f"{folder}/k.txt")
        assert [e.name for e in client.list_dir(folder)] == ["k.txt"]


def test_unknown_host_key_is_refused_by_default(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with SftpClient(settings(sshd, empty)) as client, pytest.raises(FtpPermanentError) as refused:
        client.list_dir(".")
    assert "unknown host key" in str(refused.value) and "ssh-ed25519" in str(refused.value)
    assert sshd.password not in str(refused.value)


def test_unknown_host_key_may_be_accepted_explicitly_with_a_warning(sshd, tmp_path, caplog):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with caplog.at_level(logging.WARNING), SftpClient(settings(sshd, empty, accept_unknown_host_key=True)) as c:
        c.list_dir(".")
    assert any("Accepting the unknown host key" in r.getMessage() for r in caplog.records)


def test_changed_host_key_is_refused_even_when_unknown_keys_are_accepted(sshd, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(tmp_path / "k")], check=True)
    wrong = (tmp_path / "k.pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[{sshd.host}]:{sshd.port} {wrong[0]} {wrong[1]}\n")
    with SftpClient(settings(sshd, known, accept_unknown_host_key=True, retries=0)) as client, \
            pytest.raises(FtpPermanentError) as refused:
        client.list_dir(".")
    assert "host key CHANGED" in str(refused.value)


def test_wrong_password_is_a_refused_login_without_the_password(sshd, known_hosts):
    wrong = "not-the-password-7731"
    with SftpClient(settings(sshd, known_hosts, password=wrong, retries=0)) as client, \
            pytest.raises(FtpPermanentError) as refused:
        client.list_dir(".")
    assert "login as" in str(refused.value) and wrong not in str(refused.value)


def test_missing_folder_is_not_found(sshd, known_hosts, folder):
    with SftpClient(settings(sshd, known_hosts)) as client:
        with pytest.raises(FtpNotFound):
            client.list_dir(f"{folder}/misspelled")
        assert client.list_dir(folder) == []


def test_an_undecodable_name_is_skipped_with_a_warning(sshd, known_hosts, folder, caplog):
    sshd.seed(f"{folder}/ok.csv", b"1")
    raw = os.fsencode(str(sshd.root / folder)) + b"/Preisliste_M\xe4rz.csv"
    with open(raw, "wb") as handle:
        handle.write(b"cp1252")
    with caplog.at_level(logging.WARNING), SftpClient(settings(sshd, known_hosts)) as client:
        assert [e.name for e in client.list_dir(folder)] == ["ok.csv"]
    assert any(folder in r.getMessage() and "'encoding' extra" in r.getMessage() for r in caplog.records)
    with SftpClient(settings(sshd, known_hosts, encoding="cp1252")) as client:
        assert [e.name for e in client.list_dir(folder)] == ["Preisliste_März.csv", "ok.csv"]
        assert client.read_bytes(f"{folder}/Preisliste_März.csv") == b"cp1252"


def test_completeness_by_size_and_mtime_and_by_markers(sshd, known_hosts, folder):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    sshd.seed(f"{folder}/growing.csv", b"a")
    sshd.seed(f"{folder}/stable.csv", b"b")
    stability = CompletenessPolicy(patterns=["*.csv"], stable_seconds=10)
    with SftpClient(settings(sshd, known_hosts)) as client:
        _, snap = complete_files(None, client.list_dir(folder), stability, t0)
        with open(sshd.root / folder / "growing.csv", "ab") as handle:
            handle.write(b"more")
        done, snap = complete_files(snap, client.list_dir(folder), stability, t0 + timedelta(seconds=11))
        assert [e.name for e in done] == ["stable.csv"]
        sshd.seed(f"{folder}/growing.csv.done")
        markers = CompletenessPolicy(patterns=["*.csv"], marker_suffixes=(".done",))
        done, _ = complete_files(None, client.list_dir(folder), markers, t0)
        assert [e.name for e in done] == ["growing.csv"]


def test_download_resumes_after_the_connection_drops(sshd, known_hosts, folder, tmp_path, caplog):
    payload = os.urandom(8_000_000)
    sshd.seed(f"{folder}/big.bin", payload)
    client = SftpClient(settings(sshd, known_hosts))
    dropped = threading.Event()

    def progress(done: int, total: int | None) -> None:
        if done >= 2_000_000 and not dropped.is_set():
            dropped.set()
            client._ssh.get_transport().close()  # the link goes down mid-transfer

    with caplog.at_level(logging.INFO), client:
        target = client.download(f"{folder}/big.bin", tmp_path / "big.bin", progress=progress)
    assert dropped.is_set()
    assert any(r.getMessage().startswith(f"Resuming download of {folder}/big.bin at byte ") for r in caplog.records)
    assert target.read_bytes() == payload


@pytest.mark.parametrize("size", [0, 1, 32 * 1024, 5 * 1024 * 1024 + 12_345])
def test_pipelined_transfers_are_byte_exact_with_progress_to_the_full_size(sshd, known_hosts, folder, tmp_path,
                                                                          size):
    payload = os.urandom(size)
    source = tmp_path / "source.bin"
    source.write_bytes(payload)
    sent: list[int] = []
    received: list[int] = []
    with SftpClient(settings(sshd, known_hosts)) as client:
        client.upload_atomic(source, f"{folder}/up.bin", progress=lambda done, total: sent.append(done))
        assert (sshd.root / folder / "up.bin").read_bytes() == payload
        target = client.download(f"{folder}/up.bin", tmp_path / "down.bin",
                                 progress=lambda done, total: received.append(done))
    assert target.read_bytes() == payload
    for seen in (sent, received):
        assert seen == sorted(seen)
        if size:
            assert seen[-1] == size
    assert [entry.name for entry in sorted((sshd.root / folder).iterdir())] == ["up.bin"]  # no temp left


def test_reading_to_the_end_without_a_known_size_and_a_file_shorter_than_expected(sshd, known_hosts, folder):
    from threekit_pipeline.ftp.sftp import REQUEST_SIZE, _pipelined_read

    payload = os.urandom(3 * REQUEST_SIZE + 7)
    sshd.seed(f"{folder}/a.bin", payload)
    with SftpClient(settings(sshd, known_hosts)) as client:
        sftp = client._session()
        for size, expected in ((None, payload), (len(payload) + 10 * REQUEST_SIZE, payload),
                               (2 * REQUEST_SIZE, payload[:2 * REQUEST_SIZE])):
            chunks: list[bytes] = []
            with sftp.open(f"{folder}/a.bin", "rb") as handle:
                reached = _pipelined_read(sftp, handle.handle, 0, size, chunks.append)
            assert b"".join(chunks) == expected
            assert reached == len(expected)
        with sftp.open(f"{folder}/a.bin", "rb") as handle:  # from an offset, as when resuming
            chunks = []
            assert _pipelined_read(sftp, handle.handle, 100, len(payload), chunks.append) == len(payload)
        assert b"".join(chunks) == payload[100:]


def test_aes_gcm_is_negotiated_and_the_host_key_is_still_checked(sshd, known_hosts, tmp_path):
    with SftpClient(settings(sshd, known_hosts)) as client:
        transport = client._session().get_channel().get_transport()
        assert transport.local_cipher == transport.remote_cipher == "aes128-gcm@openssh.com"
    other = tmp_path / "other_known_hosts"
    other.write_text(f"[{sshd.host}]:{sshd.port} ssh-ed25519 "
                     "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    with pytest.raises(FtpPermanentError, match="host key CHANGED"), SftpClient(settings(sshd, other)) as client:
        client.list_dir(".")
