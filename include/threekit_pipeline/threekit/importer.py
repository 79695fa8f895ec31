"""Batch import of Threekit ``importReqBody`` entries from a JSONL file, with per-entry outcomes.

Input: one JSON object ``{"query": {...}, "product": {...}}`` per line (blank lines are
ignored). Line numbers in outcomes and messages are 1-based line numbers of that file.

Modes:

* ``"job"`` (default): each batch is one asynchronous catalog-import job (multipart JSON
  array, ``sync=false``); the job is polled and its result file, a JSON array of the items
  created or updated (``{id, name, metadata}``), is reconciled by query key: each entry's
  ``query`` (its SKU in ``query.metadata``) is looked up among the returned items. An entry
  missing from the array did not land; Threekit names no failure in that file (failures
  show only as the job's ``taskResultFailures`` and the runs' ``resultCode`` /
  ``resultMessage``), so missing entries are isolated as below.
* ``"sync"``: each batch is one synchronous import request (multipart ``file``,
  ``sync=true``), reconciled the same way.

In both modes up to ``concurrency`` batches are in flight at once.

Neither a 422 nor missing entries sink a batch: the entries concerned are bisected (halves,
recursively, down to single entries) with synchronous requests, so every valid entry still
lands and every failing one is ``rejected`` with the best reason Threekit gives (the 422
message, plus the job's failure summary when a job left it out).

Outcome file (``outcome_path``), JSON Lines, one object per input entry, ordered by line::

    {"line": 7, "key": "SKU-123", "status": "created", "id": "<item id>", "reason": null}

``status`` is one of:

* ``created`` / ``updated``: landed; ``updated`` when the item existed before the entry was
  sent (the caller's ``known_keys``, i.e. the ledger, or a lookup of the org's items),
  ``created`` otherwise. Threekit's answers do not say which;
* ``imported``: written by earlier versions for synchronous imports; still counted when
  resuming from such an outcome file;
* ``rejected``: not imported, ``reason`` holds Threekit's (or the reader's) explanation;
* ``skipped``: already imported by an earlier attempt on the same input
  (``previous_status`` holds what that attempt did and ``id`` the item).
 ``key`` is the SKU from ``query.metadata``, else
``query.name`` / ``query.id``, else the product name.

Crash safety and resuming: the import is an upsert by ``query``, so re-sending entries never
creates duplicates, and a re-run after a crash converges to the same catalog. On top of
that, outcomes are appended to ``outcome_path`` (and fsynced) as each batch finishes, next
to a sidecar ``<outcome_path>.state.json`` recording the SHA-256 of the input file. When a
run finds outcomes for the *same* input, entries already created/updated are not sent
again and are reported as ``skipped``; rejected entries are retried. Outcomes for a
different input are discarded. At the end the outcome file is rewritten in line order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from threekit_pipeline.threekit.client import ThreekitClient
from threekit_pipeline.threekit.errors import ThreekitAPIError, ThreekitJobError

log = logging.getLogger(__name__)

OUTCOME_FORMAT = 1
MAX_REJECTED_REASONS = 100
# Reasons in the summary are cut to keep it XCom-sized; the outcome file keeps them whole.
MAX_SUMMARY_REASON_CHARS = 500
MAX_LOGGED_REJECTIONS = 20
# Statuses Threekit uses when a request body (or one entry in it) is invalid.
INVALID_ENTRY_STATUSES = frozenset({400, 422})
LANDED_STATUSES = frozenset({"created", "updated", "imported"})
# Threekit prefixes each problem with the entry's index *within the request*; outcomes name
# the input line instead, so the in-request index would only confuse.
_ENTRY_PREFIX = re.compile(r"(^|;\s*)entry \d+:\s*")

ProgressCallback = Callable[[int, int], None]


@dataclass
class ImportSummary:
    """Counts of one import run; ``to_dict()`` is small enough for an Airflow XCom.

    ``total`` = ``created + updated + imported + skipped + rejected`` (one per non-blank
    input line); see the module documentation for the statuses.
    """

    total: int = 0
    created: int = 0
    updated: int = 0
    imported: int = 0
    skipped: int = 0
    rejected: int = 0
    rejected_reasons: list[dict] = field(default_factory=list)
    batches: int = 0
    outcome_path: str = ""
    input_sha256: str = ""
    mode: str = "job"

    def to_dict(self) -> dict:
        """A JSON-serialisable copy."""
        return asdict(self)


@dataclass
class _Pending:
    line: int
    key: str
    entry: dict


def entry_key(entry: Any, line: int | None = None) -> str:
    """The human key of an entry: SKU from query metadata, else query name/id, else product name."""
    if isinstance(entry, dict):
        query = entry.get("query") if isinstance(entry.get("query"), dict) else {}
        product = entry.get("product") if isinstance(entry.get("product"), dict) else {}
        for metadata in (query.get("metadata"), product.get("metadata")):
            sku = _sku_from_metadata(metadata)
            if sku:
                return sku
        for value in (query.get("name"), query.get("id"), product.get("name")):
            if value not in (None, ""):
                return str(value)
    return f"line {line}" if line is not None else ""


def _sku_from_metadata(metadata: Any) -> str | None:
    if isinstance(metadata, dict):
        for name, value in metadata.items():
            if str(name).lower() == "sku" and value not in (None, ""):
                return str(value)
    elif isinstance(metadata, list):
        for item in metadata:
            if isinstance(item, dict) and str(item.get("name", "")).lower() == "sku":
                value = item.get("defaultValue", item.get("value"))
                if value not in (None, ""):
                    return str(value)
    return None


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        text = str(error.get("message") or error.get("type") or json.dumps(error, sort_keys=True))
    else:
        text = str(error) if error not in (None, "") else ""
    return _ENTRY_PREFIX.sub(r"\1", text).strip() or "failed without a reason"


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8-sig") as fh:
        for number, raw in enumerate(fh, start=1):
            text = raw.strip()
            if text:
                yield number, text


def _parse_line(number: int, text: str) -> tuple[dict | None, str | None]:
    """The entry of one line, or the reason it cannot be sent."""
    try:
        entry = json.loads(text)
    except ValueError as exc:
        return None, f"invalid JSON: {exc}"
    if not isinstance(entry, dict) or not isinstance(entry.get("product"), dict):
        return None, "not an import entry: expected an object with a 'product' object"
    if "query" in entry and not isinstance(entry["query"], dict):
        return None, "'query' must be an object"
    return entry, None


class _OutcomeJournal:
    """Append-only, fsynced outcome log plus the sidecar naming the input it belongs to."""

    def __init__(self, outcome_path: Path, input_path: Path, input_sha256: str):
        self.path = outcome_path
        self.state_path = outcome_path.with_name(outcome_path.name + ".state.json")
        self.input_path = input_path
        self.input_sha256 = input_sha256
        self._lock = threading.Lock()
        self._fh = None

    def load_previous(self) -> dict[int, dict]:
        """Outcomes recorded earlier for the same input (last record per line wins)."""
        if not self.path.exists() or not self.state_path.exists():
            return {}
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("ignoring unreadable import state %s", self.state_path)
            return {}
        if state.get("input_sha256") != self.input_sha256:
            log.info(
                "previous outcomes in %s belong to a different input (%s); starting afresh",
                self.path,
                state.get("input_name"),
            )
            return {}
        records: dict[int, dict] = {}
        with open(self.path, encoding="utf-8") as fh:
            for raw in fh:
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue  # a line torn by a crash mid-write
                if isinstance(record, dict) and isinstance(record.get("line"), int):
                    records[record["line"]] = record
        return records

    def open(self, resume: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_state(complete=False)
        self._fh = open(self.path, "a" if resume else "w", encoding="utf-8")  # noqa: SIM115
        if resume:
            # A crash may have left a torn last line; start ours on a fresh line.
            self._fh.write("\n")

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        with self._lock:
            assert self._fh is not None
            self._fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def finalize(self, outcomes: dict[int, dict]) -> None:
        """Rewrite the outcome file in line order and mark the state complete."""
        self.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for line in sorted(outcomes):
                fh.write(json.dumps(outcomes[line], ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._write_state(complete=True)

    def _write_state(self, complete: bool) -> None:
        state = {
            "format": OUTCOME_FORMAT,
            "input_name": self.input_path.name,
            "input_sha256": self.input_sha256,
            "complete": complete,
        }
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.state_path)


def _record(
    item: _Pending | tuple[int, str], status: str, item_id: Any = None, reason: str | None = None
) -> dict:
    line, key = (item.line, item.key) if isinstance(item, _Pending) else item
    return {"line": line, "key": key, "status": status, "id": item_id, "reason": reason}


def _canonical(value: Any) -> str:
    """Comparison form of a metadata value: 5, 5.0 and "5" compare equal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    if value is None:
        return ""
    return str(value)


