"""Mount with ``path("wallet/", include("vault_wallets.urls"))``.

A shop with several accounts mounts one set per account, each with its own namespace (the
default account keeps ``vault_wallets``; without a namespace Django warns ``urls.W005``)::

    path("wallet/", include("vault_wallets.urls")),
    path("wallet/eu/", include("vault_wallets.urls", namespace="wallet_eu"), {"vault_account": "eu"}),

The template tag ``{% vault_wallet_config namespace="wallet_eu" account="eu" %}`` then gives
that account's URLs.
"""

from django.urls import include, path

from .api import views
from .sandbox.views import SandboxTokenView
from .webhooks import receive_webhook

app_name = "vault_wallets"

urlpatterns = [
    path("customer-token/", views.CustomerTokenView.as_view(), name="customer-token"),
    path("api/", include("vault_wallets.api.urls")),
    path("sandbox/tokens/", SandboxTokenView.as_view(), name="sandbox-tokens"),
    path("webhooks/<str:account>/", receive_webhook, name="webhook"),
]
