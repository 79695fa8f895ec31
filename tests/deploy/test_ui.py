"""The Airflow UI of ``make airflow`` (``airflow standalone`` + the sandboxes), seen by a real browser.

Headless Chromium renders Airflow 3's React UI (``--dump-dom`` after the scripts ran) and the test
reads the visible text: the DAG list shows every DAG of ``dags/``, the home page reports no DAG
import error, and a run triggered through the REST API is shown as successful. A broken DAG file
added at the end must make the import-error notice appear, proving the check can fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest
from _chromium import CHROMIUM, ensure_chromium
from threekit_pipeline.devtools.cluster import link_dags_folders
from threekit_pipeline.devtools.stack import LocalStack, free_port
from threekit_pipeline.devtools.standalone import StandaloneAirflow, clean_standalone_environment

REPO = Path(__file__).resolve().parents[2]
PROBE_DAGS = REPO / "tests" / "distributed" / "dags"
PROBE_DAG_ID = "distributed_staging_handoff"
IMPORT_ERROR_NOTICE = "Dag Import Error"  # the home page's stat card ("1 Dag Import Error", "2 ... Errors")

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("airflow_cluster")]


class _VisibleText(HTMLParser):
    """Text a person would see: everything outside <style>, <script> and <svg>."""

    HIDDEN = {"style", "script", "svg", "noscript"}

    def __init__(self) -> None:
        super().__init__()
        self._hidden_depth = 0
        self.chunks: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self._hidden_depth += 1

    def handle_endtag(self, tag):
        if tag in self.HIDDEN and self._hidden_depth:
            self._hidden_depth -= 1

    def handle_data(self, data):
        if not self._hidden_depth and data.strip():
            self.chunks.append(data.strip())


def page_text(url: str, profile_dir: Path) -> str:
    """The page's visible text after its scripts ran, as rendered by headless Chromium."""
    shutil.rmtree(profile_dir, ignore_errors=True)
    result = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile_dir}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"chromium failed on {url}: {result.stderr[-1000:]}"
    parser = _VisibleText()
    parser.feed(result.stdout)
    return " | ".join(parser.chunks)


