"""Run reports: what a run read, sent, skipped and rejected, for analysts.

A :class:`RunReport` is written as ``<run>.json`` (everything), ``<run>.csv`` (one line per
file: outcome, counts, where it went) and, when something was rejected, ``<run>.errors.csv``
(one line per rejected row or entry: file, line, column, value, reason). ``<run>`` is the
sanitised run id. :func:`upload_report` puts them under ``<reports>/<source>/`` atomically.
Text cells are formula-neutralised so the CSVs open safely in spreadsheet programs.

No Airflow imports; :func:`format_table` renders the log tables.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE_COLUMNS = (
    "file",
    "remote_path",
    "size",
    "stamp",
    "status",
    "rows_read",
    "products_written",
    "rows_rejected",
    "reason",
    "destination",
    "errors_path",
)
REJECTED_COLUMNS = ("stage", "file", "line", "column", "value", "sku", "reason")

_UNSAFE_RUN_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def sanitize_run_id(run_id: str) -> str:
    """A file-name-safe form of a run id (``manual__2026-11-23T10:00:00+00:00`` ->
    ``manual__2026-11-23T10-00-00-00-00``)."""
    cleaned = _UNSAFE_RUN_CHARS.sub("-", run_id.replace(":", "-").replace("+", "-")).strip("-.")
    # "<dag_id>/shared" is the folder a DAG keeps across runs (TaskEnv.shared_dir, the render cache):
    # a run with the id "shared" must not get it as its run folder.
    return "run-shared" if cleaned == "shared" else cleaned or "run"


def neutralise_cell(value: Any) -> Any:
    """Prefix text that a spreadsheet would evaluate as a formula with a quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


