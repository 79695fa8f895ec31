"""End-to-end runs of the catalog, translations and asset export DAGs against real sandboxes."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _dag_runs import (
    ftp_files,
    load_dag,
    map_labels,
    request_count,
    run_dag,
    running_stack,
    seed_products,
    set_variable,
    threekit_client,
    try_numbers,
)

pytestmark = pytest.mark.usefixtures("airflow_db")

DAY = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)

PRODUCTS = [
    {
        "sku": "SOFA-1",
        "name": "Oslo Sofa",
        "description": "Three seats",
        "tags": ["sofa", "featured"],
        "keywords": ["living"],
        "attributes": [
            {"type": "String", "name": "Color", "values": ["Red", "Blue"], "defaultValue": "Red"},
            {
                "type": "Pricing",
                "name": "Pricing",
                "values": [{"pricebook": "EU Retail", "currencies": {"EUR": 999.5}}],
                "defaultValue": {},
            },
        ],
    },
    # Values a spreadsheet would run as formulas.
    {"sku": "=HYPERLINK(1)", "name": "=cmd|' /C calc'!A0", "description": "+1+2", "tags": ["chair"]},
    {"sku": "CHAIR-2", "name": "@SUM(A1:A9)", "description": "-3", "tags": ["chair", "featured"]},
]


def _read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_catalog_export_golden_path_rerun_and_csv_injection(tmp_path):
    with running_stack(tmp_path, {"export_types": ["item"]}) as stack:
        seed_products(stack, PRODUCTS)
        dag = load_dag("threekit_catalog_export")

        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        root = Path(stack.ftp.root) / "outbound/catalog"
        exported = json.loads((root / "catalog_20261123.json").read_text())
        assert len(exported) == 3
        rows = {row["id"]: row for row in _read_csv(root / "catalog_20261123.csv")}
        assert len(rows) == 3
        by_sku = {row["sku"]: row for row in rows.values()}
        sofa = by_sku["SOFA-1"]
        assert sofa["name"] == "Oslo Sofa"
        assert sofa["attribute:Color"] == "Red|Blue"
        assert float(sofa["price:EU Retail:EUR"]) == 999.5  # the pricebook's name, not its id
        # Formula-looking cells are neutralised with a leading quote.
        injected = by_sku["'=HYPERLINK(1)"]
        assert injected["name"] == "'=cmd|' /C calc'!A0"
        assert injected["description"] == "'+1+2"
        assert by_sku["CHAIR-2"]["name"] == "'@SUM(A1:A9)" and by_sku["CHAIR-2"]["description"] == "'-3"
        for row in rows.values():
            for value in row.values():
                assert not value.startswith(("=", "+", "-", "@")), row

        # A re-run with an unchanged catalog uploads nothing.
        before = ftp_files(stack, "/outbound/catalog")
        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        assert ftp_files(stack, "/outbound/catalog") == before

        # A changed product is delivered again (both files change); the filter is honoured.
        seed_products(stack, [{"sku": "CHAIR-2", "name": "Bergen Chair", "tags": ["chair", "featured"]}])
        set_variable(stack, {"export_tags": ["featured"]})
        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        after = ftp_files(stack, "/outbound/catalog")
        assert all(after[name][2] != before[name][2] for name in before)
        skus = {row["sku"] for row in _read_csv(root / "catalog_20261123.csv")}
        assert skus == {"SOFA-1", "CHAIR-2"}


def _heal_after(stack, route: str, failed_requests: int, stop: threading.Event) -> None:
    """Clear the sandbox's faults once ``route`` has been refused ``failed_requests`` times."""
    while not stop.wait(0.05):
        if request_count(stack, route) >= failed_requests:
            stack.threekit.set_faults(fail_rate=0.0)
            return


