"""What the Threekit sync view shows, read from the staging directory or the FTP reports folder.

No web framework and no Airflow imports here: :class:`ReportStore` finds a run's report files
(``<staging>/<dag_id>/<run>/report/<run>.json|.errors.csv|.csv``, else the uploaded copies in
``<reports>/<source>/`` on FTP, fetched by the server through the configured connection) and
:func:`sku_history` answers "what happened to this SKU?" across the catalog import runs kept in
staging: the import plan says which files carried it (``sources.csv``: the file and line its
product came from), the chunk outcomes what Threekit did and the item id, the rejected rows why
it was left out, and the run's retirement report (``retire/<run>.retired.json``, also on FTP as
``<reports>/catalog_import/<run>.retired.json``) whether it was retired.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from threekit_pipeline.feeds import REPORT_SUBDIRS, FeedsError, ImportDag
from threekit_pipeline.pipelines.reports import sanitize_run_id
from threekit_pipeline.pipelines.run_summary import RETIRED_STATUSES, summarize

log = logging.getLogger(__name__)

CATALOG_DAG = "threekit_catalog_import"
#: The default feeds file's import DAG -> its kind (``include/feeds/default.yaml``).
DEFAULT_IMPORT_KINDS = {
    CATALOG_DAG: "catalog",
    "threekit_translations_import": "translations",
    "threekit_source_assets_import": "source_assets",
}
#: Import DAG -> sub-folder of the FTP reports folder holding its run reports (default feeds).
IMPORT_DAGS = {dag_id: REPORT_SUBDIRS[kind] for dag_id, kind in DEFAULT_IMPORT_KINDS.items()}


def default_import_dags(reports_root: str = "/reports", transfer: str = "") -> dict[str, ImportDag]:
    """The default feeds file's import DAGs, their reports under ``reports_root``."""
    return {
        dag_id: ImportDag(
            dag_id=dag_id,
            feed_id=dag_id,
            kind=kind,
            transfer=transfer,
            reports_folder=reports_root,
            reports_subdir=REPORT_SUBDIRS[kind],
        )
        for dag_id, kind in DEFAULT_IMPORT_KINDS.items()
    }


def import_dags_in_force() -> dict[str, ImportDag]:
    """``{dag_id: ImportDag}`` of the feeds file in force (every import feed, not only the defaults).

    A feeds file that cannot be read gives the defaults (its DAG file shows the error as an import
    error already); the view keeps answering for them.
    """
    from threekit_pipeline.airflow.dag_factories import import_dags_in_force as in_force

    try:
        return {dag.dag_id: dag for dag in in_force()}
    except (FeedsError, OSError) as exc:
        log.warning("Feeds file not readable (%s): the sync view lists the default import DAGs", exc)
        return default_import_dags()
KINDS = {
    "json": ".json",
    "csv": ".csv",
    "errors": ".errors.csv",
    # The catalog import's retirement report (``retire_missing``), next to the run report on FTP.
    "retired": ".retired.json",
    "retired_csv": ".retired.csv",
}
RETIRE_KINDS = ("retired", "retired_csv")
#: Files a catalog run keeps in its staging folder (names as in pipelines/catalog_import.py).
PLAN_FILE = "plan.json"
SOURCES_FILE = "sources.csv"
RETIRE_DIR = "retire"
MAX_RUNS_SEARCHED = 500
MAX_REPORT_BYTES = 50_000_000
SECRET_WORDS = ("password", "secret", "token", "key", "credential")


