"""Authorization matrix: every vault_wallets route × every HTTP method × every kind of caller.

The routes come from the URL resolver (both mounts in tests/urls.py), so a route added later is
attacked automatically — and this test fails until it is given a rule below.  After every
attempt shopper A's data is re-read and must be unchanged; no answer to anyone but A may contain
A's ids, labels or address.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from vault_wallets import services, tokens
from vault_wallets.models import Address, Customer, SavedPaymentMethod

from .conftest import record

pytestmark = pytest.mark.django_db

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

#: url name → what it is.  "object": A's object in the URL; "self": the caller's own wallet;
#: "issue": a session-only endpoint that acts for the caller; "public": no login at all.
RULES = {
    "customer-token": "issue",
    "me": "self",
    "payment-methods": "self",
    "payment-method": "object",
    "default-payment-method": "self",
    "addresses": "self",
    "address": "object",
    "schema": "public",
    "sandbox-tokens": "public",
    "webhook": "public",
}


def vault_routes():
    """``(route, name, namespace, default_kwargs, allowed_methods)`` for every vault_wallets URL
    pattern (a function view handles its own methods: all are tried)."""
    found = []

    def walk(patterns, prefix, namespace, kwargs):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route, pattern.namespace or namespace,
                     {**kwargs, **pattern.default_kwargs})
            elif isinstance(pattern, URLPattern):
                callback = pattern.callback
                module = getattr(getattr(callback, "cls", None), "__module__", None) or callback.__module__
                if module.startswith("vault_wallets."):
                    view = getattr(callback, "cls", None)
                    allowed = tuple(m for m in METHODS if view is None or hasattr(view, m.lower()))
                    found.append((route, pattern.name, namespace, {**kwargs, **pattern.default_args}, allowed))

    walk(get_resolver().url_patterns, "", None, {})
    return found


ROUTES = vault_routes()


def test_every_route_has_a_rule_and_both_mounts_are_covered():
    assert {route[1] for route in ROUTES} <= set(RULES), "a new route needs a rule in RULES"
    assert len(ROUTES) >= 2 * len(RULES)


@dataclass
class World:
    a_user: object
    b_user: object
    a: Customer
    b: Customer
    spm: str
    adr: str
    a_token: str
    secrets_of_a: tuple[str, ...]


@pytest.fixture
def world(make_user, card_token):
    a_user, b_user = make_user("shopper_a"), make_user("shopper_b")
    a, b = services.get_or_create_customer(a_user), services.get_or_create_customer(b_user)
    method, _ = services.add_payment_method(a, card_token(), label="A-secret-label")
    services.add_payment_method(a, card_token("5555555555554444"))
    address = services.create_address(a, name="Alice Aardvark", line1="1 A-only Lane", city="Springfield",
                                      postal_code="12345", country="US", make_default=True)
    services.add_payment_method(b, card_token())
    issued = tokens.issue(a)
    return World(a_user, b_user, a, b, method.uid, address.uid, issued.token,
                 (a.uid, method.uid, address.uid, "A-secret-label", "Alice Aardvark", "1 A-only Lane"))


def snapshot(customer):
    customer.refresh_from_db()
    return (customer.token_version, customer.name, customer.email,
            sorted(SavedPaymentMethod.objects.filter(customer=customer).values_list(
                "uid", "label", "is_default", "status", "exp_month", "exp_year", "last4")),
            sorted(Address.objects.filter(customer=customer).values_list(
                "uid", "name", "line1", "city", "postal_code", "country", "is_default")))


def _jwt(claims_override=None, key=None, algorithm="HS256", headers=None, world=None):
    now = datetime.now(timezone.utc)
    claims = {"iss": tokens.ISSUER, "aud": tokens.AUDIENCE, "sub": world.a.uid, "acct": world.a.account,
              "ver": world.a.token_version, "jti": f"j{time.monotonic_ns()}", "iat": now,
              "exp": now + timedelta(minutes=10), **(claims_override or {})}
    return jwt.encode(claims, key if key is not None else tokens._key(), algorithm=algorithm, headers=headers)


def _alg_none(world):
    import base64
    import json

    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": tokens.ISSUER, "aud": tokens.AUDIENCE, "sub": world.a.uid, "acct": world.a.account,
              "ver": world.a.token_version, "jti": "none", "iat": now, "exp": now + 600}
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def _code(response):
    try:
        return response.json().get("error", {}).get("code")
    except ValueError:
        return None


def _bearer_client(make_api, token, session_user=None):
    client = make_api(session_user)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    return client


def callers(world, make_api):
    """caller name → (client factory, acts as A?, query string).  Built after a revocation, so the
    "revoked token" is a real, once-valid token of A's that the version bump killed."""
    revoked = tokens.issue(world.a).token
    services.revoke_customer_tokens(world.a)
    world.a.refresh_from_db()
    live = tokens.issue(world.a).token
    now = datetime.now(timezone.utc)
    expired = _jwt({"exp": now - timedelta(seconds=5), "iat": now - timedelta(minutes=20)}, world=world)
    tampered = live[:-4] + ("AAAA" if not live.endswith("AAAA") else "BBBB")

    def bearer(token, user=None):
        return lambda: _bearer_client(make_api, token, user)

    return {
        "anonymous": (lambda: make_api(None), False, ""),
        "shopper A (session)": (lambda: make_api(world.a_user), True, ""),
        "shopper B (session)": (lambda: make_api(world.b_user), False, ""),
        "A's token": (bearer(live), True, ""),
        "A's token + B's session": (bearer(live, world.b_user), True, ""),
        "B's token": (bearer(tokens.issue(world.b).token), False, ""),
        "expired token": (bearer(expired), False, ""),
        "tampered token": (bearer(tampered), False, ""),
        "alg:none token": (bearer(_alg_none(world)), False, ""),
        "wrong-key token": (bearer(_jwt(key=b"not-the-server-key-" * 2, world=world)), False, ""),
        "other-account token": (bearer(_jwt({"acct": "eu"}, world=world)), False, ""),
        "revoked token": (bearer(revoked), False, ""),
        "token in query string": (lambda: make_api(None), False, f"?token={live}&access_token={live}&jwt={live}"),
    }


