"""Value objects shared by the FTP client, the completeness rules and the Airflow layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class ServerSettings:
    """What every transfer connection's settings share: validation and the ``host:port`` address.

    Mixed into the frozen dataclasses :class:`FtpSettings` and
    :class:`~threekit_pipeline.ftp.sftp.SftpSettings`, which both declare ``host``, ``port``,
    ``retries``, ``connect_timeout`` and ``data_timeout`` (seconds). Invalid values raise
    ``ValueError`` naming the settings class and the field.
    """

    host: str
    port: int
    retries: int
    connect_timeout: float
    data_timeout: float

    def __post_init__(self) -> None:
        kind = type(self).__name__
        if not self.host:
            raise ValueError(f"{kind}.host is required")
        if not 0 < int(self.port) < 65536:
            raise ValueError(f"{kind}.port must be 1..65535, got {self.port}")
        if self.retries < 0:
            raise ValueError(f"{kind}.retries must be >= 0, got {self.retries}")
        if self.connect_timeout <= 0 or self.data_timeout <= 0:
            raise ValueError(f"{kind} timeouts must be positive")

    @property
    def address(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class FtpSettings(ServerSettings):
    """How to reach and talk to one FTP/FTPS server.

    ``tls`` selects explicit FTPS (AUTH TLS, then PROT P for every data connection).
    Certificates and host names are verified unless ``verify`` is False; ``ca_file``
    names a PEM bundle to trust instead of the system store. ``retries`` and
    ``retry_backoff`` (seconds, doubled after each attempt) apply to operations that are
    safe to repeat after a reconnect.
    """

    host: str
    port: int = 21
    user: str = "anonymous"
    password: str = field(default="", repr=False)
    tls: bool = False
    verify: bool = True
    ca_file: str | None = None
    passive: bool = True
    connect_timeout: float = 30.0
    data_timeout: float = 120.0
    encoding: str = "utf-8"
    retries: int = 3
    retry_backoff: float = 1.0


@dataclass(frozen=True)
class RemoteFile:
    """One entry of a remote directory listing (``modified`` is timezone-aware UTC)."""

    path: str
    name: str
    size: int | None
    modified: datetime | None
    is_dir: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (``modified`` as ISO 8601), e.g. for XCom or trigger events."""
        return {
            "path": self.path,
            "name": self.name,
            "size": self.size,
            "modified": self.modified.isoformat() if self.modified else None,
            "is_dir": self.is_dir,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RemoteFile:
        """Inverse of :meth:`to_dict`."""
        modified = data.get("modified")
        if isinstance(modified, str):
            modified = datetime.fromisoformat(modified)
        if isinstance(modified, datetime) and modified.tzinfo is None:
            modified = modified.replace(tzinfo=UTC)
        path = data["path"]
        return cls(
            path=path,
            name=data.get("name") or path.rstrip("/").rsplit("/", 1)[-1],
            size=data.get("size"),
            modified=modified,
            is_dir=bool(data.get("is_dir", False)),
        )
