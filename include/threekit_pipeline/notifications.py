"""Email notifications of a feed's recipients, through the smtp provider's ``SmtpNotifier``.

Two events are reported, each only to the recipients of the feed it concerns:

* **a file was quarantined**: :func:`notify_quarantined` sends one email to the feed's
  recipients whose file patterns match the file's name (a partner is told about its own
  files only), with the errors CSV attached and the first reasons in the body;
  :func:`notify_quarantined_files` does so once per file of a run (the catalog import's
  ``finalize`` step calls it);
* **a run failed after its retries**: :class:`RunFailedNotifier` is an
  ``on_failure_callback`` (task or DAG level); Airflow calls it once the retries are spent;
* **a run was partial** (rows, entries or files rejected): :func:`notify_partial_run`, called by
  the import DAGs' ``all_accepted`` step.

The SMTP server is an Airflow ``smtp`` connection (``smtp_default`` unless the feed names
another); its ``from_email`` extra is the sender unless one is given. Everything that comes
from a partner (file names, reasons) is HTML-escaped, and the body is never rendered as a
template.
"""

from __future__ import annotations

import fnmatch
import hashlib
import html
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow.providers.smtp.notifications.smtp import SmtpNotifier

log = logging.getLogger(__name__)

#: How many reasons the body lists before pointing at the attachment.
MAX_REASONS_IN_BODY = 10
DEFAULT_SMTP_CONN_ID = "smtp_default"


@dataclass(frozen=True)
class Recipient:
    """One address and the file name patterns it is told about (all files by default)."""

    email: str
    patterns: tuple[str, ...] = ("*",)

    def wants(self, file_name: str) -> bool:
        return any(fnmatch.fnmatchcase(file_name, pattern) for pattern in self.patterns)


def as_recipients(values: Iterable[str | Recipient | dict]) -> list[Recipient]:
    """Recipients from addresses, ``{"email": ..., "patterns": [...]}`` mappings or :class:`Recipient`."""
    recipients = []
    for value in values:
        if isinstance(value, Recipient):
            recipients.append(value)
        elif isinstance(value, str):
            recipients.append(Recipient(value))
        else:
            patterns = value.get("patterns") or ("*",)
            recipients.append(Recipient(str(value["email"]), tuple(patterns)))
    return recipients


class _PlainNotifier(SmtpNotifier):
    """``SmtpNotifier`` whose subject and body are final text: never rendered as Jinja templates
    (they quote partner file names and error messages)."""

    template_fields = ("from_email", "to", "cc", "bcc", "files")


@dataclass
class QuarantineNotice:
    """What the email about one quarantined file says."""

    feed: str
    file_name: str
    quarantine_path: str
    reasons: Sequence[str]
    errors_csv: Path | None = None
    total_errors: int | None = None
    extra_lines: Sequence[str] = field(default_factory=tuple)

    def subject(self) -> str:
        return f"[{self.feed}] {self.file_name} was quarantined"

    def html(self) -> str:
        total = self.total_errors if self.total_errors is not None else len(self.reasons)
        shown = list(self.reasons)[:MAX_REASONS_IN_BODY]
        items = "".join(f"<li>{html.escape(reason)}</li>" for reason in shown)
        more = ""
        if total > len(shown):
            more = f"<p>... and {total - len(shown)} more; every error is in the attached CSV.</p>"
        extra = "".join(f"<p>{html.escape(line)}</p>" for line in self.extra_lines)
        return (
            f"<p>The file <b>{html.escape(self.file_name)}</b> of feed <b>{html.escape(self.feed)}</b> was not "
            f"imported and has been moved to <code>{html.escape(self.quarantine_path)}</code>.</p>"
            f"<p>{total} problem(s) found; the first:</p><ul>{items}</ul>{more}{extra}"
            "<p>Please correct the file and upload it again.</p>"
        )


