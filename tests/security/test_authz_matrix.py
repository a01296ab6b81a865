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
from vault_wallets.models import Address, Charge, Customer, ErasureRequest, ImportJob, SavedPaymentMethod

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
    # Session-only checkout edges (no bearer token): "session-issue" acts for the logged-in
    # caller, "session-self" shows the caller's own wallet, "session-object" names A's method in
    # its form body (a no-JS form: an anonymous POST is sent to the login page).
    "checkout-session": "session-issue",
    "checkout-methods": "session-self",
    "checkout-manage": "session-object",
    # Staff-only JSON API (``is_staff``, as docs/import-export.md says).
    "staff-imports": "staff",
    "staff-import": "staff",
    # vault_wallets' own admin views (one mount: the admin site): staff with the model's permission only.
    "vault_wallets_customer_delete": "admin",
    "vault_wallets_savedpaymentmethod_delete": "admin",
    "vault_wallets_address_delete": "admin",
    "vault_wallets_charge_change": "admin",
    "vault_wallets_erasurerequest_change": "admin",
}

SESSION_RULES = {"session-issue", "session-self", "session-object"}


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
    mounts = {}
    for _route, name, namespace, _kwargs, _allowed in ROUTES:
        mounts.setdefault(name, set()).add(namespace)
    assert set(mounts) == set(RULES), "a rule for a route that no longer exists"
    for name, rule in RULES.items():
        expected = {"admin"} if rule == "admin" else {"vault_wallets", "vault_wallets_eu"}
        assert mounts[name] == expected, name


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
    admin_ids: dict
    job: str
    staff: object
    superuser: object


@pytest.fixture
def world(make_user, card_token):
    a_user, b_user = make_user("shopper_a"), make_user("shopper_b")
    a, b = services.get_or_create_customer(a_user), services.get_or_create_customer(b_user)
    method, _ = services.add_payment_method(a, card_token(), label="A-secret-label")
    services.add_payment_method(a, card_token("5555555555554444"))
    address = services.create_address(a, name="Alice Aardvark", line1="1 A-only Lane", city="Springfield",
                                      postal_code="12345", country="US", make_default=True)
    services.add_payment_method(b, card_token())
    charge = services.charge(a, 1234, "USD", method.uid, idempotency_key="authz-matrix", reference="A-order")
    c = services.get_or_create_customer(make_user("shopper_c"))
    erasure = services.erase_customer(c, reason="authz matrix")
    job = ImportJob.objects.create(account="default", format="csv", file_name="authz.csv")
    issued = tokens.issue(a)
    admin_ids = {"customer": a.pk, "savedpaymentmethod": method.pk, "address": address.pk, "charge": charge.pk,
                 "erasurerequest": erasure.pk}
    return World(a_user, b_user, a, b, method.uid, address.uid, issued.token,
                 (a.uid, method.uid, address.uid, "A-secret-label", "Alice Aardvark", "1 A-only Lane"),
                 admin_ids, job.uid, make_user("staff_no_perms", is_staff=True),
                 make_user("superuser", is_staff=True, is_superuser=True))


def snapshot(customer):
    customer.refresh_from_db()
    return (customer.token_version, customer.name, customer.email,
            sorted(SavedPaymentMethod.objects.filter(customer=customer).values_list(
                "uid", "label", "is_default", "status", "exp_month", "exp_year", "last4")),
            sorted(Address.objects.filter(customer=customer).values_list(
                "uid", "name", "line1", "city", "postal_code", "country", "is_default")),
            sorted(Charge.objects.filter(customer=customer).values_list(
                "uid", "amount", "amount_captured", "amount_refunded", "status", "reference")),
            sorted(ErasureRequest.objects.values_list("uid", "customer_uid", "status", "attempts", "reason")),
            sorted(ImportJob.objects.values_list("uid", "status", "file_name")))


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
        "staff without permissions": (lambda: make_api(world.staff), False, ""),
        "superuser": (lambda: make_api(world.superuser), False, ""),
    }


#: Callers that are nobody: on a shopper route they must get 401/403 (405 for a method it lacks).
NOBODY = {"anonymous", "expired token", "tampered token", "alg:none token", "wrong-key token",
          "other-account token", "revoked token", "token in query string"}


#: A method the view does not implement is tried by these callers only (it must be 401/403/405).
FEW = {"anonymous", "shopper B (session)", "A's token"}

#: Staff callers: on "staff" and "admin" routes they are the product (see the rules there).
STAFF = {"staff without permissions", "superuser"}


def _path(route, name, world, mount_account):
    uid = {"payment-method": world.spm, "address": world.adr, "staff-import": world.job}.get(name, "")
    path = "/" + route.replace("<str:uid>", uid).replace("<str:account>", mount_account)
    if "<path:object_id>" in path:
        model = name.removeprefix("vault_wallets_").rsplit("_", 1)[0]
        path = path.replace("<path:object_id>", str(world.admin_ids[model]))
    return path


