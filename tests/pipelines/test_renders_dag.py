"""End-to-end runs of the render export DAG against real sandboxes."""

from __future__ import annotations

import csv
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _dag_runs import ftp_files, load_dag, map_labels, request_count, run_dag, running_stack, seed_products

pytestmark = pytest.mark.usefixtures("airflow_db")

DAY = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
DESTINATIONS = ["/outbound/renders/dam", "/outbound/renders/partner"]


def _manifest(stack, destination: str) -> list[dict[str, str]]:
    path = Path(stack.ftp.root) / destination.strip("/") / "manifest_20261123.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_render_export_to_several_destinations_only_changed_images_uploaded(tmp_path):
    variable = {"render_tags": ["featured"], "render_destinations": DESTINATIONS}
    with running_stack(tmp_path, variable) as stack:
        items = seed_products(
            stack,
            [
                {"sku": "SOFA-1", "name": "Oslo Sofa", "tags": ["featured"]},
                {"sku": "../../etc/CHAIR 2", "name": "Bergen Chair", "tags": ["featured"]},
                {"sku": "TABLE-3", "name": "Not rendered", "tags": ["other"]},
            ],
        )
        ids = {item["metadata"]["SKU"]: item["id"] for item in items}
        stack.threekit.render_stand_in(tags=["featured"])  # what a render job would leave
        dag = load_dag("threekit_render_export")

        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        assert tasks["deliver_renders"] == ["success", "success"]  # one mapped task per destination
        assert map_labels(dag.dag_id, "deliver_renders") == DESTINATIONS
        for destination in DESTINATIONS:
            files = ftp_files(stack, destination)
            manifest = _manifest(stack, destination)
            assert {row["sku"] for row in manifest} == {"SOFA-1", "../../etc/CHAIR 2"}
            for row in manifest:
                assert row["file"] in files
                assert row["asset_id"] == ids[row["sku"]]
                local = Path(stack.ftp.root) / destination.strip("/") / row["file"]
                assert hashlib.sha256(local.read_bytes()).hexdigest() == row["sha256"]
                assert int(row["size"]) == local.stat().st_size
            # SKU folder names are made safe: no traversal out of the destination.
            folders = {name.split("/")[0] for name in files if "/" in name}
            assert folders == {"SOFA-1", "etc_CHAIR_2"}
            assert not (Path(stack.ftp.root) / "etc").exists()
        first = {d: ftp_files(stack, d) for d in DESTINATIONS}
        downloads = request_count(stack, "GET /api/files/:id/content")

        # Re-run: nothing uploaded and no image downloaded again.
        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        assert {d: ftp_files(stack, d) for d in DESTINATIONS} == first
        assert request_count(stack, "GET /api/files/:id/content") == downloads

        # One item changes: only its image is uploaded again (and the manifest listing it).
        seed_products(stack, [{"sku": "SOFA-1", "name": "Oslo Sofa XL", "tags": ["featured"]}])
        stack.threekit.render_stand_in(tags=["featured"])
        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        for destination in DESTINATIONS:
            after = ftp_files(stack, destination)
            replaced = sorted(
                n for n in after if n not in first[destination] or after[n][2] != first[destination][n][2]
            )
            sofa_file = next(r["file"] for r in _manifest(stack, destination) if r["sku"] == "SOFA-1")
            assert replaced == sorted({sofa_file, "manifest_20261123.csv"}), replaced


def test_render_export_dry_run_uploads_nothing(tmp_path):
    with running_stack(tmp_path) as stack:
        seed_products(stack, [{"sku": "SOFA-1", "name": "Oslo Sofa"}])
        stack.threekit.render_stand_in()
        dag = load_dag("threekit_render_export")
        state, tasks = run_dag(dag, logical_date=DAY, conf={"dry_run": True})
        assert state == "success", tasks
        assert ftp_files(stack, "/outbound/renders") == {}
        # The manifest was still written to staging for inspection.
        staged = list((tmp_path / "staging" / "threekit_render_export").rglob("manifest_20261123.csv"))
        assert len(staged) == 1


def test_render_on_demand_waits_deferred_renders_each_colour_and_names_a_failed_render(tmp_path):
    spec = {"items": {"tags": ["featured"]}, "configurations": {"attributes": ["Color"]}, "renderer": "vray",
            "width": 64, "height": 64, "poll_seconds": 0.2, "timeout_seconds": 60}
    colour = {"type": "String", "name": "Color", "values": ["Red", "Blue"], "defaultValue": "Red"}
    variable = {"render_spec": spec, "render_destinations": DESTINATIONS}
    with running_stack(tmp_path, variable) as stack:
        items = seed_products(
            stack,
            [{"sku": f"SOFA-{n}", "name": f"Sofa {n}", "tags": ["featured"], "attributes": [colour]} for n in (1, 2)],
        )
        ids = {item["metadata"]["SKU"]: item["id"] for item in items}
        stack.threekit.render_faults({ids["SOFA-2"]: "fail"})
        dag = load_dag("threekit_render_export")

        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "failed" and tasks["finish_renders"] == ["failed"], tasks
        assert tasks["wait_for_renders"] == ["success"] and tasks["deliver_renders"] == ["success", "success"]
        for destination in DESTINATIONS:
            files = ftp_files(stack, destination)
            assert sorted(n.split("/")[0] for n in files if "/" in n) == ["SOFA-1", "SOFA-1"]
        renders = request_count(stack, "POST /api/asset-jobs/:assetId/render/:renderer")
        assert renders == 2

        stack.threekit.render_faults({})
        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        assert request_count(stack, "POST /api/asset-jobs/:assetId/render/:renderer") == renders + 1  # SOFA-2 only
        delivered = {d: ftp_files(stack, d) for d in DESTINATIONS}

        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        assert request_count(stack, "POST /api/asset-jobs/:assetId/render/:renderer") == renders + 1
        assert {d: ftp_files(stack, d) for d in DESTINATIONS} == delivered  # nothing uploaded
