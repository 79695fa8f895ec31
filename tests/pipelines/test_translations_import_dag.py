"""End-to-end runs of the translations import DAG against real sandboxes."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _dag_runs import (
    GrowingUpload,
    ftp_files,
    load_dag,
    put_ftp_file,
    request_count,
    run_dag,
    running_stack,
    threekit_client,
)

pytestmark = pytest.mark.usefixtures("airflow_db")

# The growing upload appends every 0.2 s; a 2 s stability window keeps it "incomplete" even
# when the test process is starved for a moment on a busy machine.
GROWING_SAFE = {"stable_seconds": 2}

INBOUND = "/inbound/translations"
POST_TRANSLATIONS = "POST /api/products/translations"


def _translations(stack, locale: str) -> dict[str, str]:
    with threekit_client(stack) as client:
        return client.request("GET", "/api/assets/translations", params={"locale": locale}).json()


def _csv(rows: list[list[str]]) -> bytes:
    lines = [",".join(f'"{cell}"' for cell in row) for row in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


def test_good_files_imported_bad_file_quarantined_growing_file_left(tmp_path):
    with running_stack(tmp_path, GROWING_SAFE) as stack:
        put_ftp_file(
            stack,
            f"{INBOUND}/fr_20261123.csv",
            _csv([["Canonical Name", "fr"], ["Oslo Sofa", "Canapé Oslo"]]),
        )
        put_ftp_file(
            stack,
            f"{INBOUND}/de_ch_20261123.csv",
            # pt_BR is normalised; "Klingon!" is not a locale (reported); "Red" appears twice.
            _csv(
                [
                    ["Canonical Name", "de_CH", "Klingon!"],
                    ["Oslo Sofa", "Sofa Oslo", "x"],
                    ["Red", "Rot", "y"],
                ]
                + [[f"Name {i}", f"Name {i} de", ""] for i in range(30)]
                + [["Red", "Rot (again)", "z"]]
            ),
        )
        put_ftp_file(stack, f"{INBOUND}/broken_20261123.csv", _csv([["Name", "fr"], ["Oslo Sofa", "Canapé"]]))
        dag = load_dag("threekit_translations_import")

        growing = Path(stack.ftp.root) / INBOUND.strip("/") / "late_20261123.csv"
        with GrowingUpload(
            growing, _csv([["Canonical Name", "fr"], ["Late", "En retard"]]), b'"Late {n}","En retard {n}"\n'
        ):
            state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 23, 10, tzinfo=UTC))
        assert state == "success", tasks

        assert _translations(stack, "fr")["Oslo Sofa"] == "Canapé Oslo"
        german = _translations(stack, "de-CH")
        assert german["Oslo Sofa"] == "Sofa Oslo" and german["Red"] == "Rot"  # first occurrence kept
        # Archived by stamp day; the bad file quarantined with its errors beside it.
        assert set(ftp_files(stack, "/archive/translations")) == {
            "2026/11/23/fr_20261123.csv",
            "2026/11/23/de_ch_20261123.csv",
        }
        rejected = ftp_files(stack, "/rejected/translations")
        assert set(rejected) == {"broken_20261123.csv", "broken_20261123.csv.errors.csv"}
        errors = (Path(stack.ftp.root) / "rejected/translations/broken_20261123.csv.errors.csv").read_text()
        assert "Canonical Name" in errors and "missing" in errors
        # The file still being written was not picked up.
        assert set(ftp_files(stack, INBOUND)) == {"late_20261123.csv"}

        reports = ftp_files(stack, "/reports/translations_import")
        report_json = next(name for name in reports if name.endswith(".json"))
        report = json.loads((Path(stack.ftp.root) / "reports/translations_import" / report_json).read_text())
        outcome = {f["file"]: f for f in report["files"]}
        assert outcome["fr_20261123.csv"]["status"] == "imported"
        assert outcome["de_ch_20261123.csv"]["status"] == "imported"
        assert outcome["de_ch_20261123.csv"]["rows_rejected"] == 1
        assert outcome["broken_20261123.csv"]["status"] == "rejected"
        reasons = {
            (r["file"], r["column"], r["reason"].split(" (")[0].split(";")[0]) for r in report["rejected"]
        }
        assert ("de_ch_20261123.csv", "Klingon!", "column header is not a locale code") in reasons
        assert ("de_ch_20261123.csv", "Canonical Name", "duplicate key") in reasons
        report_errors = next(name for name in reports if name.endswith(".errors.csv"))
        with open(Path(stack.ftp.root) / "reports/translations_import" / report_errors, newline="") as handle:
            assert any(row["reason"].startswith("duplicate key") for row in csv.DictReader(handle))

        # Next run: the finished upload is imported; nothing else is sent again.
        posts = request_count(stack, POST_TRANSLATIONS)
        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 23, 11, tzinfo=UTC))
        assert state == "success", tasks
        assert request_count(stack, POST_TRANSLATIONS) == posts + 1
        assert _translations(stack, "fr")["Late"] == "En retard"
        assert ftp_files(stack, INBOUND) == {}

        # Nothing waiting: the sensor times out and the run is skipped, nothing is sent.
        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 23, 12, tzinfo=UTC))
        assert state == "success", tasks
        assert tasks["wait_for_files"] == ["skipped"] and tasks["report"] == ["skipped"]
        assert request_count(stack, POST_TRANSLATIONS) == posts + 1


def test_three_day_replay_from_the_archive_is_deterministic(tmp_path):
    with running_stack(tmp_path, {"sensor_timeout_seconds": 4}) as stack:
        days = ["20261123", "20261124", "20261125"]
        values = ["Rouge", "Rouge vif", "Rouge foncé"]
        for day, value in zip(days, values, strict=True):
            put_ftp_file(
                stack, f"{INBOUND}/fr_{day}.csv", _csv([["Canonical Name", "fr"], ["Red", value], [day, day]])
            )
        dag = load_dag("threekit_translations_import")
        state, tasks = run_dag(dag, logical_date=datetime(2026, 11, 26, tzinfo=UTC))
        assert state == "success", tasks
        assert _translations(stack, "fr")["Red"] == "Rouge foncé"  # oldest stamp first, newest wins
        archived = ftp_files(stack, "/archive/translations")
        assert set(archived) == {f"{d[:4]}/{d[4:6]}/{d[6:]}/fr_{d}.csv" for d in days}

        # Someone changes the value in Threekit; replaying the three days, one run per day as a
        # backfill does, rebuilds the same state from the archive.
        override = tmp_path / "override.csv"
        override.write_bytes(_csv([["Canonical Name", "fr"], ["Red", "XXX"]]))
        with threekit_client(stack) as client:
            client.import_translations(override)
        seen = []
        for offset, day in enumerate(days):
            start = datetime(2026, 11, 23, tzinfo=UTC) + timedelta(days=offset)
            conf = {
                "replay": True,
                "replay_start": start.isoformat(),
                "replay_end": (start + timedelta(days=1)).isoformat(),
            }
            state, tasks = run_dag(dag, logical_date=start + timedelta(hours=1), conf=conf)
            assert state == "success", tasks
            # No sensor instance: a replay does not wait for new files.
            assert tasks["wait_for_files"] == ["skipped"] and tasks["import_translations"] == ["success"]
            seen.append(_translations(stack, "fr")["Red"])
            assert _translations(stack, "fr")[day] == day
        assert seen == values
        # Replayed files stay in the archive, unchanged; nothing was quarantined.
        assert ftp_files(stack, "/archive/translations") == archived
        assert ftp_files(stack, "/rejected") == {}


def test_dry_run_validates_only_and_file_param_picks_one_file(tmp_path):
    with running_stack(tmp_path) as stack:
        put_ftp_file(stack, f"{INBOUND}/fr_20261123.csv", _csv([["Canonical Name", "fr"], ["Red", "Rouge"]]))
        put_ftp_file(stack, f"{INBOUND}/de_20261123.csv", _csv([["Canonical Name", "de"], ["Red", "Rot"]]))
        dag = load_dag("threekit_translations_import")
        moment = datetime(2026, 11, 23, 10, tzinfo=UTC)

        state, tasks = run_dag(dag, logical_date=moment, conf={"dry_run": True})
        assert state == "success", tasks
        assert request_count(stack, POST_TRANSLATIONS) == 0
        assert set(ftp_files(stack, INBOUND)) == {"fr_20261123.csv", "de_20261123.csv"}
        assert ftp_files(stack, "/reports") == {} and ftp_files(stack, "/archive") == {}
        staged = list((tmp_path / "staging" / "threekit_translations_import").rglob("*/report/*.json"))
        assert [f["status"] for f in json.loads(staged[0].read_text())["files"]] == ["dry_run", "dry_run"]

        state, tasks = run_dag(
            dag, logical_date=moment + timedelta(hours=1), conf={"file": "de_20261123.csv"}
        )
        assert state == "success", tasks
        assert tasks["wait_for_files"] == ["skipped"]  # a named file is processed without waiting
        assert _translations(stack, "de") == {"Red": "Rot"} and _translations(stack, "fr") == {}
        assert set(ftp_files(stack, INBOUND)) == {"fr_20261123.csv"}
