"""What a task of the outbound, translations and source-asset DAGs knows about its run.

:class:`TaskEnv` gathers, at run time, the pieces every task needs: the DAG and run ids, the
run type, params, logical date and data interval, the ``threekit_pipeline`` Variable (read when
the task runs, never at parse time) and the per-run staging directory
``<staging>/<dag_id>/<sanitised run id>/``. It also opens the FTP and Threekit clients through
the Airflow hooks, so connection handling (secret masking included) stays in one place.

The dataclass itself has no Airflow imports; only :meth:`TaskEnv.from_context` and the client
factories import Airflow, lazily, so the pipeline logic can be tested with a hand-built
``TaskEnv``.

With ``staging_url`` set, staging lives on object storage (:mod:`threekit_pipeline.pipelines.staging`):
:meth:`TaskEnv.run_dir` and :meth:`TaskEnv.shared_dir` then return folders of the task's own
scratch copy, filled from the store, and :func:`finish_staging` (called when the task ends, see
:func:`staged_task`) writes the task's changes back and deletes the scratch copy. A path a task
receives from another one (XCom, a staged JSON file) is opened through :meth:`TaskEnv.staged`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from threekit_pipeline.pipelines.config import (
    VARIABLE_NAME,
    ConfigError,
    PipelineConfig,
    apply_feed,
    load_config,
    object_staging_url,
)
from threekit_pipeline.pipelines.reports import sanitize_run_id

log = logging.getLogger(__name__)

_TRUE_TEXT = {"1", "true", "yes", "on"}

#: HTTP statuses with which Threekit condemns an uploaded file itself (not the connection or the
#: credentials): the inbound DAGs quarantine the file instead of retrying.
THREEKIT_FILE_REJECTIONS = frozenset({400, 413, 415, 422})


def truthy(value: Any) -> bool:
    """Param values arrive as booleans or, from the CLI/REST API, as text."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_TEXT
    return bool(value)


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return None


