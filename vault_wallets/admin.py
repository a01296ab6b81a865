"""Admin screens for staff.  Tokens, secrets and fingerprints are never rendered."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count
from django.utils.html import format_html

from . import services
from .exceptions import VaultError
from .models import Address, Charge, Customer, PaymentMethodChange, SavedPaymentMethod, WebhookEvent
from .processors.base import ProcessorError
from .services import events

SECRET_FIELDS = ("processor_token", "processor_method_id", "processor_lookup", "fingerprint",
                 "processor_customer_secret")


class SavedPaymentMethodInline(admin.TabularInline):
    model = SavedPaymentMethod
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("uid", "method_type", "brand", "last4", "exp_month", "exp_year", "label", "is_default",
              "verification_status", "status")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class AddressInline(admin.TabularInline):
    model = Address
    extra = 0
    fields = ("uid", "label", "line1", "city", "postal_code", "country", "is_default")
    readonly_fields = ("uid",)


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("uid", "account", "reference_id", "name", "email", "currency", "method_count", "created_at")
    list_filter = ("account", "currency")
    search_fields = ("uid", "reference_id", "email", "name")
    readonly_fields = ("uid", "account", "reference_id", "user", "processor_customer_id", "token_version",
                       "created_at", "updated_at")
    exclude = ("processor_customer_secret",)
    inlines = [SavedPaymentMethodInline, AddressInline]
    actions = ["revoke_tokens"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_methods=Count("payment_methods"))

    @admin.display(description="methods", ordering="_methods")
    def method_count(self, obj):
        return obj._methods

    @admin.action(description="Revoke all customer tokens")
    def revoke_tokens(self, request, queryset):
        for customer in queryset:
            services.revoke_customer_tokens(customer)
        self.message_user(request, f"Revoked the customer tokens of {queryset.count()} customer(s).")


class PaymentMethodChangeInline(admin.TabularInline):
    model = PaymentMethodChange
    extra = 0
    can_delete = False
    fields = ("created_at", "source", "before", "after", "source_event")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(SavedPaymentMethod)
class SavedPaymentMethodAdmin(admin.ModelAdmin):
    inlines = [PaymentMethodChangeInline]
    actions = ["refresh_from_processor"]
    list_display = ("uid", "customer", "method_type", "brand", "last4", "expiry", "is_default",
                    "verification_status", "status", "created_at")
    list_filter = ("method_type", "status", "verification_status", "brand")
    search_fields = ("uid", "customer__uid", "customer__email", "last4")
    list_select_related = ("customer",)
    exclude = SECRET_FIELDS
    readonly_fields = ("uid", "customer", "method_type", "brand", "last4", "exp_month", "exp_year", "holder_name",
                       "bank_name", "account_type", "is_default", "verification_status", "status",
                       "processor_data", "created_at", "updated_at")

    def has_add_permission(self, request):
        return False  # methods are vaulted through the processor, never typed in

    @admin.action(description="Refresh from the processor", permissions=["change"])
    def refresh_from_processor(self, request, queryset):
        changed = 0
        for method in queryset.select_related("customer"):
            try:
                changed += events.refresh_payment_method(method, source="admin refresh") is not None
            except ProcessorError as exc:
                self.message_user(request, f"{method.uid}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{changed} of {queryset.count()} method(s) changed.", messages.SUCCESS)

    @admin.display(description="expiry")
    def expiry(self, obj):
        return f"{obj.exp_month:02d}/{obj.exp_year}" if obj.exp_month and obj.exp_year else "—"


@admin.register(Address)
class AddressAdmin(admin.ModelAdmin):
    list_display = ("uid", "customer", "label", "line1", "city", "country", "is_default")
    search_fields = ("uid", "customer__uid", "line1", "city", "postal_code")
    readonly_fields = ("uid", "processor_address_id", "created_at", "updated_at")
    list_select_related = ("customer",)


@admin.register(Charge)
class ChargeAdmin(admin.ModelAdmin):
    list_display = ("uid", "customer", "amount_display", "status", "reference", "payment_method", "created_at")
    list_filter = ("status", "currency")
    search_fields = ("uid", "reference", "processor_reference", "customer__uid", "customer__email")
    list_select_related = ("customer", "payment_method")
    readonly_fields = [f.name for f in Charge._meta.fields]
    actions = ["capture_charges", "void_charges", "refund_charges"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj):
        return f"{obj.amount / 100:.2f} {obj.currency}"

    def _run(self, request, queryset, operation, verb):
        done = 0
        for record in queryset:
            try:
                operation(record)
                done += 1
            except (VaultError, ProcessorError) as exc:
                self.message_user(request, f"{record.uid}: {exc.message}", messages.ERROR)
        if done:
            self.message_user(request, f"{verb} {done} charge(s).", messages.SUCCESS)

    @admin.action(description="Capture selected authorizations", permissions=["change"])
    def capture_charges(self, request, queryset):
        self._run(request, queryset, services.capture, "Captured")

    @admin.action(description="Void selected authorizations", permissions=["change"])
    def void_charges(self, request, queryset):
        self._run(request, queryset, services.void, "Voided")

    @admin.action(description="Refund selected charges in full", permissions=["change"])
    def refund_charges(self, request, queryset):
        self._run(request, queryset, services.refund, "Refunded")


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("uid", "account", "processor", "event_type", "status", "attempts", "received_at", "processed_at")
    list_filter = ("status", "account", "processor", "event_type")
    search_fields = ("uid", "event_id", "event_type")
    # body and headers are encrypted and may name processor tokens: staff see the processor
    # module's redacted view instead.
    exclude = ("body", "headers")
    readonly_fields = [f.name for f in WebhookEvent._meta.fields if f.name not in ("body", "headers")] + [
        "redacted_body", "stored_headers"]
    actions = ["reprocess"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="body (tokens redacted)")
    def redacted_body(self, obj):
        return format_html("<pre style=\"white-space: pre-wrap\">{}</pre>", events.redacted_body(obj))

    @admin.display(description="headers (signatures never stored)")
    def stored_headers(self, obj):
        headers = obj.headers if isinstance(obj.headers, dict) else {}
        return format_html("<pre>{}</pre>", "\n".join(f"{k}: {v}" for k, v in sorted(headers.items())))

    @admin.action(description="Reprocess selected events", permissions=["change"])
    def reprocess(self, request, queryset):
        from .tasks import enqueue_event

        queued = 0
        for event in queryset:
            WebhookEvent.objects.filter(pk=event.pk).update(status=WebhookEvent.RECEIVED, next_attempt_at=None)
            queued += enqueue_event(event.pk)
        self.message_user(request, f"Queued {queued} of {queryset.count()} event(s) for processing"
                          + ("" if queued == queryset.count() else "; the others are picked up by the sweeper")
                          + ".", messages.SUCCESS)
