"""Input defects that only show through the catalog import: pick-up, ordering, what the analyst sees.

Each run goes through the task functions with a real ftp-sandbox and threekit-sandbox; the
sensor's answer is computed with the sensor's own completeness policy over the real
listing, so the file-name matching under test is the one the DAG uses. The shared case
files (``../shared/cases/input-defects`` beside the clone) are used when present, and
files generated here in the same shape always.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from threekit_pipeline.airflow.triggers.ftp import make_policy
from threekit_pipeline.ftp.client import FtpClient
from threekit_pipeline.ftp.completeness import complete_files
from threekit_pipeline.pipelines import catalog_import
from threekit_pipeline.pipelines.config import load_config
from threekit_pipeline.pipelines.runtime import TaskEnv
from threekit_pipeline.threekit.client import ThreekitClient
from threekit_pipeline.transform import load_mapping

CASES = Path(__file__).resolve().parents[2] / ".." / "shared" / "cases" / "input-defects"
INBOUND = "/inbound/catalog"


def case_file(folder: str, name: str) -> bytes:
    path = CASES / folder / name
    if not path.is_file():
        pytest.skip(f"shared input-defect cases not found at {CASES.resolve()} (CI puts shared/ beside the clone)")
    return path.read_bytes()


class Pipeline:
    """Runs the catalog import task by task against the sandboxes, one run per call."""

    def __init__(self, tmp_path: Path, ftp_sandbox, threekit_sandbox, first_run: int = 0, **variable):
        self.tmp_path = tmp_path
        self.root = Path(ftp_sandbox.root)
        self.ftp_settings = ftp_sandbox.settings()
        self.threekit = threekit_sandbox
        self.variable = {"staging_dir": str(tmp_path / "staging"), "batch_size": 50, **variable}
        self.runs = first_run

    def put(self, name: str, data: bytes, *, modified: float | None = None) -> Path:
        path = self.root / INBOUND.strip("/") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if modified is not None:
            os.utime(path, (modified, modified))
        return path

    def env(self, run_type: str = "manual", interval: tuple[datetime, datetime] | None = None) -> TaskEnv:
        self.runs += 1
        moment = datetime(2026, 11, 23, 10, self.runs, tzinfo=UTC)
        return TaskEnv(
            dag_id=catalog_import.DAG_ID,
            run_id=f"{run_type}__{moment.isoformat()}",
            config=load_config(self.variable),
            run_type=run_type,
            logical_date=moment if interval is None else interval[0],
            data_interval_start=None if interval is None else interval[0],
            data_interval_end=None if interval is None else interval[1],
        )

    def sensor_output(self, ftp: FtpClient, env: TaskEnv) -> list | None:
        policy = make_policy(
            catalog_import.mapping_patterns(load_mapping(env.config.mapping)), 0, env.config.marker_suffixes
        )
        listing = ftp.list_dir(INBOUND)
        _, snapshot = complete_files(None, listing, policy, 0)
        complete, _ = complete_files(snapshot, listing, policy, 1)
        return [[{"path": f.path, "size": f.size} for f in complete]] if complete else None

    def run(self, run_type: str = "manual", interval=None) -> dict | None:
        """One run; None when it had nothing to process. Returns finalize's result plus the report."""
        env = self.env(run_type, interval)
        with FtpClient(self.ftp_settings) as ftp:
            ftp.makedirs(INBOUND)
            sensor_output = None if interval else self.sensor_output(ftp, env)
            try:
                collected = catalog_import.collect_files(env, sensor_output, ftp)
            except catalog_import.NothingToProcess:
                return None
            with self.client() as client:
                # As the DAG does: the org's pricebooks, read once per run, turn names into ids.
                planned = catalog_import.transform_and_plan(env, collected, pricebooks=client.list_pricebooks())
                for chunk in planned["chunks"]:
                    catalog_import.import_chunk(env, chunk, client)
            result = catalog_import.finalize(env, ftp)
        report = json.loads((self.root / result["report"].lstrip("/")).read_text())
        return {**result, "report": report}

    def client(self) -> ThreekitClient:
        return ThreekitClient(self.threekit.base_url, self.threekit.token, self.threekit.org_id)

    def product(self, sku: str) -> dict | None:
        """What Threekit holds for ``sku`` (one item at most: an SKU is never duplicated)."""
        found = [item for item in self.threekit.items() if (item.get("metadata") or {}).get("SKU") == sku]
        assert len(found) <= 1, f"{sku} exists {len(found)} times"
        if not found:
            return None
        # Threekit holds pricebook ids; the assertions read the names the files gave.
        names = {book["id"]: book["name"] for book in self.threekit.pricebooks()}
        item = json.loads(json.dumps(found[0]))
        for attribute in item.get("attributes") or []:
            if attribute.get("type") == "Pricing":
                for value in attribute.get("values") or []:
                    value["pricebook"] = names.get(value["pricebook"], value["pricebook"])
        return item

    def inbound(self) -> list[str]:
        folder = self.root / INBOUND.strip("/")
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    def archived(self) -> list[str]:
        return sorted(p.name for p in (self.root / "archive" / "catalog").rglob("*") if p.is_file())


