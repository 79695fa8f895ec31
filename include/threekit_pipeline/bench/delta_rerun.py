"""Delta re-run: an unchanged 100,000-product catalog, imported once, then processed again.

Both runs go through the catalog import's own task logic (transform -> ledger delta ->
chunked import -> ledger update) against a threekit-sandbox. The second run must send
0 products and take at most 10% of the first run's time (the baseline measured here).
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from threekit_pipeline.bench._catalog import catalog_and_sandbox
from threekit_pipeline.bench._measure import ratio

ORG = "7c2e9a41-3b5d-4f6e-8a1c-9d0b2e4f6a85"


def _one_run(run_id: str, staging: Path, files: dict[str, Path], client) -> tuple[float, dict]:
    from threekit_pipeline.pipelines import catalog_import
    from threekit_pipeline.pipelines.config import load_config
    from threekit_pipeline.pipelines.runtime import TaskEnv

    config = load_config({"staging_dir": str(staging), "batch_size": 1000})
    env = TaskEnv(dag_id=catalog_import.DAG_ID, run_id=run_id, config=config, logical_date=datetime.now(UTC))
    start = time.perf_counter()
    collected = catalog_import.collected_from_local(env, files.values())
    # As the DAG does: the org's pricebooks, read once per run, turn price rows' pricebook
    # names into ids (without them every entry naming a pricebook is refused).
    planned = catalog_import.transform_and_plan(
        env, collected, pricebooks=client.list_pricebooks()
    )
    sent = rejected = 0
    for chunk in planned["chunks"]:
        result = catalog_import.import_chunk(env, chunk, client)
        sent += result["total"]
        rejected += result["rejected"]
    figures = {k: planned[k] for k in ("products_distinct", "to_send", "unchanged_skipped")}
    return time.perf_counter() - start, {**figures, "sent": sent, "rejected": rejected}


def run(work_dir: Path, products: int = 100_000) -> dict:
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        tmp_path = Path(tmp)
        with catalog_and_sandbox(tmp_path, products, ORG) as (files, server, client):
            first_s, first = _one_run("bench_first", tmp_path / "staging", files, client)
            second_s, second = _one_run("bench_second", tmp_path / "staging", files, client)
            items = server.stats()["items"]
    if first["rejected"] or items != products:
        # Timing an import that Threekit refused would measure the refusal path, not the import.
        raise RuntimeError(f"delta bench: {first['rejected']} entries rejected, {items} of {products} items landed")
    return {
        "products": products,
        "first_run_s": round(first_s, 3),
        "first_run_sent": first["sent"],
        "rerun_s": round(second_s, 3),
        "rerun_sent": second["sent"],
        "rerun_unchanged_skipped": second["unchanged_skipped"],
        "items_in_threekit": items,
        "ratio": ratio(second_s, first_s),
        "target": "rerun sends 0 products and takes <= 0.10x the first run",
        "met": second["sent"] == 0 and second_s <= 0.10 * first_s,
    }


if __name__ == "__main__":
    import sys

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(json.dumps(run(Path(tempfile.gettempdir()), count), indent=2))
