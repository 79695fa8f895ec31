"""Production REST client for the Threekit API (plain Python, no Airflow imports).

What it guarantees:

* One ``requests.Session`` with a pooled ``HTTPAdapter``; the bearer token lives only in the
  session headers. A timeout applies to every call. ``orgId`` is added to every request.
* Transient failures (429 with ``Retry-After``, 5xx, dropped or refused connections,
  truncated bodies, timeouts) are retried (``tenacity``) with exponential backoff and full
  jitter, bounded by both ``max_retries`` and ``max_retry_time``; when the budget is spent the call raises
  :class:`ThreekitRetryExhausted`. Client errors (400/401/403/404/422) are never retried
  and raise :class:`ThreekitAPIError` carrying Threekit's error type and message.
* The token never appears in logs, exception messages or ``repr``: requests exceptions are
  rebuilt from the method, the endpoint path (no query string) and the exception class,
  and are not chained.

Retrying POSTs: most calls are idempotent. Two are not strictly so, and are retried anyway
on purpose:

* ``POST /api/products/import`` with ``sync=false`` creates a job; if the connection drops
  after Threekit accepted the request, the retry creates a second job. Both jobs run the
  same upsert (an entry's ``query`` selects the existing item to update), so the catalog
  ends up with the same items and no duplicates; only the job list gets an extra entry.
* ``POST /api/files`` is content-addressed: uploading the same bytes twice yields the same
  stored content.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential
from urllib3.exceptions import ProtocolError

from threekit_pipeline.threekit.errors import (
    ThreekitAPIError,
    ThreekitAuthError,
    ThreekitError,
    ThreekitJobError,
    ThreekitJobTimeout,
    ThreekitRetryExhausted,
)
from threekit_pipeline.threekit.multipart import FileUpload

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Failures where the request may not have reached Threekit or the answer was lost on the way.
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    ProtocolError,
)
JOB_TERMINAL_STATUSES = frozenset({"stopped"})
MAX_POLL_INTERVAL_S = 10.0


class _Transient(Exception):
    """One failed attempt that may succeed when repeated (internal to the retry loop)."""

    def __init__(self, failure: str, status: int | None, retry_after: float | None) -> None:
        super().__init__(failure)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class _AttemptState:
    """The one field of tenacity's ``RetryCallState`` its wait strategies read."""

    attempt_number: int


