"""Webhooks through a real Celery worker process on a real Redis (PostgreSQL in CI).

The tests start their own ``redis-server`` on a free loopback port (so they can stop and restart
it) and a ``celery worker`` subprocess on the test database.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from vault_wallets import services
from vault_wallets.models import PaymentMethodChange, WebhookEvent
from vault_wallets.processors import get_processor
from vault_wallets.services import events

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (set DATABASE_URL)"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    pytest.mark.timeout(180),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class RedisServer:
    def __init__(self, tmp: Path):
        self.port = free_port()
        self.tmp = tmp
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._up, 10, what="redis-server")

    def _up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


class Worker:
    def __init__(self, broker: str, env: dict, log: Path):
        self.broker, self.env, self.log = broker, env, log
        self.process: subprocess.Popen | None = None

    def start(self):
        self.log.write_text("")
        handle = self.log.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "--pool=solo", "--loglevel=INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"test-{time.monotonic_ns()}@%h"],
            cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT)
        wait_for(lambda: "ready." in self.log.read_text() or self.process.poll() is not None, 60,
                 what="the celery worker")
        assert self.process.poll() is None, self.log.read_text()[-3000:]

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A private Redis for this module (tests stop and restart it on the same port)."""
    from tests.celery_app import app

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    saved = {k: app.conf[k] for k in ("broker_url", "task_always_eager")}
    app.conf.broker_url = server.url
    app.conf.task_always_eager = False
    _reset_producers(app)
    yield server
    server.stop()
    app.conf.update(saved)
    _reset_producers(app)


def _reset_producers(app):
    """Forget connections made for the previous broker (earlier tests may have built them)."""
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def celery_live(redis_server, tmp_path):
    """A worker subprocess on the test database, consuming from the private Redis."""
    if redis_server.process is None:
        redis_server.start()
    stall = tmp_path / "stall"
    env = {**os.environ, "CELERY_BROKER_URL": redis_server.url, "VAULT_CELERY_EAGER": "0",
           "VAULT_WORKER_DATABASE_NAME": connection.settings_dict["NAME"], "VAULT_TEST_STALL_FILE": str(stall),
           "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    worker = Worker(redis_server.url, env, tmp_path / "worker.log")
    worker.start()
    worker.stall_file = stall
    yield worker
    worker.stop()


def post(account: str, headers: dict, body: bytes):
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "content-type"}
    return APIClient().generic("POST", f"/wallet/webhooks/{account}/", body, content_type="application/json",
                               **extra)


def vaulted(user, account="default"):
    customer = services.get_or_create_customer(user, account)
    processor = get_processor(account)
    method, _ = services.add_payment_method(customer, processor.tokenize_card("4242424242424242", 12, 2034))
    return processor, method


def noc_delivery(processor, method, exp=(11, 2031)):
    method_id = method.processor_ref.method_id
    processor.network_update(method_id, exp_month=exp[0], exp_year=exp[1])
    return processor.make_webhook("provider.noc", {"payment_method_ids": [method_id]})


def processed(event_filter=None):
    def check():
        event = WebhookEvent.objects.filter(**(event_filter or {})).first()
        return event if event and event.status == WebhookEvent.PROCESSED else None

    return check


def test_webhook_worker_updates_the_card(celery_live, user):
    processor, method = vaulted(user)
    headers, body = noc_delivery(processor, method)
    response = post("default", headers, body)
    assert response.status_code == 200
    event = wait_for(processed(), 30, what="the worker to process the event")
    method.refresh_from_db()
    assert (method.exp_month, method.exp_year) == (11, 2031)
    assert event.attempts == 1 and PaymentMethodChange.objects.count() == 1


def test_worker_killed_mid_task_event_still_processed(celery_live, user):
    processor, method = vaulted(user, "stalling")
    headers, body = noc_delivery(processor, method, exp=(4, 2032))
    celery_live.stall_file.write_text("stall")
    assert post("stalling", headers, body).status_code == 200
    started = Path(str(celery_live.stall_file) + ".started")
    wait_for(started.exists, 30, what="the worker to start the task")
    celery_live.kill()
    celery_live.stall_file.unlink()
    # The killed worker's transaction was rolled back with its connection: nothing half-done.
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.RECEIVED
    method.refresh_from_db()
    assert method.exp_year == 2034
    celery_live.start()
    events.sweep(now=timezone.now() + timedelta(hours=1))
    event = wait_for(processed(), 60, what="the restarted worker to process the event")
    method.refresh_from_db()
    assert (method.exp_month, method.exp_year) == (4, 2032)
    assert PaymentMethodChange.objects.count() == 1


def test_redis_down_at_receipt_then_processed(celery_live, redis_server, user):
    processor, method = vaulted(user)
    headers, body = noc_delivery(processor, method, exp=(7, 2033))
    redis_server.stop()
    started = time.monotonic()
    response = post("default", headers, body)
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and elapsed < 10
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.RECEIVED  # stored, waiting
    redis_server.start()
    events.sweep(now=timezone.now() + timedelta(hours=1))
    wait_for(processed(), 60, what="processing after Redis came back")
    method.refresh_from_db()
    assert (method.exp_month, method.exp_year) == (7, 2033)


def test_twenty_concurrent_duplicates_processed_once(celery_live, user):
    processor, method = vaulted(user)
    headers, body = noc_delivery(processor, method, exp=(2, 2035))
    barrier = threading.Barrier(20)

    def deliver(_):
        try:
            barrier.wait()
            return post("default", headers, body).status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(deliver, range(20)))
    assert statuses == [200] * 20
    assert WebhookEvent.objects.count() == 1
    event = wait_for(processed(), 30, what="the worker to process the event")
    time.sleep(1)  # any stray second processing would have happened by now
    event.refresh_from_db()
    assert event.attempts == 1 and PaymentMethodChange.objects.count() == 1
