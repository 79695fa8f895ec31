"""Task logic of ``threekit_translations_import``: regional translation CSVs from FTP into Threekit.

Files are processed one after the other, oldest date stamp first (a later file's translation of
the same name wins, as in Threekit itself). For each file:

1. download to staging and validate it with
   :func:`threekit_pipeline.transform.translations.validate_translations_csv` (a ``Canonical
   Name`` column plus locale columns; bad locale codes, empty and duplicate keys are reported,
   the first occurrence of a key is kept);
2. a file that cannot be used (no ``Canonical Name`` column, no valid locale, nothing left to
   import, or more bad rows than ``max_error_ratio``) is quarantined in
   ``<rejected>/translations/`` with ``<file>.errors.csv`` beside it;
3. otherwise the clean CSV is sent to ``POST /api/products/translations`` and the source file is
   archived in ``<archive>/translations/YYYY/MM/DD/`` (only after Threekit accepted it); rows
   that were left out are listed in the run report's errors CSV.

Importing translations overwrites the stored values, so a re-run or a replay from the archive
converges to the same state. The run report goes to ``<reports>/translations_import/<run>.json``
(+ ``.csv``, ``.errors.csv``). In a dry run files are only validated: nothing is sent or moved.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threekit_pipeline.pipelines import inbound
from threekit_pipeline.pipelines.ledgers import open_ledger
from threekit_pipeline.pipelines.reports import (
    FileOutcome,
    RejectedRow,
    RunReport,
    format_table,
    read_rejections_csv,
    upload_report,
    write_csv,
)
from threekit_pipeline.pipelines.run_summary import log_rejections, summarize, sync_view_url
from threekit_pipeline.pipelines.runtime import THREEKIT_FILE_REJECTIONS, TaskEnv, locate_selected
from threekit_pipeline.threekit.errors import ThreekitAPIError

log = logging.getLogger(__name__)

SOURCE = "translations"
REPORT_SOURCE = "translations_import"
PATTERNS = ("*.csv",)
ERRORS_COLUMNS = ("file", "line", "column", "value", "reason")

STATUS_IMPORTED = "imported"
STATUS_REJECTED = "rejected"
STATUS_DRY_RUN = "dry_run"
STATUS_UNCHANGED = "unchanged"
# File name -> sha256 of the validated CSV Threekit last stored (survives restarts).
LEDGER_NAME = "translations_import"


@dataclass
class ValidatedFile:
    """The outcome of validating one translations CSV, in the terms this pipeline needs."""

    rows: int
    valid_rows: int
    locales: list[str]
    clean_path: Path | None
    errors_path: Path | None
    rejected_rows: list[RejectedRow] = field(default_factory=list)
    file_error: str = ""
    rows_rejected: int | None = None

    @property
    def bad_rows(self) -> int:
        return self.rows_rejected if self.rows_rejected is not None else self.rows - self.valid_rows


def validate_file(local: Path, name: str, workdir: Path, max_error_ratio: float) -> ValidatedFile:
    """Validate a downloaded translations CSV; the clean CSV and errors CSV land in ``workdir``."""
    from threekit_pipeline.transform.translations import validate_translations_csv

    result = validate_translations_csv(
        local,
        clean_path=workdir / f"{local.stem}.clean.csv",
        errors_path=workdir / f"{local.name}.errors.csv",
        max_error_ratio=max_error_ratio,
    )
    errors_path = Path(result.errors_path) if result.errors_path else None
    errors_path = errors_path if errors_path is not None and errors_path.exists() else None
    rejected = read_rejections_csv(errors_path, stage="validation", default_file=name) if errors_path else []
    for row in rejected:
        row.file = name  # the remote name, not the staged copy's
    clean = Path(result.clean_path) if result.clean_path else None
    return ValidatedFile(
        rows=int(result.rows),
        valid_rows=int(result.valid_rows),
        locales=list(result.locales),
        clean_path=clean if clean is not None and clean.exists() else None,
        errors_path=errors_path,
        rejected_rows=rejected,
        file_error=result.file_error,
        rows_rejected=int(result.rows_rejected),
    )


def rejection_reason(validated: ValidatedFile, max_error_ratio: float) -> str | None:
    """Why the whole file must be quarantined, or None when its clean rows can be imported."""
    if validated.file_error:
        return validated.file_error
    if not validated.locales:
        return "no valid locale column"
    if validated.valid_rows == 0:
        return "no valid row to import"
    if validated.rows and validated.bad_rows / validated.rows > max_error_ratio:
        return (
            f"{validated.bad_rows} of {validated.rows} rows are invalid "
            f"({validated.bad_rows / validated.rows:.1%} > max_error_ratio {max_error_ratio:.1%})"
        )
    return None


def import_translation_files(
    env: TaskEnv, client: Any, ftp: Any, selected: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Validate, import and archive (or quarantine) each selected file in order.

    Returns the data of the run report (``files`` outcomes and ``rejected`` rows as dicts).
    """
    files: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for position, wanted in enumerate(selected, start=1):
        outcome, rows = _process_file(env, client, ftp, wanted, position, len(selected))
        files.append(outcome.to_dict())
        rejected.extend(r.to_dict() for r in rows)
    return {"files": files, "rejected": rejected}


