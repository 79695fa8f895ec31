"""
### threekit_catalog_export

Exports the Threekit catalog for partners, every day at 03:00 UTC **and** whenever
`threekit_catalog_import` has updated the catalog (the `threekit://catalog` Asset).

**Reads** Threekit `GET /api/products/export/json`, filtered by the `threekit_pipeline` Variable's
`export_tags`, `export_keywords` and `export_types` (default: every item).

**Writes** to `folders.outbound_catalog` (default `/outbound/catalog`):
`catalog_<YYYYMMDD>.json` (Threekit's export, re-importable) and `catalog_<YYYYMMDD>.csv`
(one row per product: id, name, sku, description, tags, keywords, `metadata:<key>`,
`attribute:<name>`, `price:<pricebook>:<currency>`; cells starting with `=`, `+`, `-`, `@`
are neutralised with a leading `'`). `<YYYYMMDD>` is the run's logical date (asset-triggered
runs: the day they ran), so later runs of the same day replace that day's files.

**Idempotent:** files are uploaded atomically and only when their content changed (delivery
ledger in the staging directory); a re-run with an unchanged catalog uploads nothing.

**Backfill:** not meaningful: an export is a snapshot of Threekit as it is now, whatever the run's
date; re-run the latest run instead.

**Params:** `dry_run` exports to staging and reports what would be uploaded, without uploading.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task
from threekit_pipeline.pipelines.assets import THREEKIT_CATALOG


@dag(
    dag_id="threekit_catalog_export",
    description="Daily 03:00 UTC and after each catalog import: Threekit catalog as JSON and CSV to FTP.",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * *", timezone="UTC"), assets=THREEKIT_CATALOG
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args={
        "owner": "data-platform",
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
    },
    tags=["threekit", "export", "catalog"],
    params={
        "dry_run": Param(False, type="boolean", description="Export to staging only; upload nothing."),
    },
)
def threekit_catalog_export():
    @task
    def export_catalog() -> dict:
        """Stream the catalog export from Threekit and flatten it to CSV in staging."""
        from threekit_pipeline.airflow.run_state import log_effective_config
        from threekit_pipeline.pipelines.exports import stage_catalog_export
        from threekit_pipeline.pipelines.runtime import TaskEnv

        env = TaskEnv.from_context()
        log_effective_config(env)
        with env.threekit() as client:
            return stage_catalog_export(env, client)

    @task
    def deliver_catalog(staged: dict) -> dict:
        """Upload the JSON and CSV files that changed to the outbound catalog folder."""
        from threekit_pipeline.pipelines.exports import deliver_staged
        from threekit_pipeline.pipelines.runtime import TaskEnv

        env = TaskEnv.from_context()
        with env.ftp() as ftp:
            return deliver_staged(env, ftp, staged, "catalog export")

    deliver_catalog(export_catalog())


threekit_catalog_export()
