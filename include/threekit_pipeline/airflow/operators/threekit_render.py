"""Operator that waits for Threekit render jobs without holding a worker slot (deferrable)."""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import BaseOperator


class ThreekitRenderJobsOperator(BaseOperator):
    """Defers to :class:`~threekit_pipeline.airflow.triggers.threekit_render.ThreekitRenderJobsTrigger`.

    :param plan: the render plan summary (templated; an XCom): ``{"jobs": [job id], "poll_seconds",
        "timeout_seconds", "threekit_conn_id"}``. Without jobs it returns at once.

    Returns ``{job id: "succeeded" | "failed" | "timeout"}``. A job's failure does not fail
    this task: the collecting task names each failed item and configuration and still
    delivers the other images. Only losing Threekit altogether fails it.
    """

    template_fields = ("plan",)
    ui_color = "#e8e1f5"

    def __init__(self, *, plan: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan

    def execute(self, context: Any) -> dict[str, str]:
        from threekit_pipeline.airflow.triggers.threekit_render import ThreekitRenderJobsTrigger

        plan = self.plan or {}
        jobs = list(plan.get("jobs") or [])
        if not jobs:
            self.log.info("No render job to wait for")
            return {}
        self.log.info("Waiting for %d render job(s), at most %.0f s", len(jobs), plan["timeout_seconds"])
        self.defer(
            trigger=ThreekitRenderJobsTrigger(
                threekit_conn_id=plan["threekit_conn_id"],
                job_ids=jobs,
                poll_interval=float(plan["poll_seconds"]),
                deadline=time.time() + float(plan["timeout_seconds"]),
            ),
            method_name="execute_complete",
        )
        return {}

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, str]:
        from airflow.sdk.exceptions import AirflowException

        if not event or event.get("status") != "done":
            raise AirflowException((event or {}).get("message") or "render job wait ended without an answer")
        jobs = dict(event["jobs"])
        counts: dict[str, int] = {}
        for state in jobs.values():
            counts[state] = counts.get(state, 0) + 1
        self.log.info("Render jobs after %.1f s: %s", event.get("waited_s", 0), counts)
        return jobs
