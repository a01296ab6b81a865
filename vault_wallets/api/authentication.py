"""DRF authentication for the shopper API: a customer token (Bearer) or the Django session.

Bearer tokens are read from the ``Authorization`` header only, never from the query string.
A token that is expired, tampered with, revoked (its version is behind the customer's), or
issued for another account than the endpoint's answers 401.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions

from .. import tokens
from ..models import Customer


@dataclass(frozen=True)
class CustomerTokenAuth:
    """``request.auth`` for a request authenticated by a customer token."""

    customer: Customer
    claims: tokens.TokenClaims


def view_account(request) -> str:
    from .. import conf

    view = (getattr(request, "parser_context", None) or {}).get("view")
    if view is not None and hasattr(view, "get_account"):
        return view.get_account()
    return conf.default_account()


class CustomerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        try:
            raw = header[1].decode("ascii")
            claims = tokens.decode(raw)
        except (UnicodeDecodeError, tokens.InvalidCustomerToken):
            raise exceptions.AuthenticationFailed("Invalid or expired customer token.")
        if claims.account != view_account(request):
            raise exceptions.AuthenticationFailed("Invalid or expired customer token.")
        customer = (Customer.objects.select_related("user")
                    .filter(uid=claims.customer_uid, account=claims.account).first())
        if customer is None or customer.token_version != claims.version:
            raise exceptions.AuthenticationFailed("Invalid or expired customer token.")
        return customer.user or AnonymousUser(), CustomerTokenAuth(customer=customer, claims=claims)

    def authenticate_header(self, request):
        return f'{self.keyword} realm="vault_wallets"'
