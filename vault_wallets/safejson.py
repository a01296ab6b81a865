"""Untrusted JSON, parsed safely: bounded nesting, no NUL bytes, no lone surrogates, no NaN.

Python's ``json`` accepts all of these: ``"\\u0000"`` and ``"\\ud800"`` decode to strings that
PostgreSQL (and UTF-8 encoders) refuse, and a deeply nested body raises ``RecursionError`` —
not a ``ValueError`` — from the decoder or from any recursive code that walks the result.
Every shopper-facing body (the DRF parser in ``api/parsers.py``) and every webhook delivery
(``webhooks.py``) goes through here, so hostile input is a clear 400, never a 500.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Deepest nesting accepted (objects and arrays).  Our API bodies are flat; processors' webhook
#: payloads nest a handful of levels (CyberSource's the deepest, ~6).
MAX_DEPTH = 32

_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


class UnsafeJSON(ValueError):
    """The document is not acceptable; ``reason`` is short and never quotes the input."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def _reject_constant(name: str):
    raise UnsafeJSON("NaN and Infinity are not JSON")


def bad_text(value: str) -> bool:
    """True if ``value`` holds a NUL byte or a lone (unpaired) surrogate."""
    return bool(_BAD_TEXT.search(value))


def check(value: Any, max_depth: int = MAX_DEPTH) -> Any:
    """Walk a parsed document (iteratively: no recursion to exhaust); return it if acceptable."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if bad_text(item):
                raise UnsafeJSON("a string holds a NUL byte or a lone surrogate")
        elif isinstance(item, dict):
            if depth >= max_depth:
                raise UnsafeJSON("the JSON is nested too deeply")
            for key, child in item.items():
                if bad_text(key):
                    raise UnsafeJSON("a key holds a NUL byte or a lone surrogate")
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth >= max_depth:
                raise UnsafeJSON("the JSON is nested too deeply")
            stack.extend((child, depth + 1) for child in item)
    return value


def loads(data: bytes | bytearray | str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` for untrusted input; raises ``UnsafeJSON`` (a ``ValueError``) on anything refused."""
    try:
        text = bytes(data).decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data
    except UnicodeDecodeError:
        raise UnsafeJSON("the body is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise UnsafeJSON("the JSON is nested too deeply") from None
    except UnsafeJSON:
        raise
    except ValueError:
        raise UnsafeJSON("the body is not valid JSON") from None
    return check(value, max_depth)
