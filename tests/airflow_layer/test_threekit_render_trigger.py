"""ThreekitRenderJobsTrigger: serialisation, completion and the deadline (fake Threekit client)."""

from __future__ import annotations

import asyncio
import time

from threekit_pipeline.airflow.triggers import threekit_render
from threekit_pipeline.airflow.triggers.threekit_render import ThreekitRenderJobsTrigger


class _FakeClient:
    """Job ``done`` stops (successfully) after two polls, ``bad`` fails at once, ``stuck`` never stops."""

    def __init__(self) -> None:
        self.polls: dict[str, int] = {}
        self.closed = False

    def get_job(self, job_id: str) -> dict:
        self.polls[job_id] = self.polls.get(job_id, 0) + 1
        if job_id == "bad":
            return {"status": "stopped", "taskResultFailures": 1}
        if job_id == "done" and self.polls[job_id] >= 2:
            return {"status": "stopped", "taskResultFailures": 0}
        return {"status": "running"}

    def close(self) -> None:
        self.closed = True


def _events(trigger: ThreekitRenderJobsTrigger) -> list[dict]:
    async def collect():
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def test_serialises_to_its_own_arguments():
    trigger = ThreekitRenderJobsTrigger(threekit_conn_id="tk", job_ids=["a"], poll_interval=2, deadline=5.0)
    path, kwargs = trigger.serialize()
    assert path == "threekit_pipeline.airflow.triggers.threekit_render.ThreekitRenderJobsTrigger"
    assert ThreekitRenderJobsTrigger(**kwargs).serialize() == (path, kwargs)


def test_reports_each_job_and_times_out_the_stuck_one(monkeypatch):
    client = _FakeClient()

    async def fake_client(conn_id):
        return client

    monkeypatch.setattr(threekit_render, "_client", fake_client)
    trigger = ThreekitRenderJobsTrigger(
        threekit_conn_id="tk", job_ids=["done", "bad", "stuck"], poll_interval=0.05, deadline=time.time() + 1.0
    )
    (event,) = _events(trigger)
    assert event["status"] == "done"
    assert event["jobs"] == {"done": "succeeded", "bad": "failed", "stuck": "timeout"}
    assert client.polls["bad"] == 1 and client.polls["done"] == 2  # finished jobs are not polled again
    assert client.closed


def test_ends_as_soon_as_every_job_stopped(monkeypatch):
    client = _FakeClient()

    async def fake_client(conn_id):
        return client

    monkeypatch.setattr(threekit_render, "_client", fake_client)
    trigger = ThreekitRenderJobsTrigger(threekit_conn_id="tk", job_ids=["done"], poll_interval=0.05,
                                        deadline=time.time() + 60)
    started = time.monotonic()
    (event,) = _events(trigger)
    assert event["jobs"] == {"done": "succeeded"} and time.monotonic() - started < 30
