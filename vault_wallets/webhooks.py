"""``POST /wallet/webhooks/<account>/``: receive a processor delivery.

Order of work: size limit (413) → the account's processor verifies the request (400 with a
short reason) → the event is stored (duplicates: 200, stored once) → processing is enqueued on
commit → 200.  Processing never happens here (except with eager Celery, the zero-setup demo).
Bad input is always a 4xx, never a 500.
"""

from __future__ import annotations

import logging
import re

from django.db import transaction
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from . import conf, safejson
from .processors import base as p
from .processors import get_processor
from .services.events import store_delivery

logger = logging.getLogger("vault_wallets.webhooks")


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


class _LengthRequired(Exception):
    pass


def _read_body(request, limit: int) -> bytes | None:
    """The body, or None if it is over ``limit``.

    A chunked delivery (``Transfer-Encoding: chunked``, no ``Content-Length``) is read from the
    de-chunked ``wsgi.input`` when the server says it is terminated (gunicorn, uWSGI, mod_wsgi
    set ``wsgi.input_terminated``); a server that does not de-chunk (``runserver``) gives Django
    an empty stream, so the delivery is refused with 411 rather than read as an empty body. Under
    ASGI (no ``wsgi.input``) the server de-chunks and Django has the whole body before the view: it
    is read like any other, up to the limit.
    """
    length = request.META.get("CONTENT_LENGTH")
    chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not length and chunked and "wsgi.input" in request.META:
        if not request.META.get("wsgi.input_terminated"):
            raise _LengthRequired()
        body = request.META["wsgi.input"].read(limit + 1)
        return None if len(body) > limit else body
    try:
        declared = int(length or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


#: Refused in the event id and type we store: control characters (C0 with NUL, DEL, C1), lone surrogates.
_BAD_ID_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _check_payload(delivery: p.WebhookRequest, event_id: str, event_type: str) -> None:
    """Hostile but correctly signed (or unsigned, for ProcessOut) deliveries: the body must be
    JSON within ``safejson``'s limits (parsed once per delivery: the processor module's own
    parse shares it), and the id and type we store must be clean text."""
    delivery.payload  # noqa: B018 - raises safejson.UnsafeJSON
    for value in (event_id, event_type):
        if not isinstance(value, str) or _BAD_ID_TEXT.search(value):
            raise safejson.UnsafeJSON("the event id or type holds control characters or lone surrogates")


def _headers(meta) -> dict[str, str]:
    """``request.headers`` with lower-cased names, read straight from the WSGI environ (the
    same names and values as Django's ``HttpHeaders``, without building it)."""
    headers = {}
    for key, value in meta.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
        elif key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
            headers[key.replace("_", "-").lower()] = value
    return headers


@csrf_exempt
@transaction.non_atomic_requests
def receive_webhook(request, account: str, **kwargs):
    if request.method != "POST":
        response = _error(405, "method_not_allowed", "Webhooks are delivered with POST.")
        response["Allow"] = "POST"
        return response
    try:
        body = _read_body(request, conf.get_setting("WEBHOOK_MAX_BODY_BYTES"))
    except _LengthRequired:
        return _error(411, "length_required", "Send the webhook with a Content-Length (this server cannot read "
                                              "chunked bodies).")
    if body is None:
        return _error(413, "payload_too_large", "The webhook body is too large.")
    if not conf.is_configured_account(account):
        return _error(400, "unknown_account", "Unknown account.")
    processor = get_processor(account)
    delivery = p.WebhookRequest(
        headers=_headers(request.META), body=body,
        remote_addr=request.META.get("REMOTE_ADDR", ""), received_at=timezone.now(),
    )
    try:
        processor.verify_webhook(delivery)
        event_id, event_type = processor.webhook_event_id(delivery)
        body.decode("utf-8")
        _check_payload(delivery, event_id, event_type)
    except p.WebhookVerificationError as exc:
        logger.info("webhook for %s refused: %s", account, exc.reason)
        code = "malformed_payload" if isinstance(exc, p.WebhookParseError) else "verification_failed"
        return _error(400, code, exc.reason)
    except safejson.UnsafeJSON as exc:
        logger.info("webhook for %s refused: %s", account, exc.reason)
        return _error(400, "malformed_payload", exc.reason)
    except (ValueError, TypeError, KeyError, UnicodeError, RecursionError) as exc:  # a processor module's edge
        logger.warning("webhook for %s could not be read: %s", account, type(exc).__name__)
        return _error(400, "malformed_payload", "The webhook could not be read.")
    event, created = store_delivery(account, processor, delivery, event_id, event_type)
    return JsonResponse({"received": True, "id": event.uid, "duplicate": not created}, status=200)
