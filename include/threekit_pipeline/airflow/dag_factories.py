"""DAG factories: one DAG per feed of the feeds file, one factory per flow kind.

:func:`build_dags` reads the feeds file (:mod:`threekit_pipeline.feeds`) and returns
``{dag_id: DAG}`` for every enabled feed; ``dags/threekit_feeds.py`` registers them. The
factories are :func:`catalog_import_dag`, :func:`translations_import_dag`,
:func:`source_assets_import_dag` and :func:`export_dag` (catalog, assets, translations and
renders deliveries). What every DAG shares (``default_args``, params, start date, one active
run) is defined once here; DAG id, tags, owner, description (with the schedule in words) and
``doc_md`` come from the feed.

The tasks read their configuration when they run (:meth:`TaskEnv.from_context`): the
``threekit_pipeline`` Variable with the feed's connection, folders, mapping and options laid
over it (:func:`threekit_pipeline.pipelines.config.apply_feed`). Heavy modules (pandas, the
pipelines) are imported inside the tasks, so parsing stays fast.

A mistake in the feeds file raises :class:`~threekit_pipeline.feeds.FeedsError` naming the
file, the feed and the key; raised while the DAG file is parsed, it is that file's import error.
"""

from __future__ import annotations

import functools
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import (
    DAG,
    AssetOrTimeSchedule,
    CronDataIntervalTimetable,
    CronTriggerTimetable,
    Param,
    TriggerRule,
)
from airflow.sdk import task as airflow_task

from threekit_pipeline.airflow import dag_docs
from threekit_pipeline.airflow.operators.threekit import CatalogChunkImportOperator
from threekit_pipeline.airflow.operators.threekit_render import ThreekitRenderJobsOperator
from threekit_pipeline.airflow.sensors.ftp import FtpCompleteFilesSensor
from threekit_pipeline.feeds import (
    FEEDS_FILE_VARIABLE,
    INBOUND_FOLDER_KEYS,
    OUTBOUND_FOLDER_KEYS,
    FeedsError,
    FeedsFile,
    ImportDag,
    InboundFeed,
    OutboundFeed,
    feeds_path,
    import_dags,
    load_feeds,
    load_feeds_cached,
)
from threekit_pipeline.pipelines.assets import THREEKIT_CATALOG

log = logging.getLogger(__name__)

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)

# --- shared defaults ---------------------------------------------------------------------------


class FeedFailureCallback:
    """``on_failure_callback`` mailing the feed's catch-all recipients once a task failed after its retries.

    Builds the :class:`~threekit_pipeline.notifications.RunFailedNotifier` only when called, so
    the smtp provider is not imported while DAG files are parsed.
    """

    def __init__(self, feed_id: str, recipients: tuple[dict[str, Any], ...], smtp_conn_id: str) -> None:
        self.feed_id = feed_id
        self.recipients = recipients
        self.smtp_conn_id = smtp_conn_id

    def __call__(self, context: Any) -> None:
        from threekit_pipeline.notifications import RunFailedNotifier

        try:
            RunFailedNotifier(self.feed_id, self.recipients, smtp_conn_id=self.smtp_conn_id)(context)
        except Exception as exc:  # noqa: BLE001 - a mail server outage must not hide the task's own failure
            log.warning("Could not email feed %s's recipients about the failure: %s: %s", self.feed_id,
                        type(exc).__name__, exc)


def default_args(feeds: FeedsFile, feed: InboundFeed | OutboundFeed) -> dict[str, Any]:
    """``default_args`` of every feed DAG: owner, retries with exponential backoff, failure mail."""
    args: dict[str, Any] = {
        "owner": feeds.owner_of(feed),
        "retries": feeds.defaults.retries,
        "retry_delay": timedelta(seconds=feeds.defaults.retry_delay_seconds),
        "retry_exponential_backoff": True,
    }
    recipients = tuple({"email": r.email, "patterns": list(r.patterns)} for r in feeds.notify_of(feed))
    if recipients:
        args["on_failure_callback"] = FeedFailureCallback(feed.id, recipients, feeds.smtp_of(feed))
    return args


