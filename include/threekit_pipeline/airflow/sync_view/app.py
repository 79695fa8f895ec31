"""The Threekit sync view: a FastAPI app served by Airflow's API server (see ``plugins/threekit_sync.py``).

Pages (plain HTML, readable without JavaScript, shown inside the Airflow UI as an external view):

* ``/threekit-sync/`` — per import DAG, its recent runs: state, created / updated / unchanged /
  rejected / retired, duration, a mark on partial runs; the SKU search box; the effective
  configuration (the ``threekit_pipeline`` Variable, secrets never shown).
* ``/threekit-sync/run?dag_id=&run_id=`` — one run: its summary line, files, every rejected row
  with its SKU and whole reason, the report and errors CSV to view or download.
* ``/threekit-sync/file?dag_id=&run_id=&kind=json|csv|errors|retired|retired_csv[&download=1]`` —
  a report file (``retired``: the catalog run's retirement report, JSON; ``retired_csv``: as CSV).
* ``/threekit-sync/sku?sku=`` — every catalog run that touched a SKU: what happened (created,
  updated, unchanged, rejected with its reason, retired), Threekit id, source file and line.
* ``/threekit-sync/api/runs`` — the run list as JSON.

Every route requires Airflow's own authentication (the UI's session cookie or a bearer token) and
shows only the DAGs the user may read. The server reads the reports itself (staging or FTP through
the configured connection); no connection detail ever reaches the page.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from threekit_pipeline.airflow.sync_view.data import (
    ReportStore,
    import_dags_in_force,
    mask_secrets,
    sku_history,
)
from threekit_pipeline.pipelines.run_summary import retired_count, summarize

log = logging.getLogger(__name__)

RECENT_RUNS = 15

STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#1a202c;font-size:14px}
h1{font-size:20px}h2{font-size:16px;margin-top:24px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #cbd5e0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#edf2f7}td.n{text-align:right}.partial{background:#fefcbf}.failed{background:#fed7d7}
.badge{display:inline-block;padding:1px 6px;border-radius:4px;font-size:12px;font-weight:600}
.b-partial{background:#f6e05e}.b-ok{background:#9ae6b4}.b-failed{background:#feb2b2}.b-other{background:#e2e8f0}
.summary{font-size:15px;font-weight:600;margin:8px 0}pre{background:#f7fafc;padding:8px;overflow:auto}
form{margin:8px 0}input[type=text]{width:260px;padding:4px}
"""


async def require_user(request: Request):
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization", "")
    bearer = None
    if header.lower().startswith("bearer "):
        bearer = HTTPAuthorizationCredentials(scheme="Bearer", credentials=header[7:].strip())
    return await get_user(request, None, bearer)


AirflowUser = Annotated[Any, Depends(require_user)]


def _readable_dags(user: Any) -> list[str]:
    from airflow.api_fastapi.app import get_auth_manager

    allowed = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
    return [dag_id for dag_id in import_dags_in_force() if dag_id in allowed]


def _check_dag(user: Any, dag_id: str) -> None:
    if dag_id not in import_dags_in_force():
        raise HTTPException(status_code=404, detail=f"{dag_id} is not a Threekit import DAG")
    if dag_id not in _readable_dags(user):
        raise HTTPException(status_code=403, detail=f"no access to {dag_id}")


# --- configuration and data sources ------------------------------------------------------------


def effective_config() -> dict[str, Any]:
    """The pipeline configuration in force (Variable merged over the defaults), secrets masked."""
    from dataclasses import asdict

    from threekit_pipeline.pipelines.config import VARIABLE_NAME, load_config

    raw = None
    try:
        from airflow.models.variable import Variable

        raw = Variable.get(VARIABLE_NAME, default_var=None)
    except Exception as exc:  # the view still works with the defaults
        log.info("Variable %s not readable here (%s); showing defaults", VARIABLE_NAME, type(exc).__name__)
    try:
        config = asdict(load_config(raw))
    except Exception as exc:
        return {"error": f"the {VARIABLE_NAME} Variable is not valid: {exc}"}
    return mask_secrets(config)


