"""One-line run summaries and full rejection listings, for task logs, run notes and the sync view.

:func:`summarize` reads a run report (``RunReport.to_dict()`` or its JSON) of any of the three
import DAGs and returns a :class:`RunSummary`: what the run did in the terms an analyst uses
(products created / updated / unchanged / rejected / retired) and how many rejections were
rows, Threekit entries or whole files. :meth:`RunSummary.line` renders the sentence that opens
the ``finalize``/``report`` log, e.g.::

    2,000 products: 1,990 created, 0 updated, 5 unchanged, 5 rejected (rows 3, entries 1, files 1) · report: <link>

:func:`rejection_lines` lists rejected rows with their SKU and their whole reason (never cut).
No Airflow imports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: What one unit of each import DAG is called in summaries.
NOUNS = {
    "threekit_catalog_import": "products",
    "threekit_translations_import": "translation rows",
    "threekit_source_assets_import": "files",
}
#: Statuses of a retirement report's rows (``pipelines/retire.py``) that count as retired: the
#: policy was applied (deleted or tagged: ``retired``; ``retire: report``: ``reported``).
RETIRED_STATUSES = frozenset({"retired", "reported"})
REJECTIONS_SHOWN = 200
VALUE_CHARS = 80  # a cell's value is cut in logs (it is whole in the errors CSV); a reason never is


def _n(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _fmt(number: int) -> str:
    return f"{number:,}"


@dataclass
class RunSummary:
    """Counts of one import run, in an analyst's terms."""

    dag_id: str
    run_id: str
    noun: str
    status: str
    created: int = 0
    updated: int = 0
    imported: int = 0  # landed, Threekit did not say whether new (sync imports, translations, assets)
    unchanged: int = 0
    retired: int = 0
    rejected_rows: int = 0
    rejected_entries: int = 0
    rejected_files: int = 0
    dry_run: bool = False

    @property
    def rejected(self) -> int:
        return self.rejected_rows + self.rejected_entries + self.rejected_files

    @property
    def total(self) -> int:
        return self.created + self.updated + self.imported + self.unchanged + self.rejected

    @property
    def partial(self) -> bool:
        """Something was rejected: the run succeeded only in part."""
        return self.rejected > 0

    def rejected_detail(self) -> str:
        parts = [
            f"{label} {_fmt(count)}"
            for label, count in (
                ("rows", self.rejected_rows),
                ("entries", self.rejected_entries),
                ("files", self.rejected_files),
            )
            if count
        ]
        return f" ({', '.join(parts)})" if parts else ""

    def counts_text(self) -> str:
        parts = [f"{_fmt(self.created)} created", f"{_fmt(self.updated)} updated"]
        if self.imported:
            parts.append(f"{_fmt(self.imported)} imported")
        parts.append(f"{_fmt(self.unchanged)} unchanged")
        parts.append(f"{_fmt(self.rejected)} rejected{self.rejected_detail()}")
        if self.retired:
            parts.append(f"{_fmt(self.retired)} retired")
        return ", ".join(parts)

    def line(self, report_link: str = "") -> str:
        """``2,000 products: 1,990 created, ... · report: <link>`` (dry runs say so first)."""
        text = f"{_fmt(self.total)} {self.noun}: {self.counts_text()}"
        if self.dry_run:
            text = "Dry run (nothing sent or moved): " + text
        if report_link:
            text += f" · report: {report_link}"
        return text

    def note(self) -> str:
        """The DAG-run note: a mark a person sees in the run list, then the counts."""
        mark = "⚠ Partial success" if self.partial else "✓ All accepted"
        return f"{mark}: {self.line()}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            rejected=self.rejected,
            rejected_detail=self.rejected_detail(),
            total=self.total,
            partial=self.partial,
            line=self.line(),
        )
        return data


def retired_count(retirement: Mapping[str, Any] | None) -> int:
    """SKUs a retirement report (``<run>.retired.json``) retired; blocked, failed, dry-run rows are not."""
    if not retirement:
        return 0
    return sum(1 for row in retirement.get("retired") or [] if str(row.get("status") or "") in RETIRED_STATUSES)


