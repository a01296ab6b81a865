"""Admin screens for staff.  Tokens, secrets and fingerprints are never rendered.

Every delete goes through the services, so the processor is told too: a saved method is
deleted at the processor and marked removed, an address is deleted there and here, and a
customer is erased (``services.erase_customer``: processor first, charges kept as anonymized
financial records, an audit record written).
"""

from __future__ import annotations

import dataclasses

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from . import conf, services
from .admin_filters import AccountFilter, ErasedFilter, ExpiresWithinFilter
from .exceptions import PaymentMethodNotFound, VaultError
from .models import (
    Address,
    Charge,
    Customer,
    ErasureRequest,
    ImportJob,
    NocChunk,
    PaymentMethodChange,
    Refund,
    SavedPaymentMethod,
    WebhookEvent,
)
from .processors.base import ProcessorError
from .processors.money import format_amount
from .services import events

SECRET_FIELDS = ("processor_token", "processor_method_id", "processor_lookup", "fingerprint",
                 "processor_customer_secret")


class ThroughServicesDelete:
    """Mixin: single and bulk deletes call ``delete_through_services`` per object (processor first).

    A processor error stops that object's delete and is shown; the others go on.
    """

    delete_note = ""
    delete_button = ""

    class Media:
        css = {"all": ["vault_wallets/admin.css"]}

    def delete_through_services(self, request, obj):  # pragma: no cover - overridden
        raise NotImplementedError

    def describe_delete(self, obj) -> str:
        return str(obj)

    def get_deleted_objects(self, objs, request):
        described = [self.describe_delete(obj) for obj in objs]
        return described, {self.opts.verbose_name_plural: len(described)}, set(), []

    def delete_model(self, request, obj):
        self.delete_through_services(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_through_services(request, obj)

    def delete_view(self, request, object_id, extra_context=None):
        context = {"vault_delete_note": self.delete_note, "vault_delete_button": self.delete_button,
                   **(extra_context or {})}
        try:
            return super().delete_view(request, object_id, context)
        except (ProcessorError, VaultError) as exc:
            self.message_user(request, f"Nothing was deleted: the processor answered “{exc.message}”. "
                              "Try again later.", messages.ERROR)
            return HttpResponseRedirect(request.path)

    def get_actions(self, request, action_location=None):
        # Django 6.1 passes action_location and holds Action objects (the old signature and tuple
        # indexing are deprecated there); 5.2 and 6.0 call get_actions(request) and hold tuples.
        actions = (super().get_actions(request) if action_location is None
                   else super().get_actions(request, action_location=action_location))
        current = actions.get("delete_selected")
        if current is not None and hasattr(current, "func"):
            actions["delete_selected"] = dataclasses.replace(current, func=_delete_selected_through_services)
        elif current is not None:
            actions["delete_selected"] = (_delete_selected_through_services, "delete_selected", current[2])
        return actions


def _delete_selected_through_services(modeladmin, request, queryset):
    if not request.POST.get("post"):
        response = delete_selected(modeladmin, request, queryset)  # the confirmation page
        if response is not None and hasattr(response, "context_data"):
            response.context_data.update({"vault_delete_note": modeladmin.delete_note,
                                          "vault_delete_button": modeladmin.delete_button})
        return response
    done = 0
    for obj in queryset:
        try:
            modeladmin.delete_through_services(request, obj)
            done += 1
        except (ProcessorError, VaultError) as exc:
            modeladmin.message_user(request, f"Not deleted: {obj} — the processor answered “{exc.message}”.",
                                    messages.ERROR)
    if done:
        modeladmin.message_user(request, f"Deleted {done} {modeladmin.opts.verbose_name_plural} at the processor "
                                "and here.", messages.SUCCESS)
    return None


_delete_selected_through_services.allowed_permissions = ("delete",)  # type: ignore[attr-defined]


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
    """Read-only here: addresses are added, changed and deleted on their own page (through the services)."""

    model = Address
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("uid", "label", "line1", "city", "postal_code", "country", "is_default")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class CustomerAddForm(forms.ModelForm):
    """Adding a customer asks for a configured account and creates it at the processor first."""

    account = forms.ChoiceField(choices=())

    class Meta:
        model = Customer
        fields = ("account", "reference_id", "name", "email", "phone")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["account"].choices = [(name, name) for name in conf.accounts()]
        self.fields["account"].initial = conf.default_account()
        self.created = None

    def _post_clean(self):
        super()._post_clean()  # field and uniqueness checks first
        if self.errors:
            return
        data = self.cleaned_data
        try:
            self.created = services.create_customer(
                data["account"], data["reference_id"], name=data.get("name", ""), email=data.get("email", ""),
                phone=data.get("phone", ""))
        except ProcessorError as exc:
            self.add_error(None, f"The processor did not create the customer: {exc.message}")
        except ValidationError as exc:
            self.add_error(None, exc)


@admin.register(Customer)
class CustomerAdmin(ThroughServicesDelete, admin.ModelAdmin):
    list_display = ("uid", "reference_id", "email", "account", "method_count", "erased", "created_on")
    list_filter = ("account", "currency", ErasedFilter)
    search_fields = ("uid", "reference_id", "email", "name")
    readonly_fields = ("uid", "account", "reference_id", "user", "processor_customer_id", "token_version",
                       "erased_at", "created_at", "updated_at")
    exclude = ("processor_customer_secret",)
    inlines = [SavedPaymentMethodInline, AddressInline]
    actions = ["erase_customers", "revoke_tokens"]
    delete_note = ("Deleting a customer erases them: their saved methods and the customer are deleted at the "
                   "processor first, then name, email, phone, addresses and card-holder names are removed here. "
                   "Charges are financial records and are kept, attached to an anonymous “erased” customer "
                   "record (amount, currency, status, card brand and last four digits only). A customer without "
                   "charges is removed completely. If the processor cannot be reached, the erasure stays "
                   "pending and is retried automatically; see “Erasure requests”.")
    delete_button = "Yes, erase"

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.erased_at is not None:
            return False  # already erased: only the anonymous holder of its charges is left
        return super().has_delete_permission(request, obj)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = CustomerAddForm
            kwargs["fields"] = CustomerAddForm.Meta.fields
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.erased_at is not None:  # an erased customer stays anonymous
            return ("uid", "account", "reference_id", "name", "email", "phone", "currency", "metadata", "erased_at",
                    "created_at", "updated_at")
        return () if obj is None else self.readonly_fields

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def save_model(self, request, obj, form, change):
        if change or form.created is None:
            return super().save_model(request, obj, form, change)
        obj.pk, obj.uid = form.created.pk, form.created.uid
        obj.__dict__.update({f.attname: getattr(form.created, f.attname) for f in Customer._meta.concrete_fields})

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_methods=Count("payment_methods"))

    @admin.display(description="methods", ordering="_methods")
    def method_count(self, obj):
        return obj._methods

    @admin.display(description="erased", boolean=True, ordering="erased_at")
    def erased(self, obj):
        return obj.erased_at is not None

    @admin.display(description="created", ordering="created_at")
    def created_on(self, obj):
        return obj.created_at.date().isoformat()

    def describe_delete(self, obj):
        charges = Charge.objects.filter(customer=obj).count()
        methods = SavedPaymentMethod.objects.visible().filter(customer=obj).count()
        text = (f"Customer {obj.uid} ({obj.reference_id}): {methods} saved method(s) and the customer deleted "
                "at the processor; personal data removed here")
        return text + (f"; {charges} charge(s) kept as anonymized financial records" if charges else
                       "; no charges, so nothing is kept")

    def delete_through_services(self, request, obj):
        erasure = services.erase_customer(obj, requested_by=request.user, reason="deleted in the admin")
        request._vault_erasures = [*getattr(request, "_vault_erasures", []), erasure]

    def response_delete(self, request, obj_display, obj_id):
        self._report_erasures(request)
        return HttpResponseRedirect(reverse("admin:vault_wallets_customer_changelist"))

    def _report_erasures(self, request):
        for erasure in getattr(request, "_vault_erasures", []):
            if erasure.status == ErasureRequest.COMPLETED:
                kept = f"; {erasure.charges_kept} charge(s) kept, anonymized" if erasure.charges_kept else ""
                self.message_user(request, f"Customer {erasure.customer_uid} erased at the processor and here{kept}.",
                                  messages.SUCCESS)
            else:
                self.message_user(request, f"Erasure of customer {erasure.customer_uid} is pending: "
                                  f"{erasure.last_error}. It is retried automatically.", messages.WARNING)

    @admin.action(description="Erase selected customers (GDPR): processor, personal data; charges kept",
                  permissions=["delete"])
    def erase_customers(self, request, queryset):
        return _delete_selected_through_services_for_erase(self, request, queryset)

    @admin.action(description="Revoke all customer tokens")
    def revoke_tokens(self, request, queryset):
        for customer in queryset:
            services.revoke_customer_tokens(customer)
        self.message_user(request, f"Revoked the customer tokens of {queryset.count()} customer(s).")


