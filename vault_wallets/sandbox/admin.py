from django.contrib import admin

from .models import SandboxCharge, SandboxCustomer, SandboxMethod


@admin.register(SandboxCustomer)
class SandboxCustomerAdmin(admin.ModelAdmin):
    list_display = ("sid", "account", "reference_id", "email", "currency", "deleted")
    search_fields = ("sid", "reference_id", "email")


@admin.register(SandboxMethod)
class SandboxMethodAdmin(admin.ModelAdmin):
    list_display = ("id", "account", "kind", "brand", "last4", "exp_month", "exp_year", "verification_status",
                    "state")
    list_filter = ("state", "kind", "brand")
    exclude = ("sid", "fingerprint")  # sid is the permanent token the shop stores


@admin.register(SandboxCharge)
class SandboxChargeAdmin(admin.ModelAdmin):
    list_display = ("sid", "account", "amount", "currency", "status", "created_at")
    list_filter = ("status",)
