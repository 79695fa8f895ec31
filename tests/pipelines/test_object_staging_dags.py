"""The export, render and source-asset DAGs with staging on object storage (``dag.test()``).

Staging is a folder of a real OpenSSH server reached through ``sftp://``; the ledgers are in
PostgreSQL. Every task ends by writing its staged files back to the store and deleting its
scratch copy, so each task of a run starts from the store alone, as on a worker sharing no disk.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _dag_runs import ftp_files, load_dag, put_ftp_file, request_count, run_dag, running_stack, seed_products
from _postgres import throwaway_database
from threekit_pipeline.pipelines.staging import SCRATCH_FOLDER

pytestmark = pytest.mark.usefixtures("airflow_db")

DAY = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
CONN_ID = "threekit_staging_dags"


@pytest.fixture
def object_staging(sshd, tmp_path, monkeypatch):
    """Variable keys putting staging on the SFTP server and the ledgers in PostgreSQL."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line + "\n")
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({
        "conn_type": "sftp", "host": sshd.host, "port": sshd.port, "login": sshd.user,
        "extra": {"key_file": str(sshd.user_key), "known_hosts": str(known_hosts)},
    }))
    store = sshd.mkdir(f"staging-{tmp_path.name}")
    with throwaway_database("staging_dags") as dsn:
        monkeypatch.setenv("AIRFLOW_CONN_THREEKIT_LEDGER_DAGS", dsn.replace("postgresql://", "postgres://"))
        yield store, {"staging_url": f"sftp://{store}", "staging_conn_id": CONN_ID,
                      "ledger_conn_id": "threekit_ledger_dags"}


def _stored(store: Path, dag_id: str) -> list[str]:
    return sorted(p.relative_to(store / dag_id).as_posix() for p in (store / dag_id).rglob("*") if p.is_file())


def _nothing_local(stack) -> None:
    """No run folder on the local disk, and no scratch copy left behind."""
    local = Path(stack.staging_dir)
    runs = [p for p in local.rglob("*") if p.is_dir() and p.name.startswith(("manual__", "scheduled__"))]
    runs = [p for p in runs if SCRATCH_FOLDER not in p.relative_to(local).parts]
    assert runs == [], runs
    scratch = local / SCRATCH_FOLDER
    assert not scratch.exists() or list(scratch.iterdir()) == []


def test_render_export_with_the_render_cache_in_the_store(tmp_path, object_staging):
    store, staging = object_staging
    destinations = ["/outbound/renders/dam", "/outbound/renders/partner"]
    with running_stack(tmp_path, {"render_tags": ["featured"], "render_destinations": destinations, **staging}) as stack:
        seed_products(stack, [{"sku": "SOFA-1", "name": "Oslo Sofa", "tags": ["featured"]},
                              {"sku": "CHAIR-2", "name": "Bergen Chair", "tags": ["featured"]}])
        stack.threekit.render_stand_in(tags=["featured"])
        dag = load_dag("threekit_render_export")

        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        first = {d: ftp_files(stack, d) for d in destinations}
        for files in first.values():
            assert "manifest_20261123.csv" in files and {n.split("/")[0] for n in files if "/" in n} == {
                "SOFA-1", "CHAIR-2"}
        # The images were cached in the store, not on a local disk.
        stored = _stored(store, dag.dag_id)
        assert len([n for n in stored if n.startswith("shared/renders/")]) == 2, stored
        _nothing_local(stack)
        downloads = request_count(stack, "GET /api/files/:id/content")

        # A re-run reads the cache from the store: no image is downloaded or uploaded again.
        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        assert {d: ftp_files(stack, d) for d in destinations} == first
        assert request_count(stack, "GET /api/files/:id/content") == downloads
        _nothing_local(stack)


def test_catalog_export_delivers_what_another_task_staged(tmp_path, object_staging):
    store, staging = object_staging
    with running_stack(tmp_path, {"export_types": ["item"], **staging}) as stack:
        seed_products(stack, [{"sku": "SOFA-1", "name": "Oslo Sofa"}, {"sku": "CHAIR-2", "name": "Bergen Chair"}])
        dag = load_dag("threekit_catalog_export")
        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        delivered = ftp_files(stack, "/outbound/catalog")
        assert set(delivered) == {"catalog_20261123.json", "catalog_20261123.csv"}
        staged = [n for n in _stored(store, dag.dag_id) if "/catalog/" in n]
        assert sorted(Path(n).name for n in staged) == ["catalog_20261123.csv", "catalog_20261123.json"]
        for name in staged:
            remote = Path(stack.ftp.root) / "outbound/catalog" / Path(name).name
            assert (store / dag.dag_id / name).read_bytes() == remote.read_bytes()
        _nothing_local(stack)

        # Re-run: the delivery ledger (PostgreSQL) knows both files; nothing is uploaded again.
        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        assert ftp_files(stack, "/outbound/catalog") == delivered


def test_source_asset_import_reports_from_the_store(tmp_path, object_staging):
    store, staging = object_staging
    with running_stack(tmp_path, {"stable_seconds": 1, **staging}) as stack:
        put_ftp_file(stack, "/inbound/assets/chair_20261123.glb", b"glTF\x02\x00\x00\x00" + bytes(range(256)) * 4)
        put_ftp_file(stack, "/inbound/assets/notes_20261123.xyz", b"not a model")
        dag = load_dag("threekit_source_assets_import")
        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 23, 10, tzinfo=UTC))
        assert state == "success", tasks
        assert set(ftp_files(stack, "/archive/assets")) == {"2026/11/23/chair_20261123.glb"}
        assert set(ftp_files(stack, "/rejected/assets")) >= {"notes_20261123.xyz"}
        reports = ftp_files(stack, "/reports/source_assets_import")
        assert any(name.endswith(".json") for name in reports), reports
        assert any("/report/" in n for n in _stored(store, dag.dag_id))
        _nothing_local(stack)
