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

**Render on demand** (Variable `render_spec`, see `threekit_pipeline.threekit.renders`):
`plan_renders` starts render jobs (`POST /api/asset-jobs/:id/render/vray|webgl`) only for
the (item content, configuration, settings) combinations new or changed since their last
delivery (ledger `<staging>/ledger/render_delivery.sqlite`); `wait_for_renders` waits in the
triggerer (deferrable); `collect_renders` downloads each layer image and writes
`manifest_<YYYYMMDDTHHMMSS>.csv` (sku, configuration, file, size, sha256, ...);
`finish_renders` records what every destination received and fails naming each item and
configuration whose render failed or timed out (the other images are delivered). Without a
spec (or `render: existing`) the layers that exist are delivered as before.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, TriggerRule, dag, task
from threekit_pipeline.airflow.operators.threekit_render import ThreekitRenderJobsOperator
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
    def plan_renders() -> dict:
        """Start render jobs for new or changed (item, configuration) pairs of the render spec."""
        from threekit_pipeline.pipelines.render_on_demand import plan_renders as plan
        from threekit_pipeline.pipelines.runtime import TaskEnv

        env = TaskEnv.from_context()
        with env.threekit() as client:
            return plan(env, client)

    @task
    def collect_renders(plan: dict, outcomes: dict | None) -> list[dict]:
        """Download the render images (rendered now, or existing layers) and stage the manifest."""
        from threekit_pipeline.airflow.run_state import log_effective_config
        from threekit_pipeline.pipelines.render_on_demand import collect_rendered
        from threekit_pipeline.pipelines.renders import collect_renders as collect
        from threekit_pipeline.pipelines.runtime import TaskEnv

        env = TaskEnv.from_context()
        log_effective_config(env)
        with env.threekit() as client:
            if plan["mode"] == "existing":
                return collect(env, client)
            return collect_rendered(env, client, outcomes)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def finish_renders() -> dict:
        """Record what every destination received; fail naming renders that failed or timed out."""
        from threekit_pipeline.pipelines.render_on_demand import finish_renders as finish
        from threekit_pipeline.pipelines.runtime import TaskEnv

        return finish(TaskEnv.from_context())

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

    planned = plan_renders()
    waited = ThreekitRenderJobsOperator(task_id="wait_for_renders", plan=planned)
    summarise(deliver_renders.expand(plan=collect_renders(planned, waited.output))) >> finish_renders()


threekit_render_export()
