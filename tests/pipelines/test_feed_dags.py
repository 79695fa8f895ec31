"""DAGs generated from a feeds file: one DAG per feed, each with its own configuration at run time.

A feeds file with two catalog feeds (an ERP with the ``canonical`` mapping, a PIM on another
connection and folder with the ``sap_de`` mapping) yields two DAGs; the PIM's run, against the
FTP and Threekit sandboxes, reads its own folder over its own connection with its own mapping.
A broken feeds file is the DAG file's import error, naming file, feed and key. A partial run
and a failed run mail the feed's recipients (real SMTP server on loopback, aiosmtpd).
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
from _dag_runs import DAGS_FILE, ftp_files, load_dag, put_ftp_file, run_dag, running_stack
from aiosmtpd.controller import Controller
from threekit_pipeline.devtools.stack import FTP_CONN_ENV, THREEKIT_CONN_ENV
from threekit_pipeline.samples.catalog import generate_catalog

REPO = Path(__file__).resolve().parents[2]
SAP_SAMPLES = REPO / "include" / "mappings" / "samples" / "sap_de"
VARIABLE = {"batch_size": 10, "sensor_timeout_seconds": 3}
SENDER = "pipelines@example.test"

FEEDS = """
version: 1
defaults:
  owner: data-platform
  retries: 1
inbound:
  - id: erp
    kind: catalog
    description: Product master from the ERP.
    folder: /erp/in
    mapping: canonical
    notify: [ops@example.test, {email: erp-partner@example.test, patterns: ["prices_*"]}]
  - id: pim
    kind: catalog
    description: Material master from the PIM (SAP export).
    owner: pim-team
    tags: [pim]
    transfer: pim_ftp
    folder: /pim/materials
    archive: /pim/archive
    reports: /pim/reports
    mapping: sap_de
    schedule: "15 2 * * *"
outbound:
  - id: retail
    kind: catalog
    on_catalog_change: true
    schedule: null
    destinations: [{transfer: pim_ftp, folder: /retail/catalog}]
