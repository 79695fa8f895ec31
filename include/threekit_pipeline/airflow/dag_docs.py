"""How each flow kind works, in words: the body of the generated DAGs' ``doc_md``.

Each DAG's doc starts with what its feed says (id, connection, folders, mapping, schedule,
owner; see :mod:`threekit_pipeline.airflow.dag_factories`), then the text of its flow kind below.
Folder names such as ``folders.inbound_catalog`` are the feed's folders (or the Variable's).
"""

from __future__ import annotations

CATALOG_IMPORT = """
Reads ERP/PIM catalog files (products, options, prices, parts) from the FTP folder
`folders.inbound_catalog` (default `/inbound/catalog`), turns them into Threekit products
with the configured `mapping`, imports them, archives the files and uploads a run report.

**Flow**: wait for complete files (size and mtime stable for `stable_seconds`, or a marker
file per `marker_suffixes`; the run is skipped when nothing arrives within
`sensor_timeout_seconds`) -> download to staging -> transform per stamp batch -> skip
products whose content is unchanged since their last successful import (ledger
`<staging>/ledger/catalog_import.sqlite`) -> import in chunks of `batch_size` entries (one
mapped task per chunk) -> archive each file in `<archive>/catalog/YYYY/MM/DD/`, or
quarantine it in `<rejected>/catalog/` with `<file>.errors.csv` -> upload the run report ->
update the Asset `threekit://catalog` (only when products were created or updated), which
the export DAGs are scheduled on.

**Writes**: Threekit products; on FTP `<archive>/catalog/...`, `<rejected>/catalog/...` and
`<reports>/catalog_import/<run>.json|.csv|.errors.csv` (counts, per-file outcome, rejected
rows and entries with their reasons).

**File selection**: a scheduled or manual run takes every complete file waiting, oldest
`_YYYYMMDD[_HHMMSS]` stamp first; files sharing a stamp are one batch (held back while one
of them is still being uploaded); unstamped files come last. A backfill
(`airflow backfill create --dag-id threekit_catalog_import --from-date ... --to-date ...`)
or a manual run with `replay` processes the files whose stamp falls in the run's data
interval (or `replay_start`..`replay_end`), taking already processed files from the archive,
where they stay. If an import still fails after its retries, no file is moved: the next run
picks them up again and the ledger keeps it from re-sending what already landed.

**Params**: `dry_run`, `file`, `force_full_resend`, `replay`, `replay_start`, `replay_end`,
`confirm_retire` (see each param's description).

**Retiring discontinued products**: a source declared a full snapshot (`snapshot: full` in
the mapping's `lifecycle` block or the Variable's `catalog_lifecycle`) retires, after the
import, every SKU it imported before that its newest products file no longer holds
(`retire: delete|tag:<name>|report`); above `max_retire_ratio` (default 5 %) nothing is
retired and `retire_missing` fails naming the count until a run with `confirm_retire`.
Report: `<reports>/catalog_import/<run>.retired.json|.csv`.

**Configuration**: the feed above (connection, folders, mapping, options) laid over the
Airflow Variable `threekit_pipeline` (JSON; keys `mapping`, `folders`, `batch_size`,
`import_mode`, `import_concurrency`, `job_deadline_seconds`, `stable_seconds`,
`poke_interval_seconds`, `sensor_timeout_seconds`, `marker_suffixes`, `staging_dir`, ...),
all read when the tasks run.
"""