@dataclass
class TaskEnv:
    """Run facts and configuration of one task execution."""

    dag_id: str
    run_id: str
    config: PipelineConfig
    run_type: str = "manual"
    params: Mapping[str, Any] = field(default_factory=dict)
    logical_date: datetime | None = None
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    run_after: datetime | None = None
    # The feed this DAG was generated from (threekit_pipeline.feeds.FeedRuntime), None outside a feed.
    feed: Any = None

    # --- construction --------------------------------------------------------------------

    @classmethod
    def from_context(cls, context: Mapping[str, Any] | None = None) -> TaskEnv:
        """Build from the Airflow task context (the current one when not given)."""
        from airflow.sdk import Variable, get_current_context

        ctx = context if context is not None else get_current_context()
        dag_run = ctx.get("dag_run")
        ti = ctx.get("ti") or ctx.get("task_instance")
        dag_id = getattr(dag_run, "dag_id", None) or getattr(ti, "dag_id", None) or ctx["dag"].dag_id
        run_type = getattr(dag_run, "run_type", None)
        from threekit_pipeline.feeds import FEEDS_FILE_VARIABLE, FeedsError

        try:
            config = load_config(Variable.get(VARIABLE_NAME, default=None))
            feed = feed_of_dag(dag_id, Variable.get(FEEDS_FILE_VARIABLE, default=None))
        except (ConfigError, FeedsError) as exc:
            from airflow.sdk.exceptions import AirflowFailException

            # A malformed Variable or feeds file does not heal by retrying: fail at once, saying what is wrong.
            raise AirflowFailException(str(exc)) from None
        if feed is not None:
            config = apply_feed(config, feed.config_values)
        return cls(
            feed=feed,
            dag_id=dag_id,
            run_id=ctx.get("run_id") or dag_run.run_id,
            config=config,
            run_type=str(getattr(run_type, "value", run_type) or "manual"),
            params=dict(ctx.get("params") or {}),
            logical_date=_as_utc(ctx.get("logical_date") or getattr(dag_run, "logical_date", None)),
            data_interval_start=_as_utc(
                ctx.get("data_interval_start") or getattr(dag_run, "data_interval_start", None)
            ),
            data_interval_end=_as_utc(
                ctx.get("data_interval_end") or getattr(dag_run, "data_interval_end", None)
            ),
            run_after=_as_utc(getattr(dag_run, "run_after", None)),
        )

    # --- feed ------------------------------------------------------------------------------

    def inbound_patterns(self, default: tuple[str, ...]) -> tuple[str, ...]:
        """The feed's file patterns, else ``default`` (the flow's own)."""
        patterns = getattr(self.feed, "patterns", None)
        return tuple(patterns) if patterns else tuple(default)

    def destinations(self, folder_key: str) -> list[tuple[str, str]]:
        """Where an export goes: ``[(connection id, folder), ...]``.

        The first is the configuration's ``ftp_conn_id`` and ``folders.<folder_key>`` (the
        feed's first destination laid over the Variable); the others are the feed's further
        destinations.
        """
        first = (self.config.ftp_conn_id, self.config.folder(folder_key))
        others = list(getattr(self.feed, "destinations", ()) or ())[1:]
        return [first, *[(str(conn), str(folder)) for conn, folder in others]]

    def for_destination(self, folder_key: str, conn_id: str, folder: str) -> TaskEnv:
        """This environment delivering to ``folder`` over ``conn_id`` (one of :meth:`destinations`)."""
        from dataclasses import replace

        folders = {**self.config.folders, folder_key: folder}
        return replace(self, config=replace(self.config, ftp_conn_id=conn_id, folders=folders))

    # --- params ----------------------------------------------------------------------------

    def param(self, name: str, default: Any = None) -> Any:
        value = self.params.get(name, default)
        return default if value is None else value

    @property
    def dry_run(self) -> bool:
        return truthy(self.param("dry_run", False))

    @property
    def force_full_resend(self) -> bool:
        return truthy(self.param("force_full_resend", False))

    @property
    def only_file(self) -> str | None:
        value = self.param("file", "")
        return str(value).strip() or None

    # --- dates -----------------------------------------------------------------------------

    @property
    def run_moment(self) -> datetime:
        """The run's point in time: logical date, else data interval start, else run_after.

        Asset-triggered runs have no logical date in Airflow 3; they are dated by ``run_after``.
        """
        return self.logical_date or self.data_interval_start or self.run_after or datetime.now(UTC)

    @property
    def day(self) -> date:
        """The UTC day output files of this run are named after."""
        return self.run_moment.astimezone(UTC).date()

    @property
    def stamp(self) -> str:
        """``YYYYMMDD`` of :attr:`day`."""
        return self.day.strftime("%Y%m%d")

    # --- staging ----------------------------------------------------------------------------

    @property
    def run_name(self) -> str:
        """File-name-safe run id (used for the staging folder and report names)."""
        return sanitize_run_id(self.run_id)

    @property
    def object_staging(self) -> Any:
        """This task's :class:`~threekit_pipeline.pipelines.staging.ObjectStaging`, or None for
        local staging (``staging_url`` unset)."""
        url = object_staging_url(self.config)
        return None if url is None else object_staging_of(self.config, url)

    def run_dir(self, *parts: str, fresh: bool = False) -> Path:
        """``<staging>/<dag_id>/<run>/<parts...>``, created; ``fresh`` empties it first.

        A task that rebuilds its own sub-folder with ``fresh=True`` is safe to re-run: a
        retried attempt never sees half the files of the failed one. On object storage the
        folder is in the task's scratch copy: the store's files of ``parts`` (all of them, sub-
        folders included; without ``parts`` only the run folder's own files) are copied in first.
        """
        staging = self.object_staging
        if staging is not None:
            relative = "/".join((self.dag_id, self.run_name, *parts))
            if fresh:
                staging.discard(relative)
            else:
                staging.pull_tree(relative, top_level_only=not parts)
            folder = staging.local(relative)
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        folder = Path(self.config.staging_dir) / self.dag_id / self.run_name
        for part in parts:
            folder = folder / part
        if fresh and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def shared_dir(self, *parts: str) -> Path:
        """``<staging>/<dag_id>/shared/<parts...>``: kept across runs (caches), created."""
        staging = self.object_staging
        if staging is not None:
            relative = "/".join((self.dag_id, "shared", *parts))
            staging.pull_tree(relative)
            folder = staging.local(relative)
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        folder = Path(self.config.staging_dir) / self.dag_id / "shared"
        for part in parts:
            folder = folder / part
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def staged(self, path: str | Path) -> Path:
        """Where the staged file ``path`` (as another task of this run wrote it into XCom or a
        staged JSON file) is for this task.

        Local staging: ``path`` itself. Object storage: the file and its companions (same name up
        to the first dot) are copied from the store into this task's scratch copy, whose path is
        returned. A path outside staging (a mapping file, say) is returned as it is.
        """
        staging = self.object_staging
        if staging is None:
            return Path(path)
        relative = staging.relative_of(path, (f"{self.dag_id}/{self.run_name}", f"{self.dag_id}/shared"))
        if relative is None:
            return Path(path)
        staging.pull_group(relative)
        return staging.local(relative)

    # --- clients -----------------------------------------------------------------------------

    @contextmanager
    def ftp(self) -> Iterator[Any]:
        """An open FTP client for the configured connection (closed on exit)."""
        from threekit_pipeline.airflow.hooks.ftp import FtpTransferHook

        client = FtpTransferHook(self.config.ftp_conn_id).get_conn()
        with client:
            yield client

    @contextmanager
    def threekit(self) -> Iterator[Any]:
        """A Threekit client for the configured connection (closed on exit)."""
        from threekit_pipeline.airflow.hooks.threekit import ThreekitHook

        client = ThreekitHook(self.config.threekit_conn_id).get_client()
        try:
            yield client
        finally:
            client.close()

    def describe(self) -> str:
        flags = [name for name in ("dry_run", "force_full_resend") if getattr(self, name)]
        return (
            f"{self.dag_id} run {self.run_id} ({self.run_type}, day {self.day.isoformat()}"
            + (f", {', '.join(flags)}" if flags else "")
            + ")"
        )


