"""A real Airflow CeleryExecutor cluster from local processes: PostgreSQL metadata DB, Redis broker.

:class:`CeleryCluster` runs ``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and
``celery worker`` as separate subprocesses (each in its own process group, killed with it), sharing
one JWT secret, one execution API URL and one metadata database, as a multi-host deployment would.
:class:`AirflowRestClient` drives any Airflow 3 API server (this cluster, ``airflow standalone``, the
docker-compose stack) through the public REST API.

The Airflow settings every deployment of this project shares live in :data:`CLUSTER_AIRFLOW_CONFIG`;
``docker-compose.yaml`` must give the same ones (``tests/deploy/test_compose.py`` checks it), so the
cluster proven here is the one that ships.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from threekit_pipeline.devtools.stack import STACK_ENV_NAMES, free_port

log = logging.getLogger(__name__)

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
ADMIN_USER = "admin"

#: Airflow settings shared by every deployment of the project (native cluster and docker-compose).
CLUSTER_AIRFLOW_CONFIG: dict[str, str] = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
}

#: Settings every deployment must give whose values depend on where the services run (host names,
#: paths) or are per-deployment secrets.
CLUSTER_LOCATION_SETTINGS: tuple[str, ...] = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__PLUGINS_FOLDER",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
)

#: Every non-Airflow variable a deployment must pass to all components (connections, Variable, staging).
CLUSTER_PIPELINE_ENV_NAMES: tuple[str, ...] = STACK_ENV_NAMES

#: Native-only settings: loopback ports, so several local clusters never collide. Not part of the
#: shared configuration because containers each have their own network namespace.
NATIVE_PORT_SETTINGS: tuple[str, ...] = (
    "AIRFLOW__API__HOST",
    "AIRFLOW__API__PORT",
    "AIRFLOW__API__BASE_URL",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
)

DEFAULT_POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE = "threekit_pipeline_ci"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/5"

#: Airflow components besides the Celery workers, in start order.
SERVER_COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")

_REPO = Path(__file__).resolve().parents[3]
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_CELERY_READY = re.compile(r"\S+@\S+ ready\.")
_PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """The cluster could not start, or an Airflow API call failed; the message says which and why."""


@dataclass(frozen=True)
class CeleryWorkerSpec:
    """One ``airflow celery worker`` process: its node name and the queues it consumes.

    ``env`` is laid over the cluster's environment for this worker only. Each of ``private_dirs``
    (absolute paths) is, for this worker and every task process it starts, its own initially empty
    tmpfs: two workers given the same path see different contents, and nothing else sees what they
    write there (as on hosts sharing no disk). See :func:`private_dirs_argv`.
    """

    name: str = "worker-1"
    queues: tuple[str, ...] = ("default",)
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    private_dirs: tuple[str | Path, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "env", dict(self.env))
        object.__setattr__(self, "private_dirs", tuple(self.private_dirs))
        relative = [str(d) for d in self.private_dirs if not Path(d).is_absolute()]
        if relative:
            raise ValueError(f"private_dirs of worker {self.name!r} must be absolute paths: {relative}")

    @property
    def component(self) -> str:
        return f"celery-{self.name}"


# --- processes ----------------------------------------------------------------------------------------


def own_group_dying_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets its own process group and ``signum`` if the launcher dies.

    The own group lets ``stop()`` signal the whole tree; the parent-death signal keeps a crashed test
    runner from leaving Airflow components behind (Linux only; elsewhere ``stop()`` still applies).
    """

    def _preexec() -> None:
        os.setsid()
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signum))

    return _preexec


