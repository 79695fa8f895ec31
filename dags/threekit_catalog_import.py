"""
### Threekit catalog import (hourly)

Reads ERP/PIM catalog files (products, options, prices, parts) from the FTP folder
`folders.inbound_catalog` (default `/inbound/catalog`), turns them into Threekit products
with the configured `mapping`, imports them, archives the files and uploads a run report.

**Flow**: wait for complete files (size and mtime stable for `stable_seconds`, or a marker
file per `marker_suffixes`; the run is skipped when nothing arrives within
`sensor_timeout_seconds`) -> download to staging -> transform per stamp batch -> skip
products whose content is unchanged since their last successful import (ledger
`<staging>/ledger/catalog_import.sqlite`) -> import in chunks of `batch_size` entries (one
mapped task per chunk) -> archive each file in `<archive>/catalog/YYYY/MM/DD/`, or
quarantine it in `<rejected>/catalog/` with `<file>.errors.csv` -> upload the run report ->
update the Asset `threekit://catalog` (only when products were created or updated), which
the export DAGs are scheduled on.

**Writes**: Threekit products; on FTP `<archive>/catalog/...`, `<rejected>/catalog/...` and
`<reports>/catalog_import/<run>.json|.csv|.errors.csv` (counts, per-file outcome, rejected
rows and entries with their reasons).

**File selection**: a scheduled or manual run takes every complete file waiting, oldest
`_YYYYMMDD[_HHMMSS]` stamp first; files sharing a stamp are one batch (held back while one
of them is still being uploaded); unstamped files come last. A backfill
(`airflow backfill create --dag-id threekit_catalog_import --from-date ... --to-date ...`)
or a manual run with `replay` processes the files whose stamp falls in the run's data
interval (or `replay_start`..`replay_end`), taking already processed files from the archive,
where they stay. If an import still fails after its retries, no file is moved: the next run
picks them up again and the ledger keeps it from re-sending what already landed.

**Params**: `dry_run`, `file`, `force_full_resend`, `replay`, `replay_start`, `replay_end`,
`confirm_retire` (see each param's description).

**Retiring discontinued products**: a source declared a full snapshot (`snapshot: full` in
the mapping's `lifecycle` block or the Variable's `catalog_lifecycle`) retires, after the
import, every SKU it imported before that its newest products file no longer holds
(`retire: delete|tag:<name>|report`); above `max_retire_ratio` (default 5 %) nothing is
retired and `retire_missing` fails naming the count until a run with `confirm_retire`.
Report: `<reports>/catalog_import/<run>.retired.json|.csv`.

**Configuration**: Airflow Variable `threekit_pipeline` (JSON; keys `mapping`, `folders`,
`batch_size`, `import_mode`, `import_concurrency`, `job_deadline_seconds`,
`stable_seconds`, `poke_interval_seconds`, `sensor_timeout_seconds`, `marker_suffixes`,
`staging_dir`, ...) and the connections `ftp_default` and `threekit_default` (ids
configurable in the Variable), all read when the tasks run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, Param, TriggerRule, dag, task
from threekit_pipeline.airflow.operators.threekit import CatalogChunkImportOperator
from threekit_pipeline.airflow.sensors.ftp import FtpCompleteFilesSensor
from threekit_pipeline.pipelines.assets import THREEKIT_CATALOG


def _env():
    from threekit_pipeline.pipelines.runtime import TaskEnv

    return TaskEnv.from_context()


def _skip(exc: Exception):
    from airflow.sdk.exceptions import AirflowSkipException

    return AirflowSkipException(str(exc))


@dag(
    dag_id="threekit_catalog_import",
    description="Hourly on the hour (UTC): ERP catalog files from FTP into Threekit products.",
    # Hourly data intervals (not cron trigger points): backfill runs replay [start, end).
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args={
        "owner": "data-platform",
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
    },
    tags=["threekit", "catalog", "inbound", "ftp"],
    params={
        "dry_run": Param(
            False,
            type="boolean",
            description="Transform, validate and plan only: nothing is sent to Threekit and no file is moved.",
        ),
        "file": Param(
            None,
            type=["null", "string"],
            description="Process only this file: a name in the inbound folder (or its archive day "
            "folder), or an absolute path inside the inbound or archive folder. Empty = normal selection.",
        ),
        "force_full_resend": Param(
            False,
            type="boolean",
            description="Ignore the delta ledger and send every product, even when unchanged.",
        ),
        "replay": Param(
            False,
            type="boolean",
            description="Replay the files stamped within the run's data interval (or replay_start.."
            "replay_end), from the archive when already processed.",
        ),
        "replay_start": Param(
            None,
            type=["null", "string"],
            description="Replay window start (ISO date or datetime, UTC, inclusive). Empty = data interval start.",
        ),
        "replay_end": Param(
            None,
            type=["null", "string"],
            description="Replay window end (ISO date or datetime, UTC, exclusive). Empty = data interval end.",
        ),
        "confirm_retire": Param(
            False,
            type="boolean",
            description="Apply a retirement that exceeded max_retire_ratio (the pending one of the last "
            "full snapshot, or this run's). The run does not wait for new files.",
        ),
    },
)
def threekit_catalog_import():
    @task
    def plan_run() -> list:
        """The sensor's arguments when this run waits for files (none for replays and "file" runs)."""
        from threekit_pipeline.airflow.run_state import log_effective_config
        from threekit_pipeline.pipelines import catalog_import

        env = _env()
        log_effective_config(env)
        return catalog_import.plan_run(env)

    plan = plan_run()

    # Mapped over 0 or 1 argument sets (read from the Variable at run time): a replay or a
    # "file" run has no sensor instance at all.
    wait_for_files = FtpCompleteFilesSensor.partial(task_id="wait_for_files", deferrable=True).expand_kwargs(plan)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def collect_files(complete) -> dict:
        """Select the files of this run and download them to staging."""
        from threekit_pipeline.pipelines import catalog_import

        env = _env()
        try:
            with env.ftp() as ftp:
                return catalog_import.collect_files(env, complete, ftp)
        except catalog_import.NothingToProcess as exc:
            raise _skip(exc) from None

    @task
    def transform_and_plan(collected: dict) -> list:
        """Transform per batch (pricebook names -> ids), skip unchanged products (ledger), write chunks."""
        from threekit_pipeline.pipelines import catalog_import

        env = _env()
        with env.threekit() as client:
            pricebooks = client.list_pricebooks()  # once per run, all pages
        return catalog_import.transform_and_plan(env, collected, pricebooks=pricebooks)["chunks"]

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def finalize() -> dict:
        """Archive or quarantine the files (only if every chunk landed) and upload the report."""
        from airflow.sdk.exceptions import AirflowFailException
        from threekit_pipeline.pipelines import catalog_import

        env = _env()
        try:
            if env.dry_run:
                return catalog_import.finalize(env, None)
            with env.ftp() as ftp:
                return catalog_import.finalize(env, ftp)
        except catalog_import.NothingToProcess as exc:
            raise _skip(exc) from None
        except catalog_import.ImportIncomplete as exc:
            # The chunks' own retries are spent; retrying this task cannot make them land.
            raise AirflowFailException(str(exc)) from None

    @task(outlets=[THREEKIT_CATALOG])
    def publish_catalog(result: dict) -> dict:
        """Emit the catalog Asset event (export DAGs run on it) when products changed."""
        from threekit_pipeline.pipelines import catalog_import

        if not catalog_import.should_publish(result):
            raise _skip(ValueError("no product was created or updated: the catalog Asset is not updated"))
        return {"changed": result["changed"], "report": result["report"]}

    @task
    def restore_returning(prepared: list) -> dict:
        """Restore (or untag) retired SKUs that this run carries again, before they are re-imported."""
        from threekit_pipeline.pipelines import retire

        env = _env()
        if env.dry_run:
            return retire.restore_returning(env, None)
        with env.threekit() as client:
            return retire.restore_returning(env, client)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def retire_missing() -> dict:
        """Retire the SKUs a full snapshot no longer holds (ratio guard, confirm_retire, dry_run)."""
        from contextlib import nullcontext

        from airflow.sdk.exceptions import AirflowFailException
        from threekit_pipeline.pipelines import retire

        env = _env()
        if not retire.has_work(env):
            raise _skip(ValueError("no catalog snapshot in this run and no confirmed retirement"))
        try:
            with (nullcontext() if env.dry_run else env.threekit()) as client:
                with (nullcontext() if env.dry_run else env.ftp()) as ftp:
                    return retire.retire_missing(env, client, ftp)
        except retire.RetireBlocked as exc:
            # Retrying cannot unblock it; a manual run with confirm_retire can.
            raise AirflowFailException(str(exc)) from None

    @task
    def all_accepted(result: dict) -> str:
        """Green when nothing was rejected; skipped (pink) on a partial run, saying what was rejected."""
        from threekit_pipeline.airflow.run_state import all_accepted_task

        return all_accepted_task(result)

    collected = collect_files(wait_for_files.output)
    prepared = transform_and_plan(collected)
    # One mapped task per chunk; each links to the Threekit job(s) it started.
    imported = CatalogChunkImportOperator.partial(
        task_id="import_chunk", map_index_template="{{ chunk_products }}"
    ).expand(chunk_path=prepared)
    done = finalize()
    [prepared, imported] >> done
    restore_returning(prepared) >> imported
    publish_catalog(done)
    done >> retire_missing()
    all_accepted(done)


threekit_catalog_import()
