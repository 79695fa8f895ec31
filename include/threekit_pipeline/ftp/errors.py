"""Errors raised by :mod:`threekit_pipeline.ftp`.

Every message names the server (``host:port``), the operation and the remote path, and
never contains the password.
"""

from __future__ import annotations


class FtpError(Exception):
    """Base class of FTP errors; ``code`` is the FTP reply code when there was one."""

    def __init__(self, message: str, *, host: str = "", operation: str = "", path: str = "",
                 code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.host = host
        self.operation = operation
        self.path = path
        self.code = code

    def __str__(self) -> str:
        return self.message


class FtpPermanentError(FtpError):
    """Repeating the operation will not help (login refused, permission, bad certificate...)."""


class FtpTransientError(FtpError):
    """The connection dropped or the server asked to try later; the operation may be retried."""


class FtpNotFound(FtpPermanentError, FileNotFoundError):
    """The remote file or directory does not exist (reply 550).

    Also a :class:`FileNotFoundError`, so code written for local files handles it naturally.
    """

    def __init__(self, message: str, **kwargs) -> None:
        FtpPermanentError.__init__(self, message, **kwargs)
        self.args = (message,)
