"""Exceptions raised by the Threekit client, importer and exports.

Every message names the HTTP method and the endpoint *path* (never the query string or
any header), so the exceptions are safe to log and to show in a task's UI.
"""

from __future__ import annotations


class ThreekitError(Exception):
    """Base class of every error raised by :mod:`threekit_pipeline.threekit`."""


class ThreekitAPIError(ThreekitError):
    """Threekit answered with a non-retryable error status (400, 401, 403, 404, 422, ...).

    ``error_type`` and ``message`` come from Threekit's ``{"error": {"type", "message"}}``
    body when it has one.
    """

    def __init__(self, status: int, method: str, endpoint: str, error_type: str | None, message: str):
        self.status = status
        self.method = method
        self.endpoint = endpoint
        self.error_type = error_type
        self.message = message
        kind = f" {error_type}" if error_type else ""
        super().__init__(f"{method} {endpoint} failed with HTTP {status}{kind}: {message}")

    def __reduce__(self):  # keeps the exception picklable (it crosses process boundaries)
        return (type(self), (self.status, self.method, self.endpoint, self.error_type, self.message))


class ThreekitAuthError(ThreekitAPIError):
    """The token was rejected (401) or is not allowed to act on the organisation (403)."""


class ThreekitRetryExhausted(ThreekitError):
    """A call kept failing with transient errors until the retry budget was spent."""

    def __init__(
        self,
        method: str,
        endpoint: str,
        attempts: int,
        elapsed_s: float,
        last_status: int | None,
        last_error: str,
    ):
        self.method = method
        self.endpoint = endpoint
        self.attempts = attempts
        self.elapsed_s = elapsed_s
        self.last_status = last_status
        self.last_error = last_error
        status = f"HTTP {last_status}" if last_status is not None else "no response"
        super().__init__(
            f"{method} {endpoint} still failing after {attempts} attempts in {elapsed_s:.1f} s "
            f"(last: {status}, {last_error})"
        )

    def __reduce__(self):
        return (
            type(self),
            (self.method, self.endpoint, self.attempts, self.elapsed_s, self.last_status, self.last_error),
        )


class ThreekitJobTimeout(ThreekitError):
    """A Threekit job did not finish before its deadline; it was cancelled (if possible)."""

    def __init__(self, job_id: str, deadline_s: float, last_status: str | None, cancelled: bool):
        self.job_id = job_id
        self.deadline_s = deadline_s
        self.last_status = last_status
        self.cancelled = cancelled
        outcome = "the job was cancelled" if cancelled else "cancelling the job failed"
        super().__init__(
            f"Threekit job {job_id} not finished after {deadline_s:g} s "
            f"(last status {last_status!r}); {outcome}"
        )

    def __reduce__(self):
        return (type(self), (self.job_id, self.deadline_s, self.last_status, self.cancelled))


class ThreekitJobError(ThreekitError):
    """A finished job has no usable result (no run, no result file, unreadable result)."""
