"""One transfer interface over FTP, FTPS and SFTP.

:class:`TransferClient` is what the pipelines use; :func:`open_client` returns the client
for a connection's settings (:class:`~threekit_pipeline.ftp.models.FtpSettings` for ``ftp``
and ``ftps``, :class:`~threekit_pipeline.ftp.sftp.SftpSettings` for ``sftp``), so a feed
only names a connection. Both clients raise the same errors (``FtpNotFound``,
``FtpPermanentError``, ``FtpTransientError``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from threekit_pipeline.ftp.models import FtpSettings, RemoteFile

if TYPE_CHECKING:
    from threekit_pipeline.ftp.sftp import SftpSettings

ProgressCallback = Callable[[int, int | None], None]


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


def open_client(settings: FtpSettings | SftpSettings) -> TransferClient:
    """A new, not yet connected client for ``settings`` (connects on first use)."""
    if isinstance(settings, FtpSettings):
        from threekit_pipeline.ftp.client import FtpClient

        return FtpClient(settings)
    from threekit_pipeline.ftp.sftp import SftpClient, SftpSettings

    if isinstance(settings, SftpSettings):
        return SftpClient(settings)
    raise TypeError(f"no transfer client for {type(settings).__name__}")
