"""The sandbox processor's own records (what a real processor keeps on its side)."""

from __future__ import annotations

from django.db import models

from .. import ids


class SandboxTemporaryToken(models.Model):
    """A single-use browser token; 15 minutes.  Keeps display data only, never the number."""

    token = models.CharField(max_length=64, unique=True, default=ids.new_sandbox_temporary_token)
    account = models.CharField(max_length=64)
    kind = models.CharField(max_length=8)  # card | ach
    brand = models.CharField(max_length=32, blank=True)
    last4 = models.CharField(max_length=4)
    bin = models.CharField(max_length=6, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True)
    exp_year = models.PositiveSmallIntegerField(null=True)
    holder_name = models.CharField(max_length=200, blank=True)
    bank_name = models.CharField(max_length=200, blank=True)
    account_type = models.CharField(max_length=16, blank=True)
    fingerprint = models.CharField(max_length=64)
    behaviour = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True)


class SandboxCustomer(models.Model):
    sid = models.CharField(max_length=64, unique=True, default=ids.new_sandbox_customer_id)
    account = models.CharField(max_length=64)
    reference_id = models.CharField(max_length=128)
    name = models.CharField(max_length=200, blank=True)
    email = models.CharField(max_length=254, blank=True)
    phone = models.CharField(max_length=40, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    default_method = models.ForeignKey("SandboxMethod", null=True, on_delete=models.SET_NULL, related_name="+")
    deleted = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "reference_id"], name="vw_sbx_customer_ref")]


class SandboxMethod(models.Model):
    """A vaulted method; ``sid`` is the permanent token the shop stores (encrypted)."""

    sid = models.CharField(max_length=64, unique=True, default=ids.new_sandbox_method_token)
    account = models.CharField(max_length=64)
    customer = models.ForeignKey(SandboxCustomer, on_delete=models.CASCADE, related_name="methods")
    kind = models.CharField(max_length=8)
    brand = models.CharField(max_length=32, blank=True)
    last4 = models.CharField(max_length=4)
    bin = models.CharField(max_length=6, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True)
    exp_year = models.PositiveSmallIntegerField(null=True)
    holder_name = models.CharField(max_length=200, blank=True)
    bank_name = models.CharField(max_length=200, blank=True)
    account_type = models.CharField(max_length=16, blank=True)
    fingerprint = models.CharField(max_length=64)
    behaviour = models.CharField(max_length=32)
    verification_status = models.CharField(max_length=16)
    state = models.CharField(max_length=16, default="active")  # active | closed | deleted
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)


class SandboxCharge(models.Model):
    sid = models.CharField(max_length=64, unique=True, default=ids.new_sandbox_charge_id)
    account = models.CharField(max_length=64)
    customer = models.ForeignKey(SandboxCustomer, on_delete=models.CASCADE, related_name="charges")
    method = models.ForeignKey(SandboxMethod, on_delete=models.CASCADE, related_name="charges")
    amount = models.BigIntegerField()
    amount_captured = models.BigIntegerField(default=0)
    amount_refunded = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


class SandboxIdempotencyRecord(models.Model):
    """Idempotency-Key replay: the same key and request answer the same response."""

    account = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    operation = models.CharField(max_length=32)
    request_hash = models.CharField(max_length=64)
    response = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "key"], name="vw_sbx_idempotency")]
