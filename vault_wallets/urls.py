"""Mount with ``path("wallet/", include("vault_wallets.urls"))``.

A shop with several accounts mounts one set per account, each with its own namespace (the
default account keeps ``vault_wallets``; without a namespace Django warns ``urls.W005``)::

    path("wallet/", include("vault_wallets.urls")),
    path("wallet/eu/", include("vault_wallets.urls", namespace="wallet_eu"), {"vault_account": "eu"}),

The template tag ``{% vault_wallet_config namespace="wallet_eu" account="eu" %}`` then gives
that account's URLs.
"""

from django.urls import include, path

from . import checkout_views
from .api import staff, views
from .api.checkout import CheckoutSessionView
from .sandbox.views import SandboxTokenView
from .webhooks import receive_webhook

app_name = "vault_wallets"

urlpatterns = [
    # First: the busiest URL (processors' deliveries), resolved without trying the others.
    path("webhooks/<str:account>/", receive_webhook, name="webhook"),
    path("customer-token/", views.CustomerTokenView.as_view(), name="customer-token"),
    path("checkout-session/", CheckoutSessionView.as_view(), name="checkout-session"),
    path("checkout/methods/", checkout_views.saved_methods_fragment, name="checkout-methods"),
    path("checkout/manage/", checkout_views.manage, name="checkout-manage"),
    path("api/", include("vault_wallets.api.urls")),
    path("api/staff/imports/", staff.ImportJobListView.as_view(), name="staff-imports"),
    path("api/staff/imports/<str:uid>/", staff.ImportJobDetailView.as_view(), name="staff-import"),
    path("sandbox/tokens/", SandboxTokenView.as_view(), name="sandbox-tokens"),
]