def match_criteria(entry: Any) -> list[tuple[str, str, str]]:
    """How an entry's ``query`` selects its item: ``(kind, field, value)`` triples.

    ``query.metadata`` (the ``{key: value}`` map production callers send, or the documented
    ``[{name, defaultValue}]`` list) gives ``("metadata", key, value)`` each; ``query.id``
    and ``query.name`` give ``("id"|"name", "", value)``. An entry without a query is
    matched by its product name. Every triple must hold for an item to be the entry's.
    """
    query = entry.get("query") if isinstance(entry, dict) and isinstance(entry.get("query"), dict) else {}
    product = entry.get("product") if isinstance(entry, dict) and isinstance(entry.get("product"), dict) else {}
    criteria: list[tuple[str, str, str]] = []
    metadata = query.get("metadata")
    if isinstance(metadata, dict):
        criteria += [("metadata", str(k), _canonical(v)) for k, v in metadata.items()]
    elif isinstance(metadata, list):
        for element in metadata:
            if isinstance(element, dict) and element.get("name") not in (None, ""):
                value = element.get("defaultValue", element.get("value"))
                criteria.append(("metadata", str(element["name"]), _canonical(value)))
    for kind in ("id", "name"):
        if query.get(kind) not in (None, ""):
            criteria.append((kind, "", str(query[kind])))
    if not criteria and product.get("name") not in (None, ""):
        criteria.append(("name", "", str(product["name"])))
    return criteria