TRANSLATIONS_IMPORT = """
Imports regional translation CSVs from FTP into Threekit.

**Reads** `*.csv` files in `folders.inbound_translations` (default `/inbound/translations`):
a `Canonical Name` column plus one column per locale (`en`, `fr`, `de-CH`, `pt_BR` -> `pt-BR`).
Each file is validated: bad locale columns, empty and duplicate names are reported (the first
occurrence of a name is kept).

**Flow**: wait for complete files (size/mtime stable for `stable_seconds`, or marker files per
`marker_suffixes`; the run is skipped when nothing arrives within `sensor_timeout_seconds`) ->
validate each file, oldest `_YYYYMMDD[_HHMMSS]` stamp first -> `POST /api/products/translations`
with the clean rows -> archive the file in `<archive>/translations/YYYY/MM/DD/` only after
Threekit accepted it. A file without `Canonical Name`, without a valid locale, or with more bad
rows than `max_error_ratio` is quarantined in `<rejected>/translations/` with
`<file>.errors.csv` beside it.

**Writes**: Threekit translations; FTP archive/rejected folders and the run report
`<reports>/translations_import/<run>.json` (+ `.csv`, `.errors.csv` with every left-out row:
file, line, column, value, reason).

**File selection**: scheduled and manual runs take every complete file waiting. A backfill
(`airflow backfill create --dag-id threekit_translations_import --from-date ... --to-date ...`)
or a manual run with `replay` re-imports the files stamped within the run's data interval (or
`replay_start`..`replay_end`), from the archive when already processed; they stay archived.
Importing overwrites translations, so re-runs and replays converge to the same state; a file
delivered again with content already imported (ledger `<staging>/ledger/translations_import.sqlite`)
is archived without being sent again, unless `force_full_resend` is set; replays always send.

**Configuration**: the feed above laid over the Variable `threekit_pipeline` (folders, sensor
timings, `max_error_ratio`); read when the tasks run.
"""


SOURCE_ASSETS_IMPORT = """
Turns CAD models, textures and images dropped on FTP into Threekit assets.

**Reads** every file in `folders.inbound_assets` (default `/inbound/assets`), e.g. `.glb`,
`.gltf`, `.fbx`, `.obj`, `.step`, `.stl`, `.zip` (models) and `.png`, `.jpg`, `.tif`, `.webp`
(textures). Threekit decides what it accepts; an unsupported or broken file is quarantined
with Threekit's message.

**Flow**: wait for complete files (size/mtime stable for `stable_seconds`, or marker files per
`marker_suffixes`; skipped when nothing arrives within `sensor_timeout_seconds`) -> one mapped
task per file: download, upload (`POST /api/files`, content-addressed), start an asset import
job (`POST /api/asset-jobs/import`, titled with the file name), poll it (deadline
`job_deadline_seconds`) -> archive the file in `<archive>/assets/YYYY/MM/DD/`, or quarantine it
in `<rejected>/assets/` with `<file>.errors.csv` holding the job's message -> run report
`<reports>/source_assets_import/<run>.json` (+ `.csv`).

**Idempotent**: Threekit matches assets by name, so re-importing a file updates its asset; a
file whose exact content was already imported (ledger `<staging>/ledger/source_assets.sqlite`)
is not imported again, only archived. `force_full_resend` re-imports anyway.

**File selection**: as the other inbound DAGs: every complete file waiting; a backfill or a
manual `replay` run takes the files stamped (`_YYYYMMDD[_HHMMSS]`) within its data interval,
from the archive when already processed.
"""


CATALOG_EXPORT = """
Exports the Threekit catalog for partners, every day at 03:00 UTC **and** whenever
`threekit_catalog_import` has updated the catalog (the `threekit://catalog` Asset).

**Reads** Threekit `GET /api/products/export/json`, filtered by the `threekit_pipeline` Variable's
`export_tags`, `export_keywords` and `export_types` (default: every item).

**Writes** to `folders.outbound_catalog` (default `/outbound/catalog`):
`catalog_<YYYYMMDD>.json` (Threekit's export, re-importable) and `catalog_<YYYYMMDD>.csv`
(one row per product: id, name, sku, description, tags, keywords, `metadata:<key>`,
`attribute:<name>`, `price:<pricebook>:<currency>`; cells starting with `=`, `+`, `-`, `@`
are neutralised with a leading `'`). `<YYYYMMDD>` is the run's logical date (asset-triggered
runs: the day they ran), so later runs of the same day replace that day's files.

**Idempotent:** files are uploaded atomically and only when their content changed (delivery
ledger in the staging directory); a re-run with an unchanged catalog uploads nothing.

**Backfill:** not meaningful: an export is a snapshot of Threekit as it is now, whatever the run's
date; re-run the latest run instead.

**Params:** `dry_run` exports to staging and reports what would be uploaded, without uploading.
"""


