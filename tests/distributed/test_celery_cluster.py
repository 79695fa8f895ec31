"""The pipelines run on a real CeleryExecutor cluster: PostgreSQL metadata DB, Redis broker, separate
processes for api-server, scheduler, dag-processor, triggerer and two Celery workers.

One cluster (module fixture) runs every DAG listed in :data:`DAGS_UNDER_TEST`, triggered through the
REST API; each DAG has a scenario saying which DAGs folder holds it, how to prepare the sandboxes and
what a successful run must have changed. Adding a DAG id to the tuple is all it takes to prove
another DAG distributed.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from _redis import private_redis_database
from threekit_pipeline.devtools.cluster import (
    CeleryCluster,
    CeleryWorkerSpec,
    ClusterError,
    link_dags_folders,
)
from threekit_pipeline.devtools.stack import LocalStack

REPO = Path(__file__).resolve().parents[2]
PROBE_DAGS = Path(__file__).resolve().parent / "dags"

pytestmark = [pytest.mark.distributed, pytest.mark.slow, pytest.mark.xdist_group("airflow_cluster")]

#: A queue only worker-1 serves, which no DAG names: the cluster's task policy sends tasks to it.
ROUTED_QUEUE = "routed_to_worker_1"

#: Tasks of unmodified DAGs pinned to :data:`ROUTED_QUEUE` by the cluster's task policy: a plain
#: ``@task`` and a mapped operator of the catalog import.
TASK_QUEUES = {"plan_run": ROUTED_QUEUE, "wait_for_files": ROUTED_QUEUE}

#: A directory each worker has as its own tmpfs (the pipelines do not use it): the workers run in
#: their mount namespaces, and must start, work and stop there like any other.
WORKER_SCRATCH = "/tmp/threekit-pipeline-worker-scratch"

#: Two worker nodes sharing the ``default`` queue; each also serves one queue of the hand-off probe,
#: so the probe's file provably crosses from one worker to the other.
WORKERS = (
    CeleryWorkerSpec(
        "worker-1", queues=("default", "handoff_writer", ROUTED_QUEUE), private_dirs=(WORKER_SCRATCH,)
    ),
    CeleryWorkerSpec("worker-2", queues=("default", "handoff_reader"), private_dirs=(WORKER_SCRATCH,)),
)

# Generous: on a loaded 2-core machine the components alone can take two minutes to come up.
CLUSTER_START_TIMEOUT = 240.0
RUN_TIMEOUT = 240.0


@dataclass(frozen=True)
class DagScenario:
    """How to run one DAG on the cluster and what its run must have done."""

    dags_folder: Path
    check: Callable[[RunResult], None]
    prepare: Callable[[LocalStack], dict[str, Any]] = lambda stack: {}
    variable: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    dag_id: str
    run_id: str
    state: str
    stack: LocalStack
    cluster: CeleryCluster
    prepared: dict[str, Any]

    def xcom(self, task_id: str) -> Any:
        return self.cluster.client.xcom(self.dag_id, self.run_id, task_id)

    def task_instances(self) -> dict[str, dict]:
        return {ti["task_id"]: ti for ti in self.cluster.client.task_instances(self.dag_id, self.run_id)}


# --- distributed_staging_handoff ---------------------------------------------------------------------


def check_staging_handoff(result: RunResult) -> None:
    pids = result.cluster.component_pids
    writer = result.xcom("write_handoff")
    read = result.xcom("read_handoff")
    connections = result.xcom("check_connections")

    # Separate task processes, each under its own Celery worker node, none under the scheduler.
    assert writer["writer"]["pid"] != read["reader"]["pid"]
    assert pids["celery-worker-1"] in writer["writer"]["ancestors"]
    assert pids["celery-worker-2"] not in writer["writer"]["ancestors"]
    assert pids["celery-worker-2"] in read["reader"]["ancestors"]
    assert pids["celery-worker-1"] not in read["reader"]["ancestors"]
    for info in (writer["writer"], read["reader"], connections["worker"]):
        assert pids["scheduler"] not in info["ancestors"]
    tis = result.task_instances()
    assert tis["write_handoff"]["pid"] == writer["writer"]["pid"]
    assert tis["read_handoff"]["queue"] == "handoff_reader"

    # Only the path travelled through XCom; the content came from the shared staging directory.
    staging_file = Path(writer["path"])
    assert staging_file.is_relative_to(result.stack.staging_dir)
    assert json.loads(staging_file.read_text())["nonce"] == writer["nonce"] == read["nonce_read"]

    # The deployment's AIRFLOW_CONN_* / AIRFLOW_VAR_* reached the workers.
    assert connections["ftp_login_ok"] is True
    assert connections["threekit_conn_type"] == "threekit"
    assert connections["threekit_host"] == result.stack.threekit.base_url
    assert connections["threekit_org_id"] == result.stack.org_id


# --- threekit_catalog_import -------------------------------------------------------------------------

CATALOG_PRODUCTS = 12
#: A stamp far from any day the suite runs on: the archive day must come from it, not the clock.
CATALOG_STAMP = "20240229"


def prepare_catalog_import(stack: LocalStack) -> dict[str, Any]:
    import io

    from threekit_pipeline.samples.catalog import generate_catalog

    files = generate_catalog(
        stack.work_dir / "catalog", products=CATALOG_PRODUCTS, stamp=CATALOG_STAMP, options_per_product=2,
        prices_per_product=1, locales=(),
    )
    with stack.ftp_session() as ftp:
        for path in files.values():
            ftp.storbinary(f"STOR /inbound/catalog/{path.name}", io.BytesIO(path.read_bytes()))
    with open(files["products"], newline="", encoding="utf-8") as handle:
        names_by_sku = {row["sku"]: row["name"] for row in csv.DictReader(handle)}
    return {"files": sorted(path.name for path in files.values()), "names_by_sku": names_by_sku}


def check_catalog_import(result: RunResult) -> None:
    stack = result.stack
    imported = {
        (item.get("metadata") or {}).get("SKU"): item["name"] for item in stack.threekit.items()
    }
    assert imported == result.prepared["names_by_sku"], "Threekit products differ from the uploaded catalog"

    ftp_root = Path(stack.ftp.root)
    assert not [p.name for p in (ftp_root / "inbound" / "catalog").iterdir()], "files left in the inbound folder"
    # The documented rule: a file is archived under its own stamp day, whatever day the run is.
    archive = ftp_root / "archive" / "catalog"
    archived = sorted(p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file())
    day = f"{CATALOG_STAMP[:4]}/{CATALOG_STAMP[4:6]}/{CATALOG_STAMP[6:8]}"
    for name in result.prepared["files"]:
        assert f"{day}/{name}" in archived, f"{name} not archived under its stamp day {day}: {archived}"


SCENARIOS: dict[str, DagScenario] = {
    "distributed_staging_handoff": DagScenario(dags_folder=PROBE_DAGS, check=check_staging_handoff),
    "threekit_catalog_import": DagScenario(
        dags_folder=REPO / "dags",
        check=check_catalog_import,
        prepare=prepare_catalog_import,
        # Chunks of 4 products: three mapped import tasks spread over both workers. A run finding no
        # file (the scheduled run created on unpausing, say) gives up after 10 s.
        variable={
            "stable_seconds": 1,
            "poke_interval_seconds": 1,
            "sensor_timeout_seconds": 10,
            "batch_size": 4,
            "import_concurrency": 2,
        },
    ),
}

#: The DAGs this module proves on the cluster (each needs an entry in SCENARIOS).
DAGS_UNDER_TEST: tuple[str, ...] = ("distributed_staging_handoff", "threekit_catalog_import")


# --- the cluster -------------------------------------------------------------------------------------


@dataclass
class ClusterRuns:
    stack: LocalStack
    cluster: CeleryCluster
    results: dict[str, RunResult]
    secrets: tuple[str, ...]


def _processes_of(cluster: CeleryCluster) -> list[psutil.Process]:
    processes = []
    for pid in cluster.component_pids.values():
        try:
            root = psutil.Process(pid)
            processes.extend([root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            continue
    return processes


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("celery-cluster")
    scenarios = {dag_id: SCENARIOS[dag_id] for dag_id in DAGS_UNDER_TEST}
    variable: dict[str, Any] = {}
    for scenario in scenarios.values():
        variable.update(scenario.variable)
    folders = sorted({scenario.dags_folder for scenario in scenarios.values()})
    dags_folder = link_dags_folders(work / "dags", {f"dags_{i}": folder for i, folder in enumerate(folders)})
    with private_redis_database() as redis_url, LocalStack(work / "stack") as stack:
        cluster = CeleryCluster(
            work / "cluster",
            dags_folder=dags_folder,
            extra_env=stack.airflow_env(variable),
            celery_workers=WORKERS,
            # Its own metadata database: another suite running on this machine has its own too.
            database=f"threekit_pipeline_ci_{os.getpid()}",
            redis_url=redis_url,
            task_queues=TASK_QUEUES,
        )
        cluster.start(timeout=CLUSTER_START_TIMEOUT)
        processes: list[psutil.Process] = []
        try:
            client = cluster.client
            client.wait_for_dags(scenarios, timeout=90)
            started = {}
            for dag_id, scenario in scenarios.items():
                prepared = scenario.prepare(stack)
                client.unpause(dag_id)
                started[dag_id] = (client.trigger(dag_id), prepared)
            results = {}
            deadline = time.monotonic() + RUN_TIMEOUT
            for dag_id, (run_id, prepared) in started.items():
                # Unpausing a scheduled DAG also creates its latest scheduled run: wait for all runs.
                # Keep listing until every listed run has finished (a run created meanwhile is waited for).
                states: dict[str, str] = {}
                try:
                    while True:
                        listed = [run["dag_run_id"] for run in client.dag_runs(dag_id)]
                        unfinished = [other_run for other_run in listed if other_run not in states]
                        if not unfinished:
                            break
                        for other_run in unfinished:
                            remaining = max(1.0, deadline - time.monotonic())
                            states[other_run] = client.wait_for_run(dag_id, other_run, remaining)
                except ClusterError as exc:
                    states[run_id] = f"not finished: {exc}"
                failed = {rid: state for rid, state in states.items() if state != "success"}
                bad_run = next(iter(failed), run_id)
                results[dag_id] = RunResult(dag_id, bad_run, failed.get(bad_run, "success"), stack, cluster, prepared)
            processes = _processes_of(cluster)
            secrets = (stack.ftp.password, stack.threekit.token, *cluster.secrets)
            yield ClusterRuns(stack, cluster, results, secrets)
        finally:
            processes = processes or _processes_of(cluster)
            cluster.stop()
    survivors = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not survivors, f"processes left running after stop: {[(p.pid, p.name()) for p in survivors]}"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("dag_id", DAGS_UNDER_TEST)
def test_dag_succeeds_on_celery_cluster(cluster_runs, dag_id):
    result = cluster_runs.results[dag_id]
    if result.state != "success":
        pytest.fail(
            f"{dag_id} run {result.run_id} ended {result.state}\n"
            f"{result.cluster.client.describe_run(dag_id, result.run_id)}\n"
            f"{result.cluster.component_logs(lines=25)}"
        )
    SCENARIOS[dag_id].check(result)


@pytest.mark.timeout(600)
def test_tasks_ran_on_celery_workers_only(cluster_runs):
    """Every task instance ran through the CeleryExecutor, on the queues the workers serve."""
    served = {queue for worker in WORKERS for queue in worker.queues}
    for dag_id, result in cluster_runs.results.items():
        for ti in result.task_instances().values():
            if ti["state"] in ("skipped", "upstream_failed", None):
                continue
            assert ti["executor"] in (None, "CeleryExecutor") and ti["queue"] in served, (dag_id, ti)
            assert ti["hostname"], (dag_id, ti["task_id"])


@pytest.mark.timeout(600)
def test_no_secret_in_component_or_task_logs(cluster_runs):
    cluster = cluster_runs.cluster
    log_files = [*cluster.logs_dir.rglob("*.log"), *(cluster.airflow_home / "logs").rglob("*.log")]
    task_logs = [f for f in log_files if "dag_id=" in str(f)]
    assert task_logs, "no task log found; the check would prove nothing"
    for path in log_files:
        text = path.read_text(errors="replace")
        for secret in cluster_runs.secrets:
            assert secret not in text, f"a secret appears in {path}"


@pytest.mark.timeout(600)
def test_task_policy_routes_tasks_of_an_unmodified_dag(cluster_runs):
    """The dag-processor applied the cluster's task policy: the scheduler queued the listed tasks there."""
    result = cluster_runs.results["threekit_catalog_import"]
    tis = result.cluster.client.task_instances(result.dag_id, result.run_id)
    routed = {ti["task_id"]: ti["queue"] for ti in tis if ti["task_id"] in TASK_QUEUES}
    assert routed == TASK_QUEUES, tis
    others = {ti["queue"] for ti in tis if ti["task_id"] not in TASK_QUEUES}
    assert ROUTED_QUEUE not in others
