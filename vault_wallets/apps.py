from django.apps import AppConfig


class VaultWalletsConfig(AppConfig):
    name = "vault_wallets"
    verbose_name = "Vault wallets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from .processors import registry  # noqa: F401  (clears cached processors on setting changes)