_FILE_PARAM = (
    "Process only this file: a name in the inbound folder (or its archive day folder), "
    "or an absolute path inside the inbound or archive folder. Empty = normal selection."
)
_INBOUND_TEXTS: dict[str, dict[str, str]] = {
    "catalog": {
        "dry_run": "Transform, validate and plan only: nothing is sent to Threekit and no file is moved.",
        "force_full_resend": "Ignore the delta ledger and send every product, even when unchanged.",
        "replay": "Replay the files stamped within the run's data interval (or replay_start..replay_end), "
        "from the archive when already processed.",
        "replay_start": "Replay window start (ISO date or datetime, UTC, inclusive). Empty = data interval start.",
        "replay_end": "Replay window end (ISO date or datetime, UTC, exclusive). Empty = data interval end.",
    },
    "translations": {
        "dry_run": "Validate only: nothing is sent to Threekit and no file is moved.",
        "force_full_resend": "Send every selected file to Threekit even when the same content was imported before.",
        "replay": "Re-import the files stamped within the run's data interval (or replay_start..replay_end), "
        "from the archive when already processed.",
    },
    "source_assets": {
        "dry_run": "List and check files only: nothing is sent and no file is moved.",
        "force_full_resend": "Re-import files even when the same content was imported before.",
        "replay": "Process the files stamped within the run's data interval (or replay_start..replay_end), "
        "from the archive when already processed.",
    },
}
_EXPORT_DRY_RUN = {
    "renders": "Download and stage only; upload nothing.",
}


def inbound_params(kind: str) -> dict[str, Param]:
    """The params of an inbound DAG: ``dry_run``, ``file``, ``force_full_resend``, replay window
    (and ``confirm_retire`` for catalogs)."""
    texts = _INBOUND_TEXTS[kind]
    params = {
        "dry_run": Param(False, type="boolean", description=texts["dry_run"]),
        "file": Param(None, type=["null", "string"], description=_FILE_PARAM),
        "force_full_resend": Param(False, type="boolean", description=texts["force_full_resend"]),
        "replay": Param(False, type="boolean", description=texts["replay"]),
        "replay_start": Param(None, type=["null", "string"], description=texts.get(
            "replay_start", "Replay window start (ISO date/datetime, UTC, inclusive).")),
        "replay_end": Param(None, type=["null", "string"], description=texts.get(
            "replay_end", "Replay window end (ISO date/datetime, UTC, exclusive).")),
    }
    if kind == "catalog":
        params["confirm_retire"] = Param(
            False,
            type="boolean",
            description="Apply a retirement that exceeded max_retire_ratio (the pending one of the last "
            "full snapshot, or this run's). The run does not wait for new files.",
        )
    return params


def export_params(kind: str) -> dict[str, Param]:
    """The params of an export DAG: ``dry_run``."""
    text = _EXPORT_DRY_RUN.get(kind, "Export to staging only; upload nothing.")
    return {"dry_run": Param(False, type="boolean", description=text)}


# --- what the feed says about its DAG ---------------------------------------------------------

_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}


def schedule_words(cron: str | None) -> str:
    """A cron expression in words: ``"0 3 * * *"`` -> ``"Daily 03:00 UTC"``; None -> ``"Manual runs only"``."""
    if cron is None:
        return "Manual runs only"
    fields = _PRESETS.get(cron, cron).split()
    if len(fields) == 5:
        minute, hour, dom, month, dow = fields
        if minute.isdigit() and (hour, dom, month, dow) == ("*", "*", "*", "*"):
            return "Hourly on the hour (UTC)" if int(minute) == 0 else f"Hourly at minute {int(minute)} (UTC)"
        if minute.isdigit() and hour.isdigit() and (dom, month) == ("*", "*"):
            at = f"{int(hour):02d}:{int(minute):02d} UTC"
            if dow == "*":
                return f"Daily {at}"
            if dow.isdigit() and int(dow) <= 7:
                return f"Weekly on {_DAYS[int(dow) % 7]} {at}"
            return f"Weekly on days {dow} {at}"
        match = re.fullmatch(r"\*/(\d+)", minute)
        if match and (hour, dom, month, dow) == ("*", "*", "*", "*"):
            return f"Hourly, every {match.group(1)} minutes (UTC)"
    return f"On cron `{cron}` (UTC)"


