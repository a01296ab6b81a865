"""The OpenAPI 3 schema of the shopper API (drf-spectacular).

It describes the mount it is served from (``/wallet/api/schema/`` → the ``/wallet/``
endpoints) and only vault_wallets' own views, whatever else the shop's URLconf holds.
"""

from contextvars import ContextVar

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.views import SpectacularAPIView

_mount_prefix: ContextVar[str] = ContextVar("vault_wallets_schema_prefix", default="")
SCHEMA_SUFFIX = "api/schema/"


def _view_module(callback) -> str:
    return getattr(getattr(callback, "cls", None), "__module__", "") or getattr(callback, "__module__", "")


def only_vault_wallets(endpoints, **kwargs):
    """drf-spectacular preprocessing hook: our views, under the mount the schema was asked from."""
    prefix = _mount_prefix.get()
    return [e for e in endpoints
            if _view_module(e[3]).startswith("vault_wallets.") and e[0].startswith(prefix)]


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

    def get(self, request, *args, **kwargs):
        path = request.path
        token = _mount_prefix.set(path[: -len(SCHEMA_SUFFIX)] if path.endswith(SCHEMA_SUFFIX) else "")
        try:
            return super().get(request, *args, **kwargs)
        finally:
            _mount_prefix.reset(token)


class CustomerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "vault_wallets.api.authentication.CustomerTokenAuthentication"
    name = "customerToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A customer token from POST customer-token/ (short-lived)."}