# --- object-storage staging sessions --------------------------------------------------------------

#: The object-storage staging of the task running in this process, per staging URL.
_STAGING_SESSIONS: dict[str, Any] = {}


def object_staging_of(config: PipelineConfig, url: str) -> Any:
    """The open :class:`~threekit_pipeline.pipelines.staging.ObjectStaging` of this process for
    ``url`` (opened on first use through Airflow's ``ObjectStoragePath`` and ``staging_conn_id``)."""
    session = _STAGING_SESSIONS.get(url)
    if session is None or session.closed:
        from threekit_pipeline.pipelines.staging import SCRATCH_FOLDER, ObjectStaging

        fs, root = object_storage(url, config.staging_conn_id)
        session = ObjectStaging(fs, root, url, Path(config.staging_dir) / SCRATCH_FOLDER)
        _STAGING_SESSIONS[url] = session
    return session


def object_storage(url: str, conn_id: str | None) -> tuple[Any, str]:
    """``(fsspec filesystem, base path in its terms)`` of ``url`` (see :func:`object_storage_path`)."""
    base = object_storage_path(url, conn_id)
    return base.fs, base.path


def staging_root(config: PipelineConfig) -> Any:
    """The staging base as a path object: ``Path(staging_dir)`` for local staging, else the
    ``ObjectStoragePath`` of ``staging_url`` (pathlib-like: ``/``, ``iterdir``, ``open``...)."""
    url = object_staging_url(config)
    return Path(config.staging_dir) if url is None else object_storage_path(url, config.staging_conn_id)


