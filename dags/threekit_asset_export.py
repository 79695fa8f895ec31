"""
### threekit_asset_export

Exports selected Threekit assets as JSON every day at 03:30 UTC.

**Reads** the `threekit_pipeline` Variable's `export_asset_ids` (explicit asset ids) and
`export_asset_tags` (every asset carrying one of these tags, resolved through
`GET /api/assets`), then `GET /api/assets/export/<assetId>` for each.

**Writes** `folders.outbound_assets`/`<assetId>.json` (default `/outbound/assets`).

The resolved ids are exported in chunks of 25, one mapped task per chunk, so a large selection
runs in parallel and a retry redoes one chunk only. A configured id Threekit does not know is
reported and fails the run (after the other assets were delivered).

**Idempotent:** uploads are atomic and skipped when an asset's export did not change.

**Backfill:** not meaningful: an export is a snapshot of Threekit as it is now, whatever the run's
date; re-run the latest run instead.

**Params:** `dry_run` exports to staging only.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, task


@dag(
    dag_id="threekit_asset_export",
    description="Daily 03:30 UTC: exports the configured Threekit assets as JSON to FTP.",
    schedule=CronTriggerTimetable("30 3 * * *", timezone="UTC"),
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
    tags=["threekit", "export", "assets"],
    params={
        "dry_run": Param(False, type="boolean", description="Export to staging only; upload nothing."),
    },
)
def threekit_asset_export():
    @task
    def plan_assets() -> list[list[str]]:
        """Resolve the configured asset ids and tags into chunks of asset ids."""
        from airflow.sdk.exceptions import AirflowFailException
        from threekit_pipeline.airflow.run_state import log_effective_config
        from threekit_pipeline.pipelines.exports import ExportConfigError, plan_asset_export
        from threekit_pipeline.pipelines.runtime import TaskEnv

        env = TaskEnv.from_context()
        log_effective_config(env)
        try:
            with env.threekit() as client:
                return plan_asset_export(env, client)
        except ExportConfigError as exc:
            # Nothing configured to export: retrying cannot help.
            raise AirflowFailException(str(exc)) from None

    @task(
        map_index_template="{{ task.op_kwargs['asset_ids'] | length }} assets from {{ task.op_kwargs['asset_ids'][0] }}"
    )
    def export_assets(asset_ids: list[str]) -> dict:
        """Export one chunk of assets and upload the JSON files that changed."""
        from threekit_pipeline.pipelines.exports import export_asset_chunk
        from threekit_pipeline.pipelines.runtime import TaskEnv

        env = TaskEnv.from_context()
        with env.threekit() as client, env.ftp() as ftp:
            return export_asset_chunk(env, client, ftp, asset_ids)

    @task(trigger_rule="none_failed")
    def summarise(results: list[dict]) -> dict:
        """Totals over every chunk; fails (without retries) when configured assets are missing."""
        from airflow.sdk.exceptions import AirflowFailException
        from threekit_pipeline.pipelines.exports import summarise_asset_export

        total = summarise_asset_export(results)
        if total["missing"]:
            ids = ", ".join(m["asset_id"] for m in total["missing"])
            raise AirflowFailException(
                f"{len(total['missing'])} configured asset(s) not found in Threekit: {ids}"
            )
        return total

    summarise(export_assets.expand(asset_ids=plan_assets()))


threekit_asset_export()
