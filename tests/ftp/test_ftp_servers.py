"""The FTP layer against real servers: pyftpdlib (with and without MLSD), vsftpd (no MLSD; FTPS
requires TLS session reuse) and ProFTPD (MLSD), each plain and FTPS.

vsftpd and ProFTPD are Debian's daemons, installed (or, for ProFTPD, unpacked) by the
set-up when absent and started on free loopback ports with configurations in a
temporary directory (see threekit_pipeline.sandbox.real_servers).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from threekit_pipeline.ftp.client import FtpClient
from threekit_pipeline.ftp.completeness import CompletenessPolicy, complete_files
from threekit_pipeline.ftp.errors import FtpNotFound, FtpPermanentError
from threekit_pipeline.sandbox import real_servers
from threekit_pipeline.sandbox.ftp_process import FtpSandboxProcess

USER = "erp"
PASSWORD = "s3cret-Pa55-servers-41c9"

needs_root = pytest.mark.skipif(not real_servers.available(), reason="real daemons need root and apt-get")


class _Pyftpdlib:
    """FtpSandboxProcess with the seed()/mkdir() helpers of the real daemons."""

    name = "pyftpdlib"

    def __init__(self, root: Path, tls: bool, no_mlsd: bool) -> None:
        self.process = FtpSandboxProcess(root=root, user=USER, password=PASSWORD, tls=tls, no_mlsd=no_mlsd)
        self.root = self.process.root
        self.password = PASSWORD
        self.raw_names = False  # pyftpdlib replaces undecodable bytes with '?' itself

    def start(self):
        self.process.start()
        return self

    def stop(self) -> None:
        self.process.stop()

    def settings(self, **overrides):
        return self.process.settings(**overrides)

    def mkdir(self, relative: str) -> Path:
        path = self.root / relative
        path.mkdir(parents=True, exist_ok=True)
        return path

    def seed(self, relative: str, data: bytes = b"", *, mtime: float | None = None) -> Path:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if mtime is not None:
            os.utime(target, (mtime, mtime))
        return target


SERVERS = ["pyftpdlib", "pyftpdlib-nomlsd", "vsftpd", "proftpd"]


def _make(kind: str, tmp_path: Path, tls: bool):
    if kind == "pyftpdlib":
        return _Pyftpdlib(tmp_path / "root", tls, no_mlsd=False)
    if kind == "pyftpdlib-nomlsd":
        return _Pyftpdlib(tmp_path / "root", tls, no_mlsd=True)
    if not real_servers.available():
        pytest.skip("real daemons need root and apt-get")
    server = real_servers.VsftpdServer(tls=tls) if kind == "vsftpd" else real_servers.ProftpdServer(tls=tls)
    server.raw_names = True
    return server


@pytest.fixture(params=[(kind, tls) for kind in SERVERS for tls in (False, True)],
                ids=[f"{kind}-{'ftps' if tls else 'ftp'}" for kind in SERVERS for tls in (False, True)])
def server(request, tmp_path):
    kind, tls = request.param
    instance = _make(kind, tmp_path, tls)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


# Servers without MLSD answer LIST, whose recent-file times are to the minute.
LIST_RESOLUTION = timedelta(seconds=61)


def _disk_mtime(path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def test_round_trip(server, tmp_path):
    payload = os.urandom(300_000) + b"end"
    source = tmp_path / "products.csv"
    source.write_bytes(payload)
    with FtpClient(server.settings()) as client:
        client.makedirs("inbound/erp")
        client.makedirs("inbound/erp")  # idempotent
        client.upload_atomic(source, "inbound/erp/products.csv")
        assert (server.root / "inbound/erp/products.csv").read_bytes() == payload
        [listed] = client.list_dir("inbound/erp")
        assert (listed.path, listed.name, listed.size, listed.is_dir) == (
            "inbound/erp/products.csv", "products.csv", len(payload), False)
        assert abs(listed.modified - _disk_mtime(server.root / "inbound/erp/products.csv")) < LIST_RESOLUTION
        assert client.stat("inbound/erp").is_dir
        assert client.stat("inbound/erp/missing.csv") is None

        target = client.download("inbound/erp/products.csv", tmp_path / "staging" / "products.csv")
        assert target.read_bytes() == payload

        # Upload over an existing file replaces it atomically.
        client.write_bytes_atomic(b"v2", "inbound/erp/products.csv")
        assert client.read_bytes("inbound/erp/products.csv") == b"v2"

        # Moves never overwrite: the second file with the same name gets a counter.
        client.write_bytes_atomic(b"again", "inbound/erp/again.csv")
        assert client.move("inbound/erp/products.csv", "archive/2026") == "archive/2026/products.csv"
        client.write_bytes_atomic(b"v3", "inbound/erp/products.csv")
        assert client.move("inbound/erp/products.csv", "archive/2026") == "archive/2026/products.1.csv"
        assert sorted(e.name for e in client.list_dir("archive/2026")) == ["products.1.csv", "products.csv"]

        client.rename("inbound/erp/again.csv", "inbound/erp/again.old")
        client.delete("inbound/erp/again.old")
        with pytest.raises(FtpNotFound):
            client.delete("inbound/erp/again.old")
        assert client.list_dir("inbound/erp") == []
    assert not [p for p in server.root.rglob("*") if p.name.endswith(".part")]


def test_listing_has_sizes_and_times_for_every_file(server):
    for number in range(25):
        server.seed(f"in/file {number:02d}.csv", b"x" * number)
    server.mkdir("in/sub")
    with FtpClient(server.settings()) as client:
        listing = {entry.name: entry for entry in client.list_dir("in")}
    assert sorted(listing) == sorted([f"file {n:02d}.csv" for n in range(25)] + ["sub"])
    assert all(listing[f"file {n:02d}.csv"].size == n for n in range(25))
    assert listing["sub"].is_dir and listing["sub"].size is None
    # Times are the server's (its disk's mtimes), whatever the client's clock says.
    assert all(abs(entry.modified - _disk_mtime(server.root / "in" / entry.name)) < LIST_RESOLUTION
               for entry in listing.values() if not entry.is_dir)


def test_non_ascii_and_spaced_folder_and_file_names(server):
    with FtpClient(server.settings()) as client:
        client.makedirs("entrée/prix été")
        client.write_bytes_atomic("ü".encode(), "entrée/prix été/tarifs 2024 é.csv")
        [entry] = client.list_dir("entrée/prix été")
        assert (entry.name, entry.size) == ("tarifs 2024 é.csv", 2)
        assert client.read_bytes(entry.path) == "ü".encode()
    assert (server.root / "entrée" / "prix été" / "tarifs 2024 é.csv").read_bytes() == "ü".encode()


def test_missing_folder_is_not_found_and_empty_folder_is_empty(server):
    server.mkdir("in/empty")
    with FtpClient(server.settings()) as client:
        with pytest.raises(FtpNotFound) as missing:
            client.list_dir("in/misspelled")
        assert client.list_dir("in/empty") == []
    assert "in/misspelled" in str(missing.value)


def test_a_name_the_encoding_cannot_decode_is_skipped_with_a_warning(server, caplog):
    if not server.raw_names:
        pytest.skip("pyftpdlib replaces undecodable bytes in names itself")
    server.seed("in/ok.csv", b"sku\n")
    raw = os.fsencode(str(server.root / "in")) + b"/Preisliste_M\xe4rz.csv"  # cp1252, not UTF-8
    with open(raw, "wb") as handle:
        handle.write(b"cp1252")
    os.chown(raw, server.uid, server.gid)
    with caplog.at_level(logging.WARNING, logger="threekit_pipeline.ftp.client"):
        with FtpClient(server.settings()) as client:
            assert [entry.name for entry in client.list_dir("in")] == ["ok.csv"]
    [warning] = [r.getMessage() for r in caplog.records if "not valid utf-8" in r.getMessage()]
    assert "in on" in warning and "'encoding' extra" in warning and "Preisliste_M\\xe4rz.csv" in warning
    # With the right encoding the file is listed and can be downloaded.
    with FtpClient(server.settings(encoding="cp1252")) as client:
        names = [entry.name for entry in client.list_dir("in")]
        assert names == ["Preisliste_März.csv", "ok.csv"]
        assert client.read_bytes("in/Preisliste_März.csv") == b"cp1252"


def test_marker_files_complete_data_files(server):
    server.seed("in/prices.csv", b"sku;price\n")
    server.seed("in/items.csv", b"sku\n")
    server.seed("in/prices.csv.done")
    with FtpClient(server.settings()) as client:
        done, _ = complete_files(None, client.list_dir("in"),
                                 CompletenessPolicy(patterns=["*.csv"], marker_suffixes=(".done",)),
                                 datetime.now(UTC))
    assert [entry.name for entry in done] == ["prices.csv"]


@pytest.mark.parametrize("kind", SERVERS)
def test_a_server_refusing_auth_tls_says_so(kind, tmp_path):
    instance = _make(kind, tmp_path, tls=False)
    instance.start()
    try:
        with FtpClient(instance.settings(tls=True, retries=0)) as client, pytest.raises(FtpPermanentError) as refused:
            client.list_dir(".")
    finally:
        instance.stop()
    message = str(refused.value)
    assert "refused AUTH TLS" in message and "login as" not in message  # not a refused login
    assert instance.password not in message
