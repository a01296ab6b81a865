from django.contrib import admin

from .models import Order, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "price_cents", "currency")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("uid", "user", "total_cents", "currency", "status", "charge", "created_at")
    list_filter = ("status",)
    readonly_fields = ("uid", "user", "lines", "total_cents", "currency", "status", "charge", "created_at")
