"""Deliver local files to FTP folders idempotently: the one way every outbound DAG writes to FTP.

A file is uploaded (atomically, through the FTP client's temporary-name-then-rename upload) only
when the remote copy is missing or differs from the local file. "Differs" is decided from the
remote size and, for the content, from a delivery ledger kept in the shared staging directory
(``<staging>/ledger/deliveries.sqlite``, or PostgreSQL, see :mod:`threekit_pipeline.pipelines.ledgers`): after
every upload the ledger records ``sha256``, size and the remote modification time under the key
``<target>|<remote path>``. On the next delivery:

* remote size differs, or remote missing          -> upload;
* same size and the ledger holds the same sha256, size and remote mtime -> unchanged, nothing sent;
* same size but the ledger does not vouch for it (ledger lost, file replaced by someone else,
  first delivery to a pre-filled folder) -> the remote copy is downloaded once and hashed; equal
  content is recorded as unchanged, different content is uploaded.

So an unchanged file is never uploaded twice, and a remote file modified behind our back is
repaired on the next run. No Airflow imports; the client is an open
:class:`threekit_pipeline.ftp.client.FtpClient` (or anything with ``stat``, ``makedirs``,
``upload_atomic`` and ``download``).
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from threekit_pipeline.pipelines.ledger import Ledger
from threekit_pipeline.pipelines.ledgers import open_ledger

log = logging.getLogger(__name__)

DELIVERY_LEDGER_NAME = "deliveries"

ACTION_UPLOADED = "uploaded"
ACTION_UNCHANGED = "unchanged"
ACTION_WOULD_UPLOAD = "would_upload"

# Progress lines on long delivery loops: at most one per this many seconds.
_PROGRESS_EVERY_S = 10.0


class DeliveryError(RuntimeError):
    """An upload could not be verified (the remote copy is missing or has the wrong size)."""


@dataclass(frozen=True)
class Delivery:
    """What happened to one local file: ``action`` is uploaded | unchanged | would_upload (dry run)."""

    local_path: str
    remote_path: str
    action: str
    size: int
    sha256: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DeliverySummary:
    """Counts of a batch of deliveries plus each file's outcome."""

    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def uploaded(self) -> int:
        return sum(1 for d in self.deliveries if d.action == ACTION_UPLOADED)

    @property
    def unchanged(self) -> int:
        return sum(1 for d in self.deliveries if d.action == ACTION_UNCHANGED)

    @property
    def would_upload(self) -> int:
        return sum(1 for d in self.deliveries if d.action == ACTION_WOULD_UPLOAD)

    @property
    def bytes_uploaded(self) -> int:
        return sum(d.size for d in self.deliveries if d.action == ACTION_UPLOADED)

    def describe(self) -> str:
        text = f"{self.uploaded} uploaded ({self.bytes_uploaded} bytes), {self.unchanged} unchanged"
        if self.would_upload:
            text += f", {self.would_upload} would be uploaded (dry run)"
        return text

    def to_dict(self, *, limit: int = 50) -> dict[str, Any]:
        """Small summary for XCom: counts plus the first ``limit`` file outcomes."""
        return {
            "files": len(self.deliveries),
            "uploaded": self.uploaded,
            "unchanged": self.unchanged,
            "would_upload": self.would_upload,
            "bytes_uploaded": self.bytes_uploaded,
            "deliveries": [d.to_dict() for d in self.deliveries[:limit]],
        }


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a local file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_delivery_ledger(config: Any) -> Ledger:
    """The shared delivery ledger (caller closes it).

    ``config``: the pipeline configuration (PostgreSQL when its ``ledger_conn_id`` is set), or
    a staging directory for ``<staging>/ledger/deliveries.sqlite``.
    """
    return open_ledger(config, DELIVERY_LEDGER_NAME)


def remote_stat(client: Any, path: str) -> Any:
    """``client.stat(path)``, or None when the remote path does not exist."""
    try:
        return client.stat(path)
    except FileNotFoundError:
        return None


def _fingerprint(sha256: str, size: int, modified: Any) -> str:
    moment = modified.isoformat() if hasattr(modified, "isoformat") else (str(modified) if modified else "")
    return f"sha256={sha256};size={size};mtime={moment}"