class ItemIndex:
    """Items (``{id, name, metadata{}}``) indexed for :func:`match_criteria` lookups."""

    def __init__(self, items: Iterator[dict] | list[dict] = ()) -> None:
        self._by: dict[tuple[str, str, str], list[str]] = {}
        self._ids: dict[str, dict] = {}
        for item in items:
            self.add(item)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item: Any) -> None:
        if not isinstance(item, dict) or item.get("id") in (None, ""):
            return
        item_id = str(item["id"])
        self._ids[item_id] = item
        self._by.setdefault(("id", "", item_id), []).append(item_id)
        if item.get("name") not in (None, ""):
            self._by.setdefault(("name", "", str(item["name"])), []).append(item_id)
        metadata = item.get("metadata")
        if isinstance(metadata, dict):
            for key, value in metadata.items():
                self._by.setdefault(("metadata", str(key), _canonical(value)), []).append(item_id)

    def find(self, criteria: list[tuple[str, str, str]]) -> dict | None:
        """The first-listed item meeting every criterion, or None."""
        if not criteria:
            return None
        candidates: list[str] | None = None
        for criterion in criteria:
            ids = self._by.get(criterion, [])
            candidates = list(ids) if candidates is None else [i for i in candidates if i in set(ids)]
            if not candidates:
                return None
        return self._ids[candidates[0]] if candidates else None


