"""Speed targets, as ratios against a bare Django view measured in the same run.

    make bench

Each scenario is timed over many requests through Django's test client (in-process, SQLite in
memory) and compared with the baseline view, which reads the session user and answers JSON.
Ratios, not seconds, so the targets hold on any machine.  Exit status 1 when a target is missed.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

setup_test_environment()
call_command("migrate", verbosity=0, run_syncdb=True)

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402

from vault_wallets import services, tokens  # noqa: E402
from vault_wallets.processors import get_processor  # noqa: E402

ROUNDS, PER_ROUND = 7, 60
# scenario → maximum ratio to the baseline
TARGETS = {
    "list 20 payment methods (session)": 6.0,
    "list 20 payment methods (customer token)": 6.0,
    "GET me/": 4.0,
    "receive a signed webhook (stored, not processed)": 3.0,
}


def timed(call) -> float:
    """Median seconds per call over ROUNDS rounds of PER_ROUND calls."""
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(PER_ROUND):
            call()
        samples.append((time.perf_counter() - start) / PER_ROUND)
    return statistics.median(samples)


def main() -> int:
    user = get_user_model().objects.create_user("bench", password="x")
    customer = services.get_or_create_customer(user)
    sandbox = get_processor("default")
    numbers = ["4242424242424242", "5555555555554444", "378282246310005", "6011111111111117"]
    from vault_wallets.models import SavedPaymentMethod

    for number in numbers:
        services.add_payment_method(customer, sandbox.tokenize_card(number, 12, 2034, "123"))
    template = SavedPaymentMethod.objects.filter(customer=customer).first()
    for i in range(16):  # the sandbox has four test cards; 16 more rows like them
        SavedPaymentMethod.objects.create(customer=customer, processor_token=f"sbxpm_bench{i}",
                                          processor_lookup=f"bench{i}", brand=template.brand, last4=template.last4,
                                          exp_month=1 + i % 12, exp_year=2030 + i)
    client = Client()
    client.force_login(user)
    bearer = Client(HTTP_AUTHORIZATION=f"Bearer {tokens.issue(customer).token}")
    counter = iter(range(10**9))

    def webhook():
        headers, body = sandbox.make_webhook("something.else", {}, event_id=f"evt_bench_{next(counter)}")
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "content-type"}
        from django.db import transaction

        # The processing task is enqueued on commit; keep it out of the measurement.
        with transaction.atomic():
            response = client.post("/wallet/webhooks/default/", body, content_type="application/json", **extra)
            transaction.set_rollback(True)
        assert response.status_code == 200, response.content

    scenarios = {
        "list 20 payment methods (session)": lambda: client.get("/wallet/api/payment-methods/"),
        "list 20 payment methods (customer token)": lambda: bearer.get("/wallet/api/payment-methods/"),
        "GET me/": lambda: client.get("/wallet/api/me/"),
        "receive a signed webhook (stored, not processed)": webhook,
    }
    assert len(client.get("/wallet/api/payment-methods/").json()["results"]) == 20
    baseline = timed(lambda: client.get("/baseline/"))
    print(f"{'scenario':52} {'ratio':>7} {'target':>7}")
    missed = 0
    for name, call in scenarios.items():
        ratio = timed(call) / baseline
        ok = ratio <= TARGETS[name]
        missed += not ok
        print(f"{name:52} {ratio:7.2f} {TARGETS[name]:7.1f}  {'ok' if ok else 'MISSED'}")
    print(f"(baseline: a bare session-reading JSON view, {baseline * 1e6:.0f} µs per request on this machine)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