def object_storage_path(url: str, conn_id: str | None) -> Any:
    """Airflow's ``ObjectStoragePath`` of ``url`` through connection ``conn_id``.

    Gap covered: the sftp provider's filesystem (sshfs) ignores the connection's host-key
    extras, and ``ObjectStoragePath`` builds its filesystem without storage options. So for
    ``sftp://`` the filesystem is attached first, with the SFTP connection's ``known_hosts`` file
    or ``host_key`` line (as the SFTP transfer client reads them, :mod:`threekit_pipeline.ftp.sftp`):
    the store's host key is verified like the FTP side's. ``no_host_key_check`` keeps the
    provider's meaning. Airflow keeps one filesystem per scheme and connection in a process.
    """
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach, get_fs

    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # one INFO line per SSH packet step otherwise
    scheme = url.split("://", 1)[0].lower()
    if conn_id and scheme in ("sftp", "ssh"):
        attach(scheme, conn_id, fs=get_fs(scheme, conn_id, storage_options=_ssh_host_key_options(conn_id)))
    return ObjectStoragePath(url, conn_id=conn_id or None)


def _ssh_host_key_options(conn_id: str) -> dict[str, Any]:
    import hashlib
    import os
    import tempfile

    from airflow.sdk import BaseHook

    from threekit_pipeline.pipelines.staging import StagingError

    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    if str(extra.get("no_host_key_check", "")).lower() == "true":
        return {"known_hosts": None}
    if str(extra.get("accept_unknown_host_key", "")).lower() == "true":
        log.warning("Staging connection %s: accept_unknown_host_key is set, the store's host key is not verified",
                    conn_id)
        return {"known_hosts": None}
    if extra.get("known_hosts"):
        if not Path(str(extra["known_hosts"])).expanduser().is_file():
            raise StagingError(
                f"Staging connection {conn_id}: known_hosts file {extra['known_hosts']} does not exist"
            )
        return {"known_hosts": str(extra["known_hosts"])}
    host_key = str(extra.get("host_key") or "").strip()
    if host_key:
        port = int(conn.port or 22)
        name = conn.host if port == 22 else f"[{conn.host}]:{port}"
        parts = host_key.split()
        if len(parts) < 2:
            # The value itself is not shown: a private key pasted there by mistake must not reach a log.
            raise StagingError(f"Staging connection {conn_id}: host_key must be '<type> <base64>' "
                               "(as in known_hosts, e.g. 'ssh-ed25519 AAAA...')")
        key_type, key_data = parts[-2:]  # '<type> <base64>', as the SFTP client reads it
        line = f"{name} {key_type} {key_data}\n"
        # One file per key (public, not a secret), written once: no temporary file piles up.
        path = Path(tempfile.gettempdir()) / f"threekit-known-hosts-{hashlib.sha256(line.encode()).hexdigest()[:16]}"
        if not path.is_file() or path.read_text() != line:
            partial = path.with_name(f"{path.name}.{os.getpid()}")
            partial.write_text(line)
            partial.replace(path)
        return {"known_hosts": str(path)}
    user_file = Path("~/.ssh/known_hosts").expanduser()
    if user_file.is_file():
        return {"known_hosts": str(user_file)}
    # sshfs alone would not verify the key at all (its default is known_hosts=None).
    raise StagingError(
        f"Staging connection {conn_id}: no host key to verify {conn.host} against: set the connection's "
        "known_hosts (a file) or host_key ('<type> <base64>') extra, or no_host_key_check=true to skip the check"
    )


