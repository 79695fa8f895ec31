"""FtpClient against real ftp-sandbox servers: FTP and FTPS, passive and active, with and without MLSD."""

from __future__ import annotations

import ftplib
import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from threekit_pipeline.ftp.client import FtpClient
from threekit_pipeline.ftp.errors import FtpError, FtpNotFound, FtpPermanentError
from threekit_pipeline.sandbox.ftp_process import FtpSandboxProcess
from threekit_pipeline.sandbox.ftp_server import generate_self_signed_cert

USER = "erp"
PASSWORD = "s3cret-Pa55-ftp-7d41"


@pytest.fixture
def tls_sandbox(tmp_path):
    server = FtpSandboxProcess(root=tmp_path / "ftproot", user=USER, password=PASSWORD, tls=True,
                               log_file=tmp_path / "ftp.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def plain_sandbox(tmp_path):
    server = FtpSandboxProcess(root=tmp_path / "ftproot", user=USER, password=PASSWORD,
                               log_file=tmp_path / "ftp.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def temp_names(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.name.endswith(".part"))


@pytest.mark.parametrize("tls", [False, True], ids=["ftp", "ftps"])
@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_round_trip(tmp_path, tls, passive):
    payload = os.urandom(700_000) + b"end"
    source = tmp_path / "local" / "products.csv"
    source.parent.mkdir()
    source.write_bytes(payload)
    with FtpSandboxProcess(root=tmp_path / "root", user=USER, password=PASSWORD, tls=tls) as server:
        with FtpClient(server.settings(passive=passive)) as client:
            client.makedirs("/inbound/erp")
            client.makedirs("/inbound/erp")  # idempotent
            assert client.upload_atomic(source, "/inbound/erp/products.csv") == "/inbound/erp/products.csv"
            assert (server.root / "inbound/erp/products.csv").read_bytes() == payload

            [listed] = client.list_dir("/inbound/erp")
            assert (listed.path, listed.name, listed.size, listed.is_dir) == (
                "/inbound/erp/products.csv", "products.csv", len(payload), False)
            # The server's clock (the file's mtime on its disk), at MDTM/MLSD's 1 s resolution.
            mtime = datetime.fromtimestamp((server.root / "inbound/erp/products.csv").stat().st_mtime, UTC)
            assert abs(listed.modified - mtime) < timedelta(seconds=2)
            assert client.stat("/inbound/erp").is_dir
            assert client.stat("/inbound/erp/missing.csv") is None
            assert not client.exists("/inbound/erp/missing.csv")

            target = client.download("/inbound/erp/products.csv", tmp_path / "staging" / "products.csv")
            assert target.read_bytes() == payload
            assert sorted(p.name for p in target.parent.iterdir()) == ["products.csv"]

            client.rename("/inbound/erp/products.csv", "/inbound/erp/products.old")
            assert client.exists("/inbound/erp/products.old") and not client.exists("/inbound/erp/products.csv")
            client.write_bytes_atomic(b"done\n", "/inbound/erp/products.old.done")
            assert client.read_bytes("/inbound/erp/products.old.done") == b"done\n"
            client.delete("/inbound/erp/products.old")
            with pytest.raises(FtpNotFound):
                client.delete("/inbound/erp/products.old")
            assert [f.name for f in client.list_dir("/inbound/erp")] == ["products.old.done"]
        assert temp_names(server.root) == []


def test_listing_without_mlsd_still_has_sizes_and_times(tmp_path):
    with FtpSandboxProcess(root=tmp_path / "root", user=USER, password=PASSWORD, no_mlsd=True) as server:
        (server.root / "in" / "sub").mkdir(parents=True)
        (server.root / "in" / "empty").mkdir()
        (server.root / "in" / "a.csv").write_bytes(b"x" * 1234)
        (server.root / "in" / "b c.csv").write_bytes(b"")
        stamp = datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC).timestamp()
        os.utime(server.root / "in" / "a.csv", (stamp, stamp))
        with FtpClient(server.settings()) as client:
            assert "MLST" not in client.features and "SIZE" in client.features
            listing = {f.name: f for f in client.list_dir("/in")}
            assert sorted(listing) == ["a.csv", "b c.csv", "empty", "sub"]
            assert listing["a.csv"].size == 1234
            # One LIST gives sizes and times together; an old file's LIST time has day precision...
            assert listing["a.csv"].modified == datetime(2024, 2, 3, tzinfo=UTC)
            assert listing["b c.csv"].size == 0 and not listing["b c.csv"].is_dir
            assert listing["sub"].is_dir and listing["empty"].is_dir
            assert client.list_dir("/in/empty") == []
            with pytest.raises(FtpNotFound):
                client.list_dir("/in/missing")
            assert client.stat("/in/a.csv").size == 1234
            # ...while stat() asks MDTM, which is exact.
            assert client.stat("/in/a.csv").modified == datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
            assert client.stat("/in/sub").is_dir
            assert client.stat("/in/nothing") is None
            # The fallback must leave the session in binary mode: uploads verify sizes with SIZE.
            client.write_bytes_atomic(b"12345", "/in/new.csv")
            assert client.stat("/in/new.csv").size == 5


@pytest.mark.parametrize("no_mlsd", [False, True], ids=["mlsd", "nlst"])
def test_non_ascii_and_spaced_names(tmp_path, no_mlsd):
    with FtpSandboxProcess(root=tmp_path / "root", user=USER, password=PASSWORD, no_mlsd=no_mlsd) as server:
        with FtpClient(server.settings()) as client:
            client.makedirs("/entrée/prix été")
            client.write_bytes_atomic("ü".encode(), "/entrée/prix été/tarifs 2024 é.csv")
            [entry] = client.list_dir("/entrée/prix été")
            assert (entry.name, entry.size) == ("tarifs 2024 é.csv", 2)
            assert client.read_bytes(entry.path).decode() == "ü"
        assert (server.root / "entrée" / "prix été" / "tarifs 2024 é.csv").exists()


def test_mlsd_listing_reports_times_in_utc(plain_sandbox):
    (plain_sandbox.root / "a.csv").write_bytes(b"abc")
    stamp = datetime(2023, 12, 31, 23, 59, 58, tzinfo=UTC).timestamp()
    os.utime(plain_sandbox.root / "a.csv", (stamp, stamp))
    with FtpClient(plain_sandbox.settings()) as client:
        assert "MLST" in client.features
        [entry] = client.list_dir("/")
        assert entry.modified == datetime(2023, 12, 31, 23, 59, 58, tzinfo=UTC)
        assert client.stat("/a.csv") == entry


def test_ftps_verifies_against_the_generated_certificate(tls_sandbox):
    assert tls_sandbox.cafile is not None and tls_sandbox.cafile.exists()
    with FtpClient(tls_sandbox.settings()) as client:
        client.write_bytes_atomic(b"secure", "/x.txt")
        assert client.read_bytes("/x.txt") == b"secure"
    log_text = (tls_sandbox.log_file).read_text()
    assert "FTPS" in log_text


def test_ftps_with_the_wrong_ca_fails_clearly_without_retrying(tls_sandbox, tmp_path, caplog):
    other_cert, other_key = tmp_path / "other.pem", tmp_path / "other.key"
    generate_self_signed_cert(other_cert, other_key)
    caplog.set_level(logging.DEBUG)
    for settings in (tls_sandbox.settings(ca_file=str(other_cert)), tls_sandbox.settings(ca_file=None)):
        with FtpClient(settings) as client, pytest.raises(FtpPermanentError) as info:
            client.list_dir("/")
        message = str(info.value)
        assert "certificate verification failed" in message
        assert f"{tls_sandbox.host}:{tls_sandbox.port}" in message
        assert "ca_file" in message
    assert "retrying" not in caplog.text


def test_ftps_checks_the_host_name(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    generate_self_signed_cert(cert, key, names=("ftp.example.invalid",))
    with FtpSandboxProcess(root=tmp_path / "root", user=USER, password=PASSWORD, tls=True, certfile=cert,
                           keyfile=key) as server:
        with FtpClient(server.settings(ca_file=str(cert))) as client, pytest.raises(FtpPermanentError) as info:
            client.stat("/")
        assert "certificate verification failed" in str(info.value)
        assert "mismatch" in str(info.value).lower() or "match" in str(info.value).lower()


def test_ftps_without_verification_works_and_warns(tls_sandbox, caplog):
    caplog.set_level(logging.WARNING, logger="threekit_pipeline.ftp.client")
    with FtpClient(tls_sandbox.settings(ca_file=None, verify=False)) as client:
        client.write_bytes_atomic(b"x", "/y.txt")
    assert "verification is DISABLED" in caplog.text


def test_plain_ftp_is_refused_by_a_tls_only_server(tls_sandbox):
    with FtpClient(tls_sandbox.settings(tls=False, ca_file=None)) as client, pytest.raises(FtpPermanentError) as info:
        client.list_dir("/")
    assert "login" in str(info.value)


def test_atomic_upload_is_never_visible_half_written(plain_sandbox, tmp_path):
    payload = os.urandom(3 * 1024 * 1024)
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    observed: list[tuple[str, int | None]] = []
    finished = threading.Event()
    errors: list[BaseException] = []

    def slow(done: int, total: int | None) -> None:
        time.sleep(0.05)

    def upload() -> None:
        try:
            with FtpClient(plain_sandbox.settings()) as writer:
                writer.upload_atomic(source, "/out/big.bin", progress=slow)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            finished.set()

    with FtpClient(plain_sandbox.settings()) as reader:
        reader.makedirs("/out")
        thread = threading.Thread(target=upload)
        thread.start()
        while not finished.is_set():
            observed.extend((f.name, f.size) for f in reader.list_dir("/out"))
            time.sleep(0.02)
        thread.join()
        final = reader.list_dir("/out")

    assert errors == []
    temp_sightings = [name for name, _ in observed if name.startswith(".big.bin.") and name.endswith(".part")]
    assert temp_sightings, "the reader never saw the upload in progress; the test proved nothing"
    assert all(size == len(payload) for name, size in observed if name == "big.bin")
    assert [(f.name, f.size) for f in final] == [("big.bin", len(payload))]
    assert (plain_sandbox.root / "out/big.bin").read_bytes() == payload


def test_upload_replaces_an_existing_file(plain_sandbox, tmp_path):
    source = tmp_path / "a.csv"
    source.write_bytes(b"new content")
    (plain_sandbox.root / "a.csv").write_bytes(b"old")
    with FtpClient(plain_sandbox.settings()) as client:
        client.upload_atomic(source, "/a.csv")
    assert (plain_sandbox.root / "a.csv").read_bytes() == b"new content"


def test_failed_upload_leaves_the_final_name_untouched_and_no_temp_file(plain_sandbox, tmp_path):
    source = tmp_path / "a.csv"
    source.write_bytes(os.urandom(2 * 1024 * 1024))
    (plain_sandbox.root / "a.csv").write_bytes(b"previous version")

    def explode(done: int, total: int | None) -> None:
        if done > 512 * 1024:
            raise RuntimeError("local disk went away")

    with FtpClient(plain_sandbox.settings()) as client:
        with pytest.raises(RuntimeError, match="local disk went away"):
            client.upload_atomic(source, "/a.csv", progress=explode)
        # The client is still usable afterwards.
        assert [f.name for f in client.list_dir("/")] == ["a.csv"]
    assert (plain_sandbox.root / "a.csv").read_bytes() == b"previous version"
    assert temp_names(plain_sandbox.root) == []


def test_move_never_overwrites(plain_sandbox):
    root = plain_sandbox.root
    (root / "in").mkdir()
    (root / "archive/2024/05/01").mkdir(parents=True)
    (root / "archive/2024/05/01/prices.csv").write_bytes(b"first")
    (root / "archive/2024/05/01/prices.1.csv").write_bytes(b"second")
    (root / "in/prices.csv").write_bytes(b"third")
    (root / "in/README").write_bytes(b"no extension")
    with FtpClient(plain_sandbox.settings()) as client:
        assert client.move("/in/prices.csv", "/archive/2024/05/01") == "/archive/2024/05/01/prices.2.csv"
        assert client.move("/in/README", "/archive/new") == "/archive/new/README"
        (root / "in/README").write_bytes(b"again")
        assert client.move("/in/README", "/archive/new") == "/archive/new/README.1"
        with pytest.raises(FtpNotFound, match="source does not exist"):
            client.move("/in/prices.csv", "/archive/2024/05/01")
        (root / "in/prices.csv").write_bytes(b"fourth")
        assert client.move("/in/prices.csv", "/archive/2024/05/01", overwrite=True) == \
            "/archive/2024/05/01/prices.csv"
    day = root / "archive/2024/05/01"
    assert {p.name: p.read_bytes() for p in day.iterdir()} == {
        "prices.csv": b"fourth", "prices.1.csv": b"second", "prices.2.csv": b"third"}
    assert (root / "archive/new/README").read_bytes() == b"no extension"
    assert list((root / "in").iterdir()) == []


def test_missing_file_is_a_clear_permanent_error(plain_sandbox, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    target = tmp_path / "staging" / "nope.csv"
    with FtpClient(plain_sandbox.settings()) as client:
        with pytest.raises(FtpNotFound) as info:
            client.download("/inbound/nope.csv", target)
        with pytest.raises(FileNotFoundError):
            client.read_bytes("/inbound/nope.csv")
    message = str(info.value)
    assert "download" in message and "/inbound/nope.csv" in message
    assert f"{plain_sandbox.host}:{plain_sandbox.port}" in message
    assert info.value.code == 550
    assert "retrying" not in caplog.text
    assert not target.exists() and not target.with_name("nope.csv.part").exists()


def test_read_bytes_refuses_large_files(plain_sandbox):
    (plain_sandbox.root / "big.bin").write_bytes(b"x" * 5000)
    with FtpClient(plain_sandbox.settings()) as client:
        with pytest.raises(FtpPermanentError, match="over the 1000-byte limit"):
            client.read_bytes("/big.bin", max_bytes=1000)
        assert client.read_bytes("/big.bin", max_bytes=5000) == b"x" * 5000


def test_password_never_appears_in_logs_or_errors(plain_sandbox, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    source = tmp_path / "a.csv"
    source.write_bytes(b"a;b\n")
    good = plain_sandbox.settings()
    with FtpClient(good) as client:
        client.upload_atomic(source, "/a.csv")
        client.download("/a.csv", tmp_path / "back.csv")
        texts = [repr(client), repr(good)]

    wrong = plain_sandbox.settings(password="wrong-" + PASSWORD, retries=1)
    with FtpClient(wrong) as client, pytest.raises(FtpError) as info:
        client.list_dir("/")
    texts += [str(info.value), repr(info.value), repr(client), repr(wrong), caplog.text]
    assert "login" in str(info.value) and USER in str(info.value)
    assert info.value.code == 530

    server_log = plain_sandbox.log_file.read_text()
    assert "transfer user=erp" in server_log
    for text in [*texts, server_log]:
        assert PASSWORD not in text


def test_settings_validation():
    from threekit_pipeline.ftp.models import FtpSettings

    with pytest.raises(ValueError):
        FtpSettings(host="")
    with pytest.raises(ValueError):
        FtpSettings(host="127.0.0.1", port=0)
    with pytest.raises(ValueError):
        FtpSettings(host="127.0.0.1", retries=-1)
    assert "password" not in repr(FtpSettings(host="127.0.0.1", password="hidden-value"))


def test_login_probe_with_ftplib_sees_the_same_files(plain_sandbox):
    """Files written by the client are ordinary files for any other FTP client."""
    with FtpClient(plain_sandbox.settings()) as client:
        client.makedirs("/shared")
        client.write_bytes_atomic(b"hello", "/shared/hello.txt")
    other = ftplib.FTP(timeout=10)
    other.connect(plain_sandbox.host, plain_sandbox.port)
    other.login(USER, PASSWORD)
    try:
        assert other.nlst("/shared") == ["hello.txt"]
    finally:
        other.quit()
