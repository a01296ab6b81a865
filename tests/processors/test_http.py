"""The shared HTTP client: error codes for transport failures, retry policy, log redaction.

Everything runs over real HTTP against a minimal ``FakeServer``.
"""

from __future__ import annotations

import logging
import socket
import time

import pytest

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
