"""The admin in a real browser, as a shop's staff uses it (example_project as ``make demo`` runs it):
filter expiring cards, refresh, delete a method (gone at the processor), reprocess an event,
erase a customer.  Screenshots at 1400 px go to the test's temporary directory."""

from __future__ import annotations

import json
import os

import pytest

from tests.test_browser import CHROMIUM, Shop, playwright_api, template_db  # noqa: F401  (template_db: a fixture)

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium"),
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="runs in a SQLite pass (CI: nox, 3.13 × 6.1)"),
    pytest.mark.timeout(240),
]

QUERY = """
import json
from vault_wallets.models import Customer, SavedPaymentMethod, ErasureRequest
from vault_wallets.sandbox.models import SandboxCustomer, SandboxMethod
c = Customer.objects.get(reference_id__in=["demo-jordan", "erased-" + %(uid)r])
sbx = SandboxCustomer.objects.get(sid=%(sbx)r)
print(json.dumps({
    "uid": c.uid, "sandbox_customer": sbx.sid, "sandbox_customer_deleted": sbx.deleted,
    "methods": {m.uid: [m.status, m.last4] for m in SavedPaymentMethod.objects.filter(customer=c)},
    "sandbox_methods": {m.last4: m.state for m in SandboxMethod.objects.filter(customer=sbx)},
    "erased": c.erased_at is not None, "email": c.email,
    "erasures": list(ErasureRequest.objects.filter(customer_uid=c.uid).values_list("status", flat=True)),
}))
"""
FIRST = """
import json
from vault_wallets.models import Customer
c = Customer.objects.get(reference_id="demo-jordan")
print(json.dumps({"uid": c.uid, "sbx": c.processor_customer_id}))
"""


def shell_json(shop, code):
    return json.loads(shop.manage("shell", "-v", "0", "-c", code).stdout.strip().splitlines()[-1])


def fits(page) -> bool:
    """The change list's table is no wider than its scrolling container (no column cut off)."""
    widths = page.evaluate("(() => { const r = document.querySelector('#changelist .results');"
                           " return [r.scrollWidth, r.clientWidth]; })()")
    return widths[0] <= widths[1]


def test_staff_use_the_admin(tmp_path, template_db):  # noqa: F811
    shots = tmp_path
    with Shop(tmp_path, template_db) as shop, playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            page.goto(shop.url + "/admin/login/")
            page.fill("#id_username", "staff")
            page.fill("#id_password", "staff-demo-pass")
            page.click("input[type=submit]")
            page.wait_for_selector("#site-name")
            ids = shell_json(shop, FIRST)
            customer_uid = ids["uid"]

            def state():
                return shell_json(shop, QUERY % {"uid": customer_uid, "sbx": ids["sbx"]})

            # Filter: cards expiring within 30 days — the demo's "expires this month" card.
            page.goto(shop.url + "/admin/vault_wallets/savedpaymentmethod/")
            page.click("#changelist-filter a:has-text('30 days')")
            page.wait_for_url("**expires_within=30**")
            rows = page.locator("#result_list tbody tr")
            assert rows.count() == 1 and "4444" in rows.first.inner_text()
            page.screenshot(path=str(shots / "methods-expiring.png"), full_page=True)
            # Every column is visible at 1400 px: the table is no wider than its container.
            assert fits(page), "the saved-method list scrolls sideways at 1400 px"

            # Refresh from the processor.
            rows.first.locator("input.action-select").check()
            page.select_option("select[name=action]", "refresh_from_processor")
            page.click("button[name=index]")
            page.wait_for_selector(".messagelist li.success:has-text('method(s) changed')")
            expiring_uid = page.locator("#result_list tbody tr th a").first.inner_text()

            # Delete it: the confirmation says what happens; afterwards it is gone at the processor too.
            page.click(f"#result_list a:has-text('{expiring_uid}')")
            page.click("a.deletelink")
            assert "deletes it at the processor" in page.inner_text("#content")
            page.screenshot(path=str(shots / "method-delete-confirm.png"), full_page=True)
            page.click("input[type=submit]")
            page.wait_for_selector(".messagelist li.success")
            after = state()
            assert after["methods"][expiring_uid] == ["removed", "4444"]
            assert after["sandbox_methods"] == {"4444": "deleted", "4242": "active"}  # gone at the processor

            # A webhook event (a notification of change for the other card), reprocessed by staff.
            other_uid = next(uid for uid, (status, _) in after["methods"].items() if status == "active")
            shop.manage("vault_sandbox", "noc", other_uid, "--exp-month", "9", "--exp-year", "2031",
                        "--url", f"{shop.url}/wallet/webhooks/default/")
            page.goto(shop.url + "/admin/vault_wallets/webhookevent/")
            page.locator("#result_list tbody tr").first.locator("input.action-select").check()
            page.select_option("select[name=action]", "reprocess")
            page.click("button[name=index]")
            page.wait_for_selector(".messagelist li.success:has-text('Queued 1 of 1')")

            # Erase the customer: the screen says plainly what is kept.
            page.goto(shop.url + "/admin/vault_wallets/customer/?q=demo-jordan")
            page.locator("#result_list tbody tr").first.locator("input.action-select").check()
            page.select_option("select[name=action]", "erase_customers")
            page.click("button[name=index]")
            note = page.inner_text(".vault-delete-note")
            assert "Charges are financial records and are kept" in note
            assert "1 charge(s) kept as anonymized financial records" in page.inner_text("#content")
            page.screenshot(path=str(shots / "customer-erase-confirm.png"), full_page=True)
            page.click("input[type=submit]")
            page.wait_for_selector(f".messagelist li.success:has-text('Customer {customer_uid} erased')")
            page.screenshot(path=str(shots / "customer-erased.png"), full_page=True)
            erased = state()
            assert erased["erased"] and erased["email"] == "" and erased["sandbox_customer_deleted"] is True
            assert set(erased["sandbox_methods"].values()) == {"deleted"}
            assert erased["erasures"] == ["completed"]
            assert {status for status, _ in erased["methods"].values()} == {"removed"}

            # The audit record: who, when, and the processor's answer per object.
            page.goto(shop.url + "/admin/vault_wallets/erasurerequest/")
            page.click("#result_list tbody tr th a")
            audit = page.inner_text("#content")
            assert "staff" in audit and "deleted at the processor" in audit and customer_uid in audit
            page.screenshot(path=str(shots / "erasure-audit.png"), full_page=True)

            # Adding a customer asks for the account.
            page.goto(shop.url + "/admin/vault_wallets/customer/add/")
            page.fill("#id_reference_id", "walk-in-7")
            page.fill("#id_email", "walkin@example.com")
            page.click("input[name=_save]")
            page.wait_for_selector(".messagelist li.success")
            page.screenshot(path=str(shots / "customer-added.png"), full_page=True)
            assert fits(page), "the customer list scrolls sideways at 1400 px"

            # The charge stays, read-only, amount in its currency.
            page.goto(shop.url + "/admin/vault_wallets/charge/")
            assert "22.50 USD" in page.inner_text("#result_list")
            page.click("#result_list tbody tr th a")
            assert page.locator("input[name=_save]").count() == 0
            page.screenshot(path=str(shots / "charge-detail.png"), full_page=True)
        finally:
            if os.environ.get("VAULT_SCREENSHOTS"):
                import shutil

                shutil.copytree(shots, os.environ["VAULT_SCREENSHOTS"], dirs_exist_ok=True)
            browser.close()
