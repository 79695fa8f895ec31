"""
### threekit_translations_import (hourly)

Imports regional translation CSVs from FTP into Threekit.

**Reads** `*.csv` files in `folders.inbound_translations` (default `/inbound/translations`):
a `Canonical Name` column plus one column per locale (`en`, `fr`, `de-CH`, `pt_BR` -> `pt-BR`).
Each file is validated: bad locale columns, empty and duplicate names are reported (the first
occurrence of a name is kept).

**Flow**: wait for complete files (size/mtime stable for `stable_seconds`, or marker files per
`marker_suffixes`; the run is skipped when nothing arrives within `sensor_timeout_seconds`) ->
validate each file, oldest `_YYYYMMDD[_HHMMSS]` stamp first -> `POST /api/products/translations`
with the clean rows -> archive the file in `<archive>/translations/YYYY/MM/DD/` only after
Threekit accepted it. A file without `Canonical Name`, without a valid locale, or with more bad
rows than `max_error_ratio` is quarantined in `<rejected>/translations/` with
`<file>.errors.csv` beside it.

**Writes**: Threekit translations; FTP archive/rejected folders and the run report
`<reports>/translations_import/<run>.json` (+ `.csv`, `.errors.csv` with every left-out row:
file, line, column, value, reason).

**File selection**: scheduled and manual runs take every complete file waiting. A backfill
(`airflow backfill create --dag-id threekit_translations_import --from-date ... --to-date ...`)
or a manual run with `replay` re-imports the files stamped within the run's data interval (or
`replay_start`..`replay_end`), from the archive when already processed; they stay archived.
Importing overwrites translations, so re-runs and replays converge to the same state; a file
delivered again with content already imported (ledger `<staging>/ledger/translations_import.sqlite`)
is archived without being sent again, unless `force_full_resend` is set; replays always send.

**Configuration**: Variable `threekit_pipeline` (folders, sensor timings, `max_error_ratio`),
connections `ftp_default` and `threekit_default`; read when the tasks run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, Param, TriggerRule, dag, task
from threekit_pipeline.airflow.sensors.ftp import FtpCompleteFilesSensor

INBOUND_KEY = "inbound_translations"


@dag(
    dag_id="threekit_translations_import",
    description="Hourly on the hour (UTC): translation CSVs from FTP into Threekit.",
    # Hourly data intervals: a backfill run replays the stamps of its [start, end).
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
    tags=["threekit", "translations", "inbound", "ftp"],
    params={
        "dry_run": Param(
            False,
            type="boolean",
            description="Validate only: nothing is sent to Threekit and no file is moved.",
        ),
        "file": Param(
            None,
            type=["null", "string"],
            description="Process only this file: a name in the inbound folder (or its archive day folder), "
            "or an absolute path inside the inbound or archive folder. Empty = normal selection.",
        ),
        "force_full_resend": Param(
            False,
            type="boolean",
            description="Send every selected file to Threekit even when the same content was imported before.",
        ),
        "replay": Param(
            False,
            type="boolean",
            description="Re-import the files stamped within the run's data interval (or replay_start.."
            "replay_end), from the archive when already processed.",
        ),
        "replay_start": Param(
            None, type=["null", "string"], description="Replay window start (ISO date/datetime, UTC, inclusive)."
        ),
        "replay_end": Param(
            None, type=["null", "string"], description="Replay window end (ISO date/datetime, UTC, exclusive)."
        ),
    },
)
def threekit_translations_import():
    @task
    def plan_run() -> list[dict]:
        """The sensor's arguments when this run waits for new files; none for a replay or a file run."""
        from threekit_pipeline.airflow.run_state import log_effective_config
        from threekit_pipeline.pipelines.runtime import TaskEnv, plan_wait
        from threekit_pipeline.pipelines.translations import PATTERNS

        env = TaskEnv.from_context()
        log_effective_config(env)
        return plan_wait(env, inbound_key=INBOUND_KEY, patterns=PATTERNS)

    wait = plan_run()
    # Mapped over 0 or 1 argument sets: a replay or a "file" run has no sensor instance.
    wait_for_files = FtpCompleteFilesSensor.partial(task_id="wait_for_files", deferrable=True).expand_kwargs(
        wait
    )

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def select_files(complete) -> list[dict]:
        """The files of this run, oldest stamp first (skipped when there is none)."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
        from threekit_pipeline.pipelines.inbound import InboundSelectionError
        from threekit_pipeline.pipelines.runtime import NothingToProcess, TaskEnv, select_run_files
        from threekit_pipeline.pipelines.translations import PATTERNS, SOURCE

        env = TaskEnv.from_context()
        try:
            with env.ftp() as ftp:
                return select_run_files(
                    env,
                    ftp,
                    source=SOURCE,
                    inbound_key=INBOUND_KEY,
                    patterns=PATTERNS,
                    sensor_output=complete,
                )
        except NothingToProcess as exc:
            raise AirflowSkipException(str(exc)) from None
        except InboundSelectionError as exc:
            # A wrong "file" param or replay window: retrying cannot help.
            raise AirflowFailException(str(exc)) from None

    @task
    def import_translations(files: list[dict]) -> dict:
        """Validate, import and archive (or quarantine) each file in order."""
        from threekit_pipeline.pipelines.runtime import TaskEnv
        from threekit_pipeline.pipelines.translations import import_translation_files

        env = TaskEnv.from_context()
        with env.threekit() as client, env.ftp() as ftp:
            return import_translation_files(env, client, ftp, files)

    @task
    def report(result: dict) -> dict:
        """Upload the run report (counts, per-file outcome, rejected rows with reasons)."""
        from threekit_pipeline.pipelines.runtime import TaskEnv, describe_selection
        from threekit_pipeline.pipelines.translations import build_report, publish_report

        env = TaskEnv.from_context()
        run_report = build_report(env, describe_selection(env), result)
        if env.dry_run:
            return publish_report(env, None, run_report)
        with env.ftp() as ftp:
            return publish_report(env, ftp, run_report)

    @task
    def all_accepted(result: dict) -> str:
        """Green when nothing was rejected; skipped (pink) on a partial run, saying what was rejected."""
        from threekit_pipeline.airflow.run_state import all_accepted_task

        return all_accepted_task(result)

    selected = select_files(wait_for_files.output)
    wait_for_files >> selected
    all_accepted(report(import_translations(selected)))


threekit_translations_import()
