"""Trigger that waits, in the triggerer, for complete files in an FTP directory.

A file is complete when it matches one of the glob patterns and either its size and
modification time stayed unchanged for ``stable_seconds`` across polls, or (when
``marker_suffixes`` are configured) its marker file such as ``<name>.done`` exists. The
rules live in :mod:`threekit_pipeline.ftp.completeness`; this module only schedules polls.

Each poll opens its own FTP session in a worker thread (``asyncio.to_thread``), lists the
directory and closes the session: the blocking client never runs on the event loop, and no
idle session is held open between polls (servers drop those with "421 timeout").

The trigger ends with one event:

* ``{"status": "success", "files": [{path, name, size, modified}, ...]}``
* ``{"status": "timeout", "path", "patterns", "waited_s", "pending": [names]}`` when the
  deadline passes first (the sensor turns this into a skip),
* ``{"status": "error", "message"}`` after ``max_consecutive_errors`` failed polls in a row.

It has no side effects, so running it twice (triggerer restart) is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from threekit_pipeline.airflow.hooks.ftp import FtpTransferHook
from threekit_pipeline.ftp.errors import FtpPermanentError
from threekit_pipeline.ftp.models import FtpSettings, RemoteFile

if TYPE_CHECKING:
    from threekit_pipeline.ftp.completeness import CompletenessPolicy

log = logging.getLogger(__name__)

MAX_PENDING_REPORTED = 20
PROGRESS_LOG_EVERY = 10


def as_patterns(patterns: str | Iterable[str]) -> list[str]:
    """Glob patterns as a list (a single string may hold several, comma separated)."""
    if isinstance(patterns, str):
        items = patterns.split(",")
    else:
        items = list(patterns)
    cleaned = [str(p).strip() for p in items if str(p).strip()]
    if not cleaned:
        raise ValueError("at least one file name pattern is required")
    return cleaned


def make_policy(
    patterns: Sequence[str], stable_seconds: float, marker_suffixes: Sequence[str]
) -> CompletenessPolicy:
    """The completeness rules shared by the sensor and the trigger."""
    from threekit_pipeline.ftp.completeness import CompletenessPolicy

    return CompletenessPolicy(
        patterns=tuple(patterns), stable_seconds=float(stable_seconds), marker_suffixes=tuple(marker_suffixes)
    )


def list_directory(settings: FtpSettings, path: str) -> list[RemoteFile]:
    """List ``path`` in a fresh FTP/FTPS/SFTP session (blocking; run it in a thread from async code)."""
    from threekit_pipeline.ftp.transfer import open_client

    with open_client(settings) as client:
        return list(client.list_dir(path))


def evaluate(
    snapshot: dict | None, listing: list[RemoteFile], policy: CompletenessPolicy, now: float
) -> tuple[list[RemoteFile], dict]:
    """Complete files of ``listing`` given the previous poll's ``snapshot``, and the new snapshot."""
    from threekit_pipeline.ftp.completeness import complete_files

    complete, new_snapshot = complete_files(snapshot, listing, policy, now)
    return list(complete), new_snapshot


def pending_names(
    listing: Iterable[RemoteFile], complete: Iterable[RemoteFile], policy: CompletenessPolicy
) -> list[str]:
    """Names the policy watches that are not (yet) complete, for progress and timeout messages."""
    done = {f.path for f in complete}
    return sorted(
        f.name for f in listing if not f.is_dir and f.path not in done and policy.is_candidate(f.name)
    )


def file_record(remote: RemoteFile) -> dict[str, Any]:
    """A small JSON-serialisable description of a complete file (what goes to XCom)."""
    record = remote.to_dict()
    record.pop("is_dir", None)
    return record


