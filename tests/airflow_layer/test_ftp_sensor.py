"""FtpCompleteFilesSensor and FtpCompleteFilesTrigger against real FTP sandboxes.

Files are written straight into the sandbox root (what the server serves) or uploaded
through a second FTP session, slowly, to play a partner whose upload is in progress.
"""

from __future__ import annotations

import asyncio
import ftplib
import json
import logging
import threading
import time
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred
from threekit_pipeline.airflow.sensors.ftp import FtpCompleteFilesSensor
from threekit_pipeline.airflow.triggers.ftp import FtpCompleteFilesTrigger

CHUNK = b"x" * 65536  # above the server's write buffer, so the file grows on disk chunk by chunk


class _SlowSource:
    """A file-like object that hands out ``chunks`` chunks, pausing between them."""

    def __init__(self, chunks: int, pause: float):
        self.remaining = chunks
        self.pause = pause
        self.started = False

    def read(self, _size: int = -1) -> bytes:
        if self.remaining == 0:
            return b""
        if self.started:
            time.sleep(self.pause)
        self.started = True
        self.remaining -= 1
        return CHUNK


def _slow_upload(server, remote: str, chunks: int, pause: float, done: threading.Event) -> threading.Thread:
    def upload() -> None:
        ftp = ftplib.FTP()
        ftp.connect(server.host, server.port, timeout=30)
        ftp.login(server.user, server.password)
        try:
            ftp.storbinary(f"STOR {remote}", _SlowSource(chunks, pause), blocksize=len(CHUNK))
        finally:
            done.set()
            ftp.quit()

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    return thread


def _sensor(**kwargs) -> FtpCompleteFilesSensor:
    defaults = dict(
        task_id="wait_for_files", path="/inbound", patterns=["*.csv"], poke_interval=0.2, timeout=30
    )
    return FtpCompleteFilesSensor(**{**defaults, **kwargs})


@pytest.fixture
def inbound(ftp_conn):
    folder = ftp_conn.root / "inbound"
    folder.mkdir()
    return folder


