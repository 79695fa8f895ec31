"""Hook for FTP/FTPS connections used by the Threekit pipelines (``ftp`` and ``ftps`` types).

Builds :class:`~threekit_pipeline.ftp.client.FtpSettings` from an Airflow connection and
hands out :class:`~threekit_pipeline.ftp.client.FtpClient` objects. The stock ``ftp``
connection type is used, so Airflow's connection form exists; the FTPS/timeout options
live in the extras:

==================  =========  ==============================================================
extra               default    meaning
==================  =========  ==============================================================
``tls``             false      explicit FTPS (AUTH TLS, protected data channel); implied by
                               connection type ``ftps``
``verify``          true       verify the server certificate and host name
``ca_file``         (none)     PEM bundle to verify against (private CA, self-signed server)
``passive``         true       passive data connections (PASV/EPSV)
``connect_timeout`` 30         seconds to connect and log in
``data_timeout``    120        seconds of silence on a transfer before it is aborted
``encoding``        utf-8      encoding of remote file names
``retries``         3          reconnect-and-retry attempts for transient failures
==================  =========  ==============================================================
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from threekit_pipeline.ftp.models import FtpSettings

if TYPE_CHECKING:
    from threekit_pipeline.ftp.client import FtpClient

log = logging.getLogger(__name__)

DEFAULT_PORT = 21
TLS_CONN_TYPES = frozenset({"ftps"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class FtpConnectionError(ValueError):
    """The FTP connection is incomplete or an extra has an unusable value (names the extra)."""


def _flag(extra: Mapping[str, Any], name: str, default: bool) -> bool:
    value = extra.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise FtpConnectionError(f"extra {name!r} must be true or false, not {value!r}")


def _number(extra: Mapping[str, Any], name: str, cast: type, default: Any) -> Any:
    value = extra.get(name)
    if value in (None, ""):
        return default
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise FtpConnectionError(f"extra {name!r} must be a number, not {value!r}") from None
    if number < 0:
        raise FtpConnectionError(f"extra {name!r} must not be negative, got {value!r}")
    return number


def ftp_settings_from_connection(
    *,
    conn_id: str,
    conn_type: str | None,
    host: str | None,
    port: int | None,
    login: str | None,
    password: str | None,
    extra: Mapping[str, Any],
) -> FtpSettings:
    """``FtpSettings`` for one connection's fields and (already decoded) extras."""
    if not host:
        raise FtpConnectionError(f"connection {conn_id!r} has no host")
    tls_implied = (conn_type or "").lower() in TLS_CONN_TYPES
    tls = _flag(extra, "tls", tls_implied)
    if tls_implied and not tls:
        raise FtpConnectionError(f"connection {conn_id!r} is of type ftps but its extra 'tls' is false")
    ca_file = extra.get("ca_file") or None
    return FtpSettings(
        host=host,
        port=int(port) if port else DEFAULT_PORT,
        user=login or "anonymous",
        password=password or "",
        tls=tls,
        verify=_flag(extra, "verify", True),
        ca_file=str(ca_file) if ca_file else None,
        passive=_flag(extra, "passive", True),
        connect_timeout=_number(extra, "connect_timeout", float, 30.0),
        data_timeout=_number(extra, "data_timeout", float, 120.0),
        encoding=str(extra.get("encoding") or "utf-8"),
        retries=_number(extra, "retries", int, 3),
    )


class FtpTransferHook(BaseHook):
    """Creates :class:`FtpClient` objects for an ``ftp``/``ftps`` connection.

    Stateless: each :meth:`get_conn` returns a new, not yet connected client; use it as a
    context manager. The password is registered with Airflow's secret masker.

    :param ftp_conn_id: id of a connection of type ``ftp`` (or ``ftps``).
    """

    conn_name_attr = "ftp_conn_id"
    default_conn_name = "ftp_default"
    conn_type = "ftp"
    hook_name = "FTP/FTPS (Threekit transfers)"

    def __init__(self, ftp_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.ftp_conn_id = ftp_conn_id

    def get_settings(self) -> FtpSettings:
        """Connection settings (for the blocking client); masks the password first."""
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.ftp_conn_id)
        if conn.password:
            mask_secret(conn.password)
        return ftp_settings_from_connection(
            conn_id=self.ftp_conn_id,
            conn_type=conn.conn_type,
            host=conn.host,
            port=conn.port,
            login=conn.login,
            password=conn.password,
            extra=conn.extra_dejson,
        )

    async def aget_settings(self) -> FtpSettings:
        """Same as :meth:`get_settings`, for the triggerer's event loop."""
        from airflow.sdk.log import amask_secret

        conn = await self.aget_connection(self.ftp_conn_id)
        if conn.password:
            await amask_secret(conn.password)
        return ftp_settings_from_connection(
            conn_id=self.ftp_conn_id,
            conn_type=conn.conn_type,
            host=conn.host,
            port=conn.port,
            login=conn.login,
            password=conn.password,
            extra=await conn.aextra_dejson(),
        )

    def get_conn(self) -> FtpClient:
        """A new client for the connection (connects on ``__enter__``)."""
        from threekit_pipeline.ftp.client import FtpClient

        return FtpClient(self.get_settings())

    def test_connection(self) -> tuple[bool, str]:
        """Log in and list the home directory; the message never holds the password."""
        try:
            settings = self.get_settings()
        except FtpConnectionError as exc:
            return False, str(exc)
        password = settings.password
        try:
            from threekit_pipeline.ftp.client import FtpClient

            with FtpClient(settings) as client:
                entries = client.list_dir(".")
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the UI, not raised
            message = f"{type(exc).__name__}: {exc}"
            return False, message.replace(password, "***") if password else message
        scheme = "FTPS" if settings.tls else "FTP"
        return (
            True,
            f"Logged in to {scheme} server {settings.host}:{settings.port}; {len(entries)} entries in home",
        )
