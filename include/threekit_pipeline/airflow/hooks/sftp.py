"""SFTP connections of the Threekit pipelines, on the sftp provider's ``SFTPHook``.

Connection type ``sftp`` (the provider's form: host, port, login, password, extras).
Extras, the provider's own first:

=========================  =========  =========================================================
extra                      default    meaning
=========================  =========  =========================================================
``key_file``               (none)     private key file for key authentication
``private_key``            (none)     private key text (PEM/OpenSSH); ``private_key_passphrase``
``host_key``               (none)     the server's public key, ``<type> <base64>``
``no_host_key_check``      false      accept an UNKNOWN host key (with a warning); a CHANGED
                                      key is refused regardless
``conn_timeout``           30         seconds to connect and authenticate
``known_hosts``            (none)     OpenSSH known_hosts file to verify the server against
                                      (default: the user's ``~/.ssh/known_hosts``)
``data_timeout``           120        seconds of silence on a transfer before it is aborted
``encoding``               utf-8      encoding of remote file names
``retries``                3          reconnect-and-retry attempts for transient failures
=========================  =========  =========================================================
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

from airflow.providers.sftp.hooks.sftp import SFTPHook

from threekit_pipeline.airflow.hooks.ftp import FtpConnectionError, _flag, _number, _test_connection
from threekit_pipeline.ftp.sftp import SftpClient, SftpSettings

DEFAULT_PORT = 22


def _private_key(text: str, passphrase: str | None) -> Any:
    import paramiko

    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase)
        except (paramiko.SSHException, ValueError):
            continue
    raise FtpConnectionError("extra 'private_key' is not a readable Ed25519, ECDSA or RSA private key")


def sftp_settings_from_connection(conn_id: str, conn: Any, extra: Mapping[str, Any]) -> SftpSettings:
    """``SftpSettings`` for one connection's fields and (already decoded) extras."""
    if not conn.host:
        raise FtpConnectionError(f"connection {conn_id!r} has no host")
    private_key = extra.get("private_key")
    pkey = _private_key(str(private_key), extra.get("private_key_passphrase")) if private_key else None
    if pkey is not None and extra.get("key_file"):
        raise FtpConnectionError(f"connection {conn_id!r} sets both 'key_file' and 'private_key'")
    host_key = extra.get("host_key")
    if host_key:
        parts = str(host_key).split()
        try:
            base64.b64decode(parts[-1], validate=True)
        except (ValueError, IndexError):
            raise FtpConnectionError("extra 'host_key' must be '<type> <base64 key>'") from None
        if len(parts) < 2:
            raise FtpConnectionError("extra 'host_key' must be '<type> <base64 key>'")
    accept_unknown = _flag(extra, "no_host_key_check", False)
    if host_key and accept_unknown:
        raise FtpConnectionError("extras 'host_key' and 'no_host_key_check' contradict each other")
    return SftpSettings(
        host=conn.host,
        port=int(conn.port) if conn.port else DEFAULT_PORT,
        user=conn.login or "",
        password=conn.password or "",
        key_file=str(extra["key_file"]) if extra.get("key_file") else None,
        pkey=pkey,
        known_hosts=str(extra["known_hosts"]) if extra.get("known_hosts") else None,
        host_key=str(host_key) if host_key else None,
        accept_unknown_host_key=accept_unknown,
        connect_timeout=_number(extra, "conn_timeout", float, 30.0),
        data_timeout=_number(extra, "data_timeout", float, 120.0),
        encoding=str(extra.get("encoding") or "utf-8"),
        retries=_number(extra, "retries", int, 3),
    )


class ThreekitSFTPHook(SFTPHook):
    """The sftp provider's ``SFTPHook`` with what unattended partner transfers need.

    Upstream gaps covered (apache-airflow-providers-sftp 7.0):

    * **known_hosts file per connection** (``known_hosts`` extra): upstream trusts one
      ``host_key`` or the worker's ``~/.ssh/known_hosts`` only; and a changed host key is
      refused here even when unknown keys are accepted (upstream ``allow_host_key_change``
      turns verification off altogether).
    * **Atomic uploads**: ``store_file`` writes under the final name, so a reader can pick up
      half a file; :meth:`get_client` uploads to a temporary name and renames with
      ``posix-rename``.
    * **Streaming with resume**: ``retrieve_file`` restarts from zero after a dropped
      connection; the client resumes at the received offset.
    * **Foreign file names**: paramiko decodes a whole listing as strict UTF-8, so one
      cp1252 name fails it; the client skips that name with a warning (``encoding`` extra).

    :meth:`get_client` returns a new :class:`~threekit_pipeline.ftp.sftp.SftpClient` each
    time (the hook keeps no connection for the pipelines); the upstream methods keep working.
    """

    hook_name = "SFTP (Threekit transfers)"

    def get_settings(self) -> SftpSettings:
        """Connection settings; masks the password and private key first."""
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.ssh_conn_id)
        extra = conn.extra_dejson
        for secret in (conn.password, extra.get("private_key"), extra.get("private_key_passphrase")):
            if secret:
                mask_secret(secret)
        return sftp_settings_from_connection(self.ssh_conn_id, conn, extra)

    def get_client(self) -> SftpClient:
        """A new, not yet connected :class:`SftpClient` (use it as a context manager)."""
        return SftpClient(self.get_settings())

    def test_connection(self) -> tuple[bool, str]:
        """Log in with host-key verification and list the home folder; never shows the password."""
        return _test_connection(self.get_settings)
