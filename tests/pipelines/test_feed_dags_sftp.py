"""Four feeds over FTP, FTPS and SFTP, each DAG run end to end.

The feeds file declares two catalog feeds -- an ERP on plain FTP (the FTP sandbox, the
``canonical`` mapping) and a PIM on SFTP (a real OpenSSH server with throwaway keys: key
login, host key checked against a known_hosts file; the ``sap_de`` mapping) -- and two
deliveries, a catalog export and a render export, each to an FTPS partner (a second FTP
sandbox with TLS) and an SFTP partner (the same sshd, password login, known_hosts); the
renders also go to the plain FTP server, in a folder named like the FTPS partner's. Every
DAG runs with ``dag.test()`` against the Threekit sandbox; the files land where the feeds
file says. A quarantined PIM file is moved on the SFTP server and mailed (errors CSV attached)
to the feed's recipients who want it, received by a real SMTP server on loopback (aiosmtpd).
"""

from __future__ import annotations

import csv
import email
import html
import json
import os
import socket
import textwrap
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest
from _dag_runs import load_dag, put_ftp_file, run_dag, running_stack, seed_products
from aiosmtpd.controller import Controller
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


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((sorted(envelope.rcpt_tos),
                              email.message_from_bytes(envelope.original_content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def inbox(monkeypatch):
    box = _Inbox()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port, ready_timeout=30)
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": controller.port,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "pipelines@example.test", "timeout": 20,
                  "retry_limit": 0}}))
    try:
        yield box
    finally:
        controller.stop()


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
            notify:
              - ops@example.test
              - {{email: prices@sap-partner.example, patterns: ["Konditionen_*"]}}
              - {{email: bom@sap-partner.example, patterns: ["Stueckliste_*"]}}
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
              - {{transfer: ftp_default, folder: /renders}}  # the same folder name as the retailer's
    """)


def _files_under(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _sap_skus() -> set[str]:
    with open(SAP_SAMPLES / "Materialstamm_20261123.csv", newline="", encoding="cp1252") as handle:
        return {row["Materialnummer"] for row in csv.DictReader(handle, delimiter=";")}


def test_ftp_and_sftp_catalog_feeds_and_ftps_and_sftp_deliveries_run_end_to_end(
    tmp_path, monkeypatch, sshd, ftps, inbox
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

        assert inbox.messages == []  # everything accepted: nobody is mailed

        # A price list the PIM got wrong: quarantined on the SFTP server, with its errors CSV beside it,
        # and mailed to the ops address and the partner owning price lists (not the BOM partner).
        konditionen = (SAP_SAMPLES / "Konditionen_20261123.csv").read_text(encoding="cp1252").splitlines()
        broken = [konditionen[0]] + [";".join([*line.split(";")[:-1], "viel"]) for line in konditionen[1:]]
        sshd.seed("pim/materials/Konditionen_20261124.csv", ("\r\n".join(broken) + "\r\n").encode("cp1252"))
        sshd.seed("pim/materials/Materialstamm_20261124.csv",
                  (SAP_SAMPLES / "Materialstamm_20261123.csv").read_bytes())
        state, tasks = run_dag(load_dag("threekit_catalog_import__pim", retry_delay_s=0.2),
                               logical_date=datetime(2026, 11, 24, 10, tzinfo=UTC))
        assert state == "success" and tasks["all_accepted"] == ["skipped"], tasks
        rejected = sshd.root / "pim" / "rejected" / "catalog"
        assert sorted(_files_under(rejected)) == ["Konditionen_20261124.csv", "Konditionen_20261124.csv.errors.csv"]
        by_subject = {m["Subject"]: (rcpt, m) for rcpt, m in inbox.messages}
        assert len(inbox.messages) == 2, sorted(by_subject)
        rcpt, notice = by_subject.pop("[pim] Konditionen_20261124.csv was quarantined")
        assert rcpt == ["ops@example.test", "prices@sap-partner.example"]
        [attachment] = list(notice.iter_attachments())
        assert attachment.get_content() == (rejected / "Konditionen_20261124.csv.errors.csv").read_bytes()
        with open(rejected / "Konditionen_20261124.csv.errors.csv", newline="", encoding="utf-8") as handle:
            reasons = [row["reason"] for row in csv.DictReader(handle)]
        body = notice.get_body(("html",)).get_content()
        assert reasons and all(html.escape(reason) in body for reason in reasons[:3]), body
        assert sshd.password not in notice.as_string()
        [(rcpt, partial)] = by_subject.values()
        assert rcpt == ["ops@example.test"] and partial["Subject"].startswith("[pim] partial run ")

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
        assert tasks["deliver_renders"] == ["success", "success", "success"], tasks
        renders_ftps = _files_under(ftps.root / "renders")
        renders_sftp = _files_under(sshd.root / "printer" / "renders")
        assert renders_ftps and renders_ftps == renders_sftp, (sorted(renders_ftps), sorted(renders_sftp))
        assert _files_under(Path(stack.ftp.root) / "renders") == renders_ftps
        manifest = next(name for name in renders_ftps if name.startswith("manifest_"))
        rows = list(csv.DictReader(renders_ftps[manifest].decode().splitlines()))
        assert {row["sku"] for row in rows} == {"SOFA-1", "CHAIR-2"}
        assert all(row["file"] in renders_sftp for row in rows)


def test_an_agency_uploading_source_files_over_sftp_hears_of_its_quarantined_file(
    tmp_path, monkeypatch, sshd, inbox
):
    root = sshd.root / f"agency-{os.urandom(3).hex()}"
    feeds_file = tmp_path / "feeds.yaml"
    feeds_file.write_text(textwrap.dedent(f"""
        version: 1
        defaults: {{retries: 1}}
        inbound:
          - id: agency
            kind: source_assets
            transfer: agency_sftp
            folder: {root}/upload
            archive: {root}/archive
            quarantine: {root}/rejected
            reports: {root}/reports
            notify: [ops@example.test, {{email: studio@agency.example, patterns: ["*.xyz", "*.glb"]}},
                     {{email: textures@agency.example, patterns: ["*.png"]}}]
    """))
    monkeypatch.setenv("THREEKIT_FEEDS_FILE", str(feeds_file))
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line + "\n")
    monkeypatch.setenv("AIRFLOW_CONN_AGENCY_SFTP", json.dumps({
        "conn_type": "sftp", "host": sshd.host, "port": sshd.port, "login": sshd.user,
        "extra": {"key_file": str(sshd.user_key), "known_hosts": str(known_hosts), "conn_timeout": 20}}))
    relative = root.relative_to(sshd.root).as_posix()
    sshd.seed(f"{relative}/upload/chair_20261123.glb", b"glTF\x02\x00\x00\x00" + bytes(range(256)) * 8)
    sshd.seed(f"{relative}/upload/notes_20261123.xyz", b"not a model")

    with running_stack(tmp_path / "stack", VARIABLE):
        state, tasks = run_dag(load_dag("threekit_source_assets_import__agency", retry_delay_s=0.2),
                               logical_date=datetime(2026, 11, 23, 10, tzinfo=UTC))

    assert state == "success" and tasks["all_accepted"] == ["skipped"], tasks
    assert sorted(_files_under(root / "archive")) == ["assets/2026/11/23/chair_20261123.glb"]
    rejected = root / "rejected" / "assets"
    assert sorted(_files_under(rejected)) == ["notes_20261123.xyz", "notes_20261123.xyz.errors.csv"]
    by_subject = {m["Subject"]: (rcpt, m) for rcpt, m in inbox.messages}
    assert len(inbox.messages) == 2, sorted(by_subject)
    rcpt, notice = by_subject.pop("[agency] notes_20261123.xyz was quarantined")
    assert rcpt == ["ops@example.test", "studio@agency.example"]  # not the texture team
    [attachment] = list(notice.iter_attachments())
    assert attachment.get_filename() == "notes_20261123.xyz.errors.csv"
    assert attachment.get_content() == (rejected / "notes_20261123.xyz.errors.csv").read_bytes()
    with open(rejected / "notes_20261123.xyz.errors.csv", newline="", encoding="utf-8") as handle:
        [row] = list(csv.DictReader(handle))
    assert html.escape(row["reason"]) in notice.get_body(("html",)).get_content()
    [(rcpt, partial)] = by_subject.values()
    assert rcpt == ["ops@example.test"] and partial["Subject"].startswith("[agency] partial run ")
