"""
### threekit_translations_export

Exports Threekit's translations every day at 04:00 UTC.

**Reads** Threekit `GET /api/products/translations` (CSV: `Canonical Name` plus one column per
locale; item names, attribute names and values, metadata values, tags).

**Writes** to `folders.outbound_translations` (default `/outbound/translations`):
`translations_<YYYYMMDD>.csv` and, when the `threekit_pipeline` Variable sets
`translations_per_locale: true`, also `translations_<locale>_<YYYYMMDD>.csv` per locale
(columns `Canonical Name,<locale>`). `<YYYYMMDD>` is the run's logical date. Values are passed
through unchanged (these files are meant to come back through `threekit_translations_import`).

**Idempotent:** uploads are atomic and skipped when the content did not change.

**Backfill:** not meaningful: an export is a snapshot of Threekit as it is now, whatever the run's
date; re-run the latest run instead.

**Params:** `dry_run` exports to staging only.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, task


@dag(
    dag_id="threekit_translations_export",
    description="Daily 04:00 UTC: Threekit translations as CSV to FTP.",
    schedule=CronTriggerTimetable("0 4 * * *", timezone="UTC"),
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
    tags=["threekit", "export", "translations"],
    params={
        "dry_run": Param(False, type="boolean", description="Export to staging only; upload nothing."),
    },
)
def threekit_translations_export():
    @task
    def export_translations() -> dict:
        """Stream the translations CSV from Threekit (split per locale when configured)."""
        from threekit_pipeline.airflow.run_state import log_effective_config
        from threekit_pipeline.pipelines.exports import stage_translations_export
        from threekit_pipeline.pipelines.runtime import TaskEnv

        env = TaskEnv.from_context()
        log_effective_config(env)
        with env.threekit() as client:
            return stage_translations_export(env, client)

    @task
    def deliver_translations(staged: dict) -> dict:
        """Upload the translation files that changed to the outbound translations folder."""
        from threekit_pipeline.pipelines.exports import deliver_staged
        from threekit_pipeline.pipelines.runtime import TaskEnv

        env = TaskEnv.from_context()
        with env.ftp() as ftp:
            return deliver_staged(env, ftp, staged, "translations export")

    deliver_translations(export_translations())


threekit_translations_export()