def _bodies(rule, world):
    """(body, content type) pairs each caller sends with a method.  The no-JS manage form is
    tried three ways with A's method: remove (confirmed), remove (asks first), make default."""
    if rule == "session-object":
        from urllib.parse import urlencode

        return [(urlencode(form), "application/x-www-form-urlencoded") for form in (
            {"vault_remove": world.spm, "vault_confirm": "yes", "vault_next": "/"},
            {"vault_remove": world.spm},
            {"vault_make_default": world.spm})]
    return [(json.dumps({"label": "pwned", "name": "pwned", "saved_payment_method_id": world.spm, "token": "tok_x",
                         "customer": world.a.uid, "make_default": True}), "application/json")]


@pytest.mark.parametrize("route,name,namespace,kwargs,allowed", ROUTES, ids=[f"{r[2]}:{r[1]}" for r in ROUTES])
def test_matrix(world, make_api, route, name, namespace, kwargs, allowed):
    rule = RULES[name]
    mount_account = kwargs.get("vault_account", "default")
    path = _path(route, name, world, mount_account)
    table = callers(world, make_api)
    before = snapshot(world.a)
    for caller, (factory, acts_as_a, query) in table.items():
        if rule in SESSION_RULES:
            acts_as_a = caller == "shopper A (session)"  # session-only: a bearer token is nobody here
        # On the "eu" mount A's session is another account's customer: not the A who owns the data.
        acts_as_a = acts_as_a and mount_account == "default"
        privileged = caller in STAFF and rule in ("staff", "admin")
        # session-only: a bearer token without a session is nobody
        nobody = caller in NOBODY or (rule in SESSION_RULES and caller in ("A's token", "B's token"))
        for method in METHODS:
            if acts_as_a and method != "GET":
                continue  # A changing A's own wallet is the product, not an attack
            if caller == "superuser" and rule == "admin" and method != "GET":
                continue  # a superuser deleting A's card in the admin is the product too
            if (method not in allowed or rule == "public") and caller not in FEW:
                continue  # public routes hold nobody's data: a few callers show that
            for body, content_type in _bodies(rule, world):
                _attempt(world, factory, caller, method, path, query, body, content_type, rule, allowed,
                         acts_as_a, privileged, nobody, before)


def _attempt(world, factory, caller, method, path, query, body, content_type, rule, allowed, acts_as_a,
             privileged, nobody, before):
    response = factory().generic(method, path + query, body, content_type=content_type)
    text = response.content.decode("utf-8", "replace")
    leaked = (not acts_as_a and not privileged) and any(secret in text for secret in world.secrets_of_a)
    changed = snapshot(world.a) != before
    where = f"{caller} {method} {path[:60]} → {response.status_code}"
    if acts_as_a:
        record("authorization: A's own callers (control)", response.status_code, refused=False, leaked=changed)
    elif privileged:
        record("authorization: staff (control)", response.status_code, refused=False, leaked=changed)
    else:
        record("authorization: everyone but A", response.status_code,
               refused=not (leaked or changed), leaked=leaked or changed)
    assert response.status_code < 500, where
    assert not leaked, f"A's data leaked: {where}: {text[:200]}"
    assert not changed, f"A's data changed: {where}"
    if rule == "admin":
        if caller == "superuser":
            assert response.status_code == 200, where  # the control: the page works for staff
        elif caller == "staff without permissions":
            assert response.status_code == 403, where
        else:  # not staff: the admin's login page, whatever the method
            assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), where
        return
    if rule == "staff":
        if privileged and method == "GET":
            assert response.status_code == 200 and world.job in text, where
        elif privileged:
            assert 400 <= response.status_code < 500, where  # a JSON body is no upload
        else:
            assert response.status_code in (401, 403), where
        return
    if method not in allowed:
        assert response.status_code in (401, 403, 405), where
        return
    if rule in ("object", "session-object") and not acts_as_a:
        # "Not yours" must be indistinguishable from "does not exist".
        missing_spm, missing_adr = "spm_" + "M" * 24, "adr_" + "M" * 24
        missing = factory().generic(method, path.replace(world.spm, missing_spm).replace(world.adr, missing_adr)
                                    + query, body.replace(world.spm, missing_spm), content_type=content_type)
        assert (response.status_code, _code(response)) == (missing.status_code, _code(missing)), where
        if not (nobody and rule == "session-object"):
            assert response.status_code in (400, 401, 403, 404, 405), where
    if rule in ("self", "object", "issue") and nobody:
        assert response.status_code in (401, 403, 405), where
    if rule in SESSION_RULES and nobody:
        # a no-JS form sends the anonymous to the login page; the JSON/fragment edges answer 401/403
        to_login = response.status_code == 302 and "login" in response["Location"]
        assert response.status_code in (401, 403, 405) or (rule == "session-object" and to_login), where
    if acts_as_a and rule in ("object", "session-self"):
        assert response.status_code == 200 and (world.spm in text or world.adr in text), where
