"""Operating the pipelines from the Airflow UI of ``make airflow``, in a real (headless) Chromium.

One ``airflow standalone`` + sandboxes for the whole module, driven by Playwright:

* every DAG's Trigger dialog has its Trigger button enabled with the default params, and a run
  starts from it; every DAG's backfill dialog enables Run Backfill once a date range is chosen,
  and a backfill starts from it;
* a catalog run that rejected a row and a file is visibly different from a clean one: its note
  says "Partial success" with the counts and its ``all_accepted`` task ends skipped;
* the Threekit sync view (plugin) shows that run's counts and the rejected row's whole reason,
  downloads its errors CSV, finds a SKU across runs, and refuses requests without a login.

Waits are on conditions (page content, REST state), never fixed sleeps.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from _chromium import CHROMIUM, ensure_chromium
from threekit_pipeline.devtools.cluster import ADMIN_USER, AirflowRestClient
from threekit_pipeline.devtools.stack import LocalStack, free_port
from threekit_pipeline.devtools.standalone import StandaloneAirflow, clean_standalone_environment
from threekit_pipeline.samples.catalog import generate_catalog, rewrite_rows

REPO = Path(__file__).resolve().parents[2]
CATALOG = "threekit_catalog_import"
BACKFILLED = "threekit_translations_import"
VARIABLE = {"stable_seconds": 1, "poke_interval_seconds": 2, "sensor_timeout_seconds": 20, "batch_size": 10}
BAD_LINE = 6  # the products file's line (header = 1) whose name is emptied
# Where screenshots are copied for people to look at (optional).
SCREENSHOT_DIR = os.environ.get("THREEKIT_UI_SCREENSHOTS")

# Generous bounds: every wait below is on a condition, so a loaded machine only makes it slower.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("airflow_cluster"), pytest.mark.timeout(1800)]


def _dag_ids() -> list[str]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return sorted(bag.dag_ids)


def _wait(condition: Callable[[], Any], timeout: float, what: str, poll: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(poll)


def seed_catalog(
    inbound: Path, work: Path, stamp: str, *, bad: bool, products: int = 30, seed: int = 0
) -> dict:
    """Write a catalog batch into the FTP inbound folder; ``bad``: a nameless product and a text-priced file."""
    files = generate_catalog(
        work / f"gen_{stamp}",
        products=products,
        stamp=stamp,
        seed=seed,
        options_per_product=2,
        prices_per_product=1,
        locales=(),
    )
    with open(files["products"], newline="", encoding="utf-8") as handle:
        skus = [row["sku"] for row in csv.DictReader(handle)]
    facts = {"skus": skus, "products_file": files["products"].name}
    if bad:
        rewrite_rows(files["products"], lambda n, row: {**row, "name": ""} if n == BAD_LINE else row)
        rewrite_rows(files["prices"], lambda n, row: {**row, "price": "lots"})
        facts.update(bad_sku=skus[BAD_LINE - 2], prices_file=files["prices"].name)
    inbound.mkdir(parents=True, exist_ok=True)
    for path in files.values():
        shutil.copy(path, inbound / path.name)
    return facts


class UI:
    def __init__(self, airflow: StandaloneAirflow, stack: LocalStack, page: Any, tmp: Path) -> None:
        self.airflow, self.stack, self.page, self.tmp = airflow, stack, page, tmp
        self.client = airflow.client
        # The UI's own address (Airflow's base_url): the login cookie is set for this host.
        self.url = airflow.url

    def screenshot(self, name: str) -> Path:
        path = self.tmp / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if SCREENSHOT_DIR:
            Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(SCREENSHOT_DIR) / path.name)
        return path

    def open_dialog(self, dag_id: str):
        page = self.page
        page.goto(f"{self.url}/dags/{dag_id}")
        try:
            page.get_by_role("button", name="Trigger").first.click()
            # The open dialog (the date pickers' popovers are role=dialog too).
            dialog = page.locator("[data-scope=dialog][data-part=content][data-state=open]")
            dialog.get_by_text(f"- {dag_id}").wait_for()
        except Exception:
            print("screenshot of the failure:", self.screenshot(f"failed_dialog_{dag_id}"))
            raise
        return dialog

    def fill_range(self, dialog, start: tuple[str, str], end: tuple[str, str]) -> None:
        from playwright.sync_api import expect

        for index, (day, hour) in enumerate((start, end)):
            dialog.get_by_test_id("datetime-input").nth(index).click()
            popover = self.page.locator("[data-scope=popover][data-part=content]:visible")
            popover.get_by_placeholder("YYYY/MM/DD").fill(day)
            popover.get_by_placeholder("HH:mm").fill(hour)
            popover.get_by_placeholder("HH:mm").press("Enter")
            dialog.get_by_text("Date Range").click()  # closes the popover
            expect(popover).to_have_count(0)

    def runs(self, dag_id: str) -> list[dict]:
        return self.client.dag_runs(dag_id)


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    ensure_chromium(pytest.fail)
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("ui_operable")
    started = time.monotonic()
    with LocalStack(tmp / "stack") as stack:
        airflow = StandaloneAirflow(
            tmp / "airflow_home",
            base_env=clean_standalone_environment(REPO),
            extra_env=stack.airflow_env(VARIABLE),
            dags_folder=REPO / "dags",
            port=free_port(),
            all_admins=False,  # Airflow's real login, as with `make airflow`: the view must require it
            output=tmp / "standalone.log",
        )
        with airflow:
            try:
                airflow.wait_ready(timeout=300)
                password = json.loads(airflow.password_file.read_text())[ADMIN_USER]
                airflow.client = AirflowRestClient(airflow.api_url, username=ADMIN_USER, password=password)
                airflow.client.wait_for_dags(_dag_ids(), timeout=240)
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(
                        executable_path=str(CHROMIUM),
                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
                    )
                    context = browser.new_context(
                        viewport={"width": 1400, "height": 1000}, accept_downloads=True
                    )
                    page = context.new_page()
                    page.set_default_timeout(90_000)  # a loaded 2-core machine renders slowly
                    page.goto(f"{airflow.url}/")
                    page.locator("input[name=username]").fill(ADMIN_USER)
                    page.locator("input[name=password]").fill(password)
                    page.get_by_role("button", name="Sign in").click()
                    page.get_by_role("button", name="Browse").wait_for()
                    try:
                        yield UI(airflow, stack, page, tmp)
                    finally:
                        browser.close()
            except BaseException:
                log_file = tmp / "standalone.log"
                if log_file.exists():
                    print(
                        "airflow standalone output (tail):\n"
                        + "\n".join(log_file.read_text(errors="replace").splitlines()[-60:])
                    )
                raise
            finally:
                print(f"UI module: {time.monotonic() - started:.0f} s with the stack up")


@pytest.fixture(scope="module")
def catalog_runs(ui):
    """The partial catalog run (bad row + bad file) and a clean one, both triggered from the dialog."""
    inbound = Path(ui.stack.ftp.root) / "inbound" / "catalog"
    bad = seed_catalog(inbound, ui.tmp, "20261129", bad=True, products=30)  # 1 bad row of 30: under the 5 % limit
    return {"bad": bad, "inbound": inbound}


def _keep_paused(ui: UI, dialog, dag_id: str) -> None:
    """Untick "Unpause <dag> on trigger": the run is created but waits (keeps a shared machine calm)."""
    box = dialog.get_by_role("checkbox", name=f"Unpause {dag_id} on trigger")
    if box.count() and box.is_checked():
        dialog.get_by_text(f"Unpause {dag_id} on trigger").click()
        assert not box.is_checked()


def _submit_trigger(ui: UI, dag_id: str) -> None:
    dialog = ui.open_dialog(dag_id)
    if dag_id != CATALOG:
        _keep_paused(ui, dialog, dag_id)
    button = dialog.get_by_role("button", name="Trigger")
    assert button.is_enabled(), f"{dag_id}: Trigger is disabled with the default params"
    button.click()
    dialog.wait_for(state="hidden")


def _finalize_summary(ui: UI, run_id: str) -> dict | None:
    try:
        value = ui.client.xcom(CATALOG, run_id, "finalize")
    except Exception:
        return None
    return value.get("summary") if isinstance(value, dict) else None


def _finished(ui: UI, dag_id: str, run_id: str) -> str | None:
    state = ui.client.dag_run(dag_id, run_id)["state"]
    return state if state in ("success", "failed") else None


def test_every_dag_triggers_from_its_dialog_with_the_defaults(ui, catalog_runs):
    before = {dag_id: {r["dag_run_id"] for r in ui.runs(dag_id)} for dag_id in _dag_ids()}
    for dag_id in _dag_ids():
        _submit_trigger(ui, dag_id)
    for dag_id in _dag_ids():
        _wait(
            lambda d=dag_id: [
                r for r in ui.runs(d) if r["dag_run_id"] not in before[d] and r["run_type"] == "manual"
            ],
            60,
            f"a manual run of {dag_id}",
        )


def test_every_dag_enables_run_backfill_and_a_backfill_starts_from_the_dialog(ui):
    started = None
    for dag_id in _dag_ids():
        dialog = ui.open_dialog(dag_id)
        dialog.get_by_text("Backfill", exact=True).click()
        run_backfill = dialog.get_by_role("button", name="Run Backfill")
        assert not run_backfill.is_enabled(), "Run Backfill must wait for a date range"
        ui.fill_range(dialog, ("2026/11/28", "23:00"), ("2026/11/29", "06:00"))
        dialog.get_by_text("will be triggered").wait_for()
        assert run_backfill.is_enabled(), f"{dag_id}: Run Backfill is disabled with the default params"
        if dag_id == BACKFILLED:
            dialog.get_by_text("All Runs").click()
            _keep_paused(ui, dialog, dag_id)
            run_backfill.click()
            try:
                started = _wait(
                    lambda: ui.client.request("GET", f"/backfills?dag_id={BACKFILLED}")["backfills"], 90, "backfill"
                )
            except AssertionError:
                print("dialog after Run Backfill:", dialog.inner_text()[:1500], ui.screenshot("failed_backfill"))
                raise
            assert started[0]["max_active_runs"] == 1 and started[0]["dag_id"] == BACKFILLED, started
            if dialog.is_visible():
                ui.page.keyboard.press("Escape")
        else:
            ui.page.keyboard.press("Escape")
            dialog.wait_for(state="hidden")
    assert started, f"no backfill started for {BACKFILLED}"


def _print_catalog_runs(ui: UI) -> None:
    """Every catalog run with its tasks' states and log tails: why no run reached finalize."""
    for run in ui.runs(CATALOG):
        print(f"=== {run['dag_run_id']} [{run['state']}] {run['run_type']}")
        try:
            print(ui.client.describe_run(CATALOG, run["dag_run_id"], log_lines=15))
        except Exception as exc:  # diagnostics only
            print(f"(not described: {exc!r})")