#: Callers that are nobody: on a shopper route they must get 401/403 (405 for a method it lacks).
NOBODY = {"anonymous", "expired token", "tampered token", "alg:none token", "wrong-key token",
          "other-account token", "revoked token", "token in query string"}


#: A method the view does not implement is tried by these callers only (it must be 401/403/405).
FEW = {"anonymous", "shopper B (session)", "A's token"}


@pytest.mark.parametrize("route,name,namespace,kwargs,allowed", ROUTES, ids=[f"{r[2]}:{r[1]}" for r in ROUTES])
def test_matrix(world, make_api, route, name, namespace, kwargs, allowed):
    rule = RULES[name]
    mount_account = kwargs.get("vault_account", "default")
    path = "/" + route.replace("<str:uid>", world.spm if name == "payment-method" else world.adr) \
        .replace("<str:account>", mount_account)
    table = callers(world, make_api)
    before = snapshot(world.a)
    body = json.dumps({"label": "pwned", "name": "pwned", "saved_payment_method_id": world.spm, "token": "tok_x",
                       "customer": world.a.uid, "make_default": True})
    for caller, (factory, acts_as_a, query) in table.items():
        # On the "eu" mount A's session is another account's customer: not the A who owns the data.
        acts_as_a = acts_as_a and mount_account == "default"
        for method in METHODS:
            if acts_as_a and method != "GET":
                continue  # A changing A's own wallet is the product, not an attack
            if (method not in allowed or rule == "public") and caller not in FEW:
                continue  # public routes hold nobody's data: a few callers show that
            response = factory().generic(method, path + query, body, content_type="application/json")
            text = response.content.decode("utf-8", "replace")
            leaked = (not acts_as_a) and any(secret in text for secret in world.secrets_of_a)
            changed = snapshot(world.a) != before
            where = f"{caller} {method} {path[:60]} → {response.status_code}"
            if acts_as_a:
                record("authorization: A's own callers (control)", response.status_code, refused=False,
                       leaked=changed)
            else:
                record("authorization: everyone but A", response.status_code,
                       refused=not (leaked or changed), leaked=leaked or changed)
            assert response.status_code < 500, where
            assert not leaked, f"A's data leaked: {where}: {text[:200]}"
            assert not changed, f"A's data changed: {where}"
            if method not in allowed:
                assert response.status_code in (401, 403, 405), where
                continue
            if rule == "object" and not acts_as_a:
                # "Not yours" must be indistinguishable from "does not exist".
                missing_path = path.replace(world.spm, "spm_" + "M" * 24).replace(world.adr, "adr_" + "M" * 24)
                missing = factory().generic(method, missing_path + query, body, content_type="application/json")
                assert (response.status_code, _code(response)) == (missing.status_code, _code(missing)), where
                assert response.status_code in (400, 401, 403, 404, 405), where
            if rule in ("self", "object", "issue") and caller in NOBODY:
                assert response.status_code in (401, 403, 405), where
            if acts_as_a and rule == "object":
                assert response.status_code == 200 and (world.spm in text or world.adr in text), where