def _delete_selected_through_services_for_erase(modeladmin, request, queryset):
    """The erase action: the same confirmation page as delete, then one erasure per customer."""
    if not request.POST.get("post"):
        response = delete_selected(modeladmin, request, queryset)
        if response is not None and hasattr(response, "context_data"):
            response.context_data.update({"vault_delete_note": modeladmin.delete_note,
                                          "vault_delete_button": modeladmin.delete_button,
                                          "vault_action": "erase_customers", "title": "Erase customers"})
        return response
    for customer in queryset:
        modeladmin.delete_through_services(request, customer)
    modeladmin._report_erasures(request)
    return None


class PaymentMethodChangeInline(admin.TabularInline):
    model = PaymentMethodChange
    extra = 0
    can_delete = False
    fields = ("created_at", "source", "before", "after", "source_event")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(SavedPaymentMethod)
class SavedPaymentMethodAdmin(ThroughServicesDelete, admin.ModelAdmin):
    inlines = [PaymentMethodChangeInline]
    actions = ["refresh_from_processor"]
    list_display = ("uid", "customer_link", "method", "expiry", "state", "verification", "created_on")
    list_filter = (AccountFilter, ExpiresWithinFilter, "status", "verification_status", "brand", "method_type")
    search_fields = ("uid", "customer__uid", "customer__reference_id", "customer__email", "last4")
    list_select_related = ("customer",)
    exclude = SECRET_FIELDS
    readonly_fields = ("uid", "customer", "method_type", "brand", "last4", "exp_month", "exp_year", "holder_name",
                       "bank_name", "account_type", "is_default", "verification_status", "status",
                       "processor_data", "created_at", "updated_at")
    delete_note = ("Deleting a saved method deletes it at the processor, then marks it removed here (it disappears "
                   "from the shopper's wallet; its history and the charges made with it are kept). If it was the "
                   "default, the newest other active method becomes the default.")

    def get_queryset(self, request):
        return super().get_queryset(request).defer("processor_token", "processor_method_id")

    def has_add_permission(self, request):
        return False  # methods are vaulted through the processor, never typed in

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status == "removed":
            return False
        return super().has_delete_permission(request, obj)

    def describe_delete(self, obj):
        return f"Saved method {obj.uid} ({obj.brand or obj.method_type} ••••{obj.last4}) of customer " \
               f"{obj.customer.uid}: deleted at the processor, marked removed here"

    def delete_through_services(self, request, obj):
        try:
            services.remove_payment_method(obj.customer, obj)
        except PaymentMethodNotFound:
            pass  # already removed

    @admin.action(description="Refresh from the processor", permissions=["change"])
    def refresh_from_processor(self, request, queryset):
        changed = 0
        for method in queryset.select_related("customer"):
            try:
                changed += events.refresh_payment_method(method, source="admin refresh") is not None
            except ProcessorError as exc:
                self.message_user(request, f"Saved method {method.uid}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{changed} of {queryset.count()} method(s) changed.", messages.SUCCESS)

    class Media:
        css = {"all": ["vault_wallets/admin.css"]}

    @admin.display(description="status", ordering="status")
    def state(self, obj):
        return f"{obj.get_status_display()}, default" if obj.is_default else obj.get_status_display()

    @admin.display(description="created", ordering="created_at")
    def created_on(self, obj):
        return obj.created_at.date().isoformat()

    @admin.display(description="verified", ordering="verification_status")
    def verification(self, obj):
        return obj.get_verification_status_display()

    @admin.display(description="customer", ordering="customer__uid")
    def customer_link(self, obj):
        return obj.customer.uid

    @admin.display(description="method", ordering="brand")
    def method(self, obj):
        if obj.method_type == "ach":
            return f"{obj.bank_name or 'Bank'} ••••{obj.last4}"
        return f"{(obj.brand or 'card').title()} ••••{obj.last4}"

    @admin.display(description="expiry", ordering="exp_year")
    def expiry(self, obj):
        return f"{obj.exp_month:02d}/{obj.exp_year}" if obj.exp_month and obj.exp_year else "—"


