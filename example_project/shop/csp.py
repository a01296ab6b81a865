"""A Content-Security-Policy for the example shop's pages (works on Django 5.2 and 6.x alike).

Scripts run only from this origin, from the configured processor's browser library origin, or
inline with the per-request nonce (``{{ request.csp_nonce }}``); nothing may frame the shop. The
origins per processor are the ones listed in docs/security.md ("Content-Security-Policy"),
taken from the processors' docs pages and their browser-library notes. In the fake-processor
mode (``VAULT_FAKE``) the fake's origin is admitted for its stand-in tokenizer.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from vault_wallets import conf
from vault_wallets.processors import get_processor

# script-src/frame-src: where the library and its hosted-field iframes load from;
# connect-src: where the library's XHRs go.  The sandbox tokenizes at this shop's own origin.
PROCESSOR_ORIGINS: dict[str, dict[str, tuple[str, ...]]] = {
    "sandbox": {},
    "paysimple": {  # PaySimpleJS: script and iframe from the API host (prod and sandbox)
        "script": ("https://api.paysimple.com", "https://sandbox-api.paysimple.com"),
        "frame": ("https://api.paysimple.com", "https://sandbox-api.paysimple.com"),
        "connect": ("https://api.paysimple.com", "https://sandbox-api.paysimple.com"),
    },
    "processout": {  # processout.js and its ccfield/messagehub iframes; XHR to the API
        "script": ("https://js.processout.com",),
        "frame": ("https://js.processout.com",),
        "connect": ("https://api.processout.com",),
    },
    "cybersource": {  # Microform v2: bundle and card-field iframes from (test)flex
        "script": ("https://flex.cybersource.com", "https://testflex.cybersource.com"),
        "frame": ("https://flex.cybersource.com", "https://testflex.cybersource.com"),
        "connect": ("https://flex.cybersource.com", "https://testflex.cybersource.com"),
    },
    "exact": {  # ExactJS from the P2 domain (prod and sandbox)
        "script": ("https://api-p2.exactpay.com", "https://api.exactpaysandbox.com"),
        "frame": ("https://api-p2.exactpay.com", "https://api.exactpaysandbox.com"),
        "connect": ("https://api-p2.exactpay.com", "https://api.exactpaysandbox.com"),
    },
    # Caselle's @caselle/payment-sdk is an npm package the shop bundles (served from 'self'); the
    # origin it proxynizes cards at is not documented, so none is admitted until Caselle says.
    "caselle": {},
}


def _origin(url: str) -> str:
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def policy(nonce: str) -> str:
    processor = get_processor(conf.default_account())
    origins = PROCESSOR_ORIGINS.get(processor.name, {})
    fake = _origin(processor.options.get("BASE_URL", "")) if processor.options.get("FAKE_TOKENIZER") else ""
    extra = (fake,) if fake else ()  # a fake serves its library stand-in and tokenizer itself
    script = ("'self'", f"'nonce-{nonce}'", *origins.get("script", ()), *extra)
    frame = (*origins.get("frame", ()), *extra) or ("'none'",)
    connect = ("'self'", *origins.get("connect", ()), *extra)
    return "; ".join([
        "default-src 'self'",
        f"script-src {' '.join(script)}",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        f"connect-src {' '.join(connect)}",
        f"frame-src {' '.join(frame)}",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
    ])


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.csp_nonce = secrets.token_urlsafe(16)
        response = self.get_response(request)
        if "Content-Security-Policy" not in response and response.get("Content-Type", "").startswith("text/html"):
            response["Content-Security-Policy"] = policy(request.csp_nonce)
        return response