@dataclass
class FileOutcome:
    """What happened to one source file."""

    file: str
    remote_path: str
    size: int | None = None
    stamp: str = ""
    # imported | partially imported | held | unchanged | rejected | failed | dry_run | pending
    status: str = "pending"
    rows_read: int = 0
    products_written: int = 0
    rows_rejected: int = 0
    reason: str = ""
    destination: str = ""
    errors_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RejectedRow:
    """One rejected input row (stage ``transform``) or import entry (stage ``threekit``)."""

    stage: str
    file: str
    line: int | str | None
    column: str
    value: str
    reason: str
    sku: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunReport:
    """Everything an analyst needs about one run; serialisable to JSON and CSV."""

    dag_id: str
    run_id: str
    run_type: str = ""
    logical_date: str = ""
    selection: str = ""
    dry_run: bool = False
    force_full_resend: bool = False
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished_at: str = ""
    status: str = "success"
    counts: dict[str, int] = field(default_factory=dict)
    files: list[FileOutcome] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    chunks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return sanitize_run_id(self.run_id)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rejected_total"] = len(self.rejected)
        return data

    def write(self, folder: Path) -> dict[str, Path]:
        """Write ``<run>.json``, ``<run>.csv`` and (if any rejections) ``<run>.errors.csv``."""
        folder.mkdir(parents=True, exist_ok=True)
        if not self.finished_at:
            self.finished_at = datetime.now(UTC).isoformat()
        paths = {"json": folder / f"{self.name}.json", "csv": folder / f"{self.name}.csv"}
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str) + "\n")
        write_csv(paths["csv"], FILE_COLUMNS, (f.to_dict() for f in self.files))
        if self.rejected:
            paths["errors"] = folder / f"{self.name}.errors.csv"
            write_csv(paths["errors"], REJECTED_COLUMNS, (r.to_dict() for r in self.rejected))
        return paths


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Write rows (dicts) as CSV with the given columns, formula-neutralised; returns the row count."""
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: neutralise_cell(row.get(key, "")) for key in columns})
            count += 1
    return count


def read_rejections_csv(path: Path, *, stage: str, default_file: str = "") -> list[RejectedRow]:
    """Read an errors CSV (``file,line,column[,key],value,reason`` [+ ``sku``]) into report rows."""
    rows: list[RejectedRow] = []
    if not path or not Path(path).exists():
        return rows
    with open(path, newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            rows.append(
                RejectedRow(
                    stage=stage,
                    file=record.get("file") or default_file,
                    line=record.get("line") or "",
                    column=record.get("column") or "",
                    value=record.get("value") or "",
                    reason=record.get("reason") or "",
                    sku=record.get("sku") or record.get("key") or "",
                )
            )
    return rows


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, limit: int = 20, width: int = 60) -> str:
    """Fixed-width text table of the first ``limit`` rows for task logs (long cells are cut)."""
    if not rows:
        return "(none)"
    shown = rows[:limit]

    def cell(value: Any) -> str:
        text = "" if value is None else str(value).replace("\n", " ")
        return text if len(text) <= width else text[: width - 1] + "…"

    widths = {c: max(len(c), *(len(cell(r.get(c))) for r in shown)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(cell(r.get(c)).ljust(widths[c]) for c in columns) for r in shown]
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more (see the errors CSV)")
    return "\n".join(lines)


def upload_report(client: Any, report: RunReport, local_dir: Path, reports_root: str, source: str) -> dict[str, str]:
    """Write the report locally and upload it atomically to ``<reports_root>/<source>/``.

    Re-uploading the same run's report replaces it (the latest attempt is the truth).
    Returns ``{"json": remote, "csv": remote[, "errors": remote]}``.
    """
    local_paths = report.write(local_dir)
    remote_dir = "/" + "/".join(p.strip("/") for p in (reports_root, source) if p.strip("/"))
    client.makedirs(remote_dir)
    remote: dict[str, str] = {}
    for kind, local in local_paths.items():
        target = f"{remote_dir}/{local.name}"
        remote[kind] = client.upload_atomic(local, target) or target
    log.info("Run report uploaded: %s", ", ".join(remote.values()))
    return remote


#: How many reasons of a quarantined file a notification lists in its body.
MAX_NOTIFIED_REASONS = 10


def reason_line(row: RejectedRow) -> str:
    """One rejected row for a notification body: ``line 4, SKU A-1, price='lots': not a number``."""
    where = ", ".join(part for part in (
        f"line {row.line}" if row.line not in (None, "") else "",
        f"SKU {row.sku}" if row.sku else "",
        f"{row.column}={row.value!r}" if row.column else "",
    ) if part)
    return f"{where}: {row.reason}" if where else row.reason


def quarantined_files(report: RunReport, ftp: Any, local_dir: Path) -> list[dict[str, Any]]:
    """What the feed's quarantine notification needs, per file ``report`` lists as rejected.

    Each entry: ``file``, ``quarantine_path`` and ``errors_path`` (remote), ``errors_csv`` (a
    local copy, downloaded from the quarantine folder into ``local_dir``: the attachment is the
    file the partner finds there), ``reasons`` (the first :data:`MAX_NOTIFIED_REASONS`, from the
    report's rejected rows of that file, else the file's reason) and ``total_errors``. Files
    quarantined without an errors CSV get ``errors_csv`` ``""``.
    """
    entries = []
    for outcome in report.files:
        if outcome.status != "rejected" or not outcome.destination:
            continue
        rows = [r for r in report.rejected
                if outcome.file in {part.strip() for part in str(r.file).split(",")}]
        reasons = [reason_line(r) for r in rows] or [outcome.reason or "file rejected"]
        local = ""
        if outcome.errors_path:
            # One sub-folder per file: the attachment keeps the name it has in the quarantine folder.
            target = local_dir / f"{len(entries):04d}" / outcome.errors_path.rsplit("/", 1)[-1]
            target.parent.mkdir(parents=True, exist_ok=True)
            ftp.download(outcome.errors_path, target)
            local = str(target)
        entries.append({"file": outcome.file, "quarantine_path": outcome.destination,
                        "errors_path": outcome.errors_path, "errors_csv": local,
                        "reasons": reasons[:MAX_NOTIFIED_REASONS], "total_errors": len(reasons)})
    return entries
