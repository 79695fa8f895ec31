"""The ledgers' ``postgres`` connection: Airflow connection -> libpq DSN, and a live check."""

from __future__ import annotations

import pytest
from airflow.sdk import Connection
from psycopg.conninfo import conninfo_to_dict
from threekit_pipeline.airflow.hooks.ledger import LedgerConnectionError, LedgerDatabaseHook, connection_dsn


def test_connection_fields_and_libpq_extras_make_the_dsn():
    conn = Connection(
        conn_id="ledger",
        conn_type="postgres",
        host="db.internal",
        port=6432,
        login="ledger",
        password="s3cret pass'word",
        schema="threekit",
        extra='{"sslmode": "require", "connect_timeout": 10, "cursor": "dictcursor", "iam": false}',
    )
    dsn = conninfo_to_dict(connection_dsn("ledger", conn))
    assert dsn == {
        "host": "db.internal",
        "port": "6432",
        "dbname": "threekit",
        "user": "ledger",
        "password": "s3cret pass'word",
        "sslmode": "require",
        "connect_timeout": "10",
        "application_name": "threekit-pipeline-ledger",
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"schema": "db"}, "has no host"), ({"host": "db.internal"}, "has no database")],
)
def test_incomplete_connections_are_named(fields, message):
    with pytest.raises(LedgerConnectionError, match=f"'ledger' {message}"):
        connection_dsn("ledger", Connection(conn_id="ledger", conn_type="postgres", **fields))


def test_hook_reads_the_connection_and_reaches_the_database(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_LIVE", "postgres://postgres@127.0.0.1:5432/postgres")
    hook = LedgerDatabaseHook("ledger_live")
    assert conninfo_to_dict(hook.get_dsn())["dbname"] == "postgres"
    assert hook.test_connection() == (True, "Connection successfully tested")
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_DOWN", "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=5")
    ok, message = LedgerDatabaseHook("ledger_down").test_connection()
    assert not ok and "OperationalError" in message
