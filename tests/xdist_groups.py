"""Keep ``xdist_group`` marks working under ``pytest -n N --dist loadgroup`` with pytest 9.2.

``make test`` runs ``pytest -n 2 --dist loadgroup``: tests marked ``xdist_group(name)`` must share
one worker (the UI module's tests build on each other's runs; the Airflow deployments of the
"airflow_cluster" group must not run at once). pytest-xdist 3.8 tags such tests by rewriting
``Item._nodeid`` on the worker, but pytest 9.2 reads node ids from its structured ``Item._id``,
so the tag is lost and the groups are silently spread over the workers as with plain
``--dist load`` (pytest-dev/pytest-xdist#1386). :func:`pytest_collection_modifyitems` applies the
tag where pytest 9.2 reads it, and stops the run (usage error) if a later pytest ignores it too.
Imported by ``tests/conftest.py``.
"""

from __future__ import annotations

import pytest


def _xdist_group_name(item: pytest.Item) -> str | None:
    names = {
        str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        for mark in item.iter_markers("xdist_group")
    }
    return "_".join(sorted(names)) if names else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a ``--dist loadgroup`` worker: node id ``<id>@<group>`` for every grouped test."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        group = _xdist_group_name(item)
        if group is None or item.nodeid.endswith(f"@{group}"):
            continue
        try:
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(f"{item.nodeid}@{group}")
        except (ImportError, AttributeError) as exc:
            raise pytest.UsageError(f"cannot tag {item.nodeid} with its xdist group: {exc}") from None
        if not item.nodeid.endswith(f"@{group}"):
            raise pytest.UsageError(
                f"{item.nodeid}: its xdist group {group!r} would be ignored by --dist loadgroup"
            )
