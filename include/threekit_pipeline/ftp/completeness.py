"""Decide which remote files are completely written (pure logic, no I/O).

An FTP listing cannot tell whether a partner is still uploading a file. Two signals are
supported:

* **Stability** (default): a file is complete once its size and modification time have
  not changed across polls for at least ``stable_seconds``. The caller lists the folder
  on every poll and carries the returned snapshot to the next one.
* **Markers**: when ``marker_suffixes`` is set (e.g. ``(".done", ".ok")``), a file is
  complete as soon as ``<name><suffix>`` exists next to it, and never before; the
  partner writes the marker after the data file, so a marker older than its data file
  (left from an earlier delivery) does not count. Markers are not returned as data files.

Temporary upload names (``.*.part``, ``*.tmp``, ``*.filepart``...) are always ignored.

The snapshot is a JSON-serialisable dict ``{path: [size, modified_iso_or_null, since]}``
where ``since`` is the epoch time at which that exact (size, modified) pair was first
seen, so polls may be more frequent than ``stable_seconds``.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from threekit_pipeline.ftp.models import RemoteFile

log = logging.getLogger(__name__)

#: Names that uploaders use while a transfer is in progress.
DEFAULT_IGNORE: tuple[str, ...] = (
    ".*.part",
    "*.part",
    "*.tmp",
    "*.temp",
    "*.filepart",
    "*.partial",
    "*.crdownload",
    ".~*",
    "~$*",
)

Snapshot = dict[str, list]


def _as_tuple(value: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class CompletenessPolicy:
    """Which files to consider and when they count as complete.

    ``patterns`` are :mod:`fnmatch` globs matched case-insensitively against the file name
    (not the path), as the mapping's patterns are. ``ignore`` globs win over ``patterns``.
    """

    patterns: Sequence[str] = ("*",)
    stable_seconds: float = 60.0
    marker_suffixes: tuple[str, ...] = ()
    ignore: Sequence[str] = field(default=DEFAULT_IGNORE)

    def __post_init__(self) -> None:
        object.__setattr__(self, "patterns", _as_tuple(self.patterns))
        object.__setattr__(self, "marker_suffixes", _as_tuple(self.marker_suffixes))
        object.__setattr__(self, "ignore", _as_tuple(self.ignore))
        if not self.patterns:
            raise ValueError("CompletenessPolicy.patterns must not be empty")
        if self.stable_seconds < 0:
            raise ValueError(f"CompletenessPolicy.stable_seconds must be >= 0, got {self.stable_seconds}")
        for suffix in self.marker_suffixes:
            if not suffix or "/" in suffix:
                raise ValueError(f"invalid marker suffix {suffix!r}")

    @property
    def uses_markers(self) -> bool:
        """True when completeness is signalled by marker files."""
        return bool(self.marker_suffixes)

    def is_ignored(self, name: str) -> bool:
        """True for temporary upload names."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.ignore)

    def is_marker(self, name: str) -> bool:
        """True when ``name`` is a marker file under this policy."""
        return any(name.endswith(suffix) and len(name) > len(suffix) for suffix in self.marker_suffixes)

    def is_candidate(self, name: str) -> bool:
        """True when ``name`` is a data file this policy looks at."""
        if self.is_ignored(name) or self.is_marker(name):
            return False
        folded = name.lower()
        return any(fnmatch.fnmatchcase(folded, pattern.lower()) for pattern in self.patterns)

    def marker_names(self, name: str) -> tuple[str, ...]:
        """The marker names that would signal ``name`` complete."""
        return tuple(name + suffix for suffix in self.marker_suffixes)


def _state(entry: RemoteFile) -> tuple[int | None, str | None]:
    return entry.size, entry.modified.isoformat() if entry.modified else None


def _previous_state(record: Sequence | None) -> tuple[tuple[int | None, str | None], float | None] | None:
    """(state, since) from a snapshot entry; tolerant of older two-element entries."""
    if not record:
        return None
    size, modified = record[0], record[1]
    since = float(record[2]) if len(record) > 2 and record[2] is not None else None
    return (size, modified), since


def _older(marker: RemoteFile, data: RemoteFile) -> bool:
    """True when the marker was written before its data file (a stale marker of an earlier delivery)."""
    return marker.modified is not None and data.modified is not None and marker.modified < data.modified


def complete_files(
    previous: Snapshot | None,
    current: list[RemoteFile],
    policy: CompletenessPolicy,
    now: datetime | float,
) -> tuple[list[RemoteFile], Snapshot]:
    """Return ``(complete files, snapshot for the next poll)``.

    ``previous`` is the snapshot returned by the previous poll (None on the first poll);
    ``current`` the listing just taken; ``now`` the poll time (datetime or epoch seconds).
    Complete files are sorted by modification time, then path.
    """
    now_ts = now.timestamp() if isinstance(now, datetime) else float(now)
    previous = previous or {}
    present = {entry.name: entry for entry in current if not entry.is_dir}
    candidates = [entry for entry in current if not entry.is_dir and policy.is_candidate(entry.name)]

    snapshot: Snapshot = {}
    complete: list[RemoteFile] = []
    waiting: list[str] = []
    for entry in candidates:
        state = _state(entry)
        earlier = _previous_state(previous.get(entry.path))
        if earlier is not None and earlier[0] == state and earlier[1] is not None:
            since = earlier[1]
        else:
            # First sighting, or it changed since the last poll: the clock starts now.
            since = now_ts
        snapshot[entry.path] = [state[0], state[1], since]

        if policy.uses_markers:
            done = any(
                marker in present and not _older(present[marker], entry) for marker in policy.marker_names(entry.name)
            )
        else:
            done = earlier is not None and earlier[0] == state and now_ts - since >= policy.stable_seconds
        if done:
            complete.append(entry)
        else:
            waiting.append(entry.name)

    complete.sort(key=lambda f: (f.modified.timestamp() if f.modified else 0.0, f.path))
    if candidates:
        log.info(
            "%d of %d matching file(s) complete%s",
            len(complete),
            len(candidates),
            f"; still waiting for: {', '.join(sorted(waiting)[:20])}" if waiting else "",
        )
    return complete, snapshot


def markers_for(entry: RemoteFile, current: Iterable[RemoteFile], policy: CompletenessPolicy) -> list[RemoteFile]:
    """The marker files in ``current`` that belong to ``entry`` (to archive them together)."""
    wanted = set(policy.marker_names(entry.name))
    directory = entry.path.rsplit("/", 1)[0] if "/" in entry.path else ""
    return [
        other
        for other in current
        if other.name in wanted and (other.path.rsplit("/", 1)[0] if "/" in other.path else "") == directory
    ]