@dataclass
class SkuEvent:
    """One run's dealing with one SKU."""

    dag_id: str
    run_id: str
    what: str  # created | updated | imported | unchanged | rejected | resumed | planned
    threekit_id: str = ""
    file: str = ""
    line: str = ""
    reason: str = ""
    run_dir: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReportStore:
    """Run reports of the import DAGs: staging first, then the feed's transfer server.

    ``dags`` maps each import DAG id to its feed's :class:`ImportDag` (kind, transfer connection,
    reports folder); default: the default feeds file's three DAGs with reports under
    ``reports_root``. ``ftp_factory(conn_id)`` returns a context manager yielding a transfer client
    with ``read_bytes(remote)`` (the project's FTP or SFTP client) for the DAG's connection id (""
    for the configured default); it is only called when staging lacks a file. Errors never include
    connection details: a file that cannot be read is simply "not available".
    """

    def __init__(
        self,
        staging_dir: str | Path,
        reports_root: str = "/reports",
        ftp_factory: Callable[[str], Any] | None = None,
        dags: Mapping[str, ImportDag] | None = None,
    ) -> None:
        # A local folder, or (object-storage staging) an ObjectStoragePath: only pathlib methods are used.
        self.staging = staging_dir if hasattr(staging_dir, "joinpath") else Path(staging_dir)
        self.reports_root = "/" + reports_root.strip("/")
        self.ftp_factory = ftp_factory
        self.dags = dict(dags) if dags is not None else default_import_dags(self.reports_root)

    def is_catalog(self, dag_id: str) -> bool:
        return dag_id in self.dags and self.dags[dag_id].kind == "catalog"

    def run_dir(self, dag_id: str, run_id: str) -> Path:
        return self.staging / dag_id / sanitize_run_id(run_id)

    def local_path(self, dag_id: str, run_id: str, kind: str) -> Path:
        name = sanitize_run_id(run_id)
        folder = RETIRE_DIR if kind in RETIRE_KINDS else "report"
        return self.run_dir(dag_id, run_id) / folder / f"{name}{KINDS[kind]}"

    def remote_path(self, dag_id: str, run_id: str, kind: str) -> str:
        dag = self.dags[dag_id]
        folder = "/".join(part for part in (dag.reports_folder.strip("/"), dag.reports_subdir) if part)
        return f"/{folder}/{sanitize_run_id(run_id)}{KINDS[kind]}"

    def read(self, dag_id: str, run_id: str, kind: str) -> bytes | None:
        """The bytes of a report file, or None when neither staging nor FTP has it."""
        if dag_id not in self.dags or kind not in KINDS:
            return None
        local = self.local_path(dag_id, run_id, kind)
        if local.is_file():
            return local.read_bytes()
        if self.ftp_factory is None:
            return None
        try:
            with self.ftp_factory(self.dags[dag_id].transfer) as ftp:
                return ftp.read_bytes(self.remote_path(dag_id, run_id, kind), max_bytes=MAX_REPORT_BYTES)
        except Exception as exc:  # missing file or FTP down: the view says "not available"
            log.info(
                "Report %s of %s %s not available from FTP (%s)", kind, dag_id, run_id, type(exc).__name__
            )
            return None

    def report(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        data = self.read(dag_id, run_id, "json")
        if data is None:
            return None
        with contextlib.suppress(ValueError):
            return json.loads(data)
        return None

    def retirement(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        """The retirement report of a catalog run (``retire_missing``), or None (none written)."""
        if not self.is_catalog(dag_id):
            return None
        data = self.read(dag_id, run_id, "retired")
        if data is None:
            return None
        with contextlib.suppress(ValueError):
            value = json.loads(data)
            return value if isinstance(value, dict) else None
        return None

    def summary(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        """The run's :class:`RunSummary` as a dict (report counts plus its retirements), or None."""
        report = self.report(dag_id, run_id)
        retirement = self.retirement(dag_id, run_id)
        if report is None and retirement is None:
            return None
        return summarize(report or {"dag_id": dag_id, "run_id": run_id}, retirement=retirement).to_dict()

    def errors(self, dag_id: str, run_id: str) -> list[dict[str, str]]:
        data = self.read(dag_id, run_id, "errors")
        if not data:
            return []
        return list(csv.DictReader(io.StringIO(data.decode("utf-8", errors="replace"))))


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with contextlib.suppress(OSError), path.open(encoding="utf-8") as handle:
        for line in handle:
            with contextlib.suppress(ValueError):
                yield json.loads(line)


def sku_history(store: ReportStore, sku: str, *, limit_runs: int = MAX_RUNS_SEARCHED) -> list[SkuEvent]:
    """Every run of every catalog import DAG (kept in staging) that touched or retired ``sku``, newest first."""
    sku = sku.strip()
    if not sku:
        return []
    dated = []
    for dag_id in sorted(d for d in store.dags if store.is_catalog(d)):
        root = store.staging / dag_id
        if not root.is_dir():
            continue
        for run_dir in root.iterdir():
            marks = [run_dir / PLAN_FILE, *sorted((run_dir / RETIRE_DIR).glob("*.retired.json"))]
            times = [p.stat().st_mtime for p in marks if p.is_file()]
            if times:
                dated.append((max(times), dag_id, run_dir))
    dated.sort(key=lambda item: item[0], reverse=True)
    events: list[SkuEvent] = []
    for _, dag_id, run_dir in dated[:limit_runs]:
        events.extend(_sku_events_of_run(run_dir, sku, dag_id))
    return events


def _run_id_of(run_dir: Path) -> str:
    candidates = [run_dir / "report" / f"{run_dir.name}.json", run_dir / RETIRE_DIR / f"{run_dir.name}.retired.json"]
    for path in candidates:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            run_id = json.loads(path.read_text(encoding="utf-8")).get("run_id")
            if run_id:
                return str(run_id)
    return run_dir.name


def source_of(run_dir: Path, sku: str) -> tuple[str, str] | None:
    """``(file, line)`` the run's product ``sku`` came from (``sources.csv`` of the plan), or None."""
    with contextlib.suppress(OSError), (run_dir / SOURCES_FILE).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("sku") == sku:
                return str(row.get("file") or ""), str(row.get("line") or "")
    return None


def _retirement_events(run_dir: Path, sku: str, base: Mapping[str, str]) -> list[SkuEvent]:
    events = []
    for path in sorted((run_dir / RETIRE_DIR).glob("*.retired.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for row in report.get("retired") or []:
            if row.get("sku") != sku:
                continue
            status = str(row.get("status") or "")
            detail = str(row.get("detail") or "")
            action = str(row.get("action") or report.get("retire") or "")
            events.append(
                SkuEvent(
                    **{**base, "file": ", ".join(report.get("snapshot_files") or [])},
                    what="retired" if status in RETIRED_STATUSES else f"retire {status}".strip(),
                    threekit_id=str(row.get("threekit_id") or ""),
                    reason="; ".join(
                        part
                        for part in (
                            f"missing from the full snapshot (retire: {action})" if action else "",
                            detail,
                        )
                        if part
                    ),
                )
            )
    return events


def _sku_events_of_run(run_dir: Path, sku: str, dag_id: str = CATALOG_DAG) -> list[SkuEvent]:
    plan: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        plan = json.loads((run_dir / PLAN_FILE).read_text(encoding="utf-8"))
    files = [name for name, skus in (plan.get("skus_by_file") or {}).items() if sku in skus]
    rejected = [r for r in plan.get("rejected") or [] if (r.get("sku") or r.get("key")) == sku]
    outcome = None
    for path in sorted((run_dir / "chunks").glob("*.outcome.jsonl")):
        for record in _read_jsonl(path):
            if record.get("key") == sku:
                outcome = record
    base = {"dag_id": dag_id, "run_id": "", "run_dir": str(run_dir), "file": ", ".join(files)}
    retired = _retirement_events(run_dir, sku, base)
    if not (files or rejected or outcome or retired):
        return []
    run_id = _run_id_of(run_dir)
    base["run_id"] = run_id
    for event in retired:
        event.run_id = run_id
    events = [
        SkuEvent(
            **{**base, "file": r.get("file") or base["file"]},
            what="rejected",
            line=str(r.get("line") or ""),
            reason=str(r.get("reason") or ""),
        )
        for r in rejected
    ]
    source = source_of(run_dir, sku) if (files or outcome) else None
    landed = {**base, "file": source[0], "line": source[1]} if source else base
    if outcome is not None:
        status = str(outcome.get("status") or "")
        if status == "skipped":  # confirmed by an earlier attempt of the same run
            status = str(outcome.get("previous_status") or "imported")
        events.append(
            SkuEvent(
                **landed,
                what=status,
                threekit_id=str(outcome.get("id") or ""),
                reason=str(outcome.get("reason") or ""),
            )
        )
    elif files and not rejected:
        to_send = set()
        for chunk in plan.get("chunks") or []:
            hashes = Path(chunk).with_suffix(".hashes.json")
            with contextlib.suppress(OSError, ValueError):
                to_send |= set(json.loads(hashes.read_text(encoding="utf-8")))
        events.append(SkuEvent(**landed, what="planned" if sku in to_send else "unchanged"))
    return events + retired


def mask_secrets(value: Any, key: str = "") -> Any:
    if isinstance(value, Mapping):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, key) for v in value]
    if any(word in key.lower() for word in SECRET_WORDS) and not key.lower().endswith("conn_id") and value:
        return "***"
    return value
