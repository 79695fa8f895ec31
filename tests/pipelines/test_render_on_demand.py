"""Render on demand against the Threekit and FTP sandboxes (task functions, no scheduler).

Waiting uses the same poll as the deferrable trigger, bounded by a generous deadline.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from threekit_pipeline.ftp.client import FtpClient
from threekit_pipeline.pipelines import render_on_demand as rod
from threekit_pipeline.pipelines.config import load_config
from threekit_pipeline.pipelines.renders import deliver_renders, read_manifest
from threekit_pipeline.pipelines.runtime import TaskEnv
from threekit_pipeline.threekit import renders as tk_renders
from threekit_pipeline.threekit.client import ThreekitClient

RENDER_ROUTE = "POST /api/asset-jobs/:assetId/render/:renderer"
DESTINATIONS = ["/outbound/renders/dam", "/outbound/renders/partner"]
SPEC = {
    "items": {"tags": ["featured"]},
    "configurations": {"attributes": ["Color"]},
    "renderer": "vray",
    "format": "png",
    "width": 64,
    "height": 48,
    "timeout_seconds": 3,
    "poll_seconds": 0.1,
}


def _env(tmp_path: Path, run: int, **params) -> TaskEnv:
    config = load_config(
        {"staging_dir": str(tmp_path / "staging"), "render_spec": SPEC, "render_destinations": DESTINATIONS}
    )
    return TaskEnv(
        dag_id="threekit_render_export",
        run_id=f"manual__2026-11-23T0{run}:00:00+00:00",
        config=config,
        params=params,
        logical_date=datetime(2026, 11, 23, run, tzinfo=UTC),
    )


def _product(sku: str, name: str, tags=("featured",)) -> dict:
    meta = [{"name": "SKU", "defaultValue": sku, "type": "String"}]
    return {
        "query": {"metadata": meta},
        "product": {
            "type": "item",
            "name": name,
            "tags": list(tags),
            "metadata": meta,
            "attributes": [{"type": "String", "name": "Color", "values": ["Red", "Blue", "Green"], "defaultValue": "Red"}],
        },
    }


def _wait(client, plan: dict, deadline_s: float) -> dict[str, str]:
    """Poll the jobs like the trigger does; jobs still running at the deadline are ``timeout``."""
    outcomes = dict.fromkeys(plan["jobs"], "running")
    deadline = time.monotonic() + deadline_s
    while True:
        waiting = [j for j, s in outcomes.items() if s == "running"]
        outcomes.update(tk_renders.poll_jobs(client, waiting))
        if all(s != "running" for s in outcomes.values()) or time.monotonic() > deadline:
            return {j: ("timeout" if s == "running" else s) for j, s in outcomes.items()}
        time.sleep(0.1)


def _run(env: TaskEnv, client, ftp, wait_s: float = 30.0) -> dict:
    plan = rod.plan_renders(env, client)
    outcomes = _wait(client, plan, wait_s)
    deliveries = rod.collect_rendered(env, client, outcomes)
    uploaded = sum(deliver_renders(env, ftp, d)["uploaded"] for d in deliveries)
    try:
        finished = rod.finish_renders(env)
        error = None
    except rod.RendersFailed as exc:
        finished, error = None, str(exc)
    return {"plan": plan, "deliveries": deliveries, "uploaded": uploaded, "finished": finished, "error": error}


def _ftp_state(root: Path, destination: str) -> dict[str, int]:
    base = root / destination.strip("/")
    return {p.relative_to(base).as_posix(): p.stat().st_ino for p in base.rglob("*") if p.is_file()} if base.exists() else {}


@pytest.fixture
def client(threekit_sandbox):
    with ThreekitClient(threekit_sandbox.base_url, threekit_sandbox.token, threekit_sandbox.org_id) as tk:
        yield tk


def test_each_colour_rendered_once_delivered_with_manifest_and_only_changes_rerendered(
    tmp_path, client, threekit_sandbox, ftp_sandbox
):
    client.import_products_sync([_product(f"SOFA-{n}", f"Sofa {n}") for n in (1, 2, 3)]
                                + [_product("TABLE-9", "Table", tags=("other",))])
    root = Path(ftp_sandbox.root)
    with FtpClient(ftp_sandbox.settings()) as ftp:
        first = _run(_env(tmp_path, 1), client, ftp)
        assert first["error"] is None
        assert first["plan"]["requested"] == 9 and len(first["plan"]["jobs"]) == 3  # one job per item
        assert threekit_sandbox.stats()["requests"][RENDER_ROUTE] == 3
        assert first["finished"] == {"delivered": 9, "recorded": 9}
        for destination in DESTINATIONS:
            files = _ftp_state(root, destination)
            (manifest_name,) = [n for n in files if n.startswith("manifest_")]
            rows = read_manifest(root / destination.strip("/") / manifest_name)
            assert sorted((r["sku"], r["configuration"]) for r in rows) == sorted(
                (f"SOFA-{n}", f'{{"Color":"{c}"}}') for n in (1, 2, 3) for c in ("Red", "Blue", "Green")
            )
            for row in rows:
                data = (root / destination.strip("/") / row["file"]).read_bytes()
                assert data[:8] == b"\x89PNG\r\n\x1a\n"
                assert hashlib.sha256(data).hexdigest() == row["sha256"] and int(row["size"]) == len(data)
                assert (row["format"], row["width"], row["height"]) == ("png", "64", "48")
        layers = list(client.list_layers(job_id=first["plan"]["jobs"][0]))
        assert len(layers) == 3 and {"assetLayerConfiguration", "jobId", "fileId", "width", "height", "format"} <= set(
            layers[0]
        )
        before = {d: _ftp_state(root, d) for d in DESTINATIONS}

        # Re-run: 0 renders requested, 0 files uploaded.
        again = _run(_env(tmp_path, 2), client, ftp)
        assert again["plan"]["requested"] == 0 and again["plan"]["jobs"] == [] and again["plan"]["unchanged"] == 9
        assert threekit_sandbox.stats()["requests"][RENDER_ROUTE] == 3
        assert again["uploaded"] == 0 and {d: _ftp_state(root, d) for d in DESTINATIONS} == before

        # One product renamed: only its three colours are rendered and uploaded again.
        client.import_products_sync([_product("SOFA-2", "Sofa 2 XL")])
        third = _run(_env(tmp_path, 3), client, ftp)
        assert third["plan"]["requested"] == 3 and len(third["plan"]["jobs"]) == 1
        assert third["uploaded"] == 2 * (3 + 1)  # 3 images + this run's manifest, per destination
        for destination in DESTINATIONS:
            after = _ftp_state(root, destination)
            changed = {n for n in after if before[destination].get(n) != after[n]}
            assert {n.split("/")[0] for n in changed if "/" in n} == {"SOFA-2"}


def test_failed_and_timed_out_renders_are_named_and_the_others_delivered(tmp_path, client, threekit_sandbox,
                                                                         ftp_sandbox):
    items = client.import_products_sync([_product(f"SOFA-{n}", f"Sofa {n}") for n in (1, 2, 3)])
    ids = {i["metadata"]["SKU"]: i["id"] for i in items}
    threekit_sandbox.render_faults({ids["SOFA-1"]: "fail", ids["SOFA-2"]: "hang"})
    with FtpClient(ftp_sandbox.settings()) as ftp:
        run = _run(_env(tmp_path, 1), client, ftp, wait_s=3)
        assert "SOFA-1" in run["error"] and "V-Ray task error" in run["error"]
        assert "SOFA-2" in run["error"] and "did not finish within 3 s" in run["error"]
        assert '{"Color":"Blue"}' in run["error"]
        delivered = read_manifest(Path(run["deliveries"][0]["manifest"]))
        assert {r["sku"] for r in delivered} == {"SOFA-3"} and len(delivered) == 3

        threekit_sandbox.render_faults({})
        retry = _run(_env(tmp_path, 2), client, ftp)
        assert retry["error"] is None
        assert retry["plan"]["requested"] == 6  # only what failed; SOFA-3 was delivered


def test_spec_validation_and_configuration_expansion():
    assert tk_renders.parse_render_spec(None) is None
    with pytest.raises(tk_renders.RenderSpecError, match=r"render_spec.renderer"):
        tk_renders.parse_render_spec({"renderer": "cycles"})
    with pytest.raises(tk_renders.RenderSpecError, match=r"render_spec.configurations"):
        tk_renders.parse_render_spec({"configurations": "every"})
    spec = tk_renders.parse_render_spec(
        {"configurations": {"list": [{"Color": "Red"}]}, "camera": {"attribute": "Camera", "values": ["Front", "Side"]}}
    )
    item = {"attributes": [{"name": "Color", "type": "String", "defaultValue": "Blue", "values": ["Red", "Blue"]},
                           {"name": "Legs", "type": "String", "defaultValue": "Oak"}]}
    assert tk_renders.item_configurations(item, spec) == [
        {"Color": "Red", "Legs": "Oak", "Camera": "Front"},
        {"Color": "Red", "Legs": "Oak", "Camera": "Side"},
    ]
    default = tk_renders.parse_render_spec({"render": "on_demand"})
    assert tk_renders.item_configurations(item, default) == [{"Color": "Blue", "Legs": "Oak"}]
    assert tk_renders.render_job_id({"job": {"id": "j1"}}) == "j1" and tk_renders.render_job_id({"jobId": "j2"}) == "j2"


def test_sandbox_render_jobs_replace_layers_per_configuration_and_refuse_deleted_items(client, threekit_sandbox):
    (item,) = client.import_products_sync([_product("SOFA-1", "Sofa 1")])
    spec = tk_renders.parse_render_spec({"renderer": "webgl", "width": 32, "height": 32})
    first = tk_renders.request_render(client, item["id"], [{"Color": "Red"}, {"Color": "Blue"}], spec)
    assert _wait(client, {"jobs": [first]}, 30) == {first: "succeeded"}
    second = tk_renders.request_render(client, item["id"], [{"Color": "Red"}], spec)
    assert _wait(client, {"jobs": [second]}, 30) == {second: "succeeded"}
    layers = list(client.list_layers(asset_id=item["id"]))
    assert sorted((layer["assetLayerConfiguration"]["Color"], layer["jobId"]) for layer in layers) == [
        ("Blue", first), ("Red", second)
    ]
    client.delete_asset(item["id"])
    with pytest.raises(Exception, match="404"):
        tk_renders.request_render(client, item["id"], [{"Color": "Red"}], spec)
