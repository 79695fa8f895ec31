"""``make airflow``: the whole product on one machine with ``airflow standalone`` and the sandboxes.

:func:`run_standalone` starts a :class:`~threekit_pipeline.devtools.stack.LocalStack` under
``<repo>/.demo/``, hands its connections and Variable to Airflow through the environment, runs
``airflow standalone`` (api-server, scheduler, dag-processor, triggerer; LocalExecutor) and prints
where the UI is and where the admin password is stored. Ctrl-C (or SIGTERM) stops Airflow, then the
sandboxes.

:class:`StandaloneAirflow` is the reusable part (the UI test drives it too).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from threekit_pipeline.devtools.cluster import (
    ADMIN_USER,
    AirflowRestClient,
    ClusterError,
    airflow_argv,
    clean_environment,
    own_group_dying_with_parent,
)
from threekit_pipeline.devtools.stack import LocalStack, free_port

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
PASSWORDS_FILE_NAME = "simple_auth_manager_passwords.json.generated"
STANDALONE_COMPONENTS = ("scheduler", "dag_processor", "triggerer")
LOG_SERVER_PORTS = {
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": 8793,
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": 8794,
}


def _port_is_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class StandaloneAirflow:
    """``airflow standalone`` in its own process group, configured only by the given environment.

    ``base_env`` holds the Airflow settings (e.g. the Makefile's LocalExecutor ones, or a test's);
    ``extra_env`` adds the stack's connections and Variable. Without ``all_admins`` the UI needs a
    login: user ``admin``, password in :attr:`password_file` (created here with a random password if
    missing, so it is never echoed to the console).
    """

    def __init__(
        self,
        airflow_home: Path,
        *,
        base_env: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        dags_folder: Path | None = None,
        port: int | None = None,
        all_admins: bool = False,
        output: IO[bytes] | Path | None = None,
    ) -> None:
        self.airflow_home = Path(airflow_home).resolve()
        if port is None:
            port = DEFAULT_PORT if _port_is_free(DEFAULT_PORT) else free_port()
        self.port = port
        self.url = f"http://localhost:{port}"
        self.api_url = f"http://127.0.0.1:{port}"
        self.all_admins = all_admins
        self.output = output
        self.process: subprocess.Popen | None = None
        env = dict(base_env if base_env is not None else os.environ)
        env.update(extra_env or {})
        env.update(
            {
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__API__HOST": env.get("AIRFLOW__API__HOST", "127.0.0.1"),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": str(all_admins),
                "PYTHONUNBUFFERED": "1",
                # standalone starts its components as plain `airflow ...`: this environment's CLI first.
                "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
            }
        )
        # Log servers of the LocalExecutor workers and the triggerer: Airflow's ports when free, else
        # any free port (another Airflow on this machine must not make standalone half-start).
        for setting, default in LOG_SERVER_PORTS.items():
            if setting not in env:
                env[setting] = str(default if _port_is_free(default) else free_port())
        if dags_folder is not None:
            env["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(dags_folder).resolve())
        self.env = env
        self.client = AirflowRestClient(self.api_url)  # all-admins mode: token without credentials

    @property
    def password_file(self) -> Path:
        configured = self.env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
        return Path(configured) if configured else self.airflow_home / PASSWORDS_FILE_NAME

    def ensure_admin_password(self) -> None:
        """Create the password file with a random admin password unless the admin already has one."""
        path = self.password_file
        path.parent.mkdir(parents=True, exist_ok=True)
        passwords: dict[str, str] = {}
        if path.exists():
            with contextlib.suppress(ValueError):
                passwords = json.loads(path.read_text() or "{}")
        if ADMIN_USER in passwords:
            return
        passwords[ADMIN_USER] = secrets.token_urlsafe(12)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(passwords, handle)

    def start(self) -> None:
        """Start ``airflow standalone`` (it migrates the metadata DB itself)."""
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        if not self.all_admins:
            self.ensure_admin_password()
        stdout: Any = None  # inherit: people running `make airflow` see Airflow's own output
        if isinstance(self.output, Path):
            self.output.parent.mkdir(parents=True, exist_ok=True)
            stdout = open(self.output, "ab")  # noqa: SIM115 - closed in stop()
        elif self.output is not None:
            stdout = self.output
        self._stdout = stdout
        self.process = subprocess.Popen(
            airflow_argv("standalone"),
            env=self.env,
            cwd=self.airflow_home,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout is not None else None,
            # Own group, so Ctrl-C reaches standalone only through stop(), which shuts down in order;
            # SIGINT (standalone's clean shutdown) if this process dies first.
            preexec_fn=own_group_dying_with_parent(signal.SIGINT),
        )
        log.info("Started airflow standalone (pid %d) with AIRFLOW_HOME=%s", self.process.pid, self.airflow_home)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = 240.0) -> None:
        """Wait until the API answers and scheduler, dag-processor and triggerer report healthy."""
        deadline = time.monotonic() + timeout
        self.client.wait_until_up(timeout, is_alive=self.is_running)
        self.client.wait_until_healthy(
            STANDALONE_COMPONENTS, max(1.0, deadline - time.monotonic()), is_alive=self.is_running
        )

    def stop(self, timeout: float = 25.0) -> None:
        """SIGINT to standalone (it stops its components), then SIGTERM/SIGKILL to whatever is left.

        standalone's own shutdown usually takes 15-20 s but can hang on a component; its components
        share its process group, and any that left the group are killed by PID.
        """
        if self.process is None:
            return
        import psutil

        try:
            tree = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            tree = []
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 0.0)):
            alive = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, sig)
            for process in alive:
                with contextlib.suppress(psutil.Error):
                    process.send_signal(sig)
            psutil.wait_procs(alive, timeout=grace)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace or 5.0)
        if isinstance(self.output, Path) and self._stdout is not None:
            self._stdout.close()
        log.info("airflow standalone stopped (exit code %s)", self.process.returncode)

    def __enter__(self) -> StandaloneAirflow:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _banner(airflow: StandaloneAirflow, stack: LocalStack) -> str:
    login = (
        "no login needed (all users are admins)"
        if airflow.all_admins
        else f"user '{ADMIN_USER}', password stored in {airflow.password_file}"
    )
    ftp_root = Path(stack.ftp.root)
    return "\n".join(
        [
            "",
            "=" * 78,
            f"  Airflow UI        {airflow.url}",
            f"  Login             {login}",
            f"  Threekit sandbox  {stack.threekit.base_url} (org {stack.org_id})",
            f"  FTP sandbox       {stack.ftp.host}:{stack.ftp.port}; files on disk under {ftp_root}",
            f"  Drop ERP files in {ftp_root / 'inbound' / 'catalog'} (DAGs start paused: unpause them)",
            "  Stop with Ctrl-C.",
            "=" * 78,
            "",
        ]
    )


def run_standalone(
    repo: Path,
    *,
    extra_variable: Mapping[str, Any] | None = None,
    on_ready: Callable[[LocalStack, StandaloneAirflow], None] | None = None,
    port: int | None = None,
    ready_timeout: float = 300.0,
) -> int:
    """Run the local stack plus ``airflow standalone`` until Ctrl-C; returns the exit code.

    ``AIRFLOW_HOME`` comes from the environment (the Makefile sets ``<repo>/.airflow``), else
    ``<repo>/.airflow``. ``on_ready`` runs once everything is healthy (the demo seeds files there).
    """
    repo = Path(repo).resolve()
    airflow_home = Path(os.environ.get("AIRFLOW_HOME") or repo / ".airflow")
    base_env = dict(os.environ)
    base_env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(repo / "dags"))
    base_env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(repo / "plugins"))
    base_env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C must stop everything even when this process inherited SIGINT as ignored (as programs
    # started in the background by a non-interactive shell do).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with LocalStack(repo / ".demo") as stack:
            airflow = StandaloneAirflow(
                airflow_home, base_env=base_env, extra_env=stack.airflow_env(extra_variable), port=port
            )
            with airflow:
                try:
                    airflow.wait_ready(ready_timeout)
                    if on_ready is not None:
                        on_ready(stack, airflow)
                    print(_banner(airflow, stack), flush=True)
                    while airflow.is_running():
                        time.sleep(0.5)
                except ClusterError as exc:
                    print(f"Airflow did not become ready: {exc}", file=sys.stderr, flush=True)
                    return 1
                except KeyboardInterrupt:
                    print("\nStopping Airflow and the sandboxes...", flush=True)
                    return 0
                print(f"airflow standalone exited with code {airflow.process.returncode}", file=sys.stderr)
                return airflow.process.returncode or 1
    except KeyboardInterrupt:  # Ctrl-C while starting: everything started so far is stopped
        print("\nInterrupted; servers stopped.", flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def clean_standalone_environment(repo: Path) -> dict[str, str]:
    """The Makefile's local Airflow settings without anything inherited (used by tests).

    The log servers get free ports (not Airflow's 8793/8794): several of these deployments may
    start at once on one machine (parallel test runs), and a port that was free when checked
    can be taken before standalone binds it.
    """
    env = clean_environment()
    env.update(
        {
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(Path(repo) / "plugins"),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        }
    )
    return env
