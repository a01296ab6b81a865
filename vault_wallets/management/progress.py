"""A small progress bar for the vault_* management commands (stderr; a line per update off a terminal)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int | None = None, stream=None, min_interval: float = 0.5):
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.min_interval = min_interval if self.tty else 5.0
        self.started = self.last = time.monotonic()
        self.shown = False

    def update(self, done: int, extra: str = "", *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.min_interval:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-6)
        if self.total:
            fraction = min(done / self.total, 1.0)
            bar = "#" * int(fraction * 30)
            text = f"{self.label} [{bar:<30}] {fraction:6.1%} {done}/{self.total}"
        else:
            text = f"{self.label} {done}"
        text += f"  {rate:,.0f}/s" + (f"  {extra}" if extra else "")
        self.stream.write(("\r" + text + "\x1b[K") if self.tty else text + "\n")
        self.stream.flush()
        self.shown = True

    def finish(self, done: int, extra: str = "") -> None:
        self.update(done, extra, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
