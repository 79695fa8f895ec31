"""threekit-sandbox: a local HTTP server that behaves like Threekit's REST API.

Run ``threekit-sandbox --port 0 --token TOKEN --org-id ORG --data-dir DIR``; it prints
``threekit-sandbox listening on http://HOST:PORT`` once ready and stops cleanly (exit code 0)
on SIGTERM or SIGINT. The token may also come from the ``THREEKIT_SANDBOX_TOKEN``
environment variable, which keeps it out of process listings.

Routes live under ``/api`` (see the route table below); ``/_sandbox/*`` holds admin
endpoints for tests and demos. Optional faults (``--fail-rate``, ``--rate-limit``,
``--latency-ms``, ``--drop-rate``) apply to ``/api`` requests except healthchecks; they are
decided before any work is done, so a faulted request never changes state. With ``--seed``
the fault sequence is reproducible (one draw per API request).
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import math
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from threekit_pipeline.sandbox.threekit_catalog import (
    asset_document,
    canonical_value,
    export_entry,
    product_summary,
    result_item,
)
from threekit_pipeline.sandbox.threekit_http import (
    BodyError,
    BodyReader,
    FormPart,
    parse_content_type,
    parse_multipart,
)
from threekit_pipeline.sandbox.threekit_service import (
    ImportRejected,
    Sandbox,
    TranslationsRejected,
    parse_sync_flag,
)
from threekit_pipeline.sandbox.threekit_store import Store

# A fixed name, also when run as ``python -m`` (where __name__ is "__main__").
log = logging.getLogger("threekit_pipeline.sandbox.threekit_server")

MAX_JSON_BODY = 256 * 1024 * 1024
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 30
TOKEN_ENV = "THREEKIT_SANDBOX_TOKEN"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class ApiError(Exception):
    """An error answer: ``{"error": {"type": ..., "message": ...}}`` with an HTTP status."""

    def __init__(self, status: int, error_type: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.extra = extra


@dataclass
class Response:
    """An answer to send: JSON/text ``body`` or the file at ``path``."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    length: int | None = None


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON answer."""
    return Response(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))


def error_response(error: ApiError) -> Response:
    """The JSON answer for an :class:`ApiError`."""
    return json_response(
        {"error": {"type": error.error_type, "message": error.message, **error.extra}}, error.status
    )


@dataclass
class Faults:
    """Fault-injection settings (all off by default)."""

    fail_rate: float = 0.0
    rate_limit: int = 0
    latency_ms: int = 0
    drop_rate: float = 0.0

    def validate(self) -> None:
        """Raise ValueError when a setting is out of range."""
        for name in ("fail_rate", "drop_rate"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number between 0 and 1")
        if self.fail_rate + self.drop_rate > 1:
            raise ValueError("fail_rate + drop_rate must not exceed 1")
        for name in ("rate_limit", "latency_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")


class TokenBucket:
    """Per-token request budget: ``rate`` requests per second, bursts up to ``rate``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, rate: int) -> float:
        """Consume one request; returns 0 when allowed, else seconds until one is available."""
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (float(rate), now))
            tokens = min(float(rate), tokens + (now - stamp) * rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / rate

    def clear(self) -> None:
        """Forget every bucket."""
        with self._lock:
            self._buckets.clear()


@dataclass
class Route:
    """One endpoint: method, path pattern, stats template and handler."""

    method: str
    pattern: re.Pattern
    template: str
    handler: Callable[..., Response]
    auth: bool = True
    faults: bool = True


class SandboxHTTPServer(ThreadingHTTPServer):
    """The HTTP server object: shared state for every request thread."""

    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        token: str,
        sandbox: Sandbox,
        faults: Faults,
        seed: int | None,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, SandboxRequestHandler)
        self.token = token
        self.sandbox = sandbox
        self.store = sandbox.store
        self.org_id = sandbox.org_id
        self.faults = faults
        self.random = random.Random(seed)
        self.seed = seed
        self.fault_lock = threading.Lock()
        self.buckets = TokenBucket()
        self.request_counts: Counter[str] = Counter()
        self.counts_lock = threading.Lock()

    def draw(self) -> float:
        """One draw of the fault generator (exactly one per API request)."""
        with self.fault_lock:
            return self.random.random()

    def count(self, key: str) -> None:
        """Count one request by method and route template."""
        with self.counts_lock:
            self.request_counts[key] += 1


# --- query-string helpers ----------------------------------------------------------------


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _multi(query: dict[str, list[str]], name: str) -> list[str]:
    """A list parameter given comma-separated and/or repeated (``tags=a,b&tags=c``)."""
    out: list[str] = []
    for value in query.get(name, []):
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def _json_param(query: dict[str, list[str]], name: str) -> Any:
    raw = _first(query, name)
    if raw is None or raw == "":
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise ApiError(422, "validation_error", f"query parameter {name} is not valid JSON") from None


