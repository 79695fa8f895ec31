"""Helpers of the fault-injection and idempotency tests (``tests/faults``, ``tests/idempotency``).

* Catalog batches from the sample generator, optionally padded with a column the mapping
  ignores so the products file is big enough for a transfer to be interrupted half-way.
* State snapshots: Threekit items grouped by SKU, the FTP tree with sizes and SHA-256, the
  faults the Threekit sandbox actually injected (from its request log).
* :class:`FreezeOnFileEvent`: freezes the FTP server the instant it touches a given file, so a
  test can kill and restart it in the middle of a download, an upload or a rename, every time.

The DAG-run helpers of ``tests/pipelines/_dag_runs.py`` are re-exported from here.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import re
import signal
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS / "pipelines") not in sys.path:
    sys.path.insert(0, str(_TESTS / "pipelines"))

from _dag_runs import (  # noqa: E402
    FAST_VARIABLE,
    ftp_files,
    load_dag,
    put_ftp_file,
    request_count,
    run_dag,
    running_stack,
    set_variable,
    threekit_client,
)
from threekit_pipeline.devtools.stack import FTP_CONN_ENV, THREEKIT_CONN_ENV, LocalStack  # noqa: E402
from threekit_pipeline.samples.catalog import generate_catalog  # noqa: E402

__all__ = [
    "DAG_ID",
    "FAST_VARIABLE",
    "FreezeOnFileEvent",
    "IMPORT_ROUTE",
    "INBOUND",
    "catalog_batch",
    "catalog_names",
    "expected_names",
    "ftp_files",
    "ftp_tree",
    "injected_faults",
    "items_by_sku",
    "load_dag",
    "local_parts",
    "put_ftp_file",
    "request_count",
    "run_dag",
    "running_stack",
    "set_connection_extras",
    "set_variable",
    "snapshot_items",
    "temp_uploads",
    "threekit_client",
    "upload_batch",
    "wait_until",
]

DAG_ID = "threekit_catalog_import"
INBOUND = "/inbound/catalog"
IMPORT_ROUTE = "POST /api/products/import"
FREEZE_WATCH = Path(__file__).with_name("_freeze_watch.py")

# Padded products files carry fields far above the csv module's default 128 KiB limit.
csv.field_size_limit(1 << 30)


# --- catalogs --------------------------------------------------------------------------------


def catalog_batch(
    out_dir: Path, stamp: str, *, products: int = 30, seed: int = 0, pad_bytes_per_row: int = 0
) -> dict[str, Path]:
    """A generated catalog batch (products, options, prices, parts) stamped ``stamp``.

    ``pad_bytes_per_row`` adds an ``internal_notes`` column the canonical mapping ignores (ERP
    exports carry such columns), making the products file large without adding products.
    """
    files = generate_catalog(
        Path(out_dir) / f"gen_{stamp}_{seed}",
        products=products,
        stamp=stamp,
        seed=seed,
        options_per_product=2,
        prices_per_product=1,
        locales=(),
    )
    if pad_bytes_per_row:
        path = files["products"]
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        rng = random.Random(seed)
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=[*rows[0], "internal_notes"], lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "internal_notes": "".join(rng.choices(string.ascii_letters, k=pad_bytes_per_row))})
    return files


def upload_batch(stack: LocalStack, files: Mapping[str, Path], folder: str = INBOUND) -> list[str]:
    """Place the batch's files in an FTP folder (as finished uploads); returns their names, sorted."""
    for path in files.values():
        put_ftp_file(stack, f"{folder}/{path.name}", path.read_bytes())
    return sorted(path.name for path in files.values())


def expected_names(files: Mapping[str, Path]) -> dict[str, str]:
    """SKU -> product name, as the batch's products file says."""
    with open(files["products"], newline="", encoding="utf-8") as handle:
        return {row["sku"]: row["name"] for row in csv.DictReader(handle)}


# --- state snapshots ---------------------------------------------------------------------------


def items_by_sku(stack: LocalStack) -> dict[str, list[dict]]:
    """Threekit items grouped by their SKU metadata (several items per SKU = duplicates)."""
    found: dict[str, list[dict]] = {}
    for item in stack.threekit.items():
        found.setdefault((item.get("metadata") or {}).get("SKU"), []).append(item)
    return found


def snapshot_items(stack: LocalStack) -> dict[str, dict]:
    """SKU -> the item's content without bookkeeping fields; fails on duplicate SKUs."""
    fields = ("id", "name", "description", "keywords", "tags", "metadata", "attributes")
    grouped = items_by_sku(stack)
    duplicates = sorted(sku for sku, copies in grouped.items() if len(copies) > 1)
    assert not duplicates, f"SKUs present more than once in Threekit: {duplicates[:10]}"
    return {sku: {f: copies[0].get(f) for f in fields} for sku, copies in grouped.items()}


def catalog_names(stack: LocalStack) -> dict[str, str]:
    """SKU -> item name; fails on duplicate SKUs."""
    return {sku: item["name"] for sku, item in snapshot_items(stack).items()}


