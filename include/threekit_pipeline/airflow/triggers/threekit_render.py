"""Trigger that waits, in the triggerer, for Threekit render jobs to stop.

Each poll builds a client from the connection and asks ``GET /api/jobs/:id`` for every job
not finished yet, in a worker thread (``asyncio.to_thread``), so no worker slot is held while
renders run (minutes for V-Ray). It ends with one event::

    {"status": "done", "jobs": {job id: "succeeded" | "failed" | "timeout"}, "waited_s": float}

``timeout`` marks the jobs still running at the deadline. After ``max_consecutive_errors``
failed polls in a row the event is ``{"status": "error", "message"}``. No side effects: a
triggerer restart simply polls again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

log = logging.getLogger(__name__)


async def _client(conn_id: str) -> Any:
    """A ThreekitClient for the connection, read with the async connection API of the triggerer."""
    from airflow.sdk import BaseHook
    from airflow.sdk.log import amask_secret

    from threekit_pipeline.airflow.hooks.threekit import client_options, plain_extras, threekit_base_url
    from threekit_pipeline.threekit.client import ThreekitClient

    conn = await BaseHook.aget_connection(conn_id)
    if conn.password:
        await amask_secret(conn.password)
    extra = plain_extras(await conn.aextra_dejson())
    org_id = str(extra.get("org_id") or "").strip() or None
    return ThreekitClient(threekit_base_url(conn.host, conn.port, extra), conn.password, org_id, **client_options(extra))


def _poll(client: Any, job_ids: list[str]) -> dict[str, str]:
    from threekit_pipeline.threekit.renders import poll_jobs

    return poll_jobs(client, job_ids)


class ThreekitRenderJobsTrigger(BaseTrigger):
    """Polls render jobs until every one stopped or ``deadline`` (epoch seconds) passed.

    :param threekit_conn_id: ``threekit`` connection.
    :param job_ids: the render jobs to wait for.
    :param poll_interval: seconds between polls.
    :param deadline: epoch seconds; jobs still running then are reported ``timeout``.
    """

    def __init__(
        self,
        *,
        threekit_conn_id: str,
        job_ids: Sequence[str],
        poll_interval: float = 10.0,
        deadline: float,
        max_consecutive_errors: int = 5,
    ) -> None:
        super().__init__()
        self.threekit_conn_id = threekit_conn_id
        self.job_ids = list(job_ids)
        self.poll_interval = float(poll_interval)
        self.deadline = float(deadline)
        self.max_consecutive_errors = max(1, int(max_consecutive_errors))

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "threekit_conn_id": self.threekit_conn_id,
                "job_ids": list(self.job_ids),
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "max_consecutive_errors": self.max_consecutive_errors,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        started = time.time()
        try:
            client = await _client(self.threekit_conn_id)
        except Exception as exc:  # noqa: BLE001 - reported to the task
            yield TriggerEvent({"status": "error", "message": f"cannot reach Threekit ({self.threekit_conn_id}): {exc}"})
            return
        outcomes: dict[str, str] = dict.fromkeys(self.job_ids, "running")
        failures = 0
        try:
            while True:
                waiting = [job for job, state in outcomes.items() if state == "running"]
                try:
                    outcomes.update(await asyncio.to_thread(_poll, client, waiting))
                    failures = 0
                except Exception as exc:  # noqa: BLE001 - transient trouble: retried up to the limit
                    failures += 1
                    if failures >= self.max_consecutive_errors:
                        yield TriggerEvent(
                            {"status": "error", "message": f"polling render jobs failed {failures} times: {exc}"}
                        )
                        return
                    log.warning("polling render jobs failed (%d in a row): %s", failures, exc)
                waiting = [job for job, state in outcomes.items() if state == "running"]
                if not waiting or time.time() >= self.deadline:
                    for job in waiting:
                        outcomes[job] = "timeout"
                    yield TriggerEvent({"status": "done", "jobs": outcomes, "waited_s": round(time.time() - started, 3)})
                    return
                log.info("%d of %d render job(s) still running", len(waiting), len(outcomes))
                await asyncio.sleep(min(self.poll_interval, max(0.0, self.deadline - time.time())))
        finally:
            client.close()