def summarize(report: Mapping[str, Any], retirement: Mapping[str, Any] | None = None) -> RunSummary:
    """The :class:`RunSummary` of a run report of any import DAG.

    ``retirement``: the catalog run's retirement report (``<run>.retired.json``, written after
    the run report by ``retire_missing``); its retired SKUs are the summary's ``retired``.
    """
    dag_id = str(report.get("dag_id") or "")
    counts: Mapping[str, Any] = report.get("counts") or {}
    rejected = list(report.get("rejected") or [])
    summary = RunSummary(
        dag_id=dag_id,
        run_id=str(report.get("run_id") or ""),
        noun=NOUNS.get(dag_id, "items"),
        status=str(report.get("status") or ""),
        dry_run=bool(report.get("dry_run")),
        retired=_n(counts.get("retired")),
    )
    if retirement is not None:
        summary.retired = retired_count(retirement)
    if "products_distinct" in counts or "threekit_rejected" in counts:  # catalog import
        summary.created = _n(counts.get("created"))
        summary.updated = _n(counts.get("updated"))
        summary.imported = _n(counts.get("imported"))
        summary.unchanged = _n(counts.get("unchanged_skipped"))
        summary.rejected_rows = _n(counts.get("rows_rejected"))
        summary.rejected_entries = _n(counts.get("threekit_rejected"))
        summary.rejected_files = _n(counts.get("files_rejected"))
        if summary.dry_run:  # nothing was sent: what would have been
            summary.imported = _n(counts.get("to_send"))
    elif "rows_imported" in counts:  # translations import
        summary.imported = _n(counts.get("rows_imported"))
        summary.rejected_rows = _n(counts.get("rows_rejected"))
        summary.rejected_files = _n(counts.get("files_rejected"))
    else:  # source assets import: one unit per file
        summary.imported = _n(counts.get("imported"))
        summary.unchanged = _n(counts.get("unchanged"))
        summary.rejected_files = _n(counts.get("rejected"))
    if not summary.rejected and rejected:  # counts from an older report layout
        summary.rejected_rows = len(rejected)
    return summary


def log_rejections(logger: Any, rows: Iterable[Mapping[str, Any]], *, limit: int = REJECTIONS_SHOWN) -> None:
    """Log a header and one warning per rejected row (short records, each whole)."""
    lines = rejection_lines(rows, limit=limit).splitlines()
    if not lines:
        return
    shown = sum(1 for line in lines if not line.startswith("  ... and"))
    logger.warning("Rejected rows and entries: %d shown below, each with its SKU and reason", shown)
    for line in lines:
        logger.warning("%s", line)


def rejection_lines(rows: Iterable[Mapping[str, Any]], *, limit: int = REJECTIONS_SHOWN) -> str:
    """One line per rejected row or entry: SKU, where it came from, the value, the whole reason."""
    rows = list(rows)
    lines = []
    for row in rows[:limit]:
        sku = row.get("sku") or row.get("key") or ""
        where = str(row.get("file") or "")
        if row.get("line") not in (None, ""):
            where += f" line {row['line']}"
        if row.get("column"):
            where += f", column {row['column']}"
        value = row.get("value")
        head = f"SKU {sku}" if sku else "(no SKU)"
        stage = row.get("stage")
        text = f"  {head} · {where.strip() or '(whole file)'}"
        if value not in (None, ""):
            value = str(value)
            text += f" · value {value[:VALUE_CHARS]!r}" + ("…" if len(value) > VALUE_CHARS else "")
        if stage:
            text += f" · {stage}"
        reason = " ".join(str(row.get("reason") or "").split())
        lines.append(f"{text} · reason: {reason}")
    if len(rows) > limit:
        lines.append(f"  ... and {len(rows) - limit} more in the errors CSV")
    return "\n".join(lines)


SYNC_VIEW_PATH = "/threekit-sync/"


def sync_view_url(dag_id: str, run_id: str, base_url: str | None = None) -> str:
    """Address of a run's page in the Threekit sync view (Airflow's ``[api] base_url`` + path)."""
    from urllib.parse import urlencode

    if base_url is None:
        base_url = _airflow_base_url()
    return (
        (base_url or "").rstrip("/")
        + f"{SYNC_VIEW_PATH}run?"
        + urlencode({"dag_id": dag_id, "run_id": run_id})
    )


def _airflow_base_url() -> str:
    try:
        from airflow.configuration import conf

        return conf.get("api", "base_url", fallback="") or ""
    except Exception:  # outside Airflow: a relative link
        return ""
