"""``POST /wallet/checkout-session/``: what the processor's browser library needs before tokenizing.

For the logged-in shopper only (session + CSRF): the customer is ``request.user``'s, whatever
the request says.  The answer holds only what the processor's library needs in the browser —
short-lived or public values, listed per processor in the docs — never an API key, a
vaulted token or a processor customer secret.
"""

from __future__ import annotations

from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from .. import services
from ..services.checkout import start_checkout
from .views import ERRORS, VaultAPIView, extend_schema


class CheckoutSessionSerializer(serializers.Serializer):
    processor = serializers.CharField(help_text="The account's processor (sandbox, paysimple, …).")
    sdk = serializers.DictField(help_text="{url, integrity}: the processor's browser library.")
    client = serializers.DictField(help_text="What the library needs (per processor; see the docs).")
    expires_at = serializers.DateTimeField(allow_null=True)


def page_origin(request) -> str:
    """The shop's own origin as Django knows it (``ALLOWED_HOSTS``-validated Host, scheme per
    ``SECURE_PROXY_SSL_HEADER``), never an ``Origin`` value taken on trust."""
    return request.build_absolute_uri("/").rstrip("/")


class CheckoutSessionView(VaultAPIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={201: CheckoutSessionSerializer, **ERRORS},
                   summary="Start a browser tokenization session for the logged-in shopper",
                   operation_id="checkout_session_create")
    def post(self, request, *args, **kwargs):
        customer = services.get_or_create_customer(request.user, self.get_account())
        session = start_checkout(customer, page_origin(request))
        return Response({
            "processor": session.processor,
            "sdk": {"url": session.sdk_url, "integrity": session.sdk_integrity},
            "client": dict(session.client),
            "expires_at": session.expires_at,
        }, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})
