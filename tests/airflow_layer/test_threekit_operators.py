"""Threekit operators run by Airflow's task runner (``dag.test()``) against the Threekit sandbox."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from threekit_pipeline.airflow.links import threekit_assets_url, threekit_job_url
from threekit_pipeline.airflow.operators.threekit import (
    ThreekitImportOperator,
    default_outcome_path,
    rejection_table,
)
from threekit_pipeline.threekit.client import ThreekitClient


def _entry(sku: str, **product) -> dict:
    return {
        "query": {"metadata": {"SKU": sku}},
        "product": {
            "name": f"Chair {sku}",
            "metadata": [{"type": "String", "name": "SKU", "defaultValue": sku}],
            **product,
        },
    }


@pytest.fixture
def items_jsonl(tmp_path) -> Path:
    path = tmp_path / "staging" / "items.jsonl"
    path.parent.mkdir()
    entries = [_entry("A-1"), _entry("A-2", attributes="oops"), _entry("A-3")]
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def _outcomes(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_import_operator_imports_records_outcomes_and_links_the_job(
    threekit_conn, items_jsonl, run_dag, capfd, caplog
):
    caplog.set_level(logging.INFO)
    result = run_dag(
        """
        from threekit_pipeline.airflow.operators.threekit import ThreekitImportOperator
        ThreekitImportOperator(task_id="import_items", jsonl_path="{jsonl}", batch_size=2, concurrency=1)
        """,
        jsonl=items_jsonl,
    )
    logs = capfd.readouterr()
    assert result.task_states == {"import_items": "success"}
    xcom = result.xcoms["import_items"]
    summary = xcom["return_value"]
    assert (summary["total"], summary["created"], summary["updated"], summary["rejected"]) == (3, 2, 0, 1)
    assert summary["rejected_reasons"][0]["key"] == "A-2"
    # Threekit's 422 is generic; the job's own failure count comes with it.
    assert summary["rejected_reasons"][0]["reason"].startswith("Invalid product data (job ")

    outcome_path = default_outcome_path(items_jsonl)
    assert summary["outcome_path"] == str(outcome_path)
    assert [(o["line"], o["key"], o["status"]) for o in _outcomes(outcome_path)] == [
        (1, "A-1", "created"),
        (2, "A-2", "rejected"),
        (3, "A-3", "created"),
    ]

    # Two batches -> two real jobs; the link points at the last one.
    job_ids = xcom["threekit_job_ids"]
    assert len(job_ids) == 2 and xcom["threekit_job_id"] == job_ids[-1]
    with ThreekitClient(threekit_conn.base_url, threekit_conn.token, threekit_conn.org_id) as client:
        assert all(client.get_job(job_id)["status"] == "stopped" for job_id in job_ids)
    assert xcom["_link_ThreekitJobLink"] == threekit_job_url(threekit_conn.base_url, job_ids[-1])
    assert threekit_conn.token not in xcom["_link_ThreekitJobLink"]

    # The task log tells what happened, rejected entry and reason included, and no token.
    output = logs.out + logs.err + caplog.text
    assert "2 created, 0 updated, 0 skipped (already imported), 1 rejected" in output
    assert "A-2" in output and "reported 1 failed task(s)" in output
    assert threekit_conn.token not in output


def test_import_operator_rerun_skips_what_already_landed(threekit_conn, items_jsonl, run_dag):
    body = """
    from threekit_pipeline.airflow.operators.threekit import ThreekitImportOperator
    ThreekitImportOperator(task_id="import_items", jsonl_path="{jsonl}", outcome_path="{outcome}", mode="sync")
    """
    outcome = items_jsonl.parent / "outcome.jsonl"
    first = run_dag(body, jsonl=items_jsonl, outcome=outcome)
    second = run_dag(body, jsonl=items_jsonl, outcome=outcome)
    landed = first.xcoms["import_items"]["return_value"]
    assert (landed["created"], landed["skipped"], landed["rejected"]) == (2, 0, 1)
    again = second.xcoms["import_items"]["return_value"]
    assert (again["created"], again["skipped"], again["rejected"]) == (0, 2, 1)
    # Sync mode starts no job: no job id, and the link is empty rather than wrong.
    assert "threekit_job_id" not in second.xcoms["import_items"]
    assert second.xcoms["import_items"]["_link_ThreekitJobLink"] == ""


def test_import_operator_fails_clearly_on_a_missing_input(threekit_conn, tmp_path):
    op = ThreekitImportOperator(task_id="import_items", jsonl_path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(FileNotFoundError, match="nope.jsonl does not exist"):
        op.execute(context={})


def test_import_operator_validates_its_arguments():
    with pytest.raises(ValueError, match="mode must be"):
        ThreekitImportOperator(task_id="x", jsonl_path="a.jsonl", mode="bulk")
    with pytest.raises(ValueError, match="at least 1"):
        ThreekitImportOperator(task_id="x", jsonl_path="a.jsonl", batch_size=0)


def test_catalog_export_operator_stages_the_export_and_links_the_assets(threekit_conn, tmp_path, run_dag):
    with ThreekitClient(threekit_conn.base_url, threekit_conn.token, threekit_conn.org_id) as client:
        client.import_products_sync([_entry("B-1", tags=["chairs"]), _entry("B-2", tags=["tables"])])
    dest = tmp_path / "staging" / "catalog.json"
    result = run_dag(
        """
        from threekit_pipeline.airflow.operators.threekit import ThreekitCatalogExportOperator
        ThreekitCatalogExportOperator(task_id="export_catalog", dest_path="{dest}", tags=["chairs"])
        """,
        dest=dest,
    )
    assert result.task_states == {"export_catalog": "success"}
    xcom = result.xcoms["export_catalog"]
    exported = json.loads(dest.read_text())
    assert [e["product"]["name"] for e in exported] == ["Chair B-1"]
    assert xcom["return_value"]["count"] == 1
    assert xcom["return_value"]["path"] == str(dest)
    assert xcom["return_value"]["size"] == dest.stat().st_size
    assert xcom["_link_ThreekitAssetsLink"] == threekit_assets_url(
        threekit_conn.base_url, {"tags": ["chairs"]}
    )
    assert xcom["_link_ThreekitAssetsLink"].endswith("/app/assets?tags=chairs")


def test_rejection_table_lines_up_and_truncates():
    table = rejection_table(
        [
            {"line": 7, "key": "SKU-1", "reason": "bad\nvalue"},
            {"line": 1234, "key": "SKU-22", "reason": "x" * 300},
        ]
    )
    lines = table.splitlines()
    assert lines[0].split() == ["line", "key", "reason"]
    assert lines[2].endswith("bad value")
    assert lines[3].startswith("1234  SKU-22")
    assert lines[3].endswith("...") and len(lines[3]) < 150
