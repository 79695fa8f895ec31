"""Request-body plumbing for the threekit-sandbox: bounded body readers and a streaming
multipart/form-data parser (uploads are spooled to temporary files, never held whole in
memory once they grow past a few megabytes)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from email.message import Message
from typing import BinaryIO

SPOOL_LIMIT = 4 * 1024 * 1024
READ_SIZE = 64 * 1024
MAX_PART_HEADER_BYTES = 16 * 1024


class BodyError(Exception):
    """The request body is malformed (maps to an HTTP 400/422 answer)."""


class BodyReader:
    """Reads exactly one request body from the connection: ``Content-Length`` or chunked."""

    def __init__(self, stream: BinaryIO, content_length: int | None, chunked: bool) -> None:
        self._stream = stream
        self._chunked = chunked
        self._remaining = content_length or 0
        self._chunk_left = 0
        self._done = not chunked and not content_length
        self.bytes_read = 0

    @property
    def exhausted(self) -> bool:
        """Whether the whole body has been consumed."""
        return self._done

    def read(self, size: int = READ_SIZE) -> bytes:
        """Up to ``size`` bytes of the body; ``b""`` at its end."""
        if self._done or size <= 0:
            return b""
        data = self._read_chunked(size) if self._chunked else self._read_plain(size)
        self.bytes_read += len(data)
        return data

    def _read_plain(self, size: int) -> bytes:
        data = self._stream.read(min(size, self._remaining))
        if not data:
            raise BodyError(f"request body ended after {self.bytes_read} bytes, before Content-Length")
        self._remaining -= len(data)
        if self._remaining == 0:
            self._done = True
        return data

    def _read_chunked(self, size: int) -> bytes:
        if self._chunk_left == 0:
            line = self._stream.readline(1024)
            try:
                self._chunk_left = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BodyError("malformed chunked request body") from None
            if self._chunk_left == 0:
                # Trailer section ends with an empty line.
                while self._stream.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                self._done = True
                return b""
        data = self._stream.read(min(size, self._chunk_left))
        if not data:
            raise BodyError("chunked request body ended early")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._stream.readline(8)  # CRLF after the chunk data
        return data

    def read_all(self, limit: int) -> bytes:
        """The whole (remaining) body; :class:`BodyError` when it exceeds ``limit`` bytes."""
        parts = []
        total = 0
        while True:
            data = self.read(READ_SIZE)
            if not data:
                return b"".join(parts)
            total += len(data)
            if total > limit:
                raise BodyError(f"request body larger than {limit} bytes")
            parts.append(data)

    def drain(self, limit: int = 64 * 1024 * 1024) -> bool:
        """Discard the rest of the body; False when more than ``limit`` bytes remained."""
        discarded = 0
        while not self._done:
            data = self.read(READ_SIZE)
            if not data:
                break
            discarded += len(data)
            if discarded > limit:
                return False
        return True


@dataclass
class FormPart:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str | None
    file: tempfile.SpooledTemporaryFile = field(repr=False)
    size: int = 0

    def read_bytes(self) -> bytes:
        """The part's whole content (use for small fields and JSON payloads only)."""
        self.file.seek(0)
        return self.file.read()

    def text(self) -> str:
        """The part's content decoded as UTF-8."""
        try:
            return self.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BodyError(f"form field '{self.name}' is not valid UTF-8") from None

    def close(self) -> None:
        """Release the spooled content."""
        self.file.close()


def parse_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """Split a Content-Type header into the lower-cased media type and its parameters."""
    message = Message()
    message["Content-Type"] = value or "application/octet-stream"
    params = {k.lower(): v for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_type().lower(), params


def _parse_part_headers(raw: bytes) -> tuple[str, str | None, str | None]:
    message = Message()
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        if not line:
            continue
        if ":" not in line:
            raise BodyError(f"malformed multipart part header: {line[:80]!r}")
        key, value = line.split(":", 1)
        message[key.strip()] = value.strip()
    disposition = message.get("Content-Disposition")
    if not disposition:
        raise BodyError("multipart part without Content-Disposition header")
    name = message.get_param("name", header="Content-Disposition")
    filename = message.get_filename()
    if name is None:
        raise BodyError("multipart part without a field name")
    if isinstance(name, tuple):  # RFC 2231 encoded
        name = name[2]
    return str(name), filename, message.get("Content-Type")


def parse_multipart(reader: BodyReader, boundary: str, spool_dir: str | None = None) -> list[FormPart]:
    """Parse a multipart/form-data body into :class:`FormPart` objects (content spooled).

    The caller owns the returned parts and must ``close()`` them.
    """
    if not boundary:
        raise BodyError("multipart body without a boundary parameter")
    delimiter = b"--" + boundary.encode("latin-1")
    separator = b"\r\n" + delimiter
    buffer = b"\r\n"  # lets the first delimiter match the same CRLF-prefixed pattern
    parts: list[FormPart] = []

    def fill() -> bool:
        nonlocal buffer
        data = reader.read(READ_SIZE)
        if not data:
            return False
        buffer += data
        return True

    try:
        # Preamble: skip everything up to the first delimiter.
        while (pos := buffer.find(separator)) < 0:
            buffer = buffer[-len(separator) :]
            if not fill():
                raise BodyError("multipart body has no opening boundary")
        buffer = buffer[pos + len(separator) :]
        while True:
            while len(buffer) < 2:
                if not fill():
                    raise BodyError("multipart body ends without a closing boundary")
            if buffer.startswith(b"--"):
                reader.drain()  # epilogue
                return parts
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                if len(buffer) > MAX_PART_HEADER_BYTES:
                    raise BodyError("multipart part headers too large")
                if not fill():
                    raise BodyError("multipart body ends inside part headers")
            header_block = buffer[:end]
            # Drop the rest of the delimiter line (transport padding) before the headers.
            first_line_end = header_block.find(b"\r\n")
            headers = header_block[first_line_end + 2 :] if first_line_end >= 0 else b""
            buffer = buffer[end + 4 :]
            name, filename, content_type = _parse_part_headers(headers)
            spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_LIMIT, dir=spool_dir)
            part = FormPart(name=name, filename=filename, content_type=content_type, file=spooled)
            parts.append(part)
            while True:
                pos = buffer.find(separator)
                if pos >= 0:
                    spooled.write(buffer[:pos])
                    part.size += pos
                    buffer = buffer[pos + len(separator) :]
                    break
                keep = len(separator) - 1
                if len(buffer) > keep:
                    chunk = buffer[:-keep]
                    spooled.write(chunk)
                    part.size += len(chunk)
                    buffer = buffer[-keep:]
                if not fill():
                    raise BodyError(f"multipart body ends inside part '{name}'")
            spooled.seek(0)
    except BaseException:
        for part in parts:
            part.close()
        raise
