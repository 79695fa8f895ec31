"""Hook for the ``threekit`` connection type: turns an Airflow connection into a ``ThreekitClient``.

Built on the http provider's :class:`~airflow.providers.http.hooks.http.HttpHook`: the hook
reads the connection and builds the ``requests`` session the HTTP way (proxies, ``verify``,
``cert``, ``trust_env`` extras, TCP keep-alive adapter); the plain
:class:`~threekit_pipeline.threekit.client.ThreekitClient` (no Airflow imports) gets that
session and adds the bearer token, ``orgId``, timeouts and retries.

Connection fields (see ``CONNECTIONS.md`` next to this package):

* ``host``: the environment base URL, with its scheme (``https://preview.threekit.com``).
  A bare host name is accepted too; its scheme then comes from the ``scheme`` extra
  (default ``https``) and ``port`` is appended when set.
* ``password``: the private API token.
* extras: ``org_id`` (organisation id), optional ``scheme``, ``timeout`` (read timeout in
  seconds, or ``[connect, read]``), ``max_retries`` and ``max_retry_time`` (seconds).

URI form: Airflow's URI syntax cannot carry both credentials and a scheme inside the
host, so write ``threekit://:TOKEN@preview.threekit.com?org_id=ORG`` (https implied),
``threekit://:TOKEN@127.0.0.1:8090?org_id=ORG&scheme=http`` or Airflow's own
protocol-in-host form ``threekit://http://:TOKEN@127.0.0.1:8090?org_id=ORG`` (what
``Connection.get_uri()`` produces for a host holding ``http://...``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow.providers.http.hooks.http import HttpHook

from threekit_pipeline.threekit.client import ThreekitClient
from threekit_pipeline.threekit.errors import ThreekitError

log = logging.getLogger(__name__)

DEFAULT_SCHEME = "https"
DEFAULT_CONNECT_TIMEOUT = 10.0
_SCHEMES = ("http", "https")


class ThreekitConnectionError(ValueError):
    """The ``threekit`` connection is incomplete or contradictory (names the field at fault)."""


def threekit_base_url(host: str | None, port: int | None, extra: Mapping[str, Any]) -> str:
    """The Threekit base URL (``scheme://host[:port]``, no trailing slash) of a connection.

    ``host`` may carry its scheme (``http://127.0.0.1:8090``); otherwise the ``scheme``
    extra (default ``https``) is used. ``port`` is added only when ``host`` has none.
    """
    raw = (host or "").strip().rstrip("/")
    if not raw:
        raise ThreekitConnectionError("the threekit connection has no host: set it to the Threekit base URL")
    extra_scheme = str(extra.get("scheme") or "").strip().lower() or None
    if extra_scheme is not None and extra_scheme not in _SCHEMES:
        raise ThreekitConnectionError(f"extra 'scheme' must be 'http' or 'https', not {extra_scheme!r}")
    if "://" in raw:
        parts = urlsplit(raw)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise ThreekitConnectionError(f"host must be an http(s) URL, got scheme {scheme!r}")
        if extra_scheme is not None and extra_scheme != scheme:
            raise ThreekitConnectionError(
                f"host says {scheme!r} but extra 'scheme' says {extra_scheme!r}; remove one of them"
            )
        netloc, path = parts.netloc, parts.path.rstrip("/")
    else:
        scheme = extra_scheme or DEFAULT_SCHEME
        netloc, _, path = raw.partition("/")
        path = f"/{path}".rstrip("/") if path else ""
    if "@" in netloc:
        raise ThreekitConnectionError("host must not contain credentials; put the API token in the password")
    has_port = netloc.rsplit("]", 1)[-1].count(":") == 1
    if port and not has_port:
        netloc = f"{netloc}:{int(port)}"
    return f"{scheme}://{netloc}{path}"


def plain_extras(extra: Mapping[str, Any]) -> dict[str, Any]:
    """Extras with the ``extra__threekit__`` prefix (older connection forms) removed."""
    prefix = "extra__threekit__"
    plain = {k: v for k, v in extra.items() if not k.startswith(prefix)}
    for key, value in extra.items():
        if key.startswith(prefix) and value not in (None, ""):
            plain.setdefault(key[len(prefix) :], value)
    return plain


def client_options(extra: Mapping[str, Any]) -> dict[str, Any]:
    """``ThreekitClient`` keyword arguments taken from the connection extras (only those set)."""
    options: dict[str, Any] = {}
    timeout = extra.get("timeout")
    if timeout not in (None, ""):
        try:
            if isinstance(timeout, list | tuple):
                connect, read = (float(v) for v in timeout)
                options["timeout"] = (connect, read)
            else:
                # One number is the read timeout; connecting keeps the client's short default.
                options["timeout"] = (DEFAULT_CONNECT_TIMEOUT, float(timeout))
        except (TypeError, ValueError):
            raise ThreekitConnectionError(
                f"extra 'timeout' must be seconds or [connect, read] seconds, not {timeout!r}"
            ) from None
    for name, cast in (("max_retries", int), ("max_retry_time", float)):
        value = extra.get(name)
        if value in (None, ""):
            continue
        try:
            options[name] = cast(value)
        except (TypeError, ValueError):
            raise ThreekitConnectionError(f"extra {name!r} must be a number, not {value!r}") from None
    return options


# Extras the HttpHook applies to the session itself; every other extra is Threekit's and must
# not become a request header (HttpHook sends unknown extras as headers).
HTTP_SESSION_EXTRAS = frozenset(
    {"proxies", "proxy", "verify", "verify_ssl", "cert", "trust_env", "max_redirects", "stream"}
)


class ThreekitHook(HttpHook):
    """Builds authenticated :class:`ThreekitClient` objects from a ``threekit`` connection.

    Stateless: every :meth:`get_client` call reads the connection and returns a new client
    on a new session (:meth:`get_conn`, from ``HttpHook``), which the caller closes (the
    client is a context manager). The API token is registered with Airflow's secret masker
    before any session exists; it travels only as the ``Authorization: Bearer`` header set
    by the client (never as basic auth, never as a header taken from the extras).

    :param threekit_conn_id: id of a connection of type ``threekit``.
    :param client_kwargs: extra ``ThreekitClient`` keyword arguments (override the extras).
    """

    conn_name_attr = "threekit_conn_id"
    default_conn_name = "threekit_default"
    conn_type = "threekit"
    hook_name = "Threekit"

    def __init__(self, threekit_conn_id: str = default_conn_name, **client_kwargs: Any) -> None:
        super().__init__(method="GET", http_conn_id=threekit_conn_id)
        self.threekit_conn_id = threekit_conn_id
        self.client_kwargs = client_kwargs

    # -- HttpHook session building, narrowed to what a Threekit connection means ----------
    def _set_base_url(self, connection) -> None:
        self.base_url = threekit_base_url(connection.host, connection.port, plain_extras(connection.extra_dejson))
        self._base_url_initialized = True

    def _extract_auth(self, connection) -> Any | None:
        return None  # the token is a bearer token, set by the client

    def _configure_session_from_extra(self, session, connection, extra_options: dict[str, Any]):
        http_only = {k: v for k, v in plain_extras(connection.extra_dejson).items() if k in HTTP_SESSION_EXTRAS}
        self.merged_extra = {**http_only, **extra_options}
        session.proxies = self.merged_extra.get("proxies", self.merged_extra.get("proxy", {}))
        session.verify = self.merged_extra.get("verify", self.merged_extra.get("verify_ssl", True))
        session.cert = self.merged_extra.get("cert", None)
        session.trust_env = self.merged_extra.get("trust_env", True)
        if self.merged_extra.get("max_redirects") is not None:
            session.max_redirects = int(self.merged_extra["max_redirects"])
        return session

    def _settings(self) -> tuple[str, str, str | None, dict[str, Any]]:
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.threekit_conn_id)
        if conn.password:
            mask_secret(conn.password)
        extra = plain_extras(conn.extra_dejson)
        if not conn.password:
            raise ThreekitConnectionError(
                f"connection {self.threekit_conn_id!r} has no API token: put the private token in the password"
            )
        base_url = threekit_base_url(conn.host, conn.port, extra)
        org_id = str(extra.get("org_id") or "").strip() or None
        options = {**client_options(extra), **self.client_kwargs}
        return base_url, conn.password, org_id, options

    def api_base_url(self) -> str:
        """The connection's Threekit base URL (never contains the token).

        (``HttpHook`` keeps the same value in its ``base_url`` attribute once a session was built.)
        """
        conn = self.get_connection(self.threekit_conn_id)
        return threekit_base_url(conn.host, conn.port, plain_extras(conn.extra_dejson))

    def get_client(self) -> ThreekitClient:
        """A new client for the connection; close it (or use it in a ``with`` block)."""
        base_url, token, org_id, options = self._settings()
        if org_id is None:
            log.warning(
                "connection %r has no org_id extra; calls that need the organisation will fail",
                self.threekit_conn_id,
            )
        return ThreekitClient(base_url, token, org_id, session=self.get_conn(), close_session=True, **options)

    def test_connection(self) -> tuple[bool, str]:
        """Check the token against Threekit with one cheap call; the message never holds the token."""
        try:
            base_url, token, org_id, options = self._settings()
        except ThreekitConnectionError as exc:
            return False, str(exc)
        options = {**options, "max_retries": 0, "max_retry_time": 0.0}
        where = f"{base_url} (org {org_id})" if org_id else base_url
        try:
            session = self.get_conn()
            with ThreekitClient(base_url, token, org_id, session=session, close_session=True, **options) as client:
                accepted = client.healthcheck()
        except ThreekitError as exc:
            return False, _without(f"cannot reach Threekit at {where}: {exc}", token)
        except Exception as exc:  # noqa: BLE001 - any failure is reported in the UI, not raised
            return False, _without(f"cannot reach Threekit at {where}: {type(exc).__name__}: {exc}", token)
        if not accepted:
            return False, f"Threekit at {where} rejected the API token"
        return True, f"Connected to Threekit at {where}"


def _without(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text
