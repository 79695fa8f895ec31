"""Object-storage staging: a catalog import with staging on SFTP beside the same import on local staging.

Both runs go through the catalog import's own task logic (collect -> transform and plan ->
one import task per chunk -> finalize's reading of every chunk's result), each step ending like
a DAG task does (:func:`~threekit_pipeline.pipelines.runtime.finish_staging`), with the ledgers
in PostgreSQL (a database per run). The baseline stages on the local disk; the measured run stages on a
real OpenSSH server on loopback (``sftp://``), so every hand-off is written to and read back
from the store. Each run gets its own fresh Threekit sandbox, so both create every product.
Needs root (the sshd) and the loopback PostgreSQL.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from threekit_pipeline.bench._catalog import catalog_and_sandbox
from threekit_pipeline.bench._measure import ratio

ORG = "2d8f6a13-5c7e-4b9a-9e1f-3a6c8b0d2e47"
STAGING_CONN = "bench_object_staging"
LEDGER_CONN = "bench_object_staging_ledger"
ORDER = ("local", "object", "object", "local")
#: Staging through the store may cost at most this much more time than staging on the local disk.
TARGET_RATIO = 1.5


def _import(run_id: str, values: dict, files: dict[str, Path], client) -> tuple[float, dict]:
    from threekit_pipeline.pipelines import catalog_import
    from threekit_pipeline.pipelines.config import load_config
    from threekit_pipeline.pipelines.runtime import TaskEnv, finish_staging

    def env() -> TaskEnv:
        return TaskEnv(dag_id=catalog_import.DAG_ID, run_id=run_id, config=load_config(values),
                       logical_date=datetime.now(UTC))

    start = time.perf_counter()
    first = env()
    local = first.run_dir("inputs", fresh=True)
    copies = []
    for path in files.values():
        copy = local / path.name
        copy.write_bytes(path.read_bytes())
        copies.append(copy)
    collected = catalog_import.collected_from_local(first, copies)
    finish_staging()
    planned = catalog_import.transform_and_plan(env(), collected, pricebooks=client.list_pricebooks())
    finish_staging()
    confirmed = rejected = 0
    for chunk in planned["chunks"]:
        result = catalog_import.import_chunk(env(), chunk, client)
        finish_staging()
        confirmed += result["confirmed"]
        rejected += result["rejected"]
    last = env()
    results = [json.loads(catalog_import.chunk_result_path(last.staged(c)).read_text()) for c in planned["chunks"]]
    finish_staging()
    elapsed = time.perf_counter() - start
    if rejected or confirmed != planned["to_send"] or len(results) != len(planned["chunks"]):
        raise RuntimeError(f"object staging bench: {rejected} rejected, {confirmed} of {planned['to_send']} confirmed")
    return elapsed, {"chunks": len(planned["chunks"]), "confirmed": confirmed}


def run(work_dir: Path, products: int = 20_000) -> dict:
    from threekit_pipeline.devtools.cluster import (
        DEFAULT_POSTGRES_ADMIN_DSN,
        drop_postgres_database,
        reset_postgres_database,
    )
    from threekit_pipeline.sandbox import real_servers

    admin = os.environ.get("THREEKIT_TEST_POSTGRES_ADMIN_DSN", DEFAULT_POSTGRES_ADMIN_DSN)
    names = [f"AIRFLOW_CONN_{conn.upper()}" for conn in (STAGING_CONN, LEDGER_CONN)]
    saved = {name: os.environ.get(name) for name in names}
    seconds: dict[str, list[float]] = {"local": [], "object": []}
    try:
        with tempfile.TemporaryDirectory(dir=work_dir) as tmp, real_servers.SshdServer() as sshd:
            tmp_path = Path(tmp)
            known_hosts = tmp_path / "known_hosts"
            known_hosts.write_text(sshd.known_hosts_line + "\n")
            os.environ[f"AIRFLOW_CONN_{STAGING_CONN.upper()}"] = json.dumps({
                "conn_type": "sftp", "host": sshd.host, "port": sshd.port, "login": sshd.user,
                "extra": {"key_file": str(sshd.user_key), "known_hosts": str(known_hosts)}})
            for number, mode in enumerate(ORDER, start=1):
                database = f"bench_object_staging_{uuid.uuid4().hex[:8]}"
                reset_postgres_database(admin, database)
                os.environ[f"AIRFLOW_CONN_{LEDGER_CONN.upper()}"] = (
                    admin.rsplit("/", 1)[0].replace("postgresql://", "postgres://") + f"/{database}")
                values = {"batch_size": 1000, "ledger_conn_id": LEDGER_CONN,
                          "staging_dir": str(tmp_path / f"staging-{number}")}
                if mode == "object":
                    store = sshd.mkdir(f"store-{number}")
                    values.update({"staging_url": f"sftp://{store}", "staging_conn_id": STAGING_CONN})
                try:
                    with catalog_and_sandbox(tmp_path / f"run-{number}", products, ORG) as (files, _server, client):
                        elapsed, staged = _import(f"bench_{number}", values, files, client)
                finally:
                    drop_postgres_database(admin, database)
                seconds[mode].append(elapsed)
                if mode == "object":
                    stored_bytes = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    local_s, object_s = min(seconds["local"]), min(seconds["object"])
    return {
        "products": products,
        "chunks": staged["chunks"],
        "local_staging_s": round(local_s, 3),
        "object_staging_s": round(object_s, 3),
        "ratio": ratio(object_s, local_s),
        "all_runs_s": {mode: [round(v, 3) for v in values] for mode, values in seconds.items()},
        "stored_mib": round(stored_bytes / 2**20, 2),
        "target": f"object-storage staging takes <= {TARGET_RATIO}x the local-staging time",
        "met": ratio(object_s, local_s) <= TARGET_RATIO,
    }
