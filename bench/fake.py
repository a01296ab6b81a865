"""The processor for the NOC scenario: the Caselle fake, seeded, answering after a delay.

    python bench/fake.py --latency 0.05 --methods 10000 --out seed.json

Seeds ``--methods`` customers with one saved card each (the account updater has changed every
card's expiry since the shop saved it), writes what the shop's database must hold to
``--out``, prints ``READY <url>`` and serves until terminated.  Every API call — token, list,
anything — waits ``--latency`` seconds before it is answered, concurrently.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import defaultdict
from http.server import ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vault_wallets.testing.fakes.caselle import CaselleFake  # noqa: E402


class IndexedCaselleFake(CaselleFake):
    """The fake with its wallets indexed by customer, so the fake's own lookups stay O(1) at 10,000
    customers (the stock fake scans every saved method, which would be the bottleneck here), and
    keeping connections alive between requests, as a processor's API does."""

    keep_alive = True

    def reset(self) -> None:
        super().reset()
        self.by_customer: dict[str, list[dict]] = defaultdict(list)

    def _methods_of(self, customer_uid: str) -> list[dict]:
        return list(self.by_customer.get(customer_uid, ()))

    def seed(self, count: int) -> list[dict]:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        rows = []
        for i in range(count):
            customer = {"uid": f"cus_{i:016x}", "reference_id": f"bench-{i}", "name": f"Shopper {i}",
                        "email": "", "created_at": now}
            self.customers[customer["uid"]] = customer
            token = f"pxy_{i:024x}"
            method = {"uid": f"spm_{i:016x}", "customer_uid": customer["uid"], "type": "credit",
                      "details": {"last4": "4242", "bin": "424242", "exp_month": 9, "exp_year": 2031,
                                  "card_brand": "VISA", "holder_name": ""},
                      "token": token, "behaviour": "ok", "status": "active", "is_default": True,
                      "created_at": now, "updated_at": now}
            self.saved_methods[method["uid"]] = method
            self.by_customer[customer["uid"]].append(method)
            rows.append({"customer": customer["uid"], "reference": customer["reference_id"],
                         "method": method["uid"], "token": token})
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--methods", type=int, default=10000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    ThreadingHTTPServer.request_queue_size = 256  # many concurrent connects; the default backlog is 5
    fake = IndexedCaselleFake()
    rows = fake.seed(args.methods)
    Path(args.out).write_text(json.dumps({"methods": rows}))
    fake.start()
    fake.faults.latency = args.latency
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"READY {fake.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