@admin.register(Address)
class AddressAdmin(ThroughServicesDelete, admin.ModelAdmin):
    list_display = ("uid", "customer", "label", "line1", "city", "country", "is_default")
    list_filter = (AccountFilter, "country")
    search_fields = ("uid", "customer__uid", "customer__reference_id", "customer__email", "line1", "city",
                     "postal_code")
    readonly_fields = ("uid", "is_default", "processor_address_id", "created_at", "updated_at")
    list_select_related = ("customer",)
    autocomplete_fields = ("customer",)
    delete_note = "Deleting an address deletes it at the processor (where the processor keeps addresses) and here."

    def get_readonly_fields(self, request, obj=None):
        return ("customer", *self.readonly_fields) if obj is not None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in services.addresses.ADDRESS_FIELDS
                  if name in form.cleaned_data}
        saved = (services.update_address(obj.customer, obj, **fields) if change
                 else services.create_address(obj.customer, **fields))
        obj.pk, obj.uid = saved.pk, saved.uid

    def describe_delete(self, obj):
        return f"Address {obj.uid} of customer {obj.customer.uid}: deleted at the processor and here"

    def delete_through_services(self, request, obj):
        services.delete_address(obj.customer, obj)


class RefundInline(admin.TabularInline):
    """A charge's refunds, read-only: refunds are made with the charge's action (through the services)."""

    model = Refund
    extra = 0
    can_delete = False
    fields = ("uid", "sequence", "amount_display", "status", "failure_code", "failure_message", "created_at",
              "updated_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="amount")
    def amount_display(self, obj):
        return format_amount(obj.amount, obj.charge.currency)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("charge")


@admin.register(Charge)
class ChargeAdmin(admin.ModelAdmin):
    """Charges are financial records: read-only, never deleted; staff act on them with the actions."""

    list_display = ("uid", "customer", "amount_display", "status", "reference", "payment_method", "created_at")
    list_filter = ("status", "currency", ("customer__account", admin.AllValuesFieldListFilter))
    search_fields = ("uid", "reference", "processor_reference", "customer__uid", "customer__reference_id",
                     "customer__email")
    list_select_related = ("customer", "payment_method")
    actions = ["capture_charges", "void_charges", "refund_charges"]
    inlines = [RefundInline]

    def get_fields(self, request, obj=None):
        money = {"amount": "amount_display", "amount_captured": "captured_display",
                 "amount_refunded": "refunded_display"}
        return [money.get(f.name, f.name) for f in Charge._meta.fields if f.name != "id"]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        context = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False,
                   "show_delete": False, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, context)

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj):
        return format_amount(obj.amount, obj.currency)

    @admin.display(description="amount captured")
    def captured_display(self, obj):
        return format_amount(obj.amount_captured, obj.currency)

    @admin.display(description="amount refunded")
    def refunded_display(self, obj):
        return format_amount(obj.amount_refunded, obj.currency)

    def _run(self, request, queryset, operation, verb, check=None):
        done = 0
        for record in queryset.select_related("customer"):
            problem = check(record) if check else ""
            if problem:
                self.message_user(request, f"Charge {record.uid}: {problem}", messages.WARNING)
                continue
            try:
                operation(record)
                done += 1
            except (VaultError, ProcessorError) as exc:
                self.message_user(request, f"Charge {record.uid}: {exc.message}", messages.ERROR)
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
        def nothing_left(record):
            if record.amount_captured and record.amount_refunded >= record.amount_captured:
                return f"already refunded in full ({format_amount(record.amount_refunded, record.currency)}); " \
                       "nothing was refunded."
            return ""

        self._run(request, queryset, services.refund, "Refunded", check=nothing_left)