def _store() -> ReportStore:
    from contextlib import contextmanager

    from threekit_pipeline.pipelines.config import load_config

    raw = None
    try:
        from airflow.models.variable import Variable

        raw = Variable.get("threekit_pipeline", default_var=None)
    except Exception:
        raw = None
    config = load_config(raw)

    @contextmanager
    def transfer(conn_id: str):
        from threekit_pipeline.airflow.hooks.ftp import FtpTransferHook

        client = FtpTransferHook(conn_id or config.ftp_conn_id).get_conn()
        with client:
            yield client

    # Each import DAG's reports are read from its feed's reports folder over its feed's connection.
    from threekit_pipeline.pipelines.runtime import staging_root

    return ReportStore(staging_root(config), config.folder("reports"), transfer, dags=import_dags_in_force())


def _recent_runs(dag_id: str, limit: int = RECENT_RUNS) -> list[dict[str, Any]]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.run_after.desc()).limit(limit)
        ).all()
        return [
            {
                "dag_id": dag_id,
                "run_id": run.run_id,
                "state": str(getattr(run.state, "value", run.state) or ""),
                "run_type": str(getattr(run.run_type, "value", run.run_type) or ""),
                "start_date": run.start_date,
                "end_date": run.end_date,
                "note": run.note or "",
            }
            for run in rows
        ]