def pricing(product: dict) -> list:
    for attribute in product.get("attributes", []):
        if attribute.get("type") == "Pricing" or attribute.get("name") == "Pricing":
            return attribute.get("values") or []
    return []


def statuses(result: dict) -> dict[str, str]:
    return {f["file"]: f["status"] for f in result["report"]["files"]}


PRODUCTS = b"sku,name,description\nSOFA-001,Oslo Sofa,Three-seat sofa\nCHAIR-001,Bergen Chair,Dining chair\nTABLE-001,Turku Table,Extendable\n"
PRICES = b"sku,pricebook,currency,price\nSOFA-001,EU Retail,EUR,1299\nCHAIR-001,EU Retail,EUR,189.5\n"


@pytest.fixture
def pipeline(tmp_path, ftp_sandbox, threekit_sandbox):
    return Pipeline(tmp_path, ftp_sandbox, threekit_sandbox)


# --- 7. Pick-up and ordering ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["PRODUCTS_20261123.CSV", "Products_20261123.Csv"])
def test_upper_case_file_names_are_picked_up_alone_and_with_their_batch(pipeline, name):
    try:
        products = case_file("uppercase-file-name-on-ftp", "PRODUCTS_20261123.CSV")
    except pytest.skip.Exception:
        products = PRODUCTS
    pipeline.put(name, products)
    first = pipeline.run()
    assert first is not None and statuses(first) == {name: "imported"}
    assert pipeline.product("SOFA-001")["name"] == "Oslo Sofa"
    assert pipeline.inbound() == []

    pipeline.put(name, products)
    pipeline.put("PRICES_20261123.csv", PRICES)
    second = pipeline.run()
    assert second is not None and set(statuses(second)) == {name, "PRICES_20261123.csv"}
    assert pricing(pipeline.product("CHAIR-001")) == [{"pricebook": "EU Retail", "currencies": {"EUR": 189.5}}]
    assert pipeline.inbound() == []


def test_a_marker_is_consumed_with_its_file_and_a_stale_one_does_not_count(tmp_path, ftp_sandbox, threekit_sandbox):
    pipeline = Pipeline(tmp_path, ftp_sandbox, threekit_sandbox, marker_suffixes=[".done"])
    try:
        day1 = case_file("stale-done-marker", "day1_products.csv")
        day2 = case_file("stale-done-marker", "day2_products_partial.csv")
    except pytest.skip.Exception:
        day1 = b"sku,name,description\nSOFA-001,Oslo Sofa,Three-seat sofa\nCHAIR-001,Bergen Chair,Dining chair\n"
        day2 = b"sku,name,description\nSOFA-001,Oslo Sofa 2,new fabric\nCHAIR-001,Berg"
    pipeline.put("products.csv", day1)
    pipeline.put("products.csv.done", b"")
    assert pipeline.run() is not None
    assert pipeline.inbound() == []
    assert "products.csv.done" in pipeline.archived()

    # The next delivery is still uploading: no marker of its own yet.
    pipeline.put("products.csv", day2)
    assert pipeline.run() is None
    assert pipeline.product("CHAIR-001")["name"] == "Bergen Chair"
    assert pipeline.product("SOFA-001")["name"] == "Oslo Sofa"

    # A marker older than its data file belongs to an earlier delivery.
    data = pipeline.root / INBOUND.strip("/") / "products.csv"
    pipeline.put("products.csv.done", b"", modified=data.stat().st_mtime - 3600)
    assert pipeline.run() is None
    assert pipeline.product("CHAIR-001")["name"] == "Bergen Chair"


def test_a_late_older_batch_is_held_and_a_replay_applies_it(pipeline):
    try:
        newer = case_file("late-older-batch", "products_20261124.csv")
        older = case_file("late-older-batch", "products_20261123.csv")
    except pytest.skip.Exception:
        newer = b"sku,name,description\nSOFA-001,Oslo Sofa (2027 cover),current\n"
        older = b"sku,name,description\nSOFA-001,Oslo Sofa (old cover),re-sent\n"
    pipeline.put("products_20261124.csv", newer)
    assert pipeline.run() is not None
    assert pipeline.product("SOFA-001")["name"] == "Oslo Sofa (2027 cover)"

    pipeline.put("products_20261123.csv", older + b"NEW-001,Brand new,only in the older file\n")
    late = pipeline.run()
    assert pipeline.product("SOFA-001")["name"] == "Oslo Sofa (2027 cover)"
    assert pipeline.product("NEW-001")["name"] == "Brand new"
    assert statuses(late) == {"products_20261123.csv": "partially imported"}
    [held] = [r for r in late["report"]["rejected"] if r["stage"] == "held"]
    assert held["sku"] == "SOFA-001" and "older than what Threekit holds" in held["reason"]
    assert late["report"]["counts"]["held_older"] == 1

    replay = pipeline.run("backfill", (datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC)))
    assert replay is not None
    assert pipeline.product("SOFA-001")["name"].startswith("Oslo Sofa (old cover)")


