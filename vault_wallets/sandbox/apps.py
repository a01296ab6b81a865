from django.apps import AppConfig


class SandboxConfig(AppConfig):
    name = "vault_wallets.sandbox"
    label = "vault_wallets_sandbox"
    verbose_name = "Vault wallets sandbox processor"
    default_auto_field = "django.db.models.BigAutoField"