def _metadata_filter(query: dict[str, list[str]]) -> dict[str, Any] | None:
    value = _json_param(query, "metadata")
    if value is None:
        return None
    if isinstance(value, list):
        try:
            return {m["name"]: m.get("defaultValue", m.get("value")) for m in value}
        except (TypeError, KeyError):
            raise ApiError(
                422, "validation_error", "metadata must be a JSON object or a list of {name, defaultValue}"
            ) from None
    if not isinstance(value, dict):
        raise ApiError(422, "validation_error", "metadata must be a JSON object of name: value")
    return value


def _paging(query: dict[str, list[str]], default_per_page: int = DEFAULT_PER_PAGE) -> tuple[int, int]:
    try:
        page = int(_first(query, "page") or 1)
        per_page = int(_first(query, "perPage") or default_per_page)
    except ValueError:
        raise ApiError(422, "validation_error", "page and perPage must be integers") from None
    if page < 1:
        raise ApiError(422, "validation_error", "page must be 1 or more")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ApiError(422, "validation_error", f"perPage must be between 1 and {MAX_PER_PAGE}")
    return page, per_page


def _page(items: list[Any], page: int, per_page: int) -> list[Any]:
    start = (page - 1) * per_page
    return items[start : start + per_page]


def _redacted_target(target: str) -> str:
    """The request target for logs, with the value of ``bearer_token`` removed."""
    split = urlsplit(target)
    if not split.query:
        return split.path
    parts = []
    for pair in split.query.split("&"):
        name = pair.split("=", 1)[0]
        parts.append(f"{name}=***" if name.lower() == "bearer_token" else pair)
    return f"{split.path}?{'&'.join(parts)}"


_SECRET_RE = re.compile(r"(bearer_token=)[^&\s'\"]*|(Bearer\s+)\S+", re.IGNORECASE)


def _scrub(text: str) -> str:
    return _SECRET_RE.sub(lambda m: (m.group(1) or m.group(2)) + "***", text)