# Up to this many entries unknown to the ledger are always looked up one by one (``GET
# /api/assets`` filtered by their query metadata). For more, the cheaper of two ways is taken:
# one scan of the org's items (all pages, ``SCAN_PAGE_SIZE`` items each) or one lookup per
# entry; a listing page of full asset documents costs about ``SCAN_PAGE_COST`` single lookups
# made ``LOOKUP_CONCURRENCY`` at a time (measured against the sandbox on a loaded 2-core
# machine: 25-40 ms a page, 2.5-4 ms a lookup). Either way the cost per entry is bounded,
# whatever the size of the org.
MAX_SINGLE_LOOKUPS = 25
SCAN_PAGE_SIZE = 100
SCAN_PAGE_COST = 10
# Single lookups of one batch in flight at once.
LOOKUP_CONCURRENCY = 4


class _Existing:
    """Which entries' items existed before they were sent: ledger keys plus a lookup.

    Threekit's import answers do not say whether an item was created or updated, so the
    importer decides it from what it knew before sending: the caller's ``known_keys`` (the
    delta ledger) and, for entries the ledger does not know, a lookup in the org. A few
    unknown entries are looked up one by one (``GET /api/assets?type=item&metadata=<query
    metadata>``, reference section 5). For more, the org's item count (one request) decides:
    when scanning every item (``GET /api/assets?type=item``, all pages) takes fewer
    requests, weighed by :data:`SCAN_PAGE_COST`, than one lookup per entry, the org is
    scanned once (and the scan kept for the later batches), otherwise each entry is looked
    up. An empty org needs neither: nothing existed. A growing org therefore never makes an
    entry cost more than one lookup.
    """

    def __init__(self, client: ThreekitClient, known_keys: set[str], lookup: bool) -> None:
        self.client = client
        self.known_keys = known_keys
        self.lookup = lookup
        self._index: ItemIndex | None = None
        self._lock = threading.Lock()

    def _scanned(self) -> ItemIndex:
        with self._lock:
            if self._index is None:
                started = time.monotonic()
                self._index = ItemIndex(list(self.client.list_assets(type="item")))
                log.info(
                    "looked up %d existing item(s) to tell created from updated (%.1f s)",
                    len(self._index),
                    time.monotonic() - started,
                )
            return self._index

    def _looked_up(self, pending: _Pending) -> bool:
        criteria = match_criteria(pending.entry)
        metadata = {field: value for kind, field, value in criteria if kind == "metadata"}
        if not metadata or len(metadata) != len(criteria):
            return self._scanned().find(criteria) is not None
        found = self.client.list_assets(type="item", metadata=json.dumps(metadata, sort_keys=True))
        return ItemIndex(list(found)).find(criteria) is not None

    def _way(self, unknown: int) -> str:
        """``"scan"``, ``"single"`` or ``"none"`` (the org has no items) for ``unknown`` entries."""
        if unknown <= MAX_SINGLE_LOOKUPS:
            return "single"
        count = self.client.count_assets(type="item")
        if count is None:
            return "scan"
        if count == 0:
            return "none"
        pages = math.ceil(count / SCAN_PAGE_SIZE)
        return "scan" if pages * SCAN_PAGE_COST <= unknown else "single"

    def prefetch(self, batch: list[_Pending]) -> dict[int, bool]:
        """Existence of every entry of ``batch`` *before* it is sent (keyed by line)."""
        before = {p.line: p.key in self.known_keys for p in batch}
        unknown = [p for p in batch if not before[p.line]]
        if not unknown or not self.lookup:
            return before
        with self._lock:
            scanned = self._index is not None
        way = "scan" if scanned else self._way(len(unknown))
        if way == "scan":
            index = self._scanned()
            before.update({p.line: index.find(match_criteria(p.entry)) is not None for p in unknown})
        elif way == "single":
            workers = min(LOOKUP_CONCURRENCY, len(unknown))
            if workers == 1:
                found = [self._looked_up(p) for p in unknown]
            else:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="threekit-lookup") as pool:
                    found = list(pool.map(self._looked_up, unknown))
            before.update({p.line: exists for p, exists in zip(unknown, found, strict=True)})
        return before

    def landed(self, pending: _Pending, item: dict) -> None:
        with self._lock:
            self.known_keys.add(pending.key)
            if self._index is not None:
                self._index.add(item)


