"""The example shop in a real browser, through the three checkout tags only, for every processor.

Runs ``example_project`` as ``make demo`` does (its own SQLite file, eager Celery) on a free
port, with the sandbox or with ``VAULT_FAKE=<name>@<url>`` pointing the default account at a
processor fake; the fake also serves the stand-in of the processor's browser library
(``JS_SDK_URL``).  One headless Chromium (Debian's) is shared by all the tests; the database is
migrated once and copied per shop.  Screenshots go to ``artifacts/`` (kept by CI).
Skipped where Chromium or Playwright is missing (``.ci/run`` installs both).
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "example_project"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium"),
    # The shop runs on its own SQLite file whatever the suite's database: once per CI run is enough.
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="runs in a SQLite pass (CI: nox, 3.13 × 6.1)"),
    pytest.mark.timeout(120),
]

PROCESSORS = ["sandbox", "paysimple", "processout", "processout-verify", "cybersource", "exact", "caselle"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shop_env(tmp: Path, **env: str) -> dict[str, str]:
    merged = {**os.environ, "SQLITE_PATH": str(tmp / "db.sqlite3"), "DJANGO_SETTINGS_MODULE": "shop.settings",
              "PYTHONPATH": str(ROOT), **env}
    merged.pop("DATABASE_URL", None)
    merged.pop("CELERY_BROKER_URL", None)
    return merged


def manage(env, *args):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=SHOP, env=env, check=True,
                          capture_output=True, text=True)


class Shop:
    """``example_project`` on a copy of the migrated demo database, at http://localhost:<port>.

    ``localhost`` (not 127.0.0.1): CyberSource accepts plain http only for localhost origins.
    """

    def __init__(self, tmp: Path, template_db: Path, **env: str):
        self.tmp = tmp
        self.env = shop_env(tmp, **env)
        shutil.copyfile(template_db, tmp / "db.sqlite3")

    def manage(self, *args):
        return manage(self.env, *args)

    def __enter__(self):
        port = free_port()
        self.url = f"http://localhost:{port}"
        self.log = (self.tmp / "server.log").open("w")
        self.server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"],
            cwd=SHOP, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        return self

    def __exit__(self, *exc):
        self.server.terminate()
        self.server.wait(10)
        self.log.close()

    def server_log(self) -> str:
        return (self.tmp / "server.log").read_text()


@pytest.fixture(scope="module")
def template_db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("template-db")
    env = shop_env(tmp)
    manage(env, "migrate", "--noinput")
    manage(env, "create_demo_data")
    return tmp / "db.sqlite3"


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 900, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A script, frame or XHR the shop's Content-Security-Policy blocks is only a console message.
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.js_errors = errors
    yield page
    context.close()


def shop_for(name: str, tmp: Path, template_db: Path, stack: ExitStack):
    if name == "sandbox":
        return None, stack.enter_context(Shop(tmp, template_db))
    from vault_wallets.testing.server import running

    module, _, variant = name.partition("-")
    fake_class = importlib.import_module(f"vault_wallets.testing.fakes.{module}").FAKE
    fake = stack.enter_context(running(fake_class))
    # processout-verify: VERIFY_TOKENS, i.e. makeCardToken on a pending customer token per card
    options = '{"VERIFY_TOKENS": true}' if variant == "verify" else "{}"
    return fake, stack.enter_context(Shop(tmp, template_db, VAULT_FAKE=f"{module}@{fake.url}",
                                          VAULT_FAKE_OPTIONS=options))


def log_in(shop, page, username="shopper", password="shopper-demo-pass"):
    page.goto(shop.url + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/checkout/")


def fill_the_cart(shop, page):
    page.goto(shop.url + "/")
    page.locator("form[action='/cart/add/pour-over-kettle/'] button").click()
    page.wait_for_url("**/checkout/")


def fill_card(page, number: str, month: str = "12", year: str = "2034", cvc: str = "123"):
    """Type a card into whatever the processor's library drew (stand-ins mark their inputs with
    ``data-standin``; the tag's own inputs carry ``data-vault-input``)."""
    form = page.locator("[data-vault-add-card]")
    expect(form.locator("[data-vault-save]")).to_be_enabled()
    values = {
        "number": number, "exp_month": month, "exp_year": year, "expiry": f"{month}/{year[2:]}", "cvc": cvc,
        "postal_code": "30301", "holder_name": "Pat Shopper",
    }
    for attribute in ("data-vault-input", "data-standin"):
        for name, value in values.items():
            field = form.locator(f"[{attribute}='{name}']")
            if field.count():
                field.fill(value)