def _expected_dag_ids() -> set[str]:
    """DAG ids in dags/, parsed independently of the running Airflow."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return set(bag.dag_ids)


@pytest.mark.timeout(900)  # includes installing Chromium on a fresh machine
def test_ui_lists_every_dag_and_shows_the_finished_run(tmp_path):
    ensure_chromium(pytest.skip)
    expected = _expected_dag_ids() | {PROBE_DAG_ID}
    dags_folder = link_dags_folders(tmp_path / "dags", {"project": REPO / "dags", "probe": PROBE_DAGS})
    base_env = clean_standalone_environment(REPO)
    # Rescan the DAGs folder every few seconds so the broken file added at the end is noticed quickly.
    base_env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"] = "5"
    profile = tmp_path / "chromium-profile"

    with LocalStack(tmp_path / "stack") as stack:
        airflow = StandaloneAirflow(
            tmp_path / "airflow_home",
            base_env=base_env,
            extra_env=stack.airflow_env(),
            dags_folder=dags_folder,
            port=free_port(),
            all_admins=True,
            output=tmp_path / "standalone.log",
        )
        with airflow:
            try:
                airflow.wait_ready(timeout=240)
                client = airflow.client
                client.wait_for_dags(expected, timeout=120)
                client.unpause(PROBE_DAG_ID)
                run_id = client.trigger(PROBE_DAG_ID)
                state = client.wait_for_run(PROBE_DAG_ID, run_id, timeout=180)
                assert state == "success", client.describe_run(PROBE_DAG_ID, run_id)

                dag_list = page_text(f"{airflow.api_url}/dags?limit=100", profile)
                missing = sorted(dag_id for dag_id in expected if dag_id not in dag_list)
                assert not missing, f"DAG list page lacks {missing}: {dag_list[:2000]}"

                home = page_text(f"{airflow.api_url}/", profile)
                assert "Scheduler" in home and "Dag Processor" in home, home[:2000]  # the health card
                assert IMPORT_ERROR_NOTICE not in home, home[:2000]

                run_page = page_text(
                    f"{airflow.api_url}/dags/{PROBE_DAG_ID}/runs/{quote(run_id, safe='')}", profile
                )
                assert run_id in run_page and "Success" in run_page, run_page[:2000]
                for task_id in ("write_handoff", "read_handoff", "check_connections", "summarize"):
                    assert task_id in run_page

                # Negative control: the same check sees an import error once there is one.
                (tmp_path / "dags" / "broken_dag.py").write_text(
                    "from airflow.sdk import dag\nimport module_that_does_not_exist\n"
                )
                deadline = time.monotonic() + 90
                while not client.import_errors():
                    assert time.monotonic() < deadline, "the broken DAG file was never reported"
                    time.sleep(2)
                assert IMPORT_ERROR_NOTICE in page_text(f"{airflow.api_url}/", profile)
            except BaseException:
                log_file = tmp_path / "standalone.log"
                if log_file.exists():
                    tail = log_file.read_text(errors="replace").splitlines()[-60:]
                    print("airflow standalone output (tail):\n" + "\n".join(tail))
                raise


def test_standalone_environment_ignores_inherited_airflow_settings(monkeypatch, tmp_path):
    """Settings of the launching shell (a test runner's, say) never leak into standalone."""
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW_CONN_SOMETHING", "ftp://user:secret@elsewhere")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "left_by_dag_test")
    monkeypatch.setenv("THREEKIT_PIPELINE_STAGING_DIR", "/another/tests/staging")
    env = clean_standalone_environment(REPO)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert not {"AIRFLOW_CONN_SOMETHING", "AIRFLOW_CTX_DAG_ID", "THREEKIT_PIPELINE_STAGING_DIR"} & set(env)
    assert not [k for k in env if k.startswith("PYTEST_")]
    # Log servers on free ports, never Airflow's defaults another deployment may hold.
    ports = {env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"], env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]}
    assert len(ports) == 2 and not ports & {"8793", "8794"}
    airflow = StandaloneAirflow(tmp_path / "home", base_env=env, port=free_port(), all_admins=False)
    assert airflow.env["AIRFLOW_HOME"] == str((tmp_path / "home").resolve())
    assert airflow.env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{airflow.api_url}/execution/"
    assert airflow.env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_admin_password_file_is_created_private_and_kept(tmp_path):
    airflow = StandaloneAirflow(tmp_path / "home", base_env={}, port=free_port())
    airflow.ensure_admin_password()
    first = airflow.password_file.read_text()
    assert oct(airflow.password_file.stat().st_mode & 0o777) == "0o600"
    assert '"admin"' in first
    airflow.ensure_admin_password()
    assert airflow.password_file.read_text() == first, "an existing password must not be replaced"


@pytest.mark.timeout(420)
def test_run_standalone_prints_where_to_log_in_and_stops_cleanly_on_ctrl_c(tmp_path):
    """What `make airflow` does, in a subprocess: banner without secrets, Ctrl-C stops everything."""
    import psutil

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "dags").symlink_to(PROBE_DAGS, target_is_directory=True)
    (repo / "plugins").mkdir()
    env = clean_standalone_environment(repo)
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow_home")
    port = free_port()
    script = (
        "import sys; from pathlib import Path; "
        "from threekit_pipeline.devtools.standalone import run_standalone; "
        "raise SystemExit(run_standalone(Path(sys.argv[1]), port=int(sys.argv[2])))"
    )
    output_path = tmp_path / "make-airflow.out"
    with open(output_path, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", script, str(repo), str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while "Stop with Ctrl-C" not in output_path.read_text(errors="replace"):
            assert process.poll() is None, output_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "no banner after 300 s"
            time.sleep(1)
        tree = psutil.Process(process.pid).children(recursive=True)
        password_file = tmp_path / "airflow_home" / "simple_auth_manager_passwords.json.generated"
        banner = output_path.read_text(errors="replace")
        assert f"http://localhost:{port}" in banner
        assert f"user 'admin', password stored in {password_file}" in banner
        password = json.loads(password_file.read_text())["admin"]
        assert password not in banner, "the admin password was printed"
        assert str(repo / ".demo" / "ftproot" / "inbound" / "catalog") in banner

        process.send_signal(signal.SIGINT)  # what Ctrl-C delivers to `make airflow`
        # Generous: on a loaded 2-core machine standalone can take a while to wind down its components.
        assert process.wait(timeout=200) == 0
        assert "Stopping Airflow and the sandboxes" in output_path.read_text(errors="replace")
        gone, alive = psutil.wait_procs(tree, timeout=10)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], "processes left behind"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
