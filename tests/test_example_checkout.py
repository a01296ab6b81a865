"""The example shop's checkout on a double submit: five concurrent "Pay" clicks → one order, one charge.

Runs ``example_project`` as ``make demo`` does (its own SQLite file, the sandbox, threaded
runserver on a free port) and submits the same checkout form five times at once over HTTP.
"""

from __future__ import annotations

import json
import os
import re
import threading

import django
import pytest
import requests

from tests.test_browser import SHOP, Shop, template_db  # noqa: F401  (template_db: a fixture)

pytestmark = [
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="runs in a SQLite pass (CI: nox, 3.13 × 6.1)"),
    pytest.mark.skipif(django.VERSION < (5, 1), reason="the demo's SQLite waits for writers from Django 5.1"),
    pytest.mark.timeout(180),
]


def _csrf(session, url):
    session.get(url, timeout=10)
    return session.cookies["csrftoken"]


def _counts(shop):
    out = shop.manage("shell", "-c", (
        "import json; from store.models import Order; from vault_wallets.models import Charge; "
        "from vault_wallets.sandbox.models import SandboxCharge; "
        "print(json.dumps([Order.objects.count(), Charge.objects.count(), SandboxCharge.objects.count(), "
        "list(Order.objects.filter(charge__isnull=False).values_list('status', flat=True))]))")).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_five_concurrent_pay_clicks_make_one_order_and_one_charge(tmp_path, template_db):  # noqa: F811
    with Shop(tmp_path, template_db) as shop:
        s = requests.Session()
        token = _csrf(s, shop.url + "/accounts/login/")
        r = s.post(shop.url + "/accounts/login/", data={"username": "shopper", "password": "shopper-demo-pass",
                                                         "csrfmiddlewaretoken": token}, timeout=10)
        assert r.ok and "sessionid" in s.cookies
        s.post(shop.url + "/cart/add/pour-over-kettle/", data={"csrfmiddlewaretoken": s.cookies["csrftoken"]},
               timeout=10)
        card = s.post(shop.url + "/wallet/sandbox/tokens/", json={"number": "4242424242424242", "exp_month": 12,
                                                                 "exp_year": 2034, "cvc": "123"}, timeout=10).json()
        saved = s.post(shop.url + "/wallet/api/payment-methods/", json={"token": card["token"]},
                       headers={"X-CSRFToken": s.cookies["csrftoken"]}, timeout=10)
        assert saved.status_code == 201, saved.text
        page = s.get(shop.url + "/checkout/", timeout=10).text
        key = re.search(r'name="checkout_key" value="([^"]+)"', page).group(1)
        form = {"csrfmiddlewaretoken": s.cookies["csrftoken"], "checkout_key": key,
                "saved_payment_method": saved.json()["id"]}
        before = _counts(shop)  # the demo data has orders and charges of its own
        barrier, statuses = threading.Barrier(5), []

        def click():
            barrier.wait()
            statuses.append(s.post(shop.url + "/checkout/pay/", data=form, timeout=30).status_code)

        threads = [threading.Thread(target=click) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert statuses == [200] * 5, (tmp_path / "server.log").read_text()[-3000:]
        counts = _counts(shop)
        orders, local_charges, processor_charges, order_statuses = (
            counts[0] - before[0], counts[1] - before[1], counts[2] - before[2], counts[3])
        assert (orders, local_charges, processor_charges) == (1, 1, 1), counts
        assert order_statuses == ["paid"]


@pytest.mark.parametrize("fake, expected", [("", "db.sqlite3"),
                                            ("paysimple@http://127.0.0.1:9", "db-paysimple.sqlite3")])
def test_the_demo_keeps_a_database_per_processor_fake(fake, expected):
    """``make demo`` then ``VAULT_FAKE=… make demo`` (docs/quickstart.md): the sandbox's customer ids
    are unknown to the fake (a saved card then answered 404), so each fake gets its own file."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLITE_PATH", "VAULT_FAKE")}
    env.update(DJANGO_SETTINGS_MODULE="shop.settings", PYTHONPATH=str(SHOP.parent), VAULT_FAKE=fake)
    out = subprocess.run([sys.executable, "-c", "from django.conf import settings; "
                          "print(settings.DATABASES['default']['NAME'])"],
                         cwd=SHOP, env=env, check=True, capture_output=True, text=True).stdout
    assert out.strip() == str(SHOP / expected)
