"""Staging on object storage: the files tasks hand to each other, with no disk shared by workers.

By default (``staging_url`` unset) staging is the local folder ``staging_dir`` that every task of
a run reads and writes in place; that needs one disk mounted by every worker. With
``staging_url`` set (``sftp://...``, ``s3://...``, ``gs://...``: any scheme Airflow's
``ObjectStoragePath`` resolves through a connection), the object store is the only place staged
files live between tasks, and each task works on a scratch copy:

- :meth:`ObjectStaging.pull_tree` / :meth:`ObjectStaging.pull_group` stream what the task reads
  from the store into the task's own scratch folder (``<staging_dir>/scratch/task-XXXX/``);
- :meth:`ObjectStaging.discard` empties a folder in the store (a task rebuilding it from scratch);
- :meth:`ObjectStaging.close` streams every file the task created or changed back to the store,
  deletes from the store what the task deleted, and removes the scratch folder.

Paths in scratch mirror the store: ``<scratch>/<dag_id>/<run>/chunks/chunk_0001.jsonl`` is
``<staging_url>/<dag_id>/<run>/chunks/chunk_0001.jsonl``. A path another task wrote into XCom
(its own scratch path) is found again by its ``<dag_id>/<run>/`` part
(:meth:`ObjectStaging.relative_of`).

Uploads go to a temporary name and are renamed into place, so a reader never sees half a file.
The filesystem is any fsspec ``AbstractFileSystem`` (``ObjectStoragePath(...).fs``); this module
has no Airflow import.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

log = logging.getLogger(__name__)

#: Folder under ``staging_dir`` holding the per-task scratch folders (object-storage staging only).
SCRATCH_FOLDER = "scratch"

#: Names of uploads in progress (see :meth:`ObjectStaging._put`): ``.part-<12 hex digits>``, or
#: ``<name>.part-<12 hex digits>`` as earlier versions named them. A staged file whose name merely
#: holds ``.part-`` (``products.part-1.csv``) is an ordinary file.
_UPLOAD_IN_PROGRESS = re.compile(r"\.part-[0-9a-f]{12}$")


def _in_progress(name: str) -> bool:
    return bool(_UPLOAD_IN_PROGRESS.search(name))


class StagingError(RuntimeError):
    """A staged file could not be read from or written to the object store (the message says which)."""


@dataclass
class PushSummary:
    """What :meth:`ObjectStaging.push` did: files and bytes uploaded, files deleted in the store."""

    uploaded: int = 0
    bytes: int = 0
    deleted: int = 0


def _fingerprint(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


class ObjectStaging:
    """One task's view of object-storage staging (see the module docstring).

    ``fs``: an fsspec filesystem; ``root``: the staging base in ``fs`` terms (``fs``'s own path,
    no scheme); ``url``: the same base as the user wrote it (for messages); ``scratch_root``: the
    local folder under which this task's scratch folder is made.
    """

    def __init__(self, fs: Any, root: str, url: str, scratch_root: str | Path) -> None:
        self.fs = fs
        self.root = root.rstrip("/") or "/"
        self.url = url.rstrip("/")
        Path(scratch_root).mkdir(parents=True, exist_ok=True)
        self.local_root = Path(tempfile.mkdtemp(prefix="task-", dir=scratch_root))
        # Files this task copied from the store: relative path -> (size, mtime_ns) right after the copy.
        self._pulled: dict[str, tuple[int, int]] = {}
        self._pulled_trees: set[str] = set()
        self.closed = False

    def __repr__(self) -> str:
        return f"ObjectStaging({self.url!r}, scratch={str(self.local_root)!r})"

    # --- paths ---------------------------------------------------------------------------------

    def local(self, relative: str | PurePosixPath) -> Path:
        """The scratch path of ``relative`` (a path under the staging base)."""
        return self.local_root.joinpath(*PurePosixPath(str(relative)).parts)

    def remote(self, relative: str | PurePosixPath) -> str:
        """The store path (in ``fs`` terms) of ``relative``."""
        text = str(PurePosixPath(str(relative)))
        return self.root if text in ("", ".") else f"{self.root}/{text}"

    def relative_of(self, path: str | Path, anchors: tuple[str, ...]) -> str | None:
        """``path``'s part under the staging base, when it is a staged path of this or another task.

        A path in this task's scratch is relative to it. A path from another task's scratch (or
        from the store) is recognised by the first of ``anchors`` (``"<dag_id>/<run>"`` parts)
        it contains. None when ``path`` is neither.
        """
        path_text = str(path)
        try:
            return Path(path_text).relative_to(self.local_root).as_posix()
        except ValueError:
            pass
        parts = PurePosixPath(path_text.replace(os.sep, "/")).parts
        for anchor in anchors:
            wanted = PurePosixPath(anchor).parts
            for start in range(len(parts) - len(wanted) + 1):
                if parts[start : start + len(wanted)] == wanted:
                    return PurePosixPath(*parts[start:]).as_posix()
        return None

    # --- reading ---------------------------------------------------------------------------------

    def _listing(self, remote: str) -> dict[str, dict]:
        try:
            if not self.fs.exists(remote):
                return {}
            found = self.fs.find(remote, withdirs=False, detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:  # noqa: BLE001 - the store's own errors, named with the place
            raise StagingError(f"cannot list {self._shown(remote)}: {type(exc).__name__}: {exc}") from exc
        return {
            name: info for name, info in found.items()
            if info.get("type", "file") == "file" and not _in_progress(PurePosixPath(name).name)
        }

    def _relative(self, remote: str) -> str:
        # Stores differ in whether the names they list start with "/" (memory: always; s3: never),
        # whatever the base was written with: compare without it.
        base = self.root.strip("/")
        name = remote.lstrip("/")
        if not base:
            return name
        if not name.startswith(base + "/"):
            raise StagingError(f"{remote} is not under the staging base {self.url}")
        return name[len(base) + 1:]

    def _shown(self, remote: str) -> str:
        try:
            return f"{self.url}/{self._relative(remote)}"
        except StagingError:
            return remote

    def _get(self, relative: str, info: dict | None = None) -> None:
        local = self.local(relative)
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.fs.get_file(self.remote(relative), str(local))
        except Exception as exc:  # noqa: BLE001
            raise StagingError(f"cannot read {self.url}/{relative}: {type(exc).__name__}: {exc}") from exc
        size = (info or {}).get("size")
        if size is not None and local.stat().st_size != int(size):
            raise StagingError(
                f"{self.url}/{relative}: read {local.stat().st_size} bytes but the store listed {size}"
            )
        self._pulled[relative] = _fingerprint(local)

    def pull_tree(self, relative: str, *, top_level_only: bool = False) -> int:
        """Copy the store's ``relative`` folder (every file under it) into scratch, once per task.

        ``top_level_only``: only the files directly in it, not its sub-folders. Files the task
        already has in scratch are kept as they are. Returns the number of files copied.
        """
        key = f"{relative}{'/' if top_level_only else '/**'}"
        if key in self._pulled_trees or f"{relative}/**" in self._pulled_trees:
            return 0
        self._pulled_trees.add(key)
        copied = 0
        for remote, info in self._listing(self.remote(relative)).items():
            rel = self._relative(remote)
            inner = PurePosixPath(rel).relative_to(PurePosixPath(relative)) if relative not in ("", ".") else PurePosixPath(rel)
            if top_level_only and len(inner.parts) > 1:
                continue
            if rel in self._pulled or self.local(rel).exists():
                continue
            self._get(rel, info)
            copied += 1
        if copied:
            log.info("Staging: read %d file(s) of %s/%s", copied, self.url, relative)
        return copied

    def pull_group(self, relative: str) -> int:
        """Copy the file ``relative`` and its companions (same folder, same name up to the first
        dot: ``chunk_0001.jsonl``, ``chunk_0001.hashes.json``...) into scratch, unless already there."""
        path = PurePosixPath(relative)
        stem = path.name.split(".", 1)[0]
        folder = path.parent.as_posix()
        copied = 0
        try:
            listed = self.fs.ls(self.remote(folder), detail=True) if self.fs.exists(self.remote(folder)) else []
        except FileNotFoundError:
            listed = []
        except Exception as exc:  # noqa: BLE001 - the store's own errors, named with the place
            raise StagingError(f"cannot list {self.url}/{folder}: {type(exc).__name__}: {exc}") from exc
        for info in listed:
            name = PurePosixPath(info["name"]).name
            if info.get("type", "file") != "file" or _in_progress(name):
                continue
            if name != path.name and not name.startswith(stem + "."):
                continue
            rel = (PurePosixPath(folder) / name).as_posix() if folder not in ("", ".") else name
            if rel in self._pulled or self.local(rel).exists():
                continue
            self._get(rel, info)
            copied += 1
        return copied

    # --- writing ---------------------------------------------------------------------------------

    def discard(self, relative: str) -> None:
        """Empty the folder ``relative`` in the store and in scratch (a task rebuilding it)."""
        remote = self.remote(relative)
        try:
            if self.fs.exists(remote):
                self.fs.rm(remote, recursive=True)
        except FileNotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001
            raise StagingError(f"cannot empty {self.url}/{relative}: {type(exc).__name__}: {exc}") from exc
        prefix = f"{relative}/"
        for rel in [r for r in self._pulled if r.startswith(prefix)]:
            del self._pulled[rel]
        local = self.local(relative)
        if local.exists():
            shutil.rmtree(local)

    def _put(self, relative: str, local: Path) -> None:
        remote = self.remote(relative)
        parent = remote.rsplit("/", 1)[0] or "/"
        # A short name next to the target: ``<name>.part-...`` would outgrow the 255 bytes a file
        # name may have for a (legal) name of more than 237.
        temporary = f"{parent.rstrip('/')}/.part-{uuid.uuid4().hex[:12]}"
        try:
            self.fs.makedirs(parent, exist_ok=True)
            self.fs.put_file(str(local), temporary)
            try:
                self.fs.mv(temporary, remote)
            except (FileExistsError, OSError):
                # Stores whose rename refuses an existing target: replace it.
                if self.fs.exists(remote):
                    self.fs.rm(remote)
                self.fs.mv(temporary, remote)
        except Exception as exc:  # noqa: BLE001
            try:
                if self.fs.exists(temporary):
                    self.fs.rm(temporary)
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
            raise StagingError(f"cannot write {self.url}/{relative}: {type(exc).__name__}: {exc}") from exc

    def push(self) -> PushSummary:
        """Write back what the task changed: new or modified scratch files are uploaded, files the
        task copied and then deleted are deleted in the store. Safe to call more than once."""
        summary = PushSummary()
        present: set[str] = set()
        for local in sorted(p for p in self.local_root.rglob("*") if p.is_file()):
            rel = local.relative_to(self.local_root).as_posix()
            present.add(rel)
            if _in_progress(local.name):
                continue
            fingerprint = _fingerprint(local)
            if self._pulled.get(rel) == fingerprint:
                continue
            self._put(rel, local)
            self._pulled[rel] = fingerprint
            summary.uploaded += 1
            summary.bytes += fingerprint[0]
        for rel in [r for r in self._pulled if r not in present]:
            remote = self.remote(rel)
            try:
                if self.fs.exists(remote):
                    self.fs.rm(remote)
                    summary.deleted += 1
            except FileNotFoundError:
                pass
            except Exception as exc:  # noqa: BLE001
                raise StagingError(f"cannot delete {self.url}/{rel}: {type(exc).__name__}: {exc}") from exc
            del self._pulled[rel]
        if summary.uploaded or summary.deleted:
            log.info(
                "Staging: wrote %d file(s) (%d bytes) to %s, deleted %d there",
                summary.uploaded, summary.bytes, self.url, summary.deleted,
            )
        return summary

    def close(self, *, push: bool = True) -> PushSummary:
        """Push (unless ``push`` is false), then delete this task's scratch folder."""
        if self.closed:
            return PushSummary()
        try:
            return self.push() if push else PushSummary()
        finally:
            self.closed = True
            shutil.rmtree(self.local_root, ignore_errors=True)
