"""Recorded request/response pairs from the processors' own SDKs, OpenAPI files and docs.

The fakes in ``vault_wallets.testing.fakes`` are written by the same hands as the backends, so
a fake and a backend can agree on a mistake.  This harness does not use them: a loopback
``Responder`` is given, in order, the exchanges a processor's *official* material shows
(each ``Exchange`` names its source), checks every request the backend sends against the
recorded one, and answers with the recorded response.  The test then checks the dataclass the
backend built from that answer.

How a sent request is compared with the recorded one:

* method and path exactly; ``query`` entries, when given, exactly (others may be sent);
* ``headers``: each named header must be sent with that value (or match a ``Match``);
* ``json`` with ``mode="subset"`` (the default): every field the backend sends must appear
  in the recorded body with an equal value (or satisfy the ``Match`` put there), recursively;
  lists must have the same length.  So a backend may leave optional fields out but never
  invent a field or a value the official example does not have.  A field the backend sends
  legitimately although this one example lacks it is listed in ``allow_extra`` with the
  reason (and its source).  ``required`` paths must be sent.  ``mode="exact"`` requires
  equality.
* ``form`` (``application/x-www-form-urlencoded``) is compared exactly.

``Match`` stands where an official value cannot be reproduced by a faithful backend (a
generated reference, a zero-amount verification instead of the example's 102.21): it says
what the value must satisfy instead, and ``note`` why.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_MISSING = object()


@dataclass(frozen=True)
class Match:
    """A predicate standing for a recorded value: ``Match(r"^\\d+\\.\\d{2}$", note=...)`` (regex on a
    string), ``Match(items_in=[...])`` (a list whose items are all documented values),
    ``Match(max_len=20)`` (a string no longer than that), ``Match(check=callable)``."""

    regex: str | None = None
    items_in: tuple[Any, ...] | None = None
    max_len: int | None = None
    check: Callable[[Any], bool] | None = None
    note: str = ""

    def __call__(self, value: Any) -> bool:
        if self.regex is not None and not (isinstance(value, str) and re.search(self.regex, value)):
            return False
        if self.items_in is not None and not (
            isinstance(value, list) and value and all(item in self.items_in for item in value)
        ):
            return False
        if self.max_len is not None and not (isinstance(value, str) and 0 < len(value) <= self.max_len):
            return False
        return not (self.check is not None and not self.check(value))

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in (("regex", self.regex), ("items_in", self.items_in),
                                          ("max_len", self.max_len)) if v is not None]
        return f"Match({', '.join(parts)}{', check' if self.check else ''})"


@dataclass
class Exchange:
    """One recorded request and the answer the processor's material shows for it."""

    source: str
    method: str
    path: str
    response: Any = None
    status: int = 200
    query: Mapping[str, str] | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    json: Any = _MISSING
    form: Mapping[str, str] | None = None
    mode: str = "subset"
    required: tuple[str, ...] = ()
    allow_extra: Mapping[str, str] = field(default_factory=dict)
    response_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


def compare(sent: Any, recorded: Any, *, mode: str, allow_extra: Mapping[str, str] = (),
            path: str = "") -> list[str]:
    """Differences between a sent JSON value and the recorded one (empty: they agree)."""
    where = path or "<body>"
    if isinstance(recorded, Match):
        return [] if recorded(sent) else [f"{where}: {sent!r} does not satisfy {recorded!r} ({recorded.note})"]
    if isinstance(recorded, Mapping):
        if not isinstance(sent, Mapping):
            return [f"{where}: sent {type(sent).__name__}, recorded an object"]
        problems = []
        for key, value in sent.items():
            child = f"{path}.{key}" if path else str(key)
            if key not in recorded:
                if child not in allow_extra:
                    problems.append(f"{child}: sent {value!r}, which the recorded request does not have")
                continue
            problems += compare(value, recorded[key], mode=mode, allow_extra=allow_extra, path=child)
        if mode == "exact":
            problems += [f"{path + '.' if path else ''}{key}: recorded, not sent"
                         for key in recorded if key not in sent]
        return problems
    if isinstance(recorded, list):
        if not isinstance(sent, list) or len(sent) != len(recorded):
            return [f"{where}: sent {sent!r}, recorded {recorded!r}"]
        problems = []
        for index, (a, b) in enumerate(zip(sent, recorded)):
            problems += compare(a, b, mode=mode, allow_extra=allow_extra, path=f"{path}[{index}]")
        return problems
    if type(sent) is not type(recorded) or sent != recorded:
        return [f"{where}: sent {sent!r}, recorded {recorded!r}"]
    return []


