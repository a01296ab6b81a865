from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("wallet/", include("vault_wallets.urls")),
    path("wallet-eu/", include("vault_wallets.urls", namespace="vault_wallets_eu"), {"vault_account": "eu"}),
]