def _remote_sha256(client: Any, remote_path: str, scratch_dir: Path | None) -> str:
    with tempfile.TemporaryDirectory(dir=scratch_dir, prefix="delivery-compare-") as tmp:
        local = Path(tmp) / "remote.bin"
        client.download(remote_path, local)
        return sha256_of(local)


def deliver_file(
    client: Any,
    local_path: str | Path,
    remote_path: str,
    *,
    ledger: Ledger,
    target: str,
    run_id: str,
    dry_run: bool = False,
    scratch_dir: Path | None = None,
) -> Delivery:
    """Put ``local_path`` at ``remote_path`` unless an identical copy is already there.

    ``target`` names the FTP destination (the connection id) so one ledger can serve several
    servers. In a dry run nothing is uploaded and the ledger is not touched; the outcome says
    what would happen. The remote folder is created when missing.
    """
    local = Path(local_path)
    if not local.is_file():
        raise FileNotFoundError(f"cannot deliver {local}: no such local file")
    if not remote_path.startswith("/"):
        raise ValueError(f"remote path must be absolute: {remote_path!r}")
    size = local.stat().st_size
    sha256 = sha256_of(local)
    key = f"{target}|{remote_path}"
    existing = remote_stat(client, remote_path)

    if existing is not None and getattr(existing, "is_dir", False):
        raise DeliveryError(f"cannot deliver {local.name}: {remote_path} is a directory on the FTP server")
    if existing is not None and existing.size == size:
        entry = ledger.get(key)
        if entry is not None and entry.content_hash == _fingerprint(sha256, size, existing.modified):
            return Delivery(
                str(local), remote_path, ACTION_UNCHANGED, size, sha256, "same content (delivery ledger)"
            )
        # Same size but not vouched for by the ledger: compare the content once.
        if _remote_sha256(client, remote_path, scratch_dir) == sha256:
            if not dry_run:
                ledger.record([(key, _fingerprint(sha256, size, existing.modified))], run_id=run_id)
            return Delivery(
                str(local), remote_path, ACTION_UNCHANGED, size, sha256, "same content (remote copy hashed)"
            )
        reason = "content differs"
    elif existing is not None:
        reason = f"size differs (remote {existing.size}, local {size} bytes)"
    else:
        reason = "new"

    if dry_run:
        return Delivery(str(local), remote_path, ACTION_WOULD_UPLOAD, size, sha256, reason)

    client.makedirs(posixpath.dirname(remote_path) or "/")
    final = client.upload_atomic(local, remote_path) or remote_path
    uploaded = remote_stat(client, final)
    if uploaded is None or uploaded.size != size:
        raise DeliveryError(
            f"upload of {local.name} to {final} could not be verified: remote size "
            f"{getattr(uploaded, 'size', None)}, expected {size} bytes"
        )
    ledger.record([(key, _fingerprint(sha256, size, uploaded.modified))], run_id=run_id)
    return Delivery(str(local), final, ACTION_UPLOADED, size, sha256, reason)


def deliver_files(
    client: Any,
    pairs: Iterable[tuple[str | Path, str]],
    *,
    ledger: Ledger,
    target: str,
    run_id: str,
    dry_run: bool = False,
    scratch_dir: Path | None = None,
    label: str = "delivery",
) -> DeliverySummary:
    """Deliver ``(local_path, remote_path)`` pairs in order; logs progress and a final count line."""
    items: Sequence[tuple[str | Path, str]] = list(pairs)
    summary = DeliverySummary()
    last_progress = time.monotonic()
    for position, (local, remote) in enumerate(items, start=1):
        outcome = deliver_file(
            client,
            local,
            remote,
            ledger=ledger,
            target=target,
            run_id=run_id,
            dry_run=dry_run,
            scratch_dir=scratch_dir,
        )
        summary.deliveries.append(outcome)
        if outcome.action != ACTION_UNCHANGED:
            log.info(
                "%s: %s %s (%d bytes, %s)",
                label,
                outcome.action,
                outcome.remote_path,
                outcome.size,
                outcome.reason,
            )
        if time.monotonic() - last_progress >= _PROGRESS_EVERY_S:
            log.info("%s: %d/%d files checked (%s)", label, position, len(items), summary.describe())
            last_progress = time.monotonic()
    log.info("%s: %d file(s): %s", label, len(items), summary.describe())
    return summary
