"""A small threaded HTTP server for playing a processor's API on loopback.

Each fake in ``vault_wallets.testing.fakes`` subclasses ``FakeServer``, declares its
routes with ``@route`` and keeps its state in memory.  Tests (ours and a shop's) talk to
it over real HTTP, so the processor module's real client code, auth signing, retries and
error mapping all run::

    with PaySimpleFake() as fake:
        settings.VAULT_WALLETS["ACCOUNTS"]["ps"]["OPTIONS"]["BASE_URL"] = fake.url
        ...

Fault switches, shared by every fake (``fake.faults``):

* ``latency`` — seconds added before every answer;
* ``fail_next(status=503, count=1)`` — the next ``count`` requests answer that status with
  the processor's own error shape;
* ``hang_next(seconds, count=1)`` — the next requests sleep ``seconds`` before answering
  (longer than the client's read timeout to simulate a timeout);
* ``decline_all`` — every payment is declined, whatever the card;
* ``drop_next(count=1, method="POST", path="")`` — "apply, then drop the answer": the next matching
  requests are handled (the payment is made) and the connection is closed without an answer;
* ``late_next(seconds, count=1, method="POST", path="")`` — "apply, then answer late": handled
  at once, answered after ``seconds`` (past the client's read timeout, it sees a timeout).

``path`` is a substring of the request path (e.g. ``"/payments"``); ``method`` "" matches any.

A request still hung when the next test's ``reset()`` runs is dropped unanswered: it never
reaches a handler, so it cannot change the new test's state.

Each fake's module runs it standalone (``python -m vault_wallets.testing.fakes.paysimple
--port 8101``) through ``serve``; pytest is needed only for ``fake_fixture``'s fixtures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


def route(method: str, pattern: str) -> Callable:
    """Declare a handler: ``@route("GET", "/v4/customer/{id}")``; params are passed as kwargs."""

    def decorate(func: Callable) -> Callable:
        func.__dict__.setdefault("_routes", []).append((method.upper(), pattern))
        return func

    return decorate


def _compile(pattern: str) -> re.Pattern:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.rstrip("/") or "/")
    return re.compile(f"^{regex}/?$")


@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]  # lower-cased names
    body: bytes
    target: str  # path with query string, as sent on the request line
    client: str = ""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The JSON body, or raise ``ValueError``; an empty body is ``{}``."""
        if not self.body:
            return {}
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode("utf-8"), keep_blank_values=True).items()}


@dataclass
class FakeResponse:
    status: int = 200
    body: Any = None  # dict/list → JSON; bytes/str → as is
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if self.body is None:
            return b"", headers
        if isinstance(self.body, bytes):
            return self.body, headers
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return self.body.encode("utf-8"), headers
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(self.body, default=str).encode("utf-8"), headers


_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
}


# The stand-ins of the processors' browser libraries run on the shop's page (another origin).
STANDIN_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Access-Control-Max-Age": "600",
}
STANDIN_DIR = Path(__file__).resolve().parent / "fakes" / "standins"


def standin_response(body: Any, status: int = 200) -> FakeResponse:
    """A JSON answer to a stand-in library's call from the shop's page (CORS allowed)."""
    return FakeResponse(status=status, body=body, headers=dict(STANDIN_CORS))


def json_response(body: Any, status: int = 200, **headers: str) -> FakeResponse:
    return FakeResponse(status=status, body=body, headers=dict(headers))


