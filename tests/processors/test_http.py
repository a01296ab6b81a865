"""The shared HTTP client: error codes for transport failures, retry policy, log redaction.

Everything runs over real HTTP against a minimal ``FakeServer``.
"""

from __future__ import annotations

import logging
import socket
import time

import pytest
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from vault_wallets.processors.base import ProcessorUnavailable
from vault_wallets.processors.http import (
    URLLIB3_LOGGERS,
    ProcessorHTTPClient,
    RedactPathsFilter,
    install_log_redaction,
    parse_timeout,
)
from vault_wallets.testing.server import FakeRequest, FakeResponse, FakeServer, fake_fixture, json_response, route

SECRET_ID = "cus_0123456789abcdef"


class ThingsFake(FakeServer):
    name = "things"
    title = "things API"

    def reset(self) -> None:
        super().reset()
        self.things: list[str] = []

    @route("GET", "/things/{thing_id}")
    def get_thing(self, request: FakeRequest, thing_id: str) -> FakeResponse:
        return json_response({"id": thing_id})

    @route("POST", "/things")
    def create_thing(self, request: FakeRequest) -> FakeResponse:
        self.things.append(request.json().get("name", ""))
        return json_response({"created": len(self.things)}, 201)


things_fake = fake_fixture(ThingsFake)


def client_for(url: str, **kwargs) -> ProcessorHTTPClient:
    options = {"timeout": (2.0, 0.3), "retries": 1, "backoff": 0.0, "idempotency_headers": ("Idempotency-Key",)}
    return ProcessorHTTPClient(processor="things", base_url=url, **{**options, **kwargs})


def statuses(fake: FakeServer, method: str, path: str) -> list[int]:
    return [status for m, p, status in fake.calls if (m, p) == (method, path)]


# -- transport failures --------------------------------------------------------------------


def test_a_read_timeout_retried_by_urllib3_is_a_timeout(things_fake):
    things_fake.faults.hang_next(1.0, count=2)  # the GET and its retry both outlast the 0.3 s read timeout
    with pytest.raises(ProcessorUnavailable) as info:
        client_for(things_fake.url).request("GET", "/things/{id}", path_params={"id": "1"})
    assert info.value.code == "timeout"


def test_a_read_timeout_without_retries_is_a_timeout(things_fake):
    things_fake.faults.hang_next(1.0)
    with pytest.raises(ProcessorUnavailable) as info:
        client_for(things_fake.url).request("POST", "/things", json={"name": "a"})  # no key: not retried
    assert info.value.code == "timeout"


def test_a_refused_connection_is_a_connection_error():
    with socket.socket() as sock:  # a loopback port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProcessorUnavailable) as info:
        client_for(f"http://127.0.0.1:{port}").request("GET", "/things/{id}", path_params={"id": "1"})
    assert info.value.code == "connection_error"
    assert str(port) in info.value.message  # names the host, nothing else


# -- retry policy --------------------------------------------------------------------------


def test_a_post_without_idempotency_key_is_not_retried(things_fake):
    things_fake.faults.fail_next(503)
    with pytest.raises(ProcessorUnavailable) as info:
        client_for(things_fake.url).request("POST", "/things", json={"name": "a"})
    assert info.value.http_status == 503
    assert statuses(things_fake, "POST", "/things") == [503]
    assert things_fake.things == []


def test_a_post_with_an_idempotency_key_is_retried(things_fake):
    things_fake.faults.fail_next(503)
    response = client_for(things_fake.url).request(
        "POST", "/things", json={"name": "a"}, headers={"Idempotency-Key": "k-1"}
    )
    assert response.status_code == 201
    assert statuses(things_fake, "POST", "/things") == [503, 201]
    assert things_fake.things == ["a"]


def test_a_get_is_retried(things_fake):
    things_fake.faults.fail_next(503)
    response = client_for(things_fake.url).request("GET", "/things/{id}", path_params={"id": "7"})
    assert response.json() == {"id": "7"}
    assert statuses(things_fake, "GET", "/things/7") == [503, 200]


# -- what goes on the wire -------------------------------------------------------------------


def _sent(client: ProcessorHTTPClient, monkeypatch, method: str, route: str, **kwargs) -> requests.PreparedRequest:
    """The request ``client`` hands to the transport (not sent: the adapter raises)."""
    captured = []

    def send(self, request, *args, **kw):
        captured.append(request)
        raise requests.ConnectionError("not sent")

    monkeypatch.setattr(HTTPAdapter, "send", send)
    with pytest.raises(ProcessorUnavailable):
        client.request(method, route, **kwargs)
    return captured[0]


