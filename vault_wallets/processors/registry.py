"""Build processor instances from settings, one per account, cached until settings change.

A processor is found by the dotted path in ``ACCOUNTS[name]["PROCESSOR"]``: adding one
needs no edit here.
"""

from __future__ import annotations

import threading

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from .. import conf
from .base import BaseProcessor

_cache: dict[str, BaseProcessor] = {}
_lock = threading.Lock()


def processor_class(account: str) -> type[BaseProcessor]:
    path = conf.account_config(account)["PROCESSOR"]
    klass = import_string(path)
    if not (isinstance(klass, type) and issubclass(klass, BaseProcessor)):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{path} is not a vault_wallets processor class")
    return klass


def get_processor(account: str | None = None) -> BaseProcessor:
    """The processor instance for ``account`` (the default account when None)."""
    account = account or conf.default_account()
    processor = _cache.get(account)
    if processor is None:
        with _lock:
            processor = _cache.get(account)
            if processor is None:
                options = conf.account_config(account).get("OPTIONS") or {}
                processor = processor_class(account)(account, options)
                _cache[account] = processor
    return processor


def processor_for_customer(customer) -> BaseProcessor:
    return get_processor(customer.account)


def clear_cache() -> None:
    with _lock:
        _cache.clear()


@receiver(setting_changed)
def _on_setting_changed(setting, **kwargs):
    if setting in (conf.SETTINGS_NAME, "SECRET_KEY"):
        clear_cache()
