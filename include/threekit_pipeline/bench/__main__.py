"""``make bench``: every figure beside a baseline measured in the same run, with the ratio.

Results are printed as a table and written to ``.bench/results-<UTC time>.json``.
``--only NAME`` runs some benchmarks; ``--quick`` uses small sizes (a smoke run, not for the record).
``--sizes 20000,100000`` (or ``BENCH_IMPORT_SIZES``) sets the catalog sizes of ``import_scaling``
(default 20,000, 100,000 and 400,000 products; ``--quick``: 2,000 and 10,000).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

# name -> (module, full-size kwargs, quick kwargs)
BENCHMARKS: dict[str, tuple[str, dict, dict]] = {
    "dag_parse": ("threekit_pipeline.bench.dag_parse", {}, {}),
    "transform": ("threekit_pipeline.bench.transform", {}, {"products": 5_000}),
    "import_throughput": ("threekit_pipeline.bench.import_throughput", {}, {"products": 2_000}),
    "delta_rerun": ("threekit_pipeline.bench.delta_rerun", {}, {"products": 5_000}),
    "import_scaling": ("threekit_pipeline.bench.import_scaling", {}, {"sizes": [2_000, 10_000]}),
    "ftp_transfer": ("threekit_pipeline.bench.ftp_transfer", {}, {"size_mib": 64, "repetitions": 3}),
    "ftp_listing": ("threekit_pipeline.bench.ftp_listing", {}, {"files": 200}),
    "sftp_transfer": ("threekit_pipeline.bench.sftp_transfer", {}, {"size_mib": 32, "repetitions": 3}),
    "object_staging": ("threekit_pipeline.bench.object_staging", {}, {"products": 2_000}),
}

# How each result is shown: (figure key, baseline key, ratio key, unit).
ROWS: dict[str, list[tuple[str, str, str, str]]] = {
    "dag_parse": [("parse_s", "empty_dag_parse_s", "ratio", "s")],
    "transform": [("transform_s", "floor_s", "ratio", "s"), ("transform_peak_rss_mb", "floor_peak_rss_mb", "", "MB")],
    "import_throughput": [("ours_products_per_s", "minimal_products_per_s", "throughput_ratio", "products/s")],
    "delta_rerun": [("rerun_s", "first_run_s", "ratio", "s"), ("rerun_sent", "first_run_sent", "", "products")],
    "import_scaling": [],  # one row per size, see _scaling_rows
    "object_staging": [("object_staging_s", "local_staging_s", "ratio", "s"), ("stored_mib", "", "", "MiB")],
    "ftp_transfer": [
        ("download.ours_mib_s", "download.curl_mib_s", "download.throughput_ratio", "MiB/s"),
        ("download.ours_transfer_s", "download.curl_s", "download.transfer_ratio", "s, transfer only"),
        ("download.ours_cpu_s", "download.curl_cpu_s", "download.cpu_ratio", "CPU s"),
        ("download.ours_peak_rss_mb", "", "", "MB"),
        ("upload.ours_mib_s", "upload.curl_mib_s", "upload.throughput_ratio", "MiB/s"),
        ("upload.ours_transfer_s", "upload.curl_s", "upload.transfer_ratio", "s, transfer only"),
        ("upload.ours_cpu_s", "upload.curl_cpu_s", "upload.cpu_ratio", "CPU s"),
        ("upload.ours_peak_rss_mb", "", "", "MB"),
    ],
    "ftp_listing": [
        ("list.round_trips", "mlsd.round_trips", "round_trip_ratio", "round trips"),
        ("list.seconds", "mlsd.seconds", "", "s"),
        ("list.seconds_at_50ms_rtt", "nlst_size_mdtm.seconds_at_50ms_rtt", "", "s @50ms"),
        ("nlst_size_mdtm.round_trips", "", "", "round trips"),
    ],
    "sftp_transfer": [
        ("download.ours_mib_s", "download.openssh_mib_s", "download.throughput_ratio", "MiB/s"),
        ("download.ours_transfer_s", "download.openssh_s", "download.transfer_ratio", "s, transfer only"),
        ("download.ours_cpu_s", "download.openssh_cpu_s", "download.cpu_ratio", "CPU s"),
        ("upload.ours_mib_s", "upload.openssh_mib_s", "upload.throughput_ratio", "MiB/s"),
        ("upload.ours_transfer_s", "upload.openssh_s", "upload.transfer_ratio", "s, transfer only"),
        ("upload.ours_cpu_s", "upload.openssh_cpu_s", "upload.cpu_ratio", "CPU s"),
        ("upload.ours_peak_rss_mb", "", "", "MB"),
    ],
}


def _scaling_rows(result: dict) -> list[tuple[str, object, object, object]]:
    """``import_scaling``: products/s per size beside the smallest size's, and the ledger's share."""
    runs = result.get("runs") or {}
    sizes = result.get("sizes") or []
    base = runs.get(str(sizes[0]), {}) if sizes else {}
    rows = []
    for size in sizes:
        figures = runs.get(str(size), {})
        rows.append(
            (f"products/s @ {size:,}", figures.get("products_per_s"), base.get("products_per_s"),
             figures.get("rate_ratio"))
        )
    for size in sizes:
        figures = runs.get(str(size), {})
        rows.append((f"ledger reads us/product @ {size:,}", figures.get("ledger_read_us_per_product"), "", ""))
    for size in sizes:
        figures = runs.get(str(size), {})
        rows.append((f"ledger lookup us/key @ {size:,}", figures.get("ledger_lookup_us_per_key"), "", ""))
    return rows


def _get(result: dict, dotted: str):
    value = result
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


_RUNNER = r"""
import json, sys
from pathlib import Path
module = __import__(sys.argv[1], fromlist=["run"])
result = module.run(Path(sys.argv[2]), **json.loads(sys.argv[3]))
print("RESULT " + json.dumps(result))
"""


def _run_isolated(module_name: str, work: Path, kwargs: dict) -> dict:
    """Run one benchmark in a fresh interpreter.

    Peak RSS of a child process includes what its parent had mapped when it forked, so each
    benchmark starts from a small parent: one benchmark's imports (pandas, pyarrow) never
    inflate the next one's memory figures.
    """
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, module_name, str(work), json.dumps(kwargs)],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{module_name} exited {proc.returncode} (its error output is above)")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--out", type=Path, default=REPO / ".bench")
    parser.add_argument(
        "--sizes",
        help="import_scaling catalog sizes, comma-separated (default: BENCH_IMPORT_SIZES or 20000,100000,400000)",
    )
    args = parser.parse_args(argv)
    sizes = [int(part.replace("_", "")) for part in args.sizes.split(",") if part.strip()] if args.sizes else None

    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    work.mkdir(exist_ok=True)
    results: dict[str, dict] = {}
    for name in args.only or list(BENCHMARKS):
        module_name, full, quick = BENCHMARKS[name]
        print(f"== {name} ...", flush=True)
        started = time.perf_counter()
        try:
            kwargs = dict(quick if args.quick else full)
            if name == "import_scaling" and sizes:
                kwargs["sizes"] = sizes
            results[name] = _run_isolated(module_name, work, kwargs)
        except Exception as exc:  # one failing benchmark must not hide the others' figures
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "met": False}
        results[name]["wall_s"] = round(time.perf_counter() - started, 1)
        print(f"   done in {results[name]['wall_s']} s", flush=True)

    print()
    print(f"{'benchmark':<18} {'figure':<44} {'value':>12} {'baseline':>12} {'ratio':>8}  target met")
    for name, result in results.items():
        if "error" in result:
            print(f"{name:<18} ERROR: {result['error']}")
            continue
        if name == "import_scaling":
            for label, value, base, ratio in _scaling_rows(result):
                print(
                    f"{name:<18} {label:<34} {value!s:>12} {'' if base is None else base!s:>12} "
                    f"{'' if ratio is None else ratio!s:>8}  {result.get('met')}"
                )
        for figure, baseline, ratio_key, unit in ROWS.get(name, []):
            value = _get(result, figure)
            base = _get(result, baseline) if baseline else None
            ratio = _get(result, ratio_key) if ratio_key else None
            print(
                f"{name:<18} {figure + ' (' + unit + ')':<44} {value!s:>12} {'' if base is None else base!s:>12} "
                f"{'' if ratio is None else ratio!s:>8}  {result.get('met')}"
            )
        print(f"{'':<18} target: {result.get('target', '')}")
    record = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "results": results,
    }
    path = args.out / f"results-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"\nresults written to {path}")
    missed = [name for name, r in results.items() if not r.get("met") and "error" not in r]
    if missed:
        print(f"targets missed: {', '.join(missed)}")
    # A missed target is a finding to report, not a crash; only a benchmark that failed to run fails.
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