@admin.register(ErasureRequest)
class ErasureRequestAdmin(admin.ModelAdmin):
    """The erasure audit log: read-only; pending ones can be retried now."""

    list_display = ("uid", "customer_uid", "account", "status", "requested_by_name", "attempts", "charges_kept",
                    "created_at", "completed_at")
    list_filter = ("status", "account")
    search_fields = ("uid", "customer_uid", "requested_by_name")
    readonly_fields = ("uid", "customer_uid", "account", "requested_by_name", "reason", "status", "attempts",
                       "next_attempt_at", "last_error", "outcome_table", "charges_kept", "created_at",
                       "completed_at")
    fields = readonly_fields
    actions = ["retry_now"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        context = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False,
                   "title": "Erasure request (audit record)", **(extra_context or {})}
        return super().change_view(request, object_id, form_url, context)

    @admin.display(description="outcome per object")
    def outcome_table(self, obj):
        from django.utils.html import format_html_join

        return format_html_join("\n", "<div>{} {}: {} <small>({})</small> {}</div>", (
            (o.get("object"), o.get("id"), o.get("outcome"), o.get("at"), o.get("detail", ""))
            for o in obj.outcomes)) or "—"

    @admin.action(description="Retry selected pending erasures now", permissions=["change"])
    def retry_now(self, request, queryset):
        from .services.erasure import run_erasure

        for erasure in queryset.filter(status=ErasureRequest.PENDING):
            result = run_erasure(erasure)
            level = messages.SUCCESS if result.status == ErasureRequest.COMPLETED else messages.WARNING
            self.message_user(request, f"Erasure {result.uid}: {result.status}"
                              + (f" — {result.last_error}" if result.last_error else ""), level)


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ("uid", "account", "format", "dry_run", "status", "file_name", "progress", "created_at",
                    "finished_at")
    list_filter = ("status", "account")
    readonly_fields = ("uid", "account", "format", "dry_run", "status", "file_name", "total_bytes",
                       "processed_bytes", "report", "last_error", "requested_by", "created_at", "started_at",
                       "finished_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="progress")
    def progress(self, obj):
        return f"{obj.processed_bytes * 100 // obj.total_bytes}%" if obj.total_bytes else "—"


class NocChunkInline(admin.TabularInline):
    """The chunks a large notification of change was split into, and how each went (read-only)."""

    model = NocChunk
    extra = 0
    can_delete = False
    fields = ("index", "methods", "status", "attempts", "changed", "next_attempt_at", "finished_at", "last_error")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="saved methods")
    def methods(self, obj):
        return len(obj.method_pks or ())  # how many, never the rows' database ids


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
    inlines = [NocChunkInline]

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

        queued = busy = 0
        for event in queryset:
            if not events.mark_for_reprocessing(event.pk):
                busy += 1  # a worker is processing it right now
                continue
            queued += enqueue_event(event.pk)
        selected = queryset.count()
        self.message_user(request, f"Queued {queued} of {selected} event(s) for processing"
                          + ("" if queued + busy == selected else "; the others are picked up by the sweeper")
                          + (f"; {busy} being processed right now, left alone" if busy else "")
                          + ".", messages.SUCCESS)