def save_card(page, number: str, *, make_default: bool = False, nickname: str = ""):
    fill_card(page, number)
    form = page.locator("[data-vault-add-card]")
    if nickname:
        form.get_by_label("Nickname (optional)").fill(nickname)
    if make_default:
        form.get_by_label("Make this my default payment method").check()
    form.get_by_role("button", name="Save card").click()


def method_row(page, name: str):
    return page.locator("[data-vault-saved-methods] [data-vault-method]", has_text=name)


def run_checkout(shop, page, name: str):
    log_in(shop, page)
    fill_the_cart(shop, page)
    expect(page.locator("[data-vault-saved-methods]")).to_contain_text("No saved payment methods yet")

    # A mistyped number is refused by the processor's library, readably, and nothing is saved.
    save_card(page, "4242 4242 4242 4241")
    expect(page.locator("[data-vault-error]")).to_have_text(re.compile(r"(not valid|invalid)", re.IGNORECASE))
    expect(page.locator("[data-vault-saved-methods]")).to_contain_text("No saved payment methods yet")

    # The first card becomes the default and is pre-selected.
    save_card(page, "4242 4242 4242 4242")
    visa = method_row(page, "Visa ending 4242")
    expect(visa).to_contain_text("Default")
    expect(visa.get_by_role("radio")).to_be_checked()
    expect(page.locator("[data-vault-status]")).to_contain_text("Visa ending 4242 was saved as your default.")

    # A second card, saved as the new default.
    save_card(page, "5555 5555 5555 4444", make_default=True, nickname="Work")
    mastercard = method_row(page, "Mastercard ending 4444")
    expect(mastercard).to_contain_text("Default")
    expect(mastercard).to_contain_text("(Work)")
    expect(method_row(page, "Visa ending 4242")).not_to_contain_text("Default")

    if name == "sandbox":  # the processor-independent UI paths, once
        # Make the Visa the default again with its own button, then back to the Mastercard.
        page.get_by_role("button", name="Make Visa ending 4242 the default").click()
        expect(method_row(page, "Visa ending 4242")).to_contain_text("Default")
        page.get_by_role("button", name="Make Mastercard ending 4444 the default").click()
        expect(method_row(page, "Mastercard ending 4444")).to_contain_text("Default")
        expect(method_row(page, "Mastercard ending 4444").get_by_role("radio")).to_be_checked()

    # Remove the Visa: a confirmation first; "Keep it" keeps it, "Remove" removes it.
    page.get_by_role("button", name="Remove Visa ending 4242").click()
    dialog = page.get_by_role("dialog", name="Remove Visa ending 4242?")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Keep it")).to_be_focused()  # the safe choice has the focus
    if name == "sandbox":
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "checkout-confirm-removal.png"))
        dialog.get_by_role("button", name="Keep it").click()
        expect(method_row(page, "Visa ending 4242")).to_have_count(1)
        page.get_by_role("button", name="Remove Visa ending 4242").click()
    page.get_by_role("dialog", name="Remove Visa ending 4242?").get_by_role("button", name="Remove").click()
    expect(method_row(page, "Visa ending 4242")).to_have_count(0)
    expect(page.locator("[data-vault-status]")).to_contain_text("Visa ending 4242 was removed.")
    expect(method_row(page, "Mastercard ending 4444").get_by_role("radio")).to_be_checked()

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"checkout-{name}.png"), full_page=True)

    page.click("#pay-button")
    page.wait_for_url("**/orders/*/")
    assert page.inner_text("#order-status") == "paid"
    assert "$59.00" in page.content()
    assert re.search(r"Mastercard •••• 4444", page.inner_text("#order-payment-method"))
    page.screenshot(path=str(ARTIFACTS / f"order-{name}.png"), full_page=True)

    # Another shopper sees none of it, and cannot act on the first shopper's method.
    first_method = page.evaluate(
        "fetch('/wallet/api/payment-methods/').then(r => r.json()).then(d => d.results[0].id)")
    page.context.clear_cookies()
    log_in(shop, page, "shopper2", "shopper2-demo-pass")
    expect(page.locator("[data-vault-saved-methods]")).to_contain_text("No saved payment methods yet")
    assert "4444" not in page.inner_text("main")
    status = page.evaluate("""id => fetch('/wallet/api/payment-methods/' + id + '/', {method: 'DELETE',
        headers: {'X-CSRFToken': document.cookie.match(/csrftoken=([^;]+)/)[1]}}).then(r => r.status)""",
                           first_method)
    assert status == 404
    assert page.js_errors == []


