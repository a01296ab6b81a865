"""The staff import API through a real Celery worker on a real Redis (PostgreSQL in CI)."""

from __future__ import annotations

import shutil

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from tests.test_worker import celery_live, redis_server, wait_for  # noqa: F401  (fixtures)
from vault_wallets.models import ImportChunk, SavedPaymentMethod
from vault_wallets.processors import get_processor
from vault_wallets.processors.base import CustomerData, CustomerRef, VaultRequest

pytestmark = [
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (set DATABASE_URL)"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    pytest.mark.timeout(180),
]


def test_import_job_runs_on_the_worker(celery_live, admin_client):  # noqa: F811
    processor = get_processor("default")
    lines = ["customer_reference,processor_customer_id,token,last4,exp_month,exp_year"]
    for n in range(30):
        pcus = processor.create_customer(CustomerData(reference_id=f"w-{n}"))
        token = processor.vault_payment_method(VaultRequest(
            customer=CustomerRef(id=pcus.id), temporary_token=processor.tokenize_card("4242424242424242", 12, 2034),
        )).token
        lines.append(f"w-{n},{pcus.id},{token},4242,12,2034")
    lines.append("bad,,,,13,2034")
    upload = SimpleUploadedFile("w.csv", ("\n".join(lines) + "\n").encode(), content_type="text/csv")
    response = admin_client.post("/wallet/api/staff/imports/", {"file": upload, "account": "default"})
    assert response.status_code == 202, response.content
    url = response.json()["status_url"]

    def finished():
        body = admin_client.get(url).json()
        return body if body["status"] in ("done", "failed") else None

    body = wait_for(finished, 60, 0.3, "the worker to run the import")
    assert body["status"] == "done" and body["progress"] == 1.0
    assert (body["report"]["created"], body["report"]["failed"]) == (30, 1)
    assert body["report"]["errors"][0]["line"] == 32
    assert SavedPaymentMethod.objects.count() == 30 and not ImportChunk.objects.exists()