def test_catalog_export_survives_a_threekit_outage(tmp_path):
    with running_stack(tmp_path) as stack:
        seed_products(stack, PRODUCTS[:1])
        dag = load_dag("threekit_catalog_export")
        route = "GET /api/products/export/:format"
        # Threekit answers 500 to everything until the first task attempt has spent its retry
        # budget (3 HTTP attempts, see the connection extras): the attempt fails, Airflow retries
        # the task, and the run converges.
        stack.threekit.set_faults(fail_rate=1.0)
        stop = threading.Event()
        healer = threading.Thread(target=_heal_after, args=(stack, route, 3, stop), daemon=True)
        healer.start()
        try:
            state, tasks = run_dag(dag, logical_date=DAY)
        finally:
            stop.set()
            healer.join()
            stack.threekit.set_faults(fail_rate=0.0)
        assert state == "success", tasks
        exported = json.loads((Path(stack.ftp.root) / "outbound/catalog/catalog_20261123.json").read_text())
        assert [entry["product"]["name"] for entry in exported] == ["Oslo Sofa"]
        assert try_numbers(dag.dag_id, "export_catalog")[0] >= 2  # failed attempt(s), then a retry
        assert request_count(stack, route) >= 4  # three refused in the failed attempt, then answered


def test_translations_export_per_locale_and_rerun(tmp_path):
    with running_stack(tmp_path, {"translations_per_locale": True}) as stack:
        seed_products(stack, PRODUCTS[:1])
        source = tmp_path / "fr_de.csv"
        source.write_text(
            '"Canonical Name","fr","de"\n"Oslo Sofa","Canapé Oslo","Sofa Oslo"\n"Red","Rouge",""\n'
        )
        with threekit_client(stack) as client:
            client.import_translations(source)
        dag = load_dag("threekit_translations_export")

        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        files = ftp_files(stack, "/outbound/translations")
        assert set(files) == {
            "translations_20261123.csv",
            "translations_fr_20261123.csv",
            "translations_de_20261123.csv",
        }
        root = Path(stack.ftp.root) / "outbound/translations"
        full = {row["Canonical Name"]: row for row in _read_csv(root / "translations_20261123.csv")}
        assert full["Oslo Sofa"]["fr"] == "Canapé Oslo" and full["Red"]["fr"] == "Rouge"
        french = _read_csv(root / "translations_fr_20261123.csv")
        assert set(french[0]) == {"Canonical Name", "fr"}
        assert {r["Canonical Name"]: r["fr"] for r in french}["Oslo Sofa"] == "Canapé Oslo"

        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        assert ftp_files(stack, "/outbound/translations") == files  # nothing re-uploaded


def test_asset_export_by_ids_and_tags_mapped_in_chunks(tmp_path):
    with running_stack(tmp_path) as stack:
        extra = [{"sku": f"LAMP-{i:02d}", "name": f"Lamp {i}", "tags": ["featured"]} for i in range(25)]
        created = seed_products(stack, PRODUCTS + extra)
        ids = {item["metadata"]["SKU"]: item["id"] for item in created}
        set_variable(stack, {"export_asset_ids": [ids["=HYPERLINK(1)"]], "export_asset_tags": ["featured"]})
        dag = load_dag("threekit_asset_export")

        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        assert tasks["export_assets"] == ["success", "success"]  # 28 assets: chunks of 25 and 3
        assert [label.split(" from ")[0] for label in map_labels(dag.dag_id, "export_assets")] == [
            "25 assets",
            "3 assets",
        ]
        files = ftp_files(stack, "/outbound/assets")
        expected = {"=HYPERLINK(1)", "SOFA-1", "CHAIR-2", *(p["sku"] for p in extra)}
        assert set(files) == {f"{ids[sku]}.json" for sku in expected}
        exported = json.loads((Path(stack.ftp.root) / f"outbound/assets/{ids['SOFA-1']}.json").read_text())
        assert exported["id"] == ids["SOFA-1"]

        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "success", tasks
        assert ftp_files(stack, "/outbound/assets") == files  # nothing re-uploaded

        # An unknown id is reported and fails the run; the known ones are still delivered.
        set_variable(stack, {"export_asset_ids": ["00000000-0000-4000-8000-000000000000", ids["SOFA-1"]]})
        state, tasks = run_dag(dag, logical_date=DAY)
        assert state == "failed"
        assert tasks["export_assets"] == ["success"] and tasks["summarise"] == ["failed"]
