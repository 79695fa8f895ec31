"""FtpTransferHook: connection extras -> FtpSettings, real logins (FTP and FTPS), masking."""

from __future__ import annotations

import json
import logging
from unittest import mock
from urllib.parse import quote

import pytest
from threekit_pipeline.airflow.hooks.ftp import (
    FtpConnectionError,
    FtpTransferHook,
    ftp_settings_from_connection,
)


def _settings(conn_type="ftp", host="ftp.example.com", port=None, login="erp", password="pw-123456", **extra):
    return ftp_settings_from_connection(
        conn_id="ftp_default",
        conn_type=conn_type,
        host=host,
        port=port,
        login=login,
        password=password,
        extra=extra,
    )


def test_defaults_of_a_plain_ftp_connection():
    settings = _settings()
    assert (settings.host, settings.port, settings.user, settings.password) == (
        "ftp.example.com",
        21,
        "erp",
        "pw-123456",
    )
    assert (settings.tls, settings.verify, settings.ca_file, settings.passive) == (False, True, None, True)
    assert (settings.connect_timeout, settings.data_timeout, settings.encoding, settings.retries) == (
        30.0,
        120.0,
        "utf-8",
        3,
    )


def test_extras_are_honoured_including_string_values_from_uris():
    settings = _settings(
        port=2121,
        tls="true",
        verify="false",
        ca_file="/etc/ssl/ca.pem",
        passive="no",
        connect_timeout="5",
        data_timeout=7.5,
        encoding="latin-1",
        retries="0",
    )
    assert settings.port == 2121
    assert (settings.tls, settings.verify, settings.ca_file, settings.passive) == (
        True,
        False,
        "/etc/ssl/ca.pem",
        False,
    )
    assert (settings.connect_timeout, settings.data_timeout, settings.encoding, settings.retries) == (
        5.0,
        7.5,
        "latin-1",
        0,
    )


def test_ftps_connection_type_implies_tls():
    assert _settings(conn_type="ftps").tls is True
    with pytest.raises(FtpConnectionError, match="type ftps but its extra 'tls' is false"):
        _settings(conn_type="ftps", tls=False)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"tls": "maybe"}, "extra 'tls' must be true or false"),
        ({"data_timeout": "soon"}, "extra 'data_timeout' must be a number"),
        ({"retries": -1}, "extra 'retries' must not be negative"),
    ],
)
def test_bad_extras_are_named_in_the_error(extra, message):
    with pytest.raises(FtpConnectionError, match=message):
        _settings(**extra)


def test_missing_host_is_a_clear_error():
    with pytest.raises(FtpConnectionError, match="has no host"):
        _settings(host="")


def test_json_and_uri_forms_give_a_working_client(ftp_sandbox, ftp_conn_json):
    (ftp_sandbox.root / "inbound").mkdir()
    (ftp_sandbox.root / "inbound" / "items.csv").write_bytes(b"sku\nA-1\n")
    uri = (
        f"ftp://{ftp_sandbox.user}:{quote(ftp_sandbox.password, safe='')}@{ftp_sandbox.host}:{ftp_sandbox.port}"
        "?passive=true&data_timeout=10"
    )
    for form in (ftp_conn_json(ftp_sandbox), uri):
        with mock.patch.dict("os.environ", AIRFLOW_CONN_FTP_DEFAULT=form):
            with FtpTransferHook().get_conn() as client:
                listing = client.list_dir("/inbound")
        assert [(f.name, f.size) for f in listing] == [("items.csv", 8)], form


def test_test_connection_true_and_false_without_leaking_the_password(ftp_sandbox, ftp_conn_json, caplog):
    with mock.patch.dict("os.environ", AIRFLOW_CONN_FTP_DEFAULT=ftp_conn_json(ftp_sandbox)):
        ok, message = FtpTransferHook().test_connection()
    assert ok is True
    assert f"{ftp_sandbox.host}:{ftp_sandbox.port}" in message

    wrong = "not-the-password-42"
    value = json.loads(ftp_conn_json(ftp_sandbox))
    value["password"] = wrong
    with (
        caplog.at_level(logging.DEBUG),
        mock.patch.dict("os.environ", AIRFLOW_CONN_FTP_DEFAULT=json.dumps(value)),
    ):
        ok, message = FtpTransferHook().test_connection()
    assert ok is False
    assert "login" in message.lower() or "530" in message
    assert wrong not in message
    assert wrong not in caplog.text


def test_password_is_registered_with_the_secret_masker(ftp_conn):
    from airflow.sdk._shared.secrets_masker import redact

    FtpTransferHook().get_settings()
    assert redact(f"PASS {ftp_conn.password}") == "PASS ***"


def test_ftps_connection_with_ca_file_verifies_and_lists(tmp_path):
    from threekit_pipeline.sandbox.ftp_process import FtpSandboxProcess

    server = FtpSandboxProcess(root=tmp_path / "ftps-root", user="erp", password="ftps-secret-1234", tls=True)
    server.start()
    try:
        (server.root / "hello.txt").write_bytes(b"hi")
        value = json.dumps(
            {
                "conn_type": "ftps",
                "host": server.host,
                "port": server.port,
                "login": server.user,
                "password": server.password,
                "extra": {"ca_file": str(server.cafile), "connect_timeout": 5, "retries": 0},
            }
        )
        with mock.patch.dict("os.environ", AIRFLOW_CONN_FTP_DEFAULT=value):
            hook = FtpTransferHook()
            assert hook.get_settings().tls is True
            with hook.get_conn() as client:
                assert [f.name for f in client.list_dir("/")] == ["hello.txt"]
        # Without the CA the self-signed certificate is refused: verification is on by default.
        without_ca = json.loads(value)
        del without_ca["extra"]["ca_file"]
        with mock.patch.dict("os.environ", AIRFLOW_CONN_FTP_DEFAULT=json.dumps(without_ca)):
            ok, message = FtpTransferHook().test_connection()
        assert ok is False
        assert "certificate" in message.lower()
    finally:
        server.stop()