def _process_file(
    env: TaskEnv, client: Any, ftp: Any, wanted: dict[str, Any], position: int, total: int
) -> tuple[FileOutcome, list[RejectedRow]]:
    from threekit_pipeline.ftp.paths import safe_local_path

    cfg = env.config
    outcome = FileOutcome(file=wanted["name"], remote_path=wanted["path"], size=wanted.get("size"))
    item, note = locate_selected(ftp, wanted, env=env, source=SOURCE)
    if item is None:
        outcome.status, outcome.reason = STATUS_REJECTED, note
        return outcome, []
    if note:
        log.info("%s: %s", item.name, note)
    outcome.stamp = item.stamp_label
    workdir = env.run_dir("files", f"{position:04d}", fresh=True)
    local = safe_local_path(workdir, item.name)
    ftp.download(item.path, local)
    validated = validate_file(local, item.name, workdir, cfg.error_ratio)
    outcome.rows_read = validated.rows
    outcome.rows_rejected = validated.bad_rows
    reason = rejection_reason(validated, cfg.error_ratio)
    log.info(
        "File %d/%d %s: %d rows, %d valid, locales %s%s",
        position,
        total,
        item.name,
        validated.rows,
        validated.valid_rows,
        ", ".join(validated.locales) or "(none)",
        f"; REJECTED: {reason}" if reason else "",
    )
    rows = list(validated.rejected_rows)
    if reason is not None:
        return _quarantine(
            env, ftp, item, workdir / f"{local.name}.errors.csv", outcome, rows, reason, "validation"
        )

    outcome.products_written = validated.valid_rows
    if env.dry_run:
        outcome.status, outcome.reason = STATUS_DRY_RUN, "valid; would be imported (dry run)"
        return outcome, rows
    from threekit_pipeline.pipelines.outbound import sha256_of

    content_hash = sha256_of(validated.clean_path)
    with open_ledger(cfg, LEDGER_NAME) as ledger:
        previous = ledger.get(item.name)
    redelivered = previous is not None and previous.content_hash == content_hash and not item.from_archive
    if redelivered and not env.force_full_resend:
        # The same translations delivered again: nothing to send, only to archive. Replays (files
        # taken from the archive) are always sent: their purpose is to re-apply history.
        log.info("%s: same translations already imported by run %s; not sent again", item.name, previous.run_id)
        moved = inbound.archive_file(
            ftp,
            item.path,
            archive_root=cfg.folder("archive"),
            source=SOURCE,
            processing_day=env.day,
            local_copy=local,
            scratch_dir=env.run_dir("scratch"),
        )
        outcome.status = STATUS_UNCHANGED
        outcome.reason = f"same content already imported by run {previous.run_id}"
        outcome.destination = moved.destination
        return outcome, rows
    try:
        answer = client.import_translations(validated.clean_path)
    except ThreekitAPIError as exc:
        if exc.status not in THREEKIT_FILE_REJECTIONS:
            raise  # authentication and other errors fail the task; the file stays for the next run
        log.error("%s: Threekit rejected the file: %s", item.name, exc.message)
        reason = f"Threekit rejected the file (HTTP {exc.status}): {exc.message}"
        return _quarantine(
            env, ftp, item, workdir / f"{local.name}.errors.csv", outcome, rows, reason, "threekit"
        )
    stored = len(answer.get("translations") or []) if isinstance(answer, dict) else 0
    log.info("%s: Threekit stored %d translation value(s)", item.name, stored)
    # Recorded before archiving: if archiving fails, the retry only archives.
    with open_ledger(cfg, LEDGER_NAME) as ledger:
        ledger.record([(item.name, content_hash)], run_id=env.run_id)
    moved = inbound.archive_file(
        ftp,
        item.path,
        archive_root=cfg.folder("archive"),
        source=SOURCE,
        processing_day=env.day,
        local_copy=local,
        scratch_dir=env.run_dir("scratch"),
    )
    outcome.status = STATUS_IMPORTED
    outcome.reason = f"{stored} translation value(s) stored" + (
        f"; {validated.bad_rows} row(s) left out (see errors)" if validated.bad_rows else ""
    )
    outcome.destination = moved.destination
    log.info("%s: %s -> %s", item.name, moved.action, moved.destination)
    return outcome, rows


