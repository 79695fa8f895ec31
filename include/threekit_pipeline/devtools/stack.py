"""The local sandbox stack: a Threekit API sandbox and an FTP sandbox on free loopback ports.

:class:`LocalStack` is what the demo, ``make airflow``, the DAG end-to-end tests and the distributed
tests run against. It starts both servers with their data under one work directory, creates the FTP
folder layout the pipelines expect, and renders the Airflow connections and Variable as environment
variables (``AIRFLOW_CONN_*`` / ``AIRFLOW_VAR_*``), exactly as a deployment would provide them.

Credentials are generated when not given and are never logged; ``repr()`` hides them too.
"""

from __future__ import annotations

import ftplib
import json
import logging
import os
import secrets
import socket
import ssl
import uuid
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from threekit_pipeline.pipelines.config import DEFAULT_FOLDERS, VARIABLE_NAME, load_config

log = logging.getLogger(__name__)

#: Environment variables through which every deployment (native, standalone, docker-compose) hands the
#: pipelines their connections, the ``threekit_pipeline`` Variable and the shared staging directory.
FTP_CONN_ENV = "AIRFLOW_CONN_FTP_DEFAULT"
THREEKIT_CONN_ENV = "AIRFLOW_CONN_THREEKIT_DEFAULT"
VARIABLE_ENV = "AIRFLOW_VAR_" + VARIABLE_NAME.upper()
STAGING_DIR_ENV = "THREEKIT_PIPELINE_STAGING_DIR"
STACK_ENV_NAMES: tuple[str, ...] = (FTP_CONN_ENV, THREEKIT_CONN_ENV, VARIABLE_ENV, STAGING_DIR_ENV)

#: Extra fields of the ``ftp_default`` connection (the project-wide convention), TLS fields set per stack.
FTP_CONNECTION_EXTRA_DEFAULTS: dict[str, Any] = {
    "tls": False,
    "verify": True,
    "ca_file": None,
    "passive": True,
    "connect_timeout": 30,
    "data_timeout": 120,
}

#: Keyword arguments of ``ThreekitSandboxProcess`` that ``threekit_faults`` may set.
THREEKIT_FAULT_KEYS = frozenset({"fail_rate", "rate_limit", "latency_ms", "drop_rate", "seed", "job_delay_ms"})

DEFAULT_FTP_USER = "erp"