def test_sensor_waits_for_a_file_still_being_uploaded(ftp_conn, inbound):
    done = threading.Event()
    chunks = 10
    uploader = _slow_upload(ftp_conn, "/inbound/items.csv", chunks=chunks, pause=0.25, done=done)
    try:
        # Let the upload start so that the sensor sees a partial file on its first polls.
        deadline = time.monotonic() + 10
        while not (inbound / "items.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        sensor = _sensor(deferrable=False, mode="poke", stable_seconds=1.5)
        files = sensor.execute(context={})
        assert done.is_set(), "the sensor fired while the upload was still running"
        assert [f["name"] for f in files] == ["items.csv"]
        assert files[0]["size"] == chunks * len(CHUNK) == (inbound / "items.csv").stat().st_size
        assert files[0]["path"] == "/inbound/items.csv"
        assert files[0]["modified"]
    finally:
        uploader.join(timeout=30)


def test_sensor_ignores_other_patterns_and_temporary_names(ftp_conn, inbound):
    (inbound / "notes.txt").write_bytes(b"not for us")
    (inbound / "items.csv.part").write_bytes(b"partial")
    sensor = _sensor(deferrable=False, mode="poke", stable_seconds=0.3, timeout=1.5)
    with pytest.raises(AirflowSkipException):
        sensor.execute(context={})
    (inbound / "items.csv").write_bytes(b"sku\nA-1\n")
    files = _sensor(deferrable=False, mode="poke", stable_seconds=0.3).execute(context={})
    assert [f["name"] for f in files] == ["items.csv"]


def test_marker_mode_fires_on_the_marker_only(ftp_conn, inbound):
    (inbound / "items.csv").write_bytes(b"sku\nA-1\n")
    sensor = _sensor(deferrable=False, mode="poke", marker_suffixes=[".done", ".ok"], stable_seconds=0)
    assert sensor.poke(context={}).is_done is False
    (inbound / "items.csv.ok").write_bytes(b"")
    result = sensor.poke(context={})
    assert result.is_done is True
    assert [f["name"] for f in result.xcom_value] == ["items.csv"]


def test_reschedule_mode_checks_stability_within_one_poke_on_a_server_without_mlsd(tmp_path, ftp_conn_json):
    from threekit_pipeline.sandbox.ftp_process import FtpSandboxProcess

    server = FtpSandboxProcess(
        root=tmp_path / "nomlsd", user="erp", password="ftp-secret-nomlsd", no_mlsd=True
    )
    server.start()
    try:
        (server.root / "inbound").mkdir()
        (server.root / "inbound" / "prices.csv").write_bytes(b"sku;price\nA-1;10\n")
        with mock.patch.dict("os.environ", AIRFLOW_CONN_FTP_DEFAULT=ftp_conn_json(server)):
            sensor = _sensor(deferrable=False, stable_seconds=0.5)
            assert sensor.mode == "reschedule"
            result = sensor.poke(context={})
        assert result.is_done is True
        (record,) = result.xcom_value
        assert (record["path"], record["size"]) == ("/inbound/prices.csv", 17)
        assert record["modified"] is not None  # from MDTM, since MLSD is not offered
    finally:
        server.stop()


def test_sensor_is_skipped_with_a_useful_message_on_timeout(ftp_conn, inbound, caplog):
    (inbound / "items.csv").write_bytes(b"sku\n")
    sensor = _sensor(deferrable=False, mode="poke", marker_suffixes=[".done"], timeout=0.6)
    with caplog.at_level(logging.INFO), pytest.raises(AirflowSkipException) as skipped:
        sensor.execute(context={})
    message = str(skipped.value)
    assert "*.csv in /inbound on connection ftp_default" in message
    assert "still incomplete: items.csv" in message
    assert ftp_conn.password not in caplog.text


def test_deferrable_sensor_hands_its_snapshot_to_the_trigger(ftp_conn, inbound):
    (inbound / "items.csv").write_bytes(b"sku\nA-1\n")
    sensor = _sensor(stable_seconds=0.5, poke_interval=0.2, timeout=20)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    trigger = deferred.value.trigger
    assert isinstance(trigger, FtpCompleteFilesTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert "/inbound/items.csv" in trigger.snapshot
    assert trigger.deadline == pytest.approx(time.time() + 20, abs=5)

    event = asyncio.run(_first_event(trigger))
    assert event.payload["status"] == "success"
    files = sensor.execute_complete(context={}, event=event.payload)
    assert [(f["name"], f["size"]) for f in files] == [("items.csv", 8)]


def test_execute_complete_skips_on_timeout_and_fails_on_error():
    sensor = _sensor()
    with pytest.raises(AirflowSkipException, match="still incomplete: a.csv"):
        sensor.execute_complete(context={}, event={"status": "timeout", "pending": ["a.csv"], "waited_s": 5})
    with pytest.raises(Exception, match="cannot list /inbound"):
        sensor.execute_complete(context={}, event={"status": "error", "message": "cannot list /inbound: 550"})


def test_airflow_deferral_timeout_also_becomes_a_skip():
    # Backstop path: the triggerer never answered and Airflow's own deferral timeout fired.
    from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason

    with pytest.raises(AirflowSkipException, match=r"No complete file matching \*\.csv in /inbound"):
        _sensor().resume_execution(
            TRIGGER_FAIL_REPR, {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, context={}
        )
    # A trigger failure that is not a timeout still fails the task.
    with pytest.raises(Exception) as failed:
        _sensor().resume_execution(TRIGGER_FAIL_REPR, {"error": "Trigger crashed"}, context={})
    assert not isinstance(failed.value, AirflowSkipException)


async def _first_event(trigger):
    async for event in trigger.run():
        return event
    raise AssertionError("the trigger ended without an event")


def _trigger(**kwargs) -> FtpCompleteFilesTrigger:
    defaults = dict(
        ftp_conn_id="ftp_default", path="/inbound", patterns=["*.csv"], stable_seconds=0.4, poll_interval=0.1
    )
    return FtpCompleteFilesTrigger(**{**defaults, **kwargs})


def test_trigger_serialize_round_trips():
    from airflow.sdk._shared.module_loading import import_string

    trigger = _trigger(
        marker_suffixes=[".done"], deadline=1234.5, snapshot={"/inbound/a.csv": [1, None, 1.0]}
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "threekit_pipeline.airflow.triggers.ftp.FtpCompleteFilesTrigger"
    json.dumps(kwargs)  # trigger kwargs are stored in the metadata DB
    rebuilt = import_string(classpath)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)


def test_trigger_yields_success_only_once_the_file_is_stable(ftp_conn, inbound):
    (inbound / "items.csv").write_bytes(b"sku\nA-1\n")
    (inbound / "other.txt").write_bytes(b"-")
    event = asyncio.run(_first_event(_trigger(deadline=time.time() + 20)))
    assert event.payload["status"] == "success"
    assert [(f["path"], f["size"]) for f in event.payload["files"]] == [("/inbound/items.csv", 8)]


def test_trigger_marker_mode(ftp_conn, inbound):
    (inbound / "a.csv").write_bytes(b"1")
    (inbound / "b.csv").write_bytes(b"22")
    (inbound / "b.csv.done").write_bytes(b"")
    event = asyncio.run(_first_event(_trigger(marker_suffixes=[".done"], deadline=time.time() + 20)))
    assert [f["name"] for f in event.payload["files"]] == ["b.csv"]


def test_trigger_times_out_with_what_was_pending(ftp_conn, inbound):
    (inbound / "a.csv").write_bytes(b"1")
    event = asyncio.run(_first_event(_trigger(marker_suffixes=[".done"], deadline=time.time() + 0.5)))
    assert event.payload["status"] == "timeout"
    assert event.payload["pending"] == ["a.csv"]
    assert event.payload["path"] == "/inbound"


def test_trigger_reports_a_refused_login_at_once_without_the_password(ftp_sandbox, ftp_conn_json, caplog):
    wrong = "wrong-password-9876"
    value = json.loads(ftp_conn_json(ftp_sandbox))
    value["password"] = wrong
    with (
        caplog.at_level(logging.DEBUG),
        mock.patch.dict("os.environ", AIRFLOW_CONN_FTP_DEFAULT=json.dumps(value)),
    ):
        event = asyncio.run(_first_event(_trigger(deadline=time.time() + 30)))
    assert event.payload["status"] == "error"
    assert "cannot list /inbound" in event.payload["message"]
    assert wrong not in event.payload["message"]
    assert wrong not in caplog.text


def test_trigger_survives_a_server_restart(ftp_conn, inbound):
    (inbound / "items.csv").write_bytes(b"sku\nA-1\n")
    trigger = _trigger(
        stable_seconds=1.0, poll_interval=0.3, deadline=time.time() + 30, max_consecutive_errors=20
    )

    def bounce() -> None:
        time.sleep(0.3)
        ftp_conn.restart()

    bouncer = threading.Thread(target=bounce)
    bouncer.start()
    try:
        event = asyncio.run(_first_event(trigger))
    finally:
        bouncer.join()
    assert event.payload["status"] == "success"


def test_deferrable_sensor_in_a_dag_run_returns_files(ftp_conn, inbound, run_dag):
    (inbound / "items.csv").write_bytes(b"sku\nA-1\n")
    result = run_dag(
        """
        from threekit_pipeline.airflow.sensors.ftp import FtpCompleteFilesSensor
        FtpCompleteFilesSensor(
            task_id="wait_for_files", path="/inbound", patterns="*.csv", stable_seconds=0.5,
            poke_interval=0.2, timeout=30,
        )
        """
    )
    assert result.task_states == {"wait_for_files": "success"}
    (record,) = result.xcoms["wait_for_files"]["return_value"]
    assert (record["path"], record["size"]) == ("/inbound/items.csv", 8)


def test_deferrable_sensor_in_a_dag_run_is_skipped_on_timeout(ftp_conn, inbound, run_dag, caplog):
    caplog.set_level(logging.INFO)
    result = run_dag(
        """
        from threekit_pipeline.airflow.sensors.ftp import FtpCompleteFilesSensor
        FtpCompleteFilesSensor(
            task_id="wait_for_files", path="/inbound", patterns=["*.csv"], poke_interval=0.2, timeout=1,
        )
        """
    )
    assert result.task_states == {"wait_for_files": "skipped"}
    assert "No complete file matching *.csv in /inbound on connection ftp_default" in caplog.text
    assert ftp_conn.password not in caplog.text