def quarantine_notifier(notice: QuarantineNotice, recipients: Iterable[str | Recipient | dict], *,
                        smtp_conn_id: str = DEFAULT_SMTP_CONN_ID, from_email: str | None = None) -> SmtpNotifier | None:
    """The ``SmtpNotifier`` for ``notice``, addressed to the recipients who want this file; None if nobody."""
    to = sorted({r.email for r in as_recipients(recipients) if r.wants(notice.file_name)})
    if not to:
        return None
    files = [str(notice.errors_csv)] if notice.errors_csv is not None else None
    return _PlainNotifier(to=to, from_email=from_email, subject=notice.subject(), html_content=notice.html(),
                          files=files, smtp_conn_id=smtp_conn_id)


def notify_quarantined(notice: QuarantineNotice, recipients: Iterable[str | Recipient | dict], *,
                       smtp_conn_id: str = DEFAULT_SMTP_CONN_ID, from_email: str | None = None,
                       context: dict | None = None) -> list[str]:
    """Email the feed's recipients about a quarantined file; returns the addresses written to.

    A failure to send is logged and swallowed: the quarantine itself already happened and
    must not be undone or retried because the mail server is down.
    """
    notifier = quarantine_notifier(notice, recipients, smtp_conn_id=smtp_conn_id, from_email=from_email)
    if notifier is None:
        log.info("No recipient of feed %s is notified about %s", notice.feed, notice.file_name)
        return []
    try:
        notifier.notify(context or {})
    except Exception as exc:  # noqa: BLE001 - see docstring
        log.warning("Could not email %s about quarantined %s (feed %s): %s: %s", ", ".join(notifier.to),
                    notice.file_name, notice.feed, type(exc).__name__, exc)
        return []
    log.info("Emailed %s about quarantined %s (feed %s)", ", ".join(notifier.to), notice.file_name, notice.feed)
    return list(notifier.to)


def _marker_name(file_name: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in file_name)[:180]
    return f"{safe}-{hashlib.sha256(file_name.encode()).hexdigest()[:12]}.notified"


def notify_quarantined_files(feed: str, recipients: Iterable[str | Recipient | dict],
                             quarantined: Iterable[Mapping[str, Any]], *, marker_dir: Path,
                             smtp_conn_id: str = DEFAULT_SMTP_CONN_ID, from_email: str | None = None) -> dict[str, list[str]]:
    """One email per quarantined file of a run, sent once: ``{file: addresses written to}``.

    ``quarantined`` holds the finalize result's entries (``file``, ``quarantine_path``,
    ``errors_csv`` -- the local copy of the CSV uploaded beside the file --, ``reasons``,
    ``total_errors``). Each file's mail goes to the recipients whose patterns match its name,
    with its errors CSV attached and its first reasons in the body.

    Idempotent: a marker ``<marker_dir>/<file>-<hash>.notified`` (the run's staging) records a
    sent mail (or that nobody wanted it), so a retried or re-run task does not mail the same
    file twice. A failed send writes no marker (the next attempt tries again) and is logged,
    never raised: the quarantine already happened.
    """
    marker_dir.mkdir(parents=True, exist_ok=True)
    sent: dict[str, list[str]] = {}
    for entry in quarantined:
        name = str(entry["file"])
        marker = marker_dir / _marker_name(name)
        if marker.exists():
            log.info("Feed %s's recipients were already told about quarantined %s", feed, name)
            continue
        errors_csv = Path(entry["errors_csv"]) if entry.get("errors_csv") else None
        notice = QuarantineNotice(feed=feed, file_name=name, quarantine_path=str(entry.get("quarantine_path") or ""),
                                  reasons=list(entry.get("reasons") or ()),
                                  errors_csv=errors_csv if errors_csv is not None and errors_csv.is_file() else None,
                                  total_errors=entry.get("total_errors"))
        notifier = quarantine_notifier(notice, recipients, smtp_conn_id=smtp_conn_id, from_email=from_email)
        if notifier is not None:
            try:
                notifier.notify({})
            except Exception as exc:  # noqa: BLE001 - see docstring
                log.warning("Could not email %s about quarantined %s (feed %s): %s: %s", ", ".join(notifier.to),
                            name, feed, type(exc).__name__, exc)
                continue
            log.info("Emailed %s about quarantined %s (feed %s)", ", ".join(notifier.to), name, feed)
            sent[name] = list(notifier.to)
        marker.write_text(",".join(notifier.to) if notifier is not None else "")
    return sent


