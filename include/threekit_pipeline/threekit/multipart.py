"""A streaming ``multipart/form-data`` body for uploading large files in constant memory.

``requests`` builds multipart bodies from ``files=`` entirely in memory; for multi-GB model
files that is not acceptable. :class:`MultipartFileBody` is a file-like object with a known
length: ``requests`` sends it with a ``Content-Length`` header and urllib3 reads it in
blocks, so only one block of the file is in memory at a time. It can be rewound with
``seek(0)``, which the client does before every retry.
"""

from __future__ import annotations

import mimetypes
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO


def _quote(value: str) -> str:
    # HTML5 form encoding: escape the characters that would end the quoted string.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartFileBody:
    """One file part (plus optional plain form fields) read lazily from disk."""

    block_size = 1 << 16

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
        self.filename = filename or self.path.name
        boundary = f"threekit-pipeline-{uuid.uuid4().hex}"
        self.content_type = f"multipart/form-data; boundary={boundary}"
        part_type = content_type or mimetypes.guess_type(self.filename)[0] or "application/octet-stream"
        head = b""
        for name, value in (fields or {}).items():
            head += (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n{value}\r\n'
            ).encode()
        head += (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{_quote(field)}"; filename="{_quote(self.filename)}"\r\n'
            f"Content-Type: {part_type}\r\n\r\n"
        ).encode()
        self._head = head
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self._file_size = os.stat(self.path).st_size
        self._length = len(self._head) + self._file_size + len(self._tail)
        self._pos = 0
        self._fh: BinaryIO | None = None

    def __len__(self) -> int:
        return self._length

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Rewind (or move) within the body; used to resend it on a retry."""
        if whence == os.SEEK_SET:
            target = offset
        elif whence == os.SEEK_CUR:
            target = self._pos + offset
        else:
            target = self._length + offset
        if not 0 <= target <= self._length:
            raise ValueError(f"seek position {target} outside the body (0..{self._length})")
        self._pos = target
        return self._pos

    def read(self, size: int = -1) -> bytes:
        """Return up to ``size`` bytes (all remaining when negative) from the current position."""
        if size is None or size < 0:
            size = self._length - self._pos
        out = bytearray()
        while size > 0 and self._pos < self._length:
            chunk = self._read_at(self._pos, size)
            out += chunk
            self._pos += len(chunk)
            size -= len(chunk)
        return bytes(out)

    def _read_at(self, pos: int, size: int) -> bytes:
        head_len = len(self._head)
        file_end = head_len + self._file_size
        if pos < head_len:
            return self._head[pos : pos + size]
        if pos < file_end:
            if self._fh is None:
                self._fh = open(self.path, "rb")  # noqa: SIM115 - closed in close()
            self._fh.seek(pos - head_len)
            chunk = self._fh.read(min(size, file_end - pos))
            if not chunk:
                raise OSError(f"{self.path} shrank while it was being uploaded")
            return chunk
        return self._tail[pos - file_end : pos - file_end + size]

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self.read(self.block_size)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        """Close the underlying file handle (the body can still be re-read afterwards)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> MultipartFileBody:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