@dataclass(frozen=True)
class StreamedFile:
    """A response body written to disk: where, how many bytes, and their SHA-256."""

    path: Path
    size: int
    sha256: str


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class ThreekitClient:
    """Authenticated, retrying client for one Threekit environment and organisation.

    ``base_url`` is the environment root (``https://preview.threekit.com``); endpoint paths
    start with ``/api``. ``timeout`` is seconds, or a ``(connect, read)`` tuple, applied to
    every call. Pass ``session`` to use a configured session (e.g. one built by Airflow's
    ``HttpHook``: proxies, TLS settings, keep-alive adapter); its headers gain the
    ``Authorization`` header. Such a session is closed by :meth:`close` only when
    ``close_session`` is True.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        org_id: str | None = None,
        *,
        timeout: float | tuple[float, float] = (10, 120),
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_time: float = 300.0,
        pool_size: int = 8,
        user_agent: str = "threekit-pipeline/0.1",
        session: requests.Session | None = None,
        close_session: bool = False,
    ):
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL such as https://preview.threekit.com")
        if not token:
            raise ValueError("a Threekit API token is required")
        if max_retries < 0 or backoff_base < 0 or backoff_max < 0 or max_retry_time < 0:
            raise ValueError("retry settings must not be negative")
        self.base_url = base_url.rstrip("/")
        self.org_id = org_id or None
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_time = max_retry_time
        self._token = token
        self._own_session = session is None
        self._close_session = close_session or session is None
        self.session = session or requests.Session()
        if self._own_session:
            # Retries are done here (with logging and a time budget), never inside urllib3.
            adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers["User-Agent"] = user_agent
        self.session.headers.setdefault("Accept", "application/json")

    # -- housekeeping -----------------------------------------------------------------
    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, org_id={self.org_id!r})"

    def secrets(self) -> list[str]:
        """Values that must be masked in logs (the API token)."""
        return [self._token]

    def close(self) -> None:
        """Release pooled connections (of a session this client created or was asked to close)."""
        if self._close_session:
            self.session.close()

    def __enter__(self) -> ThreekitClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _scrub(self, text: str) -> str:
        # Defence in depth: an error body or exception text echoing the token is redacted.
        return text.replace(self._token, "***") if text else text

    def _require_org(self) -> str:
        if not self.org_id:
            raise ValueError("this call needs the client's org_id")
        return self.org_id

    # -- core request loop --------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the retry after failed attempt ``attempt``."""
        return wait_random_exponential(multiplier=self.backoff_base, max=self.backoff_max)(
            _AttemptState(attempt)
        )

    def _wait(self, retry_state: RetryCallState) -> float:
        """Seconds before the next attempt: ``Retry-After`` (capped by ``backoff_max``) or backoff."""
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, _Transient) and failure.retry_after is not None:
            return min(failure.retry_after, self.backoff_max)
        return self._backoff(retry_state.attempt_number)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        retry: bool | None = None,
    ) -> requests.Response:
        """Send one API call, retrying transient failures; return the successful response.

        ``path`` is an endpoint path such as ``/api/jobs/<id>``. ``retry=False`` makes a
        single attempt (transient failures then raise :class:`ThreekitRetryExhausted` with
        one attempt). Raises :class:`ThreekitAPIError` for non-retryable error statuses.
        With ``stream=True`` the caller must close the returned response. ``data`` may be a
        callable returning ``(body, content_type)``; it is called for every attempt, so a
        streamed body is rebuilt for a retry. Retries are driven by ``tenacity``: at most
        ``max_retries`` more attempts, and none whose wait would end past ``max_retry_time``.
        """
        if not path.startswith("/"):
            raise ValueError(f"endpoint path must start with '/': {path!r}")
        method = method.upper()
        endpoint = path.split("?", 1)[0]
        query = dict(params or {})
        if self.org_id and "orgId" not in query:
            query["orgId"] = self.org_id
        url = self.base_url + path
        max_attempts = 1 + (self.max_retries if retry is not False else 0)

        def attempt() -> requests.Response:
            body, send_headers = data, dict(headers or {})
            if callable(data):
                body, content_type = data()
                send_headers["Content-Type"] = content_type
            elif hasattr(data, "seek"):
                data.seek(0)
            try:
                response = self.session.request(
                    method,
                    url,
                    params=query,
                    json=json,
                    data=body,
                    files=files,
                    headers=send_headers or None,
                    stream=stream,
                    timeout=self.timeout,
                )
            except TRANSIENT_EXCEPTIONS as exc:
                raise _Transient(type(exc).__name__, None, None) from None
            except requests.RequestException as exc:
                # Not transient (invalid URL, too many redirects...): report without the URL text.
                raise ThreekitError(f"{method} {endpoint} failed: {type(exc).__name__}") from None
            status = response.status_code
            if status < 400:
                return response
            if status not in RETRYABLE_STATUSES:
                raise self._api_error(response, method, endpoint)
            error_type, _message = self._error_details(response)
            retry_after = _parse_retry_after(response.headers.get("Retry-After"))
            response.close()
            raise _Transient(f"HTTP {status}" + (f" {error_type}" if error_type else ""), status, retry_after)

        def stop(retry_state: RetryCallState) -> bool:
            return (
                retry_state.attempt_number >= max_attempts
                or (retry_state.seconds_since_start or 0.0) + retry_state.upcoming_sleep > self.max_retry_time
            )

        def before_sleep(retry_state: RetryCallState) -> None:
            failure = retry_state.outcome.exception()
            log.warning(
                "%s %s: %s, retry %d/%d in %.2f s",
                method,
                endpoint,
                failure,
                retry_state.attempt_number,
                max_attempts - 1,
                retry_state.upcoming_sleep,
            )

        def give_up(retry_state: RetryCallState) -> requests.Response:
            failure = retry_state.outcome.exception()
            elapsed = retry_state.seconds_since_start or 0.0
            log.error(
                "%s %s: giving up after %d attempt(s) in %.1f s (last: %s)",
                method,
                endpoint,
                retry_state.attempt_number,
                elapsed,
                failure,
            )
            raise ThreekitRetryExhausted(
                method, endpoint, retry_state.attempt_number, elapsed, failure.status, str(failure)
            )

        retrying = Retrying(
            retry=retry_if_exception_type(_Transient),
            wait=self._wait,
            stop=stop,
            before_sleep=before_sleep,
            retry_error_callback=give_up,
            sleep=time.sleep,
        )
        return retrying(attempt)

    def _error_details(self, response: requests.Response) -> tuple[str | None, str]:
        """Threekit's ``error.type`` and ``error.message`` (or a short plain-text excerpt)."""
        try:
            text = response.text
        except TRANSIENT_EXCEPTIONS:
            return None, response.reason or "unreadable error body"
        error_type: str | None = None
        message = ""
        try:
            body = json_loads(text)
        except ValueError:
            body = None
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                error_type = err.get("type")
                message = str(err.get("message") or "")
            elif isinstance(err, str):
                message = err
            elif isinstance(body.get("message"), str):
                message = body["message"]
        if not message:
            message = (text or "").strip()[:300] or (response.reason or "")
        return (self._scrub(str(error_type)) if error_type else None), self._scrub(message)

    def _api_error(self, response: requests.Response, method: str, endpoint: str) -> ThreekitAPIError:
        error_type, message = self._error_details(response)
        response.close()
        status = response.status_code
        cls = ThreekitAuthError if status in (401, 403) else ThreekitAPIError
        log.debug("%s %s -> HTTP %s %s", method, endpoint, status, error_type)
        return cls(status, method, endpoint, error_type, message)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """``request`` and decode the JSON body."""
        response = self.request(method, path, **kwargs)
        endpoint = path.split("?", 1)[0]
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ThreekitError(
                f"{method} {endpoint} returned HTTP {response.status_code} with a body that is not JSON"
            ) from None

    # -- streaming downloads ------------------------------------------------------------
    def stream_to_file(
        self,
        path: str,
        dest: Path,
        *,
        params: Mapping[str, Any] | None = None,
        chunk_size: int = 1 << 20,
    ) -> StreamedFile:
        """GET ``path`` and stream the body to ``dest`` in constant memory.

        The body goes to ``dest.part`` and is renamed into place only once complete, so
        ``dest`` never holds a partial file. A connection lost mid-body restarts the
        download (same retry budget as :meth:`request`).
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        endpoint = path.split("?", 1)[0]
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            response = self.request("GET", path, params=params, stream=True)
            digest = hashlib.sha256()
            size = 0
            try:
                with response, open(part, "wb") as fh:
                    for chunk in response.iter_content(chunk_size=chunk_size):
                        fh.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                    expected = response.headers.get("Content-Length")
                    if expected is not None and not response.headers.get("Content-Encoding"):
                        if int(expected) != size:
                            raise requests.exceptions.ChunkedEncodingError(
                                f"body truncated: {size} of {expected} bytes"
                            )
            except TRANSIENT_EXCEPTIONS as exc:
                part.unlink(missing_ok=True)
                elapsed = time.monotonic() - started
                delay = self._backoff(attempt)
                if attempt > self.max_retries or elapsed + delay > self.max_retry_time:
                    raise ThreekitRetryExhausted(
                        "GET", endpoint, attempt, elapsed, response.status_code, type(exc).__name__
                    ) from None
                log.warning(
                    "GET %s: download interrupted after %d bytes (%s), retry %d/%d in %.2f s",
                    endpoint,
                    size,
                    type(exc).__name__,
                    attempt,
                    self.max_retries,
                    delay,
                )
                time.sleep(delay)
                continue
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            os.replace(part, dest)
            log.debug("GET %s: %d bytes written to %s", endpoint, size, dest)
            return StreamedFile(dest, size, digest.hexdigest())

    # -- product import ------------------------------------------------------------------
    def _import_form(self, entries: Sequence[Mapping[str, Any]], sync: bool) -> Any:
        """POST the entries as a JSON array in the multipart field ``file`` (``items.json``).

        This is the form production importers send (JTK ``process_API_Items``: multipart
        ``file`` + ``sync``); the JSON ``{sync, files}`` body of the developer reference is not
        used because no public caller is seen sending it.
        """
        payload = json.dumps(list(entries), ensure_ascii=False).encode("utf-8")
        return self._json(
            "POST",
            "/api/products/import",
            data={"sync": "true" if sync else "false"},
            files={"file": ("items.json", payload, "application/json")},
        )

    def import_products_sync(self, entries: Sequence[Mapping[str, Any]]) -> list[dict]:
        """Import ``{query, product}`` entries synchronously; return the items Threekit reports.

        Sent as the multipart ``file`` form with ``sync=true``. Returns the created/updated
        items, each at least ``{id, name, metadata}`` (see :func:`sync_result_items` for the
        shapes accepted). Raises :class:`ThreekitAPIError` (HTTP 422) when Threekit refuses
        the request; whether a refusal is all-or-nothing is not documented, so callers must
        reconcile the answer entry by entry (:mod:`threekit_pipeline.threekit.importer`).
        """
        return sync_result_items(self._import_form(entries, sync=True))

    def import_products_job(self, entries: Sequence[Mapping[str, Any]]) -> str:
        """Start an asynchronous catalog-import job for ``entries``; return the job id.

        The entries travel as a JSON array in the multipart field ``file`` (as Threekit's
        own importers do), with ``sync=false``.
        """
        body = self._import_form(entries, sync=False)
        job_id = None
        if isinstance(body, dict):
            job_id = body.get("jobId") or (body.get("job") or {}).get("id")
        if not job_id:
            raise ThreekitError("POST /api/products/import (sync=false) returned no job id")
        log.info("started catalog-import job %s for %d entries", job_id, len(entries))
        return str(job_id)

    # -- jobs ---------------------------------------------------------------------------
    def get_job(self, job_id: str) -> dict:
        """The job (``status``, ``taskResultSuccesses``, ``taskResultFailures``...)."""
        body = self._json("GET", f"/api/jobs/{job_id}")
        if isinstance(body, dict) and isinstance(body.get("job"), dict):
            return body["job"]
        return body

    def get_job_runs(self, job_id: str) -> list[dict]:
        """The runs of a job, each with ``resultCode``, ``resultMessage`` and ``results``."""
        body = self._json("GET", "/api/jobs/runs", params={"jobId": job_id})
        return list((body or {}).get("runs") or [])

    def cancel_job(self, job_id: str) -> None:
        """Ask Threekit to cancel a job (no effect on a finished job)."""
        self.request("POST", f"/api/jobs/{job_id}/cancel").close()

    def wait_for_job(
        self,
        job_id: str,
        *,
        poll_interval: float = 1.0,
        deadline_s: float = 600,
        on_progress: Callable[[dict], None] | None = None,
    ) -> dict:
        """Poll a job until it is ``stopped`` and return the final job.

        Polls start every ``poll_interval`` seconds and back off (x1.5) to at most 10 s.
        When ``deadline_s`` passes first, the job is cancelled and
        :class:`ThreekitJobTimeout` is raised. ``on_progress`` receives every polled job.
        """
        started = time.monotonic()
        interval = max(0.01, poll_interval)
        polls = 0
        while True:
            job = self.get_job(job_id)
            polls += 1
            status = job.get("status")
            if on_progress is not None:
                on_progress(job)
            if status in JOB_TERMINAL_STATUSES:
                log.info(
                    "job %s finished in %.1f s: %s successes, %s failures",
                    job_id,
                    time.monotonic() - started,
                    job.get("taskResultSuccesses"),
                    job.get("taskResultFailures"),
                )
                return job
            elapsed = time.monotonic() - started
            if elapsed >= deadline_s:
                cancelled = True
                try:
                    self.cancel_job(job_id)
                except ThreekitError as exc:
                    cancelled = False
                    log.error("job %s: cancelling after the deadline failed: %s", job_id, exc)
                log.error(
                    "job %s still %s after %.1f s (deadline %g s); %s",
                    job_id,
                    status,
                    elapsed,
                    deadline_s,
                    "cancelled" if cancelled else "not cancelled",
                )
                raise ThreekitJobTimeout(job_id, deadline_s, status, cancelled)
            if polls % 10 == 0:
                log.info("job %s still %s after %.0f s", job_id, status, elapsed)
            time.sleep(min(interval, max(0.0, deadline_s - elapsed)))
            interval = min(MAX_POLL_INTERVAL_S, interval * 1.5)

    def job_result_items(self, job_id: str) -> list[dict]:
        """The items a finished catalog-import job created or updated.

        Path: ``/api/jobs/runs?jobId`` -> ``runs[].results.files[].id`` ->
        ``/api/files/:id/content`` = a JSON array of ``{id, name, metadata{}}`` (JTK
        ``process_API_Items``; reference section 4). An input missing from it failed; the
        file names no failure. Raises :class:`ThreekitJobError` when no run has a result
        file or the file is not a JSON array.
        """
        runs = self.get_job_runs(job_id)
        file_ids = [
            f["id"]
            for run in runs
            for f in ((run.get("results") or {}).get("files") or [])
            if isinstance(f, dict) and f.get("id")
        ]
        if not file_ids:
            raise ThreekitJobError(
                f"job {job_id} has no result file ({len(runs)} run(s)"
                + (f": {run_messages(runs)}" if run_messages(runs) else "")
                + ")"
            )
        items: list[dict] = []
        for file_id in file_ids:
            content = self._json("GET", f"/api/files/{file_id}/content")
            if not isinstance(content, list):
                raise ThreekitJobError(f"job {job_id}: result file {file_id} is not a JSON array")
            items.extend(item for item in content if isinstance(item, dict))
        return items

    def job_failure_summary(self, job_id: str, job: Mapping[str, Any] | None = None) -> str:
        """What Threekit says about a job's failures: failed task count and run messages.

        Failures show only here (``taskResultFailures`` on the job, ``resultCode`` and
        ``resultMessage`` on its runs; TREBLE ``http/catalog.ts``, JTK). Empty when the job
        reports no failure.
        """
        job = job if job is not None else self.get_job(job_id)
        failures = (job or {}).get("taskResultFailures") or 0
        messages = run_messages(self.get_job_runs(job_id)) if failures else ""
        if not failures:
            return ""
        return f"job {job_id} reported {failures} failed task(s)" + (f": {messages}" if messages else "")

    # -- files --------------------------------------------------------------------------
    def upload_file(self, path: Path, filename: str | None = None) -> dict:
        """Upload a local file (streamed, constant memory); return Threekit's file record."""
        path = Path(path)
        with FileUpload(path, field="files", filename=filename) as upload:
            result = self._json("POST", "/api/files", data=upload)
        files = (result or {}).get("files") if isinstance(result, dict) else None
        if not files:
            raise ThreekitError("POST /api/files returned no file record")
        record = files[0]
        log.info("uploaded %s (%d bytes) as file %s", path.name, path.stat().st_size, record.get("id"))
        return record

    def get_file(self, file_id: str) -> dict:
        """File metadata: ``id, filename, size, hash ("sha256-<hex>"), mimeType, ...``."""
        return self._json("GET", f"/api/files/{file_id}")

    def download_file(self, file_id: str, dest: Path, chunk_size: int = 1 << 20) -> Path:
        """Stream a stored file's content to ``dest`` (via ``dest.part``); return ``dest``."""
        return self.stream_to_file(f"/api/files/{file_id}/content", dest, chunk_size=chunk_size).path

    # -- listings -----------------------------------------------------------------------
    def iter_pages(
        self, path: str, key: str, params: Mapping[str, Any] | None = None, per_page: int = 100
    ) -> Iterator[dict]:
        """Yield every item of a paginated listing (``page``/``perPage``, items under ``key``)."""
        per_page = max(1, min(100, per_page))
        page = 1
        seen = 0
        while True:
            query = {**(params or {}), "page": page, "perPage": per_page}
            body = self._json("GET", path, params=query) or {}
            items = body.get(key) or []
            yield from items
            seen += len(items)
            count = body.get("count")
            if not items or len(items) < per_page or (isinstance(count, int) and seen >= count):
                return
            page += 1

    def list_assets(self, **filters: Any) -> Iterator[dict]:
        """Every asset matching ``filters`` (``type``, ``tags``, ``name``...), all pages."""
        return self.iter_pages("/api/assets", "assets", params=_clean_params(filters))

    def count_assets(self, **filters: Any) -> int | None:
        """How many assets match ``filters``: the ``count`` of a one-item page of
        ``GET /api/assets`` (REF §5 listings answer ``{assets, count, page, perPage}``).

        None when the answer carries no integer ``count``.
        """
        body = self._json("GET", "/api/assets", params={**_clean_params(filters), "page": 1, "perPage": 1})
        count = body.get("count") if isinstance(body, dict) else None
        return count if isinstance(count, int) and not isinstance(count, bool) else None

    def list_layers(self, asset_id: str | None = None, job_id: str | None = None) -> Iterator[dict]:
        """Every layer (rendered image) of an asset and/or job, all pages."""
        return self.iter_pages(
            "/api/layers", "layers", params=_clean_params({"assetId": asset_id, "jobId": job_id})
        )

    # -- exports ------------------------------------------------------------------------
    def export_products_json(
        self,
        dest: Path,
        tags: Sequence[str] | str | None = None,
        keywords: Sequence[str] | str | None = None,
        types: Sequence[str] | str | None = None,
    ) -> Path:
        """Stream the catalog export (JSON array of ``{query, product}``) to ``dest``."""
        params = _clean_params({"tags": _csv(tags), "keywords": _csv(keywords), "type": _csv(types)})
        return self.stream_to_file("/api/products/export/json", dest, params=params).path

    def export_asset(self, asset_id: str, dest: Path) -> Path:
        """Stream one asset's full JSON export to ``dest``."""
        return self.stream_to_file(f"/api/assets/export/{asset_id}", dest).path

    def export_translations(self, dest: Path, asset_id: str | None = None) -> Path:
        """Stream the translations CSV (``Canonical Name,<locale>...``) to ``dest``."""
        params = _clean_params({"assetId": asset_id})
        return self.stream_to_file("/api/products/translations", dest, params=params).path

    def import_translations(self, csv_path: Path) -> dict:
        """Upload a translations CSV (multipart field ``file``); return Threekit's answer."""
        with FileUpload(Path(csv_path), field="file", content_type="text/csv") as upload:
            result = self._json("POST", "/api/products/translations", data=upload)
        return result if isinstance(result, dict) else {"result": result}

    # -- assets, catalog, pricebooks --------------------------------------------------------
    def import_asset_file(self, file_id: str, title: str) -> str:
        """Start an asset import job for an uploaded file; return the job id."""
        body = self._json(
            "POST",
            "/api/asset-jobs/import",
            json={"fileId": file_id, "orgId": self._require_org(), "sync": False, "title": title},
        )
        job = (body or {}).get("job") or {}
        job_id = job.get("id") or (body or {}).get("jobId")
        if not job_id:
            raise ThreekitError("POST /api/asset-jobs/import returned no job id")
        log.info("started asset import job %s for file %s (%s)", job_id, file_id, title)
        return str(job_id)

    def find_products_by_metadata(self, metadata: Mapping[str, Any]) -> list[dict]:
        """Catalog items whose metadata matches every ``key: value`` (e.g. ``{"SKU": "A-1"}``)."""
        body = self._json(
            "GET", "/api/catalog/products", params={"metadata": json.dumps(dict(metadata), sort_keys=True)}
        )
        return list((body or {}).get("products") or [])

    def list_pricebooks(self) -> list[dict]:
        """Every pricebook of the organisation: ``[{id, name, orgId, currencies[]...}]``.

        ``GET /api/orgs/:orgId/pricebooks?all=true`` (JTK ``parseXMLFromS3``, TREBLE
        ``http/pricebook.ts``). Whether ``all=true`` is honoured for every org size is not
        published, so when the answer carries a ``count`` larger than what it holds, the
        remaining pages are read with ``page``/``perPage`` (the convention of every other
        Threekit listing).
        """
        path = f"/api/orgs/{self._require_org()}/pricebooks"
        body = self._json("GET", path, params={"all": "true"})
        if isinstance(body, list):
            return body
        books = list((body or {}).get("pricebooks") or [])
        count = (body or {}).get("count")
        if isinstance(count, int) and count > len(books):
            books = list(self.iter_pages(path, "pricebooks"))
        return books

    def delete_asset(self, asset_id: str) -> None:
        """Delete an asset (``DELETE /api/assets/:id``; Threekit keeps it restorable)."""
        self.request("DELETE", f"/api/assets/{asset_id}").close()

    def restore_asset(self, asset_id: str) -> None:
        """Restore a deleted asset (``POST /api/assets/:id/restore``, RESTPKG ``restoreById``)."""
        self.request("POST", f"/api/assets/{asset_id}/restore").close()

    def healthcheck(self) -> bool:
        """Validate the credentials with one cheap authenticated call.

        Returns True when Threekit accepts the token for the organisation, False when it
        rejects it (401/403). Other failures (network, 5xx) raise, so callers can tell
        "wrong token" from "Threekit unreachable".
        """
        try:
            self.request("GET", "/api/assets", params={"page": 1, "perPage": 1}, retry=False).close()
        except ThreekitAuthError as exc:
            log.warning("Threekit rejected the credentials: %s", exc)
            return False
        return True