ASSETS_EXPORT = """
Exports selected Threekit assets as JSON every day at 03:30 UTC.

**Reads** the `threekit_pipeline` Variable's `export_asset_ids` (explicit asset ids) and
`export_asset_tags` (every asset carrying one of these tags, resolved through
`GET /api/assets`), then `GET /api/assets/export/<assetId>` for each.

**Writes** `folders.outbound_assets`/`<assetId>.json` (default `/outbound/assets`).

The resolved ids are exported in chunks of 25, one mapped task per chunk, so a large selection
runs in parallel and a retry redoes one chunk only. A configured id Threekit does not know is
reported and fails the run (after the other assets were delivered).

**Idempotent:** uploads are atomic and skipped when an asset's export did not change.

**Backfill:** not meaningful: an export is a snapshot of Threekit as it is now, whatever the run's
date; re-run the latest run instead.

**Params:** `dry_run` exports to staging only.
"""


TRANSLATIONS_EXPORT = """
Exports Threekit's translations every day at 04:00 UTC.

**Reads** Threekit `GET /api/products/translations` (CSV: `Canonical Name` plus one column per
locale; item names, attribute names and values, metadata values, tags).

**Writes** to `folders.outbound_translations` (default `/outbound/translations`):
`translations_<YYYYMMDD>.csv` and, when the `threekit_pipeline` Variable sets
`translations_per_locale: true`, also `translations_<locale>_<YYYYMMDD>.csv` per locale
(columns `Canonical Name,<locale>`). `<YYYYMMDD>` is the run's logical date. Values are passed
through unchanged (these files are meant to come back through `threekit_translations_import`).

**Idempotent:** uploads are atomic and skipped when the content did not change.

**Backfill:** not meaningful: an export is a snapshot of Threekit as it is now, whatever the run's
date; re-run the latest run instead.

**Params:** `dry_run` exports to staging only.
"""


RENDERS_EXPORT = """
Delivers rendered images (Threekit layers) of catalog items to FTP folders, every day at
05:00 UTC **and** whenever `threekit_catalog_import` has updated the catalog.

**Reads** the items carrying one of the `threekit_pipeline` Variable's `render_tags` (empty:
every item), each item's layers (`GET /api/layers?assetId=`) and their image bytes. Images
are cached in the staging directory; an image whose SHA-256 is unchanged is not downloaded
again.

**Writes**, for each folder of `render_destinations` (default: `folders.outbound_renders`,
e.g. a DAM, a partner and an archive folder), `<dest>/<sku>/<file>` per image and
`<dest>/manifest_<YYYYMMDD>.csv` (sku, asset_id, layer_id, configuration, file, size, sha256,
format, width, height). SKU folder names are made safe for file systems. One mapped task per
destination; the manifest is uploaded after the images it lists.

**Idempotent:** only new or changed images are uploaded (SHA-256 compared with the delivery
ledger); images of items that disappeared are left in place.

**Backfill:** not meaningful: an export is a snapshot of Threekit as it is now, whatever the run's
date; re-run the latest run instead.

**Params:** `dry_run` downloads and writes the manifest to staging only.

**Render on demand** (Variable `render_spec`, see `threekit_pipeline.threekit.renders`):
`plan_renders` starts render jobs (`POST /api/asset-jobs/:id/render/vray|webgl`) only for
the (item content, configuration, settings) combinations new or changed since their last
delivery (ledger `<staging>/ledger/render_delivery.sqlite`); `wait_for_renders` waits in the
triggerer (deferrable); `collect_renders` downloads each layer image and writes
`manifest_<YYYYMMDDTHHMMSS>.csv` (sku, configuration, file, size, sha256, ...);
`finish_renders` records what every destination received and fails naming each item and
configuration whose render failed or timed out (the other images are delivered). Without a
spec (or `render: existing`) the layers that exist are delivered as before.
"""
