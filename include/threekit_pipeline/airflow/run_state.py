"""The last task of each import DAG, ``all_accepted``: its state tells a partial run at a glance.

It succeeds (green) when nothing was rejected and ends **skipped** (pink) when rows, Threekit
entries or whole files were rejected, with the counts in its log. The run itself stays successful:
a rejected row is a data defect for an analyst, not an outage to alert on or retry. (A failed
task would turn the run red, page whoever is on call and invite a useless retry; a skipped leaf
leaves the run green but paints the run's column in the grid with a second colour.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class PartialRun(Exception):
    """Something was rejected (the DAG task turns it into a skip)."""


def check_all_accepted(result: Mapping[str, Any] | None) -> str:
    """The summary line when nothing was rejected; raises :class:`PartialRun` otherwise."""
    summary = (result or {}).get("summary") if isinstance(result, Mapping) else None
    if not isinstance(summary, Mapping):
        return "no run summary (nothing was processed)"
    if summary.get("partial"):
        raise PartialRun(
            f"Partial success: {summary.get('rejected', 0):,} rejected{summary.get('rejected_detail', '')}. "
            f"{summary.get('line', '')}"
        )
    return str(summary.get("line", ""))


def all_accepted_task(result: Mapping[str, Any] | None, on_partial: Callable[[str], Any] | None = None) -> str:
    """Body of the DAGs' ``all_accepted`` task; ``on_partial(message)`` runs before a partial run's skip."""
    import logging

    from airflow.sdk.exceptions import AirflowSkipException

    try:
        line = check_all_accepted(result)
    except PartialRun as exc:
        if on_partial is not None:
            on_partial(str(exc))
        raise AirflowSkipException(str(exc)) from None
    logging.getLogger(__name__).info("All accepted: %s", line)
    return line


def effective_config_lines(config: Any) -> list[str]:
    """``key = value`` lines of the configuration in force (secrets masked), sorted by key."""
    import json
    from dataclasses import asdict, is_dataclass

    from threekit_pipeline.airflow.sync_view.data import mask_secrets

    data = mask_secrets(asdict(config) if is_dataclass(config) else dict(config))
    return [f"  {key} = {json.dumps(value, default=str)}" for key, value in sorted(data.items())]


def log_effective_config(env: Any) -> None:
    """Log, once per run (from the run's first task), the configuration the run works with."""
    import logging

    logging.getLogger(__name__).info(
        "Effective configuration (Variable %r merged over the defaults):\n%s",
        "threekit_pipeline",
        "\n".join(effective_config_lines(env.config)),
    )
