"""Transform benchmark: ``transform_files`` beside the floor of merely reading and writing.

The workload is a generated canonical catalog: 200,000 products, 1,000,000 option rows,
400,000 price rows and part references for 10% of the products.

* floor: read the same files with pandas (``pd.read_csv`` defaults) and write as many JSON
  lines as there are products (``json.dumps`` of each product row);
* transform: :func:`threekit_pipeline.transform.transform_files` with the canonical mapping
  (validation, grouping, schema check, hashes, errors CSV).

Each runs in a fresh interpreter so its peak RSS is its own; seconds are measured inside the
child around the work (interpreter start and imports excluded, the same for both).
Target: transform at most 3x the floor, under 4 GB peak RSS.

Run: ``python -m threekit_pipeline.bench.transform [WORK_DIR] [--products N]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from threekit_pipeline.bench._measure import python_child, ratio

TARGET_RATIO = 3.0
TARGET_RSS_MB = 4096.0

_FLOOR = """
import json, sys, time
import pandas as pd
out = sys.argv[1]
paths = sys.argv[2:]
started = time.perf_counter()
frames = [pd.read_csv(path) for path in paths]
rows = frames[0].to_dict("records")
with open(out, "w", encoding="utf-8") as handle:
    for row in rows:
        handle.write(json.dumps(row))
        handle.write("\\n")
print(json.dumps({"seconds": time.perf_counter() - started, "lines": len(rows), "rows": sum(len(f) for f in frames)}))
"""

_TRANSFORM = """
import json, sys, time
from pathlib import Path
from threekit_pipeline.transform import load_mapping, transform_files
out = Path(sys.argv[1])
paths = [Path(p) for p in sys.argv[2:]]
mapping = load_mapping("canonical")
started = time.perf_counter()
result = transform_files(mapping, paths, out)
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "lines": result.products_written,
    "rows": result.rows_read,
    "attributes": result.attributes_written,
    "rows_rejected": result.rows_rejected,
    "files_rejected": len(result.files_rejected),
}))
"""


def run(
    work_dir: Path,
    products: int = 200_000,
    options_per_product: float = 5,
    prices_per_product: float = 2,
    parts_ratio: float = 0.1,
) -> dict:
    """Generate the catalog under ``work_dir``, measure floor and transform; return the figures."""
    from threekit_pipeline.samples.catalog import generate_catalog

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-transform-", dir=work_dir) as tmp:
        tmp_path = Path(tmp)
        generated = generate_catalog(
            tmp_path / "input",
            products=products,
            options_per_product=options_per_product,
            prices_per_product=prices_per_product,
            parts_ratio=parts_ratio,
            locales=(),
        )
        files = [str(generated[name]) for name in ("products", "options", "prices", "parts")]
        input_bytes = sum(Path(f).stat().st_size for f in files)

        floor = python_child(_FLOOR, str(tmp_path / "floor.jsonl"), *files)
        transform = python_child(_TRANSFORM, str(tmp_path / "transform.jsonl"), *files)
        floor_out = json.loads(floor.stdout.strip().splitlines()[-1])
        transform_out = json.loads(transform.stdout.strip().splitlines()[-1])
        output_bytes = (tmp_path / "transform.jsonl").stat().st_size

    transform_s = round(transform_out["seconds"], 3)
    floor_s = round(floor_out["seconds"], 3)
    result = {
        "products": products,
        "option_rows": round(products * options_per_product),
        "price_rows": round(products * prices_per_product),
        "rows_read": transform_out["rows"],
        "input_mb": round(input_bytes / 1e6, 1),
        "output_mb": round(output_bytes / 1e6, 1),
        "products_written": transform_out["lines"],
        "attributes_written": transform_out["attributes"],
        "rows_rejected": transform_out["rows_rejected"],
        "transform_s": transform_s,
        "floor_s": floor_s,
        "ratio": ratio(transform_s, floor_s),
        "transform_child_wall_s": round(transform.seconds, 3),
        "floor_child_wall_s": round(floor.seconds, 3),
        "transform_peak_rss_mb": round(transform.peak_rss_mb, 1),
        "floor_peak_rss_mb": round(floor.peak_rss_mb, 1),
        "target": f"transform <= {TARGET_RATIO:g}x floor and peak RSS < {TARGET_RSS_MB / 1024:g} GB",
    }
    result["met"] = (
        result["products_written"] == products
        and result["ratio"] <= TARGET_RATIO
        and result["transform_peak_rss_mb"] < TARGET_RSS_MB
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dir", nargs="?", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--products", type=int, default=200_000)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.work_dir, products=args.products), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
