"""The provider-based hooks (ThreekitFTPHook, ThreekitFTPSHook, ThreekitSFTPHook) and the one
transfer interface (FtpTransferHook) over ftp, ftps and sftp connections, against real servers."""

from __future__ import annotations

import ftplib
import json
from unittest import mock

import pytest
from airflow.providers.ftp.hooks.ftp import FTPHook, FTPSHook
from airflow.providers.sftp.hooks.sftp import SFTPHook
from threekit_pipeline.airflow.hooks.ftp import FtpTransferHook, ThreekitFTPHook, ThreekitFTPSHook
from threekit_pipeline.airflow.hooks.sftp import ThreekitSFTPHook
from threekit_pipeline.ftp.client import FtpClient
from threekit_pipeline.ftp.sftp import SftpClient
from threekit_pipeline.sandbox import real_servers

pytestmark = pytest.mark.skipif(not real_servers.available(), reason="real daemons need root and apt-get")


def _conn(conn_type: str, server, **extra) -> str:
    return json.dumps({"conn_type": conn_type, "host": server.host, "port": server.port, "login": server.user,
                       "password": server.password, "extra": {"retries": 0, **extra}})


@pytest.fixture(scope="module")
def vsftpd_tls():
    server = real_servers.VsftpdServer(tls=True)
    with server:
        yield server


def test_hooks_are_the_providers_hooks():
    assert issubclass(ThreekitFTPHook, FTPHook) and issubclass(ThreekitFTPSHook, FTPSHook)
    assert issubclass(ThreekitSFTPHook, SFTPHook)
    for hook in (ThreekitFTPHook, ThreekitFTPSHook, ThreekitSFTPHook):
        assert "gap" in hook.__doc__  # each extension names the upstream gap it covers


def test_ftps_hook_lists_a_server_without_mlsd_that_requires_tls_session_reuse(vsftpd_tls, tmp_path):
    vsftpd_tls.seed("in/prices.csv", b"sku;price\n")
    extra = {"ca_file": str(vsftpd_tls.cafile), "connect_timeout": 7, "data_timeout": 9}
    with mock.patch.dict("os.environ", AIRFLOW_CONN_PARTNER=_conn("ftps", vsftpd_tls, **extra)):
        hook = ThreekitFTPSHook("partner")
        described = hook.describe_directory("in")  # upstream: MLSD only, which vsftpd lacks
        assert described["prices.csv"]["size"] == "10" and described["prices.csv"]["type"] == "file"
        conn = hook.get_conn()
        try:
            assert isinstance(conn, ftplib.FTP_TLS) and conn.timeout == 7 and conn.data_timeout == 9
            assert hook.list_directory("in") == ["in/prices.csv"]  # an upstream method on the extended session
        finally:
            hook.close_conn()
        hook.retrieve_file("in/prices.csv", str(tmp_path / "prices.csv"))
        assert (tmp_path / "prices.csv").read_bytes() == b"sku;price\n"
        assert hook.test_connection()[0] is True
        assert isinstance(hook.get_client(), FtpClient)


def test_transfer_hook_gives_the_right_client_for_each_connection_type(vsftpd_tls, sshd, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line + "\n")
    sshd.mkdir("feed")
    env = {
        "AIRFLOW_CONN_PARTNER_FTPS": _conn("ftps", vsftpd_tls, ca_file=str(vsftpd_tls.cafile)),
        "AIRFLOW_CONN_PARTNER_SFTP": _conn("sftp", sshd, known_hosts=str(known_hosts)),
    }
    with mock.patch.dict("os.environ", env):
        for conn_id, expected in (("partner_ftps", FtpClient), ("partner_sftp", SftpClient)):
            with FtpTransferHook(conn_id).get_conn() as client:
                assert isinstance(client, expected)
                client.makedirs("feed/out")
                client.write_bytes_atomic(conn_id.encode(), "feed/out/catalog.csv")
                assert [e.name for e in client.list_dir("feed/out")] == ["catalog.csv"]
                assert client.read_bytes("feed/out/catalog.csv") == conn_id.encode()
            ok, message = FtpTransferHook(conn_id).test_connection()
            assert ok, message


def test_sftp_hook_refuses_an_unknown_host_key_and_says_so(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with mock.patch.dict("os.environ", AIRFLOW_CONN_PARTNER=_conn("sftp", sshd, known_hosts=str(empty))):
        ok, message = ThreekitSFTPHook("partner").test_connection()
    assert not ok and "unknown host key" in message and sshd.password not in message
    with mock.patch.dict("os.environ", AIRFLOW_CONN_PARTNER=_conn("sftp", sshd, known_hosts=str(empty),
                                                                   no_host_key_check=True)):
        ok, message = ThreekitSFTPHook("partner").test_connection()
    assert ok, message


def test_sftp_hook_key_authentication_from_the_private_key_extra(sshd):
    key_text = sshd.user_key.read_text()
    conn = json.dumps({"conn_type": "sftp", "host": sshd.host, "port": sshd.port, "login": sshd.user,
                       "extra": {"private_key": key_text,
                                 "host_key": f"{sshd.host_key_type} {sshd.host_key_base64}"}})
    with mock.patch.dict("os.environ", AIRFLOW_CONN_PARTNER=conn):
        with ThreekitSFTPHook("partner").get_client() as client:
            assert client.settings.password == "" and client.settings.pkey is not None
            assert client.list_dir(".") is not None


def test_sensor_and_trigger_watch_an_sftp_folder_through_the_same_connection_id(sshd, tmp_path):
    """A feed names only a connection: the FTP sensor and trigger work unchanged on SFTP."""
    import asyncio
    import time

    from threekit_pipeline.airflow.sensors.ftp import FtpCompleteFilesSensor
    from threekit_pipeline.airflow.triggers.ftp import FtpCompleteFilesTrigger

    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line + "\n")
    folder = f"watch-{tmp_path.name}"
    sshd.seed(f"{folder}/prices.csv", b"sku;price\n")
    sshd.seed(f"{folder}/notes.txt", b"-")
    with mock.patch.dict("os.environ", AIRFLOW_CONN_PARTNER=_conn("sftp", sshd, known_hosts=str(known_hosts))):
        sensor = FtpCompleteFilesSensor(task_id="wait", ftp_conn_id="partner", path=folder, patterns=["*.csv"],
                                        stable_seconds=0.3, poke_interval=0.2, timeout=30, deferrable=False)
        result = sensor.poke(context={})
        assert result.is_done is True
        assert [(f["name"], f["size"]) for f in result.xcom_value] == [("prices.csv", 10)]

        trigger = FtpCompleteFilesTrigger(ftp_conn_id="partner", path=folder, patterns=["*.csv"], stable_seconds=0.3,
                                          marker_suffixes=[], poll_interval=0.2, deadline=time.time() + 30)

        async def first_event():
            async for event in trigger.run():
                return event

        event = asyncio.run(first_event())
        assert event.payload["status"] == "success"
        assert [f["name"] for f in event.payload["files"]] == ["prices.csv"]
