"""Helpers for the end-to-end DAG tests of the export, translations and source-asset DAGs.

Each test starts a :class:`LocalStack` (real Threekit and FTP sandboxes on loopback), points
Airflow at it through ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*`` and runs a DAG with ``dag.test()``
(tasks in-process, deferrable sensors' triggers run inline, SQLite metadata DB).
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from threekit_pipeline.devtools.stack import THREEKIT_CONN_ENV, LocalStack
from threekit_pipeline.threekit.client import ThreekitClient

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAGS_FILE = DAGS / "threekit_feeds.py"

# Sensor timings small enough for tests; the rest stays at the documented defaults.
FAST_VARIABLE: dict[str, Any] = {
    "poke_interval_seconds": 0.5,
    "stable_seconds": 1,
    "sensor_timeout_seconds": 8,
    "job_deadline_seconds": 30,
}


@contextmanager
def running_stack(
    work_dir: Path, variable: dict[str, Any] | None = None, **stack_kwargs: Any
) -> Iterator[LocalStack]:
    """A started :class:`LocalStack` whose connections and Variable are in ``os.environ``.

    The Threekit connection gets a short retry budget so an outage fails a task attempt in
    seconds (Airflow's task retries then take over).
    """
    with LocalStack(work_dir, **stack_kwargs) as stack:
        stack.apply_env({**FAST_VARIABLE, **(variable or {})})
        connection = json.loads(os.environ[THREEKIT_CONN_ENV])
        connection["extra"].update({"max_retries": 2, "max_retry_time": 2})
        os.environ[THREEKIT_CONN_ENV] = json.dumps(connection)
        yield stack


def set_variable(stack: LocalStack, variable: dict[str, Any]) -> None:
    """Replace the ``threekit_pipeline`` Variable (keeps the fast sensor timings)."""
    stack.apply_env({**FAST_VARIABLE, **variable})
    connection = json.loads(os.environ[THREEKIT_CONN_ENV])
    connection["extra"].update({"max_retries": 2, "max_retry_time": 2})
    os.environ[THREEKIT_CONN_ENV] = json.dumps(connection)


def threekit_client(stack: LocalStack) -> ThreekitClient:
    return ThreekitClient(stack.threekit.base_url, stack.threekit.token, stack.org_id, max_retry_time=20)


# Param defaults of each loaded DAG, captured before any run: in-process runs write a run's
# conf into the DAG's Param objects (``ParamsDict.update`` resolves them in place), so without
# resetting, one run's ``dry_run=True`` would leak into the next run of the same DAG object.
_PARAM_DEFAULTS: dict[int, dict[str, Any]] = {}


def load_dag(dag_id: str, *, retry_delay_s: float = 0.5):
    """The DAG ``dag_id`` built from the feeds file by ``dags/threekit_feeds.py``, with task
    retries that wait ``retry_delay_s`` only."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FILE), safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[dag_id]
    for task in dag.tasks:
        task.retry_delay = timedelta(seconds=retry_delay_s)
        task.retry_exponential_backoff = 0
    _PARAM_DEFAULTS[id(dag)] = copy.deepcopy(dag.params.dump())
    return dag


def run_dag(
    dag, *, logical_date=None, conf: dict[str, Any] | None = None
) -> tuple[str, dict[str, list[str]]]:
    """``dag.test()``; returns the run state and each task's instance states (mapped: one per index).

    Params not given in ``conf`` take the DAG's defaults (see ``_PARAM_DEFAULTS``).
    """
    kwargs: dict[str, Any] = {"run_conf": {**_PARAM_DEFAULTS.get(id(dag), {}), **(conf or {})}}
    if logical_date is not None:
        kwargs["logical_date"] = logical_date
    dag_run = dag.test(**kwargs)
    states: dict[str, list[str]] = {}
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag.dag_id, DagRun.run_id == dag_run.run_id).one()
        for ti in sorted(run.get_task_instances(session=session), key=lambda t: (t.task_id, t.map_index)):
            states.setdefault(ti.task_id, []).append(str(getattr(ti.state, "value", ti.state)))
        return str(getattr(run.state, "value", run.state)), states