def when_words(feed: InboundFeed | OutboundFeed) -> str:
    """When the feed's DAG runs, in words (the DAG list shows this in the description)."""
    if isinstance(feed, OutboundFeed) and feed.on_catalog_change:
        if feed.schedule is None:
            return "After each catalog import (manual runs otherwise)"
        return f"{schedule_words(feed.schedule)} and after each catalog import"
    return schedule_words(feed.schedule)


_KIND_TAGS = {"catalog": "catalog", "translations": "translations", "source_assets": "assets"}
_DEFAULT_TEXT = {
    ("inbound", "catalog"): "catalog files into Threekit products.",
    ("inbound", "translations"): "translation CSVs into Threekit.",
    ("inbound", "source_assets"): "CAD models and textures into Threekit assets.",
    ("outbound", "catalog"): "the Threekit catalog as JSON and CSV to its destinations.",
    ("outbound", "assets"): "the configured Threekit assets as JSON to its destinations.",
    ("outbound", "translations"): "Threekit translations as CSV to its destinations.",
    ("outbound", "renders"): "rendered images to its destinations.",
}


def tags_of(feed: InboundFeed | OutboundFeed) -> list[str]:
    """``threekit``, the direction and kind, the feed id (when it is not the kind) and the feed's tags."""
    if isinstance(feed, InboundFeed):
        tags = ["threekit", _KIND_TAGS[feed.kind], "inbound", "ftp"]
    else:
        tags = ["threekit", "export", feed.kind]
    if feed.id != feed.kind:
        tags.append(feed.id)
    return list(dict.fromkeys([*tags, *feed.tags]))


def description_of(feed: InboundFeed | OutboundFeed) -> str:
    direction = "inbound" if isinstance(feed, InboundFeed) else "outbound"
    text = feed.description.strip() or _DEFAULT_TEXT[(direction, feed.kind)]
    return f"{when_words(feed)}: {text}"


def doc_of(feeds: FeedsFile, feed: InboundFeed | OutboundFeed, source: Path | str, body: str) -> str:
    """``doc_md``: the feed's settings (from the feeds file), then how its flow kind works."""
    lines = [f"### {feed.effective_dag_id}", ""]
    if feed.description.strip():
        lines += [feed.description.strip(), ""]
    direction = "inbound" if isinstance(feed, InboundFeed) else "outbound"
    lines.append(f"**Feed** `{feed.id}` ({direction} {feed.kind}) of the feeds file `{Path(source).name}`; "
                 f"runs: {when_words(feed).lower()}; owner `{feeds.owner_of(feed)}`.")
    lines.append("")
    if isinstance(feed, InboundFeed):
        folders = feeds.folders_of(feed)
        patterns = feed.effective_patterns
        lines += [
            f"- transfer connection `{feeds.transfer_of(feed)}`, folder `{folders['folder']}`, patterns "
            + (", ".join(f"`{p}`" for p in patterns) if patterns else "those of the mapping"),
            f"- archive `{folders['archive']}`, quarantine `{folders['quarantine']}`, reports `{folders['reports']}`",
        ]
        if feed.mapping:
            lines.append(f"- mapping `{feed.mapping}`")
    else:
        lines.append("- destinations: " + ", ".join(f"`{d.transfer}:{d.folder}`" for d in feed.destinations))
    lines.append(f"- Threekit connection `{feeds.threekit_of(feed)}`")
    recipients = feeds.notify_of(feed)
    lines.append(f"- notifies {len(recipients)} recipient(s) (SMTP connection `{feeds.smtp_of(feed)}`)"
                 if recipients else "- notifies nobody")
    lines += ["", "The `threekit_pipeline` Variable supplies what the feed leaves at the built-in default "
              "(global settings such as `staging_dir`, `batch_size`).", "", body.strip("\n")]
    return "\n".join(lines) + "\n"


def _dag(feeds: FeedsFile, feed: InboundFeed | OutboundFeed, source: Path | str, *, schedule: Any,
         params: dict[str, Param], body: str) -> DAG:
    return DAG(
        dag_id=feed.effective_dag_id,
        description=description_of(feed),
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        doc_md=doc_of(feeds, feed, source, body),
        default_args=default_args(feeds, feed),
        tags=tags_of(feed),
        params=params,
    )


def _inbound_schedule(feed: InboundFeed) -> Any:
    # Data intervals (not trigger points): a backfill run replays the stamps of its [start, end).
    return None if feed.schedule is None else CronDataIntervalTimetable(feed.schedule, timezone="UTC")


