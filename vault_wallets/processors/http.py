"""The one HTTP client every network processor uses.

* One ``requests.Session`` per processor instance (so per configured account), built lazily.
* Connect and read timeouts on every request.
* Retries with urllib3's ``Retry``, only where they are safe: idempotent methods always;
  ``POST``/``PATCH`` only when the request carries one of the processor's idempotency
  headers (the adapter picks the policy per request).
* Transport failures and 5xx become ``ProcessorUnavailable``; 401/403
  ``AuthenticationError``; 404 ``NotFoundError``; other 4xx ``InvalidRequestError``, each
  with the processor's own message (extracted by the processor) after ``redact``.
* Timeouts (also a read timeout urllib3 gave up retrying) become ``ProcessorUnavailable``
  with ``code="timeout"``; other transport failures ``code="connection_error"``.
* Log lines name the method, the route *template* (``/customer/{id}/payment-method/{token}``,
  never the filled-in path), the status and the duration: no header, body, query or id.
  urllib3's own loggers print filled-in paths (DEBUG, and WARNING on retries); building a
  client's session installs ``RedactPathsFilter`` on them, which keeps only the host.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError
from urllib3.util.retry import Retry

from .base import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    ProcessorError,
    ProcessorUnavailable,
)

logger = logging.getLogger("vault_wallets.processors.http")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
KEYED_METHODS = SAFE_METHODS | {"POST", "PATCH"}
RETRY_STATUSES = (429, 502, 503, 504)
DEFAULT_TIMEOUT = (5.0, 30.0)

#: urllib3's loggers that print request paths (a logger's filters only see its own records).
URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.poolmanager")

_PAN_RE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
#: A path ``PreparedRequest.prepare_url`` leaves as it is: one or more ``/``-led segments of unreserved
#: characters (RFC 3986; no percent escape), none of them ``.`` or ``..`` (which it would resolve).
_PLAIN_PATH = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]*)+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove every known secret and anything shaped like a card number from ``text``."""
    if not text:
        return ""
    text = str(text)
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return _PAN_RE.sub("[redacted]", text)


def parse_timeout(value: Any, default: tuple[float, float] = DEFAULT_TIMEOUT) -> tuple[float, float]:
    """A ``TIMEOUT`` option: seconds for both, or a ``(connect, read)`` pair; None is ``default``.

    ``TypeError``/``ValueError`` for anything else (``check_options`` reports it).
    """
    if value is None:
        value = default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), float(value)
    if isinstance(value, (str, bytes)):  # "10" would unpack as ("1", "0")
        raise TypeError("TIMEOUT is seconds or a (connect, read) pair, not text")
    connect, read = value
    return float(connect), float(read)


