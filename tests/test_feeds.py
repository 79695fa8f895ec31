"""The feeds model: the default file reproduces today's seven DAGs; mistakes name file, feed and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from threekit_pipeline.feeds import DEFAULT_FEEDS_FILE, FeedsError, feeds_path, load_feeds
from threekit_pipeline.pipelines.config import DEFAULT_FOLDERS, PipelineConfig

REPO = Path(__file__).resolve().parents[1]


# Today's seven DAGs, as the hand-written DAG files defined them before the feeds file.
SEVEN_DAG_IDS = {
    "threekit_catalog_import", "threekit_translations_import", "threekit_source_assets_import",
    "threekit_catalog_export", "threekit_asset_export", "threekit_translations_export", "threekit_render_export",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_default_file_reproduces_todays_seven_dags_and_settings():
    feeds = load_feeds(DEFAULT_FEEDS_FILE)
    assert {feed.effective_dag_id for feed in feeds.feeds()} == SEVEN_DAG_IDS
    assert len(feeds.feeds()) == 7
    today = PipelineConfig()
    catalog = next(feed for feed in feeds.inbound if feed.kind == "catalog")
    assert catalog.mapping == today.mapping and catalog.effective_patterns is None  # the mapping's patterns
    assert feeds.folders_of(catalog) == {"folder": DEFAULT_FOLDERS["inbound_catalog"],
                                         "archive": DEFAULT_FOLDERS["archive"],
                                         "quarantine": DEFAULT_FOLDERS["rejected"],
                                         "reports": DEFAULT_FOLDERS["reports"]}
    by_kind = {feed.kind: feed for feed in feeds.inbound}
    assert by_kind["translations"].folder == DEFAULT_FOLDERS["inbound_translations"]
    assert by_kind["source_assets"].folder == DEFAULT_FOLDERS["inbound_assets"]
    options = catalog.options
    assert (options.stable_seconds, options.max_error_ratio, options.batch_size, options.import_mode) == (
        today.stable_seconds, today.max_error_ratio, today.batch_size, today.import_mode)
    outbound = {feed.kind: feed for feed in feeds.outbound}
    for kind, key in (("catalog", "outbound_catalog"), ("assets", "outbound_assets"),
                      ("translations", "outbound_translations"), ("renders", "outbound_renders")):
        [destination] = outbound[kind].destinations
        assert (destination.transfer, destination.folder) == (today.ftp_conn_id, DEFAULT_FOLDERS[key])
    assert outbound["catalog"].on_catalog_change and outbound["renders"].on_catalog_change
    assert all(feeds.transfer_of(feed) == "ftp_default" and feeds.threekit_of(feed) == "threekit_default"
               for feed in feeds.feeds())


def test_many_feeds_over_ftp_and_sftp(tmp_path):
    path = write(tmp_path, """
        defaults:
          notify: [ops@example.com]
        inbound:
          - {id: erp, kind: catalog, transfer: erp_ftp, folder: /in/erp, mapping: canonical}
          - id: sap
            kind: catalog
            transfer: sap_sftp
            folder: /export/materials/
            mapping: sap_de
            schedule: "*/15 * * * *"
            threekit: threekit_eu
            notify: [ops@example.com, {email: sap-team@partner.example, patterns: "Materialstamm_*, Merkmale_*"}]
            options: {stable_seconds: 120, marker_suffixes: [.done]}
        outbound:
          - id: distributor
            kind: renders
            destinations:
              - {transfer: distributor_ftps, folder: /incoming/renders}
              - {transfer: printer_sftp, folder: /renders}
            options: {render_tags: [print]}
          - {id: retail, kind: catalog, on_catalog_change: true, destinations: [{transfer: retail_sftp, folder: /c}]}
    """)
    feeds = load_feeds(path)
    erp, sap = feeds.inbound
    assert (erp.effective_dag_id, sap.effective_dag_id) == ("threekit_catalog_import__erp",
                                                             "threekit_catalog_import__sap")
    assert sap.folder == "/export/materials" and sap.options.marker_suffixes == (".done",)
    assert feeds.transfer_of(erp) == "erp_ftp" and feeds.threekit_of(erp) == "threekit_default"
    assert [r.email for r in feeds.notify_of(erp)] == ["ops@example.com"]
    assert feeds.notify_of(sap)[1].patterns == ("Materialstamm_*", "Merkmale_*")
    renders = feeds.outbound[0]
    assert [d.transfer for d in renders.destinations] == ["distributor_ftps", "printer_sftp"]
    assert renders.effective_dag_id == "threekit_renders_export__distributor"


@pytest.mark.parametrize(("body", "expected"), [
    ("inbound:\n  - {id: erp, kind: catalog, folder: /in, options: {stable_seconds: -1}}\n",
     "inbound feed 'erp' (inbound[0]): options.stable_seconds: Input should be greater than or equal to 0"),
    ("inbound:\n  - {id: erp, kind: catalog, foldr: /in}\n",
     "inbound feed 'erp' (inbound[0]): foldr: Extra inputs are not permitted"),
    ("inbound:\n  - {id: erp, kind: catalog}\n",
     "inbound feed 'erp' (inbound[0]): folder: Field required"),
    ("inbound:\n  - {id: erp, kind: catalog, folder: in/erp}\n",
     "inbound feed 'erp' (inbound[0]): folder: must be an absolute remote path"),
    ("inbound:\n  - {id: tr, kind: translations, folder: /t, mapping: sap_de}\n",
     "inbound feed 'tr' (inbound[0]): (feed): 'mapping' applies to catalog feeds only"),
    ("inbound:\n  - {id: erp, kind: catalog, folder: /in, schedule: 'every hour'}\n",
     "inbound feed 'erp' (inbound[0]): schedule: 'every hour' is not a valid cron expression"),
    ("outbound:\n  - {id: d, kind: renders, destinations: []}\n",
     "outbound feed 'd' (outbound[0]): destinations: Tuple should have at least 1 item"),
    ("outbound:\n  - {id: d, kind: renders, notify: [nobody], destinations: [{transfer: x, folder: /r}]}\n",
     "outbound feed 'd' (outbound[0]): notify.0: 'nobody' is not an email address"),
    ("outbound:\n  - {id: d, kind: pdfs, destinations: [{transfer: x, folder: /r}]}\n",
     "outbound feed 'd' (outbound[0]): kind: Input should be 'catalog', 'assets'"),
    ("inbound:\n  - {id: a, kind: catalog, folder: /a}\n  - {id: a, kind: catalog, folder: /b}\n",
     "inbound feed 'a' (inbound[1]): id: already used by inbound[0]"),
    ("defaults: {retries: many}\n", "defaults.retries: Input should be a valid integer"),
    ("inbound:\n  - {id: a, kind: catalog, folder: /a, dag_id: x}\n"
     "outbound:\n  - {id: b, kind: assets, dag_id: x, destinations: [{transfer: t, folder: /o}]}\n",
     "outbound feed 'b' (outbound[0]): dag_id: 'x' is already another feed's DAG"),
])
def test_mistakes_name_the_file_the_feed_and_the_key(tmp_path, body, expected):
    path = write(tmp_path, body)
    with pytest.raises(FeedsError) as error:
        load_feeds(path)
    assert str(error.value).startswith(f"{path}: ")
    assert expected in str(error.value)


def test_yaml_syntax_errors_name_the_line(tmp_path):
    path = write(tmp_path, "inbound:\n  - {id: erp, kind: catalog\n")
    with pytest.raises(FeedsError, match=rf"^{path}: not valid YAML at line \d+"):
        load_feeds(path)


def test_a_missing_file_is_a_feeds_error(tmp_path):
    with pytest.raises(FeedsError, match="cannot read the feeds file"):
        load_feeds(tmp_path / "nope.yaml")


def test_the_path_comes_from_the_environment_then_the_variable_then_the_default(monkeypatch, tmp_path):
    monkeypatch.delenv("THREEKIT_FEEDS_FILE", raising=False)
    assert feeds_path() == DEFAULT_FEEDS_FILE
    assert feeds_path("/etc/feeds.yaml") == Path("/etc/feeds.yaml")
    monkeypatch.setenv("THREEKIT_FEEDS_FILE", str(tmp_path / "f.yaml"))
    assert feeds_path("/etc/feeds.yaml") == tmp_path / "f.yaml"


def test_a_feed_wins_over_the_variable_where_it_leaves_the_built_in_default(tmp_path):
    from threekit_pipeline.feeds import find_feed, runtime_of
    from threekit_pipeline.pipelines.config import apply_feed, load_config

    path = write(tmp_path, """
        inbound:
          - {id: catalog, kind: catalog, dag_id: threekit_catalog_import, folder: /inbound/catalog, mapping: canonical}
          - id: pim
            kind: catalog
            transfer: pim_sftp
            folder: /pim/in
            quarantine: /pim/rejected
            mapping: sap_de
            patterns: ["Material*.csv"]
            options: {batch_size: 50}
        outbound:
          - id: renders
            kind: renders
            destinations: [{transfer: dam_ftps, folder: /dam}, {transfer: printer_sftp, folder: /print}]
    """)
    feeds = load_feeds(path)
    variable = load_config({"mapping": "akeneo", "folders": {"inbound_catalog": "/erp/out"}, "batch_size": 200,
                            "stable_seconds": 5})

    default = apply_feed(variable, runtime_of(feeds, find_feed(feeds, "threekit_catalog_import")).config_values)
    assert (default.mapping, default.folder("inbound_catalog"), default.batch_size, default.ftp_conn_id) == (
        "akeneo", "/erp/out", 200, "ftp_default")  # built-in defaults in the feed: the Variable's values

    pim = runtime_of(feeds, find_feed(feeds, "threekit_catalog_import__pim"))
    config = apply_feed(variable, pim.config_values)
    assert (config.mapping, config.folder("inbound_catalog"), config.folder("rejected"), config.ftp_conn_id) == (
        "sap_de", "/pim/in", "/pim/rejected", "pim_sftp")
    assert (config.batch_size, config.stable_seconds) == (50, 5)  # the feed's option; the Variable's where unset
    assert pim.patterns == ("Material*.csv",)

    renders = runtime_of(feeds, find_feed(feeds, "threekit_renders_export__renders"))
    config = apply_feed(load_config(None), renders.config_values)
    assert (config.ftp_conn_id, config.render_targets) == ("dam_ftps", ("/dam", "/print"))
    assert renders.destinations == (("dam_ftps", "/dam"), ("printer_sftp", "/print"))


@pytest.mark.parametrize(("cron", "words"), [
    ("0 * * * *", "Hourly on the hour (UTC)"),
    ("15 * * * *", "Hourly at minute 15 (UTC)"),
    ("*/15 * * * *", "Hourly, every 15 minutes (UTC)"),
    ("0 3 * * *", "Daily 03:00 UTC"),
    ("30 3 * * *", "Daily 03:30 UTC"),
    ("0 6 * * 1", "Weekly on Monday 06:00 UTC"),
    ("@daily", "Daily 00:00 UTC"),
    ("0 6 1 * *", "On cron `0 6 1 * *` (UTC)"),
    (None, "Manual runs only"),
])
def test_schedules_in_words(cron, words):
    from threekit_pipeline.airflow.dag_factories import schedule_words

    assert schedule_words(cron) == words


def test_the_import_dags_of_a_feeds_file_with_their_kinds_and_report_folders(tmp_path, monkeypatch):
    from threekit_pipeline.airflow.dag_factories import import_dags_in_force
    from threekit_pipeline.feeds import import_dags

    default = import_dags(load_feeds(DEFAULT_FEEDS_FILE))
    # The default file gives the sync view's three import DAGs and their report sub-folders.
    assert {d.dag_id: d.reports_subdir for d in default} == {
        "threekit_catalog_import": "catalog_import",
        "threekit_translations_import": "translations_import",
        "threekit_source_assets_import": "source_assets_import",
    }
    assert [(d.dag_id, d.kind) for d in default] == [
        ("threekit_catalog_import", "catalog"), ("threekit_translations_import", "translations"),
        ("threekit_source_assets_import", "source_assets")]
    assert {d.reports_folder for d in default} == {"/reports"}

    path = write(tmp_path, """
        defaults: {reports: /shared/reports}
        inbound:
          - {id: erp, kind: catalog, folder: /in/erp, mapping: canonical}
          - {id: sap, kind: catalog, transfer: sap_sftp, folder: /sap, mapping: sap_de, reports: /sap/reports}
          - {id: fr, kind: translations, folder: /fr, enabled: false}
          - {id: agency, kind: source_assets, folder: /agency}
        outbound:
          - {id: retail, kind: catalog, destinations: [{transfer: retail_sftp, folder: /c}]}
    """)
    monkeypatch.setenv("THREEKIT_FEEDS_FILE", str(path))
    found = import_dags_in_force()
    assert [(d.dag_id, d.feed_id, d.kind, d.transfer, d.reports_folder, d.reports_subdir) for d in found] == [
        ("threekit_catalog_import__erp", "erp", "catalog", "ftp_default", "/shared/reports", "catalog_import"),
        ("threekit_catalog_import__sap", "sap", "catalog", "sap_sftp", "/sap/reports", "catalog_import"),
        ("threekit_source_assets_import__agency", "agency", "source_assets", "ftp_default", "/shared/reports",
         "source_assets_import"),
    ]
    # The report sub-folders are the pipelines' own.
    from threekit_pipeline.pipelines import catalog_import, source_assets, translations

    assert catalog_import.REPORTS_SUBDIR == "catalog_import"
    assert (translations.REPORT_SOURCE, source_assets.REPORT_SOURCE) == ("translations_import",
                                                                         "source_assets_import")