# --- task helpers ----------------------------------------------------------------------------


def task(python_callable: Any = None, **kwargs: Any) -> Any:
    """Airflow's ``@task`` (same arguments) whose body ends by writing its staged files back
    (:func:`~threekit_pipeline.pipelines.runtime.staged_task`; a no-op with local staging)."""
    from threekit_pipeline.pipelines.runtime import staged_task

    if python_callable is not None:
        return airflow_task(staged_task(python_callable), **kwargs)
    return lambda function: airflow_task(staged_task(function), **kwargs)


def _env():
    from threekit_pipeline.pipelines.runtime import TaskEnv

    return TaskEnv.from_context()


def _skip(exc: Exception):
    from airflow.sdk.exceptions import AirflowSkipException

    return AirflowSkipException(str(exc))


def _all_accepted(result: dict) -> str:
    """Body of ``all_accepted``: green when nothing was rejected; on a partial run the feed's
    recipients get a mail, and the task ends skipped (pink) saying what was rejected."""
    from threekit_pipeline.airflow.run_state import all_accepted_task

    def notify(message: str) -> None:
        from threekit_pipeline.notifications import notify_partial_run

        env = _env()
        feed = env.feed
        if feed is None or not feed.notify:
            return
        recipients = feed.notify
        if "quarantined" in (result or {}):
            # Partners already got one mail per quarantined file of theirs (with its errors CSV).
            recipients = tuple(r for r in recipients if tuple(r.get("patterns") or ("*",)) == ("*",))
        notify_partial_run(feed.feed_id, recipients, dag_id=env.dag_id, run_id=env.run_id, message=message,
                           result=result, smtp_conn_id=feed.smtp_conn_id)

    return all_accepted_task(result, on_partial=notify)


def _notify_quarantined(env: Any, result: dict) -> None:
    """One mail per quarantined file of this run to the feed's recipients who want it (errors CSV
    attached); markers in the run's staging keep a retried task from mailing a file twice."""
    feed = env.feed
    quarantined = (result or {}).get("quarantined") or []
    if feed is None or not feed.notify or not quarantined:
        return
    from threekit_pipeline.notifications import notify_quarantined_files

    notify_quarantined_files(feed.feed_id, feed.notify, quarantined, marker_dir=env.run_dir("notified"),
                             smtp_conn_id=feed.smtp_conn_id)


def _notify_quarantined_of_report(env: Any, ftp: Any, run_report: Any, result: dict) -> dict:
    """:func:`_notify_quarantined` for a flow whose run report lists the quarantined files: their
    errors CSVs are read back from the quarantine folder. Returns ``result`` with ``quarantined``."""
    from threekit_pipeline.pipelines.reports import quarantined_files

    feed = env.feed
    if feed is None or not feed.notify:
        return result
    try:
        quarantined = quarantined_files(run_report, ftp, env.run_dir("notified", "errors"))
    except Exception as exc:  # noqa: BLE001 - a notification must not fail the run; the partial-run mail tells all
        log.warning("Could not read the errors CSVs of the quarantined files back (%s: %s); the partial-run "
                    "mail names them instead", type(exc).__name__, exc)
        return result
    result = {**result, "quarantined": quarantined}
    _notify_quarantined(env, result)
    return result


# --- inbound factories -----------------------------------------------------------------------


def catalog_import_dag(feeds: FeedsFile, feed: InboundFeed, source: Path | str = "<feeds>") -> DAG:
    """Catalog files of one feed's folder, transformed with its mapping, imported into Threekit."""
    with _dag(feeds, feed, source, schedule=_inbound_schedule(feed), params=inbound_params("catalog"),
              body=dag_docs.CATALOG_IMPORT) as built:

        @task
        def plan_run() -> list:
            """The sensor's arguments when this run waits for files (none for replays and "file" runs)."""
            from threekit_pipeline.airflow.run_state import log_effective_config
            from threekit_pipeline.pipelines import catalog_import

            env = _env()
            log_effective_config(env)
            return catalog_import.plan_run(env)

        # Mapped over 0 or 1 argument sets (decided at run time): a replay or a "file" run has no sensor.
        wait_for_files = FtpCompleteFilesSensor.partial(task_id="wait_for_files", deferrable=True).expand_kwargs(
            plan_run()
        )

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
                    result = catalog_import.finalize(env, ftp)
                _notify_quarantined(env, result)
                return result
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
            return _all_accepted(result)

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
    return built


