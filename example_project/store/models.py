import secrets

from django.conf import settings
from django.db import models

from vault_wallets.processors.money import to_major_string


def new_order_uid() -> str:
    return f"ord_{secrets.token_urlsafe(12)}"


class Product(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    price_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="USD")

    def __str__(self):
        return self.name

    @property
    def price(self) -> str:
        return to_major_string(self.price_cents, self.currency)


class Order(models.Model):
    uid = models.CharField(max_length=40, unique=True, default=new_order_uid, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders")
    lines = models.JSONField(default=list)
    total_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="USD")
    # pending | paid | declined | failed | confirming (the processor's answer was lost: being looked up)
    status = models.CharField(max_length=16, default="pending")
    # One checkout page = one order: the Pay form carries this key, so a double submit (or five)
    # finds the same order and its one charge (the charge's idempotency key is the order's).
    checkout_key = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    charge = models.ForeignKey("vault_wallets.Charge", null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.uid

    @property
    def total(self) -> str:
        return to_major_string(self.total_cents, self.currency)