def finish_staging(*, push: bool = True) -> None:
    """End this process's object-storage staging: write each task's changes back to the store
    (unless ``push`` is false) and delete its scratch copy. No-op with local staging."""
    errors = []
    for url, session in list(_STAGING_SESSIONS.items()):
        try:
            session.close(push=push)
        except Exception as exc:  # noqa: BLE001 - every session is closed; the first error is raised
            errors.append(exc)
        finally:
            _STAGING_SESSIONS.pop(url, None)
    if errors:
        raise errors[0]


def staged_task(function: Any) -> Any:
    """``function`` ending with :func:`finish_staging`, also when it raises (a retry then resumes
    from what this attempt wrote). The DAG factories wrap every task body with it."""
    import functools

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = function(*args, **kwargs)
        except BaseException:
            try:
                finish_staging()
            except Exception as exc:  # noqa: BLE001 - the task's own error is the one to raise
                log.error("Could not write this attempt's staged files back: %s", exc)
            raise
        finish_staging()
        return result

    return wrapper


def feed_of_dag(dag_id: str, variable_value: str | None = None) -> Any:
    """The :class:`~threekit_pipeline.feeds.FeedRuntime` of the feed generating ``dag_id``, or None.

    Reads the feeds file in force (``$THREEKIT_FEEDS_FILE``, else ``variable_value`` (the
    ``threekit_feeds_file`` Variable), else the default file), as the DAG file did when it
    built the DAG. Raises :class:`~threekit_pipeline.feeds.FeedsError` when the file is invalid.
    """
    from threekit_pipeline.feeds import feeds_path, find_feed, load_feeds_cached, runtime_of

    feeds = load_feeds_cached(feeds_path(variable_value))
    feed = find_feed(feeds, dag_id)
    return runtime_of(feeds, feed) if feed is not None else None


def describe_selection(env: TaskEnv) -> str:
    """How this run selects its files, in words (for logs and run reports)."""
    from threekit_pipeline.pipelines import inbound

    if env.only_file:
        return f"param file={env.only_file}"
    window = inbound.selection_window(
        env.run_type, env.params, env.data_interval_start, env.data_interval_end
    )
    return window.describe()


class NothingToProcess(Exception):
    """This run has no file to process (the DAG task turns it into a skip)."""


def select_run_files(
    env: TaskEnv,
    ftp: Any,
    *,
    source: str,
    inbound_key: str,
    patterns: tuple[str, ...] = (),
    sensor_output: Any = None,
) -> list[dict[str, Any]]:
    """The files this run processes, by the shared inbound rule, as XCom-safe dicts.

    Scheduled/manual runs take the sensor's complete files (``sensor_output``, see
    :func:`plan_wait`); backfill runs and manual runs with ``replay=True`` take the stamps of
    their data interval, from the archive when already processed; param ``file`` picks one
    file. Marker files (``<name><suffix>`` for the configured ``marker_suffixes``) are never
    selected themselves. Raises :class:`NothingToProcess` when nothing is selected.
    """
    from threekit_pipeline.pipelines import inbound

    cfg = env.config
    window = inbound.selection_window(
        env.run_type, env.params, env.data_interval_start, env.data_interval_end
    )
    complete = None
    if not window.replay and not env.only_file:
        complete = flatten_sensor_output(sensor_output)
        if complete is None:
            raise NothingToProcess(
                f"no complete file arrived in {cfg.folder(inbound_key)} before the sensor timed out"
            )
    files = inbound.select_inbound_files(
        ftp,
        inbound_dir=cfg.folder(inbound_key),
        archive_root=cfg.folder("archive"),
        source=source,
        patterns=patterns,
        window=window,
        complete=complete,
        only_file=env.only_file,
        processing_day=env.day,
    )
    markers = tuple(s.lower() for s in cfg.marker_suffixes)
    selected = [f for f in files if not (markers and f.name.lower().endswith(markers))]
    description = describe_selection(env)
    if not selected:
        raise NothingToProcess(f"no file to process in {cfg.folder(inbound_key)} ({description})")
    log.info("Selected %d file(s) (%s):", len(selected), description)
    for item in selected:
        log.info("  %s  %s bytes  stamp %s  (%s)", item.path, item.size, item.stamp_label, item.origin)
    return [f.to_dict() for f in selected]


