"""ThreekitHook: connection forms (JSON and URI) -> working client, test_connection, masking."""

from __future__ import annotations

import json
import logging
from unittest import mock
from urllib.parse import quote

import pytest
from threekit_pipeline.airflow.hooks.threekit import (
    ThreekitConnectionError,
    ThreekitHook,
    client_options,
    plain_extras,
    threekit_base_url,
)


@pytest.mark.parametrize(
    ("host", "port", "extra", "expected"),
    [
        ("https://preview.threekit.com", None, {}, "https://preview.threekit.com"),
        ("https://preview.threekit.com/", None, {}, "https://preview.threekit.com"),
        ("preview.threekit.com", None, {}, "https://preview.threekit.com"),
        ("127.0.0.1", 8090, {"scheme": "http"}, "http://127.0.0.1:8090"),
        ("http://127.0.0.1", 8090, {}, "http://127.0.0.1:8090"),
        ("http://127.0.0.1:8090", 9999, {}, "http://127.0.0.1:8090"),
        ("HTTP://127.0.0.1:8090", None, {"scheme": "http"}, "http://127.0.0.1:8090"),
        ("https://proxy.example.com/threekit", None, {}, "https://proxy.example.com/threekit"),
    ],
)
def test_base_url_from_connection_fields(host, port, extra, expected):
    assert threekit_base_url(host, port, extra) == expected


