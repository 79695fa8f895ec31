"""``make demo``: the whole FTP ⇄ Threekit flow on embedded defaults, then a summary a person can check.

1. Starts ftp-sandbox and threekit-sandbox on free loopback ports (state under ``.demo/``).
2. Generates a furniture catalog (2,000 products, option matrices, two pricebooks in two
   currencies, part references), translations for three locales and a few source files, and
   uploads them to the FTP inbound folders.
3. Runs the import DAGs, then the export DAGs, each with ``airflow dags test`` (SQLite
   metadata DB in ``.airflow/``), logs under ``.demo/logs/``.
4. Prints products created/updated/rejected, files archived or rejected, files delivered to
   each outbound folder with sizes, and where the reports are.

State persists between runs: the second ``make demo`` uploads the same files again and shows
the delta (no product re-sent). ``make demo`` stops its servers on exit, failure or Ctrl-C.
``--standalone`` (``make airflow``) starts the same stack under ``airflow standalone`` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO / ".demo"

IMPORT_DAGS = ("threekit_catalog_import", "threekit_translations_import", "threekit_source_assets_import")
EXPORT_DAGS = (
    "threekit_catalog_export",
    "threekit_asset_export",
    "threekit_translations_export",
    "threekit_render_export",
)
DEMO_PRODUCTS = 2_000
DEMO_LOCALES = ("en", "fr", "de")
# Pipeline settings for the demo: short waits (files are complete when uploaded) and a
# selection of items for the render and asset exports so the run stays short.
DEMO_VARIABLE = {
    "poke_interval_seconds": 1,
    "stable_seconds": 1,
    "sensor_timeout_seconds": 30,
    "batch_size": 500,
    "export_tags": [],
    "render_tags": ["new"],
    "export_asset_tags": ["new"],
    "render_destinations": ["/outbound/renders/dam", "/outbound/renders/partner"],
    # The ERP export is the full assortment: SKUs missing from a later snapshot are soft-deleted.
    "catalog_lifecycle": {"snapshot": "full", "retire": "delete"},
}
# Render on demand: every Color of a few items (their SKUs are picked from the generated catalog).
DEMO_RENDER_SPEC = {
    "configurations": {"attributes": ["Color"]},
    "renderer": "vray",
    "format": "png",
    "width": 512,
    "height": 512,
    "poll_seconds": 1,
    "timeout_seconds": 300,
}
RENDER_ROUTE = "POST /api/asset-jobs/:assetId/render/:renderer"


def _say(text: str = "") -> None:
    print(text, flush=True)


def _org_id(work_dir: Path) -> str:
    """The demo org id is kept across runs: the sandbox's stored items belong to it."""
    path = work_dir / "org_id"
    if path.exists():
        return path.read_text().strip()
    work_dir.mkdir(parents=True, exist_ok=True)
    org = str(uuid.uuid4())
    path.write_text(org)
    return org


def _airflow_env(stack_env: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(REPO / ".airflow"))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO / "plugins"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.update(stack_env)
    return env


def _airflow(args: list[str], env: dict[str, str], log_path: Path) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    return proc.returncode


def _generate_inputs(work_dir: Path, stamp: str) -> dict[str, list[Path]]:
    """Generate the catalog (deterministic: the same files every run), translations and source files."""
    from threekit_pipeline.samples.catalog import generate_catalog
    from threekit_pipeline.samples.source_files import generate_source_files

    out = work_dir / "generated" / stamp
    generated = generate_catalog(out, products=DEMO_PRODUCTS, stamp=stamp, seed=7, locales=DEMO_LOCALES)
    catalog = [path for name, path in generated.items() if name != "translations"]
    translations = [generated["translations"]] if "translations" in generated else []
    sources = generate_source_files(out / "assets", stamp=stamp)
    return {"catalog": catalog, "translations": translations, "assets": sources}


