"""Sensor that waits for *complete* files (not just present ones) in an FTP directory.

Airflow's stock ``FTPSensor`` checks one exact path with MDTM, so a half-uploaded file
passes. This sensor watches a directory for glob patterns and returns only files that are
complete: size and modification time unchanged across polls ``stable_seconds`` apart, or a
marker file (``<name>.done``, ``<name>.ok``...) present when ``marker_suffixes`` is set.
Listing falls back from MLSD to LIST in the client, so servers without MLSD work too.

Modes:

* ``deferrable=True`` (default): one poll on the worker (fails fast on a wrong connection
  or a missing directory), then the wait moves to the triggerer
  (:class:`~threekit_pipeline.airflow.triggers.ftp.FtpCompleteFilesTrigger`), which carries
  the first poll's snapshot so the stability window is not restarted.
* ``deferrable=False``: ``mode="reschedule"`` unless another mode is given. A rescheduled
  sensor starts every poke in a fresh process and Airflow clears a task's XComs each time
  it starts, so nothing can be carried from one poke to the next; instead each poke that
  sees candidate files lists the directory twice, ``stable_seconds`` apart (keep
  ``stable_seconds`` well below ``poke_interval``). In ``mode="poke"`` the snapshot stays in
  memory between pokes and no extra wait is needed.

When nothing complete arrives before ``timeout`` the task is **skipped** (not failed) and
the log says what was watched and which files were still incomplete. The sensor returns
(XCom) the list of complete files as ``{"path", "name", "size", "modified"}`` dicts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout, AirflowSkipException

from threekit_pipeline.airflow.hooks.ftp import FtpTransferHook
from threekit_pipeline.airflow.triggers.ftp import (
    MAX_PENDING_REPORTED,
    FtpCompleteFilesTrigger,
    as_patterns,
    evaluate,
    file_record,
    list_directory,
    make_policy,
    pending_names,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

# The trigger enforces the sensor timeout itself (and reports what it saw); Airflow's own
# deferral timeout is only a backstop in case the triggerer is gone.
DEFERRAL_BACKSTOP = timedelta(minutes=10)


def patterns_text(patterns: Iterable[str], shown: int = 3) -> str:
    """A few patterns in full; a long list (a mapping can have 40 globs) is counted, not repeated.

    The whole list is logged once, by the run's first task (``plan_run``).
    """
    patterns = list(patterns)
    if len(patterns) <= shown:
        return ", ".join(patterns)
    return f"{', '.join(patterns[:shown])} and {len(patterns) - shown} more patterns"


class FtpCompleteFilesSensor(BaseSensorOperator):
    """Wait until complete files matching ``patterns`` exist in the FTP directory ``path``.

    :param path: remote directory to watch. Templated.
    :param patterns: glob pattern(s) of file names, e.g. ``["*.csv", "PRICES_*.xlsx"]``. Templated.
    :param ftp_conn_id: ``ftp``/``ftps`` connection (see ``FtpTransferHook``).
    :param stable_seconds: size and mtime must be unchanged for this long.
    :param marker_suffixes: e.g. ``[".done", ".ok"]``: a file is complete once its marker
        exists (stability is then not required).
    :param deferrable: wait in the triggerer (default) instead of on a worker.
    :param poke_interval: seconds between polls. ``timeout``: seconds before the task is skipped.
    """

    template_fields: Sequence[str] = ("path", "patterns")
    ui_color = "#e6f1f2"

    def __init__(
        self,
        *,
        path: str,
        patterns: str | Sequence[str],
        ftp_conn_id: str = FtpTransferHook.default_conn_name,
        stable_seconds: float = 60.0,
        marker_suffixes: Sequence[str] = (),
        deferrable: bool = True,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        if mode is None:
            mode = "poke" if deferrable else "reschedule"
        super().__init__(mode=mode, **kwargs)
        if stable_seconds < 0:
            raise ValueError("stable_seconds must not be negative")
        self.path = path
        self.patterns = patterns
        self.ftp_conn_id = ftp_conn_id
        self.stable_seconds = float(stable_seconds)
        self.marker_suffixes = list(marker_suffixes or ())
        self.deferrable = deferrable
        self._snapshot: dict | None = None
        self._pending: list[str] = []

    # -- shared --------------------------------------------------------------------------
    def _what(self) -> str:
        rule = (
            f"marker {'/'.join(self.marker_suffixes)}"
            if self.marker_suffixes
            else f"stable for {self.stable_seconds:.0f} s"
        )
        return f"{patterns_text(as_patterns(self.patterns))} in {self.path} on connection {self.ftp_conn_id} ({rule})"

    def _skip(self, pending: Iterable[str], waited: float | None = None) -> AirflowSkipException:
        pending = list(pending)[:MAX_PENDING_REPORTED]
        waited_text = f"{waited:.0f} s" if waited is not None else f"the timeout of {self.timeout:.0f} s"
        message = f"No complete file matching {self._what()} within {waited_text}"
        message += f"; still incomplete: {', '.join(pending)}" if pending else "; no matching file seen"
        log.warning("%s. Skipping.", message)
        return AirflowSkipException(message)

    def _poll(self, hook: FtpTransferHook) -> tuple[list, list]:
        settings = hook.get_settings()
        policy = make_policy(as_patterns(self.patterns), self.stable_seconds, self.marker_suffixes)
        listing = list_directory(settings, self.path)
        complete, self._snapshot = evaluate(self._snapshot, listing, policy, time.time())
        self._pending = pending_names(listing, complete, policy)
        return complete, listing

    def _done(self, complete: list) -> list[dict]:
        records = [file_record(f) for f in complete]
        log.info(
            "%d complete file(s) matching %s: %s",
            len(records),
            self._what(),
            ", ".join(f"{r['name']} ({r['size']} bytes)" for r in records),
        )
        return records

    # -- entry points -----------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout:
                raise self._skip(self._pending) from None
        hook = FtpTransferHook(ftp_conn_id=self.ftp_conn_id)
        complete, _ = self._poll(hook)
        if complete:
            return self._done(complete)
        log.info(
            "deferring: waiting for %s, polling every %.0f s for up to %.0f s",
            self._what(),
            self.poke_interval,
            self.timeout,
        )
        self.defer(
            trigger=FtpCompleteFilesTrigger(
                ftp_conn_id=self.ftp_conn_id,
                path=self.path,
                patterns=as_patterns(self.patterns),
                stable_seconds=self.stable_seconds,
                marker_suffixes=self.marker_suffixes,
                poll_interval=self.poke_interval,
                deadline=time.time() + self.timeout,
                snapshot=self._snapshot,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_BACKSTOP,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> list[dict]:
        """Resume after the trigger fired: return the files, skip on timeout, fail on error."""
        event = event or {}
        status = event.get("status")
        if status == "success":
            files = list(event.get("files") or [])
            log.info(
                "%d complete file(s) matching %s: %s",
                len(files),
                self._what(),
                ", ".join(f"{f.get('name')} ({f.get('size')} bytes)" for f in files),
            )
            return files
        if status == "timeout":
            raise self._skip(event.get("pending") or [], event.get("waited_s"))
        raise AirflowException(event.get("message") or f"unexpected event from the FTP trigger: {event!r}")

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context):
        # Airflow's own deferral timeout (backstop) surfaces as AirflowSensorTimeout: skip too.
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSensorTimeout:
            raise self._skip([]) from None

    def poke(self, context: Context) -> PokeReturnValue:
        hook = FtpTransferHook(ftp_conn_id=self.ftp_conn_id)
        complete, _ = self._poll(hook)
        if not complete and self.reschedule and self._pending and not self.marker_suffixes:
            # No snapshot survives a reschedule: take the second look within this poke.
            log.info(
                "%d candidate file(s) (%s); checking again in %.0f s whether they are stable",
                len(self._pending),
                ", ".join(self._pending[:MAX_PENDING_REPORTED]),
                self.stable_seconds,
            )
            time.sleep(self.stable_seconds)
            complete, _ = self._poll(hook)
        if complete:
            return PokeReturnValue(is_done=True, xcom_value=self._done(complete))
        log.info(
            "no complete file yet for %s; incomplete: %s",
            self._what(),
            ", ".join(self._pending[:MAX_PENDING_REPORTED]) or "no matching file",
        )
        return PokeReturnValue(is_done=False)