def _as_requests_prepares(client: ProcessorHTTPClient, method: str, route: str, *, path_params=None, query=None,
                          json=None, data=None, headers=None, auth=None) -> requests.PreparedRequest:
    """What ``requests.PreparedRequest.prepare`` makes of the same request (the session's headers
    merged with the call's, the session's cookies)."""
    merged = CaseInsensitiveDict(client.session.headers)
    merged.update(headers or {})
    prepared = requests.PreparedRequest()
    prepared.prepare(method=method, url=client.url(route, path_params), headers=merged, data=data,
                     params=dict(query or {}), auth=auth, cookies=client.session.cookies, json=json)
    return prepared


def _wire(prepared: requests.PreparedRequest) -> tuple:
    return prepared.method, prepared.url, dict(prepared.headers), prepared.body


_BASES = ["http://127.0.0.1:8000", "https://API.Example.com/v1", "https://user:pa%20ss@host.example",
          "https://bücher.example/api", "http://host:80/base/", "https://host/v1/..", "https://host/a?x=1",
          "https://host/a#f", "https://host/a?", "https://host/a b", "HTTPS://Host.Example/A"]
_VALUES = ["cus_0123456789abcdef", "a.b~c-d_E", ".", "..", "a b", "é", "a/b", "%41", "", "x?y", "#", "~"]


@pytest.mark.parametrize("base", _BASES)
def test_every_request_is_prepared_as_requests_prepares_it(base, monkeypatch):
    """The client prepares a request without ``prepare_url`` where its path needs nothing done: the
    URL, headers and body sent are exactly requests' own, whatever the base URL and path values."""
    client = client_for(base)
    calls = [("GET", "/things/{id}", {"path_params": {"id": value}}) for value in _VALUES]
    calls += [("GET", "/{id}", {"path_params": {"id": "x"}}), ("GET", "//{id}", {"path_params": {"id": "x"}}),
              ("GET", "/things/{id}/", {"path_params": {"id": "x"}}), ("GET", "", {}), ("GET", "/", {}),
              ("DELETE", "/things/{id}", {"path_params": {"id": "x"}}),
              ("GET", "/things", {"query": {"top": 5, "filter": "name eq 'a b'"}}),
              ("POST", "/things", {"json": {"name": "a"}, "headers": {"Idempotency-Key": "k1"}}),
              ("PUT", "/things/{id}", {"path_params": {"id": "x"}, "data": {"a": "1"}}),
              ("GET", "/things/{id}", {"path_params": {"id": "x"}, "headers": {"Authorization": "Bearer t"}}),
              ("GET", "/things/{id}", {"path_params": {"id": "x"}, "auth": ("user", "secret")})]
    for method, template, kwargs in calls:
        assert _wire(_sent(client, monkeypatch, method, template, **kwargs)) == \
            _wire(_as_requests_prepares(client, method, template, **kwargs)), (method, template, kwargs)


def test_cookies_the_server_set_are_sent_back(monkeypatch):
    client = client_for("http://127.0.0.1:8000")
    client.session.cookies.set("session", "abc", domain="127.0.0.1", path="/")
    sent = _sent(client, monkeypatch, "GET", "/things/{id}", path_params={"id": "7"})
    assert sent.headers["Cookie"] == "session=abc"
    assert _wire(sent) == _wire(_as_requests_prepares(client, "GET", "/things/{id}", path_params={"id": "7"}))


def test_a_plain_path_skips_url_preparation(monkeypatch):
    """The point of the above: a fetch's path (unreserved characters) is not parsed and re-quoted
    per request — a fifth of the client's own CPU per call (docs/benchmarks.md)."""
    client = client_for("http://127.0.0.1:8000/v1")
    prepare_url = requests.PreparedRequest.prepare_url
    urls = []

    def counting(self, url, params):
        urls.append(url)
        return prepare_url(self, url, params)

    monkeypatch.setattr(requests.PreparedRequest, "prepare_url", counting)
    first = _sent(client, monkeypatch, "GET", "/things/{id}", path_params={"id": "cus_1"})
    second = _sent(client, monkeypatch, "GET", "/things/{id}", path_params={"id": "cus_2"})
    assert (first.url, second.url) == ("http://127.0.0.1:8000/v1/things/cus_1", "http://127.0.0.1:8000/v1/things/cus_2")
    assert urls == ["http://127.0.0.1:8000/v1/"]  # the base, once
    _sent(client, monkeypatch, "GET", "/things/{id}", path_params={"id": "a b"})
    assert urls[1:] == ["http://127.0.0.1:8000/v1/things/a%20b"]  # anything else: requests' own


