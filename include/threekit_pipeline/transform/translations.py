"""Validation of regional translation CSVs before they are uploaded to Threekit.

Threekit's translations endpoint takes a CSV with a ``Canonical Name`` column (the text as
it appears in the catalog) and one column per locale. :func:`validate_translations_csv`
reads any supported encoding/delimiter, checks it, and writes:

* a clean UTF-8 CSV (all fields quoted, like Threekit's own export) holding the
  ``Canonical Name`` column and every valid locale column, locales normalised to BCP 47
  form (``pt_BR`` -> ``pt-BR``, ``EN`` -> ``en``, ``zh_hant_tw`` -> ``zh-Hant-TW``);
* an errors CSV with the same columns as the catalog transform's
  (``file, line, column, value, reason``).

Reported and left out: columns whose header is not a locale code (and repeated locales),
rows with an empty key, repeated keys (the first occurrence is kept), values with control
characters. A file without a ``Canonical Name`` column or without any locale column is
rejected as a whole, as is a file with more than ``max_error_ratio`` bad rows when a ratio
is given.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threekit_pipeline.transform.errors import (
    ErrorRow,
    FileRejected,
    atomic_write,
    errors_frame,
    write_errors_csv,
)
from threekit_pipeline.transform.mapping import InputLimits
from threekit_pipeline.transform.readers import LINE_COLUMN, open_input, read_member

log = logging.getLogger(__name__)

KEY_COLUMN = "Canonical Name"
_LOCALE = re.compile(
    r"(?P<language>[A-Za-z]{2,3})"
    r"(?:[-_](?P<script>[A-Za-z]{4}))?"
    r"(?:[-_](?P<region>[A-Za-z]{2}|\d{3}))?"
)
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_RENAMED_DUPLICATE = re.compile(r"(?P<header>.+) \(column \d+\)")


def normalise_locale(header: str) -> str | None:
    """BCP 47 form of a locale header (``pt_BR`` -> ``pt-BR``), or None if it is not one."""
    match = _LOCALE.fullmatch(header.strip())
    if not match:
        return None
    parts = [match["language"].lower()]
    if match["script"]:
        parts.append(match["script"].title())
    if match["region"]:
        parts.append(match["region"].upper())
    return "-".join(parts)


@dataclass
class TranslationsResult:
    """Outcome of validating one translations CSV (JSON-ready via :meth:`to_dict`)."""

    file: str
    clean_path: str | None  # None when the file is rejected
    errors_path: str
    status: str = "ok"  # "ok" | "rejected"
    reason: str = ""
    rows: int = 0  # data rows read
    valid_rows: int = 0  # rows written to the clean CSV
    rows_rejected: int = 0
    locales: list[str] = field(default_factory=list)
    rejected_columns: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def file_error(self) -> str:
        """Why the whole file is unusable ("" when it is usable)."""
        return self.reason if self.status != "ok" else ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate_translations_csv(
    path: Path,
    clean_path: Path | None = None,
    errors_path: Path | None = None,
    max_error_ratio: float | None = None,
    limits: InputLimits | None = None,
) -> TranslationsResult:
    """Validate a translations CSV; write the clean CSV and the errors CSV.

    Defaults: ``<stem>.clean.csv`` beside the input and ``<clean>.errors.csv`` beside that.
    The clean CSV is not written when the file is rejected (an existing one is removed so
    a stale upload cannot happen).
    """
    path = Path(path)
    output = Path(clean_path) if clean_path is not None else path.with_name(path.stem + ".clean.csv")
    errors = Path(errors_path) if errors_path is not None else output.with_name(output.name + ".errors.csv")
    result = TranslationsResult(file=path.name, clean_path=str(output), errors_path=str(errors))
    error_rows: list[ErrorRow] = []

    def reject(reason: str) -> TranslationsResult:
        result.status, result.reason, result.clean_path = "rejected", reason, None
        error_rows.append(ErrorRow(path.name, None, "", "", reason))
        write_errors_csv(errors, [errors_frame(error_rows)])
        output.unlink(missing_ok=True)
        log.warning("Rejected translations file %s: %s", path.name, reason)
        return result

    try:
        members = open_input(path, limits)
        if len(members) != 1:
            return reject(f"archive must hold exactly one CSV file, found {len(members)}")
        table = read_member(members[0])
    except FileRejected as exc:
        return reject(exc.reason)

    frame = table.frame
    result.rows = table.rows
    for line, reason in table.row_errors:
        error_rows.append(ErrorRow(table.name, line, "", "", reason))

    key_header = next((h for h in table.headers if h.strip().casefold() == KEY_COLUMN.casefold()), None)
    if key_header is None or key_header.casefold() in table.duplicate_headers:
        found = ", ".join(repr(h) for h in table.headers[:10])
        problem = "missing" if key_header is None else "repeated"
        return reject(f"required column {KEY_COLUMN!r} {problem}; found {found}")

    locale_columns: list[tuple[str, str]] = []
    for header in table.headers:
        if header == key_header:
            continue
        # A repeated header comes back renamed "EN (column 6)": judge it by its own text.
        renamed = _RENAMED_DUPLICATE.fullmatch(header)
        original = renamed["header"] if renamed and renamed["header"].casefold() in table.duplicate_headers else header
        locale = normalise_locale(original)
        if header.startswith("(column ") and not (frame[header].str.strip() != "").any():
            continue  # trailing separator in the header line, no data
        if locale is None:
            reason = "column header is not a locale code (e.g. en, fr, de-CH, pt-BR); column left out"
        elif locale in {loc for _, loc in locale_columns}:
            reason = f"locale {locale} appears more than once; column left out"
        else:
            locale_columns.append((header, locale))
            continue
        result.rejected_columns.append({"column": header, "reason": reason})
        error_rows.append(ErrorRow(table.name, 1, header, header, reason))
    if not locale_columns:
        return reject("no locale column (headers such as en, fr, de-CH)")
    result.locales = [locale for _, locale in locale_columns]

    keys = frame[key_header]
    lines = frame[LINE_COLUMN].to_numpy()
    bad = np.zeros(len(frame), dtype=bool)
    messages: list[pd.DataFrame] = []

    def flag(mask: np.ndarray, column: str, values: pd.Series, reason) -> None:
        nonlocal bad
        if not mask.any():
            return
        bad |= mask
        count = int(mask.sum())
        reasons = reason[mask].to_numpy(dtype=object) if isinstance(reason, pd.Series) else np.full(count, reason)
        messages.append(
            pd.DataFrame(
                {
                    "file": np.full(count, table.name, dtype=object),
                    "line": pd.array(lines[mask], dtype="Int64"),
                    "column": np.full(count, column, dtype=object),
                    "value": values[mask].astype("str").to_numpy(dtype=object),
                    "reason": reasons,
                }
            )
        )

    empty_key = (keys.str.strip() == "").to_numpy(dtype=bool)
    flag(empty_key, key_header, keys, "empty key (Canonical Name)")
    flag(keys.str.contains(_CONTROL, regex=True).to_numpy(dtype=bool), key_header, keys, "contains control characters")
    duplicated = keys.duplicated(keep="first").to_numpy() & ~empty_key
    if duplicated.any():
        first_line = frame.groupby(key_header, sort=False)[LINE_COLUMN].transform("first").astype("str")
        flag(duplicated, key_header, keys, "duplicate key (first occurrence kept, line " + first_line + ")")
    for header, _locale in locale_columns:
        values = frame[header]
        flag(values.str.contains(_CONTROL, regex=True).to_numpy(dtype=bool), header, values, "contains control characters")

    result.rows_rejected = len(table.row_errors) + int(bad.sum())
    all_errors = pd.concat([errors_frame(error_rows), *messages], ignore_index=True)
    all_errors = all_errors.sort_values("line", kind="stable", na_position="first")
    if max_error_ratio is not None and result.rows and result.rows_rejected / result.rows > max_error_ratio:
        share = result.rows_rejected / result.rows
        reason = (
            f"too many bad rows: {result.rows_rejected} of {result.rows} ({share:.1%}) rejected, "
            f"above the limit of {max_error_ratio:.1%}"
        )
        result.status, result.reason, result.clean_path = "rejected", reason, None
        write_errors_csv(errors, [errors_frame([ErrorRow(path.name, None, "", "", reason)]), all_errors])
        output.unlink(missing_ok=True)
        log.warning("Rejected translations file %s: %s", path.name, reason)
        return result

    clean = frame.loc[~bad, [key_header] + [h for h, _ in locale_columns]]
    with atomic_write(output, newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow([KEY_COLUMN] + result.locales)
        writer.writerows(clean.itertuples(index=False, name=None))
    result.valid_rows = len(clean)
    write_errors_csv(errors, [all_errors])
    log.info(
        "Translations %s: %d rows read, %d written, %d rejected; locales %s",
        path.name,
        result.rows,
        result.valid_rows,
        result.rows_rejected,
        ", ".join(result.locales),
    )
    return result
