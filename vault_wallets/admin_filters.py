"""List filters for the admin screens."""

from __future__ import annotations

from django.contrib import admin

from .processors import base as p


class AccountFilter(admin.SimpleListFilter):
    """The vault_wallets account (of the object's customer)."""

    title = "account"
    parameter_name = "account"
    field_path = "customer__account"

    def lookups(self, request, model_admin):
        from . import conf
        from .models import Customer

        names = set(conf.accounts()) | set(Customer.objects.values_list("account", flat=True).distinct())
        return [(name, name) for name in sorted(names)]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.field_path: self.value()})
        return queryset


class ExpiresWithinFilter(admin.SimpleListFilter):
    """Active cards whose last valid day is within 30/60/90 days (and "expired" ones)."""

    title = "expires within"
    parameter_name = "expires_within"

    def lookups(self, request, model_admin):
        return [("30", "30 days"), ("60", "60 days"), ("90", "90 days"), ("past", "already past expiry")]

    def queryset(self, request, queryset):
        from .services.expiry import expired_q, expiring_within_q

        value = self.value()
        if value in ("30", "60", "90"):
            return queryset.filter(method_type=p.METHOD_CARD).filter(expiring_within_q(int(value)))
        if value == "past":
            return queryset.filter(method_type=p.METHOD_CARD).filter(expired_q())
        return queryset


class ErasedFilter(admin.SimpleListFilter):
    title = "erased"
    parameter_name = "erased"

    def lookups(self, request, model_admin):
        return [("no", "not erased"), ("yes", "erased (holds charges only)")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(erased_at__isnull=self.value() == "no")
        return queryset