def translations_import_dag(feeds: FeedsFile, feed: InboundFeed, source: Path | str = "<feeds>") -> DAG:
    """Translation CSVs of one feed's folder imported into Threekit."""
    inbound_key = INBOUND_FOLDER_KEYS["translations"]
    with _dag(feeds, feed, source, schedule=_inbound_schedule(feed), params=inbound_params("translations"),
              body=dag_docs.TRANSLATIONS_IMPORT) as built:

        @task
        def plan_run() -> list[dict]:
            """The sensor's arguments when this run waits for new files; none for a replay or a file run."""
            from threekit_pipeline.airflow.run_state import log_effective_config
            from threekit_pipeline.pipelines.runtime import plan_wait
            from threekit_pipeline.pipelines.translations import PATTERNS

            env = _env()
            log_effective_config(env)
            return plan_wait(env, inbound_key=inbound_key, patterns=env.inbound_patterns(PATTERNS))

        # Mapped over 0 or 1 argument sets: a replay or a "file" run has no sensor instance.
        wait_for_files = FtpCompleteFilesSensor.partial(task_id="wait_for_files", deferrable=True).expand_kwargs(
            plan_run()
        )

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def select_files(complete) -> list[dict]:
            """The files of this run, oldest stamp first (skipped when there is none)."""
            from airflow.sdk.exceptions import AirflowFailException

            from threekit_pipeline.pipelines.inbound import InboundSelectionError
            from threekit_pipeline.pipelines.runtime import NothingToProcess, select_run_files
            from threekit_pipeline.pipelines.translations import PATTERNS, SOURCE

            env = _env()
            try:
                with env.ftp() as ftp:
                    return select_run_files(env, ftp, source=SOURCE, inbound_key=inbound_key,
                                            patterns=env.inbound_patterns(PATTERNS), sensor_output=complete)
            except NothingToProcess as exc:
                raise _skip(exc) from None
            except InboundSelectionError as exc:
                # A wrong "file" param or replay window: retrying cannot help.
                raise AirflowFailException(str(exc)) from None

        @task
        def import_translations(files: list[dict]) -> dict:
            """Validate, import and archive (or quarantine) each file in order."""
            from threekit_pipeline.pipelines.translations import import_translation_files

            env = _env()
            with env.threekit() as client, env.ftp() as ftp:
                return import_translation_files(env, client, ftp, files)

        @task
        def report(result: dict) -> dict:
            """Upload the run report (counts, per-file outcome, rejected rows with reasons)."""
            from threekit_pipeline.pipelines.runtime import describe_selection
            from threekit_pipeline.pipelines.translations import build_report, publish_report

            env = _env()
            run_report = build_report(env, describe_selection(env), result)
            if env.dry_run:
                return publish_report(env, None, run_report)
            with env.ftp() as ftp:
                result = publish_report(env, ftp, run_report)
                return _notify_quarantined_of_report(env, ftp, run_report, result)

        @task
        def all_accepted(result: dict) -> str:
            """Green when nothing was rejected; skipped (pink) on a partial run, saying what was rejected."""
            return _all_accepted(result)

        selected = select_files(wait_for_files.output)
        wait_for_files >> selected
        all_accepted(report(import_translations(selected)))
    return built


