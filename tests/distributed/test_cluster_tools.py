"""The cluster harness's building blocks: process groups, environment isolation, DB/broker reset."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest
from threekit_pipeline.devtools.cluster import (
    AirflowRestClient,
    CeleryCluster,
    CeleryWorkerSpec,
    ClusterError,
    ManagedProcess,
    clean_environment,
    flush_redis_database,
    link_dags_folders,
    reset_postgres_database,
)
from threekit_pipeline.devtools.stack import free_port

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def test_stop_kills_the_whole_process_tree(tmp_path):
    # A parent with a child and a grandchild that ignores SIGTERM: nothing may survive stop().
    script = (
        "import os, signal, subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', "
        "'import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, \"-c\", \"import time; time.sleep(300)\"]); time.sleep(300)'])\n"
        "print('started', flush=True); time.sleep(300)\n"
    )
    process = ManagedProcess("tree", [sys.executable, "-c", script], os.environ, tmp_path / "tree.log", tmp_path)
    process.start()
    deadline = time.monotonic() + 20
    while len(psutil.Process(process.pid).children(recursive=True)) < 2:
        assert time.monotonic() < deadline, process.log_tail()
        time.sleep(0.2)
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    process.stop(timeout=3)
    gone, alive = psutil.wait_procs(tree, timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not process.is_running()


def test_components_never_inherit_the_launchers_airflow_settings(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    monkeypatch.setenv("AIRFLOW_CONN_LEAKED", "ftp://user:secret@example")
    monkeypatch.setenv("AIRFLOW_VAR_THREEKIT_PIPELINE", '{"batch_size": 1}')
    monkeypatch.setenv("AIRFLOW_HOME", "/somewhere/else")
    # What dag.test() and pytest leave in a test worker's environment, and pipeline settings.
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__2026-11-30T10:00:00+00:00")
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/x.py::test_y (call)")
    monkeypatch.setenv("THREEKIT_FEEDS_FILE", "/elsewhere/feeds.yaml")
    monkeypatch.setenv("THREEKIT_SANDBOX_TOKEN", "tk-leaked")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("THREEKIT_TEST_CLOCK", "+76d")
    env = clean_environment()
    leaked = [k for k in env if k.startswith(("AIRFLOW", "PYTEST_", "THREEKIT_")) and k != "THREEKIT_TEST_CLOCK"]
    assert not leaked, sorted(env)
    assert env["THREEKIT_TEST_CLOCK"] == "+76d"  # the run's moved clock reaches every component
    assert env["LANG"] == "C.UTF-8"  # the machine's settings stay
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)


def test_cluster_environment_is_complete_and_private(tmp_path):
    workers = (CeleryWorkerSpec("a", ("default",)), CeleryWorkerSpec("b", ("default", "special")))
    cluster = CeleryCluster(tmp_path, dags_folder=tmp_path, extra_env={"EXTRA": "1"}, celery_workers=workers)
    env = cluster.env
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{cluster.api_url}/execution/"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("/threekit_pipeline_ci")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert env["EXTRA"] == "1"
    other = CeleryCluster(tmp_path / "other", dags_folder=tmp_path)
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] != other.env["AIRFLOW__API_AUTH__JWT_SECRET"]
    argv = cluster._component_argv("celery-b")
    assert argv[-2:] == ["--queues", "default,special"] and "b@%h" in argv
    assert cluster._admin_password not in repr(cluster.client) + repr(cluster)
    with pytest.raises(ValueError, match="each name once"):
        CeleryCluster(tmp_path, dags_folder=tmp_path, celery_workers=(workers[0], workers[0]))


def test_link_dags_folders_exposes_every_source(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    (first / "a.py").write_text("")
    (second / "b.py").write_text("")
    assert link_dags_folders(tmp_path / "single", {"only": first}) == first.resolve()
    combined = link_dags_folders(tmp_path / "combined", {"one": first, "two": second})
    assert sorted(p.relative_to(combined).as_posix() for p in combined.glob("*/*.py")) == ["one/a.py", "two/b.py"]
    # Re-linking (a second run) replaces the links instead of failing.
    link_dags_folders(tmp_path / "combined", {"one": second, "two": first})
    assert (combined / "one" / "b.py").exists()


def test_a_second_cluster_on_the_same_database_waits_for_the_first(tmp_path):
    first = CeleryCluster(tmp_path / "1", dags_folder=tmp_path, database="threekit_pipeline_lock_test")
    second = CeleryCluster(tmp_path / "2", dags_folder=tmp_path, database="threekit_pipeline_lock_test")
    first._acquire_lock(timeout=1)
    try:
        with pytest.raises(ClusterError, match="another local cluster"):
            second._acquire_lock(timeout=1)
    finally:
        first._release_lock()
    second._acquire_lock(timeout=1)
    second._release_lock()


def test_rest_client_reports_an_unreachable_server_clearly():
    client = AirflowRestClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ClusterError, match="not up after"):
        client.wait_until_up(timeout=2)


@pytest.mark.distributed
def test_reset_postgres_database_starts_from_empty():
    import psycopg2

    name = f"threekit_pipeline_reset_{os.getpid()}"
    reset_postgres_database(ADMIN_DSN, name)
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    try:
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE leftover (id int)")
        connection.close()
        reset_postgres_database(ADMIN_DSN, name)
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'leftover'")
            assert cursor.fetchone()[0] == 0
        connection.close()
    finally:
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f'DROP DATABASE IF EXISTS "{name}"'],
            capture_output=True,
        )
    with pytest.raises(ValueError, match="must match"):
        reset_postgres_database(ADMIN_DSN, 'x"; DROP DATABASE postgres; --')


@pytest.mark.distributed
def test_flush_redis_database_empties_only_that_database():
    import redis

    url = "redis://127.0.0.1:6379/7"
    neighbour = redis.Redis.from_url("redis://127.0.0.1:6379/8")
    own = redis.Redis.from_url(url)
    try:
        own.set("threekit-pipeline-test-key", "1")
        neighbour.set("threekit-pipeline-test-key", "1")
        flush_redis_database(url)
        assert own.get("threekit-pipeline-test-key") is None
        assert neighbour.get("threekit-pipeline-test-key") == b"1"
    finally:
        neighbour.delete("threekit-pipeline-test-key")
        own.close()
        neighbour.close()
