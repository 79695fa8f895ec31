"""Import throughput into threekit-sandbox: the project's importer against a minimal loop.

Both sides send the same entries in the same batches (multipart JSON array, ``sync=false``)
to a fresh sandbox each and wait for every job to finish. The minimal loop is what a
hand-written script would do: post a batch, poll its job, read its result file, next batch.
The project's importer adds retries, per-entry reconciliation, the outcome journal and
bounded concurrency. Target: at least 0.8x the minimal loop's throughput.
"""

from __future__ import annotations

import io
import json
import secrets
import tempfile
import time
from pathlib import Path

import requests

from threekit_pipeline.bench._measure import ratio

ORG = "5a1f6c2e-8f3b-4d7a-9c1e-2b4d6f8a0c13"


def make_entries(count: int) -> list[dict]:
    """Realistic catalog entries: SKU query, metadata, a String option and a Pricing attribute."""
    from threekit_pipeline.sandbox.threekit_service import pricebook_id

    retail = pricebook_id(ORG, "EU Retail")  # a pricebook the sandbox org is seeded with
    entries = []
    for i in range(count):
        sku = f"BENCH-{i:07d}"
        entries.append(
            {
                "query": {"metadata": [{"name": "SKU", "defaultValue": sku, "type": "String"}]},
                "product": {
                    "name": f"Bench chair {i}",
                    "type": "item",
                    "description": "Stackable chair with a powder-coated steel frame.",
                    "tags": ["bench", f"family-{i % 50}"],
                    "keywords": ["chair"],
                    "metadata": [
                        {"name": "SKU", "defaultValue": sku, "type": "String"},
                        {"name": "Width", "defaultValue": 40 + i % 20, "type": "Number"},
                    ],
                    "attributes": [
                        {"type": "String", "name": "Color", "values": ["Black", "White", "Oak"], "defaultValue": "Black"},
                        {
                            "type": "Pricing",
                            "name": "Pricing",
                            "values": [{"pricebook": retail, "currencies": {"EUR": 99.0 + i % 7, "USD": 109.0}}],
                            "defaultValue": {},
                        },
                    ],
                },
            }
        )
    return entries


def minimal_loop(base_url: str, token: str, batches: list[list[dict]], poll: float) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    for batch in batches:
        body = io.BytesIO(json.dumps(batch).encode())
        response = session.post(
            f"{base_url}/api/products/import",
            params={"orgId": ORG},
            files={"file": ("items.json", body, "application/json")},
            data={"sync": "false"},
            timeout=120,
        )
        response.raise_for_status()
        job_id = response.json()["jobId"]
        while session.get(f"{base_url}/api/jobs/{job_id}", timeout=60).json()["status"] != "stopped":
            time.sleep(poll)
        runs = session.get(f"{base_url}/api/jobs/runs", params={"jobId": job_id}, timeout=60).json()["runs"]
        file_id = runs[0]["results"]["files"][0]["id"]
        session.get(f"{base_url}/api/files/{file_id}/content", timeout=60).raise_for_status()


def run(work_dir: Path, products: int = 20_000, batch_size: int = 500, job_delay_ms: int = 20) -> dict:
    from threekit_pipeline.sandbox.threekit_process import ThreekitSandboxProcess
    from threekit_pipeline.threekit.client import ThreekitClient
    from threekit_pipeline.threekit.importer import import_jsonl

    entries = make_entries(products)
    batches = [entries[i : i + batch_size] for i in range(0, len(entries), batch_size)]
    poll = 0.05
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        tmp_path = Path(tmp)
        jsonl = tmp_path / "entries.jsonl"
        with jsonl.open("w") as fh:
            for entry in entries:
                fh.write(json.dumps(entry, separators=(",", ":")) + "\n")

        def fresh(name: str) -> ThreekitSandboxProcess:
            return ThreekitSandboxProcess(
                data_dir=tmp_path / name, token=secrets.token_hex(16), org_id=ORG, job_delay_ms=job_delay_ms
            ).start()

        timings: dict[str, list[float]] = {"minimal": [], "ours": []}
        for attempt in range(2):
            base = fresh(f"minimal-{attempt}")
            try:
                start = time.perf_counter()
                minimal_loop(base.base_url, base.token, batches, poll)
                timings["minimal"].append(time.perf_counter() - start)
                minimal_items = base.stats()["items"]
            finally:
                base.stop()
            ours = fresh(f"ours-{attempt}")
            try:
                client = ThreekitClient(ours.base_url, ours.token, ORG)
                start = time.perf_counter()
                summary = import_jsonl(
                    client, jsonl, tmp_path / f"outcome-{attempt}.jsonl", batch_size=batch_size, poll_interval=poll
                )
                timings["ours"].append(time.perf_counter() - start)
                ours_items = ours.stats()["items"]
            finally:
                ours.stop()
            if summary.created != products or ours_items != products or minimal_items != products:
                raise RuntimeError(
                    f"import bench: expected {products} items, got ours={ours_items} "
                    f"(created {summary.created}), minimal={minimal_items}"
                )
    best_ours, best_min = min(timings["ours"]), min(timings["minimal"])
    return {
        "products": products,
        "batch_size": batch_size,
        "ours_s": round(best_ours, 3),
        "minimal_loop_s": round(best_min, 3),
        "ours_products_per_s": round(products / best_ours, 1),
        "minimal_products_per_s": round(products / best_min, 1),
        "throughput_ratio": ratio(best_min, best_ours),
        "target": "throughput >= 0.8x the minimal loop",
        "met": best_min / best_ours >= 0.8,
    }


if __name__ == "__main__":
    print(json.dumps(run(Path(tempfile.gettempdir())), indent=2))
