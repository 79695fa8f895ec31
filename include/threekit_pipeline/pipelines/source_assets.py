"""Task logic of ``threekit_source_assets_import``: CAD, texture and image files from FTP into Threekit.

Per file (one mapped task each):

1. download from the inbound assets folder (or from the archive in a replay) to staging;
2. unless the source-asset ledger (``<staging>/ledger/source_assets.sqlite``: file name ->
   sha256 of the content Threekit last imported) says this exact content was already imported,
   upload it (``POST /api/files``, content-addressed: the same bytes are stored once) and start
   an asset import job (``POST /api/asset-jobs/import``, titled with the file name: Threekit
   matches assets by name, so a re-import updates the same asset instead of creating another);
3. poll the job; on success record the file in the ledger and archive it
   (``<archive>/assets/YYYY/MM/DD/``); on failure quarantine it in ``<rejected>/assets/`` with
   ``<file>.errors.csv`` carrying the job's message.

A file already imported with the same content (a re-delivered copy, or a cleared and re-run
task) is not imported again; it is only archived. Param ``force_full_resend`` re-imports anyway.
Every file's outcome goes into ``<reports>/source_assets_import/<run>.json``/``.csv``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from threekit_pipeline.pipelines import inbound
from threekit_pipeline.pipelines.ledgers import open_ledger
from threekit_pipeline.pipelines.outbound import sha256_of
from threekit_pipeline.pipelines.reports import (
    FileOutcome,
    RejectedRow,
    RunReport,
    format_table,
    upload_report,
    write_csv,
)
from threekit_pipeline.pipelines.run_summary import summarize, sync_view_url
from threekit_pipeline.pipelines.runtime import THREEKIT_FILE_REJECTIONS, TaskEnv, locate_selected
from threekit_pipeline.threekit.errors import ThreekitAPIError

log = logging.getLogger(__name__)

SOURCE = "assets"
REPORT_SOURCE = "source_assets_import"
LEDGER_NAME = "source_assets"
ERRORS_COLUMNS = ("file", "line", "column", "value", "reason")
# Run result codes Threekit uses for a run that did its work.
_SUCCESS_CODES = {"success", "succeeded", "ok", ""}

STATUS_IMPORTED = "imported"
STATUS_UNCHANGED = "unchanged"
STATUS_REJECTED = "rejected"
STATUS_DRY_RUN = "dry_run"
STATUS_FAILED = "failed"


class SourceAssetImportError(RuntimeError):
    """Some selected files could not be processed (their tasks failed after retries)."""


def job_failure(job: dict[str, Any], runs: list[dict[str, Any]]) -> str | None:
    """The reason an asset import job failed (its runs' messages), or None when it succeeded."""
    failed_runs = [r for r in runs if str(r.get("resultCode") or "").lower() not in _SUCCESS_CODES]
    failures = int(job.get("taskResultFailures") or 0)
    if not failed_runs and failures == 0:
        return None
    messages = [str(r.get("resultMessage") or r.get("resultCode") or "").strip() for r in failed_runs]
    messages = [m for m in messages if m]
    return (
        "; ".join(dict.fromkeys(messages))
        or f"asset import job {job.get('id')} failed ({failures} failed task(s))"
    )


def imported_assets(runs: list[dict[str, Any]], client: Any = None, file_id: str | None = None) -> list[dict[str, Any]]:
    """``[{id, name, type}]`` of the assets an asset-import job created or updated.

    Public callers see only ``results.files`` on the runs of an asset-import job (RESTPKG
    ``getJobOutputFiles``); the assets are found with ``GET /api/assets?importedFileId=``
    (reference section 5). Asset summaries in ``results.assets`` are used when a run has them.
    """
    assets: list[dict[str, Any]] = []
    for run in runs:
        for asset in (run.get("results") or {}).get("assets") or []:
            if isinstance(asset, dict) and asset.get("id"):
                assets.append({"id": asset["id"], "name": asset.get("name"), "type": asset.get("type")})
    if not assets and client is not None and file_id:
        for asset in client.list_assets(importedFileId=file_id):
            assets.append({"id": asset["id"], "name": asset.get("name"), "type": asset.get("type")})
    return assets


def import_source_file(env: TaskEnv, client: Any, ftp: Any, selected: dict[str, Any]) -> dict[str, Any]:
    """Import one source file (see the module docstring); returns its outcome (small dict)."""
    from threekit_pipeline.ftp.paths import safe_local_path

    cfg = env.config
    item, note = locate_selected(ftp, selected, env=env, source=SOURCE)
    if item is None:
        log.info("%s: %s; nothing to do", selected["name"], note)
        return {
            "file": selected["name"],
            "remote_path": selected["path"],
            "size": selected.get("size"),
            "stamp": "",
            "status": STATUS_REJECTED,
            "reason": note,
            "job_id": None,
            "assets": [],
            "destination": "",
            "errors_path": "",
        }
    if note:
        log.info("%s: %s", item.name, note)
    workdir = env.run_dir("files", item.origin)
    local = safe_local_path(workdir, item.name)
    ftp.download(item.path, local)
    size = local.stat().st_size
    sha256 = sha256_of(local)
    outcome: dict[str, Any] = {
        "file": item.name,
        "remote_path": item.path,
        "size": size,
        "sha256": sha256,
        "stamp": item.stamp_label,
        "origin": item.origin,
        "status": "",
        "reason": "",
        "job_id": None,
        "assets": [],
        "destination": "",
        "errors_path": "",
    }
    log.info("%s: %d bytes, sha256 %s (%s)", item.name, size, sha256[:12], item.origin)

    with open_ledger(cfg, LEDGER_NAME) as ledger:
        previous = ledger.get(item.name)
        if previous is not None and previous.content_hash == sha256 and not env.force_full_resend:
            outcome["status"] = STATUS_UNCHANGED
            outcome["reason"] = f"same content already imported by run {previous.run_id}"
            log.info("%s: %s; not imported again", item.name, outcome["reason"])
        elif env.dry_run:
            outcome["status"] = STATUS_DRY_RUN
            outcome["reason"] = "would be imported (dry run: nothing sent or moved)"
            log.info("%s: %s", item.name, outcome["reason"])
            return outcome
        else:
            try:
                record = client.upload_file(local, filename=item.name)
                job_id = client.import_asset_file(record["id"], item.name)
            except ThreekitAPIError as exc:
                if exc.status not in THREEKIT_FILE_REJECTIONS:
                    raise  # authentication and other errors fail the task; the file stays for the next run
                outcome["status"] = STATUS_REJECTED
                outcome["reason"] = f"Threekit rejected the file (HTTP {exc.status}): {exc.message}"
                log.error("%s: %s", item.name, outcome["reason"])
                return _quarantine(env, ftp, item, local, outcome)
            outcome["job_id"] = job_id
            job = client.wait_for_job(job_id, poll_interval=0.5, deadline_s=cfg.job_deadline_seconds)
            runs = client.get_job_runs(job_id)
            failure = job_failure(job, runs)
            if failure is not None:
                outcome["status"] = STATUS_REJECTED
                outcome["reason"] = failure
                log.error("%s: Threekit rejected the file: %s", item.name, failure)
                return _quarantine(env, ftp, item, local, outcome)
            outcome["status"] = STATUS_IMPORTED
            outcome["assets"] = imported_assets(runs, client, record["id"])
            ids = (
                ", ".join(f"{a['id']} ({a.get('type')})" for a in outcome["assets"]) or "no asset id reported"
            )
            log.info("%s: imported by job %s -> %s", item.name, job_id, ids)
            # Recorded before archiving: if archiving fails, the retry only archives.
            ledger.record([(item.name, sha256)], run_id=env.run_id)

    if env.dry_run:
        return outcome
    moved = inbound.archive_file(
        ftp,
        item.path,
        archive_root=cfg.folder("archive"),
        source=SOURCE,
        processing_day=env.day,
        local_copy=local,
        scratch_dir=env.run_dir("scratch"),
    )
    outcome["destination"] = moved.destination
    log.info("%s: %s -> %s", item.name, moved.action, moved.destination)
    return outcome


def _quarantine(
    env: TaskEnv, ftp: Any, item: inbound.InboundFile, local: Path, outcome: dict[str, Any]
) -> dict[str, Any]:
    errors_csv = env.run_dir("errors") / f"{local.name}.errors.csv"
    write_csv(
        errors_csv,
        ERRORS_COLUMNS,
        [{"file": item.name, "line": "", "column": "", "value": "", "reason": outcome["reason"]}],
    )
    moved = inbound.reject_file(
        ftp,
        item.path,
        rejected_root=env.config.folder("rejected"),
        source=SOURCE,
        errors_csv=errors_csv,
        archive_root=env.config.folder("archive"),
    )
    outcome["destination"] = moved.destination
    outcome["errors_path"] = moved.errors_path or ""
    log.info("%s: quarantined at %s, errors in %s", item.name, moved.destination, moved.errors_path)
    return outcome


def build_report(
    env: TaskEnv,
    selection: str,
    files: Iterable[dict[str, Any]] | None,
    outcomes: Iterable[dict[str, Any] | None] | None,
) -> RunReport:
    """The run report from every file's outcome; a selected file without outcome is ``failed``."""
    report = RunReport(
        dag_id=env.dag_id,
        run_id=env.run_id,
        run_type=env.run_type,
        selection=selection,
        dry_run=env.dry_run,
        force_full_resend=env.force_full_resend,
    )
    received = [o for o in (outcomes or []) if o]
    unmatched = {}
    for outcome in received:
        unmatched[outcome["file"]] = unmatched.get(outcome["file"], 0) + 1
    for selected in files or []:
        if unmatched.get(selected["name"], 0) > 0:
            unmatched[selected["name"]] -= 1
            continue
        received.append(
            {
                "file": selected["name"],
                "remote_path": selected["path"],
                "size": selected.get("size"),
                "status": STATUS_FAILED,
                "reason": "the import task failed (see its log); the file was left where it was",
            }
        )
    for outcome in received:
        report.files.append(
            FileOutcome(
                file=outcome["file"],
                remote_path=outcome["remote_path"],
                size=outcome.get("size"),
                stamp=outcome.get("stamp", ""),
                status=outcome["status"],
                reason=outcome.get("reason", ""),
                destination=outcome.get("destination", ""),
                errors_path=outcome.get("errors_path", ""),
            )
        )
        if outcome["status"] == STATUS_REJECTED:
            report.rejected.append(
                RejectedRow(
                    stage="threekit",
                    file=outcome["file"],
                    line="",
                    column="",
                    value="",
                    reason=outcome["reason"],
                )
            )
        for asset in outcome.get("assets") or []:
            report.notes.append(
                f"{outcome['file']}: asset {asset['id']} ({asset.get('type')}) by job {outcome.get('job_id')}"
            )
    statuses = [f.status for f in report.files]
    report.counts = {
        "files": len(statuses),
        STATUS_IMPORTED: statuses.count(STATUS_IMPORTED),
        STATUS_UNCHANGED: statuses.count(STATUS_UNCHANGED),
        STATUS_REJECTED: statuses.count(STATUS_REJECTED),
        STATUS_FAILED: statuses.count(STATUS_FAILED),
        STATUS_DRY_RUN: statuses.count(STATUS_DRY_RUN),
    }
    if report.counts[STATUS_FAILED]:
        report.status = "failed"
    elif report.counts[STATUS_REJECTED]:
        report.status = "partial"
    return report


def check_complete(report: RunReport) -> None:
    """Raise when some file's task failed, so the run is marked failed after its report went out."""
    failed = [f.file for f in report.files if f.status == STATUS_FAILED]
    if failed:
        raise SourceAssetImportError(
            f"{len(failed)} file(s) could not be processed and stay in the inbound folder: {', '.join(failed)}"
        )


def publish_report(env: TaskEnv, ftp: Any, report: RunReport) -> dict[str, Any]:
    """Log the outcome table; upload the report (kept local only in a dry run)."""
    summary = summarize(report.to_dict())
    log.info(summary.line(sync_view_url(env.dag_id, env.run_id)))  # the log's first line
    log.info(
        "Source assets: %s\n%s",
        ", ".join(f"{k} {v}" for k, v in report.counts.items()),
        format_table([f.to_dict() for f in report.files], ("file", "status", "reason", "destination")),
    )
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
