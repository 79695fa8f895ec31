"""Feeds as configuration: the pydantic model of a feeds file (YAML), and its loader.

A feeds file declares any number of **inbound feeds** (catalog, translations, source
assets picked up from a partner's folder) and **outbound deliveries** (catalog, asset,
translations and render exports, archive copies, each to one or more destinations). Each
feed names its transfer connection (an Airflow connection of type ``ftp``, ``ftps`` or
``sftp``: the transfer layer picks the client), folders and patterns, mapping, schedule,
Threekit connection, destinations, notification recipients and options. ``defaults``
holds what feeds share; a feed's own value wins.

:func:`load_feeds` validates a file; a mistake raises :class:`FeedsError`, whose message
names the file, the feed and the key (``feeds.yaml: inbound feed 'erp' (inbound[0]):
options.stable_seconds: Input should be greater than or equal to 0``). The default file
(:data:`DEFAULT_FEEDS_FILE`) reproduces the seven DAGs of a single-ERP installation.

No Airflow imports: the DAG factories read the path (``THREEKIT_FEEDS_FILE`` environment
variable, else the ``threekit_feeds_file`` Variable, else the default) and call
:func:`load_feeds`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

DEFAULT_FEEDS_FILE = Path(__file__).resolve().parents[1] / "feeds" / "default.yaml"
FEEDS_FILE_ENV = "THREEKIT_FEEDS_FILE"
FEEDS_FILE_VARIABLE = "threekit_feeds_file"

_ID = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


class FeedsError(ValueError):
    """The feeds file is unreadable or invalid; the message names the file, the feed and the key."""


def _feed_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError("must be lower-case letters, digits and '_', starting with a letter (max 50)")
    return value


def _conn_id(value: str) -> str:
    if not _CONN_ID.match(value):
        raise ValueError("must be an Airflow connection id (letters, digits, '_', '.', '-')")
    return value


def _folder(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must be an absolute remote path (starting with '/')")
    if any(part == ".." for part in value.split("/")):
        raise ValueError("must not contain '..'")
    return value.rstrip("/") or "/"


def _cron(value: str) -> str:
    from croniter import croniter

    if value.startswith("@"):
        if value not in {"@hourly", "@daily", "@weekly", "@monthly", "@yearly"}:
            raise ValueError("must be a cron expression or @hourly/@daily/@weekly/@monthly/@yearly")
        return value
    if not croniter.is_valid(value):
        raise ValueError(f"{value!r} is not a valid cron expression")
    return value


def _string_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


FeedId = Annotated[str, AfterValidator(_feed_id)]
ConnId = Annotated[str, AfterValidator(_conn_id)]
Folder = Annotated[str, AfterValidator(_folder)]
Cron = Annotated[str, AfterValidator(_cron)]
Strings = Annotated[tuple[str, ...], BeforeValidator(_string_list)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Recipient(_Model):
    """An address to notify; ``patterns`` limits it to matching file names (a partner's own files)."""

    email: str
    patterns: Strings = ("*",)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"email": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_email(self) -> Recipient:
        if not _EMAIL.match(self.email):
            raise ValueError(f"{self.email!r} is not an email address")
        return self


class Destination(_Model):
    """Where a delivery goes: a transfer connection (ftp, ftps or sftp) and a folder on it."""

    transfer: ConnId
    folder: Folder


class InboundOptions(_Model):
    """Tuning of an inbound feed (the defaults are today's)."""

    poke_interval_seconds: float = Field(60.0, ge=0.1)
    stable_seconds: float = Field(30.0, ge=0)
    sensor_timeout_seconds: float = Field(3300.0, ge=1)
    marker_suffixes: Strings = ()
    # None: the mapping's max_error_ratio applies (0.05 for translations); set, it wins (README).
    max_error_ratio: float | None = Field(None, ge=0, le=1)
    batch_size: int = Field(500, ge=1, le=10_000)
    import_mode: Literal["job", "sync"] = "job"
    import_concurrency: int = Field(4, ge=1, le=64)
    job_deadline_seconds: float = Field(900.0, ge=1)
    translations_per_locale: bool = False


class OutboundOptions(_Model):
    """What an outbound delivery selects (the defaults are today's)."""

    export_tags: Strings = ()
    export_keywords: Strings = ()
    export_types: Strings = ("item",)
    export_asset_ids: Strings = ()
    export_asset_tags: Strings = ()
    render_tags: Strings = ()
    translations_per_locale: bool = False


class Defaults(_Model):
    """Shared values; each feed may override any of them."""

    owner: str = "data-platform"
    retries: int = Field(3, ge=0, le=20)
    retry_delay_seconds: float = Field(30.0, ge=0)
    transfer: ConnId = "ftp_default"
    threekit: ConnId = "threekit_default"
    smtp: ConnId = "smtp_default"
    notify: tuple[Recipient, ...] = ()
    archive: Folder = "/archive"
    quarantine: Folder = "/rejected"
    reports: Folder = "/reports"


class _Feed(_Model):
    id: FeedId
    dag_id: FeedId | None = None
    description: str = ""
    owner: str | None = None
    tags: Strings = ()
    schedule: Cron | None = None
    transfer: ConnId | None = None
    threekit: ConnId | None = None
    smtp: ConnId | None = None
    notify: tuple[Recipient, ...] | None = None
    enabled: bool = True


class InboundFeed(_Feed):
    """Files a partner drops in a folder, imported into Threekit.

    ``patterns`` default: a catalog feed takes its mapping's file patterns, the others ``*.csv``
    (translations) or ``*`` (source assets). ``mapping`` applies to catalog feeds only.
    """

    kind: Literal["catalog", "translations", "source_assets"]
    folder: Folder
    patterns: Strings | None = None
    mapping: str | None = None
    archive: Folder | None = None
    quarantine: Folder | None = None
    reports: Folder | None = None
    schedule: Cron | None = "0 * * * *"
    options: InboundOptions = InboundOptions()

    @model_validator(mode="after")
    def _mapping_only_for_catalogs(self) -> InboundFeed:
        if self.kind != "catalog" and self.mapping is not None:
            raise ValueError(f"'mapping' applies to catalog feeds only, not to kind {self.kind!r}")
        return self

    @property
    def effective_dag_id(self) -> str:
        return self.dag_id or f"threekit_{self.kind}_import__{self.id}"

    @property
    def effective_patterns(self) -> tuple[str, ...] | None:
        """The feed's patterns; None for a catalog feed without any (its mapping's patterns apply)."""
        if self.patterns is not None:
            return self.patterns
        return {"catalog": None, "translations": ("*.csv",), "source_assets": ("*",)}[self.kind]


class OutboundFeed(_Feed):
    """Exports from Threekit delivered to one or more destinations.

    ``on_catalog_change`` also runs the delivery when a catalog import changed Threekit.
    """

    kind: Literal["catalog", "assets", "translations", "renders", "archive_copy"]
    destinations: tuple[Destination, ...] = Field(min_length=1)
    on_catalog_change: bool = False
    options: OutboundOptions = OutboundOptions()

    @property
    def effective_dag_id(self) -> str:
        return self.dag_id or f"threekit_{self.kind}_export__{self.id}"


class FeedsFile(_Model):
    """A whole feeds file."""

    version: Literal[1] = 1
    defaults: Defaults = Defaults()
    inbound: tuple[InboundFeed, ...] = ()
    outbound: tuple[OutboundFeed, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> FeedsFile:
        seen_ids: dict[tuple[str, str], int] = {}
        seen_dags: set[str] = set()
        for section, feeds in (("inbound", self.inbound), ("outbound", self.outbound)):
            for index, feed in enumerate(feeds):
                where = f"{section} feed '{feed.id}' ({section}[{index}])"
                if (section, feed.id) in seen_ids:
                    raise ValueError(f"{where}: id: already used by {section}[{seen_ids[(section, feed.id)]}]")
                seen_ids[(section, feed.id)] = index
                if feed.effective_dag_id in seen_dags:
                    raise ValueError(f"{where}: dag_id: {feed.effective_dag_id!r} is already another feed's DAG")
                seen_dags.add(feed.effective_dag_id)
        return self

    # --- effective values (feed, else defaults) -------------------------------------------

    def transfer_of(self, feed: _Feed) -> str:
        return feed.transfer or self.defaults.transfer

    def threekit_of(self, feed: _Feed) -> str:
        return feed.threekit or self.defaults.threekit

    def smtp_of(self, feed: _Feed) -> str:
        return feed.smtp or self.defaults.smtp

    def notify_of(self, feed: _Feed) -> tuple[Recipient, ...]:
        return feed.notify if feed.notify is not None else self.defaults.notify

    def owner_of(self, feed: _Feed) -> str:
        return feed.owner or self.defaults.owner

    def folders_of(self, feed: InboundFeed) -> dict[str, str]:
        """``folder``, ``archive``, ``quarantine`` and ``reports`` of an inbound feed."""
        return {
            "folder": feed.folder,
            "archive": feed.archive or self.defaults.archive,
            "quarantine": feed.quarantine or self.defaults.quarantine,
            "reports": feed.reports or self.defaults.reports,
        }

    def feeds(self) -> list[InboundFeed | OutboundFeed]:
        """Every enabled feed, inbound first."""
        return [feed for feed in (*self.inbound, *self.outbound) if feed.enabled]


# --- loading ----------------------------------------------------------------------------------


def feeds_path(variable_value: str | None = None) -> Path:
    """The feeds file to use: ``$THREEKIT_FEEDS_FILE``, else the Variable's value, else the default."""
    chosen = os.environ.get(FEEDS_FILE_ENV) or variable_value
    return Path(chosen) if chosen else DEFAULT_FEEDS_FILE


def _where(data: Any, loc: tuple) -> str:
    """``inbound feed 'erp' (inbound[0])`` for a location inside a feed, else ``''``."""
    if len(loc) >= 2 and loc[0] in ("inbound", "outbound") and isinstance(loc[1], int):
        feed_id = None
        try:
            feed_id = data[loc[0]][loc[1]].get("id")
        except (KeyError, IndexError, TypeError, AttributeError):
            pass
        name = f"'{feed_id}'" if feed_id else "(no id)"
        return f"{loc[0]} feed {name} ({loc[0]}[{loc[1]}])"
    return ""


def _format(path: Path | str, data: Any, error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        where = _where(data, loc)
        key_parts = loc[2:] if where else loc
        # pydantic puts the tag of a validator that failed on the whole model into the location.
        key = ".".join(str(part) for part in key_parts if not str(part).startswith("function-"))
        message = item["msg"].removeprefix("Value error, ")
        if not loc:  # a check across feeds: its message names the feed and key itself
            lines.append(f"{path}: {message}")
            continue
        lines.append(f"{path}: {where + ': ' if where else ''}{key or '(feed)'}: {message}")
    return "\n".join(lines)


def parse_feeds(data: Any, source: Path | str = "<feeds>") -> FeedsFile:
    """Validate already-loaded YAML data; :class:`FeedsError` names ``source``, the feed and the key."""
    if not isinstance(data, dict):
        raise FeedsError(f"{source}: a feeds file must be a mapping with 'inbound' and/or 'outbound' lists")
    try:
        return FeedsFile.model_validate(data)
    except ValidationError as exc:
        raise FeedsError(_format(source, data, exc)) from None


def load_feeds(path: Path | str | None = None) -> FeedsFile:
    """Read and validate a feeds file (the default file when ``path`` is None)."""
    path = Path(path) if path is not None else feeds_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FeedsError(f"{path}: cannot read the feeds file ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FeedsError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_feeds(data, path)


# --- what a feed's tasks use at run time ------------------------------------------------------

#: The folder key of the ``threekit_pipeline`` Variable (``folders.<key>``) each feed kind reads or writes.
INBOUND_FOLDER_KEYS = {
    "catalog": "inbound_catalog",
    "translations": "inbound_translations",
    "source_assets": "inbound_assets",
}
OUTBOUND_FOLDER_KEYS = {
    "catalog": "outbound_catalog",
    "assets": "outbound_assets",
    "translations": "outbound_translations",
    "renders": "outbound_renders",
    "archive_copy": "outbound_catalog",
}


class FeedRuntime(BaseModel):
    """A feed as its tasks see it: the Variable keys it sets, and what the Variable has no key for.

    ``config_values`` uses the Variable's keys (``ftp_conn_id``, ``threekit_conn_id``,
    ``mapping``, ``folders``, the options); :func:`threekit_pipeline.pipelines.config.apply_feed`
    lays them over the Variable. ``destinations`` are ``(connection id, folder)`` pairs, the
    first one being the Variable's ``ftp_conn_id`` and ``folders.outbound_*``. ``patterns`` is
    None where the flow's own patterns apply (a catalog feed's mapping). ``notify`` holds
    ``{"email", "patterns"}`` mappings.
    """

    model_config = ConfigDict(frozen=True)

    feed_id: str
    dag_id: str
    direction: Literal["inbound", "outbound"]
    kind: str
    patterns: tuple[str, ...] | None = None
    destinations: tuple[tuple[str, str], ...] = ()
    notify: tuple[dict[str, Any], ...] = ()
    smtp_conn_id: str = "smtp_default"
    config_values: dict[str, Any] = {}


def runtime_of(feeds: FeedsFile, feed: InboundFeed | OutboundFeed) -> FeedRuntime:
    """What ``feed``'s tasks use at run time (see :class:`FeedRuntime`)."""
    values: dict[str, Any] = {"threekit_conn_id": feeds.threekit_of(feed)}
    notify = tuple({"email": r.email, "patterns": list(r.patterns)} for r in feeds.notify_of(feed))
    common = {"feed_id": feed.id, "dag_id": feed.effective_dag_id, "kind": feed.kind, "notify": notify,
              "smtp_conn_id": feeds.smtp_of(feed)}
    if isinstance(feed, InboundFeed):
        folders = feeds.folders_of(feed)
        values["ftp_conn_id"] = feeds.transfer_of(feed)
        values["folders"] = {
            INBOUND_FOLDER_KEYS[feed.kind]: folders["folder"],
            "archive": folders["archive"],
            "rejected": folders["quarantine"],
            "reports": folders["reports"],
        }
        if feed.mapping is not None:
            values["mapping"] = feed.mapping
        values.update(feed.options.model_dump())
        return FeedRuntime(direction="inbound", patterns=feed.effective_patterns, config_values=values, **common)
    first = feed.destinations[0]
    values["ftp_conn_id"] = first.transfer
    values["folders"] = {OUTBOUND_FOLDER_KEYS[feed.kind]: first.folder, "reports": feeds.defaults.reports}
    values.update(feed.options.model_dump())
    if feed.kind == "renders" and len(feed.destinations) > 1:
        values["render_destinations"] = tuple(d.folder for d in feed.destinations)
    destinations = tuple((d.transfer, d.folder) for d in feed.destinations)
    return FeedRuntime(direction="outbound", destinations=destinations, config_values=values, **common)


#: Sub-folder of the reports folder where each inbound kind's run reports go (``<reports>/<sub>/<run>.json``);
#: the pipelines' ``REPORTS_SUBDIR``/``REPORT_SOURCE`` constants.
REPORT_SUBDIRS = {
    "catalog": "catalog_import",
    "translations": "translations_import",
    "source_assets": "source_assets_import",
}


class ImportDag(BaseModel):
    """One import DAG of a feeds file: what a view of import runs needs to find its reports.

    ``reports_folder`` is the feed's reports folder (feed, else defaults); the run reports
    are under ``<reports_folder>/<reports_subdir>/``.
    """

    model_config = ConfigDict(frozen=True)

    dag_id: str
    feed_id: str
    kind: Literal["catalog", "translations", "source_assets"]
    transfer: str
    reports_folder: str
    reports_subdir: str


def import_dags(feeds: FeedsFile) -> list[ImportDag]:
    """The import DAGs (enabled inbound feeds) of ``feeds``, in file order.

    The default feeds file gives ``threekit_catalog_import`` (catalog),
    ``threekit_translations_import`` (translations) and ``threekit_source_assets_import``
    (source_assets); ``{d.dag_id: d.reports_subdir for d in import_dags(feeds)}`` is the
    sync view's ``IMPORT_DAGS`` mapping for any feeds file.
    """
    return [
        ImportDag(
            dag_id=feed.effective_dag_id,
            feed_id=feed.id,
            kind=feed.kind,
            transfer=feeds.transfer_of(feed),
            reports_folder=feeds.folders_of(feed)["reports"],
            reports_subdir=REPORT_SUBDIRS[feed.kind],
        )
        for feed in feeds.inbound
        if feed.enabled
    ]


def find_feed(feeds: FeedsFile, dag_id: str) -> InboundFeed | OutboundFeed | None:
    """The enabled feed whose DAG is ``dag_id``, or None."""
    return next((feed for feed in feeds.feeds() if feed.effective_dag_id == dag_id), None)


_CACHE: dict[Path, tuple[tuple[int, int], FeedsFile]] = {}


def load_feeds_cached(path: Path | str) -> FeedsFile:
    """:func:`load_feeds`, reusing the last result while the file's size and mtime are unchanged."""
    path = Path(path)
    try:
        info = path.stat()
        key = (info.st_mtime_ns, info.st_size)
    except OSError:
        return load_feeds(path)  # raises FeedsError naming the file
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    feeds = load_feeds(path)
    _CACHE[path] = (key, feeds)
    return feeds