class FtpCompleteFilesTrigger(BaseTrigger):
    """Polls an FTP directory until complete files matching the patterns exist.

    :param ftp_conn_id: ``ftp``/``ftps`` connection.
    :param path: remote directory to watch.
    :param patterns: glob patterns of file names (``*.csv``).
    :param stable_seconds: how long size and mtime must stay unchanged.
    :param marker_suffixes: when set, a file is complete once ``<name><suffix>`` exists.
    :param poll_interval: seconds between polls.
    :param deadline: epoch seconds after which the trigger gives up (``timeout`` event).
    :param snapshot: the completeness snapshot of the last poll made before deferring, so
        the stability window started by the sensor is not restarted.
    :param max_consecutive_errors: failed polls in a row before an ``error`` event.
    """

    def __init__(
        self,
        *,
        ftp_conn_id: str,
        path: str,
        patterns: Sequence[str],
        stable_seconds: float = 60.0,
        marker_suffixes: Sequence[str] = (),
        poll_interval: float = 60.0,
        deadline: float | None = None,
        snapshot: dict | None = None,
        max_consecutive_errors: int = 5,
    ) -> None:
        super().__init__()
        self.ftp_conn_id = ftp_conn_id
        self.path = path
        self.patterns = as_patterns(patterns)
        self.stable_seconds = float(stable_seconds)
        self.marker_suffixes = list(marker_suffixes)
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.snapshot = snapshot
        self.max_consecutive_errors = max(1, int(max_consecutive_errors))

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "ftp_conn_id": self.ftp_conn_id,
                "path": self.path,
                "patterns": list(self.patterns),
                "stable_seconds": self.stable_seconds,
                "marker_suffixes": list(self.marker_suffixes),
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "snapshot": self.snapshot,
                "max_consecutive_errors": self.max_consecutive_errors,
            },
        )

    def _what(self) -> str:
        from threekit_pipeline.airflow.sensors.ftp import patterns_text

        return f"{patterns_text(self.patterns)} in {self.path} ({self.ftp_conn_id})"

    async def run(self) -> AsyncIterator[TriggerEvent]:
        started = time.time()
        try:
            settings = await FtpTransferHook(ftp_conn_id=self.ftp_conn_id).aget_settings()
            policy = make_policy(self.patterns, self.stable_seconds, self.marker_suffixes)
        except Exception as exc:  # noqa: BLE001 - reported to the task, which fails with it
            yield TriggerEvent({"status": "error", "message": f"cannot watch {self._what()}: {exc}"})
            return
        log.info("watching for complete files %s, polling every %.0f s", self._what(), self.poll_interval)
        snapshot = self.snapshot
        failures = 0
        polls = 0
        pending: list[str] = []
        while True:
            try:
                listing = await asyncio.to_thread(list_directory, settings, self.path)
            except Exception as exc:  # noqa: BLE001 - transient FTP trouble: retried up to the limit
                failures += 1
                message = _scrub(f"{type(exc).__name__}: {exc}", settings.password)
                # A refused login, a missing directory or a bad certificate will not heal by waiting.
                if isinstance(exc, FtpPermanentError):
                    yield TriggerEvent({"status": "error", "message": f"cannot list {self.path}: {message}"})
                    return
                if failures >= self.max_consecutive_errors:
                    yield TriggerEvent(
                        {
                            "status": "error",
                            "message": f"listing {self.path} failed {failures} times in a row; last: {message}",
                        }
                    )
                    return
                log.warning(
                    "listing %s failed (%d/%d in a row): %s",
                    self.path,
                    failures,
                    self.max_consecutive_errors,
                    message,
                )
            else:
                failures = 0
                polls += 1
                complete, snapshot = evaluate(snapshot, listing, policy, time.time())
                pending = pending_names(listing, complete, policy)
                if complete:
                    records = [file_record(f) for f in complete]
                    log.info(
                        "%d complete file(s) in %s: %s",
                        len(records),
                        self.path,
                        ", ".join(r["name"] for r in records),
                    )
                    yield TriggerEvent({"status": "success", "files": records})
                    return
                if polls % PROGRESS_LOG_EVERY == 0 or (polls == 1 and pending):
                    log.info(
                        "still waiting for %s after %.0f s; not yet complete: %s",
                        self._what(),
                        time.time() - started,
                        ", ".join(pending[:MAX_PENDING_REPORTED]) or "no matching file",
                    )
            now = time.time()
            if self.deadline is not None and now >= self.deadline:
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "path": self.path,
                        "patterns": list(self.patterns),
                        "waited_s": round(now - started, 1),
                        "pending": pending[:MAX_PENDING_REPORTED],
                    }
                )
                return
            delay = self.poll_interval
            if self.deadline is not None:
                delay = max(0.0, min(delay, self.deadline - now))
            await asyncio.sleep(delay)


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text
