"""Every DAG in ``dags/`` run twice over the same data: the second round changes nothing.

A day of production on one stack: the three inbound DAGs import a catalog batch, a
translations file and source assets; the four export DAGs deliver catalog, assets,
translations and renders. Then the partners re-deliver the very same inbound files and every
DAG runs again. The second round must leave the FTP tree identical (paths, sizes, SHA-256)
apart from the per-run reports, Threekit identical (items, assets, translations), send
Threekit no write at all (imports, translations, file uploads, asset jobs) and upload no file
to FTP except the run reports.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from _idempotency import (
    catalog_batch,
    ftp_tree,
    ftp_uploads,
    load_dag,
    put_ftp_file,
    run_dag,
    running_stack,
    snapshot_items,
    temp_uploads,
    upload_batch,
    without_reports,
    write_counts,
)
from threekit_pipeline.samples.catalog import generate_catalog
from threekit_pipeline.samples.source_files import generate_source_files

DAY = datetime(2026, 11, 23, tzinfo=UTC)
VARIABLE = {
    "batch_size": 10,
    "sensor_timeout_seconds": 3,
    "render_tags": ["sofas"],
    "export_asset_tags": ["sofas"],
}
# In the order a day runs them: inbound first, then the exports of what came in.
DAGS = (
    ("threekit_catalog_import", 10),
    ("threekit_translations_import", 10),
    ("threekit_source_assets_import", 10),
    ("threekit_catalog_export", 11),
    ("threekit_asset_export", 11),
    ("threekit_translations_export", 11),
    ("threekit_render_export", 11),
)

POST_TRANSLATIONS = "POST /api/products/translations"

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]


def _deliver(stack, catalog: dict[str, Path], translations: Path, assets: list[Path]) -> None:
    """The partners' uploads of the day (the same bytes every time)."""
    upload_batch(stack, catalog)
    put_ftp_file(stack, f"/inbound/translations/{translations.name}", translations.read_bytes())
    for path in assets:
        put_ftp_file(stack, f"/inbound/assets/{path.name}", path.read_bytes())


def _run_all(stack, dags) -> dict[str, tuple[str, dict]]:
    outcomes = {}
    for dag_id, hour in DAGS:
        if dag_id == "threekit_render_export":
            # Threekit makes images only in render jobs; the sandbox stands in for one.
            stack.threekit.render_stand_in(tags=VARIABLE["render_tags"])
        state, tasks = run_dag(dags[dag_id], logical_date=DAY.replace(hour=hour))
        outcomes[dag_id] = (state, tasks)
    return outcomes


def _threekit_state(stack) -> dict:
    stats = stack.threekit.stats()
    return {
        "items": snapshot_items(stack),
        "assets": stats["assetsByType"],
        "files": stats["files"],
        "translations": stats["translations"],
    }


def test_second_round_of_every_dag_changes_nothing(tmp_path):
    dags = {dag_id: load_dag(dag_id, retry_delay_s=0.2) for dag_id, _ in DAGS}
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        catalog = catalog_batch(tmp_path, "20261123", products=30, seed=9)
        # The same catalog generated with locales brings its translations CSV along.
        translations = generate_catalog(tmp_path / "locales", products=30, stamp="20261123", seed=9)["translations"]
        assets = generate_source_files(tmp_path / "assets")

        _deliver(stack, catalog, translations, assets)
        first = _run_all(stack, dags)
        assert {dag_id: state for dag_id, (state, _) in first.items()} == dict.fromkeys(first, "success"), first
        tree = ftp_tree(stack, "/")
        threekit = _threekit_state(stack)
        writes = write_counts(stack)
        uploads = ftp_uploads(stack)
        # The first round did real work everywhere.
        assert threekit["items"] and threekit["translations"] and threekit["assets"].get("texture")
        for folder in ("outbound/catalog/", "outbound/assets/", "outbound/translations/", "outbound/renders/"):
            assert any(path.startswith(folder) for path in tree), f"nothing delivered to {folder}"
        for folder in ("catalog", "translations", "assets"):
            assert any(path.startswith(f"archive/{folder}/") for path in tree), f"nothing archived from {folder}"
        assert not any(path.startswith(("inbound/", "rejected/")) for path in tree), sorted(tree)

        _deliver(stack, catalog, translations, assets)
        second = _run_all(stack, dags)

        assert {dag_id: state for dag_id, (state, _) in second.items()} == dict.fromkeys(second, "success"), second
        assert without_reports(ftp_tree(stack, "/")) == without_reports(tree)
        assert _threekit_state(stack) == threekit
        assert write_counts(stack) == writes, "Threekit received writes again"
        new_uploads = ftp_uploads(stack) - uploads
        assert set(new_uploads) <= {"reports"}, f"files uploaded again: {dict(new_uploads)}"
        assert temp_uploads(stack) == []


def test_unchanged_translations_file_is_not_sent_again(tmp_path):
    dag = load_dag("threekit_translations_import", retry_delay_s=0.2)
    with running_stack(tmp_path / "stack", VARIABLE) as stack:
        translations = generate_catalog(tmp_path / "locales", products=5, stamp="20261123")["translations"]
        for hour in (10, 11):
            put_ftp_file(stack, f"/inbound/translations/{translations.name}", translations.read_bytes())
            state, tasks = run_dag(dag, logical_date=DAY.replace(hour=hour))
            assert state == "success", tasks
        assert sorted(ftp_tree(stack, "/archive/translations")) == [f"2026/11/23/{translations.name}"]
        assert write_counts(stack)[POST_TRANSLATIONS] == 1
