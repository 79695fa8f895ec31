"""The threekit_pipeline Variable: defaults, overrides and clear validation errors."""

from __future__ import annotations

import json

import pytest
from threekit_pipeline.pipelines.config import DEFAULT_FOLDERS, ConfigError, default_staging_dir, load_config


@pytest.mark.parametrize("raw", [None, "", "{}", {}])
def test_empty_values_give_documented_defaults(raw):
    config = load_config(raw)
    assert config.ftp_conn_id == "ftp_default"
    assert config.threekit_conn_id == "threekit_default"
    assert config.mapping == "canonical"
    assert config.folders == DEFAULT_FOLDERS
    assert config.batch_size == 500
    assert config.import_mode == "job"
    assert config.export_types == ("item",)
    assert config.marker_suffixes == ()


def test_json_text_overrides_and_folder_merge():
    raw = json.dumps(
        {
            "batch_size": 25,
            "stable_seconds": 1,
            "marker_suffixes": [".done", ".ok"],
            "folders": {"archive": "/erp/archive/", "inbound_catalog": "/erp/in"},
            "import_mode": "sync",
        }
    )
    config = load_config(raw)
    assert config.batch_size == 25 and isinstance(config.batch_size, int)
    assert config.stable_seconds == 1.0 and isinstance(config.stable_seconds, float)
    assert config.marker_suffixes == (".done", ".ok")
    assert config.folder("archive") == "/erp/archive"
    assert config.folder("inbound_catalog") == "/erp/in"
    # Unlisted folders keep their defaults.
    assert config.folder("rejected") == "/rejected"
    assert config.import_mode == "sync"


def test_comma_separated_string_is_accepted_for_lists():
    assert load_config({"export_tags": "sofa, chair ,,"}).export_tags == ("sofa", "chair")


def test_render_targets_default_to_outbound_renders():
    assert load_config({}).render_targets == ("/outbound/renders",)
    assert load_config({"render_destinations": ["/a", "/b"]}).render_targets == ("/a", "/b")


def test_staging_dir_comes_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("THREEKIT_PIPELINE_STAGING_DIR", str(tmp_path / "stage"))
    assert default_staging_dir() == str(tmp_path / "stage")
    assert load_config({}).staging_dir == str(tmp_path / "stage")
    monkeypatch.delenv("THREEKIT_PIPELINE_STAGING_DIR")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    assert default_staging_dir() == str(tmp_path / "home" / "staging")


def test_to_dict_round_trips_through_json():
    config = load_config({"batch_size": 7, "export_tags": ["x"], "folders": {"reports": "/r"}})
    assert load_config(json.dumps(config.to_dict())) == config


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({"bogus": 1}, r"unknown key\(s\) \['bogus'\]"),
        ({"folders": {"nowhere": "/x"}}, r"unknown folder key\(s\) \['nowhere'\]"),
        ({"folders": {"archive": "relative/path"}}, "folders.archive must be an absolute path"),
        ({"folders": ["/x"]}, "'folders' must be an object"),
        ({"batch_size": 0}, r"'batch_size'=0 out of range"),
        ({"batch_size": True}, "'batch_size' must be a number"),
        ({"max_error_ratio": 1.5}, "'max_error_ratio'=1.5 out of range"),
        ({"import_mode": "fast"}, "'import_mode' must be 'job' or 'sync'"),
        ({"export_tags": [1, 2]}, "'export_tags' must be a list of strings"),
        ({"translations_per_locale": "yes"}, "must be true/false"),
        ({"mapping": ""}, "'mapping' must be a non-empty string"),
    ],
)
def test_bad_values_name_the_key_and_reason(raw, message):
    with pytest.raises(ConfigError, match=message):
        load_config(raw)
