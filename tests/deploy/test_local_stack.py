"""LocalStack: both sandboxes on free loopback ports, the FTP layout, and Airflow's view of them."""

from __future__ import annotations

import ftplib
import json
import logging
import os
import socket

import pytest
import requests
from threekit_pipeline.devtools.stack import (
    FTP_CONN_ENV,
    STAGING_DIR_ENV,
    THREEKIT_CONN_ENV,
    VARIABLE_ENV,
    LocalStack,
    ftp_folder_layout,
)
from threekit_pipeline.pipelines.config import ConfigError, load_config


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _addresses(stack: LocalStack) -> list[tuple[str, int]]:
    threekit = requests.utils.urlparse(stack.threekit.base_url)
    return [(threekit.hostname, threekit.port), (stack.ftp.host, stack.ftp.port)]


def _catalog(base_url: str, token: str, org_id: str) -> requests.Response:
    return requests.get(
        f"{base_url}/api/catalog/products",
        params={"orgId": org_id},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_stack_serves_both_sandboxes_with_the_folder_layout_then_stops(tmp_path):
    with LocalStack(tmp_path) as stack:
        addresses = _addresses(stack)
        assert all(host == "127.0.0.1" for host, _ in addresses)
        assert all(_accepts_connections(*address) for address in addresses)
        with stack.ftp_session() as ftp:
            for folder in ftp_folder_layout():
                ftp.cwd(folder)  # raises error_perm if missing
        assert stack.staging_dir.is_dir()
        stack.create_ftp_folders()  # idempotent on an existing layout
    assert not any(_accepts_connections(*address) for address in addresses)
    assert stack.threekit is None and stack.ftp is None


def test_airflow_env_gives_working_connections_and_a_valid_variable(tmp_path):
    from airflow.sdk import Connection

    with LocalStack(tmp_path) as stack:
        env = stack.airflow_env({"batch_size": 50})
        ftp_conn = Connection.from_json(env[FTP_CONN_ENV], conn_id="ftp_default")
        assert ftp_conn.conn_type == "ftp"
        assert ftp_conn.extra_dejson == {
            "tls": False,
            "verify": True,
            "ca_file": None,
            "passive": True,
            "connect_timeout": 30,
            "data_timeout": 120,
        }
        with ftplib.FTP() as client:
            client.connect(ftp_conn.host, ftp_conn.port, timeout=10)
            client.login(ftp_conn.login, ftp_conn.password)
            assert "/inbound/catalog" in client.nlst("/inbound") or "catalog" in client.nlst("/inbound")

        threekit_conn = Connection.from_json(env[THREEKIT_CONN_ENV], conn_id="threekit_default")
        assert threekit_conn.conn_type == "threekit"
        assert threekit_conn.host == stack.threekit.base_url
        org_id = threekit_conn.extra_dejson["org_id"]
        assert _catalog(threekit_conn.host, threekit_conn.password, org_id).status_code == 200
        assert _catalog(threekit_conn.host, "not-the-token", org_id).status_code in (401, 403)

        config = load_config(env[VARIABLE_ENV])
        assert (config.batch_size, config.ftp_conn_id, config.threekit_conn_id) == (
            50,
            "ftp_default",
            "threekit_default",
        )
        assert env[STAGING_DIR_ENV] == str(stack.staging_dir)


def test_apply_env_is_undone_on_exit(tmp_path, monkeypatch):
    monkeypatch.setenv(FTP_CONN_ENV, "previous-value")
    monkeypatch.delenv(VARIABLE_ENV, raising=False)
    with LocalStack(tmp_path) as stack:
        stack.apply_env({"mapping": "sap_de"})
        assert json.loads(os.environ[FTP_CONN_ENV])["port"] == stack.ftp.port
        assert load_config(os.environ[VARIABLE_ENV]).mapping == "sap_de"
    assert os.environ[FTP_CONN_ENV] == "previous-value"
    assert VARIABLE_ENV not in os.environ


def test_an_exception_in_the_block_still_stops_both_servers(tmp_path):
    addresses = []
    with pytest.raises(RuntimeError, match="boom"), LocalStack(tmp_path) as stack:
        addresses.extend(_addresses(stack))
        raise RuntimeError("boom")
    assert addresses and not any(_accepts_connections(*address) for address in addresses)


def test_generated_secrets_are_random_and_never_shown(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with LocalStack(tmp_path / "a") as first, LocalStack(tmp_path / "b") as second:
        secrets = [first.ftp.password, first.threekit.token, second.ftp.password, second.threekit.token]
        assert len(set(secrets)) == 4 and all(len(s) >= 16 for s in secrets)
        shown = repr(first) + str(first) + caplog.text
        assert not [s for s in secrets if s in shown]


def test_given_credentials_are_used(tmp_path):
    with LocalStack(tmp_path, token="tk-given-token-123456", org_id="org-42", ftp_password="given-pass-1") as stack:
        assert stack.threekit.token == "tk-given-token-123456" and stack.org_id == "org-42"
        assert _catalog(stack.threekit.base_url, "tk-given-token-123456", "org-42").status_code == 200
        with ftplib.FTP() as client:
            client.connect(stack.ftp.host, stack.ftp.port, timeout=10)
            client.login("erp", "given-pass-1")


def test_threekit_faults_reach_the_sandbox(tmp_path):
    with LocalStack(tmp_path, threekit_faults={"fail_rate": 0.5, "seed": 7}) as stack:
        statuses = [
            _catalog(stack.threekit.base_url, stack.threekit.token, stack.org_id).status_code for _ in range(30)
        ]
    assert set(statuses) == {200, 500}


def test_ftps_stack_requires_tls_and_hands_out_its_ca(tmp_path):
    with LocalStack(tmp_path, ftp_tls=True) as stack:
        extra = stack.ftp_connection()["extra"]
        assert extra["tls"] is True and os.path.isfile(extra["ca_file"])
        with stack.ftp_session() as ftp:
            assert isinstance(ftp, ftplib.FTP_TLS)
            ftp.cwd("/inbound/catalog")
        with ftplib.FTP() as plain, pytest.raises(ftplib.error_perm):
            plain.connect(stack.ftp.host, stack.ftp.port, timeout=10)
            plain.login(stack.ftp.user, stack.ftp.password)


def test_bad_arguments_are_rejected_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="fail_ratio"):
        LocalStack(tmp_path, threekit_faults={"fail_ratio": 0.1})
    with LocalStack(tmp_path) as stack, pytest.raises(ConfigError, match="batch_size"):
        stack.airflow_env({"batch_size": 0})