def locate_selected(ftp: Any, selected: dict[str, Any], *, env: TaskEnv, source: str) -> tuple[Any, str]:
    """Where a selected file is now: ``(InboundFile, note)``, or ``(None, note)`` when quarantined.

    A retried or cleared task may find that an earlier attempt already archived or rejected
    the file it was given; the archived copy is then used (the file is processed from there
    and stays there), a quarantined file is left alone.
    """
    from threekit_pipeline.pipelines import inbound
    from threekit_pipeline.pipelines.outbound import remote_stat

    item = inbound.InboundFile.from_dict(selected)
    if remote_stat(ftp, item.path) is not None:
        return item, ""
    cfg = env.config
    day = inbound.stamp_day(item.name, env.day)
    archived = f"{inbound.archive_dir(cfg.folder('archive'), source, day)}/{item.name}"
    found = remote_stat(ftp, archived)
    if found is not None:
        return (
            inbound.InboundFile.from_remote(found, origin=inbound.ORIGIN_ARCHIVE),
            f"already archived at {archived} by an earlier attempt",
        )
    rejected = f"{inbound.rejected_dir(cfg.folder('rejected'), source)}/{item.name}"
    if remote_stat(ftp, rejected) is not None:
        return None, f"already quarantined at {rejected} by an earlier attempt"
    raise FileNotFoundError(f"{item.path}: no longer on the FTP server, and not in {archived} nor {rejected}")


def plan_wait(env: TaskEnv, *, inbound_key: str, patterns: tuple[str, ...]) -> list[dict[str, Any]]:
    """The sensor's arguments when this inbound run has to wait for files: ``[kwargs]`` or ``[]``.

    The DAG expands the sensor over this list, so a replay (backfill or ``replay=True``) or a
    ``file`` run has no sensor instance and does not wait. Sensor settings come from the
    Variable at run time. (Airflow maps only over a task's whole return value, hence a list.)
    """
    from threekit_pipeline.pipelines import inbound

    cfg = env.config
    window = inbound.selection_window(
        env.run_type, env.params, env.data_interval_start, env.data_interval_end
    )
    sensor = {
        "ftp_conn_id": cfg.ftp_conn_id,
        "path": cfg.folder(inbound_key),
        "patterns": list(patterns),
        "stable_seconds": cfg.stable_seconds,
        "marker_suffixes": list(cfg.marker_suffixes),
        "poke_interval": cfg.poke_interval_seconds,
        "timeout": cfg.sensor_timeout_seconds,
    }
    waiting = not window.replay and not env.only_file
    if env.only_file:
        log.info("Param file=%r: processing that file only, no waiting", env.only_file)
    elif window.replay:
        log.info("%s: %s, no waiting", window.reason, window.describe())
    else:
        log.info(
            "Waiting for complete files matching %s in %s (stable %.0f s, timeout %.0f s)",
            list(patterns),
            sensor["path"],
            cfg.stable_seconds,
            cfg.sensor_timeout_seconds,
        )
    return [sensor] if waiting else []


def flatten_sensor_output(sensor_output: Any) -> list[Any] | None:
    """The complete files a (mapped) sensor returned; None when no sensor instance returned any.

    A mapped sensor's output arrives as one list per instance; a skipped or absent instance
    contributes nothing.
    """
    if sensor_output is None:
        return None
    try:
        # One slice request instead of item-by-item reads that end in a "not found" lookup.
        items = list(sensor_output[:])
    except TypeError:
        items = list(sensor_output)
    if items and all(isinstance(item, (list, tuple)) or item is None for item in items):
        results = [item for item in items if item is not None]
        if not results:
            return None
        return [entry for result in results for entry in result]
    return items or None