def ftp_tree(stack: LocalStack, folder: str = "/") -> dict[str, tuple[int, str]]:
    """Every file under an FTP folder, from the server's disk: relative path -> (size, sha256)."""
    base = Path(stack.ftp.root) / folder.strip("/")
    tree: dict[str, tuple[int, str]] = {}
    if not base.exists():
        return tree
    for path in sorted(base.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            tree[path.relative_to(base).as_posix()] = (len(data), hashlib.sha256(data).hexdigest())
    return tree


def temp_uploads(stack: LocalStack) -> list[str]:
    """Leftover temporary upload files (``.<name>.<hex>.part``) anywhere on the FTP server."""
    root = Path(stack.ftp.root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(".*.part"))


def local_parts(directory: Path) -> list[str]:
    """Leftover partial downloads (``*.part``) under a local directory."""
    return sorted(p.name for p in Path(directory).rglob("*.part"))


_SANDBOX_REQUEST = re.compile(r"\b(GET|POST|PUT|DELETE) (/api/\S*) (\d{3}|dropped)\b")


def injected_faults(stack: LocalStack) -> Counter:
    """How many API answers of each kind the Threekit sandbox gave: ``Counter({"429": n, "dropped": m})``.

    Read from the sandbox's request log, which records every answer (faulted ones included).
    """
    log_file = Path(stack.logs_dir) / "threekit-sandbox.log"
    counts: Counter = Counter()
    if log_file.exists():
        for match in _SANDBOX_REQUEST.finditer(log_file.read_text(errors="replace")):
            counts[match.group(3)] += 1
    return counts


# --- connections ---------------------------------------------------------------------------------


def set_connection_extras(*, threekit: Mapping[str, Any] | None = None, ftp: Mapping[str, Any] | None = None) -> None:
    """Update the extras of the ``threekit_default`` / ``ftp_default`` connections in ``os.environ``."""
    for name, extras in ((THREEKIT_CONN_ENV, threekit), (FTP_CONN_ENV, ftp)):
        if extras:
            connection = json.loads(os.environ[name])
            connection["extra"].update(extras)
            os.environ[name] = json.dumps(connection)


# --- server freezing -------------------------------------------------------------------------------


class FreezeOnFileEvent:
    """Kill and restart the FTP sandbox the moment it touches a file, during whatever runs inside.

    A watcher process (``_freeze_watch.py``, Linux inotify) sends SIGSTOP to the server on the
    ``count``-th ``event`` (``access`` / ``create`` / ``moved_to``) for a name matching
    ``name`` in ``directory`` (on the server's disk). A background thread then SIGKILLs the
    frozen server (every open transfer and control connection is cut off at that point), waits
    ``down_seconds`` and starts it again on the same port. ``fired`` tells whether it happened.
    """

    def __init__(
        self,
        stack: LocalStack,
        directory: Path,
        event: str,
        name: str = "*",
        *,
        count: int = 1,
        down_seconds: float = 0.3,
        timeout: float = 120.0,
        after_restart: Callable[[], None] | None = None,
    ) -> None:
        self.stack = stack
        self.directory = Path(directory)
        self.event = event
        self.name = name
        self.count = count
        self.down_seconds = down_seconds
        self.timeout = timeout
        self.after_restart = after_restart
        self.fired = threading.Event()
        self.restarted = threading.Event()
        self.error: BaseException | None = None
        self.watcher_output = ""
        self._watcher: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FreezeOnFileEvent:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._watcher = subprocess.Popen(
            [
                sys.executable,
                str(FREEZE_WATCH),
                "--dir",
                str(self.directory),
                "--event",
                self.event,
                "--name",
                self.name,
                "--count",
                str(self.count),
                "--pid",
                str(self.stack.ftp.pid),
                "--timeout",
                str(self.timeout),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        first = self._watcher.stdout.readline().strip()
        if first != "watching":
            self._watcher.wait(5)
            raise RuntimeError(f"the freeze watcher did not start: {first} {self._watcher.stdout.read()}")
        self._thread = threading.Thread(target=self._react, daemon=True)
        self._thread.start()
        return self

    def _react(self) -> None:
        try:
            output = self._watcher.stdout.read()
            code = self._watcher.wait()
            self.watcher_output = output.strip()
            if code != 0:
                return
            self.fired.set()
            pid = self.stack.ftp.pid
            os.kill(pid, signal.SIGKILL)
            time.sleep(self.down_seconds)
            self.stack.ftp.restart()
            if self.after_restart is not None:
                self.after_restart()
            self.restarted.set()
        except BaseException as exc:  # reported by __exit__ in the test's thread
            self.error = exc

    def __exit__(self, *exc_info: object) -> None:
        if self._watcher is not None and self._watcher.poll() is None:
            self._watcher.terminate()
            self._watcher.wait(5)
        if self._thread is not None:
            self._thread.join(30)
        if self._watcher is not None and self._watcher.stdout is not None:
            self._watcher.stdout.close()
        if self.fired.is_set() and not self.stack.ftp.running:
            # A failure between the kill and the restart must not leave the test without a server.
            self.stack.ftp.restart()
        if self.error is not None:
            raise RuntimeError(f"restarting the FTP sandbox failed: {self.error!r}") from self.error


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until true or ``timeout`` seconds passed; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