def source_assets_import_dag(feeds: FeedsFile, feed: InboundFeed, source: Path | str = "<feeds>") -> DAG:
    """Source files (models, textures) of one feed's folder uploaded to Threekit as assets."""
    inbound_key = INBOUND_FOLDER_KEYS["source_assets"]
    with _dag(feeds, feed, source, schedule=_inbound_schedule(feed), params=inbound_params("source_assets"),
              body=dag_docs.SOURCE_ASSETS_IMPORT) as built:

        @task
        def plan_run() -> list[dict]:
            """The sensor's arguments when this run waits for new files; none for a replay or a file run."""
            from threekit_pipeline.airflow.run_state import log_effective_config
            from threekit_pipeline.pipelines.runtime import plan_wait

            env = _env()
            log_effective_config(env)
            return plan_wait(env, inbound_key=inbound_key, patterns=env.inbound_patterns(("*",)))

        wait_for_files = FtpCompleteFilesSensor.partial(task_id="wait_for_files", deferrable=True).expand_kwargs(
            plan_run()
        )

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def select_files(complete) -> list[dict]:
            """The files of this run (skipped when there is none)."""
            from airflow.sdk.exceptions import AirflowFailException

            from threekit_pipeline.pipelines.inbound import InboundSelectionError
            from threekit_pipeline.pipelines.runtime import NothingToProcess, select_run_files
            from threekit_pipeline.pipelines.source_assets import SOURCE

            env = _env()
            patterns = env.inbound_patterns(("*",))
            try:
                with env.ftp() as ftp:
                    return select_run_files(env, ftp, source=SOURCE, inbound_key=inbound_key,
                                            patterns=() if patterns == ("*",) else patterns,
                                            sensor_output=complete)
            except NothingToProcess as exc:
                raise _skip(exc) from None
            except InboundSelectionError as exc:
                # A wrong "file" param or replay window: retrying cannot help.
                raise AirflowFailException(str(exc)) from None

        @task(map_index_template="{{ task.op_kwargs['selected']['name'] }}")
        def import_file(selected: dict) -> dict:
            """Upload one file, run Threekit's asset import job, archive or quarantine the file."""
            from threekit_pipeline.pipelines.source_assets import import_source_file

            env = _env()
            with env.threekit() as client, env.ftp() as ftp:
                return import_source_file(env, client, ftp, selected)

        # Runs even when some file tasks failed (the report lists them), not when nothing was selected.
        @task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
        def report(files: list[dict], outcomes: list[dict]) -> dict:
            """Upload the run report; fails the run when a file's task failed."""
            from airflow.sdk.exceptions import AirflowFailException

            from threekit_pipeline.pipelines.runtime import describe_selection
            from threekit_pipeline.pipelines.source_assets import (
                SourceAssetImportError,
                build_report,
                check_complete,
                publish_report,
            )

            env = _env()
            run_report = build_report(env, describe_selection(env), files, outcomes)
            if env.dry_run:
                result = publish_report(env, None, run_report)
            else:
                with env.ftp() as ftp:
                    result = publish_report(env, ftp, run_report)
                    result = _notify_quarantined_of_report(env, ftp, run_report, result)
            try:
                check_complete(run_report)
            except SourceAssetImportError as exc:
                # The file tasks already used their retries; the report says which files wait.
                raise AirflowFailException(str(exc)) from None
            return result

        @task
        def all_accepted(result: dict) -> str:
            """Green when nothing was rejected; skipped (pink) on a partial run, saying what was rejected."""
            return _all_accepted(result)

        selected = select_files(wait_for_files.output)
        wait_for_files >> selected
        all_accepted(report(selected, import_file.expand(selected=selected)))
    return built


# --- export factory ----------------------------------------------------------------------------


def _deliver_everywhere(env: Any, folder_key: str, deliver) -> dict:
    """``deliver(env, ftp)`` once per destination; the first destination's result, with the others'.

    Each destination gets its own connection and folder (and its own entries in the delivery
    ledger, which is keyed by connection).
    """
    results = []
    for conn_id, folder in env.destinations(folder_key):
        target = env.for_destination(folder_key, conn_id, folder)
        with target.ftp() as ftp:
            results.append(deliver(target, ftp))
    first = dict(results[0])
    if len(results) > 1:
        first["further_destinations"] = results[1:]
    return first


def export_dag(feeds: FeedsFile, feed: OutboundFeed, source: Path | str = "<feeds>") -> DAG:
    """Exports from Threekit delivered to one feed's destinations (catalog, assets, translations, renders)."""
    if feed.kind not in _EXPORT_BUILDERS:
        index = feeds.outbound.index(feed)
        raise FeedsError(f"{source}: outbound feed '{feed.id}' (outbound[{index}]): kind: {feed.kind!r} has no "
                         f"DAG factory yet (use one of {sorted(_EXPORT_BUILDERS)})")
    if feed.on_catalog_change:
        schedule: Any = THREEKIT_CATALOG if feed.schedule is None else AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(feed.schedule, timezone="UTC"), assets=THREEKIT_CATALOG)
    else:
        schedule = None if feed.schedule is None else CronTriggerTimetable(feed.schedule, timezone="UTC")
    builder, body = _EXPORT_BUILDERS[feed.kind]
    with _dag(feeds, feed, source, schedule=schedule, params=export_params(feed.kind), body=body) as built:
        builder(OUTBOUND_FOLDER_KEYS[feed.kind])
    return built


