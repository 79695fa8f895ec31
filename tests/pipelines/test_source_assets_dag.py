"""End-to-end runs of the source-asset import DAG against real sandboxes."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _dag_runs import (
    GrowingUpload,
    ftp_files,
    load_dag,
    map_labels,
    put_ftp_file,
    request_count,
    run_dag,
    running_stack,
    threekit_client,
)

pytestmark = pytest.mark.usefixtures("airflow_db")

# The growing upload appends every 0.2 s; a 2 s stability window keeps it "incomplete" even
# when the test process is starved for a moment on a busy machine.
GROWING_SAFE = {"stable_seconds": 2}

INBOUND = "/inbound/assets"
IMPORT_JOBS = "POST /api/asset-jobs/import"
GLB = b"glTF\x02\x00\x00\x00" + bytes(range(256)) * 8
PNG = b"\x89PNG\r\n\x1a\n" + b"texture-bytes" * 50


def _assets(stack, kind: str) -> list[dict]:
    with threekit_client(stack) as client:
        return list(client.list_assets(type=kind))


def _report(stack) -> dict:
    folder = Path(stack.ftp.root) / "reports/source_assets_import"
    reports = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(reports[-1].read_text())


def test_source_assets_imported_rejected_and_never_duplicated(tmp_path):
    with running_stack(tmp_path, GROWING_SAFE) as stack:
        put_ftp_file(stack, f"{INBOUND}/chair_20261123.glb", GLB)
        put_ftp_file(stack, f"{INBOUND}/oak_20261123.png", PNG)
        put_ftp_file(stack, f"{INBOUND}/notes_20261123.xyz", b"not a model")
        put_ftp_file(stack, f"{INBOUND}/empty_20261123.obj", b"")
        dag = load_dag("threekit_source_assets_import")

        growing = Path(stack.ftp.root) / INBOUND.strip("/") / "sofa_20261123.fbx"
        with GrowingUpload(growing, b"FBX", b"chunk {n} "):
            state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 23, 10, tzinfo=UTC))
        assert state == "success", tasks
        assert tasks["import_file"] == ["success"] * 4  # one mapped task per file
        assert sorted(map_labels(dag.dag_id, "import_file")) == sorted(
            ["chair_20261123.glb", "oak_20261123.png", "notes_20261123.xyz", "empty_20261123.obj"]
        )

        models = {a["name"]: a for a in _assets(stack, "model")}
        textures = {a["name"]: a for a in _assets(stack, "texture")}
        assert set(models) == {"chair_20261123.glb"} and set(textures) == {"oak_20261123.png"}
        assert set(ftp_files(stack, "/archive/assets")) == {
            "2026/11/23/chair_20261123.glb",
            "2026/11/23/oak_20261123.png",
        }
        rejected = ftp_files(stack, "/rejected/assets")
        assert set(rejected) == {
            "notes_20261123.xyz",
            "notes_20261123.xyz.errors.csv",
            "empty_20261123.obj",
            "empty_20261123.obj.errors.csv",
        }
        with open(
            Path(stack.ftp.root) / "rejected/assets/notes_20261123.xyz.errors.csv", newline=""
        ) as handle:
            rows = list(csv.DictReader(handle))
        assert rows == [
            {
                "file": "notes_20261123.xyz",
                "line": "",
                "column": "",
                "value": "",
                "reason": "unsupported file type .xyz",
            }
        ]
        assert (
            "file is empty"
            in (Path(stack.ftp.root) / "rejected/assets/empty_20261123.obj.errors.csv").read_text()
        )
        # The file still being uploaded was left for a later run.
        assert set(ftp_files(stack, INBOUND)) == {"sofa_20261123.fbx"}
        report = _report(stack)
        assert report["counts"]["imported"] == 2 and report["counts"]["rejected"] == 2
        assert any(models["chair_20261123.glb"]["id"] in note for note in report["notes"])

        # The same file delivered again: archived (inbound copy removed), not imported again.
        jobs = request_count(stack, IMPORT_JOBS)
        growing.unlink()
        put_ftp_file(stack, f"{INBOUND}/chair_20261123.glb", GLB)
        archived = ftp_files(stack, "/archive/assets")
        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 23, 11, tzinfo=UTC))
        assert state == "success", tasks
        assert request_count(stack, IMPORT_JOBS) == jobs
        assert ftp_files(stack, INBOUND) == {}
        assert ftp_files(stack, "/archive/assets") == archived
        assert _report(stack)["files"][0]["status"] == "unchanged"

        # A new version under the same name updates the same asset (Threekit matches by name).
        put_ftp_file(stack, f"{INBOUND}/chair_20261123.glb", GLB + b"v2")
        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 23, 12, tzinfo=UTC))
        assert state == "success", tasks
        assert request_count(stack, IMPORT_JOBS) == jobs + 1
        after = {a["name"]: a for a in _assets(stack, "model")}
        assert list(after) == ["chair_20261123.glb"]
        assert after["chair_20261123.glb"]["id"] == models["chair_20261123.glb"]["id"]
        # Collision-safe archive: the new content is kept beside the old one.
        assert len(ftp_files(stack, "/archive/assets")) == 3


def test_source_assets_dry_run_sends_and_moves_nothing(tmp_path):
    with running_stack(tmp_path) as stack:
        put_ftp_file(stack, f"{INBOUND}/chair.glb", GLB)
        dag = load_dag("threekit_source_assets_import")
        state, tasks = run_dag(
            dag, logical_date=datetime(2026, 11, 23, 10, tzinfo=UTC), conf={"dry_run": True}
        )
        assert state == "success", tasks
        assert request_count(stack, "POST /api/files") == 0 and request_count(stack, IMPORT_JOBS) == 0
        assert set(ftp_files(stack, INBOUND)) == {"chair.glb"}
        assert ftp_files(stack, "/reports") == {}


def test_threekit_outage_leaves_files_in_place_and_a_rerun_converges(tmp_path):
    with running_stack(tmp_path) as stack:
        put_ftp_file(stack, f"{INBOUND}/chair.glb", GLB)
        put_ftp_file(stack, f"{INBOUND}/oak.png", PNG)
        dag = load_dag("threekit_source_assets_import")
        stack.threekit.set_faults(fail_rate=1.0)
        try:
            state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 23, 10, tzinfo=UTC))
        finally:
            stack.threekit.set_faults(fail_rate=0.0)
        assert state == "failed"
        assert tasks["import_file"] == ["failed", "failed"] and tasks["report"] == ["failed"]
        # Nothing moved: the files wait for the next run; the report says so.
        assert set(ftp_files(stack, INBOUND)) == {"chair.glb", "oak.png"}
        assert ftp_files(stack, "/archive") == {}
        assert {f["status"] for f in _report(stack)["files"]} == {"failed"}

        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 23, 11, tzinfo=UTC))
        assert state == "success", tasks
        assert ftp_files(stack, INBOUND) == {}
        assert [a["name"] for a in _assets(stack, "model")] == ["chair.glb"]
        assert [a["name"] for a in _assets(stack, "texture")] == ["oak.png"]
