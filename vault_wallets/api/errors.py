"""One JSON error shape for every shopper endpoint::

    {"error": {"code": "payment_method_not_found", "message": "…", "fields": {...}}}

Bad input is a 4xx and changes nothing.  A processor outage is a 503 (not the shopper's
fault, not a crash); the processor's credentials being refused is a 502 with a generic
message (the details go to the log, without secrets).
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from ..exceptions import VaultError
from ..processors import base as p

logger = logging.getLogger("vault_wallets.api")


def error_response(code: str, message: str, http_status: int, fields=None, headers=None) -> Response:
    body = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return Response({"error": body}, status=http_status, headers=headers)


# Processor errors: a stable code of ours, the processor's own code alongside.
_PROCESSOR_ERRORS = [
    (p.TemporaryTokenError, status.HTTP_400_BAD_REQUEST, "invalid_temporary_token"),
    (p.VerificationFailedError, status.HTTP_422_UNPROCESSABLE_ENTITY, "verification_failed"),
    (p.DeclinedError, status.HTTP_402_PAYMENT_REQUIRED, "card_declined"),
    (p.NotFoundError, status.HTTP_404_NOT_FOUND, "not_found"),
    (p.InvalidRequestError, status.HTTP_400_BAD_REQUEST, "processor_invalid_request"),
    (p.UnsupportedOperation, status.HTTP_400_BAD_REQUEST, "unsupported"),
    (p.ProcessorUnavailable, status.HTTP_503_SERVICE_UNAVAILABLE, "processor_unavailable"),
]


def exception_handler(exc, context):
    set_rollback()
    if isinstance(exc, RequestDataTooBig):  # over DATA_UPLOAD_MAX_MEMORY_SIZE: JSON, not Django's HTML 400
        return error_response("payload_too_large", "The request body is too large.", 413)
    if isinstance(exc, Http404):
        return error_response("not_found", "Not found.", 404)
    if isinstance(exc, PermissionDenied):
        return error_response("permission_denied", "You do not have permission to do this.", 403)
    if isinstance(exc, DjangoValidationError):
        fields = exc.message_dict if hasattr(exc, "error_dict") else None
        return error_response("invalid", "; ".join(exc.messages), 400, fields)
    if isinstance(exc, VaultError):
        return error_response(exc.code, exc.message, exc.status)
    if isinstance(exc, p.AuthenticationError):
        logger.error("processor %s refused the account's credentials: %s", exc.processor, exc.message)
        return error_response("processor_configuration", "The payment processor rejected this shop's credentials.",
                              502)
    for klass, http_status, code in _PROCESSOR_ERRORS:
        if isinstance(exc, klass):
            if klass is p.ProcessorUnavailable:
                logger.warning("processor %s unavailable: %s", exc.processor, exc.message)
            response = error_response(code, exc.message, http_status)
            response.data["error"]["processor_code"] = exc.code
            return response
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            return error_response("invalid", "Invalid input.", 400, detail)
        return error_response("invalid", " ".join(str(d) for d in detail) if isinstance(detail, list)
                              else str(detail), 400)
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        detail = exc.detail
        message = str(detail) if not isinstance(detail, (list, dict)) else "Invalid request."
        if isinstance(exc, exceptions.Throttled):
            message = _throttled_message(exc, message)
        return error_response(exc.default_code if isinstance(exc.default_code, str) else "error", message,
                              exc.status_code, headers=headers)
    return None


def _throttled_message(exc, message: str) -> str:
    """DRF's wording ("Request was throttled. Expected available in 3598 seconds.") reaches the
    shopper through the checkout's error box: say it in minutes instead.  A throttle that gave its
    own sentence (the verification cool-down) keeps it, without DRF's seconds suffix."""
    default = str(exceptions.Throttled.default_detail)
    suffix = str(exceptions.Throttled(wait=exc.wait).detail)[len(default):] if exc.wait else ""
    if suffix and message.endswith(suffix):
        message = message[:-len(suffix)]
    if message != default:
        return message
    if not exc.wait:
        return "Too many attempts. Please try again later."
    minutes = max(1, -(-int(exc.wait) // 60))
    return f"Too many attempts. Please try again in {minutes} minute{'s' if minutes != 1 else ''}."
