"""Processors: one module per processor, plain dataclasses across the boundary.

``get_processor(account)`` returns the configured processor instance for an account name;
see ``vault_wallets.processors.registry``.

The registry needs Django (settings, signals); it is imported on first use of
``get_processor``/``processor_for_customer`` (PEP 562), so a processor module — and the
fakes in ``vault_wallets.testing`` that import one — can be imported without Django.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .registry import get_processor, processor_for_customer

__all__ = ["get_processor", "processor_for_customer"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import registry

        value = getattr(registry, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