def run_messages(runs: Sequence[Mapping[str, Any]]) -> str:
    """``resultCode: resultMessage`` of every run that has one, joined by ``; ``."""
    parts = []
    for run in runs:
        if not isinstance(run, Mapping):
            continue
        code, message = run.get("resultCode"), run.get("resultMessage")
        text = ": ".join(str(v) for v in (code, message) if v not in (None, ""))
        if text:
            parts.append(text)
    return "; ".join(parts)


def sync_result_items(body: Any) -> list[dict]:
    """The items of a synchronous import's answer.

    GUESS (isolated here): no public caller reads a ``sync=true`` answer, so its shape is
    not known. Accepted: a JSON array of items (the shape of the job result file, the one
    shape that is documented), or an object holding such an array under ``products``,
    ``items``, ``results`` or ``assets``. Anything else yields an empty list, which the
    importer treats as "nothing confirmed" (never as success).
    """
    if isinstance(body, list):
        return [item for item in body if isinstance(item, dict)]
    if isinstance(body, dict):
        for key in ("products", "items", "results", "assets"):
            value = body.get(key)
            if isinstance(value, list):
                return [item for item in value if isinstance(item, dict)]
    return []


def json_loads(text: str) -> Any:
    """``json.loads`` that treats an empty body as ``None``."""
    return json.loads(text) if text else None


def _csv(value: Sequence[str] | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    joined = ",".join(str(v) for v in value if v)
    return joined or None


def _clean_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None and v != ""}