def _demo_lifecycle(catalog: list[Path], stamp: str, work_dir: Path) -> tuple[list[Path], list[str], list[str]]:
    """A second snapshot of the catalog without two SKUs (stamped later the same day), and the
    SKUs of a few "new" items with several colours for the render spec.

    Returns ``(snapshot files, dropped SKUs, render SKUs)``.
    """
    import csv

    by_kind = {path.name.split("_", 1)[0]: path for path in catalog}
    with open(by_kind["products"], newline="", encoding="utf-8") as handle:
        products = list(csv.DictReader(handle))
    with open(by_kind["options"], newline="", encoding="utf-8") as handle:
        colours: dict[str, int] = {}
        for row in csv.DictReader(handle):
            if row["attribute"] == "Color":
                colours[row["sku"]] = colours.get(row["sku"], 0) + 1
    new = [r["sku"] for r in products if "new" in r["tags"].split(";") and colours.get(r["sku"], 0) >= 2]
    render_skus = new[:4]
    dropped = [r["sku"] for r in products if r["sku"] not in render_skus][-2:]
    out = work_dir / "generated" / f"{stamp}_snapshot2"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in catalog:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = [r for r in reader if r["sku"] not in dropped]
            fields = reader.fieldnames or []
        target = out / path.name.replace(f"_{stamp}", f"_{stamp}_235959")
        with open(target, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        written.append(target)
    return written, dropped, render_skus


def _upload_inputs(ftp, inputs: dict[str, list[Path]]) -> list[tuple[str, int]]:
    folders = {"catalog": "/inbound/catalog", "translations": "/inbound/translations", "assets": "/inbound/assets"}
    uploaded = []
    for kind, paths in inputs.items():
        for path in paths:
            remote = f"{folders[kind]}/{path.name}"
            ftp.upload_atomic(path, remote)
            uploaded.append((remote, path.stat().st_size))
    return uploaded


def _tree(ftp, folder: str) -> list[tuple[str, int]]:
    """Every file below ``folder`` (path, size)."""
    found: list[tuple[str, int]] = []
    stack = [folder]
    while stack:
        current = stack.pop()
        if not ftp.exists(current):
            continue
        for entry in ftp.list_dir(current):
            if entry.is_dir:
                stack.append(entry.path)
            else:
                found.append((entry.path, entry.size or 0))
    return sorted(found)


def _human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def _latest_report(ftp, folder: str, scratch: Path) -> dict | None:
    reports = [p for p, _ in _tree(ftp, folder) if p.endswith(".json") and not p.endswith(".retired.json")]
    if not reports:
        return None
    # Report names start with the run id, which starts with the run's timestamp.
    newest = max(reports, key=lambda p: (ftp.stat(p).modified or datetime.min.replace(tzinfo=UTC), p))
    try:
        return {"path": newest, **json.loads(ftp.read_bytes(newest))}
    except (ValueError, OSError):
        return {"path": newest}


def run_demo(work_dir: Path = DEMO_DIR) -> int:
    from threekit_pipeline.devtools.stack import LocalStack
    from threekit_pipeline.ftp.client import FtpClient, FtpSettings

    started = time.monotonic()
    first_run = not (work_dir / "threekit").exists()
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    _say(f"threekit-pipeline demo ({'first run' if first_run else 'again: this run shows the delta'})")
    with LocalStack(work_dir, org_id=_org_id(work_dir), ftp_user="erp") as stack:
        conn = stack.ftp_connection()
        settings = FtpSettings(host=conn["host"], port=conn["port"], user=conn["login"], password=conn["password"])
        inputs = _generate_inputs(work_dir, stamp)
        snapshot2, dropped, render_skus = _demo_lifecycle(inputs["catalog"], stamp, work_dir)
        variable = {**DEMO_VARIABLE, "render_spec": {**DEMO_RENDER_SPEC, "items": {"skus": render_skus}}}
        if not first_run:
            # The ERP's latest full export is the second snapshot: nothing returns, nothing is re-sent.
            inputs["catalog"] = snapshot2
        env = _airflow_env(stack.airflow_env(variable))
        _say(f"  Threekit sandbox  {stack.threekit.base_url}   FTP sandbox  ftp://{stack.ftp.host}:{stack.ftp.port}")
        before = stack.threekit.stats()

        with FtpClient(settings) as ftp:
            uploaded = _upload_inputs(ftp, inputs)
        _say(f"  uploaded {len(uploaded)} input files to /inbound ({_human(sum(s for _, s in uploaded))})")

        if _airflow(["db", "migrate"], env, work_dir / "logs" / "airflow-db-migrate.log") != 0:
            _say(f"  airflow db migrate failed: see {work_dir / 'logs' / 'airflow-db-migrate.log'}")
            return 1
        failed = []
        for dag_id in (*IMPORT_DAGS, *EXPORT_DAGS):
            if dag_id == EXPORT_DAGS[0]:
                # The asset and catalog exports read what exists: the sandbox stands in for renders
                # made elsewhere; the render export renders its spec's items itself.
                stack.threekit.render_stand_in(tags=DEMO_VARIABLE["render_tags"])
            if dag_id == EXPORT_DAGS[0] and first_run:
                # The ERP's second full snapshot of the day lacks two SKUs: they are retired.
                with FtpClient(settings) as ftp:
                    _upload_inputs(ftp, {"catalog": snapshot2})
                t0 = time.monotonic()
                log_path = work_dir / "logs" / f"{IMPORT_DAGS[0]}.snapshot2.log"
                code = _airflow(
                    ["dags", "test", IMPORT_DAGS[0], datetime.now(UTC).replace(microsecond=0).isoformat()],
                    env,
                    log_path,
                )
                _say(f"  {'  second snapshot of the day':<32} {'ok' if code == 0 else 'FAILED':<6} "
                     f"{time.monotonic() - t0:6.1f} s   log: {log_path.relative_to(REPO)}")
                if code != 0:
                    failed.append(IMPORT_DAGS[0] + " (snapshot 2)")
            logical = datetime.now(UTC).replace(microsecond=0).isoformat()
            log_path = work_dir / "logs" / f"{dag_id}.log"
            t0 = time.monotonic()
            code = _airflow(["dags", "test", dag_id, logical], env, log_path)
            state = "ok" if code == 0 else "FAILED"
            _say(f"  {dag_id:<32} {state:<6} {time.monotonic() - t0:6.1f} s   log: {log_path.relative_to(REPO)}")
            if code != 0:
                failed.append(dag_id)

        after = stack.threekit.stats()
        with FtpClient(settings) as ftp:
            _print_summary(ftp, before, after, work_dir)
            _print_lifecycle(ftp, before, after, dropped, render_skus, stack.staging_dir)
    _say(f"\nDone in {time.monotonic() - started:.0f} s. Servers stopped. Run `make demo` again to see the delta.")
    if failed:
        _say(f"FAILED DAGs: {', '.join(failed)} (see their logs above)")
        return 1
    return 0


def _print_summary(ftp, before: dict, after: dict, work_dir: Path) -> None:
    requests_before = before.get("requests", {})
    requests_after = after.get("requests", {})
    import_calls = requests_after.get("POST /api/products/import", 0) - requests_before.get("POST /api/products/import", 0)
    report = _latest_report(ftp, "/reports/catalog_import", work_dir)
    _say("\nThreekit")
    _say(f"  items in Threekit: {after.get('items', 0)} (before this run: {before.get('items', 0)}); "
         f"assets {after.get('assets', 0)}, files {after.get('files', 0)}, translations {after.get('translations', 0)}")
    _say(f"  product import requests this run: {import_calls}")
    if report:
        counts = report.get("counts", {})
        _say(
            "  catalog import: "
            + ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in counts.items() if not isinstance(value, dict))
        )
        for outcome in report.get("files", [])[:10]:
            _say(f"    {outcome.get('file')}: {outcome.get('status')} -> {outcome.get('moved_to') or outcome.get('destination') or ''}")
    _say("\nFTP")
    for label, folder in (("archived", "/archive"), ("rejected", "/rejected"), ("inbound (left)", "/inbound")):
        files = _tree(ftp, folder)
        _say(f"  {label:<15} {len(files):4d} files")
    _say("  delivered:")
    for folder in ("/outbound/catalog", "/outbound/assets", "/outbound/translations", "/outbound/renders"):
        files = _tree(ftp, folder)
        total = sum(size for _, size in files)
        _say(f"    {folder:<24} {len(files):4d} files {_human(total):>10}")
        for path, size in files[:4]:
            _say(f"      {path} ({_human(size)})")
        if len(files) > 4:
            _say(f"      ... and {len(files) - 4} more")
    reports = _tree(ftp, "/reports")
    _say(f"  reports: {len(reports)} files under /reports (FTP root on disk: {work_dir / 'ftproot' / 'reports'})")
    if report:
        _say(f"  latest catalog import report: {report['path']}")


