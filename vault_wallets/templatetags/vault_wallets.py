"""Checkout template tags::

    {% load vault_wallets %}
    {% vault_payment_methods as methods %}        {# the logged-in shopper's saved methods #}
    {% for m in methods %}{{ m|vault_method_label }}{% endfor %}
    {% vault_wallet_config as config %}{{ config|json_script:"vault-wallet-config" }}
    <script src="{% static 'vault_wallets/wallet.js' %}"></script>

They resolve the customer from ``request.user`` (never from a template variable a shopper could
influence) and never expose a token.
"""

from __future__ import annotations

from django import template
from django.urls import NoReverseMatch, reverse

from .. import conf
from ..models import Customer, SavedPaymentMethod
from ..processors import base as p
from ..processors import get_processor

register = template.Library()


def _customer(context, account: str | None):
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return Customer.objects.filter(account=account or conf.default_account(), user=user).first()


@register.simple_tag(takes_context=True)
def vault_payment_methods(context, account: str | None = None):
    """The shopper's visible saved methods, default first (an empty list for anonymous users)."""
    customer = _customer(context, account)
    if customer is None:
        return []
    return list(SavedPaymentMethod.objects.visible().for_display().filter(customer=customer))


@register.filter
def vault_method_label(method: SavedPaymentMethod) -> str:
    """"Visa •••• 4242 (12/2034)", "Sandbox Bank •••• 6789" — never a token."""
    if method.method_type == p.METHOD_ACH:
        name = method.bank_name or "Bank account"
        return f"{name} •••• {method.last4}"
    expiry = f" ({method.exp_month:02d}/{method.exp_year})" if method.exp_month and method.exp_year else ""
    return f"{(method.brand or 'Card').title()} •••• {method.last4}{expiry}"


@register.filter
def vault_money(minor, currency: str = "USD") -> str:
    """``{{ charge.amount|vault_money:charge.currency }}`` → "22.50 USD", "500 JPY", "1.234 KWD"."""
    from ..processors.money import format_amount

    try:
        return format_amount(int(minor), currency)
    except (TypeError, ValueError):
        return ""


@register.simple_tag(takes_context=True)
def vault_wallet_config(context, namespace: str = "vault_wallets", account: str | None = None) -> dict:
    """The endpoint URLs (and processor name) the checkout's JavaScript needs, for ``json_script``."""

    def url(name: str):
        try:
            return reverse(f"{namespace}:{name}")
        except NoReverseMatch:
            return None

    processor = get_processor(account or conf.default_account())
    return {
        "processor": processor.name,
        "customerTokenUrl": url("customer-token"),
        "paymentMethodsUrl": url("payment-methods"),
        "defaultPaymentMethodUrl": url("default-payment-method"),
        "sandboxTokenizerUrl": url("sandbox-tokens") if processor.name == "sandbox" else None,
        "fakeTokenizerUrl": (processor.options.get("BASE_URL", "").rstrip("/") + "/_fake/tokens"
                             if processor.options.get("FAKE_TOKENIZER") else None),
    }
