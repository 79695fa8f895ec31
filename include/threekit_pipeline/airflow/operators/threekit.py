"""Operators for Threekit imports and exports.

Thin by design: the work lives in :mod:`threekit_pipeline.threekit` (plain Python); these
operators build a client from the ``threekit`` connection in ``execute``, move *paths*
through XCom (never file contents) and log what a person reading the task log needs:
counts, and which entries were rejected and why. Retries are set by the DAGs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from threekit_pipeline.airflow.hooks.threekit import ThreekitHook
from threekit_pipeline.airflow.links import (
    XCOM_ASSETS_QUERY,
    XCOM_JOB_ID,
    XCOM_JOB_IDS,
    ThreekitAssetsLink,
    ThreekitJobLink,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from threekit_pipeline.threekit.client import ThreekitClient

log = logging.getLogger(__name__)

REJECTION_TABLE_ROWS = 20
REASON_WIDTH = 100


def default_outcome_path(jsonl_path: Path) -> Path:
    """``items.jsonl`` -> ``items.outcome.jsonl`` in the same directory."""
    return jsonl_path.with_name(f"{jsonl_path.stem}.outcome.jsonl")


def rejection_table(rejected: Sequence[Mapping[str, Any]], limit: int = REJECTION_TABLE_ROWS) -> str:
    """A fixed-width text table (line, key, reason) of the first ``limit`` rejected entries."""
    rows = [
        (str(r.get("line", "")), str(r.get("key") or ""), _one_line(str(r.get("reason") or "")))
        for r in list(rejected)[:limit]
    ]
    line_w = max([len("line"), *(len(r[0]) for r in rows)])
    key_w = min(40, max([len("key"), *(len(r[1]) for r in rows)]))
    header = f"{'line':>{line_w}}  {'key':<{key_w}}  reason"
    body = [f"{line:>{line_w}}  {key[:key_w]:<{key_w}}  {reason}" for line, key, reason in rows]
    return "\n".join([header, "-" * len(header), *body])


def import_counts(summary: Mapping[str, Any]) -> str:
    """``"2 created, 1 updated, 0 skipped (already imported), 1 rejected"`` from a summary dict."""
    parts = [f"{summary.get('created', 0)} created", f"{summary.get('updated', 0)} updated"]
    if summary.get("imported"):
        # Outcome files of earlier versions (synchronous imports without an existence check).
        parts.append(f"{summary['imported']} imported (created or updated)")
    parts.append(f"{summary.get('skipped', 0)} skipped (already imported)")
    parts.append(f"{summary.get('rejected', 0)} rejected")
    return ", ".join(parts)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= REASON_WIDTH else text[: REASON_WIDTH - 3] + "..."


class _JobRecordingClient:
    """Delegates to a ``ThreekitClient`` and remembers the ids of the import jobs it starts."""

    def __init__(self, client: ThreekitClient):
        self._client = client
        self._lock = threading.Lock()
        self.job_ids: list[str] = []

    def import_products_job(self, entries):
        job_id = self._client.import_products_job(entries)
        with self._lock:
            self.job_ids.append(job_id)
        return job_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class ThreekitImportOperator(BaseOperator):
    """Import a JSONL file of Threekit ``{query, product}`` entries (upsert) and record outcomes.

    Calls :func:`threekit_pipeline.threekit.importer.import_jsonl`; a re-run on the same
    input resumes from the outcome file, so retries converge. Returns the import summary
    (counts, first rejected entries, outcome path) and pushes the ids of the Threekit jobs
    it started (XCom ``threekit_job_ids``, last one in ``threekit_job_id``) for the
    "Threekit job" link, also when the import fails part-way.

    :param jsonl_path: local (shared-storage) path of the JSONL file. Templated.
    :param outcome_path: where per-entry outcomes go; default ``<stem>.outcome.jsonl`` next
        to the input. Templated.
    :param batch_size: entries per Threekit request/job.
    :param mode: ``"job"`` (asynchronous catalog-import jobs) or ``"sync"``.
    :param concurrency: batches in flight at once.
    :param job_deadline_s: a job still running after this many seconds is cancelled and
        the task fails (a retry resumes).
    :param threekit_conn_id: connection of type ``threekit``.
    """

    template_fields: Sequence[str] = ("jsonl_path", "outcome_path")
    operator_extra_links = (ThreekitJobLink(),)
    ui_color = "#dbe9f6"

    def __init__(
        self,
        *,
        jsonl_path: str | Path,
        outcome_path: str | Path | None = None,
        batch_size: int = 500,
        mode: str = "job",
        concurrency: int = 4,
        job_deadline_s: float = 900,
        threekit_conn_id: str = ThreekitHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("job", "sync"):
            raise ValueError(f"mode must be 'job' or 'sync', not {mode!r}")
        if batch_size < 1 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        self.jsonl_path = jsonl_path
        self.outcome_path = outcome_path
        self.batch_size = batch_size
        self.mode = mode
        self.concurrency = concurrency
        self.job_deadline_s = job_deadline_s
        self.threekit_conn_id = threekit_conn_id

    def execute(self, context: Context) -> dict:
        from threekit_pipeline.threekit.importer import import_jsonl

        jsonl_path = Path(str(self.jsonl_path))
        if not jsonl_path.is_file():
            raise FileNotFoundError(f"import input {jsonl_path} does not exist (expected a JSONL file)")
        outcome_path = Path(str(self.outcome_path)) if self.outcome_path else default_outcome_path(jsonl_path)
        hook = ThreekitHook(threekit_conn_id=self.threekit_conn_id)
        with hook.get_client() as client:
            recorder = _JobRecordingClient(client)
            try:
                summary = import_jsonl(
                    recorder,  # type: ignore[arg-type]  # duck-typed stand-in for the client
                    jsonl_path,
                    outcome_path,
                    batch_size=self.batch_size,
                    mode=self.mode,
                    concurrency=self.concurrency,
                    job_deadline_s=self.job_deadline_s,
                )
            finally:
                self._push_job_ids(context, recorder.job_ids)
        result = summary.to_dict()
        log.info(
            "Threekit import of %s: %d entries -> %s; outcomes in %s",
            jsonl_path,
            result["total"],
            import_counts(result),
            result["outcome_path"],
        )
        if result["rejected"]:
            shown = min(REJECTION_TABLE_ROWS, len(result["rejected_reasons"]))
            log.warning(
                "%d entries rejected; first %d:\n%s\n(all of them are in %s)",
                result["rejected"],
                shown,
                rejection_table(result["rejected_reasons"]),
                result["outcome_path"],
            )
        return result

    @staticmethod
    def _push_job_ids(context: Context, job_ids: list[str]) -> None:
        if not job_ids:
            return
        ti = context["ti"]
        ti.xcom_push(key=XCOM_JOB_IDS, value=list(job_ids))
        ti.xcom_push(key=XCOM_JOB_ID, value=job_ids[-1])
        log.info("Threekit job(s) started by this task: %s", ", ".join(job_ids))


class ThreekitCatalogExportOperator(BaseOperator):
    """Export the Threekit catalog (JSON array of ``{query, product}``) to a staging file.

    The file is written under a temporary name and renamed into place, so ``dest_path`` is
    either complete or absent. Returns ``{path, count, size, sha256}`` and pushes the export
    filter (XCom ``threekit_assets_query``) for the "Threekit assets" link.

    :param dest_path: local (shared-storage) path of the JSON file to write. Templated.
    :param tags: only products with these tags. Templated.
    :param keywords: only products with these keywords. Templated.
    :param types: only these asset types (Threekit ``type`` filter). Templated.
    :param threekit_conn_id: connection of type ``threekit``.
    """

    template_fields: Sequence[str] = ("dest_path", "tags", "keywords", "types")
    operator_extra_links = (ThreekitAssetsLink(),)
    ui_color = "#dbe9f6"

    def __init__(
        self,
        *,
        dest_path: str | Path,
        tags: Sequence[str] | str | None = None,
        keywords: Sequence[str] | str | None = None,
        types: Sequence[str] | str | None = None,
        threekit_conn_id: str = ThreekitHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dest_path = dest_path
        self.tags = tags
        self.keywords = keywords
        self.types = types
        self.threekit_conn_id = threekit_conn_id

    def execute(self, context: Context) -> dict:
        from threekit_pipeline.threekit.exports import export_catalog

        dest = Path(str(self.dest_path))
        query = {
            "tags": _as_list(self.tags),
            "keywords": _as_list(self.keywords),
            "type": _as_list(self.types),
        }
        context["ti"].xcom_push(key=XCOM_ASSETS_QUERY, value={k: v for k, v in query.items() if v})
        hook = ThreekitHook(threekit_conn_id=self.threekit_conn_id)
        with hook.get_client() as client:
            result = export_catalog(client, dest, tags=self.tags, keywords=self.keywords, types=self.types)
        log.info("exported %d Threekit products (%d bytes) to %s", result.count, result.size, result.path)
        return result.to_dict()


def _as_list(value: Sequence[str] | str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value if v]


def chunk_label(chunk_path: str) -> str:
    """``10 products: CHAIR-001 … LAMP-010`` from the chunk's SKU list (its ``.hashes.json``)."""
    import json
    from pathlib import Path

    try:
        skus = list(json.loads(Path(chunk_path).with_suffix(".hashes.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return Path(chunk_path).name
    if not skus:
        return "0 products"
    span = skus[0] if len(skus) == 1 else f"{skus[0]} … {skus[-1]}"
    return f"{len(skus)} product{'s' if len(skus) != 1 else ''}: {span}"


class CatalogChunkImportOperator(BaseOperator):
    """One chunk of the catalog import: import it, then record confirmed products in the ledger.

    The work is :func:`threekit_pipeline.pipelines.catalog_import.import_chunk`; being an
    operator (not a ``@task``) gives the mapped task instances a "Threekit job" link to the
    job(s) each chunk started. Configuration comes from the ``threekit_pipeline`` Variable
    at run time, like every task of the pipelines.
    """

    template_fields: Sequence[str] = ("chunk_path",)
    operator_extra_links = (ThreekitJobLink(),)

    def __init__(self, *, chunk_path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chunk_path = chunk_path

    def execute(self, context: Context) -> dict:
        from threekit_pipeline.pipelines import catalog_import
        from threekit_pipeline.pipelines.runtime import TaskEnv, staged_task

        @staged_task
        def run() -> dict:
            env = TaskEnv.from_context(context)
            chunk = env.staged(str(self.chunk_path))
            # Shown instead of "[3]" in the grid when the DAG sets map_index_template="{{ chunk_products }}".
            context["chunk_products"] = chunk_label(str(chunk))  # type: ignore[typeddict-unknown-key]
            with env.threekit() as client:
                recorder = _JobRecordingClient(client)
                try:
                    return catalog_import.import_chunk(env, str(chunk), recorder)
                finally:
                    ThreekitImportOperator._push_job_ids(context, recorder.job_ids)

        return run()
