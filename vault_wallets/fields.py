"""Model fields of our own: a JSON value Fernet-encrypted at rest (``FERNET_KEYS``, like tokens)."""

from __future__ import annotations

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.encoding import force_str
from fernet_fields import EncryptedTextField


class EncryptedJSONField(EncryptedTextField):
    """A JSON document (dict, list, str, number…) stored as one Fernet token.

    Nothing about the value can be queried in the database (lookups other than ``isnull``
    are refused, as for every encrypted field); the ``django.db.backends`` log of an
    INSERT or UPDATE shows only the ciphertext.
    """

    def get_prep_value(self, value):
        if value is None:
            return None
        return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":"))

    def from_db_value(self, value, expression, connection, *args):
        if value is None:
            return None
        return json.loads(force_str(self.fernet.decrypt(bytes(value))))

    def to_python(self, value):
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def value_to_string(self, obj):
        return self.get_prep_value(self.value_from_object(obj))
