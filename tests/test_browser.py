"""The example shop in a real browser: log in → save 4242… → pay; then a NOC shows the new expiry.

Runs ``example_project`` exactly as ``make demo`` does (its own SQLite file, the sandbox
processor, eager Celery) on a free port, and drives headless Chromium with Playwright.
Skipped where Chromium or Playwright is missing (``.ci/run`` installs both).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "example_project"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium"),
    # The shop runs on its own SQLite file whatever the suite's database: once per CI run is enough.
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="runs in the SQLite pass"),
    pytest.mark.timeout(240),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Shop:
    """``example_project`` run as ``make demo`` runs it, on its own SQLite file and a free port."""

    def __init__(self, tmp: Path, **env: str):
        self.tmp = tmp
        self.env = {**os.environ, "SQLITE_PATH": str(tmp / "db.sqlite3"), "DJANGO_SETTINGS_MODULE": "shop.settings",
                    "PYTHONPATH": str(ROOT), **env}
        self.env.pop("DATABASE_URL", None)
        self.env.pop("CELERY_BROKER_URL", None)

    def manage(self, *args):
        return subprocess.run([sys.executable, "manage.py", *args], cwd=SHOP, env=self.env, check=True,
                              capture_output=True, text=True)

    def __enter__(self):
        self.manage("migrate", "--noinput")
        self.manage("create_demo_data")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = (self.tmp / "server.log").open("w")
        self.server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                                       cwd=SHOP, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        self.server.terminate()
        self.server.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    with Shop(tmp_path_factory.mktemp("shop")) as running_shop:
        yield running_shop


@pytest.fixture
def page(shop):
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        yield page
        browser.close()


def log_in_and_fill_the_cart(shop, page):
    page.goto(shop.url + "/accounts/login/")
    page.fill("#id_username", "shopper")
    page.fill("#id_password", "shopper-demo-pass")
    page.click("button[type=submit]")
    page.goto(shop.url + "/")
    page.locator("form[action='/cart/add/pour-over-kettle/'] button").click()
    page.wait_for_url("**/checkout/")
    assert "No saved cards yet" in page.content()


def save_card_and_pay(shop, page, number="4242 4242 4242 4242"):
    page.fill("#card-number", number)
    page.fill("#card-exp-month", "12")
    page.fill("#card-exp-year", "2034")
    page.fill("#card-cvc", "123")
    page.click("#save-card")
    page.wait_for_selector(".method-label:has-text('4242')")
    page.click("#pay-button")
    page.wait_for_url("**/orders/*/")
    assert page.inner_text("#order-status") == "paid"
    assert "$59.00" in page.content()


def test_log_in_save_a_card_pay_then_noc(shop, page):
    log_in_and_fill_the_cart(shop, page)

    # A bad card is refused with the tokenizer's message, nothing saved.
    page.fill("#card-number", "4242 4242 4242 4241")
    page.fill("#card-exp-month", "12")
    page.fill("#card-exp-year", "2034")
    page.fill("#card-cvc", "123")
    page.click("#save-card")
    page.wait_for_selector("#card-error:has-text('not valid')")

    page.fill("#card-number", "4242 4242 4242 4242")
    page.click("#save-card")
    page.wait_for_selector(".method-label:has-text('•••• 4242 (12/2034)')")
    page.screenshot(path=str(shop.tmp / "checkout.png"))

    page.click("#pay-button")
    page.wait_for_url("**/orders/*/")
    assert page.inner_text("#order-status") == "paid"
    assert "$59.00" in page.content()

    # A notification of change from the sandbox, through the real webhook endpoint.
    method_id = page.evaluate(
        "fetch('/wallet/api/payment-methods/').then(r => r.json()).then(d => d.results[0].id)")
    shop.manage("vault_sandbox", "noc", method_id, "--exp-month", "9", "--exp-year", "2031",
                "--url", f"{shop.url}/wallet/webhooks/default/")
    page.goto(shop.url + "/checkout/")
    page.wait_for_selector(".method-label:has-text('•••• 4242 (09/2031)')")
    page.screenshot(path=str(shop.tmp / "checkout-after-noc.png"))


@pytest.mark.parametrize("name", ["paysimple", "processout", "cybersource", "exact", "caselle"])
def test_the_shop_against_each_processor_fake(name, tmp_path, page):
    """VAULT_FAKE switches the example shop to a processor; the add-card → pay flow works with each."""
    import importlib

    from vault_wallets.testing.server import running

    fake_class = importlib.import_module(f"vault_wallets.testing.fakes.{name}").FAKE
    with running(fake_class) as fake, Shop(tmp_path, VAULT_FAKE=f"{name}@{fake.url}") as shop:
        log_in_and_fill_the_cart(shop, page)
        save_card_and_pay(shop, page)
        assert any(path.startswith("/_fake/tokens") for _, path, _ in fake.calls)
        assert len(fake.calls) > 3  # the shop's server talked to the processor's API
