"""The JSON parser of every vault_wallets endpoint: DRF's, through ``safejson``.

Deep nesting, NUL bytes and lone surrogates (in values or keys), NaN/Infinity and invalid
UTF-8 are a 400 ``parse_error`` whose message never quotes the input.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .. import safejson


class SafeJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise ParseError(f"JSON parse error - the body is not {encoding}.")
        try:
            return safejson.loads(text)
        except safejson.UnsafeJSON as exc:
            raise ParseError(f"JSON parse error - {exc.reason}.")
