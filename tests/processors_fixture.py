"""A minimal non-sandbox processor class for settings-driven tests (it is never called)."""

from vault_wallets.processors.base import BaseProcessor


class NotSandbox(BaseProcessor):
    name = "not-sandbox"
    required_options = ("API_KEY",)
    secret_options = ("API_KEY",)