def runs_overview(store: ReportStore, dag_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Per DAG, its recent runs with their counts (from the run reports)."""
    result: dict[str, list[dict[str, Any]]] = {}
    for dag_id in dag_ids:
        runs = []
        for run in _recent_runs(dag_id):
            summary = store.summary(dag_id, run["run_id"])
            start, end = run["start_date"], run["end_date"]
            runs.append(
                {
                    **run,
                    "start_date": start.isoformat() if isinstance(start, datetime) else None,
                    "end_date": end.isoformat() if isinstance(end, datetime) else None,
                    "duration_seconds": (end - start).total_seconds() if start and end else None,
                    "summary": summary,
                }
            )
        result[dag_id] = runs
    return result


# --- HTML ---------------------------------------------------------------------------------------

e = html.escape


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def _run_href(dag_id: str, run_id: str) -> str:
    return "run?" + urlencode({"dag_id": dag_id, "run_id": run_id})


def _table(columns: list[str], rows: Iterable[list[str]], row_classes: Iterable[str] = ()) -> str:
    classes = list(row_classes)
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join(
        f"<tr class='{classes[i] if i < len(classes) else ''}'>"
        + "".join(f"<td>{cell}</td>" for cell in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _badge(state: str, summary: Mapping[str, Any] | None) -> str:
    if state == "success" and summary and summary.get("partial"):
        return "<span class='badge b-partial'>partial success</span>"
    if state == "success":
        return "<span class='badge b-ok'>success</span>"
    if state == "failed":
        return "<span class='badge b-failed'>failed</span>"
    return f"<span class='badge b-other'>{e(state or 'unknown')}</span>"


def _counter(summary: Mapping[str, Any]):
    def count(key: str) -> str:
        return f"{summary.get(key, 0):,}" if summary else "—"

    return count


def _search_form(value: str = "") -> str:
    return (
        "<form action='sku' method='get'><label>Find a SKU across runs: "
        f"<input type='text' name='sku' value='{e(value)}' placeholder='e.g. LAMP-007'></label> "
        "<button type='submit'>Search</button></form>"
    )


def overview_html(overview: Mapping[str, list[dict[str, Any]]], config: Mapping[str, Any]) -> str:
    parts = ["<h1>Threekit sync</h1>", _search_form()]
    columns = [
        "run",
        "state",
        "created",
        "updated",
        "unchanged",
        "rejected",
        "retired",
        "duration",
        "started",
    ]
    for dag_id, runs in overview.items():
        parts.append(f"<h2>{e(dag_id)}</h2>")
        if not runs:
            parts.append("<p>No run yet.</p>")
            continue
        rows, classes = [], []
        for run in runs:
            s = run["summary"] or {}
            count = _counter(s)
            rejected = count("rejected") + (
                f" ({e(str(s.get('rejected_detail', '')).strip(' ()'))})" if s and s.get("rejected") else ""
            )
            rows.append(
                [
                    f"<a href='{e(_run_href(dag_id, run['run_id']))}'>{e(run['run_id'])}</a>",
                    _badge(run["state"], s),
                    count("created"),
                    count("updated")
                    if not s.get("imported")
                    else f"{count('updated')} (+{s['imported']:,} imported)",
                    count("unchanged"),
                    rejected,
                    count("retired"),
                    _duration(run["duration_seconds"]),
                    e(run["start_date"] or "—"),
                ]
            )
            classes.append("partial" if s.get("partial") else ("failed" if run["state"] == "failed" else ""))
        parts.append(_table(columns, rows, classes))
    parts.append("<h2>Effective configuration</h2>")
    parts.append(
        "<p>The <code>threekit_pipeline</code> Variable merged over the defaults, as the tasks read it "
        "(it may come from the environment, so the Variables page can be empty).</p>"
    )
    parts.append(f"<pre>{e(json.dumps(config, indent=2, default=str))}</pre>")
    return "".join(parts)


def _retirement_html(dag_id: str, run_id: str, retirement: Mapping[str, Any]) -> str:
    query = {"dag_id": dag_id, "run_id": run_id}
    rows = retirement.get("retired") or []
    retired = retired_count(retirement)
    parts = [
        f"<h2 id='retired'>Retired ({retired:,})</h2>",
        f"<p>Retirement of source {e(str(retirement.get('source', '')))}: "
        f"{e(str(retirement.get('status', '')))} · retire: {e(str(retirement.get('retire', '')))}"
        + (f" · {e(str(retirement['message']))}" if retirement.get("message") else "")
        + "</p>",
        "<p>"
        f"<a href='file?{e(urlencode({**query, 'kind': 'retired'}))}'>retirement report (JSON)</a> · "
        f"<a href='file?{e(urlencode({**query, 'kind': 'retired_csv', 'download': 1}))}' download>"
        "download retirement CSV</a></p>",
    ]
    if rows:
        parts.append(
            _table(
                ["SKU", "Threekit id", "action", "status", "detail"],
                (
                    [e(str(r.get(k) or "")) for k in ("sku", "threekit_id", "action", "status", "detail")]
                    for r in rows
                ),
            )
        )
    return "".join(parts)


def run_html(
    dag_id: str,
    run_id: str,
    report: Mapping[str, Any] | None,
    errors: list[dict[str, str]],
    retirement: Mapping[str, Any] | None = None,
) -> str:
    parts = [f"<p><a href='./'>← Threekit sync</a></p><h1>{e(dag_id)} · {e(run_id)}</h1>"]
    if report is None:
        parts.append(
            "<p>No run report is available for this run (it found no file, or it has not finished).</p>"
        )
        if retirement is not None:
            parts.append(_retirement_html(dag_id, run_id, retirement))
        return "".join(parts)
    summary = summarize(report, retirement=retirement)
    parts.append(f"<p class='summary'>{e(summary.line())}</p>")
    parts.append(
        f"<p>Status: {e(str(report.get('status', '')))} · selection: {e(str(report.get('selection', '')))}</p>"
    )
    query = {"dag_id": dag_id, "run_id": run_id}
    links = [
        f"<a href='file?{e(urlencode({**query, 'kind': 'json'}))}'>report (JSON)</a>",
        f"<a href='file?{e(urlencode({**query, 'kind': 'csv'}))}' download>per-file report (CSV)</a>",
    ]
    if errors:
        links.append(f"<a href='file?{e(urlencode({**query, 'kind': 'errors'}))}'>errors CSV (view)</a>")
        links.append(
            f"<a id='download-errors' href='file?{e(urlencode({**query, 'kind': 'errors', 'download': 1}))}'"
            " download>download errors CSV</a>"
        )
    parts.append("<p>" + " · ".join(links) + "</p>")
    files = report.get("files") or []
    if files:
        parts.append("<h2>Files</h2>")
        parts.append(
            _table(
                ["file", "status", "rows read", "rows rejected", "reason", "now at"],
                (
                    [
                        e(str(f.get(k, "") or ""))
                        for k in ("file", "status", "rows_read", "rows_rejected", "reason", "destination")
                    ]
                    for f in files
                ),
            )
        )
    rejected = errors or report.get("rejected") or []
    parts.append(f"<h2>Rejected rows and entries ({len(rejected):,})</h2>")
    if rejected:
        parts.append(
            _table(
                ["SKU", "file", "line", "column", "value", "reason"],
                (
                    [
                        e(str(r.get("sku") or r.get("key") or "")),
                        e(str(r.get("file") or "")),
                        e(str(r.get("line") or "")),
                        e(str(r.get("column") or "")),
                        e(str(r.get("value") or "")),
                        e(str(r.get("reason") or "")),
                    ]
                    for r in rejected
                ),
            )
        )
    else:
        parts.append("<p>Nothing was rejected.</p>")
    if retirement is not None:
        parts.append(_retirement_html(dag_id, run_id, retirement))
    notes = report.get("notes") or []
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(str(n))}</li>" for n in notes) + "</ul>")
    return "".join(parts)


def sku_html(sku: str, events: list[dict[str, Any]]) -> str:
    parts = ["<p><a href='./'>← Threekit sync</a></p>", f"<h1>SKU {e(sku)}</h1>", _search_form(sku)]
    if not events:
        parts.append(f"<p>No catalog import run kept in staging touched {e(sku)}.</p>")
        return "".join(parts)
    parts.append(
        _table(
            ["run", "what happened", "Threekit id", "source file", "line", "reason"],
            (
                [
                    f"<a href='{e(_run_href(ev['dag_id'], ev['run_id']))}'>{e(ev['run_id'])}</a>",
                    e(ev["what"]),
                    e(ev["threekit_id"] or "—"),
                    e(ev["file"] or "—"),
                    e(ev["line"] or "—"),
                    e(ev["reason"] or ""),
                ]
                for ev in events
            ),
        )
    )
    return "".join(parts)


# --- the app ------------------------------------------------------------------------------------


def create_app() -> FastAPI:
    app = FastAPI(title="Threekit sync", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def overview(user: AirflowUser):
        dags = _readable_dags(user)
        return _page("Threekit sync", overview_html(runs_overview(_store(), dags), effective_config()))

    @app.get("/api/runs")
    def api_runs(user: AirflowUser):
        return JSONResponse(runs_overview(_store(), _readable_dags(user)))

    @app.get("/run", response_class=HTMLResponse)
    def run(user: AirflowUser, dag_id: str = Query(...), run_id: str = Query(...)):
        _check_dag(user, dag_id)
        store = _store()
        return _page(
            f"{dag_id} {run_id}",
            run_html(
                dag_id,
                run_id,
                store.report(dag_id, run_id),
                store.errors(dag_id, run_id),
                store.retirement(dag_id, run_id),
            ),
        )

    @app.get("/file")
    def report_file(
        user: AirflowUser,
        dag_id: str = Query(...),
        run_id: str = Query(...),
        kind: str = Query("json", pattern="^(json|csv|errors|retired|retired_csv)$"),
        download: bool = Query(False),
    ):
        _check_dag(user, dag_id)
        store = _store()
        data = store.read(dag_id, run_id, kind)
        if data is None:
            raise HTTPException(status_code=404, detail="this report file is not available")
        name = store.local_path(dag_id, run_id, kind).name
        media = "application/json" if kind in ("json", "retired") else "text/csv"
        disposition = "attachment" if download else "inline"
        return Response(
            data,
            media_type=f"{media}; charset=utf-8" if not download else media,
            headers={"Content-Disposition": f'{disposition}; filename="{name}"'},
        )

    @app.get("/sku", response_class=HTMLResponse)
    def sku(user: AirflowUser, sku: str = Query("")):
        if "threekit_catalog_import" not in _readable_dags(user):
            raise HTTPException(status_code=403, detail="no access to threekit_catalog_import")
        events = [ev.to_dict() for ev in sku_history(_store(), sku)] if sku.strip() else []
        return _page(f"SKU {sku}", sku_html(sku, events))

    return app
