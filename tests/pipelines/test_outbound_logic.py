"""Pure logic of the outbound, export, render, translations and source-asset pipelines (no servers)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from threekit_pipeline.pipelines import exports, source_assets, translations
from threekit_pipeline.pipelines.config import load_config
from threekit_pipeline.pipelines.reports import RejectedRow
from threekit_pipeline.pipelines.runtime import TaskEnv, flatten_sensor_output, truthy


def _env(tmp_path: Path, **kwargs) -> TaskEnv:
    config = load_config({"staging_dir": str(tmp_path / "staging")})
    defaults = {"dag_id": "some_dag", "run_id": "manual__2026-11-23T10:00:00+00:00", "config": config}
    defaults.update(kwargs)
    return TaskEnv(**defaults)


# --- TaskEnv -------------------------------------------------------------------------------


def test_day_comes_from_logical_date_else_interval_else_run_after(tmp_path):
    logical = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)
    assert _env(tmp_path, logical_date=logical).stamp == "20261123"
    assert _env(tmp_path, data_interval_start=datetime(2026, 11, 20, tzinfo=UTC)).day == date(2026, 11, 20)
    # Asset-triggered runs have no logical date: they are dated by run_after.
    assert _env(tmp_path, run_after=datetime(2026, 12, 1, 8, tzinfo=UTC)).stamp == "20261201"


def test_run_dir_is_per_dag_and_run_and_fresh_empties_it(tmp_path):
    env = _env(tmp_path)
    folder = env.run_dir("catalog")
    assert folder == tmp_path / "staging" / "some_dag" / "manual__2026-11-23T10-00-00-00-00" / "catalog"
    (folder / "left-over.json").write_text("{}")
    assert env.run_dir("catalog").joinpath("left-over.json").exists()
    assert list(env.run_dir("catalog", fresh=True).iterdir()) == []
    assert env.shared_dir("renders") == tmp_path / "staging" / "some_dag" / "shared" / "renders"


def test_params_accept_text_from_the_cli(tmp_path):
    env = _env(tmp_path, params={"dry_run": "true", "force_full_resend": "0", "file": "  a.csv "})
    assert env.dry_run and not env.force_full_resend
    assert env.only_file == "a.csv"
    assert truthy("Yes") and not truthy("no") and not truthy(None)


def test_flatten_sensor_output():
    assert flatten_sensor_output(None) is None
    assert flatten_sensor_output([]) is None  # no sensor instance (replay run)
    assert flatten_sensor_output([None]) is None  # the instance returned nothing
    files = [{"path": "/in/a.csv"}, {"path": "/in/b.csv"}]
    assert flatten_sensor_output([files]) == files  # one mapped instance
    assert flatten_sensor_output(files) == files  # an unmapped sensor


# --- exports ---------------------------------------------------------------------------------


def test_chunk_splits_in_order():
    ids = [f"a{i}" for i in range(7)]
    assert exports.chunk(ids, 3) == [["a0", "a1", "a2"], ["a3", "a4", "a5"], ["a6"]]
    assert exports.chunk([], 3) == []
    with pytest.raises(ValueError):
        exports.chunk(ids, 0)


def test_summarise_asset_export_totals_and_missing():
    total = exports.summarise_asset_export(
        [
            {"exported": 2, "uploaded": 1, "unchanged": 1, "missing": []},
            None,
            {"exported": 1, "uploaded": 0, "unchanged": 1, "missing": [{"asset_id": "x", "reason": "404"}]},
        ]
    )
    assert (total["chunks"], total["exported"], total["uploaded"], total["unchanged"]) == (2, 3, 1, 2)
    assert total["missing"] == [{"asset_id": "x", "reason": "404"}]


def test_plan_asset_export_requires_a_selection(tmp_path):
    with pytest.raises(exports.ExportConfigError, match="export_asset_ids"):
        exports.plan_asset_export(_env(tmp_path), client=None)


# --- source assets ----------------------------------------------------------------------------


def test_job_failure_reads_failed_runs():
    ok_job = {"id": "j1", "taskResultFailures": 0}
    assert source_assets.job_failure(ok_job, [{"resultCode": "Success", "resultMessage": ""}]) is None
    failed = [{"resultCode": "Failed", "resultMessage": "unsupported file type .xyz"}]
    assert (
        source_assets.job_failure({"id": "j2", "taskResultFailures": 1}, failed)
        == "unsupported file type .xyz"
    )
    # A failure count without a message still names the job.
    assert "j3" in source_assets.job_failure({"id": "j3", "taskResultFailures": 1}, [])


def test_imported_assets_from_runs():
    runs = [{"results": {"assets": [{"id": "A1", "name": "chair.glb", "type": "model"}, {"name": "no id"}]}}]
    assert source_assets.imported_assets(runs) == [{"id": "A1", "name": "chair.glb", "type": "model"}]


def test_source_asset_report_marks_files_without_outcome_as_failed(tmp_path):
    env = _env(tmp_path)
    selected = [
        {"name": "chair.glb", "path": "/inbound/assets/chair.glb", "size": 10},
        {"name": "broken.xyz", "path": "/inbound/assets/broken.xyz", "size": 3},
        {"name": "lost.png", "path": "/inbound/assets/lost.png", "size": 5},
    ]
    outcomes = [
        {"file": "chair.glb", "remote_path": "/inbound/assets/chair.glb", "status": "imported", "assets": []},
        {
            "file": "broken.xyz",
            "remote_path": "/inbound/assets/broken.xyz",
            "status": "rejected",
            "reason": "bad",
        },
        None,
    ]
    report = source_assets.build_report(env, "all waiting", selected, outcomes)
    assert report.counts["imported"] == 1 and report.counts["rejected"] == 1 and report.counts["failed"] == 1
    assert report.status == "failed"
    assert [r.file for r in report.rejected] == ["broken.xyz"]
    with pytest.raises(source_assets.SourceAssetImportError, match="lost.png"):
        source_assets.check_complete(report)


# --- translations ------------------------------------------------------------------------------


def _validated(rows: int, valid: int, locales=("fr",), file_error: str = "") -> translations.ValidatedFile:
    return translations.ValidatedFile(
        rows=rows,
        valid_rows=valid,
        locales=list(locales),
        clean_path=None,
        errors_path=None,
        rejected_rows=[RejectedRow("validation", "f.csv", 3, "Canonical Name", "", "empty key")],
        file_error=file_error,
    )


def test_translations_rejection_reasons():
    assert translations.rejection_reason(_validated(100, 99), 0.05) is None
    assert "max_error_ratio" in translations.rejection_reason(_validated(10, 8), 0.05)
    assert translations.rejection_reason(_validated(10, 10, locales=()), 0.05) == "no valid locale column"
    assert translations.rejection_reason(_validated(0, 0), 0.05) == "no valid row to import"
    assert (
        translations.rejection_reason(_validated(5, 0, file_error="missing column"), 0.05) == "missing column"
    )