# --- the request handler -----------------------------------------------------------------


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """Routes one request at a time on a keep-alive connection."""

    protocol_version = "HTTP/1.1"
    server_version = "threekit-sandbox/1.0"
    timeout = 120
    server: SandboxHTTPServer

    # Silence the default stderr access log; _dispatch logs one scrubbed line per request.
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Protocol-level messages (malformed requests), scrubbed of secrets."""
        log.warning("%s", _scrub(format % args))

    def setup(self) -> None:
        """Disable Nagle's algorithm: answers are written whole, so there is no reason to wait."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """Access logging happens in :meth:`_dispatch`."""

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch()

    # -- plumbing -------------------------------------------------------------------------
    def _body_reader(self) -> BodyReader:
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length_header = self.headers.get("Content-Length")
        length = None
        if length_header is not None and not chunked:
            try:
                length = int(length_header)
            except ValueError:
                length = None
            if length is None or length < 0:
                self.close_connection = True
                raise ApiError(400, "bad_request", "invalid Content-Length header")
        return BodyReader(self.rfile, length, chunked)

    def _dispatch(self) -> None:
        started = time.monotonic()
        method = self.command
        split = urlsplit(self.path)
        self.query = parse_qs(split.query, keep_blank_values=True)
        path = split.path.rstrip("/") or "/"
        status: int | str = "-"
        self._parts: list[FormPart] = []
        try:
            try:
                self.body = self._body_reader()
            except ApiError as exc:
                self.body = BodyReader(self.rfile, 0, False)
                response: Response | None = error_response(exc)
            else:
                response = self._route(method, path)
            if not self.body.exhausted and not self.body.drain():
                self.close_connection = True
            if response is None:  # connection deliberately dropped
                status = "dropped"
                return
            status = response.status
            self._send(response)
        except (BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
            self.close_connection = True
            status = f"client gone ({type(exc).__name__})"
        finally:
            for part in self._parts:
                part.close()
            elapsed = (time.monotonic() - started) * 1000
            log.info("%s %s %s %.1fms", method, _redacted_target(self.path), status, elapsed)

    def _route(self, method: str, path: str) -> Response | None:
        allowed = []
        for route in ROUTES:
            match = route.pattern.match(path)
            if not match:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            if path.startswith("/api/"):
                self.server.count(f"{method} {route.template}")
            try:
                if route.faults:
                    faulted = self._apply_faults()
                    if faulted is not False:
                        return faulted
                if route.auth:
                    self._authorize()
                return route.handler(self, **match.groupdict())
            except ApiError as exc:
                return error_response(exc)
            except BodyError as exc:
                return error_response(ApiError(400, "bad_request", str(exc)))
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception:
                log.exception("%s %s failed", method, route.template)
                return error_response(ApiError(500, "server_error", "internal error in threekit-sandbox"))
        if path.startswith("/api/"):
            self.server.count(f"{method} (unknown route)")
        if allowed:
            return error_response(ApiError(405, "method_not_allowed", f"{method} is not allowed on {path}"))
        return error_response(ApiError(404, "not_found", f"no route for {method} {path}"))

    def _presented_token(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        if header[:7].lower() == "bearer " and header[7:].strip():
            return header[7:].strip()
        return _first(self.query, "bearer_token") or None

    def _authorize(self) -> None:
        token = self._presented_token()
        if token is None:
            raise ApiError(403, "forbidden", "a bearer token is required")
        if not hmac.compare_digest(token.encode("utf-8"), self.server.token.encode("utf-8")):
            raise ApiError(401, "unauthorized", "unauthorized")
        org_id = _first(self.query, "orgId")
        if org_id and org_id != self.server.org_id:
            raise ApiError(403, "forbidden", f"the token has no access to organization {org_id}")

    def _apply_faults(self) -> Response | None | bool:
        """A fault answer (None = drop the connection) or False to proceed normally."""
        faults = self.server.faults
        draw = self.server.draw()  # drawn for every API request, so --seed fixes the sequence
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if faults.rate_limit:
            token = self._presented_token() or "anonymous"
            key = hmac.new(b"threekit-sandbox", token.encode("utf-8"), "sha256").hexdigest()
            wait = self.server.buckets.take(key, faults.rate_limit)
            if wait > 0:
                retry_after = max(1, math.ceil(wait))
                response = error_response(
                    ApiError(
                        429, "too_many_requests", f"rate limit of {faults.rate_limit} requests/s exceeded"
                    )
                )
                response.headers["Retry-After"] = str(retry_after)
                return response
        if draw < faults.fail_rate:
            return error_response(ApiError(500, "server_error", "injected server error"))
        if draw < faults.fail_rate + faults.drop_rate:
            self._drop_connection()
            return None
        return False

    def _drop_connection(self) -> None:
        """Send a status line and half a header, then reset the connection."""
        self.body.drain()
        self.close_connection = True
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: applica")
            self.wfile.flush()
            # Linger 0 makes close() send RST: the client sees a reset, not a clean end.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.path is not None:
            size = response.length if response.length is not None else response.path.stat().st_size
            self.send_header("Content-Length", str(size))
            self.end_headers()
            with open(response.path, "rb") as fh:
                while chunk := fh.read(256 * 1024):
                    self.wfile.write(chunk)
        else:
            self.send_header("Content-Length", str(len(response.body)))
            # Headers and body leave in one write: separate small writes would meet Nagle's
            # algorithm and the client's delayed ACK (a 40 ms stall per request).
            self._headers_buffer.append(b"\r\n" + response.body)
            self.flush_headers()
        self.wfile.flush()

    # -- body helpers ---------------------------------------------------------------------
    def _content_type(self) -> tuple[str, dict[str, str]]:
        return parse_content_type(self.headers.get("Content-Type"))

    def _json_body(self, error_type: str = "validation_error") -> Any:
        raw = self.body.read_all(MAX_JSON_BODY)
        if not raw.strip():
            raise ApiError(422, error_type, "the request body is empty; expected JSON")
        try:
            return json.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(422, error_type, f"the request body is not valid JSON: {exc}") from None

    def _multipart(self) -> list[FormPart]:
        media, params = self._content_type()
        if media != "multipart/form-data":
            raise ApiError(400, "bad_request", "expected a multipart/form-data body")
        self._parts = parse_multipart(self.body, params.get("boundary", ""), str(self.server.store.tmp_dir))
        return self._parts

    # -- admin ----------------------------------------------------------------------------
    def h_healthcheck(self, service: str) -> Response:
        return json_response({"status": "ok", "service": service})

    def h_stats(self) -> Response:
        store = self.server.store
        with store.connection() as conn:
            by_type = {
                row[0]: row[1] for row in conn.execute("SELECT type, COUNT(*) FROM assets GROUP BY type")
            }
            by_status = {
                row[0]: row[1] for row in conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")
            }
            stats = {
                "items": by_type.get("item", 0),
                "assets": sum(by_type.values()),
                "assetsByType": by_type,
                "files": store.count(conn, "files"),
                "jobs": store.count(conn, "jobs"),
                "jobsByStatus": by_status,
                "layers": store.count(conn, "layers"),
                "translations": store.count(conn, "translations"),
            }
        with self.server.counts_lock:
            stats["requests"] = dict(sorted(self.server.request_counts.items()))
        stats["faults"] = asdict(self.server.faults)
        return json_response(stats)

    def h_items(self) -> Response:
        with self.server.store.connection() as conn:
            items = self.server.store.assets(conn, ["item"])
        return json_response([asset_document(item) for item in items])

    def h_faults(self) -> Response:
        body = self._json_body()
        if not isinstance(body, dict):
            raise ApiError(422, "validation_error", "expected a JSON object of fault settings")
        known = {"fail_rate", "rate_limit", "latency_ms", "drop_rate", "seed"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ApiError(422, "validation_error", f"unknown fault settings: {', '.join(unknown)}")
        current = asdict(self.server.faults)
        current.update({k: v for k, v in body.items() if k != "seed"})
        candidate = Faults(**current)
        try:
            candidate.validate()
        except ValueError as exc:
            raise ApiError(422, "validation_error", str(exc)) from None
        with self.server.fault_lock:
            self.server.faults = candidate
            if "seed" in body:
                self.server.random.seed(body["seed"])
        self.server.buckets.clear()
        log.info("fault settings changed: %s", asdict(candidate))
        return json_response(asdict(candidate))

    def h_reset(self) -> Response:
        self.server.sandbox.reset()
        with self.server.counts_lock:
            self.server.request_counts.clear()
        self.server.buckets.clear()
        log.info("sandbox state reset")
        return json_response({"reset": True})

    # -- products -------------------------------------------------------------------------
    def h_import(self) -> Response:
        media, _ = self._content_type()
        query_sync = _first(self.query, "sync")
        if media == "multipart/form-data":
            parts = self._multipart()
            fields = {p.name: p for p in parts}
            file_part = fields.get("file") or next((p for p in parts if p.filename), None)
            if file_part is None:
                raise ApiError(422, "product_data_invalid", "the multipart body has no 'file' part")
            sync_part = fields.get("sync")
            sync = parse_sync_flag(sync_part.text() if sync_part else query_sync)
            source = file_part.read_bytes()
            filename = file_part.filename or "items.json"
            try:
                entries = json.loads(source.decode("utf-8-sig"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ApiError(422, "product_data_invalid", f"{filename}: not valid JSON: {exc}") from None
            if not isinstance(entries, list):
                raise ApiError(422, "product_data_invalid", f"{filename}: expected a JSON array of entries")
        else:
            body = self._json_body("product_data_invalid")
            if isinstance(body, list):
                entries, sync = body, parse_sync_flag(query_sync)
            elif isinstance(body, dict):
                if "files" not in body:
                    raise ApiError(422, "product_data_invalid", "files: is required")
                files = body["files"]
                if isinstance(files, dict):
                    entries = [files]
                elif isinstance(files, list):
                    entries = files
                else:
                    raise ApiError(
                        422, "product_data_invalid", "files: must be an entry object or a list of entries"
                    )
                sync = parse_sync_flag(body.get("sync", query_sync))
            else:
                raise ApiError(422, "product_data_invalid", "expected a JSON object with files")
            source = json.dumps(entries, ensure_ascii=False).encode("utf-8")
            filename = "items.json"
        sandbox = self.server.sandbox
        if not sync:
            job = sandbox.create_catalog_job(entries, source, filename)
            return json_response({"jobId": job["id"], "job": job})
        try:
            items = sandbox.import_sync(entries)
        except ImportRejected as exc:
            extra = {"errors": exc.messages[:200]} if sandbox.detailed_errors else {}
            raise ApiError(
                422, "product_data_invalid", sandbox.public_message(exc.messages), **extra
            ) from None
        # GUESS: the answer of sync=true is not published; the sandbox answers with the shape
        # of the job result file (the one documented result shape).
        return json_response([result_item(item) for item in items])

    def h_export(self, format: str) -> Response:  # noqa: A002 - route parameter name
        if format.lower() != "json":
            raise ApiError(422, "fetch_product_error", f"unsupported export format {format!r}; only json")
        types = _multi(self.query, "type") or ["item"]
        tags = set(_multi(self.query, "tags"))
        keywords = set(_multi(self.query, "keywords"))
        with self.server.store.connection() as conn:
            assets = self.server.store.assets(conn, types)
        if tags:
            assets = [a for a in assets if tags.intersection(a["tags"])]
        if keywords:
            assets = [a for a in assets if keywords.intersection(a["keywords"])]
        return json_response([export_entry(a) for a in assets])

    def h_translations_get(self) -> Response:
        asset_id = _first(self.query, "assetId")
        text = self.server.sandbox.translations_csv(asset_id or None)
        if text is None:
            raise ApiError(404, "not_found", f"asset {asset_id} not found")
        return Response(200, text.encode("utf-8"), "text/csv; charset=utf-8")

    def h_translations_post(self) -> Response:
        media, _ = self._content_type()
        if media == "multipart/form-data":
            parts = self._multipart()
            part = next((p for p in parts if p.name == "file"), None) or next(
                (p for p in parts if p.filename), None
            )
            if part is None:
                raise ApiError(422, "validation_error", "the multipart body has no 'file' part")
            raw = part.read_bytes()
        else:
            raw = self.body.read_all(MAX_JSON_BODY)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ApiError(422, "validation_error", "the translations CSV is not valid UTF-8") from None
        try:
            stored = self.server.sandbox.import_translations(text)
        except TranslationsRejected as exc:
            raise ApiError(422, "validation_error", str(exc)) from None
        return json_response({"translations": stored})

    def h_asset_translations(self) -> Response:
        locale = _first(self.query, "locale")
        if not locale:
            raise ApiError(422, "validation_error", "locale is required")
        return json_response(self.server.sandbox.translations_for(locale))

    # -- jobs -----------------------------------------------------------------------------
    def h_jobs(self) -> Response:
        page, per_page = _paging(self.query)
        statuses = _multi(self.query, "status")
        types = set(_multi(self.query, "type"))
        with self.server.store.connection() as conn:
            jobs = self.server.store.jobs(conn, statuses or None)
        if types:
            jobs = [j for j in jobs if j["type"] in types]
        sort = _first(self.query, "sort") or "+createdAt"
        if sort.startswith("-"):
            jobs.reverse()
        return json_response(
            {
                "jobs": _page(jobs, page, per_page),
                "count": len(jobs),
                "page": page,
                "perPage": per_page,
                "sort": sort,
            }
        )

    def h_job(self, job_id: str) -> Response:
        job = self.server.sandbox.get_job(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"job {job_id} not found")
        return json_response(job)

    def h_runs(self) -> Response:
        page, per_page = _paging(self.query)
        with self.server.store.connection() as conn:
            runs = self.server.store.runs(conn, _first(self.query, "jobId") or None)
        return json_response(
            {"runs": _page(runs, page, per_page), "page": page, "perPage": per_page, "count": len(runs)}
        )

    def h_cancel(self, job_id: str) -> Response:
        job = self.server.sandbox.cancel_job(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"job {job_id} not found")
        return json_response(job)

    # -- files ----------------------------------------------------------------------------
    def h_files_upload(self) -> Response:
        store = self.server.store
        uploads = [p for p in self._multipart() if p.filename is not None]
        if not uploads:
            raise ApiError(400, "bad_request", "no file in the multipart body (parts need a filename)")
        blobs = []
        for part in uploads:
            part.file.seek(0)
            hex_digest, size = store.spool_blob(part.file)
            blobs.append(
                (hex_digest, size, part.filename or "upload", (part.content_type or "").split(";")[0])
            )
        with store.write() as conn:
            files = [store.register_file(conn, h, s, name, mime or None) for h, s, name, mime in blobs]
        log.info(
            "stored %d file(s): %s",
            len(files),
            ", ".join(f"{f['filename']} ({f['size']} bytes)" for f in files),
        )
        return json_response({"files": files}, 201)

    def _file_or_404(self, record: dict[str, Any] | None, what: str) -> dict[str, Any]:
        if record is None:
            raise ApiError(404, "not_found", f"file {what} not found")
        return record

    def h_file(self, file_id: str) -> Response:
        with self.server.store.connection() as conn:
            record = self._file_or_404(self.server.store.get_file(conn, file_id), file_id)
        return json_response(record)

    def _content(self, record: dict[str, Any]) -> Response:
        path = self.server.store.file_blob(record)
        if not path.exists():
            raise ApiError(404, "not_found", f"content of file {record['id']} not found")
        disposition = f"inline; filename*=UTF-8''{quote(record['filename'])}"
        return Response(
            200, content_type=record["mimeType"], path=path, headers={"Content-Disposition": disposition}
        )

    def h_file_content(self, file_id: str) -> Response:
        with self.server.store.connection() as conn:
            record = self._file_or_404(self.server.store.get_file(conn, file_id), file_id)
        return self._content(record)

    def h_file_by_hash(self, content_hash: str) -> Response:
        with self.server.store.connection() as conn:
            record = self._file_or_404(self.server.store.get_file_by_hash(conn, content_hash), content_hash)
        return self._content(record)

    # -- assets and catalog ---------------------------------------------------------------
    def _asset_filters(self, default_types: list[str] | None) -> dict[str, Any]:
        """The listing filters of the query string, as :meth:`Store.find_assets` arguments."""
        return {
            "types": _multi(self.query, "type") or default_types,
            "name": _first(self.query, "name") or None,
            "name_like": _first(self.query, "nameLike") or None,
            "tags": set(_multi(self.query, "tags")) or None,
            "keywords": set(_multi(self.query, "keywords")) or None,
            "metadata": _metadata_filter(self.query) or None,
            "imported_file": _first(self.query, "importedFileId") or None,
        }

    def _listed_assets(
        self, default_types: list[str] | None, paging: tuple[int, int] | None, order: str = "createdAt",
        descending: bool = False,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page (or, without ``paging``, all) of the filtered assets and the total count.

        Filtering, ordering and paging happen in the store's indexes, so a page costs the
        same whatever the size of the org.
        """
        filters = self._asset_filters(default_types)
        limit = offset = None
        if paging is not None:
            page, per_page = paging
            limit, offset = per_page, (page - 1) * per_page
        with self.server.store.connection() as conn:
            found, count = self.server.store.find_assets(
                conn, **filters, order=order, descending=descending, limit=limit, offset=offset or 0,
                with_count=paging is not None,
            )
        return found, len(found) if count is None else count

    def h_assets(self) -> Response:
        page, per_page = _paging(self.query)
        sort = _first(self.query, "sort") or _first(self.query, "order") or "+createdAt"
        key = sort.lstrip("+-")
        if key not in ("createdAt", "updatedAt", "name"):
            raise ApiError(422, "validation_error", f"cannot sort by {key!r} (createdAt, updatedAt or name)")
        assets, count = self._listed_assets(None, (page, per_page), key, sort.startswith("-"))
        return json_response(
            {
                "assets": [asset_document(a) for a in assets],
                "count": count,
                "page": page,
                "perPage": per_page,
                "sort": sort,
            }
        )

    def _asset_or_404(self, asset_id: str) -> dict[str, Any]:
        with self.server.store.connection() as conn:
            asset = self.server.store.get_asset(conn, asset_id)
        if asset is None:
            raise ApiError(404, "not_found", f"asset {asset_id} not found")
        return asset

    def h_asset(self, asset_id: str) -> Response:
        return json_response(asset_document(self._asset_or_404(asset_id)))

    def h_asset_export(self, asset_id: str) -> Response:
        return json_response(asset_document(self._asset_or_404(asset_id)))

    def h_catalog_products(self) -> Response:
        if _first(self.query, "perPage") or _first(self.query, "page"):
            page, per_page = _paging(self.query)
            items, count = self._listed_assets(["item"], (page, per_page))
            return json_response(
                {
                    "products": [product_summary(a) for a in items],
                    "count": count,
                    "page": page,
                    "perPage": per_page,
                }
            )
        items, count = self._listed_assets(["item"], None)
        return json_response({"products": [product_summary(a) for a in items], "count": count})

    def h_pricebooks(self, org_id: str) -> Response:
        if org_id != self.server.org_id:
            raise ApiError(403, "forbidden", f"the token has no access to organization {org_id}")
        books = self.server.sandbox.pricebooks()
        if (_first(self.query, "all") or "").lower() == "true":
            return json_response({"pricebooks": books, "count": len(books)})
        page, per_page = _paging(self.query)
        return json_response(
            {"pricebooks": _page(books, page, per_page), "count": len(books), "page": page, "perPage": per_page}
        )

    def h_asset_delete(self, asset_id: str) -> Response:
        asset = self.server.sandbox.delete_asset(asset_id)
        if asset is None:
            raise ApiError(404, "not_found", f"asset {asset_id} not found")
        return json_response(asset_document(asset))

    def h_asset_restore(self, asset_id: str) -> Response:
        asset = self.server.sandbox.restore_asset(asset_id)
        if asset is None:
            raise ApiError(404, "not_found", f"asset {asset_id} not found")
        return json_response(asset_document(asset))

    def h_admin_render(self) -> Response:
        body = self._json_body()
        if not isinstance(body, dict):
            raise ApiError(422, "validation_error", "expected {assetIds?: [...], tags?: [...]}")
        ids, tags = body.get("assetIds"), body.get("tags")
        for value in (ids, tags):
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ApiError(422, "validation_error", "assetIds and tags must be lists of strings")
        return json_response({"layers": self.server.sandbox.render_stand_in(ids, tags)})

    def h_admin_render_faults(self) -> Response:
        body = self._json_body()
        if not isinstance(body, dict) or not all(v in ("fail", "hang") for v in body.values()):
            raise ApiError(422, "validation_error", "expected {assetId: 'fail' | 'hang'}")
        self.server.sandbox.set_render_faults(body)
        return json_response({"faults": body})

    def h_render(self, asset_id: str, renderer: str) -> Response:
        """``POST /api/asset-jobs/:assetId/render/vray|webgl`` (reference section 6, DEV-renderassetvray).

        Body: ``orgId``, ``configuration`` or ``configurations[]``, ``stageId``,
        ``stageConfiguration``, ``settings.output.resolution {width, height}`` (public snippet)
        and ``settings.output.format``. Answer ``{"jobId", "job"}`` like asset-import jobs: the
        real answer of a render request is not published (a guess, see the fidelity table).
        """
        body = self._json_body()
        if not isinstance(body, dict):
            raise ApiError(422, "validation_error", "expected a JSON object")
        if body.get("orgId") not in (None, self.server.org_id):
            raise ApiError(403, "forbidden", f"the token has no access to organization {body['orgId']}")
        configurations = body.get("configurations")
        if configurations is None:
            configurations = [body.get("configuration") or {}]
        if not isinstance(configurations, list) or not all(isinstance(c, dict) for c in configurations):
            raise ApiError(422, "validation_error", "configurations: must be a list of objects")
        settings = body.get("settings") or {}
        output = settings.get("output") if isinstance(settings, dict) else None
        resolution = (output or {}).get("resolution") or {}
        payload = {
            "configurations": configurations,
            "stageId": body.get("stageId"),
            "stageConfiguration": body.get("stageConfiguration") or {},
            "width": resolution.get("width"),
            "height": resolution.get("height"),
            "format": (output or {}).get("format") or "png",
        }
        job = self.server.sandbox.create_render_job(asset_id, renderer, payload)
        if job is None:
            raise ApiError(404, "not_found", f"asset {asset_id} not found")
        return json_response({"jobId": job["id"], "job": job})

    def h_admin_pricebooks(self) -> Response:
        body = self._json_body()
        books = body if isinstance(body, list) else None
        if not books or not all(
            isinstance(b, dict)
            and isinstance(b.get("name"), str)
            and b["name"].strip()
            and isinstance(b.get("currencies", []), list)
            for b in books
        ):
            raise ApiError(422, "validation_error", "expected a list of {name, currencies[]}")
        created = self.server.sandbox.add_pricebooks([(b["name"], list(b.get("currencies") or [])) for b in books])
        return json_response({"pricebooks": created})

    # -- layers ---------------------------------------------------------------------------
    def h_layers(self) -> Response:
        page, per_page = _paging(self.query)
        asset_id = _first(self.query, "assetId")
        job_id = _first(self.query, "jobId")
        configuration = _json_param(self.query, "assetLayerConfiguration")
        if configuration is not None and not isinstance(configuration, dict):
            raise ApiError(422, "validation_error", "assetLayerConfiguration must be a JSON object")
        with self.server.store.connection() as conn:
            layers = self.server.store.layers(conn)
        if asset_id:
            layers = [layer for layer in layers if layer["assetId"] == asset_id]
        if job_id:
            layers = [layer for layer in layers if layer["jobId"] == job_id]
        if configuration is not None:
            wanted = {
                k: canonical_value(v) if not isinstance(v, dict | list) else v
                for k, v in configuration.items()
            }
            layers = [
                layer
                for layer in layers
                if {
                    k: canonical_value(v) if not isinstance(v, dict | list) else v
                    for k, v in layer["assetLayerConfiguration"].items()
                }
                == wanted
            ]
        return json_response(
            {"layers": _page(layers, page, per_page), "count": len(layers), "page": page, "perPage": per_page}
        )

    def h_layer(self, layer_id: str) -> Response:
        if not UUID_RE.match(layer_id):
            raise ApiError(422, "validation_error", f"{layer_id!r} is not a layer id")
        with self.server.store.connection() as conn:
            layers = [layer for layer in self.server.store.layers(conn) if layer["id"] == layer_id]
        if not layers:
            raise ApiError(404, "not_found", f"layer {layer_id} not found")
        return json_response(layers[0])

    # -- asset jobs -----------------------------------------------------------------------
    def h_asset_import(self) -> Response:
        body = self._json_body()
        if not isinstance(body, dict):
            raise ApiError(422, "validation_error", "expected a JSON object with fileId")
        file_id = body.get("fileId")
        if not isinstance(file_id, str) or not file_id:
            raise ApiError(422, "validation_error", "fileId: is required (the id of an uploaded file)")
        if body.get("orgId") not in (None, self.server.org_id):
            raise ApiError(403, "forbidden", f"the token has no access to organization {body['orgId']}")
        title = body.get("title")
        if title is not None and not isinstance(title, str):
            raise ApiError(422, "validation_error", "title: must be a string")
        asset_id = body.get("assetId") or body.get("targetAssetId")
        if asset_id is not None and not isinstance(asset_id, str):
            raise ApiError(422, "validation_error", "assetId: must be a string")
        settings = body.get("settings") or {}
        if not isinstance(settings, dict):
            raise ApiError(422, "validation_error", "settings: must be an object")
        with self.server.store.connection() as conn:
            self._file_or_404(self.server.store.get_file(conn, file_id), file_id)
        sandbox = self.server.sandbox
        job = sandbox.create_asset_job(file_id, title, asset_id, settings)
        if parse_sync_flag(body.get("sync"), default=False):
            sandbox.process_job(job["id"])
            job = sandbox.get_job(job["id"])
        return json_response({"jobId": job["id"], "job": job})


def _route(
    method: str, pattern: str, template: str, handler: Callable[..., Response], **flags: bool
) -> Route:
    return Route(method, re.compile(f"^{pattern}$"), template, handler, **flags)


H = SandboxRequestHandler
ID = r"[^/]+"
ROUTES: list[Route] = [
    _route(
        "GET",
        r"/api/(?P<service>[\w-]+)/healthcheck",
        "/api/:service/healthcheck",
        H.h_healthcheck,
        auth=False,
        faults=False,
    ),
    _route("GET", r"/_sandbox/stats", "/_sandbox/stats", H.h_stats, faults=False),
    _route("GET", r"/_sandbox/items", "/_sandbox/items", H.h_items, faults=False),
    _route("POST", r"/_sandbox/faults", "/_sandbox/faults", H.h_faults, faults=False),
    _route("POST", r"/_sandbox/reset", "/_sandbox/reset", H.h_reset, faults=False),
    _route("POST", r"/_sandbox/pricebooks", "/_sandbox/pricebooks", H.h_admin_pricebooks, faults=False),
    _route("POST", r"/_sandbox/render", "/_sandbox/render", H.h_admin_render, faults=False),
    _route("POST", r"/api/products/import", "/api/products/import", H.h_import),
    _route("GET", rf"/api/products/export/(?P<format>{ID})", "/api/products/export/:format", H.h_export),
    _route("GET", r"/api/products/translations", "/api/products/translations", H.h_translations_get),
    _route("POST", r"/api/products/translations", "/api/products/translations", H.h_translations_post),
    _route("GET", r"/api/jobs", "/api/jobs", H.h_jobs),
    _route("GET", r"/api/jobs/runs", "/api/jobs/runs", H.h_runs),
    _route("GET", rf"/api/jobs/(?P<job_id>{ID})", "/api/jobs/:id", H.h_job),
    _route("POST", rf"/api/jobs/(?P<job_id>{ID})/cancel", "/api/jobs/:id/cancel", H.h_cancel),
    _route("POST", r"/api/files", "/api/files", H.h_files_upload),
    _route("GET", rf"/api/files/hash/(?P<content_hash>{ID})", "/api/files/hash/:hash", H.h_file_by_hash),
    _route("GET", rf"/api/files/(?P<file_id>{ID})", "/api/files/:id", H.h_file),
    _route("GET", rf"/api/files/(?P<file_id>{ID})/content", "/api/files/:id/content", H.h_file_content),
    _route("GET", r"/api/assets", "/api/assets", H.h_assets),
    _route("GET", r"/api/assets/translations", "/api/assets/translations", H.h_asset_translations),
    _route("GET", rf"/api/assets/export/(?P<asset_id>{ID})", "/api/assets/export/:assetId", H.h_asset_export),
    _route("GET", rf"/api/assets/(?P<asset_id>{ID})", "/api/assets/:id", H.h_asset),
    _route("DELETE", rf"/api/assets/(?P<asset_id>{ID})", "/api/assets/:id", H.h_asset_delete),
    _route(
        "POST", rf"/api/assets/(?P<asset_id>{ID})/restore", "/api/assets/:id/restore", H.h_asset_restore
    ),
    _route("GET", r"/api/catalog/products", "/api/catalog/products", H.h_catalog_products),
    _route("GET", rf"/api/orgs/(?P<org_id>{ID})/pricebooks", "/api/orgs/:orgId/pricebooks", H.h_pricebooks),
    _route("GET", r"/api/layers", "/api/layers", H.h_layers),
    _route("GET", rf"/api/layers/(?P<layer_id>{ID})", "/api/layers/:id", H.h_layer),
    _route("POST", r"/api/asset-jobs/import", "/api/asset-jobs/import", H.h_asset_import),
    _route(
        "POST",
        rf"/api/asset-jobs/(?P<asset_id>{ID})/render/(?P<renderer>vray|webgl)",
        "/api/asset-jobs/:assetId/render/:renderer",
        H.h_render,
    ),
    _route("POST", r"/_sandbox/render-faults", "/_sandbox/render-faults", H.h_admin_render_faults, faults=False),
]


# --- command line ------------------------------------------------------------------------


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _pricebook(text: str) -> tuple[str, tuple[str, ...]]:
    name, _, currencies = text.rpartition(":")
    if not name.strip():
        name, currencies = text, ""
    codes = tuple(c.strip().upper() for c in currencies.split(",") if c.strip())
    return name.strip(), codes


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="threekit-sandbox", description="A local server that behaves like Threekit's REST API."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_non_negative, default=0, help="port (0 picks a free one)")
    parser.add_argument("--token", default=None, help=f"private API token (or set {TOKEN_ENV})")
    parser.add_argument("--org-id", required=True, help="the organization id the token belongs to")
    parser.add_argument(
        "--data-dir", required=True, type=Path, help="directory for the SQLite state and files"
    )
    parser.add_argument(
        "--fail-rate", type=_rate, default=0.0, help="share of API requests answered with 500"
    )
    parser.add_argument(
        "--rate-limit", type=_non_negative, default=0, help="requests per second per token (0 = off)"
    )
    parser.add_argument("--latency-ms", type=_non_negative, default=0, help="delay before every API answer")
    parser.add_argument(
        "--drop-rate", type=_rate, default=0.0, help="share of API requests whose connection drops"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for the fault generator")
    parser.add_argument(
        "--job-delay-ms", type=_non_negative, default=200, help="how long a job stays unfinished"
    )
    parser.add_argument(
        "--detailed-errors",
        action="store_true",
        help="put validation details into 422 and run messages (local debugging; Threekit's are generic)",
    )
    parser.add_argument(
        "--sync-partial",
        action="store_true",
        help="GUESS switch: a sync import lands its valid entries instead of refusing the whole request",
    )
    parser.add_argument(
        "--pricebook",
        action="append",
        type=_pricebook,
        default=None,
        metavar="NAME:CUR[,CUR]",
        help="a pricebook of the org (repeatable; replaces the default set on a new data dir)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until SIGTERM/SIGINT; returns the process exit code."""
    args = build_parser().parse_args(argv)
    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        print(f"threekit-sandbox: a token is required (--token or {TOKEN_ENV})", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    faults = Faults(args.fail_rate, args.rate_limit, args.latency_ms, args.drop_rate)
    try:
        faults.validate()
    except ValueError as exc:
        print(f"threekit-sandbox: {exc}", file=sys.stderr)
        return 2
    args.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(args.data_dir, args.org_id)
    sandbox = Sandbox(
        store,
        job_delay_ms=args.job_delay_ms,
        detailed_errors=args.detailed_errors,
        pricebooks=tuple(args.pricebook) if args.pricebook else None,
        sync_partial=args.sync_partial,
    )
    server = SandboxHTTPServer((args.host, args.port), token, sandbox, faults, args.seed)
    host, port = server.server_address[:2]
    url_host = f"[{host}]" if ":" in host else host

    def stop(signum: int, _frame: Any) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        # shutdown() waits for serve_forever to return, so it must not run on this thread.
        threading.Thread(target=server.shutdown, name="shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sandbox.start_worker()
    log.info(
        "threekit-sandbox for organization %s on port %d (data in %s, faults %s, job delay %d ms)",
        args.org_id,
        port,
        args.data_dir,
        asdict(faults),
        args.job_delay_ms,
    )
    print(f"threekit-sandbox listening on http://{url_host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        sandbox.stop_worker()
        server.server_close()
        store.close()
        log.info("threekit-sandbox stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
