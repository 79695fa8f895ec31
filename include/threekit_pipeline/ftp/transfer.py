"""One transfer interface over FTP, FTPS and SFTP.

:class:`TransferClient` is what the pipelines use; :func:`open_client` returns the client
for a connection's settings (:class:`~threekit_pipeline.ftp.models.FtpSettings` for ``ftp``
and ``ftps``, :class:`~threekit_pipeline.ftp.sftp.SftpSettings` for ``sftp``), so a feed
only names a connection. Both clients raise the same errors (``FtpNotFound``,
``FtpPermanentError``, ``FtpTransientError``).
"""

from __future__ import annotations

import logging
import posixpath
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from threekit_pipeline.ftp.errors import FtpNotFound
from threekit_pipeline.ftp.models import FtpSettings, RemoteFile, ServerSettings
from threekit_pipeline.ftp.paths import join_remote

if TYPE_CHECKING:
    from threekit_pipeline.ftp.sftp import SftpSettings

ProgressCallback = Callable[[int, int | None], None]
SessionT = TypeVar("SessionT")
T = TypeVar("T")


@runtime_checkable
class TransferClient(Protocol):
    """The file operations of a transfer connection (a context manager; closes on exit)."""

    def __enter__(self) -> TransferClient: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def close(self) -> None: ...

    def list_dir(self, path: str) -> list[RemoteFile]: ...

    def stat(self, path: str) -> RemoteFile | None: ...

    def exists(self, path: str) -> bool: ...

    def makedirs(self, path: str) -> None: ...

    def rename(self, src: str, dst: str) -> None: ...

    def delete(self, path: str) -> None: ...

    def move(self, src: str, dst_dir: str, overwrite: bool = False) -> str: ...

    def download(self, remote: str, local: Path, progress: ProgressCallback | None = None) -> Path: ...

    def read_bytes(self, remote: str, max_bytes: int = 10_000_000) -> bytes: ...

    def upload_atomic(self, local: Path, remote: str, progress: ProgressCallback | None = None) -> str: ...

    def write_bytes_atomic(self, data: bytes, remote: str) -> str: ...


class TransferClientBase(Generic[SessionT]):
    """What the FTP and SFTP clients share: naming, the collision-safe move, the context manager.

    A subclass holds ``settings`` (a :class:`~threekit_pipeline.ftp.models.ServerSettings`),
    sets ``protocol`` (``"FTP"``, ``"SFTP"``: the first word of its error messages) and
    ``log``, and provides the protocol steps on an open session (``SessionT``: an
    ``ftplib.FTP`` or a ``paramiko.SFTPClient``): :meth:`_retrying`, :meth:`_stat_on`,
    :meth:`_rename_on` (to a free name), :meth:`_replace_on` (over an existing file),
    :meth:`makedirs` and :meth:`close`.
    """

    protocol: ClassVar[str]
    log: ClassVar[logging.Logger]
    settings: ServerSettings

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- provided by the protocol's client -------------------------------------------------

    def close(self) -> None:
        raise NotImplementedError

    def makedirs(self, path: str) -> None:
        raise NotImplementedError

    def _retrying(self, operation: str, path: str, attempt: Callable[[SessionT], T],
                  state: dict | None = None) -> T:
        raise NotImplementedError

    def _stat_on(self, session: SessionT, path: str) -> RemoteFile | None:
        raise NotImplementedError

    def _rename_on(self, session: SessionT, src: str, dst: str) -> None:
        raise NotImplementedError

    def _replace_on(self, session: SessionT, src: str, dst: str) -> None:
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------------

    @staticmethod
    def _name_of(path: str) -> str:
        """Last component of a remote path (``/`` for the root)."""
        stripped = path.rstrip("/")
        return posixpath.basename(stripped) if stripped else "/"

    @staticmethod
    def _temp_name(remote: str) -> str:
        """A fresh hidden name beside ``remote`` for an atomic upload: ``.<name>.<8 hex>.part``."""
        directory, name = posixpath.split(remote)
        temp = f".{name}.{secrets.token_hex(4)}.part"
        return join_remote(directory, temp) if directory else temp

    def move(self, src: str, dst_dir: str, overwrite: bool = False) -> str:
        """Move ``src`` into ``dst_dir`` (created if needed) and return the final remote path.

        Never overwrites unless ``overwrite``: when ``dst_dir/name`` exists the file becomes
        ``stem.1.ext``, ``stem.2.ext``... Moving a file into its own directory is a no-op.
        After a dropped connection the retry first checks whether the move already went
        through. :class:`~threekit_pipeline.ftp.errors.FtpNotFound` when ``src`` is missing.
        """
        name = self._name_of(src)
        if posixpath.normpath(posixpath.dirname(src) or ".") == posixpath.normpath(dst_dir or "."):
            return src
        self.makedirs(dst_dir)
        stem, ext = posixpath.splitext(name)
        state: dict = {}
        address = self.settings.address

        def attempt(session: SessionT) -> str:
            chosen = state.get("target")
            if chosen and self._stat_on(session, src) is None and self._stat_on(session, chosen) is not None:
                return chosen  # the previous attempt went through before the connection dropped
            if self._stat_on(session, src) is None:
                raise FtpNotFound(f"{self.protocol} move {src!r} on {address}: source does not exist",
                                  host=address, operation="move", path=src, code=550)
            target = join_remote(dst_dir, name)
            if overwrite:
                state["target"] = target
                self._replace_on(session, src, target)
                return target
            counter = 0
            while self._stat_on(session, target) is not None:
                counter += 1
                target = join_remote(dst_dir, f"{stem}.{counter}{ext}")
            state["target"] = target
            self._rename_on(session, src, target)
            return target

        final = self._retrying("move", src, attempt, state)
        self.log.info("Moved %s -> %s%s", src, final, " (name was taken)" if self._name_of(final) != name else "")
        return final


def open_client(settings: FtpSettings | SftpSettings) -> TransferClient:
    """A new, not yet connected client for ``settings`` (connects on first use)."""
    if isinstance(settings, FtpSettings):
        from threekit_pipeline.ftp.client import FtpClient

        return FtpClient(settings)
    from threekit_pipeline.ftp.sftp import SftpClient, SftpSettings

    if isinstance(settings, SftpSettings):
        return SftpClient(settings)
    raise TypeError(f"no transfer client for {type(settings).__name__}")
