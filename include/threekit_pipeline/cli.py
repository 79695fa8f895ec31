"""``threekit-pipeline`` command line: tools for data engineers working with the pipelines.

Subcommands:

``transform``
    ERP/PIM files -> importReqBody JSONL, e.g.
    ``threekit-pipeline transform --mapping sap_de --output out.jsonl Materialstamm_20261123.csv ...``.
    Exit status 0 when no file was rejected, 1 when at least one was, 2 for usage or
    mapping errors.
``translations``
    Validate a regional translations CSV and write the clean upload file.
``ledger-copy``
    Copy the SQLite ledgers of a staging directory (or given files) into PostgreSQL, e.g.
    ``THREEKIT_PIPELINE_LEDGER_DSN=postgresql://ledger@db/threekit threekit-pipeline ledger-copy
    --staging-dir /opt/airflow/staging``. Idempotent; prints rows read and new per table.

Adding a subcommand: write ``_add_<name>(subparsers)`` that creates its parser and sets
``handler`` (a function taking the parsed arguments and returning the exit status), and
append it to :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
_SHOWN_ERRORS = 10
#: Environment variable holding the target DSN of ``ledger-copy`` (keeps the password off the command line).
LEDGER_DSN_ENV = "THREEKIT_PIPELINE_LEDGER_DSN"


def _print_first_errors(errors_path: Path, limit: int = _SHOWN_ERRORS) -> None:
    try:
        with open(errors_path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError:
        return
    row_errors = [r for r in rows if r["line"]]
    if not row_errors:
        return
    print(f"First rejected rows ({min(limit, len(row_errors))} of {len(row_errors)}):")
    for row in row_errors[:limit]:
        column = f" [{row['column']}]" if row["column"] else ""
        value = f" {row['value']!r}" if row["value"] else ""
        print(f"  {row['file']}:{row['line']}{column}{value}: {row['reason']}")


def _run_transform(args: argparse.Namespace) -> int:
    from threekit_pipeline.transform import MappingError, load_mapping, transform_files

    try:
        mapping = load_mapping(args.mapping)
    except MappingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        print(f"error: input file(s) not found: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    result = transform_files(mapping, [Path(f) for f in args.files], Path(args.output), errors=args.errors)

    print(f"Mapping:           {mapping.name}")
    print(f"Rows read:         {result.rows_read}")
    for item in result.per_file:
        status = "ok" if item["status"] == "ok" else "REJECTED"
        source = item["source"] or "unknown"
        print(f"  {item['file']} ({source}): {item['rows']} rows, {item['rejected_rows']} rejected, {status}")
    print(f"Products written:  {result.products_written}")
    print(f"Attributes:        {result.attributes_written}")
    print(f"Rows rejected:     {result.rows_rejected}")
    print(f"Files rejected:    {len(result.files_rejected)}")
    for rejected in result.files_rejected:
        print(f"  {rejected['file']}: {rejected['reason']}")
    print(f"Output:            {result.output}")
    print(f"Content hashes:    {result.hashes}")
    print(f"Errors:            {result.errors} ({result.error_lines} lines)")
    _print_first_errors(Path(result.errors))
    return EXIT_OK if result.ok else EXIT_REJECTED


def _add_transform(subparsers) -> None:
    parser = subparsers.add_parser(
        "transform",
        help="ERP/PIM flat files -> Threekit importReqBody JSONL",
        description="Transform one batch of ERP/PIM files into Threekit product import entries (JSONL). "
        "Writes OUT, OUT.hashes.csv, OUT.skus.csv and the errors CSV. Exit status: 0 no file rejected, "
        "1 at least one file rejected, 2 usage or mapping error.",
    )
    parser.add_argument(
        "--mapping", default="canonical", help="mapping name under include/mappings (default: canonical) or YAML path"
    )
    parser.add_argument("--output", "-o", required=True, help="JSONL file to write")
    parser.add_argument("--errors", help="errors CSV to write (default: OUTPUT.errors.csv)")
    parser.add_argument("files", nargs="+", metavar="FILE", help="input files of one batch (.csv, .xlsx, .gz, .zip)")
    parser.set_defaults(handler=_run_transform)


def _run_translations(args: argparse.Namespace) -> int:
    from threekit_pipeline.transform import validate_translations_csv

    if not Path(args.file).is_file():
        print(f"error: input file not found: {args.file}", file=sys.stderr)
        return EXIT_USAGE
    result = validate_translations_csv(
        Path(args.file),
        clean_path=Path(args.output) if args.output else None,
        errors_path=Path(args.errors) if args.errors else None,
        max_error_ratio=args.max_error_ratio,
    )
    print(f"Rows read:         {result.rows}")
    print(f"Rows written:      {result.valid_rows}")
    print(f"Rows rejected:     {result.rows_rejected}")
    print(f"Locales:           {', '.join(result.locales) or '-'}")
    for column in result.rejected_columns:
        print(f"  column {column['column']!r}: {column['reason']}")
    if not result.ok:
        print(f"File rejected:     {result.reason}")
    print(f"Clean CSV:         {result.clean_path or '-'}")
    print(f"Errors:            {result.errors_path}")
    _print_first_errors(Path(result.errors_path))
    return EXIT_OK if result.ok else EXIT_REJECTED


def _add_translations(subparsers) -> None:
    parser = subparsers.add_parser(
        "translations",
        help="validate a translations CSV and write the clean upload file",
        description="Validate a Threekit translations CSV (Canonical Name + locale columns).",
    )
    parser.add_argument("file", help="translations CSV")
    parser.add_argument("--output", "-o", help="clean CSV to write (default: <name>.clean.csv)")
    parser.add_argument("--errors", help="errors CSV to write (default: OUTPUT.errors.csv)")
    parser.add_argument("--max-error-ratio", type=float, default=None, help="reject the file above this share")
    parser.set_defaults(handler=_run_translations)


def _run_ledger_copy(args: argparse.Namespace) -> int:
    from threekit_pipeline.pipelines.config import default_staging_dir
    from threekit_pipeline.pipelines.ledger import LedgerError, describe_dsn
    from threekit_pipeline.pipelines.ledgers import copy_sqlite_ledgers, sqlite_ledgers

    if args.conn_id:
        from threekit_pipeline.airflow.hooks.ledger import LedgerDatabaseHook

        dsn = LedgerDatabaseHook(args.conn_id).get_dsn()
    else:
        dsn = args.dsn or os.environ.get(LEDGER_DSN_ENV, "")
    if not dsn:
        print(f"error: name the PostgreSQL database: --conn-id, or the DSN in ${LEDGER_DSN_ENV}", file=sys.stderr)
        return EXIT_USAGE
    files = [Path(f) for f in args.files] or sqlite_ledgers(args.staging_dir or default_staging_dir())
    if not files:
        print("error: no SQLite ledger found (<staging>/ledger/*.sqlite)", file=sys.stderr)
        return EXIT_USAGE
    print(f"Target:            {describe_dsn(dsn)}")
    try:
        copied = copy_sqlite_ledgers(files, dsn)
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    for ledger in copied:
        print(f"Ledger {ledger.name} ({ledger.source}):")
        for table in ledger.tables:
            print(f"  {table.table:<16} {table.read:>9} read  {table.added:>9} new")
    print(f"Ledgers copied:    {len(copied)}")
    return EXIT_OK


def _add_ledger_copy(subparsers) -> None:
    parser = subparsers.add_parser(
        "ledger-copy",
        help="copy SQLite ledgers into PostgreSQL",
        description=(
            "Copy SQLite ledgers (<staging>/ledger/*.sqlite, or the given files) into a PostgreSQL "
            "database, one schema per ledger. Safe to run again: rows are upserted, history is "
            "never duplicated. Set the Variable's ledger_conn_id afterwards."
        ),
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="ledger files (default: every ledger of the staging dir)")
    parser.add_argument("--staging-dir", help="staging directory (default: $THREEKIT_PIPELINE_STAGING_DIR or $AIRFLOW_HOME/staging)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--conn-id", help="Airflow postgres connection id of the target database")
    target.add_argument(
        "--dsn", help=f"libpq DSN of the target (prefer ${LEDGER_DSN_ENV}: a DSN on the command line shows its password)"
    )
    parser.set_defaults(handler=_run_ledger_copy)


SUBCOMMANDS: list[Callable] = [_add_transform, _add_translations, _add_ledger_copy]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="threekit-pipeline", description="Threekit pipeline tools")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for register in SUBCOMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console script entry point; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 for --help
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
