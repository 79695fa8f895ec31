"""Pipeline configuration: the ``threekit_pipeline`` Airflow Variable, read at run time.

Every key is optional; the defaults below are the documented ones. The Variable is a JSON
object (also settable as ``AIRFLOW_VAR_THREEKIT_PIPELINE``). This module has no Airflow
imports: tasks call :func:`load_config` with the Variable's raw value, so the parsing is
testable and usable from a CLI.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

VARIABLE_NAME = "threekit_pipeline"

DEFAULT_FOLDERS: dict[str, str] = {
    "inbound_catalog": "/inbound/catalog",
    "inbound_translations": "/inbound/translations",
    "inbound_assets": "/inbound/assets",
    "outbound_catalog": "/outbound/catalog",
    "outbound_assets": "/outbound/assets",
    "outbound_translations": "/outbound/translations",
    "outbound_renders": "/outbound/renders",
    "archive": "/archive",
    "rejected": "/rejected",
    "reports": "/reports",
}


class ConfigError(ValueError):
    """The ``threekit_pipeline`` Variable is malformed; the message says which key and why."""


def default_staging_dir() -> str:
    """Shared staging directory: ``THREEKIT_PIPELINE_STAGING_DIR``, else ``$AIRFLOW_HOME/staging``."""
    env = os.environ.get("THREEKIT_PIPELINE_STAGING_DIR")
    if env:
        return env
    home = os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow"))
    return str(Path(home) / "staging")


DEFAULT_MAX_ERROR_RATIO = 0.05


@dataclass(frozen=True)
class PipelineConfig:
    """Effective configuration of all Threekit pipelines (defaults documented in the README)."""

    ftp_conn_id: str = "ftp_default"
    threekit_conn_id: str = "threekit_default"
    # Mapping name under include/mappings/ or a path to a YAML file.
    mapping: str = "canonical"
    folders: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FOLDERS))
    staging_dir: str = field(default_factory=default_staging_dir)
    # Id of a ``postgres`` connection holding the ledgers; unset: SQLite under <staging>/ledger.
    ledger_conn_id: str | None = None
    # Object-storage staging (pipelines/staging.py): the base URL of the files tasks hand to each
    # other (``sftp://...``, ``s3://bucket/prefix``...) and the connection it is reached through.
    # Unset: staging is the local folder ``staging_dir``, which every worker must share.
    staging_url: str | None = None
    staging_conn_id: str | None = None
    poke_interval_seconds: float = 60.0
    # A file is complete when its size and mtime are unchanged for this long.
    stable_seconds: float = 30.0
    sensor_timeout_seconds: float = 3300.0
    # Marker-file mode: a file counts as complete only once "<name><suffix>" exists.
    marker_suffixes: tuple[str, ...] = ()
    export_tags: tuple[str, ...] = ()
    export_keywords: tuple[str, ...] = ()
    export_types: tuple[str, ...] = ("item",)
    # Per-file share of bad rows above which the whole file is rejected. Unset (None): the
    # catalog import uses the mapping's max_error_ratio and translations 0.05; set, it wins
    # over the mapping's for every source (README, "max_error_ratio").
    max_error_ratio: float | None = None
    batch_size: int = 500
    import_mode: str = "job"
    import_concurrency: int = 4
    job_deadline_seconds: float = 900.0
    # Asset export: explicit asset ids and/or tags selecting the assets to export.
    export_asset_ids: tuple[str, ...] = ()
    export_asset_tags: tuple[str, ...] = ()
    # Render export: which items (by tag; empty = every item) and where to deliver.
    render_tags: tuple[str, ...] = ()
    render_destinations: tuple[str, ...] = ()
    translations_per_locale: bool = False
    # Catalog lifecycle (overrides the mapping's ``lifecycle`` block): ``snapshot`` (full|delta),
    # ``retire`` (delete|tag:<name>|report), ``max_retire_ratio``; see pipelines/retire.py.
    catalog_lifecycle: dict[str, Any] = field(default_factory=dict)
    # Render spec for the render export (object, or a path to a YAML file); see threekit/renders.py.
    render_spec: dict[str, Any] | str = field(default_factory=dict)

    def folder(self, key: str) -> str:
        return self.folders[key]

    @property
    def error_ratio(self) -> float:
        """The Variable's max_error_ratio, else the default 0.05 (for pipelines without a mapping)."""
        return DEFAULT_MAX_ERROR_RATIO if self.max_error_ratio is None else self.max_error_ratio

    @property
    def render_targets(self) -> tuple[str, ...]:
        """FTP folders receiving renders: the configured destinations, else ``outbound_renders``."""
        return self.render_destinations or (self.folders["outbound_renders"],)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TUPLE_FIELDS = {f.name for f in fields(PipelineConfig) if str(f.type).startswith("tuple")}
_NUMBER_FIELDS = {
    "poke_interval_seconds": (0.1, None),
    "stable_seconds": (0.0, None),
    "sensor_timeout_seconds": (1.0, None),
    "max_error_ratio": (0.0, 1.0),
    "batch_size": (1, 10_000),
    "import_concurrency": (1, 64),
    "job_deadline_seconds": (1.0, None),
}


