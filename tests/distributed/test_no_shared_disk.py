"""The catalog import on two Celery workers that share no disk: staging on an SFTP server (a real
OpenSSH sshd reached through ``sftp://``), the ledgers in PostgreSQL.

Each worker runs in its own mount namespace with a private, empty tmpfs over the staging
directory, so nothing one worker writes locally is visible to the other (or to this test). A
cluster policy sends consecutive tasks of the unmodified DAG to alternate workers: the downloads,
the chunks and the chunks' outcomes all have to cross through the store. A second run of the
same files sends nothing: the PostgreSQL ledger, not a local file, remembers the first.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from _postgres import throwaway_database
from _redis import private_redis_database
from threekit_pipeline.devtools.cluster import CeleryCluster, CeleryWorkerSpec, link_dags_folders
from threekit_pipeline.devtools.stack import LocalStack
from threekit_pipeline.pipelines.reports import sanitize_run_id

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "threekit_catalog_import"
# Its own group: xdist may run it beside the other cluster module (own database, Redis DB and ports).
pytestmark = [pytest.mark.distributed, pytest.mark.slow, pytest.mark.xdist_group("airflow_cluster_no_shared_disk")]

# Generous: on a loaded 2-core machine the components alone can take two minutes to come up.
CLUSTER_START_TIMEOUT = 240.0
RUN_TIMEOUT = 300.0

#: Consecutive tasks alternate between the two workers (each queue is served by one worker only).
TASK_QUEUES = {
    "plan_run": "node_a",
    "collect_files": "node_a",
    "transform_and_plan": "node_b",
    "restore_returning": "node_b",
    "import_chunk": "node_a",
    "finalize": "node_b",
    "publish_catalog": "node_a",
    "retire_missing": "node_a",
    "all_accepted": "node_a",
}
FEEDS = """\
version: 1
defaults: {retries: 1, retry_delay_seconds: 5, transfer: ftp_default, threekit: threekit_default}
inbound:
  - {id: catalog, kind: catalog, dag_id: threekit_catalog_import, folder: /inbound/catalog,
     mapping: canonical, schedule: null}