class ManagedProcess:
    """A long-running command in its own process group with output in a log file; stop() kills the group."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.popen: subprocess.Popen | None = None
        self._descendants_at_stop: list | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=own_group_dying_with_parent(signal.SIGTERM),
            )
        log.info("Started %s (pid %d), output in %s", self.name, self.popen.pid, self.log_path)

    def is_running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(deque(self.log_text().splitlines(), maxlen=lines))

    def terminate(self) -> None:
        """Send SIGTERM to the process group (first half of :meth:`stop`, so groups stop in parallel)."""
        if self.popen is None or self._descendants_at_stop is not None:
            return
        self._descendants_at_stop = self._descendants()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)  # setsid made the child a group leader

    def wait_or_kill(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a clean exit, then SIGKILL the group and every recorded descendant."""
        if self.popen is None:
            return
        self.terminate()
        try:
            self.popen.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, self.popen.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        for process in self._descendants_at_stop or []:
            with contextlib.suppress(Exception):  # already gone is the normal case
                process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        log.info("Stopped %s (exit code %s)", self.name, self.popen.returncode)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL it and any descendant that left the group."""
        self.terminate()
        self.wait_or_kill(timeout)

    def _descendants(self) -> list:
        import psutil

        try:
            return psutil.Process(self.popen.pid).children(recursive=True)
        except psutil.Error:
            return []


#: Size and mode of each private directory's tmpfs (see :func:`private_dirs_argv`).
PRIVATE_DIR_MOUNT_OPTIONS = "size=512m,mode=0755"

_private_dirs_problem: list[str] = []  # filled once by check_private_dirs_supported()


def private_dirs_argv(argv: Sequence[str], private_dirs: Iterable[str | Path]) -> list[str]:
    """``argv`` run in its own mount namespace where each of ``private_dirs`` is a fresh, empty tmpfs.

    ``unshare --mount --propagation private`` gives the command a private copy of the mount table (no
    mount made inside reaches the host, none of the host's later reaches it); a shell then creates
    each directory, mounts a tmpfs on it and execs ``argv``, so the command keeps the pid (and
    process group) the launcher gave it and every process it starts shares its view. The tmpfs goes
    away with the last process of the namespace. A process whose working directory is (under) one of
    ``private_dirs`` keeps it on the disk beneath: use absolute paths there. Needs root (or
    ``CAP_SYS_ADMIN``): :func:`check_private_dirs_supported` tells beforehand.
    """
    dirs = [str(d) for d in private_dirs]
    if not dirs:
        return list(argv)
    steps = ["set -e"]
    for directory in dirs:
        quoted = shlex.quote(directory)
        steps.append(f"mkdir -p -- {quoted}")
        steps.append(f"mount -t tmpfs -o {PRIVATE_DIR_MOUNT_OPTIONS} tmpfs {quoted}")
    steps.append('exec "$@"')
    # argv travels as the shell's positional parameters: no quoting of it is needed at all.
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", "\n".join(steps), "sh", *argv]


def check_private_dirs_supported() -> None:
    """Raise :class:`ClusterError` saying why if :func:`private_dirs_argv` cannot work on this machine.

    Probes once (the answer is remembered): a namespace mounting a tmpfs on a scratch directory. A
    worker must never silently share the disk it was meant to have private.
    """
    if not _private_dirs_problem:
        _private_dirs_problem.append(_probe_private_dirs())
    if _private_dirs_problem[0]:
        raise ClusterError(f"per-worker private directories are unavailable: {_private_dirs_problem[0]}")


def _probe_private_dirs() -> str:
    """Empty when a private tmpfs can be mounted, otherwise the reason it cannot."""
    import tempfile

    missing = [tool for tool in ("unshare", "mount", "sh") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found on PATH"
    with tempfile.TemporaryDirectory(prefix="threekit-private-probe-") as scratch:
        argv = private_dirs_argv(["sh", "-c", f": > {shlex.quote(scratch)}/probe"], [scratch])
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{shlex.join(argv[:5])} could not run: {exc}"
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()
            return (
                f"unshare --mount / mount -t tmpfs failed (exit {result.returncode}; needs root or "
                f"CAP_SYS_ADMIN and unprivileged namespaces allowed): {output[:300]}"
            )
        if os.listdir(scratch):
            return "a file written on the namespace's tmpfs appeared outside it (mount propagation not private)"
    return ""


def task_queue_policy_source(task_queues: Mapping[str, str]) -> str:
    """An ``airflow_local_settings`` module whose ``task_policy`` routes the listed task ids to queues.

    Keys are task ids (a mapped task's plain id, e.g. ``import_chunk``; a task in a group its full
    ``group.task`` id); every other task keeps its queue. Airflow applies ``task_policy`` where DAGs
    are parsed (the dag-processor), so the serialized DAG, and the scheduler with it, carry the queue.
    """
    mapping = {str(task_id): str(queue) for task_id, queue in task_queues.items()}
    if not all(mapping.values()):
        raise ValueError(f"task_queues needs a non-empty queue for every task id: {mapping}")
    return (
        '"""Cluster policy of a local CeleryCluster: listed tasks go to given Celery queues."""\n'
        "\n"
        f"TASK_QUEUES = {mapping!r}\n"
        "\n"
        "\n"
        "def task_policy(task):\n"
        "    queue = TASK_QUEUES.get(task.task_id)\n"
        "    if queue is not None:\n"
        "        task.queue = queue\n"
    )


def airflow_argv(*args: str) -> list[str]:
    """Command line running the ``airflow`` CLI of this interpreter's environment."""
    script = Path(sys.executable).with_name("airflow")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "airflow", *args]


