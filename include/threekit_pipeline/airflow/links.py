"""Extra links from Threekit tasks to the Threekit web app.

Airflow 3 evaluates these in the worker when a task finishes (``get_link`` runs there and
its URL is stored in XCom under ``xcom_key``); the UI only reads the stored URL. Both links
read what the operator pushed to XCom and the base URL of the task's ``threekit``
connection; neither ever contains the API token. An empty string means "no link" (for
example an import in ``sync`` mode, which starts no job).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from threekit_pipeline.airflow.hooks.threekit import ThreekitHook

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

log = logging.getLogger(__name__)

XCOM_JOB_ID = "threekit_job_id"
XCOM_JOB_IDS = "threekit_job_ids"
XCOM_ASSETS_QUERY = "threekit_assets_query"

JOB_PATH = "/app/jobs/{job_id}"
ASSETS_PATH = "/app/assets"


def _base_url(operator: BaseOperator) -> str:
    conn_id = getattr(operator, "threekit_conn_id", ThreekitHook.default_conn_name)
    return ThreekitHook(threekit_conn_id=conn_id).api_base_url()


def threekit_job_url(base_url: str, job_id: str) -> str:
    """Web-app URL of one Threekit job."""
    return base_url.rstrip("/") + JOB_PATH.format(job_id=quote(str(job_id), safe=""))


def threekit_assets_url(base_url: str, query: dict[str, Any] | None) -> str:
    """Web-app URL of the asset list, filtered like the export (tags, keywords, type)."""
    params = {k: v for k, v in (query or {}).items() if v not in (None, "", [], ())}
    params = {k: ",".join(v) if isinstance(v, list | tuple) else str(v) for k, v in params.items()}
    suffix = f"?{urlencode(sorted(params.items()))}" if params else ""
    return base_url.rstrip("/") + ASSETS_PATH + suffix


class ThreekitJobLink(BaseOperatorLink):
    """The "Threekit job" link: the last catalog-import job the task started (XCom ``threekit_job_id``)."""

    name = "Threekit job"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        job_id = XCom.get_value(ti_key=ti_key, key=XCOM_JOB_ID)
        if not job_id:
            return ""
        return threekit_job_url(_base_url(operator), str(job_id))


class ThreekitAssetsLink(BaseOperatorLink):
    """The "Threekit assets" link: the asset list matching what an export task exported."""

    name = "Threekit assets"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        query = XCom.get_value(ti_key=ti_key, key=XCOM_ASSETS_QUERY)
        if query is None:
            return ""
        return threekit_assets_url(_base_url(operator), query if isinstance(query, dict) else None)


class ThreekitSyncLink(BaseOperatorLink):
    """The "Threekit sync" link of every task of an import DAG: that run in the Threekit sync view.

    Registered as a global link by ``plugins/threekit_sync.py``, so the API server computes it
    from the task's DAG and run ids (nothing stored, nothing secret).
    """

    name = "Threekit sync"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from threekit_pipeline.airflow.sync_view.data import import_dags_in_force
        from threekit_pipeline.pipelines.run_summary import sync_view_url

        if ti_key.dag_id not in import_dags_in_force():
            return ""
        return sync_view_url(ti_key.dag_id, ti_key.run_id)