def _staged_export_tasks(folder_key: str, *, name: str, stage: str, label: str, export_doc: str,
                         deliver_doc: str) -> None:
    """``export_<name>`` (``pipelines.exports.<stage>`` into staging) then ``deliver_<name>``
    (the changed files to each destination folder): the catalog and translations exports."""

    @task(task_id=f"export_{name}", doc_md=export_doc)
    def export_staged() -> dict:
        from threekit_pipeline.airflow.run_state import log_effective_config
        from threekit_pipeline.pipelines import exports

        env = _env()
        log_effective_config(env)
        with env.threekit() as client:
            return getattr(exports, stage)(env, client)

    @task(task_id=f"deliver_{name}", doc_md=deliver_doc)
    def deliver(staged: dict) -> dict:
        from threekit_pipeline.pipelines.exports import deliver_staged

        return _deliver_everywhere(_env(), folder_key, lambda env, ftp: deliver_staged(
            env, ftp, {**staged, "folder": env.config.folder(folder_key)}, label))

    deliver(export_staged())


_catalog_export_tasks = functools.partial(
    _staged_export_tasks, name="catalog", stage="stage_catalog_export", label="catalog export",
    export_doc="Stream the catalog export from Threekit and flatten it to CSV in staging.",
    deliver_doc="Upload the JSON and CSV files that changed to each destination folder.")
_translations_export_tasks = functools.partial(
    _staged_export_tasks, name="translations", stage="stage_translations_export", label="translations export",
    export_doc="Stream the translations CSV from Threekit (split per locale when configured).",
    deliver_doc="Upload the translation files that changed to each destination folder.")


def _asset_export_tasks(folder_key: str) -> None:
    @task
    def plan_assets() -> list[list[str]]:
        """Resolve the configured asset ids and tags into chunks of asset ids."""
        from airflow.sdk.exceptions import AirflowFailException

        from threekit_pipeline.airflow.run_state import log_effective_config
        from threekit_pipeline.pipelines.exports import ExportConfigError, plan_asset_export

        env = _env()
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
        """Export one chunk of assets and upload the JSON files that changed (to each destination)."""
        from threekit_pipeline.pipelines.exports import export_asset_chunk

        env = _env()
        with env.threekit() as client:
            return _deliver_everywhere(env, folder_key,
                                       lambda target, ftp: export_asset_chunk(target, client, ftp, asset_ids))

    @task(trigger_rule="none_failed")
    def summarise(results: list[dict]) -> dict:
        """Totals over every chunk; fails (without retries) when configured assets are missing."""
        from airflow.sdk.exceptions import AirflowFailException

        from threekit_pipeline.pipelines.exports import summarise_asset_export

        total = summarise_asset_export(results)
        if total["missing"]:
            ids = ", ".join(m["asset_id"] for m in total["missing"])
            raise AirflowFailException(f"{len(total['missing'])} configured asset(s) not found in Threekit: {ids}")
        return total

    summarise(export_assets.expand(asset_ids=plan_assets()))