class Faults:
    """Switches a test flips to make the fake misbehave."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.latency = 0.0
            self.decline_all = False
            self._fail: list[int] = []
            self._hang: list[float] = []
            self._after: list[tuple[float | None, str, str]] = []

    def fail_next(self, status: int = 503, count: int = 1) -> None:
        with self._lock:
            self._fail.extend([status] * count)

    def hang_next(self, seconds: float = 5.0, count: int = 1) -> None:
        with self._lock:
            self._hang.extend([seconds] * count)

    def drop_next(self, count: int = 1, method: str = "POST", path: str = "") -> None:
        with self._lock:
            self._after.extend([(None, method.upper(), path)] * count)

    def late_next(self, seconds: float = 5.0, count: int = 1, method: str = "POST", path: str = "") -> None:
        with self._lock:
            self._after.extend([(seconds, method.upper(), path)] * count)

    def take_after(self, method: str, path: str) -> tuple[bool, float | None]:
        """``(matched, delay)`` for a request already handled: delay None drops the answer."""
        with self._lock:
            for i, (delay, want_method, want_path) in enumerate(self._after):
                if (not want_method or want_method == method) and want_path in path:
                    del self._after[i]
                    return True, delay
        return False, None

    def take(self) -> tuple[float, int | None]:
        with self._lock:
            hang = self._hang.pop(0) if self._hang else 0.0
            fail = self._fail.pop(0) if self._fail else None
            return self.latency + hang, fail


class FakeServer:
    """Base of the processor fakes.  Subclasses implement ``authenticate`` and ``error``."""

    #: Name used in logs and fixtures.
    name = "fake"
    #: What the fake plays, for the standalone server's banner ("PaySimple API v4").
    title = "processor API"
    #: Keep connections open between requests (HTTP/1.1 keep-alive), as processors' APIs do.  Off by
    #: default so every test request starts clean; the benchmarks turn it on.
    keep_alive = False

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.faults = Faults()
        self.lock = threading.RLock()
        self.generation = 0  # bumped by reset(): requests from before it are dropped
        self.calls: list[tuple[str, str, int]] = []  # (method, path, status) in order
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes: list[tuple[str, re.Pattern, Callable]] = []
        for klass in reversed(type(self).__mro__):
            for attr, value in vars(klass).items():
                for method, pattern in getattr(value, "_routes", ()):
                    self._routes.append((method, _compile(pattern), getattr(self, attr)))
        self.reset()

    # -- to override -------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all state (subclasses extend it and call super)."""
        with self.lock:
            self.generation += 1
        self.faults.reset()
        self.calls = []

    def describe(self) -> list[str]:
        """Lines ``serve`` prints under the URL: the credentials to configure, the test cards."""
        return []

    def authenticate(self, request: FakeRequest) -> FakeResponse | None:
        """Return an error response when the request's credentials are wrong, else None."""
        return None

    def error(self, status: int, message: str, code: str = "") -> FakeResponse:
        """The processor's own error shape."""
        return json_response({"error": code or "error", "message": message}, status)

    def tokenize_card(self, number: str, exp_month: int, exp_year: int, cvc: str = "",
                      holder_name: str = "") -> str:
        """Play the processor's browser library: turn card details into a temporary token.

        The fake keeps what the real processor would (brand, last4, expiry, a fingerprint),
        and decides from the test-card number how later operations behave.
        """
        raise NotImplementedError

    # The stand-in for the processor's browser tokenization, for pages under test (the
    # example shop's checkout).  Not part of any real API; no processor credentials.
    @route("POST", "/_fake/tokens")
    def _fake_tokens(self, request: FakeRequest) -> FakeResponse:
        data = request.json()
        missing = [k for k in ("number", "exp_month", "exp_year") if not data.get(k)]
        if missing:
            return json_response({"error": f"missing: {', '.join(missing)}"}, 400, **_CORS)
        try:
            token = self.tokenize_card(str(data["number"]).replace(" ", ""), int(data["exp_month"]),
                                       int(data["exp_year"]), str(data.get("cvc", "")),
                                       str(data.get("holder_name", "")))
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400, **_CORS)
        return json_response({"token": token}, 201, **_CORS)

    @route("OPTIONS", "/_fake/tokens")
    def _fake_tokens_preflight(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse(204, None, dict(_CORS))

    # -- the stand-in of the processor's browser library ------------------------------------
    #: The path the processor's real library is served at (the stand-in is served at the same
    #: path on the fake, e.g. ``/js/v1/exact.js``), and its file in ``fakes/standins/``.
    standin_path = ""
    standin_file = ""
    standin_dir = STANDIN_DIR  # a fake outside vault_wallets points this at its own folder

    def standin_url(self) -> str:
        return self.url + self.standin_path if self.standin_path else ""

    def _serve_standin(self, request: FakeRequest) -> FakeResponse | None:
        if request.path.startswith("/_fake/standin/") and request.method == "OPTIONS":
            return FakeResponse(204, None, dict(STANDIN_CORS))
        if self.standin_path and request.path == self.standin_path and request.method == "GET":
            script = (Path(self.standin_dir) / self.standin_file).read_text(encoding="utf-8")
            return FakeResponse(200, script.encode("utf-8"), {
                "Content-Type": "application/javascript; charset=utf-8", "Cache-Control": "no-cache",
                **STANDIN_CORS})
        return None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            if getattr(self, "_remote_url", ""):
                return self._remote_url
            raise RuntimeError(f"{self.name} fake is not running")
        return f"http://{self.host}:{self._server.server_address[1]}"

    @classmethod
    def at(cls, url: str) -> FakeServer:
        """A handle on a fake of this kind already running at ``url`` (another process): for its
        ``account_settings``, not for serving."""
        handle = cls()
        handle._remote_url = url.rstrip("/")
        return handle

    # -- pointing a vault_wallets account at the fake -----------------------------------------
    #: Dotted path of the processor class this fake plays.
    processor_path = ""

    def account_options(self, **extra: Any) -> dict[str, Any]:
        """The account ``OPTIONS`` that point the processor at this fake (its default credentials)."""
        raise NotImplementedError

    def account_settings(self, **extra: Any) -> dict[str, Any]:
        """An ``ACCOUNTS`` entry for this fake; ``JS_SDK_URL`` points the checkout at the fake's
        stand-in of the processor's browser library (same globals, methods, events, payloads)."""
        options = {**self.account_options(**extra), "FAKE_TOKENIZER": True}
        if self.standin_path:
            options["JS_SDK_URL"] = self.standin_url()
        return {"PROCESSOR": self.processor_path, "OPTIONS": options}

    def start(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY, as production web servers set it: the headers and the body go out in two
            # writes, and with Nagle's algorithm the body would wait for the client's delayed ACK
            # (~40 ms on Linux) on a kept-alive connection, adding that to every answer.
            disable_nagle_algorithm = True

            def log_message(self, *args):  # keep test output quiet
                pass

            def _serve(self):
                fake._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=f"{self.name}-fake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- dispatch ----------------------------------------------------------------------
    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        split = urlsplit(handler.path)
        request = FakeRequest(
            method=handler.command,
            path=split.path,
            query={k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()},
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            target=handler.path,
            client=handler.client_address[0],
        )
        generation = self.generation
        delay, forced_status = self.faults.take()
        if delay:
            time.sleep(delay)
        if generation != self.generation:  # hung past the end of its test: drop it unanswered
            handler.close_connection = True
            return
        if forced_status is not None:
            response = self.error(forced_status, f"simulated HTTP {forced_status}", "simulated_fault")
        else:
            response = self.handle(request)
        with self.lock:
            self.calls.append((request.method, request.path, response.status))
        matched, late = self.faults.take_after(request.method, request.path)
        if matched and late is None:  # applied; the answer is lost
            handler.close_connection = True
            return
        if matched:
            time.sleep(late)
        payload, headers = response.encode()
        try:
            handler.send_response(response.status)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(payload)))
            if not self.keep_alive:
                handler.send_header("Connection", "close")
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(payload)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a simulated timeout)
        handler.close_connection = not self.keep_alive

    def handle(self, request: FakeRequest) -> FakeResponse:
        standin = self._serve_standin(request)
        if standin is not None:
            return standin
        matched_path = False
        for method, regex, func in self._routes:
            match = regex.match(request.path)
            if not match:
                continue
            matched_path = True
            if method != request.method:
                continue
            if not request.path.startswith("/_fake/"):
                denied = self.authenticate(request)
                if denied is not None:
                    return denied
            try:
                with self.lock:
                    return func(request, **match.groupdict())
            except ValueError as exc:  # a malformed JSON body, or a handler's own validation
                return self.error(400, f"invalid request: {exc}", "invalid_request")
        if matched_path:
            return self.error(405, "method not allowed", "method_not_allowed")
        return self.error(404, "resource not found", "not_found")