@pytest.fixture(scope="module")
def partial_and_clean(ui, catalog_runs):
    """Run ids of the catalog run that processed the bad batch, then of a clean one.

    The bad batch is normally picked up by the run the dialog test triggered (or the scheduled run
    its unpausing created). Selected on its own (``-k``), nothing has run yet: trigger one here,
    from the dialog, rather than wait for a run that never comes.
    """
    if not ui.runs(CATALOG):
        _submit_trigger(ui, CATALOG)
    # The dialog ticks "Unpause on trigger" only once it has loaded the DAG's details; a trigger
    # clicked before that leaves the DAG paused and its run queued for ever. This fixture needs the
    # runs to happen (the dialog test checks the trigger itself), so the DAG is unpaused here.
    ui.client.unpause(CATALOG)
    try:
        partial = _wait(
            lambda: next(
                (r["dag_run_id"] for r in ui.runs(CATALOG) if _finalize_summary(ui, r["dag_run_id"])), None
            ),
            600,
            "the catalog run that processed the bad batch",
            poll=5,
        )
    except AssertionError:
        _print_catalog_runs(ui)
        raise
    _wait(lambda: _finished(ui, CATALOG, partial), 400, f"{partial} to finish")
    _wait(
        lambda: not any(r["state"] in ("queued", "running") for r in ui.runs(CATALOG)),
        400,
        "idle catalog DAG",
    )
    clean_facts = seed_catalog(catalog_runs["inbound"], ui.tmp, "20261130", bad=False, products=5, seed=3)
    known = {r["dag_run_id"] for r in ui.runs(CATALOG)}
    _submit_trigger(ui, CATALOG)
    clean = _wait(
        lambda: next((r["dag_run_id"] for r in ui.runs(CATALOG) if r["dag_run_id"] not in known), None),
        60,
        "clean run",
    )
    assert _wait(lambda: _finished(ui, CATALOG, clean), 600, f"{clean} to finish") == "success"
    return {"partial": partial, "clean": clean, "clean_facts": clean_facts, **catalog_runs["bad"]}