def _render_export_tasks(folder_key: str) -> None:
    @task
    def plan_renders() -> dict:
        """Start render jobs for new or changed (item, configuration) pairs of the render spec."""
        from threekit_pipeline.pipelines.render_on_demand import plan_renders as plan

        env = _env()
        with env.threekit() as client:
            return plan(env, client)

    @task
    def collect_renders(plan: dict, outcomes: dict | None) -> list[dict]:
        """Download the render images (rendered now, or existing layers) and stage the manifest."""
        from threekit_pipeline.airflow.run_state import log_effective_config
        from threekit_pipeline.pipelines.render_on_demand import collect_rendered
        from threekit_pipeline.pipelines.renders import collect_renders as collect

        env = _env()
        log_effective_config(env)
        with env.threekit() as client:
            if plan["mode"] == "existing":
                return collect(env, client)
            return collect_rendered(env, client, outcomes)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def finish_renders() -> dict:
        """Record what every destination received; fail naming renders that failed or timed out."""
        from threekit_pipeline.pipelines.render_on_demand import finish_renders as finish

        return finish(_env())

    @task(map_index_template="{{ task.op_kwargs['plan']['destination'] }}")
    def deliver_renders(plan: dict) -> dict:
        """Upload new or changed images and the manifest to one destination folder (over its connection)."""
        from airflow.sdk import get_current_context

        from threekit_pipeline.pipelines.renders import deliver_renders as deliver

        env = _env()
        folder = plan["destination"].rstrip("/") or "/"
        destinations = env.destinations(folder_key)
        # The plans follow the feed's destinations in order: the map index names the connection, also
        # when two partners use the same folder name. Otherwise (folders from the Variable's
        # render_destinations) the folder does.
        index = get_current_context()["ti"].map_index
        if 0 <= index < len(destinations) and destinations[index][1] == folder:
            conn_id = destinations[index][0]
        else:
            conn_id = next((conn for conn, dest in destinations[1:] if dest == folder), env.config.ftp_conn_id)
        target = env.for_destination(folder_key, conn_id, folder)
        with target.ftp() as ftp:
            return deliver(target, ftp, plan)

    @task
    def summarise(results: list[dict]) -> dict:
        """One line per destination: images, uploaded, unchanged."""
        from threekit_pipeline.pipelines.renders import summarise_render_delivery

        return summarise_render_delivery(list(results))

    planned = plan_renders()
    waited = ThreekitRenderJobsOperator(task_id="wait_for_renders", plan=planned)
    summarise(deliver_renders.expand(plan=collect_renders(planned, waited.output))) >> finish_renders()


_EXPORT_BUILDERS = {
    "catalog": (_catalog_export_tasks, dag_docs.CATALOG_EXPORT),
    "assets": (_asset_export_tasks, dag_docs.ASSETS_EXPORT),
    "translations": (_translations_export_tasks, dag_docs.TRANSLATIONS_EXPORT),
    "renders": (_render_export_tasks, dag_docs.RENDERS_EXPORT),
}
_INBOUND_FACTORIES = {
    "catalog": catalog_import_dag,
    "translations": translations_import_dag,
    "source_assets": source_assets_import_dag,
}


# --- the whole file ----------------------------------------------------------------------------


def feeds_file_in_force() -> Path:
    """``$THREEKIT_FEEDS_FILE``, else the ``threekit_feeds_file`` Variable, else the default file."""
    variable = None
    try:
        from airflow.sdk import Variable

        variable = Variable.get(FEEDS_FILE_VARIABLE, default=None)
    except Exception as exc:  # noqa: BLE001 - no metadata database here: the environment or the default applies
        log.warning("Variable %s not readable while parsing (%s: %s); using %s", FEEDS_FILE_VARIABLE,
                    type(exc).__name__, exc, feeds_path())
    return feeds_path(variable)


def build_dags(path: Path | str | None = None) -> dict[str, DAG]:
    """``{dag_id: DAG}`` for every enabled feed of the feeds file (``path``, else the one in force).

    Raises :class:`~threekit_pipeline.feeds.FeedsError` (file, feed and key in the message) when
    the file is invalid.
    """
    source = Path(path) if path is not None else feeds_file_in_force()
    feeds = load_feeds(source)
    dags: dict[str, DAG] = {}
    for feed in feeds.feeds():
        if isinstance(feed, InboundFeed):
            dags[feed.effective_dag_id] = _INBOUND_FACTORIES[feed.kind](feeds, feed, source)
        else:
            dags[feed.effective_dag_id] = export_dag(feeds, feed, source)
    return dags


def import_dags_in_force(path: Path | str | None = None) -> list[ImportDag]:
    """The import DAGs (id, feed, kind, reports folder and sub-folder) of the feeds file in force.

    ``path`` overrides the file (else ``$THREEKIT_FEEDS_FILE``, the ``threekit_feeds_file``
    Variable, the default file). Reads the file through the size/mtime cache, so a web view
    may call it on every request. Raises :class:`~threekit_pipeline.feeds.FeedsError` when the
    file is invalid (the DAG file shows the same error as its import error).
    """
    source = Path(path) if path is not None else feeds_file_in_force()
    return import_dags(load_feeds_cached(source))
