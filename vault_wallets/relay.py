"""Handing messages to the broker without ever blocking a web request on it.

The stored row (``WebhookEvent``, ``NocChunk``, an unsettled ``Charge``) is the message — a
transactional outbox: it is committed first, and whatever happens to the broker afterwards the
sweeper finds it in the database and publishes it again.  Publishing after commit is only the
fast path, and it runs here, on one background thread per process, fed by a bounded queue:

* the request thread only does ``queue.put_nowait`` — it never waits on the broker, whether
  the broker refuses connections or is frozen (a stalled Redis accepts TCP and never answers);
* when the broker is stalled the relay thread is stuck in one publish, the queue fills up to
  ``RELAY_QUEUE_SIZE`` and later hand-offs are dropped (logged): the rows wait for the sweeper;
* with eager Celery (the demo, unit tests) the task runs inline, as before.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

from . import conf

logger = logging.getLogger("vault_wallets.relay")


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
        try:
            self._ensure().put_nowait((publish, what))
            return True
        except queue.Full:
            self.dropped += 1
            logger.warning("relay queue full (broker stalled?): %s left to the sweeper", what)
            return False

    def _run(self) -> None:
        q = self._queue
        assert q is not None  # _ensure creates the queue before it starts this thread
        while True:
            publish, what = q.get()
            try:
                publish()
                self.published += 1
            except Exception as exc:  # the sweeper publishes it again from the database
                logger.warning("could not publish %s (%s); the sweeper will", what, type(exc).__name__)
            finally:
                q.task_done()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests: wait until the queue is drained."""
        import time

        q = self._queue
        deadline = time.monotonic() + timeout
        while q is not None and q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return q is None or not q.unfinished_tasks


relay = Relay()