def test_a_partial_run_looks_different_from_a_clean_one(ui, partial_and_clean):
    partial, clean = partial_and_clean["partial"], partial_and_clean["clean"]
    assert ui.client.dag_run(CATALOG, partial)["state"] == "success"
    states = {
        run_id: {ti["task_id"]: ti["state"] for ti in ui.client.task_instances(CATALOG, run_id)}
        for run_id in (partial, clean)
    }
    assert states[partial]["all_accepted"] == "skipped" and states[clean]["all_accepted"] == "success", states
    notes = _wait(
        lambda: (
            all(ui.client.dag_run(CATALOG, r).get("note") for r in (partial, clean))
            and {r: ui.client.dag_run(CATALOG, r)["note"] for r in (partial, clean)}
        ),
        60,
        "the run notes",
    )
    assert notes[partial].startswith("⚠ Partial success"), notes
    assert re.search(r"\d+ created, .* rejected \(rows \d+, files 1\)", notes[partial]), notes
    assert notes[clean].startswith("✓ All accepted") and "0 rejected" in notes[clean]

    page = ui.page
    page.goto(f"{ui.url}/dags/{CATALOG}")
    page.get_by_text("all_accepted").first.wait_for()
    ui.screenshot("grid")
    page.goto(f"{ui.url}/dags/{CATALOG}/runs")
    page.get_by_text(partial).first.wait_for()
    ui.screenshot("run_list")

    log = ui.client.task_log(CATALOG, partial, "finalize")
    first = next(line for line in log.splitlines() if " products: " in line)
    assert re.search(r"rejected \(rows \d+, files 1\) · report: \S+threekit-sync/run\?", first), first
    assert f"SKU {partial_and_clean['bad_sku']}" in log or "line 6, column name" in log


