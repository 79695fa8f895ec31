"""Which source a file belongs to, and how files form batches by their date stamp.

A stamp is ``_YYYYMMDD`` optionally followed by ``HHMMSS`` or ``_HHMMSS``, right before the
extension(s): ``products_20261123.csv``, ``prices_20261123_101500.csv.gz``,
``options_20261123101500.xlsx``. Files sharing a stamp form one batch.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from dataclasses import dataclass, field
from datetime import date, datetime

from threekit_pipeline.transform.mapping import Mapping

_STAMP_AT_END = re.compile(r"_(\d{8})(?:_?(\d{6}))?$")
# Extensions stripped before looking for the stamp ("products_20261123.csv.gz").
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,4}$")
_COMPRESSION_SUFFIXES = (".gz",)


@dataclass(frozen=True)
class Batch:
    """Files delivered together: same stamp (``stamp``/``day`` None for an unstamped file)."""

    stamp: str | None
    day: date | None
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"stamp": self.stamp, "day": self.day.isoformat() if self.day else None, "files": list(self.files)}


def _base(path: str) -> str:
    return posixpath.basename(str(path).replace("\\", "/"))


def file_stamp(path: str) -> tuple[str, date] | None:
    """``("20261123", date)`` or ``("20261123_101500", date)`` for a stamped name, else None."""
    stem = _base(path)
    while True:
        stripped = _EXTENSION.sub("", stem)
        if stripped == stem:
            break
        stem = stripped
    match = _STAMP_AT_END.search(stem)
    if not match:
        return None
    day_text, time_text = match.group(1), match.group(2)
    try:
        moment = datetime.strptime(day_text + (time_text or "000000"), "%Y%m%d%H%M%S")
    except ValueError:
        return None
    stamp = f"{day_text}_{time_text}" if time_text else day_text
    return stamp, moment.date()


def group_batches(paths: list[str], mapping: Mapping | None = None) -> list[Batch]:
    """Group file paths into batches: oldest stamp first, unstamped files last (one batch each).

    Pure: only names are looked at. Within a batch files are ordered by name. ``mapping`` is
    accepted for symmetry with :func:`classify`; every path is kept, whether or not it
    classifies, so an unknown file is reported by the transform rather than silently left out.
    """
    stamped: dict[str, tuple[date, list[str]]] = {}
    unstamped: list[str] = []
    for path in paths:
        found = file_stamp(path)
        if found is None:
            unstamped.append(path)
        else:
            stamp, day = found
            stamped.setdefault(stamp, (day, []))[1].append(path)
    batches = [
        Batch(stamp=stamp, day=day, files=sorted(files, key=lambda p: (_base(p), p)))
        for stamp, (day, files) in sorted(stamped.items(), key=lambda item: _stamp_key(item[0]))
    ]
    batches.extend(
        Batch(stamp=None, day=None, files=[path]) for path in sorted(unstamped, key=lambda p: (_base(p), p))
    )
    return batches


def _stamp_key(stamp: str) -> tuple[str, str, str]:
    day, _, time = stamp.partition("_")
    return day, time or "000000", stamp


def classify(path: str, mapping: Mapping) -> str | None:
    """The source (``products``, ``options``, ``prices``, ``parts``) a file belongs to, or None.

    Patterns are case-insensitive globs on the file name; a ``.gz`` suffix is ignored so
    ``products_20261123.csv.gz`` matches ``products*.csv``. Sources are tried in the order
    products, options, prices, parts.
    """
    name = _base(path).lower()
    candidates = [name]
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            candidates.append(name[: -len(suffix)])
    for source_name, source in mapping.sources.items():
        for pattern in source.patterns:
            pattern = pattern.lower()
            if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
                return source_name
    return None