class _BatchImporter:
    """Sends one batch and turns Threekit's answers into one outcome record per entry.

    Reconciliation by query key: every entry is looked up among the items Threekit returned
    (job result file or synchronous answer) with :func:`match_criteria`; an entry that is not
    there did not land. Such entries are isolated by bisection with synchronous imports, so
    every valid one still lands and every failing one is named with Threekit's reason.
    """

    def __init__(
        self,
        client: ThreekitClient,
        mode: str,
        job_deadline_s: float,
        poll_interval: float,
        existing: _Existing,
    ):
        self.client = client
        self.mode = mode
        self.job_deadline_s = job_deadline_s
        self.poll_interval = poll_interval
        self.existing = existing

    def run(self, batch: list[_Pending]) -> list[dict]:
        before = self.existing.prefetch(batch)
        if self.mode == "sync":
            return self.isolate(batch, before)
        return self._run_job(batch, before)

    def _landed(self, pending: _Pending, item: dict, before: dict[int, bool]) -> dict:
        self.existing.landed(pending, item)
        return _record(pending, "updated" if before.get(pending.line) else "created", item.get("id"))

    def _reconcile(
        self, batch: list[_Pending], items: list[dict], before: dict[int, bool]
    ) -> tuple[list[dict], list[_Pending]]:
        index = ItemIndex(items)
        records: list[dict] = []
        missing: list[_Pending] = []
        for pending in batch:
            item = index.find(match_criteria(pending.entry))
            if item is None:
                missing.append(pending)
            else:
                records.append(self._landed(pending, item, before))
        return records, missing

    def _run_job(self, batch: list[_Pending], before: dict[int, bool]) -> list[dict]:
        try:
            job_id = self.client.import_products_job([p.entry for p in batch])
        except ThreekitAPIError as exc:
            if exc.status not in INVALID_ENTRY_STATUSES:
                raise
            log.info("import job for %d entries refused (%s); isolating the invalid entries", len(batch), exc)
            return self.isolate(batch, before)
        job = self.client.wait_for_job(job_id, poll_interval=self.poll_interval, deadline_s=self.job_deadline_s)
        try:
            items = self.client.job_result_items(job_id)
        except ThreekitJobError as exc:
            log.warning("%s; importing the %d entries synchronously instead", exc, len(batch))
            items = []
        records, missing = self._reconcile(batch, items, before)
        if not missing:
            return records
        context = self.client.job_failure_summary(job_id, job) or f"not in the result of job {job_id}"
        log.info(
            "job %s: %d of %d entries not in its result (%s); isolating them with synchronous imports",
            job_id,
            len(missing),
            len(batch),
            context,
        )
        return records + self.isolate(missing, before, context)

    def isolate(self, batch: list[_Pending], before: dict[int, bool], context: str = "") -> list[dict]:
        """Import ``batch`` synchronously; bisect until every failing entry is alone and named.

        Works whether Threekit refuses a bad batch as a whole (422) or lands part of it and
        leaves the failures out of its answer.
        """
        if not batch:
            return []
        try:
            items = self.client.import_products_sync([p.entry for p in batch])
        except ThreekitAPIError as exc:
            if exc.status not in INVALID_ENTRY_STATUSES:
                raise
            if len(batch) == 1:
                reason = _error_text(exc.message)
                return [_record(batch[0], "rejected", reason=f"{reason} ({context})" if context else reason)]
            return self._split(batch, before, context)
        records, missing = self._reconcile(batch, items, before)
        if not missing:
            return records
        if len(batch) == 1:
            reason = "not in the result of the synchronous import"
            return [_record(batch[0], "rejected", reason=f"{reason} ({context})" if context else reason)]
        return records + self._split(missing, before, context)

    def _split(self, batch: list[_Pending], before: dict[int, bool], context: str) -> list[dict]:
        if len(batch) == 1:
            return self.isolate(batch, before, context)
        middle = len(batch) // 2
        return self.isolate(batch[:middle], before, context) + self.isolate(batch[middle:], before, context)