def _quarantine(
    env: TaskEnv,
    ftp: Any,
    item: inbound.InboundFile,
    errors_csv: Path,
    outcome: FileOutcome,
    rows: list[RejectedRow],
    reason: str,
    stage: str,
) -> tuple[FileOutcome, list[RejectedRow]]:
    """Move a rejected file to ``<rejected>/translations/`` with its errors CSV (not in a dry run)."""
    outcome.status, outcome.reason = STATUS_REJECTED, reason
    if not any(r.line in ("", None) and r.reason == reason for r in rows):
        # The errors CSV always states the file-level reason first.
        rows.insert(0, RejectedRow(stage=stage, file=item.name, line="", column="", value="", reason=reason))
    if env.dry_run:
        return outcome, rows
    write_csv(errors_csv, ERRORS_COLUMNS, [r.to_dict() for r in rows])
    moved = inbound.reject_file(
        ftp,
        item.path,
        rejected_root=env.config.folder("rejected"),
        source=SOURCE,
        errors_csv=errors_csv,
        archive_root=env.config.folder("archive"),
    )
    outcome.destination, outcome.errors_path = moved.destination, moved.errors_path or ""
    log.info("%s: quarantined at %s, errors in %s", item.name, moved.destination, moved.errors_path)
    return outcome, rows


def build_report(env: TaskEnv, selection: str, data: dict[str, Any]) -> RunReport:
    """The run report from :func:`import_translation_files`' result."""
    report = RunReport(
        dag_id=env.dag_id,
        run_id=env.run_id,
        run_type=env.run_type,
        selection=selection,
        dry_run=env.dry_run,
    )
    report.files = [FileOutcome(**f) for f in data.get("files", [])]
    report.rejected = [RejectedRow(**r) for r in data.get("rejected", [])]
    statuses = [f.status for f in report.files]
    report.counts = {
        "files": len(statuses),
        "files_imported": statuses.count(STATUS_IMPORTED),
        "files_rejected": statuses.count(STATUS_REJECTED),
        "rows_read": sum(f.rows_read for f in report.files),
        "rows_imported": sum(f.products_written for f in report.files if f.status == STATUS_IMPORTED),
        "rows_rejected": len([r for r in report.rejected if r.line not in ("", None)]),
    }
    if report.counts["files_rejected"] or report.counts["rows_rejected"]:
        report.status = "partial"
    return report


def publish_report(env: TaskEnv, ftp: Any, report: RunReport) -> dict[str, Any]:
    """Log the outcome and rejection tables; upload the report (kept local in a dry run)."""
    summary = summarize(report.to_dict())
    log.info(summary.line(sync_view_url(env.dag_id, env.run_id)))  # the log's first line
    log.info(
        "Translations import: %s\n%s",
        ", ".join(f"{k} {v}" for k, v in report.counts.items()),
        format_table(
            [f.to_dict() for f in report.files],
            ("file", "status", "rows_read", "rows_rejected", "reason", "destination"),
        ),
    )
    if report.rejected:
        log_rejections(log, (r.to_dict() for r in report.rejected))
    local_dir = env.run_dir("report")
    if env.dry_run:
        paths = report.write(local_dir)
        log.info("Dry run: report kept in staging at %s", paths["json"])
        return {
            "counts": report.counts,
            "report": {k: str(v) for k, v in paths.items()},
            "summary": summary.to_dict(),
        }
    remote = upload_report(ftp, report, local_dir, env.config.folder("reports"), REPORT_SOURCE)
    rejected_files = [f.file for f in report.files if f.status == STATUS_REJECTED]
    return {"counts": report.counts, "report": remote, "summary": summary.to_dict(), "rejected_files": rejected_files}
