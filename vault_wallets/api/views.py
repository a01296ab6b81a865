"""The shopper-facing endpoints.  Thin: they resolve the caller's customer and call services.

The customer is always resolved from ``request.user`` (session) or from a verified customer
token, never from an id in the request; every object is looked up inside that customer, so
another customer's uid answers 404 exactly like one that does not exist.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from drf_spectacular.utils import extend_schema as _extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import conf, services, tokens
from ..models import Address, Customer, SavedPaymentMethod
from ..processors import base as p
from ..processors import get_processor
from ..services.customers import customer_for_token
from ..services.payment_methods import visible_method_rows
from . import serializers as s
from . import throttling
from .authentication import CustomerTokenAuth, CustomerTokenAuthentication
from .errors import exception_handler
from .parsers import SafeJSONParser
from .permissions import IsShopper


def extend_schema(**kwargs):
    """drf-spectacular's ``extend_schema`` without requiring the shop's DEFAULT_SCHEMA_CLASS setting."""

    def decorate(func):
        func.schema = AutoSchema  # extend_schema builds on this class instead of the global default
        return _extend_schema(**kwargs)(func)

    return decorate


ERRORS = {code: OpenApiResponse(description=text) for code, text in {
    400: "Invalid input (nothing changed)", 401: "Not authenticated", 403: "CSRF failed or not allowed",
    404: "Not found (or not yours)", 503: "The payment processor is unavailable",
}.items()}


THROTTLED = {**ERRORS, 429: OpenApiResponse(description="Too many requests (see Retry-After)")}


class VaultAPIView(APIView):
    """Base of every shopper endpoint: JSON only, our auth, our error shape, our schema."""

    authentication_classes = [CustomerTokenAuthentication, SessionAuthentication]
    permission_classes = [IsShopper]
    renderer_classes = [JSONRenderer]
    parser_classes = [SafeJSONParser]
    schema = AutoSchema()

    def get_exception_handler(self):
        return exception_handler

    def finalize_response(self, request, response, *args, **kwargs):
        # A shopper's wallet is private: no shared or browser cache may keep any answer.
        response = super().finalize_response(request, response, *args, **kwargs)
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response

    def get_account(self) -> str:
        account = self.kwargs.get("vault_account") or conf.default_account()
        return account

    def get_customer(self) -> Customer:
        if not hasattr(self, "_customer"):
            auth = self.request.auth
            if isinstance(auth, CustomerTokenAuth):
                self._customer = auth.customer
            else:
                self._customer = services.get_or_create_customer(self.request.user, self.get_account())
        return self._customer


class CustomerTokenView(VaultAPIView):
    """Issue a short-lived customer token for the logged-in shopper (session + CSRF only)."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = throttling.CUSTOMER_TOKEN_THROTTLES

    @extend_schema(request=None, responses={201: s.CustomerTokenSerializer, **THROTTLED},
                   summary="Issue a customer token for the logged-in shopper",
                   operation_id="customer_token_create")
    def post(self, request, *args, **kwargs):
        # Whatever the body or query string says, the customer is the logged-in user's.
        account = self.get_account()
        processor = get_processor(account)
        client_token = None
        if processor.supports_client_token:
            customer = services.ensure_processor_customer(self.get_customer())
            issued_client = processor.get_client_token(customer.processor_ref)
            client_token = issued_client.token if issued_client else None
        else:
            customer = customer_for_token(request.user, account)  # only what the token carries
        issued = tokens.issue(customer)
        return Response({
            "token": issued.token, "expires_at": issued.expires_at, "expires_in": issued.expires_in,
            "customer": customer.uid, "processor_client_token": client_token,
        }, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class MeView(VaultAPIView):
    @extend_schema(responses={200: s.CustomerSerializer, **ERRORS}, summary="The caller's customer",
                   operation_id="me_retrieve")
    def get(self, request, *args, **kwargs):
        customer = self.get_customer()
        default = (SavedPaymentMethod.objects.visible().filter(customer=customer, is_default=True)
                   .values_list("uid", flat=True).first())
        return Response(s.CustomerSerializer(customer, context={"default_payment_method_uid": default}).data)


class PaymentMethodListView(VaultAPIView):
    throttle_classes = throttling.ADD_PAYMENT_METHOD_THROTTLES  # POST only

    @extend_schema(responses={200: s.PaymentMethodListSerializer, **ERRORS}, summary="List saved payment methods",
                   operation_id="payment_methods_list")
    def get(self, request, *args, **kwargs):
        if isinstance(request.auth, CustomerTokenAuth):
            rows = visible_method_rows(customer=request.auth.customer)
        else:
            # One query for the session shopper: the methods joined to their customer.
            rows = visible_method_rows(user=request.user, account=self.get_account())
            if not rows:
                self.get_customer()  # a shopper with none: resolve (on a first visit, create) the customer
        # Only the displayed columns, as plain rows (no model instances, nothing decrypted).
        return Response({"results": s.PaymentMethodSerializer.represent_rows(rows)})

    @extend_schema(request=s.PaymentMethodCreateSerializer,
                   responses={201: s.PaymentMethodSerializer, 200: s.PaymentMethodSerializer,
                              422: OpenApiResponse(description="The processor refused to verify it"), **THROTTLED},
                   summary="Save a payment method from a temporary token",
                   operation_id="payment_methods_create")
    def post(self, request, *args, **kwargs):
        data = s.PaymentMethodCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        customer = self.get_customer()
        throttling.check_verification_cooldown(customer)
        try:
            method, created = services.add_payment_method(
                customer, data.validated_data["token"], label=data.validated_data["label"],
                make_default=data.validated_data["make_default"],
            )
        except p.VerificationFailedError:
            throttling.record_verification_failure(customer)
            raise
        method.refresh_from_db()
        return Response(s.PaymentMethodSerializer(method).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class PaymentMethodDetailView(VaultAPIView):
    @extend_schema(responses={200: s.PaymentMethodSerializer, **ERRORS}, summary="One saved payment method",
                   operation_id="payment_method_retrieve")
    def get(self, request, uid, *args, **kwargs):
        return Response(s.PaymentMethodSerializer(services.get_payment_method(self.get_customer(), uid)).data)

    @extend_schema(request=s.PaymentMethodUpdateSerializer, responses={200: s.PaymentMethodSerializer, **ERRORS},
                   summary="Change a saved payment method's label",
                   operation_id="payment_method_update")
    def patch(self, request, uid, *args, **kwargs):
        data = s.PaymentMethodUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        method = services.update_payment_method(self.get_customer(), uid, label=data.validated_data["label"])
        return Response(s.PaymentMethodSerializer(method).data)

    @extend_schema(responses={204: None, **ERRORS}, summary="Remove a saved payment method",
                   operation_id="payment_method_destroy")
    def delete(self, request, uid, *args, **kwargs):
        services.remove_payment_method(self.get_customer(), uid)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DefaultPaymentMethodView(VaultAPIView):
    @extend_schema(request=s.DefaultPaymentMethodSerializer, responses={200: s.PaymentMethodSerializer, **ERRORS},
                   summary="Choose the default payment method",
                   operation_id="default_payment_method_set")
    def put(self, request, *args, **kwargs):
        data = s.DefaultPaymentMethodSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        method = services.set_default_payment_method(self.get_customer(),
                                                     data.validated_data["saved_payment_method_id"])
        method.refresh_from_db()
        return Response(s.PaymentMethodSerializer(method).data)


class AddressListView(VaultAPIView):
    @extend_schema(responses={200: s.AddressListSerializer, **ERRORS}, summary="List addresses",
                   operation_id="addresses_list")
    def get(self, request, *args, **kwargs):
        addresses = Address.objects.filter(customer=self.get_customer())
        return Response({"results": s.AddressSerializer(addresses, many=True).data})

    @extend_schema(request=s.AddressSerializer, responses={201: s.AddressSerializer, **ERRORS},
                   summary="Add an address",
                   operation_id="addresses_create")
    def post(self, request, *args, **kwargs):
        data = s.AddressSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        make_default = fields.pop("make_default", False)
        address = services.create_address(self.get_customer(), make_default=make_default, **fields)
        address.refresh_from_db()
        return Response(s.AddressSerializer(address).data, status=status.HTTP_201_CREATED)


class AddressDetailView(VaultAPIView):
    @extend_schema(responses={200: s.AddressSerializer, **ERRORS}, summary="One address",
                   operation_id="address_retrieve")
    def get(self, request, uid, *args, **kwargs):
        return Response(s.AddressSerializer(services.get_address(self.get_customer(), uid)).data)

    @extend_schema(request=s.AddressUpdateSerializer, responses={200: s.AddressSerializer, **ERRORS},
                   summary="Change an address",
                   operation_id="address_update")
    def patch(self, request, uid, *args, **kwargs):
        customer = self.get_customer()
        address = services.get_address(customer, uid)
        data = s.AddressUpdateSerializer(address, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        make_default = fields.pop("make_default", False)
        address = services.update_address(customer, address, make_default=make_default, **fields)
        address.refresh_from_db()
        return Response(s.AddressSerializer(address).data)

    @extend_schema(responses={204: None, **ERRORS}, summary="Delete an address",
                   operation_id="address_destroy")
    def delete(self, request, uid, *args, **kwargs):
        services.delete_address(self.get_customer(), uid)
        return Response(status=status.HTTP_204_NO_CONTENT)
