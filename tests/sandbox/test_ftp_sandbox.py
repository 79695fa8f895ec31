"""The ftp-sandbox server and its launcher, checked with the standard library's ftplib."""

from __future__ import annotations

import ftplib
import io
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from threekit_pipeline.sandbox.ftp_process import FtpSandboxError, FtpSandboxProcess

USER = "partner"
PASSWORD = "sandbox-pw-5c2e91"


def login(server: FtpSandboxProcess, tls: bool = False, cafile: Path | None = None) -> ftplib.FTP:
    if tls:
        client: ftplib.FTP = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=str(cafile)), timeout=60)
    else:
        client = ftplib.FTP(timeout=60)
    client.connect(server.host, server.port)
    client.login(server.user, server.password)
    return client


def wait_for_exit(server: FtpSandboxProcess, timeout: float = 60) -> int | None:
    deadline = time.monotonic() + timeout
    while server.returncode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.returncode


def test_fixture_server_accepts_the_configured_user(ftp_sandbox):
    client = login(ftp_sandbox)
    try:
        client.storbinary("STOR hello.txt", io.BytesIO(b"hi"))
        assert (ftp_sandbox.root / "hello.txt").read_bytes() == b"hi"
        client.mkd("sub")
        client.rename("hello.txt", "sub/hello.txt")
        assert client.nlst("sub") == ["hello.txt"]
        assert any("MLST" in line for line in client.sendcmd("FEAT").splitlines())
    finally:
        client.quit()
    with pytest.raises(ftplib.error_perm, match="530"):
        _bad_login(ftp_sandbox)


def _bad_login(server: FtpSandboxProcess) -> None:
    client = ftplib.FTP(timeout=60)
    client.connect(server.host, server.port)
    try:
        client.login(server.user, "not-the-password")
    finally:
        client.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_clean_shutdown_on_signal(tmp_path, sig):
    server = FtpSandboxProcess(root=tmp_path / "root", user=USER, password=PASSWORD, log_file=tmp_path / "ftp.log")
    server.start()
    try:
        client = login(server)  # an open session must not keep the server alive
        os.kill(server.pid, sig)
        assert wait_for_exit(server) == 0
        client.close()
    finally:
        server.stop()
    text = (tmp_path / "ftp.log").read_text()
    assert f"received {sig.name}, shutting down" in text
    assert "ftp-sandbox stopped" in text


def test_stop_is_idempotent_and_restart_keeps_port_and_files(tmp_path):
    server = FtpSandboxProcess(root=tmp_path / "root", user=USER, password=PASSWORD)
    server.start()
    try:
        port = server.port
        (server.root / "kept.csv").write_text("1")
        server.restart()
        assert server.port == port and server.running
        client = login(server)
        assert client.nlst() == ["kept.csv"]
        client.quit()
    finally:
        server.stop()
        server.stop()
    assert not server.running and server.returncode == 0


def test_transfers_are_logged_without_the_password(tmp_path):
    with FtpSandboxProcess(root=tmp_path / "root", user=USER, password=PASSWORD,
                           log_file=tmp_path / "ftp.log") as server:
        client = login(server)
        client.storbinary("STOR report.csv", io.BytesIO(b"x" * 1000))
        client.retrbinary("RETR report.csv", lambda block: None)
        client.quit()
    text = (tmp_path / "ftp.log").read_text()
    assert f"transfer user={USER} file={server.root.resolve()}/report.csv bytes=1000 direction=upload" in text
    assert "direction=download command=RETR completed=yes" in text
    assert PASSWORD not in text


def test_no_mlsd_hides_mlsd_and_mlst(tmp_path):
    with FtpSandboxProcess(root=tmp_path / "root", user=USER, password=PASSWORD, no_mlsd=True) as server:
        (server.root / "a.csv").write_bytes(b"abc")
        client = login(server)
        try:
            features = client.sendcmd("FEAT")
            assert "MLST" not in features and "SIZE" in features and "MDTM" in features
            with pytest.raises(ftplib.error_perm, match="500"):
                list(client.mlsd("/"))
            with pytest.raises(ftplib.error_perm, match="500"):
                client.sendcmd("MLST a.csv")
            client.voidcmd("TYPE I")
            assert client.size("a.csv") == 3
        finally:
            client.quit()


def test_tls_requires_encryption_and_serves_a_verifiable_certificate(tmp_path):
    with FtpSandboxProcess(root=tmp_path / "root", user=USER, password=PASSWORD, tls=True) as server:
        assert server.cafile == tmp_path / "ftp-sandbox-cert.pem"
        assert oct((tmp_path / "ftp-sandbox-key.pem").stat().st_mode & 0o777) == "0o600"
        with pytest.raises(ftplib.error_perm, match="SSL/TLS required"):
            login(server)

        secure = login(server, tls=True, cafile=server.cafile)  # verifies chain and host name 127.0.0.1
        try:
            with pytest.raises(ftplib.error_perm, match="SSL/TLS required"):
                secure.storbinary("STOR clear.txt", io.BytesIO(b"x"))  # PROT C: data channel in clear
            secure.prot_p()
            secure.storbinary("STOR secret.txt", io.BytesIO(b"x"))
            assert (server.root / "secret.txt").read_bytes() == b"x"
        finally:
            secure.quit()

        first_cert = server.cafile.read_bytes()
        server.restart()
        assert server.cafile.read_bytes() == first_cert, "a restart must keep the certificate clients trust"


def test_cli_prints_the_listening_address_and_exits_zero(tmp_path):
    script = Path(sys.executable).with_name("ftp-sandbox")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "threekit_pipeline.sandbox.ftp_server"]
    process = subprocess.Popen(
        [*command, "--port", "0", "--root", str(tmp_path / "r"), "--user", USER, "--passive-ports", "30000-30100"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, FTP_SANDBOX_PASSWORD=PASSWORD),
    )
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("ftp-sandbox listening on ftp://127.0.0.1:")
        assert int(line.rsplit(":", 1)[1]) > 0
        assert (tmp_path / "r").is_dir()
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0
    assert PASSWORD not in stderr


def test_cli_refuses_to_start_without_a_password(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FTP_SANDBOX_PASSWORD"}
    result = subprocess.run(
        [sys.executable, "-m", "threekit_pipeline.sandbox.ftp_server", "--root", str(tmp_path), "--user", "u"],
        capture_output=True, text=True, env=env, timeout=30,
    )
    assert result.returncode == 2
    assert "password is required" in result.stderr


def test_launcher_reports_a_port_already_in_use(tmp_path):
    with FtpSandboxProcess(root=tmp_path / "one", user=USER, password=PASSWORD) as first:
        second = FtpSandboxProcess(root=tmp_path / "two", user=USER, password=PASSWORD, port=first.port)
        with pytest.raises(FtpSandboxError, match="exited with code"):
            second.start(timeout=60)
        assert not second.running