"""


def _write_feeds(tmp_path: Path, text: str = FEEDS) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def feeds_file(tmp_path, monkeypatch) -> Path:
    path = _write_feeds(tmp_path)
    monkeypatch.setenv("THREEKIT_FEEDS_FILE", str(path))
    return path


def _bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FILE), safe_mode=False)


def test_two_catalog_feeds_are_two_dags_with_their_own_ids_tags_owners_and_docs(feeds_file):
    bag = _bag()
    assert not bag.import_errors, bag.import_errors
    assert set(bag.dags) == {"threekit_catalog_import__erp", "threekit_catalog_import__pim",
                             "threekit_catalog_export__retail"}
    erp, pim = bag.dags["threekit_catalog_import__erp"], bag.dags["threekit_catalog_import__pim"]
    assert erp.tags == {"threekit", "catalog", "inbound", "ftp", "erp"}
    assert pim.tags == {"threekit", "catalog", "inbound", "ftp", "pim"}
    assert {t.owner for t in erp.tasks} == {"data-platform"} and {t.owner for t in pim.tasks} == {"pim-team"}
    assert erp.description == "Hourly on the hour (UTC): Product master from the ERP."
    assert pim.description == "Daily 02:15 UTC: Material master from the PIM (SAP export)."
    assert "`pim_ftp`" in pim.doc_md and "`/pim/materials`" in pim.doc_md and "mapping `sap_de`" in pim.doc_md
    assert "`ftp_default`" in erp.doc_md and "mapping `canonical`" in erp.doc_md
    # Same flow, same task ids as the default catalog import.
    assert {t.task_id for t in erp.tasks} == {t.task_id for t in pim.tasks} >= {
        "plan_run", "wait_for_files", "collect_files", "transform_and_plan", "import_chunk", "finalize",
        "publish_catalog", "restore_returning", "retire_missing", "all_accepted"}
    retail = bag.dags["threekit_catalog_export__retail"]
    assert retail.description.startswith("After each catalog import")
    # Only the ERP feed notifies: its tasks carry the failure callback, the PIM's do not.
    assert all(t.on_failure_callback for t in erp.tasks)
    assert not any(t.on_failure_callback for t in pim.tasks)


def test_a_broken_feeds_file_is_an_import_error_naming_file_feed_and_key(tmp_path, monkeypatch):
    broken = FEEDS.replace("    schedule: \"15 2 * * *\"", "    schedule: \"15 2 * * *\"\n    options: {stable_seconds: -5}")
    path = _write_feeds(tmp_path, broken)
    monkeypatch.setenv("THREEKIT_FEEDS_FILE", str(path))
    bag = _bag()
    assert bag.dags == {}
    [(file, message)] = bag.import_errors.items()
    assert Path(file) == DAGS_FILE
    assert (f"{path}: inbound feed 'pim' (inbound[1]): options.stable_seconds: "
            "Input should be greater than or equal to 0") in message


def test_an_unknown_kind_of_delivery_is_an_import_error_too(tmp_path, monkeypatch):
    path = _write_feeds(tmp_path, FEEDS.replace("kind: catalog\n    on_catalog_change", "kind: archive_copy\n"
                                                "    on_catalog_change"))
    monkeypatch.setenv("THREEKIT_FEEDS_FILE", str(path))
    [message] = _bag().import_errors.values()
    assert f"{path}: outbound feed 'retail' (outbound[0]): kind: 'archive_copy' has no DAG factory" in message


def _sap_skus() -> set[str]:
    with open(SAP_SAMPLES / "Materialstamm_20261123.csv", newline="", encoding="cp1252") as handle:
        return {row["Materialnummer"] for row in csv.DictReader(handle, delimiter=";")}


def _skus(stack) -> set[str]:
    return {(item.get("metadata") or {}).get("SKU") for item in stack.threekit.items()}


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.usefixtures("airflow_db")
def test_the_second_catalog_feed_imports_its_own_folder_over_its_own_connection_with_its_own_mapping(
    tmp_path, feeds_file, monkeypatch
):
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        # The PIM's connection reaches the FTP sandbox; ftp_default (the ERP's) leads nowhere.
        monkeypatch.setenv("AIRFLOW_CONN_PIM_FTP", os.environ[FTP_CONN_ENV])
        dead = json.loads(os.environ[FTP_CONN_ENV])
        dead["port"] = _dead_port()
        os.environ[FTP_CONN_ENV] = json.dumps(dead)
        stack.threekit.add_pricebooks([{"name": "endkunden-de", "currencies": ["EUR", "CHF"]},
                                       {"name": "fachhandel-de", "currencies": ["EUR", "CHF"]}])
        for path in sorted(SAP_SAMPLES.iterdir()):
            put_ftp_file(stack, f"/pim/materials/{path.name}", path.read_bytes())
        erp_files = generate_catalog(tmp_path / "erp", products=5, stamp="20261123", seed=1, locales=())
        for path in erp_files.values():
            put_ftp_file(stack, f"/erp/in/{path.name}", path.read_bytes())

        dag = load_dag("threekit_catalog_import__pim", retry_delay_s=0.2)
        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 23, 2, 15, tzinfo=UTC))

        assert state == "success", tasks
        assert tasks["all_accepted"] == ["success"], tasks
        assert _skus(stack) == _sap_skus()  # the sap_de mapping read the German export
        assert ftp_files(stack, "/pim/materials") == {}
        assert sorted(ftp_files(stack, "/pim/archive/catalog")) == sorted(
            f"2026/11/23/{p.name}" for p in SAP_SAMPLES.iterdir())
        assert [name for name in ftp_files(stack, "/pim/reports/catalog_import") if name.endswith(".json")]
        # The ERP's folder is untouched, nothing went to the shared default folders.
        assert sorted(ftp_files(stack, "/erp/in")) == sorted(p.name for p in erp_files.values())
        assert ftp_files(stack, "/archive") == {} and ftp_files(stack, "/reports") == {}


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((list(envelope.rcpt_tos),
                              email.message_from_bytes(envelope.original_content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def inbox(monkeypatch):
    box = _Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=_dead_port(), ready_timeout=30)
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": controller.port,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": SENDER, "timeout": 20, "retry_limit": 0}}))
    try:
        yield box
    finally:
        controller.stop()


def _rewrite_prices(path: Path) -> None:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames, [{**row, "price": "lots"} for row in reader]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.slow
@pytest.mark.usefixtures("airflow_db")
def test_a_partial_run_and_a_failed_run_mail_the_feeds_recipients(tmp_path, feeds_file, inbox):
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        files = generate_catalog(tmp_path / "erp", products=10, stamp="20261123", seed=2, locales=())
        _rewrite_prices(files["prices"])  # every price is text: the prices file is quarantined
        for path in files.values():
            put_ftp_file(stack, f"/erp/in/{path.name}", path.read_bytes())
        dag = load_dag("threekit_catalog_import__erp", retry_delay_s=0.2)

        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 23, 10, tzinfo=UTC))

        assert state == "success" and tasks["all_accepted"] == ["skipped"], tasks
        assert len(inbox.messages) == 2, [m["Subject"] for _, m in inbox.messages]
        by_subject = {m["Subject"]: (sorted(rcpt), m) for rcpt, m in inbox.messages}
        # One mail about the quarantined file, to the ops address and the partner (the prices file is theirs),
        # with the errors CSV the quarantine folder holds attached and its first reasons in the body.
        rcpt, notice = by_subject.pop(f"[erp] {files['prices'].name} was quarantined")
        assert rcpt == ["erp-partner@example.test", "ops@example.test"]
        quarantined_csv = Path(stack.ftp.root) / "rejected" / "catalog" / f"{files['prices'].name}.errors.csv"
        [attachment] = list(notice.iter_attachments())
        assert attachment.get_filename() == quarantined_csv.name
        assert attachment.get_content() == quarantined_csv.read_bytes()
        with open(quarantined_csv, newline="", encoding="utf-8") as handle:
            first_reasons = [row["reason"] for row in csv.DictReader(handle)][:3]
        body = notice.get_body(("html",)).get_content()
        assert first_reasons and all(html.escape(reason) in body for reason in first_reasons), body
        assert "/rejected/catalog/" in body and "password" not in body.lower()
        # The partial-run mail goes to the catch-all address only: the partner already heard of its file.
        [(subject, (rcpt, message))] = by_subject.items()
        assert rcpt == ["ops@example.test"]
        assert subject.startswith("[erp] partial run ") and "threekit_catalog_import__erp" in subject
        body = message.get_body(("html",)).get_content()
        assert "Partial success" in body and files["prices"].name in body

        # Threekit unreachable: the run fails after its retries and the catch-all recipient is told.
        inbox.messages.clear()
        broken = json.loads(os.environ[THREEKIT_CONN_ENV])
        broken["host"] = f"http://127.0.0.1:{_dead_port()}"
        os.environ[THREEKIT_CONN_ENV] = json.dumps(broken)
        put_ftp_file(stack, "/erp/in/" + files["products"].name.replace("20261123", "20261124"),
                     files["products"].read_bytes())

        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 24, 10, tzinfo=UTC))

        assert state == "failed", tasks
        assert inbox.messages, "no failure mail"
        assert all(rcpt == ["ops@example.test"] for rcpt, _ in inbox.messages)
        subjects = {m["Subject"] for _, m in inbox.messages}
        assert all(s.startswith("[erp] run ") and s.endswith(" of threekit_catalog_import__erp failed")
                   for s in subjects), subjects


TRANSLATION_FEEDS = """
version: 1
defaults:
  retries: 1
