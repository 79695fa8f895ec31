"""
### threekit_source_assets_import (hourly)

Turns CAD models, textures and images dropped on FTP into Threekit assets.

**Reads** every file in `folders.inbound_assets` (default `/inbound/assets`), e.g. `.glb`,
`.gltf`, `.fbx`, `.obj`, `.step`, `.stl`, `.zip` (models) and `.png`, `.jpg`, `.tif`, `.webp`
(textures). Threekit decides what it accepts; an unsupported or broken file is quarantined
with Threekit's message.

**Flow**: wait for complete files (size/mtime stable for `stable_seconds`, or marker files per
`marker_suffixes`; skipped when nothing arrives within `sensor_timeout_seconds`) -> one mapped
task per file: download, upload (`POST /api/files`, content-addressed), start an asset import
job (`POST /api/asset-jobs/import`, titled with the file name), poll it (deadline
`job_deadline_seconds`) -> archive the file in `<archive>/assets/YYYY/MM/DD/`, or quarantine it
in `<rejected>/assets/` with `<file>.errors.csv` holding the job's message -> run report
`<reports>/source_assets_import/<run>.json` (+ `.csv`).

**Idempotent**: Threekit matches assets by name, so re-importing a file updates its asset; a
file whose exact content was already imported (ledger `<staging>/ledger/source_assets.sqlite`)
is not imported again, only archived. `force_full_resend` re-imports anyway.

**File selection**: as the other inbound DAGs: every complete file waiting; a backfill or a
manual `replay` run takes the files stamped (`_YYYYMMDD[_HHMMSS]`) within its data interval,
from the archive when already processed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, Param, TriggerRule, dag, task
from threekit_pipeline.airflow.sensors.ftp import FtpCompleteFilesSensor

INBOUND_KEY = "inbound_assets"


@dag(
    dag_id="threekit_source_assets_import",
    description="Hourly on the hour (UTC): CAD models and textures from FTP into Threekit assets.",
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
    tags=["threekit", "assets", "inbound", "ftp"],
    params={
        "dry_run": Param(
            False,
            type="boolean",
            description="List and check files only: nothing is sent and no file is moved.",
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
            description="Re-import files even when the same content was imported before.",
        ),
        "replay": Param(
            False,
            type="boolean",
            description="Process the files stamped within the run's data interval (or replay_start..replay_end), "
            "from the archive when already processed.",
        ),
        "replay_start": Param(
            None, type=["null", "string"], description="Replay window start (ISO date/datetime, UTC, inclusive)."
        ),
        "replay_end": Param(
            None, type=["null", "string"], description="Replay window end (ISO date/datetime, UTC, exclusive)."
        ),
    },
)
def threekit_source_assets_import():
    @task
    def plan_run() -> list[dict]:
        """The sensor's arguments when this run waits for new files; none for a replay or a file run."""
        from threekit_pipeline.airflow.run_state import log_effective_config
        from threekit_pipeline.pipelines.runtime import TaskEnv, plan_wait

        env = TaskEnv.from_context()
        log_effective_config(env)
        return plan_wait(env, inbound_key=INBOUND_KEY, patterns=("*",))

    wait = plan_run()
    wait_for_files = FtpCompleteFilesSensor.partial(task_id="wait_for_files", deferrable=True).expand_kwargs(
        wait
    )

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def select_files(complete) -> list[dict]:
        """The files of this run (skipped when there is none)."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
        from threekit_pipeline.pipelines.inbound import InboundSelectionError
        from threekit_pipeline.pipelines.runtime import NothingToProcess, TaskEnv, select_run_files
        from threekit_pipeline.pipelines.source_assets import SOURCE

        env = TaskEnv.from_context()
        try:
            with env.ftp() as ftp:
                return select_run_files(
                    env, ftp, source=SOURCE, inbound_key=INBOUND_KEY, sensor_output=complete
                )
        except NothingToProcess as exc:
            raise AirflowSkipException(str(exc)) from None
        except InboundSelectionError as exc:
            # A wrong "file" param or replay window: retrying cannot help.
            raise AirflowFailException(str(exc)) from None

    @task(map_index_template="{{ task.op_kwargs['selected']['name'] }}")
    def import_file(selected: dict) -> dict:
        """Upload one file, run Threekit's asset import job, archive or quarantine the file."""
        from threekit_pipeline.pipelines.runtime import TaskEnv
        from threekit_pipeline.pipelines.source_assets import import_source_file

        env = TaskEnv.from_context()
        with env.threekit() as client, env.ftp() as ftp:
            return import_source_file(env, client, ftp, selected)

    # Runs even when some file tasks failed (the report lists them), not when nothing was selected.
    @task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
    def report(files: list[dict], outcomes: list[dict]) -> dict:
        """Upload the run report; fails the run when a file's task failed."""
        from airflow.sdk.exceptions import AirflowFailException
        from threekit_pipeline.pipelines.runtime import TaskEnv, describe_selection
        from threekit_pipeline.pipelines.source_assets import (
            SourceAssetImportError,
            build_report,
            check_complete,
            publish_report,
        )

        env = TaskEnv.from_context()
        run_report = build_report(env, describe_selection(env), files, outcomes)
        if env.dry_run:
            result = publish_report(env, None, run_report)
        else:
            with env.ftp() as ftp:
                result = publish_report(env, ftp, run_report)
        try:
            check_complete(run_report)
        except SourceAssetImportError as exc:
            # The file tasks already used their retries; the report says which files wait.
            raise AirflowFailException(str(exc)) from None
        return result

    @task
    def all_accepted(result: dict) -> str:
        """Green when nothing was rejected; skipped (pink) on a partial run, saying what was rejected."""
        from threekit_pipeline.airflow.run_state import all_accepted_task

        return all_accepted_task(result)

    selected = select_files(wait_for_files.output)
    wait_for_files >> selected
    all_accepted(report(selected, import_file.expand(selected=selected)))


threekit_source_assets_import()