def test_a_price_file_changes_only_the_pricebooks_and_currencies_it_carries(pipeline):
    try:
        products = case_file("single-pricebook-price-file", "products_20261122.csv")
        day1 = case_file("single-pricebook-price-file", "prices_20261123.csv")
        day2 = case_file("single-pricebook-price-file", "prices_us_20261124.csv")
    except pytest.skip.Exception:
        products = b"sku,name\nSOFA-001,Oslo Sofa\n"
        day1 = b"sku,pricebook,currency,price\nSOFA-001,EU Retail,EUR,1299.00\nSOFA-001,EU Retail,CHF,1389.50\nSOFA-001,US Retail,USD,1399.99\n"
        day2 = b"sku,pricebook,currency,price\nSOFA-001,US Retail,USD,1349.00\n"
    pipeline.put("products_20261122.csv", products)
    pipeline.put("prices_20261123.csv", day1)
    assert pipeline.run() is not None
    pipeline.put("prices_us_20261124.csv", day2)
    assert pipeline.run() is not None
    assert pricing(pipeline.product("SOFA-001")) == [
        {"pricebook": "EU Retail", "currencies": {"CHF": 1389.5, "EUR": 1299}},
        {"pricebook": "US Retail", "currencies": {"USD": 1349}},
    ]
    # A currency alone changes only that currency.
    pipeline.put("prices_chf_20261125.csv", b"sku,pricebook,currency,price\nSOFA-001,EU Retail,CHF,1400\n")
    assert pipeline.run() is not None
    assert pricing(pipeline.product("SOFA-001")) == [
        {"pricebook": "EU Retail", "currencies": {"CHF": 1400, "EUR": 1299}},
        {"pricebook": "US Retail", "currencies": {"USD": 1349}},
    ]


# --- 8. What the analyst sees ---------------------------------------------------------------------


def test_variable_max_error_ratio_wins_and_files_are_partially_imported_or_quarantined(tmp_path, ftp_sandbox, threekit_sandbox):
    half_bad = b"sku,name\nOK-1,Fine\nBAD-1,\n"
    strict = Pipeline(tmp_path / "strict", ftp_sandbox, threekit_sandbox)
    strict.put("products_20261123.csv", half_bad)
    result = strict.run()
    assert statuses(result) == {"products_20261123.csv": "rejected"}  # the mapping's 5 %

    lenient = Pipeline(tmp_path / "lenient", ftp_sandbox, threekit_sandbox, first_run=30, max_error_ratio=1.0)
    lenient.put("products_20261124.csv", half_bad)
    lenient.put("products_extra_20261124.csv", b"sku,name\nBAD-2,\nBAD-3,\n")
    result = lenient.run()
    assert statuses(result) == {"products_20261124.csv": "partially imported", "products_extra_20261124.csv": "rejected"}
    assert lenient.product("OK-1")["name"] == "Fine"
    assert result["report"]["counts"]["files_partially_imported"] == 1
    rejected_dir = lenient.root / "rejected" / "catalog"
    assert (rejected_dir / "products_extra_20261124.csv").exists()
    errors = (rejected_dir / "products_extra_20261124.csv.errors.csv").read_text()
    assert "BAD-2" in errors and "BAD-3" in errors
    assert {r["sku"] for r in result["report"]["rejected"]} >= {"BAD-1", "BAD-2", "BAD-3"}


def test_a_metadata_key_keeps_the_type_its_first_batch_gave_it(tmp_path, ftp_sandbox, threekit_sandbox):
    pipeline = Pipeline(tmp_path, ftp_sandbox, threekit_sandbox, max_error_ratio=1.0)
    pipeline.put("products_20261123.csv", b"sku,name,meta:Size,meta:EAN\nP-1,One,10,4006381333931\n")
    assert pipeline.run() is not None
    pipeline.put("products_20261124.csv", b"sku,name,meta:Size,meta:EAN\nP-1,One,10A,0400638133393\nP-2,Two,12,4006381333948\n")
    result = pipeline.run()
    metadata = pipeline.product("P-2")["metadata"]
    assert metadata["Size"] == 12 and not isinstance(metadata["Size"], str)
    assert metadata["EAN"] == "4006381333948"
    assert pipeline.product("P-1")["metadata"]["Size"] == 10
    [error] = [r for r in result["report"]["rejected"] if r["sku"] == "P-1"]
    assert error["column"] == "meta:Size" and "is Number" in error["reason"]
    assert statuses(result) == {"products_20261124.csv": "partially imported"}
