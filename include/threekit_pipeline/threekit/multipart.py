"""Streaming ``multipart/form-data`` uploads on requests-toolbelt's ``MultipartEncoder``.

``requests`` builds multipart bodies from ``files=`` entirely in memory; for multi-GB model
files that is not acceptable. ``MultipartEncoder`` (requests-toolbelt, maintained by the
requests project) streams the file part from disk with a known length. An encoder can be
read once, so :class:`FileUpload` is a factory: the client calls it for every attempt and
gets a fresh encoder on a freshly opened file (see ``ThreekitClient.request``).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from requests_toolbelt.multipart.encoder import MultipartEncoder


class FileUpload:
    """One file part (plus optional plain form fields), re-encodable for each attempt.

    ``upload()`` returns ``(encoder, content_type)``; :meth:`close` closes every file handle
    the factory opened. Use it as a context manager.
    """

    def __init__(
        self,
        path: Path,
        *,
        field: str = "files",
        filename: str | None = None,
        content_type: str | None = None,
        fields: Mapping[str, str] | None = None,
    ):
        self.path = Path(path)
        self.field = field
        self.filename = filename or self.path.name
        self.part_type = content_type or mimetypes.guess_type(self.filename)[0] or "application/octet-stream"
        self.fields = dict(fields or {})
        self._handles: list[BinaryIO] = []

    def __call__(self) -> tuple[MultipartEncoder, str]:
        self.close()
        handle = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        self._handles.append(handle)
        encoder = MultipartEncoder(
            fields={**self.fields, self.field: (self.filename, handle, self.part_type)}
        )
        return encoder, encoder.content_type

    def close(self) -> None:
        """Close the file handles opened so far."""
        while self._handles:
            self._handles.pop().close()

    def __enter__(self) -> FileUpload:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
