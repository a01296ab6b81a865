"""The OpenAPI 3 schema of the shopper API (drf-spectacular), limited to vault_wallets' own views."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.views import SpectacularAPIView


def only_vault_wallets(endpoints, **kwargs):
    """drf-spectacular preprocessing hook: keep the endpoints whose view is ours."""
    return [e for e in endpoints if getattr(e[3], "__module__", "").startswith("vault_wallets.")
            or getattr(getattr(e[3], "cls", None), "__module__", "").startswith("vault_wallets.")]


class VaultSchemaView(SpectacularAPIView):
    schema = None  # not itself part of the schema
    authentication_classes = []
    permission_classes = []
    custom_settings = {
        "TITLE": "vault_wallets shopper API",
        "DESCRIPTION": "Saved payment methods and addresses of the logged-in shopper.",
        "VERSION": "1",
        "PREPROCESSING_HOOKS": ["vault_wallets.api.schema.only_vault_wallets"],
        "COMPONENT_SPLIT_REQUEST": True,
    }


class CustomerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "vault_wallets.api.authentication.CustomerTokenAuthentication"
    name = "customerToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A customer token from POST customer-token/ (short-lived)."}
