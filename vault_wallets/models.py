"""Customer, Address, SavedPaymentMethod and Charge.

Processor tokens are Fernet-encrypted at rest (``FERNET_KEYS``, newest first) and never
appear in ``repr``/``str``.  Public ids are random; the integer primary keys stay inside.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from fernet_fields import EncryptedTextField

from . import ids, validators
from .fields import EncryptedJSONField
from .processors import base as p


def _choices(values):
    return [(v, v.replace("-", " ").replace("_", " ")) for v in values]


class Customer(models.Model):
    uid = models.CharField(max_length=40, unique=True, default=ids.new_customer_uid, editable=False)
    account = models.CharField(max_length=64, help_text="A configured vault_wallets account name.")
    reference_id = models.CharField(max_length=128, help_text="The shop's own id for this customer.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="vault_customers",
    )
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    currency = models.CharField(max_length=3, blank=True, help_text="Once set it cannot change.")
    processor_customer_id = models.CharField(max_length=200, blank=True, db_index=True)
    processor_customer_secret = EncryptedTextField(blank=True, default="")
    token_version = models.PositiveIntegerField(default=1, editable=False)
    metadata = models.JSONField(default=dict, blank=True)
    erased_at = models.DateTimeField(null=True, blank=True, editable=False,
                                     help_text="Set when the customer was erased; the row is then an anonymous "
                                               "holder of the customer's charges (financial records).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "reference_id"], name="vw_customer_account_reference"),
            models.UniqueConstraint(fields=["account", "user"], condition=Q(user__isnull=False),
                                    name="vw_customer_account_user"),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.email or self.reference_id} ({self.uid})"

    def __repr__(self) -> str:
        return f"<Customer {self.uid} account={self.account!r}>"

    @classmethod
    def from_db(cls, db, field_names, values, *args, **kwargs):  # Django 6.1 adds fetch_mode=
        instance = super().from_db(db, field_names, values, *args, **kwargs)
        instance._loaded_currency = instance.__dict__.get("currency")
        return instance

    def clean(self):
        super().clean()
        self._check_currency()

    def _check_currency(self):
        self.currency = (self.currency or "").upper()
        if not self.currency or self.currency == getattr(self, "_loaded_currency", None) or not self.pk:
            return
        stored = Customer.objects.filter(pk=self.pk).values_list("currency", flat=True).first()
        if stored and stored != self.currency:
            raise ValidationError({"currency": f"The customer's currency is {stored} and cannot be changed."})

    def refresh_from_db(self, *args, **kwargs):
        super().refresh_from_db(*args, **kwargs)
        self._loaded_currency = self.currency

    def save(self, *args, **kwargs):
        self._check_currency()
        super().save(*args, **kwargs)
        self._loaded_currency = self.currency

    @property
    def processor_ref(self) -> p.CustomerRef:
        return p.CustomerRef(id=self.processor_customer_id, secret=self.processor_customer_secret,
                             reference_id=self.reference_id)


class Address(models.Model):
    uid = models.CharField(max_length=40, unique=True, default=ids.new_address_uid, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="addresses")
    label = models.CharField(max_length=100, blank=True)
    name = models.CharField(max_length=200, blank=True)
    line1 = models.CharField(max_length=200)
    line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100)
    state = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2")
    is_default = models.BooleanField(default=False)
    processor_address_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-is_default", "-created_at", "-id"]
        verbose_name_plural = "addresses"
        constraints = [
            models.UniqueConstraint(fields=["customer"], condition=Q(is_default=True),
                                    name="vw_address_one_default"),
        ]

    def __str__(self) -> str:
        return f"{self.label or self.line1}, {self.city} ({self.uid})"

    TEXT_FIELDS = ("label", "name", "line1", "line2", "city", "state", "postal_code")

    def clean(self):
        """Printable text only (no control, bidi or zero-width characters); an ISO 3166-1 country."""
        super().clean()
        errors = {}
        for name in self.TEXT_FIELDS:
            try:
                setattr(self, name, validators.clean_text(getattr(self, name) or ""))
            except ValidationError as exc:
                errors[name] = exc.messages
        try:
            self.country = validators.clean_country(self.country or "")
        except ValidationError as exc:
            errors["country"] = exc.messages
        if errors:
            raise ValidationError(errors)

    def as_data(self) -> p.AddressData:
        return p.AddressData(
            line1=self.line1, line2=self.line2, city=self.city, state=self.state,
            postal_code=self.postal_code, country=self.country, label=self.label, name=self.name,
            is_default=self.is_default, processor_id=self.processor_address_id,
        )


class SavedPaymentMethodQuerySet(models.QuerySet):
    def visible(self):
        """What the shopper sees: everything but removed methods."""
        return self.exclude(status=p.METHOD_REMOVED)

    def chargeable(self):
        return self.filter(status=p.METHOD_ACTIVE).exclude(verification_status=p.VERIFICATION_FAILED)

    def for_display(self):
        """Without the encrypted columns: listing never decrypts a token it does not show."""
        return self.defer("processor_token", "processor_method_id", "processor_data")


class SavedPaymentMethod(models.Model):
    uid = models.CharField(max_length=40, unique=True, default=ids.new_payment_method_uid, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="payment_methods")
    method_type = models.CharField(max_length=8, choices=_choices(p.METHOD_TYPES), default=p.METHOD_CARD)
    processor_token = EncryptedTextField(help_text="The processor's permanent token (encrypted).")
    processor_method_id = EncryptedTextField(blank=True, default="")
    processor_lookup = models.CharField(max_length=64, db_index=True, editable=False,
                                        help_text="Keyed hash of the processor's method id, for webhooks.")
    fingerprint = models.CharField(max_length=64, blank=True, db_index=True, editable=False,
                                   help_text="Keyed hash for duplicate detection; never a card number.")
    brand = models.CharField(max_length=32, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    holder_name = models.CharField(max_length=200, blank=True)
    bank_name = models.CharField(max_length=200, blank=True)
    account_type = models.CharField(max_length=16, blank=True)
    label = models.CharField(max_length=100, blank=True)
    is_default = models.BooleanField(default=False)
    verification_status = models.CharField(max_length=16, choices=_choices(p.VERIFICATION_STATUSES),
                                           default=p.VERIFICATION_UNKNOWN)
    status = models.CharField(max_length=16, choices=_choices(p.METHOD_STATUSES), default=p.METHOD_ACTIVE)
    processor_data = models.JSONField(default=dict, blank=True, help_text="Sanitized processor data.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SavedPaymentMethodQuerySet.as_manager()

    class Meta:
        ordering = ["-is_default", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["customer"], condition=Q(is_default=True),
                                    name="vw_payment_method_one_default"),
        ]

    def __str__(self) -> str:
        if self.method_type == p.METHOD_ACH:
            return f"{self.bank_name or 'Bank account'} ••••{self.last4} ({self.uid})"
        return f"{self.brand or 'Card'} ••••{self.last4} ({self.uid})"

    def __repr__(self) -> str:
        return f"<SavedPaymentMethod {self.uid} {self.method_type} {self.brand} ••••{self.last4} {self.status}>"

    @property
    def processor_ref(self) -> p.MethodRef:
        return p.MethodRef(token=self.processor_token, method_id=self.processor_method_id or self.processor_token,
                           method_type=self.method_type)

    @property
    def is_chargeable(self) -> bool:
        return self.status == p.METHOD_ACTIVE and self.verification_status != p.VERIFICATION_FAILED

    @staticmethod
    def lookup_for(account: str, method_id: str) -> str:
        return ids.keyed_hash("method-lookup", account, method_id)

    @staticmethod
    def lookup_function():
        """``lookup_for`` with its key derived once (for loops over many tokens: the import)."""
        return ids.keyed_hasher("method-lookup")


class Charge(models.Model):
    uid = models.CharField(max_length=40, unique=True, default=ids.new_charge_uid, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="charges")
    payment_method = models.ForeignKey(SavedPaymentMethod, null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="charges")
    amount = models.BigIntegerField(help_text="Integer minor units (cents).")
    amount_captured = models.BigIntegerField(default=0)
    amount_refunded = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=_choices(p.LOCAL_CHARGE_STATUSES), default=p.CHARGE_PENDING,
                              help_text="pending: written before the processor call; unknown: its answer was "
                                        "lost and a task is finding out (see docs/reliability.md).")
    capture_requested = models.BooleanField(default=True, help_text="Charged with capture (else authorize only).")
    description = models.CharField(max_length=200, blank=True)
    resolve_attempts = models.PositiveIntegerField(default=0, editable=False)
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True, editable=False,
                                         help_text="When a pending/unknown charge is next looked up.")
    processor_reference = models.CharField(max_length=200, blank=True, db_index=True)
    idempotency_key = models.CharField(max_length=255)
    reference = models.CharField(max_length=200, blank=True, help_text="The shop's order reference.")
    failure_code = models.CharField(max_length=100, blank=True)
    failure_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "idempotency_key"], name="vw_charge_idempotency"),
        ]

    def __str__(self) -> str:
        from .processors.money import format_amount

        return f"{self.uid} {format_amount(self.amount, self.currency)} {self.status}"

    @property
    def refundable_amount(self) -> int:
        return max(self.amount_captured - self.amount_refunded, 0)

    @property
    def is_settled(self) -> bool:
        """False while the outcome is not known yet (``pending`` or ``unknown``)."""
        return self.status not in (p.CHARGE_PENDING, p.CHARGE_UNKNOWN)


class Refund(models.Model):
    """One refund of a charge, written ``pending`` before the processor call (like a Charge).

    Its idempotency key defaults to ``refund-<charge uid>-<sequence>``: a retried refund sends the
    same key, so the processor refunds once.  ``refunded_before`` is what the processor had
    refunded of the charge when this refund was sent, to resolve a lost answer by fetching the charge.
    """

    PENDING, UNKNOWN, SUCCEEDED, FAILED = "pending", "unknown", "succeeded", "failed"
    STATUSES = (PENDING, UNKNOWN, SUCCEEDED, FAILED)

    uid = models.CharField(max_length=40, unique=True, default=ids.new_refund_uid, editable=False)
    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="refunds")
    sequence = models.PositiveIntegerField()
    amount = models.BigIntegerField(help_text="Integer minor units.")
    idempotency_key = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=_choices(STATUSES), default=PENDING, db_index=True)
    refunded_before = models.BigIntegerField(default=0)
    failure_code = models.CharField(max_length=100, blank=True)
    failure_message = models.TextField(blank=True)
    resolve_attempts = models.PositiveIntegerField(default=0, editable=False)
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["charge", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["charge", "sequence"], name="vw_refund_sequence"),
            models.UniqueConstraint(fields=["charge", "idempotency_key"], name="vw_refund_idempotency"),
        ]

    def __str__(self) -> str:
        return f"{self.uid} {self.amount} {self.status}"


class WebhookEvent(models.Model):
    """One processor delivery, stored before any processing and kept when processing fails."""

    RECEIVED, PROCESSING, PROCESSED, FAILED, IGNORED = "received", "processing", "processed", "failed", "ignored"
    STATUSES = (RECEIVED, PROCESSING, PROCESSED, FAILED, IGNORED)

    uid = models.CharField(max_length=40, unique=True, default=ids.new_event_uid, editable=False)
    account = models.CharField(max_length=64)
    processor = models.CharField(max_length=32)
    event_id = models.TextField(help_text="The processor's event id, in full.")
    event_id_hash = models.CharField(max_length=64, editable=False,
                                     help_text="SHA-256 of the full event id: the de-duplication key.")
    event_type = models.CharField(max_length=128, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    # Encrypted at rest (FERNET_KEYS): a delivery can name processor tokens.  Staff see the
    # processor module's redacted view (``services.events.redacted_body``), never these.
    headers = EncryptedJSONField(default=dict, blank=True, help_text="Sanitized: no signatures or secrets.")
    body = EncryptedTextField(help_text="The delivery as received (encrypted).")
    status = models.CharField(max_length=16, choices=_choices(STATUSES), default=RECEIVED, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_error = models.TextField(blank=True)
    last_traceback = models.TextField(blank=True)
    notes = models.JSONField(default=list, blank=True, help_text="What processing found (unknown ids, …).")
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "event_id_hash"], name="vw_webhook_event_once_hash"),
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.event_type or 'event'} {self.event_id[:80]} ({self.status})"

    @staticmethod
    def hash_event_id(event_id: str) -> str:
        """The de-duplication key of a processor event id: a digest of all of it, never a prefix."""
        return hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()

    def save(self, *args, **kwargs):
        self.event_id_hash = self.hash_event_id(self.event_id)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "event_id" in update_fields:
            kwargs["update_fields"] = {*update_fields, "event_id_hash"}
        super().save(*args, **kwargs)


class NocChunk(models.Model):
    """One chunk of saved methods a large notification of change refreshes, tracked durably.

    The event is ``processed`` only when all its chunks are done; the sweeper re-enqueues a
    chunk nobody is working on (a worker holds the chunk's row lock while refreshing it).
    """

    PENDING, DONE, FAILED = "pending", "done", "failed"
    STATUSES = (PENDING, DONE, FAILED)

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    method_pks = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=_choices(STATUSES), default=PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["event", "index"]
        constraints = [models.UniqueConstraint(fields=["event", "index"], name="vw_noc_chunk_once")]

    def __str__(self) -> str:
        return f"chunk {self.index} ({self.status})"


class PaymentMethodChange(models.Model):
    """History of a saved method's display data: before and after, and what changed it."""

    payment_method = models.ForeignKey(SavedPaymentMethod, on_delete=models.CASCADE, related_name="changes")
    source_event = models.ForeignKey(WebhookEvent, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="payment_method_changes")
    source = models.CharField(max_length=64, help_text="e.g. the normalized event type, or 'manual refresh'.")
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.payment_method.uid} changed by {self.source}"


