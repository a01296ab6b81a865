"""vault_wallets: a processor-agnostic customer vault for Django shops."""

__version__ = "0.1.0"