@pytest.mark.parametrize(
    ("host", "extra", "message"),
    [
        ("", {}, "no host"),
        ("ftp://x", {}, "http(s) URL"),
        ("http://x", {"scheme": "https"}, "remove one of them"),
        ("x", {"scheme": "gopher"}, "'scheme' must be"),
        ("https://user:pw@x", {}, "must not contain credentials"),
    ],
)
def test_base_url_rejects_bad_connections_with_a_clear_message(host, extra, message):
    with pytest.raises(ThreekitConnectionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        threekit_base_url(host, None, extra)


def test_client_options_from_extras():
    assert client_options({"timeout": 30, "max_retries": "2", "max_retry_time": 60}) == {
        "timeout": (10.0, 30.0),
        "max_retries": 2,
        "max_retry_time": 60.0,
    }
    assert client_options({"timeout": [3, 40]}) == {"timeout": (3.0, 40.0)}
    assert client_options({"org_id": "x"}) == {}
    with pytest.raises(ThreekitConnectionError, match="'max_retries' must be a number"):
        client_options({"max_retries": "many"})


def test_prefixed_extras_from_older_forms_are_understood():
    assert plain_extras({"extra__threekit__org_id": "o-1", "timeout": 5}) == {"org_id": "o-1", "timeout": 5}
    assert plain_extras({"org_id": "kept", "extra__threekit__org_id": "ignored"}) == {"org_id": "kept"}


def _connection_forms(sandbox) -> dict[str, str]:
    host_port = sandbox.base_url.split("://", 1)[1]
    token = quote(sandbox.token, safe="")
    return {
        "json": json.dumps(
            {
                "conn_type": "threekit",
                "host": sandbox.base_url,
                "password": sandbox.token,
                "extra": {"org_id": sandbox.org_id},
            }
        ),
        "uri_scheme_extra": f"threekit://:{token}@{host_port}?org_id={sandbox.org_id}&scheme=http",
        "uri_protocol_in_host": f"threekit://http://:{token}@{host_port}?org_id={sandbox.org_id}",
    }


def test_every_connection_form_yields_a_working_client(threekit_sandbox):
    for form, value in _connection_forms(threekit_sandbox).items():
        with mock.patch.dict("os.environ", AIRFLOW_CONN_THREEKIT_DEFAULT=value):
            hook = ThreekitHook()
            assert hook.api_base_url() == threekit_sandbox.base_url, form
            with hook.get_client() as client:
                assert client.base_url == threekit_sandbox.base_url, form
                assert client.org_id == threekit_sandbox.org_id, form
                assert client.healthcheck() is True, form
                assert list(client.list_assets()) == [], form


def test_hook_is_an_http_hook_and_keeps_threekit_extras_out_of_headers(threekit_sandbox):
    from airflow.providers.http.hooks.http import HttpHook

    value = json.dumps(
        {
            "conn_type": "threekit",
            "host": threekit_sandbox.base_url,
            "login": "someone",
            "password": threekit_sandbox.token,
            "extra": {"org_id": threekit_sandbox.org_id, "timeout": 30, "verify": False},
        }
    )
    with mock.patch.dict("os.environ", AIRFLOW_CONN_THREEKIT_DEFAULT=value):
        hook = ThreekitHook()
        assert isinstance(hook, HttpHook)
        with hook.get_client() as client:
            session = client.session
            assert session.verify is False  # an HttpHook session option from the extras
            assert session.auth is None  # the token is a bearer token, never basic auth
            assert not {"org_id", "timeout", "verify"} & {h.lower() for h in session.headers}
            assert session.headers["Authorization"] == f"Bearer {threekit_sandbox.token}"
            assert client.healthcheck() is True
        assert hook.base_url == threekit_sandbox.base_url


def test_airflow_round_trip_uri_of_the_json_form_still_works(threekit_sandbox):
    from airflow.sdk import Connection

    conn = Connection.from_json(_connection_forms(threekit_sandbox)["json"], conn_id="threekit_default")
    with mock.patch.dict("os.environ", AIRFLOW_CONN_THREEKIT_DEFAULT=conn.get_uri()):
        with ThreekitHook().get_client() as client:
            assert client.base_url == threekit_sandbox.base_url
            assert client.healthcheck() is True


def test_test_connection_accepts_the_right_token(threekit_conn):
    ok, message = ThreekitHook().test_connection()
    assert ok is True
    assert threekit_conn.base_url in message
    assert threekit_conn.token not in message


def test_test_connection_rejects_a_wrong_token_without_revealing_it(threekit_sandbox, caplog):
    wrong = "tk-wrong-0000-1111-2222-333344445555"
    value = json.dumps(
        {
            "conn_type": "threekit",
            "host": threekit_sandbox.base_url,
            "password": wrong,
            "extra": {"org_id": threekit_sandbox.org_id},
        }
    )
    with caplog.at_level(logging.DEBUG), mock.patch.dict("os.environ", AIRFLOW_CONN_THREEKIT_DEFAULT=value):
        ok, message = ThreekitHook().test_connection()
    assert ok is False
    assert "rejected the API token" in message
    assert wrong not in message
    assert wrong not in caplog.text


def test_test_connection_reports_an_unreachable_server(threekit_sandbox):
    threekit_sandbox.stop()
    value = json.dumps(
        {
            "conn_type": "threekit",
            "host": threekit_sandbox.base_url,
            "password": threekit_sandbox.token,
            "extra": {"org_id": threekit_sandbox.org_id},
        }
    )
    with mock.patch.dict("os.environ", AIRFLOW_CONN_THREEKIT_DEFAULT=value):
        ok, message = ThreekitHook().test_connection()
    assert ok is False
    assert "cannot reach Threekit" in message
    assert threekit_sandbox.token not in message


def test_missing_token_is_a_clear_error():
    value = json.dumps(
        {"conn_type": "threekit", "host": "https://preview.threekit.com", "extra": {"org_id": "o"}}
    )
    with mock.patch.dict("os.environ", AIRFLOW_CONN_THREEKIT_DEFAULT=value):
        with pytest.raises(ThreekitConnectionError, match="no API token"):
            ThreekitHook().get_client()
        ok, message = ThreekitHook().test_connection()
    assert ok is False and "no API token" in message


def test_token_is_registered_with_the_secret_masker(threekit_conn):
    from airflow.sdk._shared.secrets_masker import redact

    with ThreekitHook().get_client():
        pass
    assert redact(f"Authorization: Bearer {threekit_conn.token}") == "Authorization: Bearer ***"


@pytest.mark.parametrize("token_ok", [True, False])
def test_connection_test_as_the_api_server_runs_it(threekit_sandbox, token_ok):
    # The UI's "Test" button: a transient connection exported as a URI env var, then
    # Connection.test_connection(), which finds ThreekitHook through the provider registry.
    from airflow.models.connection import Connection

    token = threekit_sandbox.token if token_ok else "tk-not-valid-0123456789"
    conn = Connection(
        conn_id="transient_threekit_test",
        conn_type="threekit",
        host=threekit_sandbox.base_url,
        password=token,
        extra=json.dumps({"org_id": threekit_sandbox.org_id}),
    )
    with mock.patch.dict("os.environ", AIRFLOW_CONN_TRANSIENT_THREEKIT_TEST=conn.get_uri()):
        ok, message = conn.test_connection()
    assert ok is token_ok, message
    assert token not in message
