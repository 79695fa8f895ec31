"""Four feeds over FTP, FTPS and SFTP, each DAG run end to end.

The feeds file declares two catalog feeds -- an ERP on plain FTP (the FTP sandbox, the
``canonical`` mapping) and a PIM on SFTP (a real OpenSSH server with throwaway keys: key
login, host key checked against a known_hosts file; the ``sap_de`` mapping) -- and two
deliveries, a catalog export and a render export, each to an FTPS partner (a second FTP
sandbox with TLS) and an SFTP partner (the same sshd, password login, known_hosts). Every
DAG runs with ``dag.test()`` against the Threekit sandbox; the files land where the feeds
file says.
"""

from __future__ import annotations

import csv
import json
import os
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _dag_runs import load_dag, put_ftp_file, run_dag, running_stack, seed_products
from threekit_pipeline.samples.catalog import generate_catalog
from threekit_pipeline.sandbox import real_servers

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("airflow_db"),
    pytest.mark.skipif(not real_servers.available(), reason="sshd needs root and apt-get"),
]

REPO = Path(__file__).resolve().parents[2]
SAP_SAMPLES = REPO / "include" / "mappings" / "samples" / "sap_de"
VARIABLE = {"batch_size": 10, "sensor_timeout_seconds": 20}


@pytest.fixture(scope="module")
def sshd():
    server = real_servers.SshdServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ftps(tmp_path):
    from threekit_pipeline.sandbox.ftp_process import FtpSandboxProcess

    server = FtpSandboxProcess(root=tmp_path / "ftps" / "root", user="retailer", password=os.urandom(8).hex(),
                               tls=True, log_file=tmp_path / "ftps" / "ftps.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _feeds(sshd) -> str:
    root = str(sshd.root)
    return textwrap.dedent(f"""
        version: 1
        defaults:
          retries: 1
        inbound:
          - id: erp
            kind: catalog
            folder: /erp/in
            mapping: canonical
          - id: pim
            kind: catalog
            transfer: pim_sftp
            folder: {root}/pim/materials
            archive: {root}/pim/archive
            quarantine: {root}/pim/rejected
            reports: {root}/pim/reports
            mapping: sap_de
        outbound:
          - id: partner_catalog
            kind: catalog
            schedule: null
            destinations:
              - {{transfer: retailer_ftps, folder: /catalog}}
              - {{transfer: printer_sftp, folder: {root}/printer/catalog}}
          - id: partner_renders
            kind: renders
            schedule: null
            options: {{render_tags: [featured]}}
            destinations:
              - {{transfer: retailer_ftps, folder: /renders}}
              - {{transfer: printer_sftp, folder: {root}/printer/renders}}
    """)


def _files_under(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _sap_skus() -> set[str]:
    with open(SAP_SAMPLES / "Materialstamm_20261123.csv", newline="", encoding="cp1252") as handle:
        return {row["Materialnummer"] for row in csv.DictReader(handle, delimiter=";")}


def test_ftp_and_sftp_catalog_feeds_and_ftps_and_sftp_deliveries_run_end_to_end(
    tmp_path, monkeypatch, sshd, ftps
):
    feeds_file = tmp_path / "feeds.yaml"
    feeds_file.write_text(_feeds(sshd))
    monkeypatch.setenv("THREEKIT_FEEDS_FILE", str(feeds_file))
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line + "\n")
    # The PIM logs in with its key, the printer with a password; both verify the host key.
    monkeypatch.setenv("AIRFLOW_CONN_PIM_SFTP", json.dumps({
        "conn_type": "sftp", "host": sshd.host, "port": sshd.port, "login": sshd.user,
        "extra": {"key_file": str(sshd.user_key), "known_hosts": str(known_hosts), "conn_timeout": 20}}))
    monkeypatch.setenv("AIRFLOW_CONN_PRINTER_SFTP", json.dumps({
        "conn_type": "sftp", "host": sshd.host, "port": sshd.port, "login": sshd.user, "password": sshd.password,
        "extra": {"known_hosts": str(known_hosts), "conn_timeout": 20}}))
    monkeypatch.setenv("AIRFLOW_CONN_RETAILER_FTPS", json.dumps({
        "conn_type": "ftps", "host": ftps.host, "port": ftps.port, "login": ftps.user, "password": ftps.password,
        "extra": {"ca_file": str(ftps.cafile)}}))
    day = datetime(2026, 11, 23, 10, tzinfo=UTC)

    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        from _dag_runs import DAGS_FILE
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(DAGS_FILE), safe_mode=False)
        assert not bag.import_errors, bag.import_errors
        assert set(bag.dags) == {"threekit_catalog_import__erp", "threekit_catalog_import__pim",
                                 "threekit_catalog_export__partner_catalog", "threekit_renders_export__partner_renders"}

        stack.threekit.add_pricebooks([{"name": "endkunden-de", "currencies": ["EUR", "CHF"]},
                                       {"name": "fachhandel-de", "currencies": ["EUR", "CHF"]}])
        # ERP over plain FTP, canonical mapping.
        erp_files = generate_catalog(tmp_path / "erp", products=5, stamp="20261123", seed=1, locales=())
        for path in erp_files.values():
            put_ftp_file(stack, f"/erp/in/{path.name}", path.read_bytes())
        state, tasks = run_dag(load_dag("threekit_catalog_import__erp", retry_delay_s=0.2), logical_date=day)
        assert state == "success" and tasks["all_accepted"] == ["success"], tasks
        erp_skus = {(i.get("metadata") or {}).get("SKU") for i in stack.threekit.items()}
        assert len(erp_skus) == 5

        # PIM over SFTP (real sshd, key login, known_hosts), sap_de mapping; archived on the SFTP server.
        for path in sorted(SAP_SAMPLES.iterdir()):
            sshd.seed(f"pim/materials/{path.name}", path.read_bytes())
        state, tasks = run_dag(load_dag("threekit_catalog_import__pim", retry_delay_s=0.2), logical_date=day)
        assert state == "success" and tasks["all_accepted"] == ["success"], tasks
        skus = {(i.get("metadata") or {}).get("SKU") for i in stack.threekit.items()}
        assert skus == erp_skus | _sap_skus()
        assert _files_under(sshd.root / "pim" / "materials") == {}
        archived = _files_under(sshd.root / "pim" / "archive" / "catalog")
        assert archived == {f"2026/11/23/{p.name}": p.read_bytes() for p in SAP_SAMPLES.iterdir()}
        assert any(name.endswith(".json") for name in _files_under(sshd.root / "pim" / "reports"))

        # Catalog export to the FTPS retailer and the SFTP printer: the same files land on both.
        state, tasks = run_dag(load_dag("threekit_catalog_export__partner_catalog", retry_delay_s=0.2), logical_date=day)
        assert state == "success", tasks
        on_ftps = _files_under(ftps.root / "catalog")
        on_sftp = _files_under(sshd.root / "printer" / "catalog")
        assert on_ftps and on_ftps == on_sftp, (sorted(on_ftps), sorted(on_sftp))
        assert {name.rsplit(".", 1)[-1] for name in on_ftps} >= {"json", "csv"}
        exported = next(data for name, data in on_ftps.items() if name.endswith(".csv"))
        assert all(sku.encode() in exported for sku in _sap_skus())

        # Render export to both partners.
        seed_products(stack, [{"sku": "SOFA-1", "name": "Oslo Sofa", "tags": ["featured"]},
                              {"sku": "CHAIR-2", "name": "Bergen Chair", "tags": ["featured"]}])
        stack.threekit.render_stand_in(tags=["featured"])
        state, tasks = run_dag(load_dag("threekit_renders_export__partner_renders", retry_delay_s=0.2), logical_date=day)
        assert state == "success", tasks
        assert tasks["deliver_renders"] == ["success", "success"], tasks
        renders_ftps = _files_under(ftps.root / "renders")
        renders_sftp = _files_under(sshd.root / "printer" / "renders")
        assert renders_ftps and renders_ftps == renders_sftp, (sorted(renders_ftps), sorted(renders_sftp))
        manifest = next(name for name in renders_ftps if name.startswith("manifest_"))
        rows = list(csv.DictReader(renders_ftps[manifest].decode().splitlines()))
        assert {row["sku"] for row in rows} == {"SOFA-1", "CHAIR-2"}
        assert all(row["file"] in renders_sftp for row in rows)