def load_config(raw: str | dict | None) -> PipelineConfig:
    """Parse the Variable's value (JSON text, a dict, or None for all defaults)."""
    if raw is None or raw == "":
        data: dict[str, Any] = {}
    elif isinstance(raw, dict):
        data = dict(raw)
    else:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"Variable {VARIABLE_NAME!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Variable {VARIABLE_NAME!r} must be a JSON object, got {type(data).__name__}")

    known = {f.name for f in fields(PipelineConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"Variable {VARIABLE_NAME!r}: unknown key(s) {unknown}; known keys: {sorted(known)}")

    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "folders":
            if not isinstance(value, dict):
                raise ConfigError(f"Variable {VARIABLE_NAME!r}: 'folders' must be an object")
            bad = sorted(set(value) - set(DEFAULT_FOLDERS))
            if bad:
                raise ConfigError(
                    f"Variable {VARIABLE_NAME!r}: unknown folder key(s) {bad}; known: {sorted(DEFAULT_FOLDERS)}"
                )
            merged = dict(DEFAULT_FOLDERS)
            for name, path in value.items():
                if not isinstance(path, str) or not path.startswith("/"):
                    raise ConfigError(f"Variable {VARIABLE_NAME!r}: folders.{name} must be an absolute path")
                merged[name] = path.rstrip("/") or "/"
            kwargs["folders"] = merged
        elif key in _TUPLE_FIELDS:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, tuple):
                value = list(value)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"Variable {VARIABLE_NAME!r}: {key!r} must be a list of strings")
            kwargs[key] = tuple(value)
        elif key in ("max_error_ratio", "ledger_conn_id", "staging_url", "staging_conn_id") and value is None:
            kwargs[key] = None  # unset: the mapping's max_error_ratio applies / SQLite ledgers
        elif key in _NUMBER_FIELDS:
            low, high = _NUMBER_FIELDS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"Variable {VARIABLE_NAME!r}: {key!r} must be a number")
            if value < low or (high is not None and value > high):
                raise ConfigError(f"Variable {VARIABLE_NAME!r}: {key!r}={value} out of range [{low}, {high}]")
            kwargs[key] = int(value) if key in {"batch_size", "import_concurrency"} else float(value)
        elif key == "import_mode":
            if value not in {"job", "sync"}:
                raise ConfigError(f"Variable {VARIABLE_NAME!r}: 'import_mode' must be 'job' or 'sync'")
            kwargs[key] = value
        elif key in ("catalog_lifecycle", "render_spec"):
            if not isinstance(value, dict) and not (key == "render_spec" and isinstance(value, str)):
                raise ConfigError(f"Variable {VARIABLE_NAME!r}: {key!r} must be an object")
            kwargs[key] = value
        elif key == "translations_per_locale":
            if not isinstance(value, bool):
                raise ConfigError(f"Variable {VARIABLE_NAME!r}: 'translations_per_locale' must be true/false")
            kwargs[key] = value
        else:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"Variable {VARIABLE_NAME!r}: {key!r} must be a non-empty string")
            kwargs[key] = value
    url = str(kwargs.get("staging_url") or "")
    if url.startswith("file://"):
        # A file:// staging URL is the local staging folder, written as a URL.
        from urllib.parse import unquote, urlparse

        kwargs["staging_dir"] = unquote(urlparse(url).path) or kwargs.get("staging_dir") or default_staging_dir()
    config = PipelineConfig(**kwargs)
    check_staging(config)
    return config


def object_staging_url(config: PipelineConfig) -> str | None:
    """The object-storage staging base in force, or None for the local ``staging_dir``.

    ``staging_url`` unset or ``file://...`` means local staging (a ``file://`` URL names the
    staging folder itself).
    """
    url = (config.staging_url or "").strip()
    if not url or url.startswith("file://"):
        return None
    return url


def check_staging(config: PipelineConfig) -> None:
    """Raise :class:`ConfigError` when the staging settings cannot work together.

    Object-storage staging means no disk is shared by the workers, so the ledgers cannot be the
    SQLite files under ``staging_dir``: ``ledger_conn_id`` is then required.
    """
    from urllib.parse import urlparse

    url = (config.staging_url or "").strip()
    if url and "://" not in url:
        raise ConfigError(
            f"Variable {VARIABLE_NAME!r}: 'staging_url' must be a URL such as sftp://host/path, "
            f"s3://bucket/prefix or file:///path, got {url!r}"
        )
    if url and urlparse(url).password:
        raise ConfigError(
            f"Variable {VARIABLE_NAME!r}: 'staging_url' must not hold a password; credentials belong in "
            "the connection named by 'staging_conn_id'"
        )
    if object_staging_url(config) and not config.ledger_conn_id:
        raise ConfigError(
            f"Variable {VARIABLE_NAME!r}: 'staging_url' {url!r} puts staging on object storage, where "
            "no disk is shared by the workers; the ledgers must then live in a database: set "
            "'ledger_conn_id' (a postgres connection)"
        )


def apply_feed(config: PipelineConfig, values: dict[str, Any]) -> PipelineConfig:
    """``config`` (the Variable) with a feed's values laid over it (keys as in :class:`PipelineConfig`).

    A feed value other than the built-in default wins over the Variable; a feed value equal to
    the built-in default leaves the Variable's value in force. So the default feeds file, which
    states only built-in defaults, changes nothing for an installation configured through the
    Variable, while a second feed with its own connection, folder or mapping gets them. Keys
    unknown to :class:`PipelineConfig` are ignored.
    """
    from dataclasses import replace

    builtin = PipelineConfig()
    known = {f.name for f in fields(PipelineConfig)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            continue
        if key == "folders":
            folders = dict(config.folders)
            for name, path in value.items():
                if path != DEFAULT_FOLDERS.get(name):
                    folders[name] = path
            changes["folders"] = folders
            continue
        if isinstance(value, list):
            value = tuple(value)
        if value != getattr(builtin, key):
            changes[key] = value
    return replace(config, **changes)
