"""Inbound file selection, archiving and quarantine, shared by every inbound DAG.

No Airflow imports: tasks pass in what they read from the run context, so the rules are
testable without a scheduler. All FTP access goes through an open
:class:`threekit_pipeline.ftp.client.FtpClient` (or anything with the same methods).

Selection rule
--------------
* A scheduled or manual run processes every complete file waiting in the inbound folder,
  oldest date stamp first; files sharing a stamp form one batch; unstamped files come last.
* A backfill run (``run_type == "backfill"``), or a manual run with param ``replay=True``,
  processes the files whose date stamp falls in its data interval ``[start, end)``. A
  ``_YYYYMMDD`` stamp means that day 00:00 UTC, ``_YYYYMMDD_HHMMSS`` that exact UTC time.
  Files already processed are taken from the archive; files still waiting in the inbound
  folder are taken from there. Params ``replay_start`` / ``replay_end`` (ISO dates or
  datetimes, UTC) override the interval of a manual replay.
* A batch is processed whole: while one file of a stamp is still being uploaded, the other
  files of that stamp wait too (:func:`hold_back_incomplete_batches`).
* Param ``file`` selects one specific file: a bare name (looked up in the inbound folder,
  then in the archive day folder of its stamp) or an absolute path inside the inbound or
  archive folder.

Archive layout: ``<archive>/<source>/YYYY/MM/DD/<file>``, the date being the file's stamp
day (the processing day for unstamped files), e.g.
``/archive/catalog/2026/11/23/products_20261123.csv``. A file already inside the archive
(a replay) is never moved again. Archiving a file whose name already exists in the target
folder with the same content deletes the inbound copy (after the archived copy has been
verified) instead of creating a duplicate; different content gets a collision-safe name.

Rejected files go to ``<rejected>/<source>/<file>`` with ``<file>.errors.csv`` beside them
(collision-safe names; nothing is overwritten).

Public API
----------
``parse_stamp(name) -> datetime | None``
    UTC time encoded in a file name, or None.
``stamp_day(name, processing_day) -> date``
    The archive day of a file: its stamp day, else ``processing_day``.
``matches_patterns(name, patterns) -> bool``
    Case-insensitive glob match of a bare file name.
``selection_window(run_type, params, data_interval_start, data_interval_end) -> SelectionWindow``
    Decides between "everything waiting" and an interval replay.
``select_inbound_files(client, *, inbound_dir, archive_root, source, patterns, window,
complete=None, only_file=None, processing_day=None) -> list[InboundFile]``
    The ordered files a run must process.
``order_files(files) -> list[InboundFile]`` / ``group_by_stamp(files) -> list[list[InboundFile]]``
    Oldest stamp first, unstamped last; batches of files sharing a stamp.
``hold_back_incomplete_batches(selected, waiting) -> (ready, held)``
    Keeps a stamp batch out of the run while one of its files is still incomplete.
``archive_dir(archive_root, source, day) -> str`` / ``rejected_dir(rejected_root, source) -> str``
``archive_file(client, remote_path, *, archive_root, source, processing_day=None,
local_copy=None, scratch_dir=None) -> MoveOutcome``
    Moves a processed file into the archive (idempotent; see above).
``reject_file(client, remote_path, *, rejected_root, source, errors_csv=None, archive_root=None)
-> MoveOutcome``
    Quarantines a file with its errors CSV beside it.
``InboundFile.to_dict()`` / ``InboundFile.from_dict(d)``
    XCom-safe representation (small dicts, no data).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import posixpath
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# "_YYYYMMDD" optionally followed by "_HHMMSS", not followed by another digit. The last
# occurrence in the name wins (e.g. "catalog_v2_20261123_101500.csv").
_STAMP_RE = re.compile(r"_(\d{8})(?:_(\d{6}))?(?!\d)")

ORIGIN_INBOUND = "inbound"
ORIGIN_ARCHIVE = "archive"


class InboundSelectionError(ValueError):
    """A requested file or replay window cannot be resolved; the message says which and why."""


# --- Stamps and patterns ---------------------------------------------------------------


def parse_stamp(name: str) -> datetime | None:
    """UTC datetime encoded in a file name (``_YYYYMMDD`` or ``_YYYYMMDD_HHMMSS``), or None.

    Digit groups that are not a valid calendar date are ignored; an invalid time part
    leaves the day alone (``_20261123_256000`` is 2026-11-23 00:00).
    """
    base = posixpath.basename(name)
    for match in reversed(list(_STAMP_RE.finditer(base))):
        day_text, time_text = match.group(1), match.group(2)
        try:
            day = datetime.strptime(day_text, "%Y%m%d").replace(tzinfo=UTC)
        except ValueError:
            continue
        if time_text:
            try:
                return datetime.strptime(day_text + time_text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
            except ValueError:
                pass
        return day
    return None


def stamp_day(name: str, processing_day: date) -> date:
    """The day a file is archived under: its stamp day, else the processing day."""
    stamp = parse_stamp(name)
    return stamp.date() if stamp else processing_day


def matches_patterns(name: str, patterns: Sequence[str]) -> bool:
    """True when the bare file name matches one of the glob patterns (case-insensitive).

    Errors sidecars written by the pipelines (``*.errors.csv``) never match: ``products*.csv``
    must not pick up ``products_20261123.csv.errors.csv``. An empty pattern list matches every
    other name.
    """
    base = posixpath.basename(name).lower()
    if base.endswith(".errors.csv"):
        return False
    if not patterns:
        return True
    return any(fnmatch.fnmatchcase(base, pattern.lower()) for pattern in patterns)


# --- Files -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundFile:
    """One remote file selected for processing (no data, only where it is)."""

    path: str
    name: str
    size: int | None
    modified: datetime | None
    stamp: datetime | None
    origin: str = ORIGIN_INBOUND

    @property
    def from_archive(self) -> bool:
        return self.origin == ORIGIN_ARCHIVE

    @property
    def stamp_label(self) -> str:
        """Stamp as text for logs and reports (``unstamped`` when absent)."""
        if self.stamp is None:
            return "unstamped"
        if self.stamp.hour or self.stamp.minute or self.stamp.second:
            return self.stamp.strftime("%Y%m%d_%H%M%S")
        return self.stamp.strftime("%Y%m%d")

    def to_dict(self) -> dict[str, Any]:
        """Small JSON-serialisable dict for XCom."""
        return {
            "path": self.path,
            "name": self.name,
            "size": self.size,
            "modified": self.modified.isoformat() if self.modified else None,
            "stamp": self.stamp.isoformat() if self.stamp else None,
            "origin": self.origin,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InboundFile:
        """Inverse of :meth:`to_dict`; a missing stamp is read from the name."""
        name = data.get("name") or posixpath.basename(data["path"])
        return cls(
            path=data["path"],
            name=name,
            size=data.get("size"),
            modified=_parse_dt(data.get("modified")),
            stamp=_parse_dt(data.get("stamp")) or parse_stamp(name),
            origin=data.get("origin", ORIGIN_INBOUND),
        )

    @classmethod
    def from_remote(cls, remote: Any, origin: str = ORIGIN_INBOUND) -> InboundFile:
        """Build from a ``RemoteFile``, a dict (``path`` [+ ``size``, ``modified``]) or a path string."""
        if isinstance(remote, str):
            path, size, modified = remote, None, None
        elif isinstance(remote, Mapping):
            path, size, modified = remote["path"], remote.get("size"), _parse_dt(remote.get("modified"))
        else:
            path, size, modified = remote.path, getattr(remote, "size", None), getattr(remote, "modified", None)
        if isinstance(modified, str):
            modified = _parse_dt(modified)
        name = posixpath.basename(path)
        return cls(path=path, name=name, size=size, modified=modified, stamp=parse_stamp(name), origin=origin)


def _parse_dt(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InboundSelectionError(f"not an ISO date/datetime: {text!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# "name.N.ext": the collision-safe name the FTP client gives a later file whose name was taken.
_COLLISION_RE = re.compile(r"^(?P<stem>.+)\.(?P<n>\d+)(?P<ext>\.[^.]+)?$")


def _name_order(name: str) -> tuple[str, int]:
    """``products_20261122.1.csv`` sorts right after ``products_20261122.csv`` (it arrived later)."""
    match = _COLLISION_RE.match(name)
    if match:
        return match.group("stem") + (match.group("ext") or ""), int(match.group("n"))
    return name, 0


def order_files(files: Iterable[InboundFile]) -> list[InboundFile]:
    """Oldest stamp first, unstamped files last; within a stamp by name, a name's renamed later
    copies after it, archive copies before a file of the same name still waiting inbound."""
    far_future = datetime.max.replace(tzinfo=UTC)
    return sorted(
        files,
        key=lambda f: (
            f.stamp or far_future,
            _name_order(f.name),
            0 if f.origin == ORIGIN_ARCHIVE else 1,
            f.path,
        ),
    )


def group_by_stamp(files: Iterable[InboundFile]) -> list[list[InboundFile]]:
    """Ordered batches: files sharing a stamp are one batch; all unstamped files form the last one."""
    batches: dict[datetime | None, list[InboundFile]] = {}
    for item in order_files(files):
        batches.setdefault(item.stamp, []).append(item)
    return list(batches.values())


def hold_back_incomplete_batches(
    selected: Iterable[InboundFile], waiting: Iterable[Any]
) -> tuple[list[InboundFile], list[InboundFile]]:
    """Split ``selected`` (complete files) into those ready and those held back.

    ``waiting`` is every matching file in the inbound folder (``RemoteFile``s, dicts, paths
    or ``InboundFile``s). A file in ``waiting`` but not in ``selected`` is still incomplete;
    every selected file with the same stamp (or unstamped, when it is unstamped) is held
    back, so a batch is never imported half. Returns ``(ready, held)``, both ordered.
    """
    chosen = list(selected)
    chosen_paths = {f.path for f in chosen}
    incomplete_stamps = set()
    for item in waiting:
        entry = item if isinstance(item, InboundFile) else InboundFile.from_remote(item)
        if entry.path not in chosen_paths:
            incomplete_stamps.add(entry.stamp)
    ready = [f for f in chosen if f.stamp not in incomplete_stamps]
    held = [f for f in chosen if f.stamp in incomplete_stamps]
    return order_files(ready), order_files(held)


# --- Run window --------------------------------------------------------------------------


@dataclass(frozen=True)
class SelectionWindow:
    """Which files a run takes: everything waiting (``replay=False``) or stamps in ``[start, end)``."""

    replay: bool
    start: datetime | None = None
    end: datetime | None = None
    reason: str = ""

    def contains(self, moment: datetime) -> bool:
        if self.start is None or self.end is None:
            return False
        return self.start <= moment < self.end

    def days(self) -> list[date]:
        """Every UTC day touched by ``[start, end)`` (the archive day folders to look into)."""
        if self.start is None or self.end is None or self.end <= self.start:
            return []
        first = self.start.astimezone(UTC).date()
        last = (self.end.astimezone(UTC) - timedelta(microseconds=1)).date()
        return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]

    def describe(self) -> str:
        if not self.replay:
            return "all complete files waiting in the inbound folder"
        return f"replay of stamps in [{self.start.isoformat()}, {self.end.isoformat()})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "replay": self.replay,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SelectionWindow:
        return cls(
            replay=bool(data["replay"]),
            start=_parse_dt(data.get("start")),
            end=_parse_dt(data.get("end")),
            reason=data.get("reason", ""),
        )


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def selection_window(
    run_type: Any,
    params: Mapping[str, Any] | None,
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
) -> SelectionWindow:
    """Decide how a run selects files.

    ``run_type`` is the DagRun's run type (enum or string). Backfill runs and runs with
    param ``replay`` true replay their data interval; params ``replay_start``/``replay_end``
    override the interval bounds. A replay without a usable interval is an error.
    """
    params = params or {}
    kind = str(getattr(run_type, "value", run_type) or "").lower()
    backfill = kind == "backfill"
    if not backfill and not _truthy(params.get("replay")):
        return SelectionWindow(replay=False, reason=f"{kind or 'unknown'} run")

    try:
        start = _parse_dt(params.get("replay_start")) or _parse_dt(data_interval_start)
        end = _parse_dt(params.get("replay_end")) or _parse_dt(data_interval_end)
    except InboundSelectionError as exc:
        raise InboundSelectionError(f"replay window: {exc}") from None
    if start is None or end is None:
        raise InboundSelectionError(
            "replay needs a data interval: trigger with a logical date, or set params replay_start and replay_end"
        )
    if end <= start:
        raise InboundSelectionError(f"replay window is empty: start {start.isoformat()} >= end {end.isoformat()}")
    reason = "backfill run" if backfill else "manual replay (param replay=true)"
    return SelectionWindow(replay=True, start=start, end=end, reason=reason)


# --- Remote folders -----------------------------------------------------------------------


def _join(*parts: str) -> str:
    cleaned = [p.strip("/") for p in parts if p and p.strip("/")]
    return "/" + "/".join(cleaned)


def archive_dir(archive_root: str, source: str, day: date) -> str:
    """``<archive_root>/<source>/YYYY/MM/DD``."""
    return _join(archive_root, source, f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}")


def rejected_dir(rejected_root: str, source: str) -> str:
    """``<rejected_root>/<source>``."""
    return _join(rejected_root, source)


def is_within(path: str, folder: str) -> bool:
    """True when the remote ``path`` lies inside ``folder`` (textual, normalised)."""
    path_n = posixpath.normpath("/" + path.lstrip("/"))
    folder_n = posixpath.normpath("/" + folder.lstrip("/"))
    return folder_n == "/" or path_n.startswith(folder_n.rstrip("/") + "/")


def _stat(client: Any, path: str) -> Any:
    """``client.stat(path)``, None when the path does not exist."""
    try:
        return client.stat(path)
    except FileNotFoundError:
        return None


def _list_files(client: Any, folder: str) -> list[Any]:
    if not client.exists(folder):
        return []
    return [entry for entry in client.list_dir(folder) if not entry.is_dir]


# --- Selection ------------------------------------------------------------------------------


def select_inbound_files(
    client: Any,
    *,
    inbound_dir: str,
    archive_root: str,
    source: str,
    patterns: Sequence[str],
    window: SelectionWindow,
    complete: Iterable[Any] | None = None,
    only_file: str | None = None,
    processing_day: date | None = None,
) -> list[InboundFile]:
    """The files a run must process, in processing order.

    ``complete`` is the sensor's output (``RemoteFile``s, dicts or paths of complete files);
    when None in a non-replay run, the inbound folder is listed (no completeness check: the
    caller vouches for it). ``only_file`` (param ``file``) overrides everything else.
    """
    if only_file:
        found = [_resolve_named_file(client, only_file, inbound_dir, archive_root, source, processing_day)]
        log.info("Param file=%r selects %s", only_file, found[0].path)
        return found

    if not window.replay:
        if complete is not None:
            candidates = [InboundFile.from_remote(item) for item in complete]
        else:
            candidates = [InboundFile.from_remote(e) for e in _list_files(client, inbound_dir)]
        selected = [f for f in candidates if matches_patterns(f.name, patterns)]
        ignored = len(candidates) - len(selected)
        if ignored:
            log.info("Ignored %d file(s) in %s not matching %s", ignored, inbound_dir, list(patterns))
        return order_files(selected)

    selected: list[InboundFile] = []
    for entry in _list_files(client, inbound_dir):
        item = InboundFile.from_remote(entry)
        if matches_patterns(item.name, patterns) and item.stamp and window.contains(item.stamp):
            selected.append(item)
    archive_hits = 0
    for day in window.days():
        folder = archive_dir(archive_root, source, day)
        for entry in _list_files(client, folder):
            item = InboundFile.from_remote(entry, origin=ORIGIN_ARCHIVE)
            if not matches_patterns(item.name, patterns):
                continue
            # Unstamped files are archived under their processing day: that day is their time.
            moment = item.stamp or datetime(day.year, day.month, day.day, tzinfo=UTC)
            if window.contains(moment):
                selected.append(item)
                archive_hits += 1
    log.info(
        "Replay %s: %d file(s) from the archive, %d still waiting in %s",
        window.describe(),
        archive_hits,
        len(selected) - archive_hits,
        inbound_dir,
    )
    return order_files(selected)


def _resolve_named_file(
    client: Any,
    requested: str,
    inbound_dir: str,
    archive_root: str,
    source: str,
    processing_day: date | None,
) -> InboundFile:
    source_archive = _join(archive_root, source)
    if requested.startswith("/"):
        if not (is_within(requested, inbound_dir) or is_within(requested, source_archive)):
            raise InboundSelectionError(
                f"param file={requested!r} is outside the inbound folder {inbound_dir} "
                f"and the archive {source_archive}"
            )
        candidates = [requested]
    else:
        if "/" in requested or requested in {".", ".."}:
            raise InboundSelectionError(f"param file={requested!r} must be a bare file name or an absolute path")
        candidates = [_join(inbound_dir, requested)]
        day = stamp_day(requested, processing_day or datetime.now(UTC).date())
        candidates.append(_join(archive_dir(archive_root, source, day), requested))
    for path in candidates:
        stat = _stat(client, path)
        if stat is not None and not getattr(stat, "is_dir", False):
            origin = ORIGIN_ARCHIVE if is_within(path, source_archive) else ORIGIN_INBOUND
            return InboundFile.from_remote(stat, origin=origin)
    raise InboundSelectionError(f"param file={requested!r}: not found (looked at {', '.join(candidates)})")


# --- Moves ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoveOutcome:
    """Where a file went: ``action`` is archived | already_archived | kept_in_archive | rejected."""

    source: str
    destination: str
    action: str
    errors_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "action": self.action,
            "errors_path": self.errors_path,
        }


def _sha256_local(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256_remote(client: Any, remote_path: str, scratch_dir: Path | None) -> str:
    with tempfile.TemporaryDirectory(dir=scratch_dir) as tmp:
        local = Path(tmp) / "compare.bin"
        client.download(remote_path, local)
        return _sha256_local(local)


def archive_file(
    client: Any,
    remote_path: str,
    *,
    archive_root: str,
    source: str,
    processing_day: date | None = None,
    local_copy: Path | None = None,
    scratch_dir: Path | None = None,
) -> MoveOutcome:
    """Move a processed file to ``<archive_root>/<source>/YYYY/MM/DD/``; safe to call again.

    * Already inside the archive (a replayed file): left where it is.
    * Gone from its folder but present in the archive (a retried call): reported as archived.
    * Same name already archived with the same size and content: the inbound copy is deleted
      once the archived copy has been checked (``local_copy`` is the staged download used
      for the comparison; without it the inbound file is downloaded too).
    * Otherwise moved with a collision-safe name; the moved copy's size is verified.
    """
    name = posixpath.basename(remote_path)
    source_archive = _join(archive_root, source)
    if is_within(remote_path, source_archive):
        return MoveOutcome(remote_path, remote_path, "kept_in_archive")

    day = stamp_day(name, processing_day or datetime.now(UTC).date())
    target_dir = archive_dir(archive_root, source, day)
    target = _join(target_dir, name)
    current = _stat(client, remote_path)
    existing = _stat(client, target)
    if current is None:
        if existing is not None:
            log.info("%s is no longer in the inbound folder; already archived as %s", remote_path, target)
            return MoveOutcome(remote_path, target, "already_archived")
        raise FileNotFoundError(f"{remote_path}: not found on the FTP server and not in {target_dir}")

    if existing is not None and existing.size == current.size:
        local_hash = _sha256_local(local_copy) if local_copy else _sha256_remote(client, remote_path, scratch_dir)
        if _sha256_remote(client, target, scratch_dir) == local_hash:
            client.delete(remote_path)
            log.info("%s: identical copy already archived at %s; inbound copy deleted", remote_path, target)
            return MoveOutcome(remote_path, target, "already_archived")

    client.makedirs(target_dir)
    final = client.move(remote_path, target_dir)
    moved = _stat(client, final)
    if moved is None or (current.size is not None and moved.size != current.size):
        raise OSError(f"archiving {remote_path}: {final} is missing or has the wrong size after the move")
    log.info("Archived %s -> %s", remote_path, final)
    return MoveOutcome(remote_path, final, "archived")


def reject_file(
    client: Any,
    remote_path: str,
    *,
    rejected_root: str,
    source: str,
    errors_csv: Path | None = None,
    archive_root: str | None = None,
) -> MoveOutcome:
    """Quarantine a file in ``<rejected_root>/<source>/`` with ``<file>.errors.csv`` beside it.

    The file is moved with a collision-safe name (never overwriting); the errors CSV is named
    after the final name. A file inside the archive (a replay) is not moved: only its errors
    CSV is written to the rejected folder. Calling again after the file was already moved
    completes the missing errors CSV instead of failing.
    """
    name = posixpath.basename(remote_path)
    target_dir = rejected_dir(rejected_root, source)
    client.makedirs(target_dir)

    if archive_root and is_within(remote_path, _join(archive_root, source)):
        final = remote_path
        errors_path = _join(target_dir, name + ".errors.csv")
        if errors_csv is not None:
            errors_path = _upload_new_name(client, errors_csv, errors_path)
        log.info("Replayed archive file %s rejected; it stays archived, errors in %s", remote_path, errors_path)
        return MoveOutcome(remote_path, final, "rejected", errors_path if errors_csv is not None else None)

    if _stat(client, remote_path) is None:
        final = _join(target_dir, name)
        if _stat(client, final) is None:
            raise FileNotFoundError(f"{remote_path}: not found on the FTP server nor in {target_dir}")
        log.info("%s was already moved to %s", remote_path, final)
    else:
        final = client.move(remote_path, target_dir)
        log.info("Rejected %s -> %s", remote_path, final)

    errors_path = None
    if errors_csv is not None:
        errors_path = final + ".errors.csv"
        if _stat(client, errors_path) is None:
            client.upload_atomic(errors_csv, errors_path)
        log.info("Errors for %s written to %s", name, errors_path)
    return MoveOutcome(remote_path, final, "rejected", errors_path)


def _upload_new_name(client: Any, local: Path, wanted: str) -> str:
    """Upload ``local`` to ``wanted``, or to ``<stem>-N<suffix>`` when that name is taken."""
    folder, name = posixpath.split(wanted)
    stem, suffix = (name[: -len(".errors.csv")], ".errors.csv") if name.endswith(".errors.csv") else (name, "")
    candidate = wanted
    counter = 1
    while _stat(client, candidate) is not None:
        candidate = _join(folder, f"{stem}-{counter}{suffix}")
        counter += 1
    client.upload_atomic(local, candidate)
    return candidate
