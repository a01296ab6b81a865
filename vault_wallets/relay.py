"""Handing messages to the broker without ever blocking a web request on it.

The stored row (``WebhookEvent``, ``NocChunk``, an unsettled ``Charge``) is the message — a
transactional outbox: it is committed first, and whatever happens to the broker afterwards the
sweeper finds it in the database and publishes it again.  Publishing after commit is only the
fast path, and it runs here, on one background thread per process, fed by a bounded queue:

* the request thread only does ``queue.put_nowait`` — it never waits on the broker, whether
  the broker refuses connections or is frozen (a stalled Redis accepts TCP and never answers);
* when the broker is stalled the relay thread is stuck in one publish, the queue fills up to
  ``RELAY_QUEUE_SIZE`` and later hand-offs are dropped (logged): the rows wait for the sweeper;
* hand-offs submitted with ``submit_batched`` (one event to process, say) are merged: the relay
  waits ``RELAY_BATCH_SECONDS`` after the first one and publishes all that share a publisher
  in one call (for events: one task message naming them all).  Under load that is one
  broker message per batch instead of one per event — the broker publish (Celery's message
  building, kombu, a Redis round trip) cost more web CPU than storing the event; when idle,
  an event is published that much later.  A batch that cannot be published is logged and
  left to the sweeper whole, as a single hand-off is;
* with eager Celery (the demo, unit tests) the task runs inline, as before.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from . import conf

logger = logging.getLogger("vault_wallets.relay")

#: At most this many hand-offs are taken from the queue at once (and merged into one batch).
BATCH_MAX = 100


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

    def submit(self, publish: Callable[[], object], what: str = "") -> bool:
        """Queue ``publish`` for the relay thread; False (and logged) when the queue is full."""
        return self._put((publish, None, what))

    def submit_batched(self, publish_many: Callable[[list], object], item: Any, what: str = "") -> bool:
        """Queue ``item`` for ``publish_many``: the relay calls ``publish_many([item, …])`` once for
        all the items waiting together whose ``publish_many`` compares equal."""
        return self._put((publish_many, (item,), what))

    def _put(self, entry: tuple) -> bool:
        try:
            self._ensure().put_nowait(entry)
            return True
        except queue.Full:
            self.dropped += 1
            logger.warning("relay queue full (broker stalled?): %s left to the sweeper", entry[2])
            return False

    def _run(self) -> None:
        q = self._queue
        assert q is not None  # _ensure creates the queue before it starts this thread
        while True:
            entries = [q.get()]
            if entries[0][1] is not None:  # a batchable hand-off: let others join it
                linger = conf.get_setting("RELAY_BATCH_SECONDS")
                if linger > 0:
                    time.sleep(linger)
            while len(entries) < BATCH_MAX:
                try:
                    entries.append(q.get_nowait())
                except queue.Empty:
                    break
            try:
                self._publish(entries)
            finally:
                for _ in entries:
                    q.task_done()

    def _publish(self, entries: list[tuple]) -> None:
        batches: dict[Any, tuple[list, list[str]]] = {}
        for publish, item, what in entries:
            if item is None:
                self._call(publish, (), what, 1)
            else:
                items, whats = batches.setdefault(publish, ([], []))
                items.extend(item)
                whats.append(what)
        for publish_many, (items, whats) in batches.items():
            what = whats[0] if len(whats) == 1 else f"{len(whats)} hand-offs ({whats[0]}, …)"
            self._call(publish_many, (items,), what, len(items))

    def _call(self, publish: Callable[..., object], args: tuple, what: str, count: int) -> None:
        try:
            publish(*args)
            self.published += count
        except Exception as exc:  # the sweeper publishes it again from the database
            logger.warning("could not publish %s (%s); the sweeper will", what, type(exc).__name__)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests: wait until the queue is drained."""
        import time

        q = self._queue
        deadline = time.monotonic() + timeout
        while q is not None and q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return q is None or not q.unfinished_tasks


relay = Relay()
