"""Processors: one module per processor, plain dataclasses across the boundary.

``get_processor(account)`` returns the configured processor instance for an account name;
see ``vault_wallets.processors.registry``.
"""

from .registry import get_processor, processor_for_customer

__all__ = ["get_processor", "processor_for_customer"]