class StackError(RuntimeError):
    """The local stack could not be started or configured; the message says which part and why."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ftp_folder_layout() -> tuple[str, ...]:
    """Every FTP folder the pipelines use by default, parents before children."""
    return tuple(sorted(set(DEFAULT_FOLDERS.values())))


class LocalStack:
    """Threekit and FTP sandboxes on free loopback ports, plus a staging directory, as a context manager.

    ``with LocalStack(tmp_path) as stack:`` starts both servers (data under ``work_dir``), creates the
    FTP folder layout and the staging directory; leaving the block stops both servers, also on an
    exception or Ctrl-C, and restores ``os.environ`` if :meth:`apply_env` changed it.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        ftp_tls: bool = False,
        ftp_no_mlsd: bool = False,
        threekit_faults: Mapping[str, Any] | None = None,
        token: str | None = None,
        org_id: str | None = None,
        ftp_password: str | None = None,
        ftp_user: str = DEFAULT_FTP_USER,
        ftp_download_limit: int | None = None,
    ) -> None:
        unknown = sorted(set(threekit_faults or {}) - THREEKIT_FAULT_KEYS)
        if unknown:
            raise ValueError(f"threekit_faults: unknown key(s) {unknown}; known: {sorted(THREEKIT_FAULT_KEYS)}")
        self.work_dir = Path(work_dir).resolve()
        self.ftp_tls = ftp_tls
        self.ftp_no_mlsd = ftp_no_mlsd
        self.ftp_download_limit = ftp_download_limit
        self.threekit_faults = dict(threekit_faults or {})
        self._token = token or f"tk-{secrets.token_urlsafe(24)}"
        self.org_id = org_id or str(uuid.uuid4())
        self._ftp_user = ftp_user
        self._ftp_password = ftp_password or secrets.token_urlsafe(18)
        self.staging_dir = self.work_dir / "staging"
        self.logs_dir = self.work_dir / "logs"
        self.threekit = None
        self.ftp = None
        self._saved_env: dict[str, str | None] | None = None

    def __repr__(self) -> str:
        state = "running" if self.threekit is not None else "stopped"
        return f"LocalStack(work_dir={str(self.work_dir)!r}, ftp_tls={self.ftp_tls}, {state})"

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start both sandboxes and create the FTP folders and the staging directory."""
        from threekit_pipeline.sandbox.ftp_process import FtpSandboxProcess
        from threekit_pipeline.sandbox.threekit_process import ThreekitSandboxProcess

        if self.threekit is not None:
            raise StackError("LocalStack is already running")
        for directory in (self.work_dir, self.staging_dir, self.logs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        try:
            self.threekit = ThreekitSandboxProcess(
                data_dir=self.work_dir / "threekit",
                token=self._token,
                org_id=self.org_id,
                log_file=self.logs_dir / "threekit-sandbox.log",
                **self.threekit_faults,
            )
            self.threekit.start()
            self.ftp = FtpSandboxProcess(
                root=self.work_dir / "ftproot",
                user=self._ftp_user,
                password=self._ftp_password,
                tls=self.ftp_tls,
                no_mlsd=self.ftp_no_mlsd,
                download_limit=self.ftp_download_limit,
                log_file=self.logs_dir / "ftp-sandbox.log",
            )
            self.ftp.start()
            self.create_ftp_folders()
        except BaseException:
            # Ctrl-C or a failure half-way must not leave a server running.
            self.stop()
            raise
        log.info(
            "Local stack up: Threekit sandbox at %s (org %s), FTP sandbox at %s:%d (%s), staging %s",
            self.threekit.base_url,
            self.org_id,
            self.ftp.host,
            self.ftp.port,
            "FTPS" if self.ftp_tls else "plain FTP",
            self.staging_dir,
        )

    def stop(self) -> None:
        """Stop both servers (each one even if stopping the other fails) and restore ``os.environ``."""
        self.restore_env()
        errors: list[str] = []
        for name in ("ftp", "threekit"):
            server = getattr(self, name)
            if server is None:
                continue
            try:
                server.stop()
            except Exception as exc:  # keep going: the other server must stop too
                errors.append(f"{name} sandbox: {type(exc).__name__}: {exc}")
            setattr(self, name, None)
        if errors:
            raise StackError("could not stop the local stack cleanly: " + "; ".join(errors))
        log.info("Local stack stopped")

    # --- FTP layout ------------------------------------------------------------------------------

    @contextmanager
    def ftp_session(self) -> Iterator[ftplib.FTP]:
        """A logged-in ftplib session to the FTP sandbox (TLS with the sandbox's CA when enabled)."""
        self._require_running()
        if self.ftp_tls:
            context = ssl.create_default_context(cafile=str(self.ftp.cafile))
            client: ftplib.FTP = ftplib.FTP_TLS(context=context, timeout=30)
        else:
            client = ftplib.FTP(timeout=30)
        try:
            client.connect(self.ftp.host, self.ftp.port)
            client.login(self._ftp_user, self._ftp_password)
            if isinstance(client, ftplib.FTP_TLS):
                client.prot_p()
            yield client
        finally:
            try:
                client.quit()
            except (OSError, EOFError, ftplib.Error):
                client.close()

    def create_ftp_folders(self, folders: tuple[str, ...] | None = None) -> None:
        """Create the FTP folders (default: :func:`ftp_folder_layout`); existing ones are left alone."""
        wanted = folders or ftp_folder_layout()
        created = 0
        with self.ftp_session() as client:
            for folder in wanted:
                path = ""
                for part in folder.strip("/").split("/"):
                    path = f"{path}/{part}"
                    try:
                        client.cwd(path)
                    except ftplib.error_perm:
                        client.mkd(path)
                        created += 1
        log.info("FTP folder layout ready (%d folders, %d created)", len(wanted), created)

    # --- Airflow configuration ---------------------------------------------------------------------

    def ftp_connection(self) -> dict[str, Any]:
        """The ``ftp_default`` connection in Airflow's JSON form (contains the password)."""
        self._require_running()
        extra = dict(FTP_CONNECTION_EXTRA_DEFAULTS)
        if self.ftp_tls:
            extra.update(tls=True, ca_file=str(self.ftp.cafile))
        return {
            "conn_type": "ftp",
            "host": self.ftp.host,
            "port": self.ftp.port,
            "login": self._ftp_user,
            "password": self._ftp_password,
            "extra": extra,
        }

    def threekit_connection(self) -> dict[str, Any]:
        """The ``threekit_default`` connection in Airflow's JSON form (contains the token)."""
        self._require_running()
        return {
            "conn_type": "threekit",
            "host": self.threekit.base_url,
            "password": self._token,
            "extra": {"org_id": self.org_id},
        }

    def variable(self, extra_variable: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``threekit_pipeline`` Variable: connection ids plus ``extra_variable`` (validated)."""
        value: dict[str, Any] = {"ftp_conn_id": "ftp_default", "threekit_conn_id": "threekit_default"}
        value.update(extra_variable or {})
        load_config(value)  # fail here, naming the bad key, rather than in a task later
        return value

    def airflow_env(self, extra_variable: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Environment variables giving Airflow the connections, the Variable and the staging dir."""
        return {
            FTP_CONN_ENV: json.dumps(self.ftp_connection()),
            THREEKIT_CONN_ENV: json.dumps(self.threekit_connection()),
            VARIABLE_ENV: json.dumps(self.variable(extra_variable)),
            STAGING_DIR_ENV: str(self.staging_dir),
        }

    def apply_env(self, extra_variable: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Put :meth:`airflow_env` into ``os.environ``; the previous values come back on exit."""
        env = self.airflow_env(extra_variable)
        if self._saved_env is None:
            self._saved_env = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        return env

    def restore_env(self) -> None:
        """Undo :meth:`apply_env` (no-op when it was not called)."""
        if self._saved_env is None:
            return
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = None

    def _require_running(self) -> None:
        if self.threekit is None or self.ftp is None:
            raise StackError("LocalStack is not running; use it as a context manager or call start()")