inbound:
  - id: regions
    kind: translations
    folder: /regions/in
    notify: [ops@example.test, {email: fr-team@example.test, patterns: ["fr_*"]},
             {email: de-team@example.test, patterns: ["de_*"]}]
"""


@pytest.mark.slow
@pytest.mark.usefixtures("airflow_db")
def test_a_quarantined_translation_file_is_mailed_once_to_its_regional_team(tmp_path, monkeypatch, inbox):
    monkeypatch.setenv("THREEKIT_FEEDS_FILE", str(_write_feeds(tmp_path, TRANSLATION_FEEDS)))
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        put_ftp_file(stack, "/regions/in/de_20261123.csv", b'"Canonical Name","de"\n"Oslo Sofa","Sofa Oslo"\n')
        put_ftp_file(stack, "/regions/in/fr_20261123.csv", b'"Name","fr"\n"Oslo Sofa","Canape Oslo"\n')
        dag = load_dag("threekit_translations_import__regions", retry_delay_s=0.2)

        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 23, 10, tzinfo=UTC))

        assert state == "success" and tasks["all_accepted"] == ["skipped"], tasks
        quarantined_csv = Path(stack.ftp.root) / "rejected" / "translations" / "fr_20261123.csv.errors.csv"
        by_subject = {m["Subject"]: (sorted(rcpt), m) for rcpt, m in inbox.messages}
        assert len(inbox.messages) == 2, sorted(by_subject)
        # The French team hears of its file (the German team does not), with the CSV from the quarantine folder.
        rcpt, notice = by_subject.pop("[regions] fr_20261123.csv was quarantined")
        assert rcpt == ["fr-team@example.test", "ops@example.test"]
        [attachment] = list(notice.iter_attachments())
        assert attachment.get_filename() == quarantined_csv.name
        assert attachment.get_content() == quarantined_csv.read_bytes()
        with open(quarantined_csv, newline="", encoding="utf-8") as handle:
            first_reason = next(csv.DictReader(handle))["reason"]
        assert html.escape(first_reason) in notice.get_body(("html",)).get_content()
        [(subject, (rcpt, _))] = by_subject.items()
        assert subject.startswith("[regions] partial run ") and rcpt == ["ops@example.test"]
        assert sorted(ftp_files(stack, "/archive/translations")) == ["2026/11/23/de_20261123.csv"]
