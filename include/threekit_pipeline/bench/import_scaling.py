"""Import cost against catalog size: the catalog import at 20k, 100k and 400k products.

Each size is a first import of a generated catalog (products, options, prices) into a fresh
threekit-sandbox through the catalog import's own task logic (transform -> ledger delta ->
chunked import -> ledger update), as :mod:`~threekit_pipeline.bench.delta_rerun` runs it.
The rate of every size is set beside the smallest size's rate, measured in the same run
(the machine may be loaded by other work, so only ratios within one run mean something).

The ledger's share is measured twice: in the run, the time spent in its reads (``plan`` in
the transform step, ``lookup`` per chunk) divided by the products; after it, the per-chunk
lookup against the full ledger, best of five, per key. Both in microseconds; constant
across sizes means its lookups do not grow with the ledger.

Sizes: ``sizes=[...]``, else ``BENCH_IMPORT_SIZES`` (comma-separated, e.g. ``2000,10000``),
else 20,000, 100,000 and 400,000. Target: every larger size at >= 0.8x the smallest's rate.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from threekit_pipeline.bench._catalog import catalog_and_sandbox
from threekit_pipeline.bench._measure import ratio

ORG = "3d8f1b62-7a4e-4c9d-b5e0-6f2a8c1d9e47"
DEFAULT_SIZES = (20_000, 100_000, 400_000)
TARGET_RATIO = 0.8


def sizes_from_env(default: Sequence[int] = DEFAULT_SIZES) -> list[int]:
    """``BENCH_IMPORT_SIZES`` (``"20000,100000"``) as a list of ints, else ``default``."""
    raw = os.environ.get("BENCH_IMPORT_SIZES", "").strip()
    if not raw:
        return list(default)
    sizes = [int(part.replace("_", "")) for part in raw.split(",") if part.strip()]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"BENCH_IMPORT_SIZES must list positive product counts, got {raw!r}")
    return sizes


class _Timed:
    """Adds up the wall time spent in some methods of a class while installed."""

    def __init__(self, cls: type, names: Sequence[str]) -> None:
        self.cls = cls
        self.names = names
        self.seconds = 0.0
        self._saved: dict[str, Callable[..., Any]] = {}

    def __enter__(self) -> _Timed:
        for name in self.names:
            original = getattr(self.cls, name)
            self._saved[name] = original

            def timed(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.seconds += time.perf_counter() - start

            setattr(self.cls, name, timed)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for name, original in self._saved.items():
            setattr(self.cls, name, original)


def _ledger_lookup_us(env: Any, batch_size: int, samples: int = 20, repeats: int = 5) -> float:
    """Microseconds per key of the per-chunk ledger lookup, against the full ledger.

    ``samples`` chunks of ``batch_size`` keys spread over the ledger, looked up as
    :func:`~threekit_pipeline.pipelines.catalog_import.import_chunk` does; best of ``repeats``
    (the least disturbed by other work on the machine).
    """
    from threekit_pipeline.pipelines.catalog_import import LEDGER_NAME
    from threekit_pipeline.pipelines.ledger import Ledger, ledger_path

    with Ledger(ledger_path(env.config.staging_dir, LEDGER_NAME)) as ledger:
        keys = [row[0] for row in ledger._conn.execute("SELECT key FROM entries ORDER BY key")]
        step = max(1, len(keys) // samples)
        chunks = [keys[i : i + batch_size] for i in range(0, len(keys), step)][:samples]
        best = float("inf")
        # Python's cyclic collector, run by the lookups' allocations, walks the whole heap of
        # this process (which grows with the size just imported): not a cost of the ledger.
        gc.collect()
        gc.disable()
        try:
            for _ in range(repeats):
                start = time.perf_counter()
                for chunk in chunks:
                    if len(ledger.lookup(chunk)) != len(chunk):
                        raise RuntimeError("ledger lookup lost keys")
                best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    looked_up = sum(len(chunk) for chunk in chunks)
    return round(best / looked_up * 1e6, 2) if looked_up else 0.0


def import_once(work: Path, products: int, batch_size: int = 1000) -> dict[str, Any]:
    """One first import of ``products`` generated products into a fresh sandbox; its figures."""
    from threekit_pipeline.pipelines import catalog_import
    from threekit_pipeline.pipelines.config import load_config
    from threekit_pipeline.pipelines.ledger import Ledger
    from threekit_pipeline.pipelines.runtime import TaskEnv

    with catalog_and_sandbox(work, products, ORG) as (files, server, client):
        config = load_config({"staging_dir": str(work / "staging"), "batch_size": batch_size})
        env = TaskEnv(dag_id=catalog_import.DAG_ID, run_id="bench_scaling", config=config, logical_date=datetime.now(UTC))
        collected = catalog_import.collected_from_local(env, files.values())
        # Module imports (pandas and the transform) happen once per process: not in any size's time.
        import threekit_pipeline.transform  # noqa: F401

        counts = {"created": 0, "updated": 0, "rejected": 0}
        with _Timed(Ledger, ("plan", "lookup")) as ledger_reads:
            start = time.perf_counter()
            planned = catalog_import.transform_and_plan(
                env, collected, pricebooks=client.list_pricebooks()
            )
            planned_at = time.perf_counter()
            for chunk in planned["chunks"]:
                result = catalog_import.import_chunk(env, chunk, client)
                for key in counts:
                    counts[key] += result[key]
            seconds = time.perf_counter() - start
        items = server.stats()["items"]
    lookup_us = _ledger_lookup_us(env, batch_size)
    if counts["created"] != products or items != products:
        raise RuntimeError(f"import scaling: {products} products, {counts} reported, {items} items in the sandbox")
    return {
        "products": products,
        "seconds": round(seconds, 2),
        "transform_plan_s": round(planned_at - start, 2),
        "import_s": round(seconds - (planned_at - start), 2),
        "products_per_s": round(products / seconds, 1),
        "ledger_read_us_per_product": round(ledger_reads.seconds / products * 1e6, 1),
        "ledger_lookup_us_per_key": lookup_us,
        "chunks": len(planned["chunks"]),
    }


def run(work_dir: Path, sizes: Sequence[int] | None = None, batch_size: int = 1000) -> dict[str, Any]:
    sizes = sorted(sizes) if sizes else sizes_from_env()
    runs: dict[str, dict[str, Any]] = {}
    for products in sizes:
        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            runs[str(products)] = import_once(Path(tmp), products, batch_size)
        print(f"   import_scaling {products}: {json.dumps(runs[str(products)])}", file=sys.stderr, flush=True)
    base = runs[str(sizes[0])]
    for figures in runs.values():
        figures["rate_ratio"] = ratio(figures["products_per_s"], base["products_per_s"])
    worst = min(figures["rate_ratio"] for figures in runs.values())
    return {
        "sizes": list(sizes),
        "batch_size": batch_size,
        "runs": runs,
        "worst_rate_ratio": worst,
        "target": f"every size at >= {TARGET_RATIO}x the {sizes[0]}-product rate",
        "met": worst >= TARGET_RATIO,
    }


if __name__ == "__main__":
    print(json.dumps(run(Path(tempfile.gettempdir())), indent=2))
