"""Shared test configuration.

Airflow is configured before anything imports it: each pytest-xdist worker gets its
own AIRFLOW_HOME (and SQLite metadata DB) under .airflow/tests/, so parallel workers
never share a database file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# THREEKIT_TEST_CLOCK moves the wall clock of this process and of every Python process it
# starts (tests/clock/_test_clock.py): the suite must not depend on today's date.
_CLOCK_DIR = REPO / "tests" / "clock"
if os.environ.get("THREEKIT_TEST_CLOCK", "").strip():
    sys.path.insert(0, str(_CLOCK_DIR))
    import _test_clock

    _test_clock.apply()
    _pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(_CLOCK_DIR) not in _pythonpath:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(_CLOCK_DIR), *_pythonpath])
_worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
_home = REPO / ".airflow" / "tests" / _worker
_home.mkdir(parents=True, exist_ok=True)

os.environ["AIRFLOW_HOME"] = str(_home)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")


def pytest_report_header(config) -> str | None:
    if "_test_clock" not in sys.modules:
        return None
    from datetime import UTC, datetime

    offset = float(os.environ["THREEKIT_TEST_CLOCK"].rstrip("s"))
    return f"clock moved by {offset / 86400:+.2f} days: now {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"


def _migrate_once() -> None:
    marker = _home / ".migrated"
    if marker.exists():
        return
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    marker.touch()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """An initialised Airflow metadata DB for this worker (for dag.test() runs)."""
    _migrate_once()
    return _home


# --- xdist groups -------------------------------------------------------------------
# Grouped tests (`xdist_group`) share one worker under `make test`'s `--dist loadgroup`
# (see xdist_groups.py for why this project applies the group tag itself).
from xdist_groups import pytest_collection_modifyitems  # noqa: E402,F401

# --- Sandbox fixtures -------------------------------------------------------------
# Real servers in subprocesses on free loopback ports; each test gets its own data
# directory, so tests are independent and can run in parallel.

SANDBOX_TOKEN = "tk-test-3f9a1c7e-5b2d-4e8f-9a61-0c2d7b4e8f11"
SANDBOX_ORG = "0b7e4c1a-9d2f-4a6b-8c3e-5f1a2b3c4d5e"
FTP_USER = "erp"
FTP_PASSWORD = "ftp-secret-8d1f0a"


@pytest.fixture
def threekit_sandbox(tmp_path):
    """A running threekit-sandbox (see threekit_pipeline.sandbox.threekit_process)."""
    from threekit_pipeline.sandbox.threekit_process import ThreekitSandboxProcess

    proc = ThreekitSandboxProcess(data_dir=tmp_path / "threekit", token=SANDBOX_TOKEN, org_id=SANDBOX_ORG)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def ftp_sandbox(tmp_path):
    """A running ftp-sandbox (plain FTP, MLSD available)."""
    from threekit_pipeline.sandbox.ftp_process import FtpSandboxProcess

    proc = FtpSandboxProcess(root=tmp_path / "ftproot", user=FTP_USER, password=FTP_PASSWORD)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def sshd():
    """A real OpenSSH sshd on a loopback port, throwaway host and user keys (one per module).

    Needs root (see threekit_pipeline.sandbox.real_servers); modules using it skip without.
    """
    from threekit_pipeline.sandbox import real_servers

    with real_servers.SshdServer() as server:
        yield server


# --- Secret-leak watch ------------------------------------------------------------
# Every test is checked, at teardown, for the tokens and passwords of the servers it
# used: in its log records, its captured stdout/stderr, its failure text, every file
# under its tmp_path (reports, staging, server logs) and the Airflow task logs written
# while it ran. A leak fails the test; the report names where, never the secret.

import logging  # noqa: E402
import time  # noqa: E402

_SECRETS: set[str] = {SANDBOX_TOKEN, FTP_PASSWORD}
_MAX_SCAN_BYTES = 8 << 20


def register_secret(value: str | None) -> None:
    """Watch ``value`` (a token or password of a server a test started) for leaks."""
    if value and len(value) >= 8:
        _SECRETS.add(value)


def _register_launcher_secrets() -> None:
    patches = [
        ("threekit_pipeline.sandbox.threekit_process", "ThreekitSandboxProcess", ("token",)),
        ("threekit_pipeline.sandbox.ftp_process", "FtpSandboxProcess", ("password",)),
        ("threekit_pipeline.devtools.stack", "LocalStack", ("_token", "_ftp_password")),
        ("threekit_pipeline.sandbox.real_servers", "_Daemon", ("password",)),
    ]
    for module_name, class_name, attributes in patches:
        try:
            module = __import__(module_name, fromlist=[class_name])
        except ImportError:
            continue
        cls = getattr(module, class_name, None)
        if cls is None or getattr(cls.start, "_watched", False):
            continue
        original = cls.start

        def start(self, *args, __original=original, __attributes=attributes, **kwargs):
            for attribute in __attributes:
                register_secret(getattr(self, attribute, None))
            return __original(self, *args, **kwargs)

        start._watched = True
        cls.start = start


_register_launcher_secrets()


class _RecordCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is not our business here
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + repr(record.exc_info[1]) + str(record.exc_info[1])
        self.texts.append(text)


def _leaks_in_text(text: str) -> bool:
    return any(secret in text for secret in _SECRETS)


def _leaking_files(folder: Path, since: float | None = None) -> list[str]:
    found = []
    secrets = [s.encode() for s in _SECRETS]
    if not folder.exists():
        return found
    for path in folder.rglob("*"):
        try:
            if not path.is_file() or path.is_symlink():
                continue
            stat = path.stat()
            if since is not None and stat.st_mtime < since:
                continue
            if stat.st_size > _MAX_SCAN_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if any(secret in data for secret in secrets):
            found.append(str(path))
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    collector = _RecordCollector()
    logging.getLogger().addHandler(collector)
    item._secret_watch = {"collector": collector, "texts": [], "since": time.time()}
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    watch = getattr(item, "_secret_watch", None)
    if watch is None:
        return
    if report.longrepr is not None:
        watch["texts"].append(str(report.longrepr))
    if report.when != "teardown":
        return
    collector = watch["collector"]
    logging.getLogger().removeHandler(collector)
    places = []
    if any(_leaks_in_text(text) for text in collector.texts):
        places.append("a log record")
    if any(_leaks_in_text(text) for text in watch["texts"]):
        places.append("the failure text")
    for name, content in report.sections:
        if _leaks_in_text(content):
            places.append(f"section '{name}'")
    tmp = item.funcargs.get("tmp_path") if hasattr(item, "funcargs") else None
    if tmp is not None:
        places += [f"file {p}" for p in _leaking_files(Path(tmp))]
    places += [f"Airflow log {p}" for p in _leaking_files(_home / "logs", since=watch["since"])]
    if places and report.outcome == "passed":
        report.outcome = "failed"
        report.longrepr = "a token or password of a sandbox leaked into: " + "; ".join(places[:20])