outbound: []
"""
PRODUCTS = 12
STAMP = "20240229"


def _catalog(stack: LocalStack, run: int) -> dict[str, Any]:
    from threekit_pipeline.samples.catalog import generate_catalog

    files = generate_catalog(stack.work_dir / f"catalog-{run}", products=PRODUCTS, stamp=STAMP,
                             options_per_product=2, prices_per_product=1, locales=())
    with stack.ftp_session() as ftp:
        for path in files.values():
            ftp.storbinary(f"STOR /inbound/catalog/{path.name}", io.BytesIO(path.read_bytes()))
    with open(files["products"], newline="", encoding="utf-8") as handle:
        return {row["sku"]: row["name"] for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def no_shared_disk(tmp_path_factory, sshd):
    work = tmp_path_factory.mktemp("no-shared-disk")
    known_hosts = work / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line + "\n")
    store = sshd.mkdir("threekit-staging")
    dags_folder = link_dags_folders(work / "dags", {"dags_0": REPO / "dags"})
    # The catalog feed alone, unscheduled: the two runs below are the only runs.
    feeds_file = work / "feeds.yaml"
    feeds_file.write_text(FEEDS)
    with throwaway_database("no_shared_disk_ledger") as ledger_dsn, private_redis_database() as redis_url, \
            LocalStack(work / "stack") as stack:
        variable = {
            "stable_seconds": 1, "poke_interval_seconds": 1, "sensor_timeout_seconds": 10,
            "batch_size": 4, "import_concurrency": 2,
            "staging_url": f"sftp://{store}", "staging_conn_id": "threekit_staging",
            "ledger_conn_id": "threekit_ledger",
        }
        env = stack.airflow_env(variable)
        env["AIRFLOW_CONN_THREEKIT_STAGING"] = json.dumps({
            "conn_type": "sftp", "host": sshd.host, "port": sshd.port, "login": sshd.user,
            "extra": {"key_file": str(sshd.user_key), "known_hosts": str(known_hosts)},
        })
        env["THREEKIT_FEEDS_FILE"] = str(feeds_file)
        env["AIRFLOW_CONN_THREEKIT_LEDGER"] = ledger_dsn.replace("postgresql://", "postgres://")
        # The staging directory (scratch root) is a private tmpfs in each worker's mount namespace.
        workers = (
            CeleryWorkerSpec("worker-a", queues=("default", "node_a"), private_dirs=(stack.staging_dir,)),
            CeleryWorkerSpec("worker-b", queues=("default", "node_b"), private_dirs=(stack.staging_dir,)),
        )
        cluster = CeleryCluster(
            work / "cluster", dags_folder=dags_folder, extra_env=env, celery_workers=workers,
            database=f"threekit_pipeline_nsd_{os.getpid()}", redis_url=redis_url, task_queues=TASK_QUEUES,
        )
        cluster.start(timeout=CLUSTER_START_TIMEOUT)
        try:
            client = cluster.client
            client.wait_for_dags([DAG_ID], timeout=90)
            runs = []
            for number in (1, 2):
                names = _catalog(stack, number)
                run_id = client.trigger(DAG_ID, run_id=f"manual__no_shared_disk_{number}")
                if number == 1:
                    client.unpause(DAG_ID)
                state = client.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT)
                assert state == "success", (
                    f"run {number} ended {state}\n{client.describe_run(DAG_ID, run_id)}\n{cluster.component_logs(lines=25)}"
                )
                runs.append({"run_id": run_id, "names": names,
                             "tis": client.task_instances(DAG_ID, run_id),
                             "chunks": client.xcom(DAG_ID, run_id, "transform_and_plan")})
            yield {"stack": stack, "store": store, "runs": runs, "cluster": cluster}
        finally:
            cluster.stop()


@pytest.mark.timeout(1200)
def test_catalog_import_lands_exactly_with_no_shared_disk(no_shared_disk):
    stack, store = no_shared_disk["stack"], no_shared_disk["store"]
    first = no_shared_disk["runs"][0]
    imported = {(item.get("metadata") or {}).get("SKU"): item["name"] for item in stack.threekit.items()}
    assert imported == first["names"], "Threekit products differ from the uploaded catalog"
    archive = Path(stack.ftp.root) / "archive" / "catalog"
    assert len([p for p in archive.rglob("*") if p.is_file()]) == len(list((stack.work_dir / "catalog-1").iterdir()))

    # The tasks ran where the policy sent them: every hand-off crossed from one worker to the other.
    queues = {}
    for ti in first["tis"]:
        if ti["state"] == "success":
            queues.setdefault(ti["task_id"], set()).add(ti["queue"])
    assert queues["collect_files"] == {"node_a"} and queues["transform_and_plan"] == {"node_b"}
    assert queues["import_chunk"] == {"node_a"} and queues["finalize"] == {"node_b"}
    assert len(first["chunks"]) == 3, first["chunks"]

    # The files crossed through the store; the staging folder this test sees got none of them.
    run_folder = store / DAG_ID / sanitize_run_id(first["run_id"])
    stored = sorted(p.relative_to(run_folder).as_posix() for p in run_folder.rglob("*") if p.is_file())
    assert [name for name in stored if name.endswith(".result.json")] == [
        f"chunks/chunk_000{n}.result.json" for n in (1, 2, 3)
    ], stored
    assert any(name.startswith("downloads/") for name in stored) and "plan.json" in stored
    assert not [name for name in stored if ".part-" in name], "a temporary upload was left behind"
    local = Path(stack.staging_dir)
    assert not list(local.rglob(f"*{sanitize_run_id(first['run_id'])}*")), "a worker wrote to the shared disk"


@pytest.mark.timeout(1200)
def test_a_resend_of_the_same_files_sends_nothing(no_shared_disk):
    stack = no_shared_disk["stack"]
    first, second = no_shared_disk["runs"]
    assert second["names"] == first["names"]
    assert second["chunks"] == [], "the PostgreSQL ledger should have made every product unchanged"
    imported = {(item.get("metadata") or {}).get("SKU"): item["name"] for item in stack.threekit.items()}
    assert imported == first["names"]
