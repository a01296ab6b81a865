"""``POST /wallet/webhooks/<account>/``: receive a processor delivery.

Order of work: size limit (413) → the account's processor verifies the request (400 with a
short reason) → the event is stored (duplicates: 200, stored once) → processing is enqueued on
commit → 200.  Processing never happens here (except with eager Celery, the zero-setup demo).
Bad input is always a 4xx, never a 500.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from . import conf
from .processors import base as p
from .processors import get_processor
from .services.events import store_delivery

logger = logging.getLogger("vault_wallets.webhooks")


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _read_body(request, limit: int) -> bytes | None:
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


@csrf_exempt
@transaction.non_atomic_requests
def receive_webhook(request, account: str, **kwargs):
    if request.method != "POST":
        response = _error(405, "method_not_allowed", "Webhooks are delivered with POST.")
        response["Allow"] = "POST"
        return response
    body = _read_body(request, conf.get_setting("WEBHOOK_MAX_BODY_BYTES"))
    if body is None:
        return _error(413, "payload_too_large", "The webhook body is too large.")
    if not conf.is_configured_account(account):
        return _error(400, "unknown_account", "Unknown account.")
    processor = get_processor(account)
    delivery = p.WebhookRequest(
        headers={k.lower(): v for k, v in request.headers.items()}, body=body,
        remote_addr=request.META.get("REMOTE_ADDR", ""), received_at=timezone.now(),
    )
    try:
        processor.verify_webhook(delivery)
        event_id, event_type = processor.webhook_event_id(delivery)
        body.decode("utf-8")
    except p.WebhookVerificationError as exc:
        logger.info("webhook for %s refused: %s", account, exc.reason)
        code = "malformed_payload" if isinstance(exc, p.WebhookParseError) else "verification_failed"
        return _error(400, code, exc.reason)
    except (ValueError, TypeError, KeyError, UnicodeError) as exc:  # a processor module's parsing edge
        logger.warning("webhook for %s could not be read: %s", account, type(exc).__name__)
        return _error(400, "malformed_payload", "The webhook could not be read.")
    event, created = store_delivery(account, processor, delivery, event_id, event_type)
    return JsonResponse({"received": True, "id": event.uid, "duplicate": not created}, status=200)