#: Environment variables a launched Airflow never inherits (by prefix): Airflow's own settings,
#: connections, Variables and task context (``AIRFLOW_CTX_*``, which ``dag.test()`` leaves in
#: ``os.environ``), the pipelines' settings (``THREEKIT_FEEDS_FILE``, the staging dir), the
#: sandboxes' secrets, and a test runner's state (``PYTEST_CURRENT_TEST`` changes how Airflow
#: treats logging errors).
INHERITED_ENV_DROPPED_PREFIXES = ("AIRFLOW", "_AIRFLOW", "THREEKIT_", "FTP_SANDBOX_", "PYTEST_", "COV_CORE_")

#: Kept despite their prefix: the test suite's moved wall clock (``tests/clock``), which is the
#: machine's for that run and must reach every process of a launched Airflow alike.
INHERITED_ENV_KEPT = frozenset({"THREEKIT_TEST_CLOCK"})


def clean_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) without Airflow, pipeline, sandbox or test-runner state.

    Components must see only the cluster's configuration, never settings leaked from the launching
    process (a test runner's LocalExecutor, a ``dag.test()``'s task context, say): every variable
    named with one of :data:`INHERITED_ENV_DROPPED_PREFIXES` is left out. What stays is the
    machine's (``PATH``, ``HOME``, locale, CA bundles, proxies); the caller adds the rest.
    """
    source = os.environ if base is None else base
    dropped = set(STACK_ENV_NAMES)
    env = {
        k: v
        for k, v in source.items()
        if k in INHERITED_ENV_KEPT or (not k.upper().startswith(INHERITED_ENV_DROPPED_PREFIXES) and k not in dropped)
    }
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def link_dags_folders(target: Path, sources: Mapping[str, Path]) -> Path:
    """A DAGs folder made of symlinks ``target/<name> -> source`` (Airflow follows them).

    Lets one Airflow deployment parse the project's ``dags/`` next to extra DAG folders (probe DAGs of
    the tests) without copying files. A single source is returned as is.
    """
    if len(sources) == 1:
        return Path(next(iter(sources.values()))).resolve()
    target.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        link = target / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path(source).resolve(), target_is_directory=True)
    return target


# --- REST client ----------------------------------------------------------------------------------


class AirflowRestClient:
    """Minimal client of the Airflow 3 public REST API (``/api/v2``) with simple-auth-manager login."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._token: str | None = None
        self.timeout = timeout
        self.session = requests.Session()

    def __repr__(self) -> str:
        return f"AirflowRestClient({self.base_url!r}, username={self._username!r})"

    def login(self) -> None:
        """Get a JWT from ``/auth/token``: with credentials, or (all-admins mode) without."""
        url = f"{self.base_url}/auth/token"
        if self._username is not None:
            response = self.session.post(
                url, json={"username": self._username, "password": self._password}, timeout=self.timeout
            )
        else:
            response = self.session.get(url, timeout=self.timeout)
        if response.status_code not in (200, 201):
            # The body never contains the password; it is safe to show.
            raise ClusterError(f"login to {url} failed: HTTP {response.status_code} {response.text[:300]}")
        self._token = response.json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {self._token}"

    def request(self, method: str, path: str, *, expected: Iterable[int] = (200,), **kwargs: Any) -> Any:
        """Call ``/api/v2{path}``; returns the decoded JSON body, raises :class:`ClusterError` otherwise."""
        if self._token is None:
            self.login()
        url = f"{self.base_url}/api/v2{path}"
        response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        if response.status_code == 401:  # token expired: log in once more
            self.login()
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        if response.status_code not in set(expected):
            raise ClusterError(f"{method} {path} answered HTTP {response.status_code}: {response.text[:500]}")
        if not response.content:
            return None
        return response.json()

    # Convenience wrappers, named after the REST resources.

    def version(self) -> dict:
        return self.session.get(f"{self.base_url}/api/v2/version", timeout=self.timeout).json()

    def health(self) -> dict:
        """``/api/v2/monitor/health`` (public: needs no login)."""
        response = self.session.get(f"{self.base_url}/api/v2/monitor/health", timeout=self.timeout)
        if response.status_code != 200:
            raise ClusterError(f"GET /monitor/health answered HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    def wait_until_healthy(
        self, components: Iterable[str], timeout: float, is_alive: Callable[[], bool] = lambda: True
    ) -> None:
        """Wait until the health endpoint reports each of ``components`` (e.g. ``scheduler``) healthy."""
        wanted = set(components)
        deadline = time.monotonic() + timeout
        healthy: set[str] = set()
        while time.monotonic() < deadline:
            if not is_alive():
                raise ClusterError(f"Airflow at {self.base_url} exited while waiting for {sorted(wanted)}")
            try:
                health = self.health()
                healthy = {n for n in wanted if (health.get(n) or {}).get("status") == "healthy"}
                if healthy == wanted:
                    return
            except (ClusterError, requests.RequestException):
                pass
            time.sleep(1)
        raise ClusterError(f"not healthy after {timeout:.0f}s: {sorted(wanted - healthy)}")

    def dags(self) -> list[dict]:
        return self.request("GET", "/dags", params={"limit": 1000})["dags"]

    def dag(self, dag_id: str) -> dict | None:
        try:
            return self.request("GET", f"/dags/{quote(dag_id, safe='')}")
        except ClusterError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def import_errors(self) -> list[dict]:
        return self.request("GET", "/importErrors", params={"limit": 1000})["import_errors"]

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{quote(dag_id, safe='')}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        """Trigger a manual run (no logical date) and return its run id."""
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        return self.request("POST", f"/dags/{quote(dag_id, safe='')}/dagRuns", json=body)["dag_run_id"]

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.request("GET", f"/dags/{quote(dag_id, safe='')}/dagRuns", params={"limit": 1000})["dag_runs"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return self.request("GET", path, params={"limit": 1000})["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = (
            f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/"
            f"{quote(task_id, safe='')}/xcomEntries/{quote(key, safe='')}"
        )
        value = self.request("GET", path, params={"deserialize": "true"})["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The task's log as text (structured entries flattened to ``timestamp level event``)."""
        path = (
            f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/"
            f"{quote(task_id, safe='')}/logs/{try_number}"
        )
        body = self.request(
            "GET", path, params={"full_content": "true", "map_index": map_index}, headers={"Accept": "application/json"}
        )
        lines = []
        for entry in body.get("content", []):
            if isinstance(entry, dict):
                extra = {k: v for k, v in entry.items() if k not in {"timestamp", "level", "event", "logger"}}
                line = f"{entry.get('timestamp', '')} {entry.get('level', '')} {entry.get('event', '')}"
                lines.append(line + (f" {extra}" if extra else ""))
            else:
                lines.append(str(entry))
        return "\n".join(lines)

    # Waiting.

    def wait_until_up(self, timeout: float, is_alive: Callable[[], bool] = lambda: True) -> None:
        """Wait until ``/api/v2/version`` answers (``is_alive`` false = the server died: stop waiting)."""
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if not is_alive():
                raise ClusterError(f"API server at {self.base_url} exited before answering")
            try:
                response = self.session.get(f"{self.base_url}/api/v2/version", timeout=5)
                if response.status_code == 200:
                    return
                last_error = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                last_error = type(exc).__name__
            time.sleep(1)
        raise ClusterError(f"API server at {self.base_url} not up after {timeout:.0f}s ({last_error})")

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float) -> None:
        """Wait until every DAG id is parsed (fails early, listing them, if there are import errors)."""
        wanted = set(dag_ids)
        deadline = time.monotonic() + timeout
        while True:
            errors = self.import_errors()
            if errors:
                details = "; ".join(f"{e.get('filename')}: {e.get('stack_trace', '')[-400:]}" for e in errors)
                raise ClusterError(f"DAG import errors: {details}")
            present = {d["dag_id"] for d in self.dags()}
            if wanted <= present:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"DAG(s) {sorted(wanted - present)} not parsed after {timeout:.0f}s")
            time.sleep(2)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float, poll: float = 2.0) -> str:
        """Wait for the run to finish; returns its final state ('success' or 'failed')."""
        deadline = time.monotonic() + timeout
        last_state = None
        while time.monotonic() < deadline:
            state = self.dag_run(dag_id, run_id)["state"]
            if state != last_state:
                log.info("DAG run %s/%s is %s", dag_id, run_id, state)
                last_state = state
            if state in ("success", "failed"):
                return state
            time.sleep(poll)
        raise ClusterError(f"DAG run {dag_id}/{run_id} still {last_state} after {timeout:.0f}s")

    def describe_run(self, dag_id: str, run_id: str, log_lines: int = 30) -> str:
        """Each task's state and log tail: what a person needs when a run did not succeed."""
        parts = []
        for ti in self.task_instances(dag_id, run_id):
            parts.append(f"--- task {ti['task_id']} [{ti['state']}] on {ti.get('hostname')} try {ti.get('try_number')}")
            if ti.get("try_number"):
                try:
                    text = self.task_log(dag_id, run_id, ti["task_id"], ti["try_number"], ti.get("map_index", -1))
                    parts.append("\n".join(text.splitlines()[-log_lines:]))
                except (ClusterError, requests.RequestException) as exc:
                    parts.append(f"(log unavailable: {exc})")
        return "\n".join(parts)


