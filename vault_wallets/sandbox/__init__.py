"""The embedded sandbox processor's "server side": its own tables and tokenizer endpoint.

Add ``"vault_wallets.sandbox"`` to INSTALLED_APPS when an account uses
``vault_wallets.processors.sandbox.SandboxProcessor``.  It stores no card numbers: a
tokenized test card keeps its brand, last4, expiry, a keyed fingerprint and the behaviour
its number selects.
"""
