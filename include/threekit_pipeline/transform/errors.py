"""Error types and the errors CSV shared by the catalog transform and translations validation.

The errors CSV has the columns ``file, line, column, value, reason``. ``line`` is the line
number a person sees in an editor (header = line 1; for a record spanning several physical
lines, the line it starts on); it is empty for file-level errors. Values are cut to
200 characters and made safe to open in a spreadsheet: a value starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return gets a leading ``'`` so it is never evaluated as a
formula. Control characters other than tab and line breaks are written as visible ``\\xNN``
escapes: the value of a row rejected for "contains control characters" shows where they are,
and viewing the file in a terminal cannot replay escape sequences.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ERRORS_COLUMNS = ("file", "line", "column", "value", "reason")
MAX_ERROR_VALUE_CHARS = 200
_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_INVISIBLE = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_INVISIBLE_RE = re.compile(_INVISIBLE)


def _escape_invisible(match: re.Match) -> str:
    return f"\\x{ord(match.group()):02x}"


class TransformError(Exception):
    """Base class of every error raised by the transform package."""


class MappingError(TransformError, ValueError):
    """A mapping YAML file is missing, malformed or inconsistent; the message names the file and key."""


class FileRejected(TransformError):
    """A whole input file cannot be used; ``reason`` says why (the file name is added by the caller)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ErrorRow:
    """One line of the errors CSV (``line`` None for a file-level error)."""

    file: str
    line: int | None
    column: str
    value: str
    reason: str


def safe_cell(text: str) -> str:
    """Truncate to 200 characters, show control characters as ``\\xNN``, neutralise formulas."""
    text = _INVISIBLE_RE.sub(_escape_invisible, text[:MAX_ERROR_VALUE_CHARS])
    if text.startswith(_FORMULA_TRIGGERS):
        return "'" + text
    return text


def safe_series(values: pd.Series) -> pd.Series:
    """Vectorised :func:`safe_cell` over a string Series."""
    values = values.astype("str").str.slice(0, MAX_ERROR_VALUE_CHARS)
    invisible = values.str.contains(_INVISIBLE, regex=True).to_numpy(dtype=bool)
    if invisible.any():
        escaped = values[invisible].map(lambda text: _INVISIBLE_RE.sub(_escape_invisible, text))
        values = values.where(~invisible, escaped)
    risky = values.str.match(r"[=+\-@\t\r]").to_numpy(dtype=bool)
    if risky.any():
        values = values.where(~risky, "'" + values)
    return values


def errors_frame(rows: Iterable[ErrorRow]) -> pd.DataFrame:
    """Errors as a DataFrame with the CSV columns (line as nullable integer)."""
    rows = list(rows)
    return pd.DataFrame(
        {
            "file": pd.Series([r.file for r in rows], dtype="str"),
            "line": pd.array([r.line for r in rows], dtype="Int64"),
            "column": pd.Series([r.column for r in rows], dtype="str"),
            "value": pd.Series([r.value for r in rows], dtype="str"),
            "reason": pd.Series([r.reason for r in rows], dtype="str"),
        }
    )


def write_errors_csv(path: Path, frames: Sequence[pd.DataFrame]) -> int:
    """Write the errors CSV atomically (header always present); returns the number of error lines.

    Every text column passes through the CSV-injection guard, the file and reason columns
    too: file names and reasons quote values taken from the input.
    """
    parts = [f for f in frames if len(f)]
    if parts:
        frame = pd.concat(parts, ignore_index=True)
    else:
        frame = errors_frame([])
    # Row errors of sources keyed by SKU carry it in a trailing ``sku`` column.
    columns = [*ERRORS_COLUMNS, "sku"] if "sku" in frame.columns else list(ERRORS_COLUMNS)
    frame = frame.loc[:, columns].copy()
    if "sku" in frame.columns:
        frame["sku"] = safe_series(frame["sku"].fillna(""))
    for column in ("file", "column", "value", "reason"):
        frame[column] = safe_series(frame[column].fillna(""))
    frame["line"] = frame["line"].astype("Int64")
    with atomic_write(path, newline="") as handle:
        frame.to_csv(handle, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    return len(frame)


class atomic_write:  # noqa: N801 - used like open()
    """Context manager writing a text file through a temporary sibling and ``os.replace``.

    Readers never see a half-written file and a failed run leaves the previous file intact.
    """

    def __init__(self, path: Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None):
        self.path = Path(path)
        self.mode = mode
        self.encoding = None if "b" in mode else encoding
        self.newline = None if "b" in mode else newline
        self._tmp: str | None = None
        self._handle = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._handle = os.fdopen(fd, self.mode, encoding=self.encoding, newline=self.newline)
        return self._handle

    def __exit__(self, exc_type, exc, tb):
        assert self._handle is not None and self._tmp is not None
        self._handle.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            os.unlink(self._tmp)
        return False