def _has_path(value: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value or value[part] in (None, ""):
            return False
        value = value[part]
    return True


class Responder:
    """A loopback HTTP server that plays a list of recorded exchanges, in order."""

    def __init__(self, exchanges: list[Exchange]):
        self.exchanges = list(exchanges)
        self.sent: list[Sent] = []
        self.problems: list[str] = []
        self._lock = threading.Lock()
        responder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                responder._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Responder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, *exchanges: Exchange) -> None:
        with self._lock:
            self.exchanges.extend(exchanges)

    # -- serving -----------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        split = urlsplit(handler.path)
        sent = Sent(handler.command, split.path,
                    {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()},
                    {k.lower(): v for k, v in handler.headers.items()}, body)
        with self._lock:
            index = len(self.sent)
            self.sent.append(sent)
            expected = self.exchanges[index] if index < len(self.exchanges) else None
            if expected is None:
                self.problems.append(f"request {index + 1} ({sent.method} {sent.path}) was not recorded")
            else:
                self.problems += [f"request {index + 1} ({expected.source}): {p}"
                                  for p in self._check(sent, expected)]
        status, payload, headers = 599, b'{"error": "not recorded"}', {"Content-Type": "application/json"}
        if expected is not None:
            status = expected.status
            headers = dict(expected.response_headers)
            if isinstance(expected.response, (dict, list)):
                payload = json.dumps(expected.response).encode("utf-8")
                headers.setdefault("Content-Type", "application/json")
            elif isinstance(expected.response, str):
                payload = expected.response.encode("utf-8")
            else:
                payload = b""
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(payload)
        handler.close_connection = True

    @staticmethod
    def _check(sent: Sent, expected: Exchange) -> list[str]:
        problems = []
        if (sent.method, sent.path) != (expected.method, expected.path):
            return [f"sent {sent.method} {sent.path}, recorded {expected.method} {expected.path}"]
        for key, value in (expected.query or {}).items():
            if sent.query.get(key) != value:
                problems.append(f"query {key}: sent {sent.query.get(key)!r}, recorded {value!r}")
        for name, value in expected.headers.items():
            got = sent.headers.get(name.lower())
            ok = value(got) if isinstance(value, Match) else got == value
            if not ok:
                problems.append(f"header {name}: sent {got!r}, recorded {value!r}")
        if expected.form is not None:
            form = {k: v[-1] for k, v in parse_qs(sent.body.decode("utf-8"), keep_blank_values=True).items()}
            if form != dict(expected.form):
                problems.append(f"form: sent {form!r}, recorded {dict(expected.form)!r}")
        if expected.json is not _MISSING:
            try:
                body = json.loads(sent.body.decode("utf-8")) if sent.body else None
            except ValueError:
                return [*problems, f"body is not JSON: {sent.body[:200]!r}"]
            if expected.json is None:
                if body not in (None, {}):
                    problems.append(f"sent a body {body!r}, recorded none")
            else:
                problems += compare(body, expected.json, mode=expected.mode, allow_extra=expected.allow_extra)
                problems += [f"{p}: required, not sent" for p in expected.required if not _has_path(body, p)]
        return problems

    # -- after driving the backend -------------------------------------------------------
    def verify(self) -> None:
        """Fail with every difference, and if a recorded exchange was never requested."""
        problems = list(self.problems)
        if len(self.sent) < len(self.exchanges):
            missing = self.exchanges[len(self.sent):]
            problems += [f"recorded, never requested: {e.method} {e.path} ({e.source})" for e in missing]
        assert not problems, "the backend's requests differ from the recorded ones:\n  " + "\n  ".join(problems)

    def body(self, index: int) -> Any:
        return json.loads(self.sent[index].body.decode("utf-8"))
