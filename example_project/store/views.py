"""The example shop's pages.  The checkout charges a saved method through vault_wallets' services;
the amount is the order total computed here from the cart, never a number from the browser."""

from __future__ import annotations

import secrets

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.dispatch import receiver
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from vault_wallets import services
from vault_wallets.exceptions import ChargeOutcomeUnknown, ProcessorError, VaultError
from vault_wallets.processors.money import to_major_string
from vault_wallets.signals import charge_updated

from .models import Order, Product


def _cart(request) -> dict[str, int]:
    return request.session.setdefault("cart", {})


def _cart_lines(request):
    cart = _cart(request)
    products = {p.slug: p for p in Product.objects.filter(slug__in=cart)}
    lines = [(products[slug], qty) for slug, qty in cart.items() if slug in products]
    total = sum(product.price_cents * qty for product, qty in lines)
    return lines, total


def home(request):
    return render(request, "store/home.html", {"products": Product.objects.order_by("price_cents")})


@require_POST
def add_to_cart(request, slug):
    product = get_object_or_404(Product, slug=slug)
    cart = _cart(request)
    cart[product.slug] = cart.get(product.slug, 0) + 1
    request.session.modified = True
    messages.success(request, f"{product.name} is in your cart.")
    return redirect("checkout")


@login_required
def checkout(request):
    lines, total = _cart_lines(request)
    return render(request, "store/checkout.html", {
        "lines": [(product, qty, to_major_string(product.price_cents * qty, product.currency))
                  for product, qty in lines],
        "total": to_major_string(total, "USD"), "has_items": bool(lines), "checkout_key": secrets.token_urlsafe(24),
    })


_SETTLED = {"captured": "paid", "authorized": "paid"}


def _order_status(charge) -> str:
    if charge.status in ("pending", "unknown"):
        return "confirming"
    return _SETTLED.get(charge.status, charge.status)


@login_required
@require_POST
def pay(request):
    lines, total = _cart_lines(request)
    key = (request.POST.get("checkout_key") or "")[:64]
    if not key:
        messages.error(request, "Please reload the checkout page and try again.")
        return redirect("checkout")
    method_uid = request.POST.get("saved_payment_method") or None
    if method_uid is None:
        messages.error(request, "Choose a saved card, or add one.")
        return redirect("checkout")
    # One order per checkout page, whatever the number of clicks: the unique key makes concurrent
    # submits meet on one row, and the order's idempotency key gives it one charge.
    order = Order.objects.filter(checkout_key=key, user=request.user).first()
    if order is None:
        if not lines:
            messages.error(request, "Your cart is empty.")
            return redirect("home")
        order, _ = Order.objects.get_or_create(checkout_key=key, user=request.user, defaults={
            "total_cents": total, "currency": "USD",
            "lines": [{"product": p.slug, "name": p.name, "quantity": q, "price_cents": p.price_cents}
                      for p, q in lines]})
    if order.status == "paid" or order.status == "confirming":
        return redirect("order", uid=order.uid)
    customer = services.get_or_create_customer(request.user)
    try:
        charge = services.charge(customer, order.total_cents, order.currency, method_uid,
                                 idempotency_key=f"order-{order.uid}", reference=order.uid)
    except ChargeOutcomeUnknown as exc:  # being confirmed with the processor: never charged twice
        charge = exc.charge
    except (VaultError, ProcessorError) as exc:
        order.status = "failed"
        order.save(update_fields=["status"])
        messages.error(request, f"Payment failed: {exc.message}")
        return redirect("checkout")
    order.charge, order.status = charge, _order_status(charge)
    # Concurrent submits answer from the same charge; never move a paid order back.
    Order.objects.filter(pk=order.pk).exclude(status="paid").update(charge=charge, status=order.status)
    if order.status not in ("paid", "confirming"):
        messages.error(request, f"Payment {charge.status}: {charge.failure_message or 'try another card.'}")
        return redirect("checkout")
    request.session["cart"] = {}
    return redirect("order", uid=order.uid)


@receiver(charge_updated, dispatch_uid="store-order-follows-its-charge")
def _order_follows_charge(sender, charge, **kwargs):
    """A charge settled later (looked up, or by the processor's webhook): its order follows."""
    Order.objects.filter(charge=charge).exclude(status=_order_status(charge)).update(status=_order_status(charge))
    if charge.reference:
        Order.objects.filter(uid=charge.reference, charge__isnull=True).update(charge=charge,
                                                                                status=_order_status(charge))


@login_required
def order_detail(request, uid):
    order = get_object_or_404(Order.objects.select_related("charge__payment_method"), uid=uid, user=request.user)
    return render(request, "store/order.html", {"order": order})
