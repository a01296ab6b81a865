"""``POST /wallet/sandbox/tokens/``: the sandbox's stand-in for a processor's browser tokenizer.

Card: ``{"number", "exp_month", "exp_year", "cvc", "holder_name"?}``; bank account:
``{"routing_number", "account_number", "account_type"?, "holder_name"?}``.
→ ``201 {"token": "tok_sbx_…", "expires_at": "…"}``: single use, 15 minutes.
It answers 404 unless the mounted account uses the sandbox processor.
"""

from __future__ import annotations

from django.http import Http404
from rest_framework import serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import conf
from ..api.errors import error_response, exception_handler
from ..api.parsers import SafeJSONParser
from ..api.throttling import SANDBOX_TOKENIZE_THROTTLES
from ..processors import get_processor
from ..processors.sandbox import SandboxProcessor


class CardSerializer(serializers.Serializer):
    number = serializers.CharField(max_length=23)
    exp_month = serializers.IntegerField()
    exp_year = serializers.IntegerField()
    cvc = serializers.CharField(max_length=4)
    holder_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class BankAccountSerializer(serializers.Serializer):
    routing_number = serializers.CharField(max_length=9)
    account_number = serializers.CharField(max_length=17)
    account_type = serializers.ChoiceField(choices=["checking", "savings"], required=False, default="checking")
    holder_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class SandboxTokenView(APIView):
    authentication_classes = []  # a processor's public tokenizer: no shop session, no CSRF
    permission_classes = []
    throttle_classes = SANDBOX_TOKENIZE_THROTTLES  # per client IP: it is anonymous
    renderer_classes = [JSONRenderer]
    parser_classes = [SafeJSONParser]
    schema = None

    def get_exception_handler(self):
        return exception_handler

    def post(self, request, *args, **kwargs):
        account = kwargs.get("vault_account") or conf.default_account()
        if not conf.is_configured_account(account) or not isinstance(get_processor(account), SandboxProcessor):
            raise Http404
        from . import engine  # the sandbox app's models load only when it is installed

        is_bank = isinstance(request.data, dict) and "routing_number" in request.data
        data = (BankAccountSerializer if is_bank else CardSerializer)(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            if is_bank:
                issued = engine.tokenize_bank_account(account, **data.validated_data)
            else:
                issued = engine.tokenize_card(account, **data.validated_data)
        except engine.EngineError as exc:
            return error_response(exc.code, exc.message, exc.status,
                                  {exc.field: [exc.message]} if exc.field else None)
        return Response(issued, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})