class RunFailedNotifier(_PlainNotifier):
    """``on_failure_callback`` emailing a feed's recipients once a task or run failed after its retries.

    Recipients with file patterns other than ``*`` are partners: they are told only about
    their own files, never about a failed run, so only catch-all recipients get this email.
    """

    def __init__(self, feed: str, recipients: Iterable[str | Recipient | dict], *,
                 smtp_conn_id: str = DEFAULT_SMTP_CONN_ID, from_email: str | None = None, **kwargs: Any) -> None:
        self.feed = feed
        to = sorted({r.email for r in as_recipients(recipients) if tuple(r.patterns) == ("*",)})
        super().__init__(to=to, from_email=from_email, subject="", html_content="", smtp_conn_id=smtp_conn_id,
                         **kwargs)

    def notify(self, context: Any) -> None:
        if not self.to:
            return
        ti = context.get("ti") or context.get("task_instance")
        dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
        run_id = context.get("run_id") or getattr(ti, "run_id", "?")
        task_id = getattr(ti, "task_id", None)
        tries = getattr(ti, "try_number", None)
        error = context.get("exception")
        self.subject = f"[{self.feed}] run {run_id} of {dag_id} failed"
        what = f"Task <b>{html.escape(task_id)}</b>" if task_id else "The run"
        self.html_content = (
            f"<p>{what} of feed <b>{html.escape(self.feed)}</b> (DAG {html.escape(str(dag_id))}, run "
            f"{html.escape(str(run_id))}) failed{f' after {tries} attempt(s)' if tries else ''}.</p>"
            + (f"<p>Error: <code>{html.escape(f'{type(error).__name__}: {error}')}</code></p>" if error else "")
            + "<p>See the task log in Airflow for details.</p>"
        )
        super().notify(context)


def _rejected_files(result: Any) -> list[str]:
    """Names of the files a run result lists as quarantined (``result["rejected_files"]``)."""
    names = (result or {}).get("rejected_files") if isinstance(result, dict) else None
    return [str(name) for name in names or [] if name]


def notify_partial_run(feed: str, recipients: Iterable[str | Recipient | dict], *, dag_id: str, run_id: str,
                       message: str, result: Any = None, smtp_conn_id: str = DEFAULT_SMTP_CONN_ID,
                       from_email: str | None = None) -> list[str]:
    """Email a feed's recipients that a run was partial (something was rejected); returns the addresses.

    Catch-all recipients are told; a partner (recipient with file patterns) only when one of
    the files the result lists as quarantined (``result["rejected_files"]``) is theirs. A failure to send is logged and swallowed: the run's outcome does not depend on it.
    """
    rejected = _rejected_files(result)
    to = sorted({r.email for r in as_recipients(recipients)
                 if tuple(r.patterns) == ("*",) or any(r.wants(name) for name in rejected)})
    if not to:
        return []
    files = "".join(f"<li>{html.escape(name)}</li>" for name in rejected[:MAX_REASONS_IN_BODY])
    body = (
        f"<p>Run {html.escape(run_id)} of {html.escape(dag_id)} (feed <b>{html.escape(feed)}</b>) finished, "
        f"but not everything was accepted.</p><p>{html.escape(message)}</p>"
        + (f"<p>Quarantined files:</p><ul>{files}</ul>" if files else "")
        + "<p>The run report in the reports folder lists every rejected row with its reason.</p>"
    )
    notifier = _PlainNotifier(to=to, from_email=from_email, subject=f"[{feed}] partial run {run_id} of {dag_id}",
                              html_content=body, smtp_conn_id=smtp_conn_id)
    try:
        notifier.notify({})
    except Exception as exc:  # noqa: BLE001 - see docstring
        log.warning("Could not email %s about the partial run %s (feed %s): %s: %s", ", ".join(to), run_id, feed,
                    type(exc).__name__, exc)
        return []
    log.info("Emailed %s about the partial run %s (feed %s)", ", ".join(to), run_id, feed)
    return to