def test_sync_view_shows_counts_reasons_downloads_and_finds_a_sku(ui, partial_and_clean):
    partial, clean = partial_and_clean["partial"], partial_and_clean["clean"]
    page = ui.page
    # In the Airflow UI: the navigation entry opens the view in a frame.
    page.goto(f"{ui.url}/plugin/threekit-sync")
    frame = page.frame_locator("iframe").first
    frame.get_by_role("heading", name=CATALOG).wait_for()
    frame.get_by_text("partial success").first.wait_for()
    ui.screenshot("sync_view_in_airflow")

    overview = ui.client.session.get(f"{ui.url}/threekit-sync/api/runs", timeout=30).json()
    runs = {r["run_id"]: r for r in overview[CATALOG]}
    summary = runs[partial]["summary"]
    assert summary["rejected_rows"] >= 1 and summary["rejected_files"] == 1 and summary["partial"], summary
    assert summary["created"] >= 25, summary  # the good rows of the bad batch landed
    # The clean batch reuses SKUs of the bad one: created or updated, never rejected.
    assert runs[clean]["summary"]["total"] == 5 and not runs[clean]["summary"]["partial"], runs[clean]
    assert runs[partial]["duration_seconds"] > 0

    page.goto(f"{ui.url}/threekit-sync/run?" + urlencode({"dag_id": CATALOG, "run_id": partial}))
    page.get_by_text("Rejected rows and entries").wait_for()
    text = page.inner_text("body")
    assert summary["line"] in text
    errors_csv = ui.stack.ftp.root  # the reason shown must be the whole reason from the errors CSV
    rows = list(
        csv.DictReader(
            page.request.get(
                f"{ui.url}/threekit-sync/file?"
                + urlencode({"dag_id": CATALOG, "run_id": partial, "kind": "errors"})
            )
            .text()
            .splitlines()
        )
    )
    name_row = next(r for r in rows if r["line"] == str(BAD_LINE) and r["column"] == "name")
    assert name_row["reason"] and name_row["reason"] in text, (name_row, errors_csv)
    assert partial_and_clean["prices_file"] in text
    ui.screenshot("sync_view_run")
    with page.expect_download() as download_info:
        page.click("#download-errors")
    downloaded = Path(download_info.value.path()).read_text(encoding="utf-8")
    assert name_row["reason"] in downloaded and downloaded.splitlines()[0].startswith("stage,file,line")

    sku = partial_and_clean["clean_facts"]["skus"][0]
    page.goto(f"{ui.url}/threekit-sync/")
    page.get_by_placeholder("e.g. LAMP-007").fill(sku)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("heading", name=f"SKU {sku}").wait_for()
    row = page.locator("tr", has_text=clean)
    row_text = row.inner_text()
    assert re.search(r"\b(created|updated|imported)\b", row_text), row_text
    assert partial_and_clean["clean_facts"]["products_file"] in row_text, row_text
    cells = row.locator("td").all_inner_texts()  # run, what happened, Threekit id, source file, line, reason
    assert cells[3] == partial_and_clean["clean_facts"]["products_file"] and cells[4] == "2", cells
    threekit_ids = {item["id"] for item in ui.stack.threekit.items()}
    assert any(i in row_text for i in threekit_ids), row_text
    ui.screenshot("sku_search")


def test_sync_view_refuses_requests_without_login(ui):
    for path in ("/threekit-sync/api/runs", "/threekit-sync/", "/threekit-sync/sku?sku=X"):
        response = requests.get(ui.url + path, timeout=30)
        assert response.status_code in (401, 403), (path, response.status_code)
        assert "threekit_catalog_import" not in response.text
    forged = requests.get(
        ui.url + "/threekit-sync/api/runs", headers={"Authorization": "Bearer forged"}, timeout=30
    )
    assert forged.status_code in (401, 403)
    assert ui.client.session.get(ui.url + "/threekit-sync/api/runs", timeout=30).status_code == 200
    assert (
        json.dumps(ui.client.session.get(ui.url + "/threekit-sync/", timeout=30).text).count("password") == 0
    )