def ftp_files(stack: LocalStack, folder: str) -> dict[str, tuple[int, int, int]]:
    """Every file under an FTP folder, from the sandbox's disk: relative path -> (size, mtime_ns, inode).

    An atomic upload replaces the inode, so an unchanged inode proves a file was not re-uploaded.
    """
    base = Path(stack.ftp.root) / folder.strip("/")
    if not base.exists():
        return {}
    found = {}
    for path in sorted(base.rglob("*")):
        if path.is_file():
            info = path.stat()
            found[path.relative_to(base).as_posix()] = (info.st_size, info.st_mtime_ns, info.st_ino)
    return found


def put_ftp_file(stack: LocalStack, remote: str, data: bytes) -> Path:
    """Place a file in the FTP sandbox's tree directly (as a finished upload would)."""
    path = Path(stack.ftp.root) / remote.strip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def request_count(stack: LocalStack, route: str) -> int:
    """How many times the Threekit sandbox served ``route`` (e.g. ``"POST /api/files"``)."""
    return int(stack.threekit.stats()["requests"].get(route, 0))


def seed_products(stack: LocalStack, products: list[dict[str, Any]]) -> list[dict]:
    """Create catalog items through the client's synchronous import (upsert by SKU)."""
    entries = []
    for product in products:
        product = copy.deepcopy(product)
        sku = product.pop("sku")
        metadata = [{"name": "SKU", "defaultValue": sku, "type": "String"}, *product.pop("metadata", [])]
        entries.append(
            {
                "query": {"metadata": [{"name": "SKU", "defaultValue": sku, "type": "String"}]},
                "product": {"type": "item", "metadata": metadata, **product},
            }
        )
    with threekit_client(stack) as client:
        # Pricing values carry pricebook ids: names given here are resolved like the pipeline does.
        books = {b["name"]: b["id"] for b in client.list_pricebooks()}
        for entry in entries:
            for attribute in entry["product"].get("attributes") or []:
                if attribute.get("type") == "Pricing":
                    for value in attribute.get("values") or []:
                        value["pricebook"] = books.get(value["pricebook"], value["pricebook"])
        return client.import_products_sync(entries)


class GrowingUpload:
    """A second client still uploading ``path``: appends ``line`` (``{n}`` = counter) every 0.2 s.

    Use as a context manager around a DAG run; the file grows until the block ends.
    """

    def __init__(self, path: Path, start: bytes, line: bytes) -> None:
        self.path = path
        self.line = line
        self.stop = threading.Event()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(start)
        self.thread = threading.Thread(target=self._grow, daemon=True)

    def _grow(self) -> None:
        counter = 0
        while not self.stop.wait(0.2):
            counter += 1
            with open(self.path, "ab") as handle:
                handle.write(self.line.replace(b"{n}", str(counter).encode()))

    def __enter__(self) -> GrowingUpload:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join()


def _latest_tis(dag_id: str, task_id: str) -> list[Any]:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        tis = (
            session.query(TaskInstance)
            .filter(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run.run_id,
                TaskInstance.task_id == task_id,
            )
            .order_by(TaskInstance.map_index)
            .all()
        )
        session.expunge_all()
        return tis


def map_labels(dag_id: str, task_id: str) -> list[str | None]:
    """Rendered map index labels (``map_index_template``) of a mapped task in the DAG's latest run."""
    return [ti.rendered_map_index for ti in _latest_tis(dag_id, task_id)]


def try_numbers(dag_id: str, task_id: str) -> list[int]:
    """How many attempts each instance of a task took in the DAG's latest run."""
    return [ti.try_number for ti in _latest_tis(dag_id, task_id)]