# --- the cluster ----------------------------------------------------------------------------------


def reset_postgres_database(admin_dsn: str, database: str) -> None:
    """Drop (terminating its sessions) and recreate ``database``: every run starts from an empty DB."""
    import psycopg2

    if not _IDENTIFIER.match(database):
        raise ValueError(f"database name {database!r} must match {_IDENTIFIER.pattern}")
    connection = psycopg2.connect(admin_dsn)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{database}"')
    finally:
        connection.close()
    log.info("Recreated PostgreSQL database %s", database)


def drop_postgres_database(admin_dsn: str, database: str) -> None:
    import psycopg2

    if not _IDENTIFIER.match(database):
        raise ValueError(f"database name {database!r} must match {_IDENTIFIER.pattern}")
    connection = psycopg2.connect(admin_dsn)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        connection.close()


def flush_redis_database(url: str) -> None:
    """Empty the Redis database of ``url`` (the broker queue must not hold another run's tasks)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()
    log.info("Flushed Redis database %s", url)


def _database_url(admin_dsn: str, database: str, scheme: str) -> str:
    parts = urlsplit(admin_dsn)
    return parts._replace(scheme=scheme, path=f"/{database}").geturl()


class CeleryCluster:
    """Airflow components as subprocesses with the CeleryExecutor, PostgreSQL and Redis on loopback.

    Use as a context manager: ``start()`` recreates the metadata database, flushes the broker DB,
    migrates, starts every component and waits until all report healthy; ``stop()`` (also on errors)
    terminates every process group. ``extra_env`` (e.g. :meth:`LocalStack.airflow_env`) reaches every
    component; a worker's :attr:`CeleryWorkerSpec.env` only that worker. ``task_queues`` (task id ->
    queue) sends the listed tasks of any DAG to the given queues through a cluster policy
    (:attr:`policy_file`), so a test can pin tasks of an unmodified DAG to chosen workers.
    :attr:`client` is a logged-in :class:`AirflowRestClient`.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        dags_folder: Path,
        plugins_folder: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        postgres_admin_dsn: str = DEFAULT_POSTGRES_ADMIN_DSN,
        database: str = DEFAULT_DATABASE,
        redis_url: str = DEFAULT_REDIS_URL,
        with_triggerer: bool = True,
        celery_workers: Sequence[CeleryWorkerSpec] = (CeleryWorkerSpec(),),
        keep_database: bool = False,
        task_queues: Mapping[str, str] | None = None,
    ) -> None:
        self.work_dir = Path(work_dir).resolve()
        self.airflow_home = self.work_dir / "airflow_home"
        self.logs_dir = self.work_dir / "component-logs"
        self.dags_folder = Path(dags_folder).resolve()
        self.plugins_folder = Path(plugins_folder or _REPO / "plugins").resolve()
        self.extra_env = dict(extra_env or {})
        self.postgres_admin_dsn = postgres_admin_dsn
        self.database = database
        self.redis_url = redis_url
        self.with_triggerer = with_triggerer
        if not celery_workers or len({w.name for w in celery_workers}) != len(celery_workers):
            raise ValueError("celery_workers must name at least one worker, each name once")
        self.celery_workers = tuple(celery_workers)
        self.keep_database = keep_database
        self.task_queues = dict(task_queues or {})
        if self.task_queues:
            task_queue_policy_source(self.task_queues)  # fails now, not at start, on a bad mapping
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self._admin_password = secrets.token_urlsafe(18)
        self.processes: dict[str, ManagedProcess] = {}
        self.client = AirflowRestClient(self.api_url, username=ADMIN_USER, password=self._admin_password)
        self.env = self._build_env()

    def __repr__(self) -> str:
        return f"CeleryCluster(api_url={self.api_url!r}, database={self.database!r}, running={list(self.processes)})"

    def __enter__(self) -> CeleryCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Configuration.

    def _build_env(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        env = clean_environment()
        env.update(CLUSTER_AIRFLOW_CONFIG)
        env.update(
            {
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _database_url(
                    self.postgres_admin_dsn, self.database, "postgresql+psycopg2"
                ),
                "AIRFLOW__CELERY__BROKER_URL": self.redis_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": _database_url(
                    self.postgres_admin_dsn, self.database, "db+postgresql"
                ),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                    self.airflow_home / "simple_auth_manager_passwords.json"
                ),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                # Native-only: loopback ports chosen free, so nothing collides with other local servers.
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            }
        )
        env.update(self.extra_env)
        return env

    # Lifecycle.

    def start(self, timeout: float = 240.0, lock_timeout: float = 900.0) -> None:
        """Prepare DB and broker, migrate, start all components and wait until they are healthy.

        ``timeout`` bounds the components' start-up (after the migration, which has its own bound).
        Two clusters on one machine would drop each other's database and flush each other's broker,
        so a lock file per database makes a second one wait (up to ``lock_timeout``) instead.
        """
        if self.processes:
            raise ClusterError("cluster already started")
        if any(worker.private_dirs for worker in self.celery_workers):
            check_private_dirs_supported()
        started = time.monotonic()
        self._acquire_lock(timeout=lock_timeout)
        try:
            self.airflow_home.mkdir(parents=True, exist_ok=True)
            self._write_password_file()
            self._write_policy_file()
            reset_postgres_database(self.postgres_admin_dsn, self.database)
            flush_redis_database(self.redis_url)
            self._migrate()
            log.info("Metadata database ready after %.1fs", time.monotonic() - started)
            components_started = time.monotonic()
            for name in self._component_names():
                self.processes[name] = ManagedProcess(
                    name, self._component_argv(name), self._component_env(name), self.logs_dir / f"{name}.log",
                    self.work_dir,
                )
                self.processes[name].start()
            # The budget counts from here: migrating is bounded separately (and slow on a busy machine).
            self._wait_healthy(deadline=components_started + timeout)
        except BaseException:
            self.stop()
            raise
        log.info("Celery cluster healthy after %.1fs: API at %s", time.monotonic() - started, self.api_url)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every component (SIGTERM to all groups at once, workers first) and drop the database."""
        processes = sorted(self.processes.values(), key=lambda p: not p.name.startswith("celery-"))
        for process in processes:
            process.terminate()
        deadline = time.monotonic() + timeout
        for process in processes:
            try:
                process.wait_or_kill(deadline - time.monotonic())
            except Exception:  # keep stopping the others
                log.exception("Could not stop %s", process.name)
        if self.processes and not self.keep_database:
            try:
                drop_postgres_database(self.postgres_admin_dsn, self.database)
            except Exception as exc:  # the next run recreates it anyway
                log.warning("Could not drop database %s: %s", self.database, exc)
        self.processes = {}
        self._release_lock()

    def _acquire_lock(self, timeout: float) -> None:
        import fcntl
        import tempfile

        path = Path(tempfile.gettempdir()) / f"threekit-pipeline-cluster-{self.database}.lock"
        handle = open(path, "a")  # noqa: SIM115 - held until stop()
        deadline = time.monotonic() + timeout
        waiting_logged = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock_handle = handle
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.close()
                    raise ClusterError(f"another local cluster held {path} for {timeout:.0f}s") from None
                if not waiting_logged:
                    log.info("Waiting for another local cluster using database %s to stop", self.database)
                    waiting_logged = True
                time.sleep(2)

    def _release_lock(self) -> None:
        handle = getattr(self, "_lock_handle", None)
        if handle is not None:
            handle.close()  # closing releases the flock
            self._lock_handle = None

    def _component_names(self) -> list[str]:
        servers = [n for n in SERVER_COMPONENTS if self.with_triggerer or n != "triggerer"]
        return servers + [worker.component for worker in self.celery_workers]

    def _worker(self, component: str) -> CeleryWorkerSpec | None:
        return next((worker for worker in self.celery_workers if worker.component == component), None)

    def _component_argv(self, name: str) -> list[str]:
        worker = self._worker(name)
        if worker is None:
            return airflow_argv(name)
        argv = airflow_argv(
            "celery",
            "worker",
            "--concurrency",
            CLUSTER_AIRFLOW_CONFIG["AIRFLOW__CELERY__WORKER_CONCURRENCY"],
            "--celery-hostname",
            f"{worker.name}@%h",
            "--queues",
            ",".join(worker.queues),
        )
        return private_dirs_argv(argv, worker.private_dirs)

    def _component_env(self, name: str) -> dict[str, str]:
        worker = self._worker(name)
        return {**self.env, **(worker.env if worker else {})}

    @property
    def policy_file(self) -> Path:
        """``$AIRFLOW_HOME/config/airflow_local_settings.py``: Airflow puts ``$AIRFLOW_HOME/config`` on
        ``sys.path`` and imports it in every component (``airflow.settings.initialize``)."""
        return self.airflow_home / "config" / "airflow_local_settings.py"

    def _write_policy_file(self) -> None:
        """Write the ``task_queues`` policy (or remove one a previous run left in this home)."""
        path = self.policy_file
        if not self.task_queues:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(task_queue_policy_source(self.task_queues))

    def _write_password_file(self) -> None:
        """Give the admin a generated password before the API server starts (so none is printed)."""
        path = Path(self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({ADMIN_USER: self._admin_password}, handle)

    def _migrate(self) -> None:
        log_path = self.logs_dir / "db-migrate.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log_file:
            result = subprocess.run(
                airflow_argv("db", "migrate"),
                env=self.env,
                cwd=self.work_dir,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                timeout=300,
            )
        if result.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise ClusterError(f"airflow db migrate failed (exit {result.returncode}):\n{tail}")

    def _wait_healthy(self, deadline: float) -> None:
        api = self.processes["api-server"]
        self.client.wait_until_up(max(1.0, deadline - time.monotonic()), is_alive=api.is_running)
        self.client.login()
        wanted = {"scheduler", "dag_processor"} | ({"triggerer"} if self.with_triggerer else set())
        while True:
            self._check_alive()
            health = self.client.health()
            healthy = {name for name in wanted if (health.get(name) or {}).get("status") == "healthy"}
            workers_waiting = [
                w.component
                for w in self.celery_workers
                if not _CELERY_READY.search(self.processes[w.component].log_text())
            ]
            if healthy == wanted and not workers_waiting:
                return
            if time.monotonic() > deadline:
                missing = sorted(wanted - healthy) + workers_waiting
                raise ClusterError(f"components not healthy in time: {missing}\n{self.component_logs()}")
            time.sleep(1)

    def _check_alive(self) -> None:
        dead = {n: p.returncode() for n, p in self.processes.items() if not p.is_running()}
        if dead:
            raise ClusterError(f"component(s) exited: {dead}\n{self.component_logs()}")

    # Introspection for tests and people.

    @property
    def secrets(self) -> tuple[str, ...]:
        """The cluster's own secrets (admin password, JWT and session keys): for leak checks."""
        return (
            self._admin_password,
            self.env["AIRFLOW__API_AUTH__JWT_SECRET"],
            self.env["AIRFLOW__API__SECRET_KEY"],
            self.env["AIRFLOW__CORE__FERNET_KEY"],
        )

    @property
    def component_pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items() if process.pid}

    def component_logs(self, lines: int = 40) -> str:
        """The tail of every component's output, for failure reports."""
        return "\n".join(
            f"===== {name} (pid {process.pid}) =====\n{process.log_tail(lines)}"
            for name, process in self.processes.items()
        )

    def wipe(self) -> None:
        """Remove the work directory (AIRFLOW_HOME, logs); only when stopped."""
        if self.processes:
            raise ClusterError("stop the cluster before wiping it")
        shutil.rmtree(self.work_dir, ignore_errors=True)
