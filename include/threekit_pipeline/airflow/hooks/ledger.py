"""The ledgers' PostgreSQL connection: an Airflow ``postgres`` connection turned into a libpq DSN.

The ledger itself (:mod:`threekit_pipeline.pipelines.ledger`) takes a plain DSN and has no
Airflow imports; this hook is the one place that reads the connection (the ``postgres``
connection type of the postgres provider). Fields: ``host``, ``port`` (default 5432),
``login``, ``password``, ``schema`` (the **database** name, as the provider uses it); extras
that are libpq keywords (``sslmode``, ``sslrootcert``, ``connect_timeout``,
``application_name``, ...) are passed on, other extras are ignored.

Example (environment variable form)::

    AIRFLOW_CONN_THREEKIT_LEDGER='postgres://ledger:SECRET@db.internal:5432/threekit?sslmode=require'
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook


class LedgerConnectionError(ValueError):
    """The ledger connection is unusable (names the connection and the field at fault)."""


def _libpq_keywords() -> set[str]:
    from psycopg import pq

    return {option.keyword.decode() for option in pq.Conninfo.get_defaults()}


def connection_dsn(conn_id: str, conn: Any) -> str:
    """libpq DSN (``key=value`` form) of an Airflow connection object; no Airflow calls.

    Raises :class:`LedgerConnectionError` when the connection has no host or no database.
    """
    from psycopg.conninfo import make_conninfo

    if not conn.host:
        raise LedgerConnectionError(f"ledger connection {conn_id!r} has no host")
    if not conn.schema:
        raise LedgerConnectionError(f"ledger connection {conn_id!r} has no database (the 'schema' field)")
    params: dict[str, Any] = {"host": conn.host, "port": conn.port or 5432, "dbname": conn.schema}
    if conn.login:
        params["user"] = conn.login
    if conn.password:
        params["password"] = conn.password
    keywords = _libpq_keywords()
    for key, value in (conn.extra_dejson or {}).items():
        if key in keywords and key not in params and value not in (None, ""):
            params[key] = value
    params.setdefault("application_name", "threekit-pipeline-ledger")
    return make_conninfo("", **params)


class LedgerDatabaseHook(BaseHook):
    """Reads the ledger's ``postgres`` connection and hands out its DSN (password masked in logs)."""

    conn_name_attr = "ledger_conn_id"
    default_conn_name = "threekit_ledger"
    conn_type = "postgres"
    hook_name = "Threekit ledger (PostgreSQL)"

    def __init__(self, ledger_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ledger_conn_id = ledger_conn_id

    def get_dsn(self) -> str:
        """The libpq DSN of the connection (contains the password: never log it)."""
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.ledger_conn_id)
        if conn.password:
            mask_secret(conn.password)
        dsn = connection_dsn(self.ledger_conn_id, conn)
        mask_secret(dsn)
        return dsn

    def get_conn(self) -> Any:
        """An open psycopg connection (autocommit off), for ad-hoc checks; the caller closes it."""
        import psycopg

        return psycopg.connect(self.get_dsn())

    def test_connection(self) -> tuple[bool, str]:
        try:
            with self.get_conn() as conn:
                conn.execute("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - reported to the UI, not raised
            return False, f"{type(exc).__name__}: {exc}"
        return True, "Connection successfully tested"
