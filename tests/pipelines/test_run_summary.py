"""The one-line run summary and the full rejection listing that open the import logs."""

from __future__ import annotations

from threekit_pipeline.pipelines.run_summary import rejection_lines, retired_count, summarize, sync_view_url

LONG_REASON = (
    "price 'abc' is not a number: expected digits with an optional decimal point, e.g. 12.50; "
    "the row is left out and the product keeps its previous price in Threekit"
)


def _catalog_report(**counts):
    base = {
        "created": 1990,
        "updated": 0,
        "imported": 0,
        "unchanged_skipped": 5,
        "rows_rejected": 3,
        "threekit_rejected": 1,
        "files_rejected": 1,
        "products_distinct": 1995,
    }
    base.update(counts)
    return {"dag_id": "threekit_catalog_import", "run_id": "manual__1", "status": "success", "counts": base}


def test_catalog_summary_line_reads_like_the_issue_example():
    summary = summarize(_catalog_report())
    line = summary.line("http://airflow/threekit-sync/runs/x/y")
    assert line == (
        "2,000 products: 1,990 created, 0 updated, 5 unchanged, 5 rejected (rows 3, entries 1, files 1)"
        " · report: http://airflow/threekit-sync/runs/x/y"
    )
    assert summary.partial and summary.note().startswith("⚠ Partial success")


def test_clean_run_is_not_partial_and_omits_empty_rejection_detail():
    summary = summarize(_catalog_report(rows_rejected=0, threekit_rejected=0, files_rejected=0))
    assert not summary.partial
    assert summary.line().endswith("5 unchanged, 0 rejected")
    assert summary.note().startswith("✓ All accepted")


def test_translations_and_source_assets_reports_are_summarised_in_their_own_units():
    translations = summarize(
        {
            "dag_id": "threekit_translations_import",
            "counts": {"rows_imported": 40, "rows_rejected": 2, "files_rejected": 0},
        }
    )
    assert (
        translations.line()
        == "42 translation rows: 0 created, 0 updated, 40 imported, 0 unchanged, 2 rejected (rows 2)"
    )
    assets = summarize(
        {"dag_id": "threekit_source_assets_import", "counts": {"imported": 3, "unchanged": 1, "rejected": 1}}
    )
    assert assets.line().startswith("5 files:") and assets.rejected_files == 1


def test_rejection_lines_show_the_sku_and_never_cut_the_reason():
    rows = [
        {
            "stage": "transform",
            "file": "products_20261101.csv",
            "line": 3,
            "column": "price",
            "value": "abc",
            "key": "LAMP-007",
            "reason": LONG_REASON,
        },
        {
            "stage": "threekit",
            "file": "products_20261101.csv",
            "line": "",
            "sku": "CHAIR-1",
            "reason": "duplicate",
        },
    ]
    text = rejection_lines(rows)
    first, second = text.splitlines()
    assert first.startswith("  SKU LAMP-007 · products_20261101.csv line 3, column price · value 'abc'")
    assert first.endswith("reason: " + LONG_REASON)
    assert "SKU CHAIR-1" in second and second.endswith("reason: duplicate")
    assert "more in the errors CSV" in rejection_lines(rows * 3, limit=2)


def test_sync_view_url_quotes_the_run_id():
    url = sync_view_url(
        "threekit_catalog_import", "manual__2026-11-30T10:00:00+00:00", base_url="http://h:8080/"
    )
    assert url == (
        "http://h:8080/threekit-sync/run?dag_id=threekit_catalog_import"
        "&run_id=manual__2026-11-30T10%3A00%3A00%2B00%3A00"
    )


def test_retired_count_comes_from_the_retirement_report():
    retirement = {
        "status": "retired",
        "retired": [
            {"sku": "A", "status": "retired"},
            {"sku": "B", "status": "reported"},  # retire: report: recorded as retired, still live
            {"sku": "C", "status": "failed"},
            {"sku": "D", "status": "blocked"},
            {"sku": "E", "status": "would_retire"},
        ],
    }
    assert retired_count(retirement) == 2 and retired_count(None) == 0
    summary = summarize(_catalog_report(rows_rejected=0, threekit_rejected=0, files_rejected=0), retirement)
    assert summary.retired == 2 and summary.line().endswith("0 rejected, 2 retired")
    assert summarize(_catalog_report()).retired == 0
