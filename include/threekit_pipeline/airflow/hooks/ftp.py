"""Hooks for the transfer connections of the Threekit pipelines: ``ftp``, ``ftps`` and ``sftp``.

* :class:`ThreekitFTPHook` / :class:`ThreekitFTPSHook` extend the ftp provider's
  ``FTPHook`` / ``FTPSHook`` (connection form, extras, ``test_connection``) where they fall
  short; each override names the upstream gap it covers.
* :class:`~threekit_pipeline.airflow.hooks.sftp.ThreekitSFTPHook` extends the sftp
  provider's ``SFTPHook`` the same way.
* :class:`FtpTransferHook` is the one transfer interface over the three: ``get_conn()``
  returns a :class:`~threekit_pipeline.ftp.transfer.TransferClient` for whatever type the
  named connection has, so a feed only names a connection.

FTP/FTPS extras (the ``ftp`` provider's ``passive`` and ``encoding`` keep their meaning):

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
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.ftp.hooks.ftp import FTPHook, FTPSHook
from airflow.sdk import BaseHook

from threekit_pipeline.ftp.models import FtpSettings

if TYPE_CHECKING:
    import ftplib

    from threekit_pipeline.ftp.client import FtpClient
    from threekit_pipeline.ftp.sftp import SftpSettings
    from threekit_pipeline.ftp.transfer import TransferClient

log = logging.getLogger(__name__)

DEFAULT_PORT = 21
TLS_CONN_TYPES = frozenset({"ftps"})
SFTP_CONN_TYPES = frozenset({"sftp", "ssh"})
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


def _ftp_settings(conn_id: str, conn, extra: Mapping[str, Any]) -> FtpSettings:
    return ftp_settings_from_connection(conn_id=conn_id, conn_type=conn.conn_type, host=conn.host, port=conn.port,
                                        login=conn.login, password=conn.password, extra=extra)


class ThreekitFTPHook(FTPHook):
    """The ftp provider's ``FTPHook`` with what unattended partner transfers need.

    Upstream gaps covered (apache-airflow-providers-ftp 3.16):

    * **Timeouts**: ``FTPHook.get_conn`` builds ``ftplib.FTP()`` without a timeout, so a
      silent server blocks a worker forever; here ``connect_timeout``/``data_timeout``
      extras apply to the control and every data connection.
    * **MLSD fallback**: ``describe_directory`` calls ``MLSD`` only and fails on servers
      without it (vsftpd, IIS); here it parses one ``LIST`` instead (names, sizes, times).
    * **Streaming with resume**: ``retrieve_file`` restarts from byte 0 after a dropped
      connection; here downloads to a path stream to ``.part`` and resume with ``REST``.
    * **Reconnects, retries, atomic uploads, precise errors** through :meth:`get_client`
      (:class:`~threekit_pipeline.ftp.client.FtpClient`).

    The hook stays stateless for the pipelines: :meth:`get_client` returns a new client
    each time. ``get_conn`` keeps the upstream contract (a logged-in ``ftplib.FTP``).
    """

    conn_name_attr = "ftp_conn_id"
    default_conn_name = "ftp_default"
    conn_type = "ftp"
    hook_name = "FTP (Threekit transfers)"

    def get_settings(self) -> FtpSettings:
        """Connection settings (for the blocking client); masks the password first."""
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.ftp_conn_id)
        if conn.password:
            mask_secret(conn.password)
        return _ftp_settings(self.ftp_conn_id, conn, conn.extra_dejson)

    def get_client(self) -> FtpClient:
        """A new, not yet connected :class:`FtpClient` (use it as a context manager)."""
        from threekit_pipeline.ftp.client import FtpClient

        return FtpClient(self.get_settings())

    def get_conn(self) -> ftplib.FTP:
        """A logged-in ``ftplib.FTP`` / ``FTP_TLS`` (upstream contract) with timeouts and, for FTPS,
        ``PROT P`` and TLS session reuse on data connections (upstream: no timeouts, and
        ``FTPSHook`` sets the port on the ``ftplib.FTP_TLS`` class for every user)."""
        if self.conn is None:
            client = self.get_client()
            self.conn = client._session("connect", "")
        return self.conn

    def describe_directory(self, path: str) -> dict:
        """``{name: facts}`` like upstream, also on servers without MLSD (``LIST`` is parsed)."""
        with self.get_client() as client:
            entries = client.list_dir(path)
        return {
            entry.name: {
                "type": "dir" if entry.is_dir else "file",
                "size": None if entry.size is None else str(entry.size),
                "modify": entry.modified.strftime("%Y%m%d%H%M%S") if entry.modified else None,
            }
            for entry in entries
        }

    def retrieve_file(self, remote_full_path, local_full_path_or_buffer, callback=None, block_size=8192):
        """Streams to a local path with resume after a dropped connection; buffers and callbacks as upstream."""
        if isinstance(local_full_path_or_buffer, (str, os.PathLike)) and callback is None:
            with self.get_client() as client:
                client.download(remote_full_path, Path(local_full_path_or_buffer))
            return
        super().retrieve_file(remote_full_path, local_full_path_or_buffer, callback, block_size)

    def test_connection(self) -> tuple[bool, str]:
        """Log in and list the home folder (upstream only touches ``pwd``); never shows the password."""
        return _test_connection(self.get_settings)


class ThreekitFTPSHook(ThreekitFTPHook, FTPSHook):
    """The ftp provider's ``FTPSHook`` with the extensions of :class:`ThreekitFTPHook`.

    Further upstream gaps covered: **TLS session reuse** on data connections (vsftpd and
    ProFTPD refuse data connections without it by default, which ``FTPSHook`` does not
    do), a **CA file** for private certificates (``ca_file`` extra), and a **refused
    ``AUTH TLS``** reported as such rather than as a refused login.
    """

    conn_type = "ftps"
    hook_name = "FTPS (Threekit transfers)"

    def get_settings(self) -> FtpSettings:
        settings = super().get_settings()
        if not settings.tls:
            raise FtpConnectionError(f"connection {self.ftp_conn_id!r} is used for FTPS but its extra 'tls' is false")
        return settings


def _test_connection(get_settings) -> tuple[bool, str]:
    try:
        settings = get_settings()
    except (FtpConnectionError, ValueError) as exc:
        return False, str(exc)
    password = getattr(settings, "password", "")
    try:
        from threekit_pipeline.ftp.transfer import open_client

        with open_client(settings) as client:
            entries = client.list_dir(".")
    except Exception as exc:  # noqa: BLE001 - any failure is reported to the UI, not raised
        message = f"{type(exc).__name__}: {exc}"
        return False, message.replace(password, "***") if password else message
    scheme = "SFTP" if not isinstance(settings, FtpSettings) else ("FTPS" if settings.tls else "FTP")
    return True, f"Logged in to {scheme} server {settings.host}:{settings.port}; {len(entries)} entries in home"


class FtpTransferHook(BaseHook):
    """The one transfer interface: clients for ``ftp``, ``ftps`` and ``sftp`` connections alike.

    Stateless: each :meth:`get_conn` returns a new, not yet connected
    :class:`~threekit_pipeline.ftp.transfer.TransferClient` (``FtpClient`` or
    ``SftpClient``, chosen by the connection's type); use it as a context manager.
    Passwords are registered with Airflow's secret masker.

    :param ftp_conn_id: id of a connection of type ``ftp``, ``ftps`` or ``sftp``.
    """

    conn_name_attr = "ftp_conn_id"
    default_conn_name = "ftp_default"
    conn_type = "ftp"
    hook_name = "FTP/FTPS (Threekit transfers)"

    def __init__(self, ftp_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.ftp_conn_id = ftp_conn_id

    def get_settings(self) -> FtpSettings | SftpSettings:
        """Settings of the connection (``SftpSettings`` for sftp/ssh types); masks the password first."""
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.ftp_conn_id)
        if conn.password:
            mask_secret(conn.password)
        if (conn.conn_type or "").lower() in SFTP_CONN_TYPES:
            from threekit_pipeline.airflow.hooks.sftp import sftp_settings_from_connection

            extra = conn.extra_dejson
            for secret in (extra.get("private_key"), extra.get("private_key_passphrase")):
                if secret:
                    mask_secret(secret)
            return sftp_settings_from_connection(self.ftp_conn_id, conn, extra)
        return _ftp_settings(self.ftp_conn_id, conn, conn.extra_dejson)

    async def aget_settings(self) -> FtpSettings | SftpSettings:
        """Same as :meth:`get_settings`, for the triggerer's event loop."""
        from airflow.sdk.log import amask_secret

        conn = await self.aget_connection(self.ftp_conn_id)
        if conn.password:
            await amask_secret(conn.password)
        extra = await conn.aextra_dejson()
        if (conn.conn_type or "").lower() in SFTP_CONN_TYPES:
            from threekit_pipeline.airflow.hooks.sftp import sftp_settings_from_connection

            for secret in (extra.get("private_key"), extra.get("private_key_passphrase")):
                if secret:
                    await amask_secret(secret)

            return sftp_settings_from_connection(self.ftp_conn_id, conn, extra)
        return _ftp_settings(self.ftp_conn_id, conn, extra)

    def get_conn(self) -> TransferClient:
        """A new client for the connection (connects on first use)."""
        from threekit_pipeline.ftp.transfer import open_client

        return open_client(self.get_settings())

    def test_connection(self) -> tuple[bool, str]:
        """Log in and list the home directory; the message never holds the password."""
        return _test_connection(self.get_settings)


#: The name the transfer interface goes by in new code.
TransferHook = FtpTransferHook
