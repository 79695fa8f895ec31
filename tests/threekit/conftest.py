"""Fixtures of the Threekit client tests: sandboxes with chosen fault settings, clients, entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TOKEN = "tk-client-tests-6c1d9e2a-77f0-4b3c-a5e8-19d2f0c4b7aa"
ORG_ID = "5a0c2e4b-1d3f-4e6a-8b9c-0d1e2f3a4b5c"


@pytest.fixture
def sandbox_factory(tmp_path):
    """Start threekit-sandboxes with given options; all are stopped at teardown (also on failure)."""
    from threekit_pipeline.sandbox.threekit_process import ThreekitSandboxProcess

    started = []

    def start(**options) -> ThreekitSandboxProcess:
        options.setdefault("job_delay_ms", 50)
        proc = ThreekitSandboxProcess(
            data_dir=tmp_path / f"threekit-{len(started)}", token=TOKEN, org_id=ORG_ID, **options
        )
        started.append(proc)
        proc.start()
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture
def sandbox(sandbox_factory):
    """A fault-free sandbox with short job delays."""
    return sandbox_factory()


@pytest.fixture
def make_client():
    """Build clients with test-friendly retry settings; all are closed at teardown."""
    from threekit_pipeline.threekit.client import ThreekitClient

    clients = []

    def build(proc, **options) -> ThreekitClient:
        options.setdefault("backoff_base", 0.05)
        options.setdefault("backoff_max", 2.0)
        options.setdefault("max_retry_time", 20.0)
        options.setdefault("timeout", (5, 30))
        token = options.pop("token", proc.token)
        org_id = options.pop("org_id", proc.org_id)
        client = ThreekitClient(proc.base_url, token, org_id, **options)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


def _make_entry(number: int, *, valid: bool = True, name: str | None = None) -> dict:
    """An import entry keyed by SKU; an invalid one has a non-numeric Number default."""
    sku = f"SKU-{number:04d}"
    return {
        "query": {"metadata": {"SKU": sku}},
        "product": {
            "name": name or f"Chair {number}",
            "type": "item",
            "description": f"Test chair number {number}",
            "tags": ["chairs", f"group-{number % 3}"],
            "metadata": [{"name": "SKU", "defaultValue": sku, "type": "String"}],
            "attributes": [
                {"type": "Number", "name": "Height", "defaultValue": 80 if valid else "tall"},
                {"type": "String", "name": "Color", "values": ["red", "blue"], "defaultValue": "red"},
            ],
        },
    }


def _write_jsonl(path: Path, entries: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    return path


@pytest.fixture
def make_entry():
    """``make_entry(n, valid=True)``: an import entry keyed by SKU ``SKU-000n``."""
    return _make_entry


@pytest.fixture
def write_jsonl():
    """``write_jsonl(path, entries)``: write entries one per line; returns the path."""
    return _write_jsonl
