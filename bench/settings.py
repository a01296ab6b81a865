"""Settings for ``make bench``: the example shop's settings plus the bench's own baselines.

The subject is the example project exactly as a shop would run it (gunicorn, PostgreSQL with
persistent connections, Redis and a real Celery worker).  The baselines — bare views doing the
least work that answers the same request — live in this package (``bench.views``), never in the
app, and so do the targets (``TARGETS``).
"""

import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT / "example_project") not in sys.path:
    sys.path.insert(0, str(_ROOT / "example_project"))

from shop.settings import *  # noqa: E402,F401,F403
from shop.settings import INSTALLED_APPS, VAULT_WALLETS  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
ROOT_URLCONF = "bench.urls"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
# The web process logs warnings only (an INFO line per request would be part of the measurement).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

# The key-rotation scenario encrypts under one key, then rotates to another.
if os.environ.get("BENCH_FERNET_KEYS"):
    FERNET_KEYS = os.environ["BENCH_FERNET_KEYS"].split(",")

# The NOC scenario's account: a Caselle fake (bench/fake.py) answering every call after a delay.
if os.environ.get("BENCH_FAKE_URL"):
    from vault_wallets.testing.fakes.caselle import CaselleFake

    VAULT_WALLETS = {**VAULT_WALLETS, "ACCOUNTS": {
        **VAULT_WALLETS["ACCOUNTS"],
        "noc": CaselleFake.at(os.environ["BENCH_FAKE_URL"]).account_settings(TIMEOUT=10),
    }}

# The load generator is one shopper asking for thousands of customer tokens a minute: the throttle
# (20/minute per customer) would answer 429. Keep the throttle's code on the path, with rates the
# load cannot reach, so the scenario measures the endpoint and its throttle check.  Per second, not
# per minute: a rate throttle keeps one timestamp per request within its window (at most the rate's
# count: 20 or 60 with the shipped rates), and the cache pickles that list on every request; a
# one-minute window at bench load held thousands of timestamps per key, ~2 ms of pickling per
# request that no shop's throttle ever does (docs/benchmarks.md, "Where the remaining time goes").
VAULT_WALLETS = {**VAULT_WALLETS, "THROTTLE_RATES": {
    "customer_token_customer": "1000000/second", "customer_token_ip": "1000000/second",
    "add_payment_method_customer": "1000000/second", "add_payment_method_ip": "1000000/second",
    "sandbox_tokenize_ip": "1000000/second"}}

# scenario → (kind, threshold): "ratio" = at least this fraction of the baseline's throughput;
# "rate" = at least this many per second; "seconds" = at most this long end to end.
TARGETS = {
    "GET payment-methods (5 methods)": {"ratio": 0.80},
    "GET payment-methods (50 methods)": {"ratio": 0.80},
    "POST customer-token": {"ratio": 0.85},
    "webhook ingest": {"ratio": 0.70, "rate": 1000},
    "NOC 10,000 methods, 50 ms per fetch": {"seconds": 20.0, "bound_factor": 1.5},
    "bulk import 100,000 rows": {"rate": 10000, "ratio": 1 / 1.5, "rss_factor": 1.2},
    "key rotation 100,000 rows": {"rate": 10000},
}