# --------------------------------------------------------------------------------------
# Staff operations: erasure audit, expiry notices, imports (see docs/erasure.md, docs/import.md).
# --------------------------------------------------------------------------------------


class ErasureRequest(models.Model):
    """Audit record of one customer erasure: who asked, when, and what each processor call answered.

    ``pending`` until every object is gone at the processor; retried (task + sweeper) while the
    processor is unavailable, and only then is local personal data anonymized for good.
    """

    PENDING, COMPLETED = "pending", "completed"
    STATUSES = (PENDING, COMPLETED)

    uid = models.CharField(max_length=40, unique=True, default=ids.new_erasure_uid, editable=False)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="erasure_requests")
    customer_uid = models.CharField(max_length=40, db_index=True, help_text="Kept after the customer row is gone.")
    account = models.CharField(max_length=64)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    requested_by_name = models.CharField(max_length=150, blank=True, help_text="Who asked (kept if the user goes).")
    reason = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=_choices(STATUSES), default=PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_error = models.TextField(blank=True)
    outcomes = models.JSONField(default=list, blank=True,
                                help_text="One entry per object: kind, id, processor outcome, time.")
    charges_kept = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"erasure of {self.customer_uid} ({self.status})"


class ExpiryNotice(models.Model):
    """One ``payment_method_expiring`` signal sent: once per method, expiry and window."""

    payment_method = models.ForeignKey(SavedPaymentMethod, on_delete=models.CASCADE, related_name="expiry_notices")
    window_days = models.PositiveIntegerField()
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["payment_method", "window_days", "exp_year", "exp_month"],
                                    name="vw_expiry_notice_once"),
        ]


class ImportJob(models.Model):
    """A saved-method import uploaded through the staff API and run by a Celery task."""

    QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
    STATUSES = (QUEUED, RUNNING, DONE, FAILED)

    uid = models.CharField(max_length=40, unique=True, default=ids.new_import_uid, editable=False)
    account = models.CharField(max_length=64)
    format = models.CharField(max_length=8)
    dry_run = models.BooleanField(default=False)
    file_name = models.CharField(max_length=255, blank=True)
    total_bytes = models.BigIntegerField(default=0)
    processed_bytes = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=_choices(STATUSES), default=QUEUED, db_index=True)
    report = models.JSONField(default=dict, blank=True, help_text="created, updated, skipped, errors (line numbers).")
    last_error = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"import {self.uid} into {self.account} ({self.status})"


class ImportChunk(models.Model):
    """The uploaded file, encrypted (it holds processor tokens), in order; deleted after the run."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveIntegerField()
    data = EncryptedTextField()

    class Meta:
        ordering = ["seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="vw_import_chunk_seq")]
