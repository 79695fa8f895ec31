"""The pipelines run on a real CeleryExecutor cluster: PostgreSQL metadata DB, Redis broker, separate
processes for api-server, scheduler, dag-processor, triggerer and two Celery workers.

One cluster (module fixture) runs every DAG listed in :data:`DAGS_UNDER_TEST`, triggered through the
REST API; each DAG has a scenario saying which DAGs folder holds it, how to prepare the sandboxes and
what a successful run must have changed. Adding a DAG id to the tuple is all it takes to prove
another DAG distributed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
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

#: Two worker nodes sharing the ``default`` queue; each also serves one queue of the hand-off probe,
#: so the probe's file provably crosses from one worker to the other.
WORKERS = (
    CeleryWorkerSpec("worker-1", queues=("default", "handoff_writer")),
    CeleryWorkerSpec("worker-2", queues=("default", "handoff_reader")),
)

CLUSTER_START_TIMEOUT = 150.0
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

CATALOG_FILE = "products_20260105_080000.csv"
CATALOG_CSV = (
    "sku,name,description,category,price,currency,color,material,active\n"
    "CHAIR-001,Oslo Chair,Oak dining chair,chairs,129.00,EUR,natural,oak,true\n"
    "CHAIR-002,Bergen Chair,Upholstered chair,chairs,189.50,EUR,grey,fabric,true\n"
    "TABLE-001,Fjord Table,Extendable table,tables,799.00,EUR,white,ash,true\n"
)


def prepare_catalog_import(stack: LocalStack) -> dict[str, Any]:
    import io

    with stack.ftp_session() as ftp:
        ftp.storbinary(f"STOR /inbound/catalog/{CATALOG_FILE}", io.BytesIO(CATALOG_CSV.encode()))
    # Complete = unchanged for stable_seconds; make sure that much time passes before the sensor looks.
    time.sleep(1.5)
    return {"file": CATALOG_FILE, "skus": {"CHAIR-001", "CHAIR-002", "TABLE-001"}}


def check_catalog_import(result: RunResult) -> None:
    items = result.stack.threekit.items()
    imported_skus = {item.get("metadata", {}).get("sku") or item.get("sku") or item.get("name") for item in items}
    missing = result.prepared["skus"] - imported_skus
    assert not missing, f"products missing in Threekit: {sorted(missing)} (have {sorted(map(str, imported_skus))})"
    archived = sorted(p.relative_to(result.stack.ftp.root) for p in Path(result.stack.ftp.root).rglob(CATALOG_FILE))
    day = datetime.now(UTC)
    assert any(
        str(path).startswith("archive/") and f"{day:%Y/%m/%d}" in str(path) for path in archived
    ), f"{CATALOG_FILE} not archived under /archive/.../{day:%Y/%m/%d}/: found {archived}"
    assert not (Path(result.stack.ftp.root) / "inbound" / "catalog" / CATALOG_FILE).exists()


SCENARIOS: dict[str, DagScenario] = {
    "distributed_staging_handoff": DagScenario(dags_folder=PROBE_DAGS, check=check_staging_handoff),
    "threekit_catalog_import": DagScenario(
        dags_folder=REPO / "dags",
        check=check_catalog_import,
        prepare=prepare_catalog_import,
        variable={"stable_seconds": 1, "poke_interval_seconds": 1, "sensor_timeout_seconds": 120},
    ),
}

#: The DAGs this module proves on the cluster (each needs an entry in SCENARIOS).
DAGS_UNDER_TEST: tuple[str, ...] = ("distributed_staging_handoff",)


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
    with LocalStack(work / "stack") as stack:
        cluster = CeleryCluster(
            work / "cluster", dags_folder=dags_folder, extra_env=stack.airflow_env(variable), celery_workers=WORKERS
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
            for dag_id, (run_id, prepared) in started.items():
                try:
                    state = client.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
                except ClusterError as exc:
                    state = f"not finished: {exc}"
                results[dag_id] = RunResult(dag_id, run_id, state, stack, cluster, prepared)
            processes = _processes_of(cluster)
            secrets = (stack.ftp.password, stack.threekit.token)
            yield ClusterRuns(stack, cluster, results, secrets)
        finally:
            processes = processes or _processes_of(cluster)
            cluster.stop()
    survivors = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not survivors, f"processes left running after stop: {[(p.pid, p.name()) for p in survivors]}"


@pytest.mark.timeout(600)
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
            assert secret not in text, f"a connection secret appears in {path}"