def _print_lifecycle(
    ftp, before: dict, after: dict, dropped: list[str], render_skus: list[str], staging_dir: Path
) -> None:
    """Retired SKUs (with their Threekit ids, from the lifecycle ledger) and the renders made this run."""
    from threekit_pipeline.pipelines.retire import lifecycle_ledger

    _say("\nCatalog lifecycle (second snapshot of the day without " + ", ".join(dropped) + ")")
    deletes = after.get("requests", {}).get("DELETE /api/assets/:id", 0) - before.get("requests", {}).get(
        "DELETE /api/assets/:id", 0
    )
    with lifecycle_ledger(staging_dir) as ledger:
        retired = ledger.retired("canonical")
    _say(f"  items soft-deleted this run: {deletes}; retired SKUs (lifecycle ledger): {len(retired)}")
    for sku, record in sorted(retired.items()):
        _say(f"    {sku}  Threekit id {record['threekit_id']}  {record['action']} at {record['retired_at']}")
    reports = [p for p, _ in _tree(ftp, "/reports/catalog_import") if p.endswith(".retired.csv")]
    if reports:
        _say(f"  retirement reports: {len(reports)}, latest {max(reports)}")
    requests = after.get("requests", {}).get(RENDER_ROUTE, 0) - before.get("requests", {}).get(RENDER_ROUTE, 0)
    manifests = [p for p, _ in _tree(ftp, "/outbound/renders/dam") if "/manifest_" in p]
    _say(f"\nRender on demand (every Color of {', '.join(render_skus)})")
    _say(f"  render jobs requested this run: {requests}")
    if manifests:
        _say(f"  manifests delivered: {len(manifests)}, latest {max(manifests)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--standalone", action="store_true", help="run airflow standalone on the stack (make airflow)")
    parser.add_argument("--work-dir", type=Path, default=DEMO_DIR)
    args = parser.parse_args(argv)
    try:
        if args.standalone:
            from threekit_pipeline.devtools.standalone import run_standalone

            return run_standalone(REPO) or 0
        return run_demo(args.work_dir)
    except KeyboardInterrupt:
        _say("\ninterrupted; servers stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