# -- logs ------------------------------------------------------------------------------------


def test_urllib3_records_keep_the_host_but_not_the_path(things_fake, caplog):
    caplog.set_level(logging.DEBUG)
    things_fake.faults.hang_next(1.0, count=2)  # the retry makes urllib3 log a WARNING with the path
    client = client_for(things_fake.url)
    with pytest.raises(ProcessorUnavailable):
        client.request("GET", "/things/{id}", path_params={"id": SECRET_ID})
    client.request("GET", "/things/{id}", path_params={"id": SECRET_ID})
    urllib3_lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any(r.levelno == logging.WARNING for r in caplog.records if r.name.startswith("urllib3"))
    assert f'{things_fake.url} "GET /[path] HTTP/1.1" 200' in "\n".join(urllib3_lines)
    assert SECRET_ID not in caplog.text
    assert "things GET /things/{id} -> 200" in caplog.text  # our own line names the route template


def test_the_filter_is_installed_once_per_logger(things_fake):
    for _ in range(3):
        client_for(things_fake.url).session  # noqa: B018 - building the session installs the filter
        install_log_redaction()
    for name in URLLIB3_LOGGERS:
        filters = [f for f in logging.getLogger(name).filters if isinstance(f, RedactPathsFilter)]
        assert len(filters) == 1


@pytest.mark.parametrize(("msg", "args", "expected"), [
    ('%s://%s:%s "%s %s %s" %s %s', ("https", "api.example.com", 443, "GET", "/v4/customer/12?page=2",
                                     "HTTP/1.1", 200, 15),
     'https://api.example.com:443 "GET /[path] HTTP/1.1" 200 15'),
    ("Incremented Retry for (url='%s'): %r", ("/customers/cus_1/tokens/tok_2", "Retry(total=0)"),
     "Incremented Retry for (url='/[path]'): 'Retry(total=0)'"),
    ("Redirecting %s -> %s", ("https://a.example/x/1", "https://b.example/y/2"),
     "Redirecting https://a.example/[path] -> https://b.example/[path]"),
    ("Starting new HTTPS connection (%d): %s:%s", (1, "api.example.com", 443),
     "Starting new HTTPS connection (1): api.example.com:443"),
])
def test_redact_paths_filter(msg, args, expected):
    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1, msg, args, None)
    assert RedactPathsFilter().filter(record) is True
    assert record.getMessage() == expected


# -- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (None, (5.0, 30.0)), (10, (10.0, 10.0)), (2.5, (2.5, 2.5)), ((1, 4), (1.0, 4.0)), ([3, "6"], (3.0, 6.0)),
])
def test_parse_timeout(value, expected):
    assert parse_timeout(value) == expected


@pytest.mark.parametrize("value", [True, "10", "fast", (1, 2, 3), (1,), ("a", "b")])
def test_parse_timeout_refuses(value):
    with pytest.raises((TypeError, ValueError)):
        parse_timeout(value)


# -- the fake server: a request hung past its test's end is dropped ---------------------------------


def test_a_request_hung_past_a_reset_never_reaches_its_handler(things_fake):
    things_fake.faults.hang_next(0.6)
    with pytest.raises(ProcessorUnavailable):  # the client gives up after 0.3 s; the fake still sleeps
        client_for(things_fake.url).request("POST", "/things", json={"name": "late"})
    things_fake.reset()  # what the fixture does before the next test
    time.sleep(0.8)  # the hung request wakes up
    assert things_fake.things == [] and things_fake.calls == []


def test_a_request_hung_within_its_test_is_still_handled(things_fake):
    things_fake.faults.hang_next(0.6)
    with pytest.raises(ProcessorUnavailable):
        client_for(things_fake.url).request("POST", "/things", json={"name": "late"})
    time.sleep(0.8)
    assert things_fake.things == ["late"]  # a lost answer: the work was done
