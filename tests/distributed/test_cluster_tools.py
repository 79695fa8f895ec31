"""The cluster harness's building blocks: process groups, environment isolation, DB/broker reset."""

from __future__ import annotations

import importlib.util
import json
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
    check_private_dirs_supported,
    clean_environment,
    flush_redis_database,
    link_dags_folders,
    private_dirs_argv,
    reset_postgres_database,
    task_queue_policy_source,
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


def test_worker_env_and_private_dirs_reach_only_that_worker(tmp_path):
    shared = tmp_path / "staging"
    workers = (
        CeleryWorkerSpec("a", env={"ONLY_A": "1", "EXTRA": "a"}, private_dirs=(shared,)),
        CeleryWorkerSpec("b"),
    )
    cluster = CeleryCluster(tmp_path, dags_folder=tmp_path, extra_env={"EXTRA": "1"}, celery_workers=workers)
    assert cluster._component_env("celery-a")["EXTRA"] == "a" and cluster._component_env("celery-a")["ONLY_A"] == "1"
    assert "ONLY_A" not in cluster._component_env("celery-b") and cluster._component_env("celery-b")["EXTRA"] == "1"
    assert "ONLY_A" not in cluster._component_env("scheduler")
    wrapped = cluster._component_argv("celery-a")
    assert wrapped[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    assert wrapped[-2:] == ["--queues", "default"]  # the worker's own argv, passed on untouched
    assert cluster._component_argv("celery-b")[0] != "unshare"
    assert cluster._component_argv("scheduler")[0] != "unshare"
    with pytest.raises(ValueError, match="absolute"):
        CeleryWorkerSpec("c", private_dirs=("relative/dir",))


# Writes its name into the private directory, then reports what it sees there.
_PRIVATE_DIR_PROBE = (
    "import json, os, sys, time\n"
    "directory, name = sys.argv[1], sys.argv[2]\n"
    "open(os.path.join(directory, name), 'w').write(name)\n"
    "time.sleep(float(sys.argv[3]))\n"
    "print(json.dumps(sorted(os.listdir(directory))), flush=True)\n"
)


def test_private_dirs_are_unshared_between_workers_and_the_launcher(tmp_path):
    check_private_dirs_supported()
    # An awkward path (space, quote) checks the quoting; the directory also exists with content
    # beforehand, which the namespaces must hide.
    private = tmp_path / "staging dir's"
    private.mkdir()
    (private / "host-file").write_text("host")
    processes = []
    for name in ("worker-a", "worker-b"):
        # Both run at the same time (each sleeps until the other has written), so neither hides
        # the other by coming after it.
        argv = private_dirs_argv([sys.executable, "-c", _PRIVATE_DIR_PROBE, str(private), name, "2"], [private])
        processes.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    seen = {}
    for name, process in zip(("worker-a", "worker-b"), processes, strict=True):
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        seen[name] = json.loads(out)
    assert seen == {"worker-a": ["worker-a"], "worker-b": ["worker-b"]}
    assert sorted(os.listdir(private)) == ["host-file"]  # the launcher sees neither worker's file


def test_a_process_with_private_dirs_stops_with_its_whole_tree(tmp_path):
    check_private_dirs_supported()
    private = tmp_path / "private"
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"open({str(private / 'marker')!r}, 'w').write('x')\n"
        "print('started', flush=True); time.sleep(300)\n"
    )
    argv = private_dirs_argv([sys.executable, "-c", script], [private])
    process = ManagedProcess("private", argv, os.environ, tmp_path / "private.log", tmp_path)
    process.start()
    deadline = time.monotonic() + 20
    while "started" not in process.log_text():
        assert process.is_running() and time.monotonic() < deadline, process.log_tail()
        time.sleep(0.2)
    root = psutil.Process(process.pid)
    # unshare and sh exec'd: the launched pid is the Python process itself, still a group leader.
    assert root.name().startswith("python") and os.getpgid(process.pid) == process.pid
    tree = [root, *root.children(recursive=True)]
    assert len(tree) == 2
    assert not (private / "marker").exists()  # written on the private tmpfs only
    process.stop(timeout=3)
    gone, alive = psutil.wait_procs(tree, timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not process.is_running()


def test_unavailable_private_dirs_fail_the_start_clearly(tmp_path, monkeypatch):
    from threekit_pipeline.devtools import cluster as cluster_module

    monkeypatch.setattr(cluster_module, "_private_dirs_problem", ["unshare not found on PATH"])
    cluster = CeleryCluster(
        tmp_path, dags_folder=tmp_path, celery_workers=(CeleryWorkerSpec("a", private_dirs=(tmp_path / "s",)),)
    )
    with pytest.raises(ClusterError, match="private directories are unavailable: unshare not found"):
        cluster.start()
    assert not cluster.processes


def _load_policy(path):
    spec = importlib.util.spec_from_file_location(f"policy_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_task_queue_policy_routes_only_the_listed_tasks(tmp_path):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, task

    cluster = CeleryCluster(
        tmp_path, dags_folder=tmp_path, task_queues={"import_chunk": "worker_b_only", "plan": "worker_a_only"}
    )
    cluster._write_policy_file()
    assert cluster.policy_file == cluster.airflow_home / "config" / "airflow_local_settings.py"
    policy = _load_policy(cluster.policy_file)

    with DAG("policy_probe", schedule=None) as dag:

        @task
        def plan() -> list:
            return [1, 2]

        @task
        def import_chunk(chunk: int) -> int:
            return chunk

        @task(queue="own_queue")
        def report() -> None:
            return None

        untouched = EmptyOperator(task_id="untouched")
        import_chunk.expand(chunk=plan()) >> report() >> untouched

    for operator in dag.tasks:
        policy.task_policy(operator)
    queues = {operator.task_id: operator.queue for operator in dag.tasks}
    assert queues == {
        "plan": "worker_a_only",
        "import_chunk": "worker_b_only",  # the mapped task, by its plain task id
        "report": "own_queue",
        "untouched": "default",
    }
    # Without task_queues no policy is written, and a previous run's is removed.
    CeleryCluster(tmp_path, dags_folder=tmp_path)._write_policy_file()
    assert not cluster.policy_file.exists()
    with pytest.raises(ValueError, match="non-empty queue"):
        task_queue_policy_source({"plan": ""})


def test_airflow_parsing_applies_the_policy_from_airflow_home(tmp_path):
    """What the dag-processor does to a DAG file (``DagBag.bag_dag`` -> ``settings.task_policy``) in a
    fresh interpreter given only the cluster's ``AIRFLOW_HOME``: the listed task gets its queue."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "probe.py").write_text(
        "from airflow.sdk import DAG, task\n"
        "with DAG('policy_probe', schedule=None):\n"
        "    @task\n"
        "    def plan():\n"
        "        return [1]\n"
        "    @task\n"
        "    def import_chunk(chunk):\n"
        "        return chunk\n"
        "    import_chunk.expand(chunk=plan())\n"
    )
    cluster = CeleryCluster(tmp_path / "cluster", dags_folder=dags, task_queues={"import_chunk": "worker_b_only"})
    cluster.airflow_home.mkdir(parents=True)
    cluster._write_policy_file()
    code = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(dags)!r})\n"
        "print(json.dumps({t.task_id: t.queue for t in bag.dags['policy_probe'].tasks}))\n"
    )
    env = clean_environment()
    env["AIRFLOW_HOME"] = str(cluster.airflow_home)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"plan": "default", "import_chunk": "worker_b_only"}


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