class RedactPathsFilter(logging.Filter):
    """Replace request paths in urllib3's log records by ``/[path]``, keeping scheme and host.

    ``http://api:443 "GET /customer/123/payment-method/tok HTTP/1.1" 200 512`` becomes
    ``http://api:443 "GET /[path] HTTP/1.1" 200 512``: paths carry customer ids and payment
    tokens.  The record is formatted once here and its arguments dropped.
    """

    _ABSOLUTE = re.compile(r"(https?://[^/\s'\"]+)/[^\s'\"]*")
    _RELATIVE = re.compile(r"(?<=[\s'\"])/[^\s'\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's to report, not ours to raise
            return True
        record.msg = self._RELATIVE.sub("/[path]", self._ABSOLUTE.sub(r"\1/[path]", message))
        record.args = ()
        return True


_filter_lock = threading.Lock()
#: Keep-alive connections kept per host: enough for the concurrent fetches of a NOC chunk
#: (``NOC_FETCH_CONCURRENCY``) to reuse theirs instead of reconnecting.
POOL_MAXSIZE = 32


def install_log_redaction() -> None:
    """Add one ``RedactPathsFilter`` to each of urllib3's path-logging loggers (idempotent)."""
    with _filter_lock:
        for name in URLLIB3_LOGGERS:
            target = logging.getLogger(name)
            if not any(isinstance(f, RedactPathsFilter) for f in target.filters):
                target.addFilter(RedactPathsFilter())


def _is_timeout(exc: requests.RequestException) -> bool:
    """A timeout, also when urllib3's ``Retry`` gave up on it (``ConnectionError(MaxRetryError(reason=…))``).

    ``NewConnectionError`` (refused, unreachable) subclasses urllib3's ``ConnectTimeoutError``
    for historical reasons; like requests, it is not counted as a timeout.
    """
    if isinstance(exc, requests.Timeout):
        return True
    cause = exc.args[0] if exc.args else None
    reason = cause.reason if isinstance(cause, MaxRetryError) else None
    return isinstance(reason, Urllib3TimeoutError) and not isinstance(reason, NewConnectionError)


class _PerRequestRetryAdapter(HTTPAdapter):
    """An adapter whose retry policy depends on the request's idempotency header.

    ``HTTPAdapter.send`` reads ``self.max_retries`` once per request; a thread-local
    override lets one adapter (and one Session) serve both policies safely from threads.
    """

    def __init__(self, safe: Retry, keyed: Retry, idempotency_headers: Iterable[str], **kwargs):
        self._local = threading.local()
        self._safe = safe
        self._keyed = keyed
        self._idempotency_headers = tuple(h.lower() for h in idempotency_headers)
        super().__init__(max_retries=safe, **kwargs)

    @property
    def max_retries(self) -> Retry:
        return getattr(self._local, "retries", None) or self._safe

    @max_retries.setter
    def max_retries(self, value: Retry) -> None:
        self._safe = value

    def send(self, request, *args, **kwargs):
        keyed = any(request.headers.get(h) for h in self._idempotency_headers)
        self._local.retries = self._keyed if keyed else self._safe
        try:
            return super().send(request, *args, **kwargs)
        finally:
            self._local.retries = None


def build_retry(total: int, backoff: float, methods: frozenset[str]) -> Retry:
    return Retry(
        total=total,
        connect=total,
        read=total,
        status=total,
        other=0,
        allowed_methods=methods,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff,
        backoff_jitter=backoff / 2 if backoff else 0.0,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


class ProcessorHTTPClient:
    """JSON over HTTP for one processor account.

    ``error_message`` extracts ``(message, code)`` from an error response's parsed JSON
    (or ``None`` when it is not JSON); ``secrets`` returns the strings to redact (the
    account's credentials); ``prepare`` may add or sign headers on each request.
    """

    def __init__(
        self,
        *,
        processor: str,
        base_url: str,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = 2,
        backoff: float = 0.3,
        idempotency_headers: Iterable[str] = ("Idempotency-Key",),
        default_headers: Mapping[str, str] | None = None,
        error_message: Callable[[Any, requests.Response], tuple[str, str]] | None = None,
        secrets: Callable[[], Iterable[str]] = lambda: (),
        prepare: Callable[[requests.PreparedRequest], None] | None = None,
        auth: Any = None,
    ):
        self.processor = processor
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.idempotency_headers = tuple(idempotency_headers)
        self.default_headers = dict(default_headers or {})
        self._error_message = error_message
        self._secrets = secrets
        self._prepare = prepare
        self._auth = auth
        self._session: requests.Session | None = None
        self._session_lock = threading.Lock()

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            with self._session_lock:
                if self._session is None:
                    install_log_redaction()
                    session = requests.Session()
                    adapter = _PerRequestRetryAdapter(
                        safe=build_retry(self.retries, self.backoff, SAFE_METHODS),
                        keyed=build_retry(self.retries, self.backoff, KEYED_METHODS),
                        idempotency_headers=self.idempotency_headers,
                        pool_maxsize=POOL_MAXSIZE,
                    )
                    session.mount("http://", adapter)
                    session.mount("https://", adapter)
                    session.headers.update(self.default_headers)
                    session.trust_env = False  # no proxies or .netrc credentials from the environment
                    self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def path(self, route: str, params: Mapping[str, Any] | None = None) -> str:
        """``route`` with its ``{placeholders}`` filled from ``params``, each value URL-quoted."""
        return route.format(**{k: quote(str(v), safe="") for k, v in (params or {}).items()})

    def url(self, route: str, params: Mapping[str, Any] | None = None) -> str:
        return self.base_url + self.path(route, params)

    @cached_property
    def _prepared_prefix(self) -> str | None:
        """``base_url`` as ``PreparedRequest.prepare_url`` writes it, when a plain path appended to
        it comes out of ``prepare_url`` unchanged (an http(s) URL whose own path is plain, with no
        query or fragment); else None."""
        parts = urlsplit(self.base_url)
        if parts.scheme.lower() not in ("http", "https") or parts.query or parts.fragment or \
                "#" in self.base_url or "?" in self.base_url or not _PLAIN_PATH.fullmatch(parts.path or "/"):
            return None
        probe = requests.PreparedRequest()
        try:
            probe.prepare_url(self.base_url + "/", None)
        except requests.RequestException:  # raised again, as it is, by the request's own prepare_url
            return None
        url = probe.url or ""
        return url[:-1] if url.endswith("/") else None

    def request(
        self,
        method: str,
        route: str,
        *,
        path_params: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: Any = None,
        expect_json: bool = True,
        allow_statuses: Iterable[int] = (),
    ) -> requests.Response:
        """Send a request and return the response, or raise a ``ProcessorError``.

        ``route`` is a template filled from ``path_params`` (each value URL-quoted); only the
        template is ever logged.  Statuses in ``allow_statuses`` are returned, not raised.
        """
        method = method.upper()
        path = self.path(route, path_params)
        url = self.base_url + path
        session = self.session
        # What ``Session.prepare_request`` and ``Session.send`` do for this client, without their
        # per-request work for features it never uses (netrc and proxy look-ups are off, no hooks, no
        # redirects): that work cost about as much CPU as the HTTP exchange itself (docs/benchmarks.md).
        merged = CaseInsensitiveDict(session.headers)
        for key, value in (headers or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        prepared = requests.PreparedRequest()
        prefix = self._prepared_prefix
        if prefix is not None and not query and _PLAIN_PATH.fullmatch(path):
            # ``PreparedRequest.prepare`` step by step, with its URL step (parsing, IDNA, re-quoting:
            # about a twentieth of a fetch's CPU) done once per client — it leaves a plain path as it
            # is — and no cookie header worked out from an empty jar.
            prepared.prepare_method(method)
            prepared.url = prefix + path
            prepared.prepare_headers(merged)
            if len(session.cookies):
                prepared.prepare_cookies(session.cookies)
            else:
                prepared._cookies = session.cookies  # type: ignore[attr-defined]  # as prepare_cookies sets it
            prepared.prepare_body(data, None, json)
            prepared.prepare_auth(auth or self._auth, url)
            prepared.prepare_hooks(None)
        else:
            prepared.prepare(method=method, url=url, headers=merged, data=data, params=dict(query or {}),
                             auth=auth or self._auth, cookies=session.cookies, json=json)
        if self._prepare is not None:
            self._prepare(prepared)
        started = time.monotonic()
        try:
            response = session.get_adapter(url).send(prepared, stream=False, timeout=self.timeout,
                                                     verify=True if session.verify is None else session.verify,
                                                     cert=session.cert,
                                                     proxies=dict(session.proxies))
            if "set-cookie" in response.headers:  # kept for the session's next requests, as requests does
                extract_cookies_to_jar(session.cookies, prepared, response.raw)
            response.content  # noqa: B018 - read the body now, inside the error handling
        except requests.RequestException as exc:
            if _is_timeout(exc):
                self._log(method, route, "timeout", started)
                raise ProcessorUnavailable(
                    f"{self.processor} did not answer in time", code="timeout", processor=self.processor
                ) from None
            self._log(method, route, type(exc).__name__, started)
            raise ProcessorUnavailable(
                f"could not reach {self.processor} at {self.host}", code="connection_error",
                processor=self.processor,
            ) from None
        self._log(method, route, response.status_code, started)
        if response.status_code < 400 or response.status_code in allow_statuses:
            if expect_json and response.content:
                try:
                    response.json()
                except ValueError:
                    raise ProcessorUnavailable(
                        f"{self.processor} answered with a body that is not JSON",
                        code="bad_response", http_status=response.status_code, processor=self.processor,
                    ) from None
            return response
        raise self.error_for(response)

    def error_for(self, response: requests.Response) -> ProcessorError:
        try:
            body = response.json()
        except ValueError:
            body = None
        message, code = "", ""
        if self._error_message is not None:
            try:
                message, code = self._error_message(body, response)
            except Exception:  # an unexpected error shape must not hide the status
                message, code = "", ""
        message = redact(message or f"{self.processor} answered HTTP {response.status_code}", self._secrets())
        status = response.status_code
        kwargs: dict[str, Any] = {"code": code or None, "http_status": status, "processor": self.processor}
        if status >= 500:
            return ProcessorUnavailable(message, **kwargs)
        if status in (401, 403):
            return AuthenticationError(message, **kwargs)
        if status == 404:
            return NotFoundError(message, **kwargs)
        if status == 429:
            return ProcessorUnavailable(message, **kwargs)
        return InvalidRequestError(message, **kwargs)

    def _log(self, method: str, route: str, outcome: Any, started: float) -> None:
        logger.info(
            "%s %s %s -> %s (%.0f ms)", self.processor, method, route, outcome,
            (time.monotonic() - started) * 1000,
        )
