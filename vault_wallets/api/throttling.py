"""Abuse limits on the endpoints a card tester would use (see "Throttles" in the security docs).

* Rate throttles per customer and per client IP on ``POST /customer-token/``,
  ``POST /api/payment-methods/`` and the sandbox tokenizer; rates come from
  ``VAULT_WALLETS["THROTTLE_RATES"]`` over ``conf.THROTTLE_RATES_DEFAULTS``, read per request.
* A cool-down: after ``VERIFICATION_FAILURE_LIMIT`` verification failures within
  ``VERIFICATION_FAILURE_WINDOW_SECONDS``, the customer cannot save a method for
  ``VERIFICATION_COOLDOWN_SECONDS``.

Both answer 429 with ``Retry-After`` and the usual ``{"error": {"code": "throttled", …}}``.
Counts live in the Django cache named by ``THROTTLE_CACHE``: a cache shared by every web
process (Redis, Memcached, the database cache) in production.  The client IP is
``REMOTE_ADDR`` unless ``THROTTLE_NUM_PROXIES`` says how many proxies append to
``X-Forwarded-For`` (a client can write that header itself; it is never trusted by default).
"""

from __future__ import annotations

import time
from functools import cached_property

from django.core.cache import caches
from rest_framework import exceptions
from rest_framework.throttling import SimpleRateThrottle

from .. import conf
from ..ids import keyed_hash
from .authentication import CustomerTokenAuth


def client_ip(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "") or ""
    proxies = int(conf.get_setting("THROTTLE_NUM_PROXIES") or 0)
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies <= 0 or not forwarded:
        return remote
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    return hops[-min(proxies, len(hops))] if hops else remote


def customer_ident(request) -> str | None:
    """The caller's customer (token) or user (session); None when anonymous."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, CustomerTokenAuth):
        return f"customer:{auth.customer.pk}"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return None


class VaultRateThrottle(SimpleRateThrottle):
    """A DRF rate throttle whose rate is read from ``vault_wallets`` settings on every request."""

    scope = ""
    #: Throttle only these methods (the views also answer GETs that need no limit).
    methods = frozenset({"POST"})

    def __init__(self):  # SimpleRateThrottle reads DRF's settings here; ours are read per request
        pass

    @cached_property
    def cache(self):
        # Once per throttle object, i.e. per request (DRF makes the throttles for each request),
        # not at each of the request's ``get`` and ``set``.
        return caches[conf.get_setting("THROTTLE_CACHE")]

    def get_rate(self):
        return conf.throttle_rate(self.scope)

    def ident(self, request) -> str | None:
        raise NotImplementedError

    def get_cache_key(self, request, view):
        ident = self.ident(request)
        if ident is None:
            return None
        return f"vault_wallets:throttle:{self.scope}:{keyed_hash('throttle', ident)[:32]}"

    def allow_request(self, request, view):
        if request.method not in self.methods:
            return True
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)


class CustomerRateThrottle(VaultRateThrottle):
    def ident(self, request):
        return customer_ident(request)


class IPRateThrottle(VaultRateThrottle):
    def ident(self, request):
        return client_ip(request) or None


def _scoped(base: type[VaultRateThrottle], scope: str) -> type[VaultRateThrottle]:
    return type(f"{base.__name__}_{scope}", (base,), {"scope": scope})


CUSTOMER_TOKEN_THROTTLES = [_scoped(CustomerRateThrottle, "customer_token_customer"),
                            _scoped(IPRateThrottle, "customer_token_ip")]
ADD_PAYMENT_METHOD_THROTTLES = [_scoped(CustomerRateThrottle, "add_payment_method_customer"),
                                _scoped(IPRateThrottle, "add_payment_method_ip")]
SANDBOX_TOKENIZE_THROTTLES = [_scoped(IPRateThrottle, "sandbox_tokenize_ip")]


# -- the cool-down after verification failures ------------------------------------------------


def _failures_key(customer) -> str:
    return f"vault_wallets:verification-failures:{keyed_hash('throttle', 'customer', str(customer.pk))[:32]}"


def _cooldown_key(customer) -> str:
    return f"vault_wallets:verification-cooldown:{keyed_hash('throttle', 'customer', str(customer.pk))[:32]}"


def check_verification_cooldown(customer) -> None:
    """Raise ``Throttled`` (429, ``Retry-After``) while the customer is cooling down."""
    until = caches[conf.get_setting("THROTTLE_CACHE")].get(_cooldown_key(customer))
    if until is not None and until > time.time():
        raise exceptions.Throttled(wait=max(1, int(until - time.time() + 0.999)),
                                   detail="Too many payment methods failed verification; try again later.")


def record_verification_failure(customer) -> None:
    """Count one failure; the ``VERIFICATION_FAILURE_LIMIT``-th within the window starts the cool-down."""
    limit = conf.get_setting("VERIFICATION_FAILURE_LIMIT")
    if not limit:
        return
    cache = caches[conf.get_setting("THROTTLE_CACHE")]
    window = conf.get_setting("VERIFICATION_FAILURE_WINDOW_SECONDS")
    now = time.time()
    recent = [t for t in cache.get(_failures_key(customer), []) if t > now - window] + [now]
    if len(recent) >= limit:
        cooldown = conf.get_setting("VERIFICATION_COOLDOWN_SECONDS")
        cache.set(_cooldown_key(customer), now + cooldown, cooldown)
        cache.delete(_failures_key(customer))
    else:
        cache.set(_failures_key(customer), recent, window)
