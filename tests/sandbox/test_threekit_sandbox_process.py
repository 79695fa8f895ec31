"""threekit-sandbox as a process: restarts, job recovery, cancellation, faults, shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from threekit_pipeline.sandbox.threekit_process import ThreekitSandboxProcess

TOKEN = "tk-process-test-5d2f9c1e"
ORG = "6a1c2e3f-0000-4b5c-8d9e-0f1a2b3c4d5e"


@pytest.fixture
def make_sandbox(tmp_path):
    """Build sandboxes with custom options; every one is stopped at the end."""
    started: list[ThreekitSandboxProcess] = []

    def make(name: str = "tk", **options) -> ThreekitSandboxProcess:
        sandbox = ThreekitSandboxProcess(data_dir=tmp_path / name, token=TOKEN, org_id=ORG, **options)
        started.append(sandbox)
        return sandbox.start()

    yield make
    for sandbox in started:
        sandbox.stop()


def session() -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {TOKEN}"
    return s


def entry(sku: str, name: str = "Chair") -> dict:
    return {
        "query": {"metadata": {"sku": sku}},
        "product": {"name": name, "metadata": [{"name": "sku", "defaultValue": sku, "type": "String"}]},
    }


def start_job(s: requests.Session, base: str, entries: list[dict]) -> str:
    response = s.post(
        f"{base}/api/products/import",
        data={"sync": "false"},
        files={"file": ("items.json", json.dumps(entries), "application/json")},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["jobId"]


def wait_stopped(s: requests.Session, base: str, job_id: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = s.get(f"{base}/api/jobs/{job_id}", timeout=10).json()
        if job["status"] == "stopped":
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_state_survives_restart_and_a_pending_job_completes_after_it(make_sandbox):
    sandbox = make_sandbox(job_delay_ms=1500)
    s = session()
    created = s.post(f"{sandbox.base_url}/api/products/import", json={"files": [entry("A")]}, timeout=10)
    assert created.status_code == 200
    job_id = start_job(s, sandbox.base_url, [entry("B", "Bench"), entry("A", "Armchair")])
    port = sandbox.port

    sandbox.stop()
    assert sandbox.returncode == 0
    sandbox.start()
    assert sandbox.port == port

    assert s.get(f"{sandbox.base_url}/api/jobs/{job_id}", timeout=10).json()["status"] in (
        "pending",
        "running",
    )
    job = wait_stopped(s, sandbox.base_url, job_id)
    assert (job["taskResultSuccesses"], job["taskResultFailures"]) == (2, 0)
    items = {i["metadata"]["sku"]: i["name"] for i in sandbox.items()}
    assert items == {"A": "Armchair", "B": "Bench"}
    # Applied exactly once: still one run, and a restart later does not re-apply anything.
    assert (
        len(s.get(f"{sandbox.base_url}/api/jobs/runs", params={"jobId": job_id}, timeout=10).json()["runs"])
        == 1
    )
    sandbox.restart()
    assert len(sandbox.items()) == 2
    assert s.get(f"{sandbox.base_url}/api/jobs/{job_id}", timeout=10).json()["taskResultSuccesses"] == 2


def test_cancel_stops_a_pending_job_without_applying_it(make_sandbox):
    sandbox = make_sandbox(job_delay_ms=1000)
    s = session()
    job_id = start_job(s, sandbox.base_url, [entry("A"), entry("B")])
    cancelled = s.post(f"{sandbox.base_url}/api/jobs/{job_id}/cancel", timeout=10)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "stopped"
    [run] = s.get(f"{sandbox.base_url}/api/jobs/runs", params={"jobId": job_id}, timeout=10).json()["runs"]
    assert run["resultCode"] == "Cancelled"
    time.sleep(1.2)  # past the moment the job would have run
    assert sandbox.items() == []
    job = s.get(f"{sandbox.base_url}/api/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "stopped" and job["taskResultSuccesses"] == 0
    assert s.post(f"{sandbox.base_url}/api/jobs/unknown/cancel", timeout=10).status_code == 404


def test_fail_rate_with_seed_is_reproducible_and_has_no_effect(make_sandbox):
    statuses = []
    for name in ("one", "two"):
        sandbox = make_sandbox(name, fail_rate=0.3, seed=42)
        s = session()
        statuses.append([s.get(f"{sandbox.base_url}/api/assets", timeout=10).status_code for _ in range(120)])
    assert statuses[0] == statuses[1]
    failures = statuses[0].count(500)
    assert set(statuses[0]) == {200, 500}
    assert 0.18 * 120 <= failures <= 0.42 * 120

    sandbox.set_faults(fail_rate=1.0)
    s = session()
    failed = s.post(f"{sandbox.base_url}/api/products/import", json={"files": [entry("A")]}, timeout=10)
    assert failed.status_code == 500
    assert failed.json()["error"]["type"] == "server_error"
    sandbox.set_faults(fail_rate=0.0)
    assert sandbox.items() == []
    # Healthchecks and admin endpoints are never faulted.
    sandbox.set_faults(fail_rate=1.0)
    assert requests.get(f"{sandbox.base_url}/api/jobs/healthcheck", timeout=10).status_code == 200
    assert sandbox.stats()["items"] == 0


def test_rate_limit_answers_429_with_retry_after(make_sandbox):
    sandbox = make_sandbox(rate_limit=3)
    s = session()
    statuses = [s.get(f"{sandbox.base_url}/api/assets", timeout=10) for _ in range(10)]
    limited = [r for r in statuses if r.status_code == 429]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    assert limited, [r.status_code for r in statuses]
    retry_after = int(limited[0].headers["Retry-After"])
    assert retry_after >= 1
    assert limited[0].json()["error"]["type"] == "too_many_requests"
    time.sleep(retry_after)
    assert s.get(f"{sandbox.base_url}/api/assets", timeout=10).status_code == 200


def test_latency_delays_api_answers(make_sandbox):
    sandbox = make_sandbox(latency_ms=300)
    s = session()
    started = time.monotonic()
    assert s.get(f"{sandbox.base_url}/api/assets", timeout=10).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_dropped_connections_fail_on_the_client_and_change_nothing(make_sandbox):
    sandbox = make_sandbox(drop_rate=1.0)
    s = session()
    with pytest.raises(requests.ConnectionError):
        s.post(f"{sandbox.base_url}/api/products/import", json={"files": [entry("A")]}, timeout=10)
    with pytest.raises(requests.ConnectionError):
        s.post(
            f"{sandbox.base_url}/api/files",
            files={"file": ("a.glb", b"x" * 100_000, "model/gltf-binary")},
            timeout=10,
        )
    stats = sandbox.stats()
    assert (stats["items"], stats["files"]) == (0, 0)
    assert stats["requests"]["POST /api/products/import"] == 1
    sandbox.set_faults(drop_rate=0.0)
    assert s.post(f"{sandbox.base_url}/api/products/import", json={"files": [entry("A")]}, timeout=10).ok


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_clean_shutdown_on_signal(tmp_path, signum):
    command = [
        sys.executable,
        "-m",
        "threekit_pipeline.sandbox.threekit_server",
        "--port",
        "0",
        "--token",
        TOKEN,
        "--org-id",
        ORG,
        "--data-dir",
        str(tmp_path / "data"),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("threekit-sandbox listening on http://127.0.0.1:")
        base = line.split(" on ", 1)[1].strip()
        # A kept-alive client connection must not hold the shutdown up.
        s = session()
        assert s.get(f"{base}/api/assets", timeout=10).status_code == 200
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 0
        log_text = proc.stderr.read()
        assert "threekit-sandbox stopped" in log_text
        assert TOKEN not in log_text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_missing_token_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "THREEKIT_SANDBOX_TOKEN"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "threekit_pipeline.sandbox.threekit_server",
            "--org-id",
            ORG,
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 2
    assert "a token is required" in result.stderr
