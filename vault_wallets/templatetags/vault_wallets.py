"""Checkout template tags::

    {% load vault_wallets %}
    {% vault_saved_methods %}     {# radio group "saved_payment_method", inside the shop's own form #}
    {% vault_add_card %}          {# the processor's hosted fields (outside the shop's form) #}
    {% vault_wallet_script %}     {# wallet.js + the processor's adapter, config via json_script #}

All three render nothing for an anonymous visitor.  Lower-level helpers::

    {% vault_payment_methods as methods %}        {# the logged-in shopper's saved methods #}
    {% for m in methods %}{{ m|vault_method_label }}{% endfor %}
    {% vault_wallet_config as config %}{{ config|json_script:"vault-wallet-config" }}
    <script src="{% static 'vault_wallets/wallet.js' %}"></script>

They resolve the customer from ``request.user`` (never from a template variable a shopper could
influence) and never expose a token.
"""

from __future__ import annotations

from django import template
from django.template.loader import render_to_string
from django.templatetags.static import static
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


# --------------------------------------------------------------------------------------
# The three checkout tags
# --------------------------------------------------------------------------------------


def accessible_name(method: SavedPaymentMethod) -> str:
    """"Visa ending 4242", "Sandbox Bank account ending 6789": what a screen reader says."""
    if method.method_type == p.METHOD_ACH:
        return f"{method.bank_name or 'Bank'} account ending {method.last4}"
    brand = (method.brand or "card").replace("_", " ")
    brand = brand.upper() if brand.lower() in {"amex", "jcb"} else brand.title()
    return f"{brand} ending {method.last4}"


def method_rows(methods) -> list[dict]:
    rows = []
    for method in methods:
        expiry = f"{method.exp_month:02d}/{method.exp_year}" if method.exp_month and method.exp_year else ""
        rows.append({
            "uid": method.uid, "name": accessible_name(method), "expiry": expiry, "nickname": method.label,
            "is_default": method.is_default, "chargeable": method.is_chargeable, "status": method.status,
            "pending": method.verification_status == p.VERIFICATION_PENDING,
            "failed": method.verification_status == p.VERIFICATION_FAILED,
        })
    return rows


def _url(namespace: str, name: str):
    try:
        return reverse(f"{namespace}:{name}")
    except NoReverseMatch:
        return None


def saved_methods_context(request, customer, *, namespace: str = "vault_wallets",
                          field_name: str = "saved_payment_method", next_url: str = "") -> dict:
    methods = []
    if customer is not None:
        methods = list(SavedPaymentMethod.objects.visible().for_display().filter(customer=customer))
    rows = method_rows(methods)
    chosen = next((r["uid"] for r in rows if r["is_default"] and r["chargeable"]), None)
    if chosen is None:
        chosen = next((r["uid"] for r in rows if r["chargeable"]), None)
    return {"methods": rows, "chosen": chosen, "field_name": field_name,
            "manage_url": _url(namespace, "checkout-manage"),
            "fragment_url": _url(namespace, "checkout-methods"),
            "next_url": next_url or (request.get_full_path() if request is not None else "")}


@register.simple_tag(takes_context=True)
def vault_saved_methods(context, field_name: str = "saved_payment_method", namespace: str = "vault_wallets",
                        account: str | None = None, template_name: str = "vault_wallets/saved_methods.html"):
    """The shopper's saved methods as an accessible radio group named ``field_name``.

    Put it inside the shop's own ``<form>`` (which has ``{% csrf_token %}``): choosing works
    without JavaScript, and so do "Make default" and "Remove" (a confirmation page).
    """
    request = context.get("request")
    if not _is_shopper(request):
        return ""
    customer = _customer(context, account)
    ctx = saved_methods_context(request, customer, namespace=namespace, field_name=field_name)
    return render_to_string(template_name, ctx, request=request)


@register.simple_tag(takes_context=True)
def vault_add_card(context, account: str | None = None, template_name: str = "vault_wallets/add_card.html"):
    """The form that hosts the configured processor's own fields (place it outside your form)."""
    request = context.get("request")
    if not _is_shopper(request):
        return ""
    processor = get_processor(account or conf.default_account())
    return render_to_string(template_name, {
        "processor": processor.name, "processor_name": processor.display_name,
        "fields_template": [f"vault_wallets/add_card/{processor.name}.html", "vault_wallets/add_card/hosted.html"],
    }, request=request)


@register.simple_tag(takes_context=True)
def vault_wallet_script(context, namespace: str = "vault_wallets", account: str | None = None, css: bool = True):
    """``wallet.js`` and the processor's adapter, configured through ``json_script``
    (and ``wallet.css`` unless ``css=False``)."""
    request = context.get("request")
    if not _is_shopper(request):
        return ""
    processor = get_processor(account or conf.default_account())
    config = vault_wallet_config(context, namespace=namespace, account=account)
    config.update({
        "checkoutSessionUrl": _url(namespace, "checkout-session"),
        "savedMethodsUrl": _url(namespace, "checkout-methods"),
    })
    return render_to_string("vault_wallets/wallet_script.html", {
        "config": config,
        "wallet_js": static("vault_wallets/wallet.js"), "css": css,
        "wallet_css": static("vault_wallets/wallet.css"),
        "adapter_js": static(f"vault_wallets/adapters/{processor.name}.js"),
    }, request=request)


def _is_shopper(request) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated)

