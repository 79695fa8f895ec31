"""Feed notifications through SmtpNotifier, received by a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import email
import json
import socket
from email import policy
from unittest import mock

import pytest
from aiosmtpd.controller import Controller
from threekit_pipeline.notifications import (
    QuarantineNotice,
    Recipient,
    RunFailedNotifier,
    notify_quarantined,
    notify_quarantined_files,
)

SENDER = "pipelines@example.test"


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server():
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port(), ready_timeout=30)
    controller.start()  # returns once the server accepts connections
    conn = json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": controller.port,
                       "extra": {"disable_tls": True, "disable_ssl": True, "from_email": SENDER, "timeout": 20,
                                 "retry_limit": 0}})
    try:
        with mock.patch.dict("os.environ", AIRFLOW_CONN_SMTP_DEFAULT=conn):
            yield inbox
    finally:
        controller.stop()


def test_a_quarantined_file_sends_one_email_with_the_errors_csv_to_the_feeds_recipients(smtp_server, tmp_path):
    errors_csv = tmp_path / "products_20261130.errors.csv"
    errors_csv.write_text("row,column,reason\n3,price,not a number: 'abc'\n")
    reasons = [f"row {n}: price is not a number" for n in range(3, 18)] + ["<script>alert(1)</script>"]
    notice = QuarantineNotice(feed="erp_catalog", file_name="products_20261130.csv",
                              quarantine_path="/quarantine/products_20261130.csv", reasons=reasons,
                              errors_csv=errors_csv)
    recipients = ["data-team@example.test",
                  {"email": "erp-partner@example.test", "patterns": ["products_*.csv"]},
                  {"email": "pim-partner@example.test", "patterns": ["pim_*"]}]

    sent = notify_quarantined(notice, recipients)

    assert sent == ["data-team@example.test", "erp-partner@example.test"]
    [(rcpt, message)] = smtp_server.messages  # one email, to both
    assert sorted(rcpt) == sent  # the PIM partner is not told about the ERP's file
    assert message["Subject"] == "[erp_catalog] products_20261130.csv was quarantined"
    assert message["From"] == SENDER
    body = message.get_body(("html",)).get_content()
    assert "row 3: price is not a number" in body and "row 12: price is not a number" in body
    assert "row 13:" not in body and "6 more" in body  # the first ten reasons, then a pointer
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "products_20261130.errors.csv"
    assert attachment.get_content().replace(b"\r\n", b"\n") == errors_csv.read_bytes()


def test_nobody_matching_means_no_email(smtp_server):
    notice = QuarantineNotice(feed="pim", file_name="other.csv", quarantine_path="/q/other.csv", reasons=["x"])
    assert notify_quarantined(notice, [Recipient("p@example.test", ("pim_*",))]) == []
    assert smtp_server.messages == []


def test_partner_file_names_are_escaped_and_not_rendered_as_templates(smtp_server):
    notice = QuarantineNotice(feed="erp", file_name="{{ var.value.secret }}<b>.csv", quarantine_path="/q/x",
                              reasons=["{{ conn.smtp_default.password }}"])
    notify_quarantined(notice, ["ops@example.test"])
    [(_, message)] = smtp_server.messages
    body = message.get_body(("html",)).get_content()
    assert "{{ var.value.secret }}&lt;b&gt;.csv" in body and "{{ conn.smtp_default.password }}" in body


def test_a_failed_run_emails_catch_all_recipients_only(smtp_server):
    notifier = RunFailedNotifier("erp_catalog", ["ops@example.test", {"email": "partner@example.test",
                                                                      "patterns": ["products_*"]}])
    ti = mock.Mock(dag_id="threekit_catalog_import__erp", task_id="import_catalog", run_id="scheduled__1",
                   try_number=3)
    notifier({"ti": ti, "run_id": "scheduled__1", "exception": RuntimeError("Threekit answered 503")})
    [(rcpt, message)] = smtp_server.messages
    assert rcpt == ["ops@example.test"]
    assert message["Subject"] == "[erp_catalog] run scheduled__1 of threekit_catalog_import__erp failed"
    body = message.get_body(("html",)).get_content()
    assert "import_catalog" in body and "after 3 attempt(s)" in body and "Threekit answered 503" in body


def test_an_unreachable_mail_server_does_not_fail_the_quarantine(tmp_path, caplog):
    conn = json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": _free_port(),
                       "extra": {"disable_tls": True, "disable_ssl": True, "from_email": SENDER, "timeout": 5,
                                 "retry_limit": 0}})
    notice = QuarantineNotice(feed="erp", file_name="a.csv", quarantine_path="/q/a.csv", reasons=["bad"])
    with mock.patch.dict("os.environ", AIRFLOW_CONN_SMTP_DEFAULT=conn):
        assert notify_quarantined(notice, ["ops@example.test"]) == []
    assert any("Could not email ops@example.test" in r.getMessage() for r in caplog.records)


def test_each_quarantined_file_of_a_run_is_mailed_once_to_those_who_want_it(smtp_server, tmp_path):
    staged = {}
    for name in ("prices_20261130.csv", "products_20261130.csv"):
        staged[name] = tmp_path / f"{name}.errors.csv"
        staged[name].write_text(f"stage,file,line,column,value,reason\ntransform,{name},2,price,lots,not a number\n")
    quarantined = [{"file": name, "quarantine_path": f"/rejected/catalog/{name}", "errors_csv": str(path),
                    "reasons": ["line 2, price='lots': not a number"], "total_errors": 1}
                   for name, path in staged.items()]
    recipients = ["ops@example.test", {"email": "prices@partner.example", "patterns": ["prices_*"]}]
    markers = tmp_path / "notified"

    sent = notify_quarantined_files("erp", recipients, quarantined, marker_dir=markers)

    assert sent == {"prices_20261130.csv": ["ops@example.test", "prices@partner.example"],
                    "products_20261130.csv": ["ops@example.test"]}
    by_subject = {m["Subject"]: (sorted(rcpt), m) for rcpt, m in smtp_server.messages}
    assert sorted(by_subject) == ["[erp] prices_20261130.csv was quarantined",
                                  "[erp] products_20261130.csv was quarantined"]
    rcpt, message = by_subject["[erp] products_20261130.csv was quarantined"]
    assert rcpt == ["ops@example.test"]  # the prices partner hears of its own files only
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content().replace(b"\r\n", b"\n") == staged["products_20261130.csv"].read_bytes()
    assert "line 2, price=&#x27;lots&#x27;: not a number" in message.get_body(("html",)).get_content()

    # A retried task: nothing is mailed twice.
    assert notify_quarantined_files("erp", recipients, quarantined, marker_dir=markers) == {}
    assert len(smtp_server.messages) == 2


def test_a_failed_send_is_tried_again_by_the_next_attempt(tmp_path):
    entry = {"file": "a.csv", "quarantine_path": "/q/a.csv", "errors_csv": "", "reasons": ["bad"]}
    dead = json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": _free_port(),
                       "extra": {"disable_tls": True, "disable_ssl": True, "from_email": SENDER, "timeout": 5,
                                 "retry_limit": 0}})
    with mock.patch.dict("os.environ", AIRFLOW_CONN_SMTP_DEFAULT=dead):
        assert notify_quarantined_files("erp", ["ops@example.test"], [entry], marker_dir=tmp_path) == {}
    assert list(tmp_path.iterdir()) == []  # no marker: the next attempt mails it