@pytest.mark.parametrize("name", PROCESSORS)
def test_checkout_tags_with_each_processor(name, tmp_path, template_db, page):
    """log in → add 4242 (default) → add a second card as default → switch defaults → remove one
    (confirmed) → pay → the order names the card; a second shopper sees none of it."""
    with ExitStack() as stack:
        fake, shop = shop_for(name, tmp_path, template_db, stack)
        try:
            run_checkout(shop, page, name)
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"failed-{name}.png"), full_page=True)
            print(shop.server_log()[-4000:])
            raise
        if fake is not None:
            paths = [path for _, path, _ in fake.calls]
            assert any(path.startswith("/_fake/standin/") for path in paths), paths  # the browser used the stand-in
            assert not any(path.startswith("/_fake/tokens") for path in paths)  # not the old test-only tokenizer
            if name == "processout-verify":
                assert sum(path.endswith("/tokens") and method == "POST" for method, path, _ in fake.calls) >= 2
                assert any(path.startswith("/_fake/standin/processout/customers/") for path in paths)


def test_saved_methods_work_without_javascript(tmp_path, template_db, browser):
    """Listing, choosing, making default and removing (with a confirmation page) without JavaScript;
    then a sandbox notification of change (the real webhook endpoint) shows the new expiry."""
    with Shop(tmp_path, template_db) as shop:
        context = browser.new_context(java_script_enabled=False)
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            log_in(shop, page)
            # Two saved cards, through the sandbox tokenizer and the API (no JavaScript on the page).
            csrf = next(c["value"] for c in context.cookies() if c["name"] == "csrftoken")
            for number in ("4242424242424242", "5555555555554444"):
                card = {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}
                token = page.request.post(shop.url + "/wallet/sandbox/tokens/", data=card).json()["token"]
                saved = page.request.post(shop.url + "/wallet/api/payment-methods/", data={"token": token},
                                          headers={"X-CSRFToken": csrf, "Referer": shop.url + "/checkout/"})
                assert saved.status == 201, saved.text()
            fill_the_cart(shop, page)
            visa = method_row(page, "Visa ending 4242")
            expect(visa.get_by_role("radio")).to_be_checked()
            # Playwright's text engine skips <noscript>: find the note by its class.
            expect(page.locator("[data-vault-add-card] noscript .vault-error")).to_be_visible()
            expect(page.get_by_label("Card number")).to_be_hidden()
            page.get_by_role("button", name="Make Mastercard ending 4444 the default").click()
            page.wait_for_url("**/checkout/")
            expect(method_row(page, "Mastercard ending 4444")).to_contain_text("Default")
            expect(method_row(page, "Mastercard ending 4444").get_by_role("radio")).to_be_checked()
            page.get_by_role("button", name="Remove Visa ending 4242").click()
            expect(page.get_by_role("heading", name="Remove Visa ending 4242?")).to_be_visible()
            page.get_by_role("link", name="Keep it").click()
            expect(method_row(page, "Visa ending 4242")).to_have_count(1)
            page.get_by_role("button", name="Remove Visa ending 4242").click()
            page.get_by_role("button", name="Remove Visa ending 4242").click()  # the confirmation page's button
            page.wait_for_url("**/checkout/")
            expect(method_row(page, "Visa ending 4242")).to_have_count(0)
            # A notification of change from the sandbox, through the real webhook endpoint, shows up.
            remaining = page.request.get(shop.url + "/wallet/api/payment-methods/").json()["results"][0]["id"]
            shop.manage("vault_sandbox", "noc", remaining, "--exp-month", "9", "--exp-year", "2031",
                        "--url", f"{shop.url}/wallet/webhooks/default/")
            page.goto(shop.url + "/checkout/")
            expect(method_row(page, "Mastercard ending 4444")).to_contain_text("Expires 09/2031")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "checkout-no-javascript.png"), full_page=True)
            page.click("#pay-button")
            page.wait_for_url("**/orders/*/")
            assert "Mastercard •••• 4444" in page.inner_text("#order-payment-method")
        finally:
            context.close()
