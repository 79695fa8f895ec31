"""Remote and local path helpers for FTP transfers.

Remote names come from a partner's server and are never trusted as local paths:
:func:`safe_local_path` reduces them to one harmless file name inside the staging
directory. Remote paths are POSIX paths whatever the local OS is.
"""

from __future__ import annotations

import hashlib
import posixpath
import unicodedata
from datetime import date
from pathlib import Path

#: Longest file name (in UTF-8 bytes) accepted on common local file systems.
MAX_NAME_BYTES = 255


class UnsafeRemoteName(ValueError):
    """A remote file name cannot be turned into a safe local file name."""


def _clean_name(remote_name: str) -> str:
    # Both separators count: a Windows-style "..\\..\\x" must not climb out either.
    last = remote_name.replace("\\", "/").split("/")[-1]
    last = unicodedata.normalize("NFC", last)
    # NUL, C0/C1 control characters and DEL are dropped: they confuse terminals, logs and
    # some file systems, and are never part of a legitimate ERP file name.
    last = "".join(ch for ch in last if unicodedata.category(ch) != "Cc")
    return last.strip()


def safe_local_path(staging_dir: Path, remote_name: str) -> Path:
    """Map a remote file name (or path) to a path directly inside ``staging_dir``.

    Directories are stripped (``/`` and ``\\`` alike), control characters and NUL removed,
    surrounding white space trimmed. Names that are empty afterwards, consist only of dots
    (``.``, ``..``) or are longer than 255 UTF-8 bytes raise :class:`UnsafeRemoteName`.
    The result is always a direct child of ``staging_dir``.
    """
    if not isinstance(remote_name, str):
        raise UnsafeRemoteName(f"remote name must be a string, got {type(remote_name).__name__}")
    name = _clean_name(remote_name)
    if not name or set(name) == {"."}:
        raise UnsafeRemoteName(f"remote name {remote_name!r} has no usable file name")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise UnsafeRemoteName(
            f"remote name {remote_name[:80]!r}... is longer than {MAX_NAME_BYTES} bytes; refusing to truncate it"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsafeRemoteName(f"remote name {remote_name!r} is not valid Unicode text") from exc
    staging = Path(staging_dir)
    candidate = staging / name
    # Defence in depth: whatever the cleaning above missed, the result must stay inside.
    if candidate.parent != staging or candidate.name != name:
        raise UnsafeRemoteName(f"remote name {remote_name!r} does not map to a file inside {staging}")
    return candidate


def join_remote(*parts: str) -> str:
    """Join remote path parts with ``/`` (POSIX), whatever the local OS.

    Later parts are always treated as relative (a leading ``/`` does not discard what came
    before, unlike :func:`posixpath.join`); duplicate slashes and ``.`` segments are removed
    and ``..`` is resolved textually. The result is absolute when the first part is.
    """
    pieces = [str(part) for part in parts if part not in (None, "")]
    if not pieces:
        return ""
    absolute = pieces[0].startswith("/")
    joined = "/".join(piece.strip("/") for piece in pieces)
    normalised = posixpath.normpath("/" + joined if absolute else joined)
    if normalised.startswith("//"):
        normalised = "/" + normalised.lstrip("/")
    return "" if normalised == "." else normalised


def archive_dir_for(archive_root: str, day: date) -> str:
    """The dated archive folder ``<archive_root>/YYYY/MM/DD`` for ``day``."""
    return join_remote(archive_root, f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}")


def part_path(local: Path) -> Path:
    """Where a download of ``local`` is written until complete: ``<name>.part`` beside it, or
    ``.<digest>.part`` when that name would exceed :data:`MAX_NAME_BYTES`."""
    candidate = local.with_name(local.name + ".part")
    if len(candidate.name.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES:
        return candidate
    digest = hashlib.sha256(local.name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return local.with_name(f".{digest}.part")