@contextmanager
def running(fake_class: type[FakeServer], **kwargs: Any) -> Iterator[FakeServer]:
    """``with running(PaySimpleFake) as fake:`` — start a fake on a free loopback port."""
    fake = fake_class(**kwargs).start()
    try:
        yield fake
    finally:
        fake.stop()


def fake_fixture(fake_class: type[FakeServer], name: str | None = None):
    """Build a pytest fixture that yields a running ``fake_class``, reset for each test.

    The server starts on first use and runs for the rest of the session.  In a fake's
    module::  ``paysimple_fake = fake_fixture(PaySimpleFake)``; in a shop's conftest:
    ``from vault_wallets.testing.fakes.paysimple import paysimple_fake``.

    pytest is imported here, not at the top of this module; without it (a fake run
    standalone) the result is a function that says pytest is missing when called.
    """
    import atexit

    fixture_name = name or f"{fake_class.name}_fake"
    try:
        import pytest
    except ImportError:

        def _no_pytest(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError(f"{fixture_name} is a pytest fixture: install pytest to use it")

        _no_pytest.__name__ = fixture_name
        return _no_pytest

    holder: dict[str, Any] = {}

    @pytest.fixture(name=fixture_name)
    def _fixture():
        fake = holder.get("fake")
        # A forked child (mutation testing runs every mutant in one) inherits the fake but not the
        # thread serving it: the child starts its own.
        if fake is None or holder.get("pid") != os.getpid():
            fake = holder["fake"] = fake_class().start()
            holder["pid"] = os.getpid()
            atexit.register(fake.stop)
        fake.reset()
        yield fake
        fake.faults.reset()

    return _fixture


def serve(fake_class: type[FakeServer], argv: list[str] | None = None, *, default_port: int = 8101) -> None:
    """A fake's standalone ``main()``: parse ``--host``/``--port``, start the fake, print its URL
    and ``describe()`` lines, and serve until Ctrl-C."""
    parser = argparse.ArgumentParser(description=f"Run the fake {fake_class.title} on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args(argv)
    fake = fake_class(host=args.host, port=args.port).start()
    try:
        print(f"Fake {fake_class.title} at {fake.url}")
        for line in fake.describe():
            print(f"  {line}")
        print(f"  Example shop against it: VAULT_FAKE={fake.name}@{fake.url} make demo")
        print("Ctrl-C stops.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
