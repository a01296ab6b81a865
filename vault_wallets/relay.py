"""Handing messages to the broker without ever blocking a web request on it.

The stored row (``WebhookEvent``, ``NocChunk``, an unsettled ``Charge``) is the message — a
transactional outbox: it is committed first, and whatever happens to the broker afterwards the
sweeper finds it in the database and publishes it again.  Publishing after commit is only the
fast path, and it runs here, on one background thread per process, fed by a bounded queue:

* the request thread only does ``queue.put_nowait`` — it never waits on the broker, whether
  the broker refuses connections or is frozen (a stalled Redis accepts TCP and never answers);
* when the broker is stalled the relay thread is stuck in one publish, the queue fills up to
  ``RELAY_QUEUE_SIZE`` and later hand-offs are dropped (logged): the rows wait for the sweeper;
* the relay publishes what has queued up since its last publish together: hand-offs that share a
  ``batch`` (a context-manager factory, e.g. "one broker producer and one Redis pipeline") are
  published inside one such context — under load one round trip and one client for many
  messages instead of one each.  A batch that fails is logged and left to the sweeper whole;
* with eager Celery (the demo, unit tests) the task runs inline, as before.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from . import conf

logger = logging.getLogger("vault_wallets.relay")

#: At most this many hand-offs are published in one batch.
BATCH_MAX = 200


class Relay:
    def __init__(self):
        self._lock = threading.Lock()
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._pid = None
        self.dropped = 0
        self.published = 0

    def _ensure(self) -> queue.Queue:
        with self._lock:
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                if self._pid != os.getpid():  # forked (gunicorn/celery prefork): a fresh queue
                    self._queue = queue.Queue(maxsize=conf.get_setting("RELAY_QUEUE_SIZE"))
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="vault-wallets-relay", daemon=True)
                self._thread.start()
            assert self._queue is not None  # created on the first call (self._pid starts as None)
            return self._queue

    def submit(self, publish: Callable[..., object], what: str = "",
               batch: Callable[[], AbstractContextManager[Any]] | None = None) -> bool:
        """Queue ``publish`` for the relay thread; False (and logged) when the queue is full.

        Without ``batch``, the relay calls ``publish()``.  With ``batch``, hand-offs waiting
        together whose ``batch`` compares equal are published as ``publish(value)`` inside one
        ``with batch() as value:``.
        """
        try:
            self._ensure().put_nowait((publish, what, batch))
            return True
        except queue.Full:
            self.dropped += 1
            logger.warning("relay queue full (broker stalled?): %s left to the sweeper", what)
            return False

    def _run(self) -> None:
        q = self._queue
        assert q is not None  # _ensure creates the queue before it starts this thread
        while True:
            items = [q.get()]
            while len(items) < BATCH_MAX:
                try:
                    items.append(q.get_nowait())
                except queue.Empty:
                    break
            try:
                self._publish(items)
            finally:
                for _ in items:
                    q.task_done()

    def _publish(self, items: list) -> None:
        groups: list[tuple[Any, list]] = []
        for publish, what, batch in items:
            if batch is not None and groups and groups[-1][0] == batch:
                groups[-1][1].append((publish, what))
            else:
                groups.append((batch, [(publish, what)]))
        for batch, group in groups:
            if batch is None:
                for publish, what in group:
                    self._publish_one(publish, what)
                continue
            done = 0
            try:
                with batch() as value:
                    for publish, what in group:
                        if self._publish_one(publish, what, value):
                            done += 1
            except Exception as exc:  # acquiring or flushing: none of the group is known to be sent
                logger.warning("could not publish %d message(s) (%s), e.g. %s; the sweeper will", len(group),
                               type(exc).__name__, group[0][1])
                continue
            self.published += done

    def _publish_one(self, publish: Callable[..., object], what: str, *value: Any) -> bool:
        try:
            publish(*value)
            if not value:
                self.published += 1
            return True
        except Exception as exc:  # the sweeper publishes it again from the database
            logger.warning("could not publish %s (%s); the sweeper will", what, type(exc).__name__)
            return False

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests: wait until the queue is drained."""
        import time

        q = self._queue
        deadline = time.monotonic() + timeout
        while q is not None and q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return q is None or not q.unfinished_tasks


relay = Relay()
