"""
### threekit_render_export

Delivers rendered images (Threekit layers) of catalog items to FTP folders, every day at
05:00 UTC **and** whenever `threekit_catalog_import` has updated the catalog.

**Reads** the items carrying one of the `threekit_pipeline` Variable's `render_tags` (empty:
every item), each item's layers (`GET /api/layers?assetId=`) and their image bytes. Images
are cached in the staging directory; an image whose SHA-256 is unchanged is not downloaded
again.

**Writes**, for each folder of `render_destinations` (default: `folders.outbound_renders`,
e.g. a DAM, a partner and an archive folder), `<dest>/<sku>/<file>` per image and
`<dest>/manifest_<YYYYMMDD>.csv` (sku, asset_id, layer_id, configuration, file, size, sha256,
format, width, height). SKU folder names are made safe for file systems. One mapped task per
destination; the manifest is uploaded after the images it lists.

**Idempotent:** only new or changed images are uploaded (SHA-256 compared with the delivery
ledger); images of items that disappeared are left in place.

**Backfill:** not meaningful: an export is a snapshot of Threekit as it is now, whatever the run's
date; re-run the latest run instead.

**Params:** `dry_run` downloads and writes the manifest to staging only.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task
from threekit_pipeline.pipelines.assets import THREEKIT_CATALOG


@dag(
    dag_id="threekit_render_export",
    description="Daily 05:00 UTC and after each catalog import: rendered images to the FTP folders.",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 5 * * *", timezone="UTC"), assets=THREEKIT_CATALOG
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
    tags=["threekit", "export", "renders"],
    params={
        "dry_run": Param(False, type="boolean", description="Download and stage only; upload nothing."),
    },
)
def threekit_render_export():
    @task
    def collect_renders() -> list[dict]:
        """Download the render images of the selected items and stage the day's manifest."""
        from threekit_pipeline.airflow.run_state import log_effective_config
        from threekit_pipeline.pipelines.renders import collect_renders as collect
        from threekit_pipeline.pipelines.runtime import TaskEnv

        env = TaskEnv.from_context()
        log_effective_config(env)
        with env.threekit() as client:
            return collect(env, client)

    @task(map_index_template="{{ task.op_kwargs['plan']['destination'] }}")
    def deliver_renders(plan: dict) -> dict:
        """Upload new or changed images and the manifest to one destination folder."""
        from threekit_pipeline.pipelines.renders import deliver_renders as deliver
        from threekit_pipeline.pipelines.runtime import TaskEnv

        env = TaskEnv.from_context()
        with env.ftp() as ftp:
            return deliver(env, ftp, plan)

    @task
    def summarise(results: list[dict]) -> dict:
        """One line per destination: images, uploaded, unchanged."""
        from threekit_pipeline.pipelines.renders import summarise_render_delivery

        return summarise_render_delivery(list(results))

    summarise(deliver_renders.expand(plan=collect_renders()))


threekit_render_export()