def import_jsonl(
    client: ThreekitClient,
    jsonl_path: Path,
    outcome_path: Path,
    *,
    batch_size: int = 500,
    mode: str = "job",
    concurrency: int = 4,
    job_deadline_s: float = 900,
    progress: ProgressCallback | None = None,
    poll_interval: float = 1.0,
    known_keys: Iterable[str] | None = None,
    lookup_existing: bool = True,
) -> ImportSummary:
    """Import every entry of ``jsonl_path`` into Threekit and write per-entry outcomes.

    See the module documentation for modes, the outcome file format and resuming.
    ``known_keys``: entry keys (SKUs) whose items are known to exist already (the delta
    ledger); they are reported ``updated``. Other entries are looked up once in the org's
    items unless ``lookup_existing`` is False (then they count as ``created``).
    ``progress(done, total)`` is called after every batch. Errors that are not about an
    entry (authentication, Threekit unreachable, a job past its deadline) stop the import
    and propagate; outcomes of the finished batches are kept, so a re-run resumes.
    """
    if mode not in ("job", "sync"):
        raise ValueError(f"mode must be 'job' or 'sync', not {mode!r}")
    if batch_size < 1 or concurrency < 1:
        raise ValueError("batch_size and concurrency must be at least 1")
    jsonl_path = Path(jsonl_path)
    outcome_path = Path(outcome_path)
    started = time.monotonic()
    input_sha256 = file_sha256(jsonl_path)
    journal = _OutcomeJournal(outcome_path, jsonl_path, input_sha256)
    previous = journal.load_previous()

    outcomes: dict[int, dict] = {}
    local_rejections: list[dict] = []
    pending_lines = 0
    for number, text in _iter_lines(jsonl_path):
        earlier = previous.get(number)
        if earlier is not None and _already_imported(earlier):
            outcomes[number] = {
                "line": number,
                "key": earlier.get("key"),
                "status": "skipped",
                "id": earlier.get("id"),
                "reason": "imported by an earlier attempt",
                "previous_status": earlier.get("previous_status") or earlier.get("status"),
            }
            continue
        entry, problem = _parse_line(number, text)
        if problem is not None:
            local_rejections.append(_record((number, f"line {number}"), "rejected", reason=problem))
        else:
            pending_lines += 1
    total_batches = math.ceil(pending_lines / batch_size)
    resumed = len(outcomes)
    log.info(
        "importing %s (%s mode): %d entries to send in %d batch(es) of up to %d, %d already imported, "
        "%d unreadable line(s)",
        jsonl_path.name,
        mode,
        pending_lines,
        total_batches,
        batch_size,
        resumed,
        len(local_rejections),
    )

    journal.open(resume=bool(previous))
    total_entries = resumed + len(local_rejections) + pending_lines
    logged_rejections = 0
    state_lock = threading.Lock()

    def account(records: list[dict]) -> None:
        nonlocal logged_rejections
        with state_lock:
            for record in records:
                outcomes[record["line"]] = record
                if record["status"] == "rejected" and logged_rejections < MAX_LOGGED_REJECTIONS:
                    logged_rejections += 1
                    log.warning("line %d (%s) rejected: %s", record["line"], record["key"], record["reason"])
                    if logged_rejections == MAX_LOGGED_REJECTIONS:
                        log.warning("further rejections are listed only in %s", outcome_path)
        journal.append(records)

    account(local_rejections)
    account(list(outcomes.values()) if resumed else [])

    existing = _Existing(client, set(known_keys or ()), lookup_existing)
    importer = _BatchImporter(client, mode, job_deadline_s, poll_interval, existing)
    batches_done = 0

    def run_batch(number: int, batch: list[_Pending]) -> tuple[int, int, list[dict], float]:
        batch_started = time.monotonic()
        return number, len(batch), importer.run(batch), time.monotonic() - batch_started

    def batches() -> Iterator[tuple[int, list[_Pending]]]:
        current: list[_Pending] = []
        number = 0
        for line, text in _iter_lines(jsonl_path):
            if line in outcomes:
                continue
            entry, problem = _parse_line(line, text)
            if problem is not None:
                continue
            current.append(_Pending(line, entry_key(entry, line), entry))
            if len(current) >= batch_size:
                number += 1
                yield number, current
                current = []
        if current:
            number += 1
            yield number, current

    in_flight: set[Future] = set()
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="threekit-import") as pool:
        source = batches()
        try:
            while True:
                while failure is None and len(in_flight) < concurrency:
                    nxt = next(source, None)
                    if nxt is None:
                        break
                    in_flight.add(pool.submit(run_batch, *nxt))
                if not in_flight:
                    break
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        number, size, records, seconds = future.result()
                    except BaseException as exc:  # noqa: BLE001 - re-raised once in-flight batches finish
                        if failure is None:
                            failure = exc
                        continue
                    account(records)
                    batches_done += 1
                    landed = sum(1 for r in records if r["status"] in LANDED_STATUSES)
                    log.info(
                        "batch %d/%d: %d entries, %d created/updated, %d rejected (%.1f s)",
                        number,
                        total_batches,
                        size,
                        landed,
                        size - landed,
                        seconds,
                    )
                    if progress is not None:
                        progress(len(outcomes), total_entries)
        except BaseException:
            for future in in_flight:
                future.cancel()
            journal.close()
            raise
    if failure is not None:
        journal.close()
        log.error(
            "import of %s stopped after %d of %d batch(es): %s; finished batches are recorded in %s "
            "and a re-run resumes from there",
            jsonl_path.name,
            batches_done,
            total_batches,
            failure,
            outcome_path,
        )
        raise failure

    journal.finalize(outcomes)
    summary = _summarise(outcomes, outcome_path, input_sha256, mode, batches_done)
    log.info(
        "imported %s in %.1f s: %d entries, %d created, %d updated, %d imported (sync), %d skipped, "
        "%d rejected (%d batches); outcomes in %s",
        jsonl_path.name,
        time.monotonic() - started,
        summary.total,
        summary.created,
        summary.updated,
        summary.imported,
        summary.skipped,
        summary.rejected,
        summary.batches,
        outcome_path,
    )
    return summary


def _already_imported(record: dict) -> bool:
    status = record.get("status")
    return status in LANDED_STATUSES or (
        status == "skipped" and record.get("previous_status") in LANDED_STATUSES
    )


def _summarise(
    outcomes: dict[int, dict], outcome_path: Path, input_sha256: str, mode: str, batches: int
) -> ImportSummary:
    summary = ImportSummary(
        outcome_path=str(outcome_path), input_sha256=input_sha256, mode=mode, batches=batches
    )
    for line in sorted(outcomes):
        record = outcomes[line]
        summary.total += 1
        status = record["status"]
        if status == "created":
            summary.created += 1
        elif status == "updated":
            summary.updated += 1
        elif status == "imported":
            summary.imported += 1
        elif status == "skipped":
            summary.skipped += 1
        else:
            summary.rejected += 1
            if len(summary.rejected_reasons) < MAX_REJECTED_REASONS:
                reason = str(record["reason"] or "")
                if len(reason) > MAX_SUMMARY_REASON_CHARS:
                    reason = reason[: MAX_SUMMARY_REASON_CHARS - 3] + "..."
                summary.rejected_reasons.append({"line": line, "key": record["key"], "reason": reason})
    return summary
