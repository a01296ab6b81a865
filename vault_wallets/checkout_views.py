"""The checkout tags' server side without JavaScript (and the fragment wallet.js refreshes).

``POST /wallet/checkout/manage/`` is the ``formaction`` of the "Make default" and "Remove"
buttons that ``{% vault_saved_methods %}`` renders inside the shop's own form: it works with
JavaScript turned off.  Removing asks for confirmation first (a page with one button).
``GET /wallet/checkout/methods/`` renders the same saved-methods template as the tag, so
wallet.js can refresh the list after a change without a second template to restyle.

Both are for the logged-in shopper only; the customer comes from ``request.user``, and
another customer's method answers 404 like a missing one.
"""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from . import conf, services
from .exceptions import VaultError
from .models import Customer
from .processors.base import ProcessorError
from .templatetags.vault_wallets import accessible_name, method_rows, saved_methods_context

_UID = re.compile(r"spm_[A-Za-z0-9_-]{1,64}")


def _uid(value: str) -> str:
    """A well-formed saved-method uid, or "" (hostile values never reach the database)."""
    return value if _UID.fullmatch(value or "") else ""


def _account(kwargs) -> str:
    return kwargs.get("vault_account") or conf.default_account()


def _safe_next(request, value: str) -> str:
    if value and url_has_allowed_host_and_scheme(value, allowed_hosts={request.get_host()},
                                                 require_https=request.is_secure()):
        return value
    return "/"


@never_cache
@require_GET
def saved_methods_fragment(request, **kwargs):
    if not request.user.is_authenticated:
        return HttpResponse(status=401)
    customer = Customer.objects.filter(account=_account(kwargs), user=request.user).first()
    ctx = saved_methods_context(request, customer, field_name=_field_name(request),
                                next_url=_safe_next(request, request.GET.get("next", "").replace("\x00", "")))
    return HttpResponse(render_to_string("vault_wallets/saved_methods.html", ctx, request=request))


def _field_name(request) -> str:
    name = request.GET.get("field", "saved_payment_method")
    return name if name.replace("_", "").replace("-", "").isalnum() and len(name) <= 64 else "saved_payment_method"


@never_cache
@require_POST
def manage(request, **kwargs):
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    next_url = _safe_next(request, request.POST.get("vault_next", "").replace("\x00", ""))
    customer = services.get_or_create_customer(request.user, _account(kwargs))
    remove_uid = request.POST.get("vault_remove", "")
    default_uid = request.POST.get("vault_make_default", "")
    if (remove_uid and not _uid(remove_uid)) or (default_uid and not _uid(default_uid)):
        raise Http404
    try:
        if remove_uid:
            method = services.get_payment_method(customer, remove_uid)
            name = accessible_name(method)
            if request.POST.get("vault_confirm") != "yes":
                return render(request, "vault_wallets/confirm_remove.html", {
                    "method": method_rows([method])[0], "next_url": next_url,
                    "manage_url": request.path})
            services.remove_payment_method(customer, method)
            messages.success(request, f"{name} was removed.")
        elif default_uid:
            method = services.set_default_payment_method(customer, default_uid)
            messages.success(request, f"{accessible_name(method)} is now your default.")
        else:
            raise Http404
    except VaultError as exc:
        if exc.status == 404:
            raise Http404 from None
        messages.error(request, exc.message)
    except ProcessorError as exc:
        messages.error(request, f"That did not work: {exc.message}")
    return redirect(next_url)
