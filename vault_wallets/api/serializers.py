"""What the shopper API shows and accepts.  Never a token, a fingerprint or a database id."""

from __future__ import annotations

import datetime
import re

from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings

from .. import validators
from ..models import Address, Customer, SavedPaymentMethod
from ..processors import base as p
from ..services.payment_methods import LIST_COLUMNS

PRINTABLE = [validators.validate_printable]


class CustomerSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="uid", read_only=True)
    default_payment_method = serializers.SerializerMethodField()

    class Meta:
        model = Customer
        fields = ["id", "name", "email", "currency", "default_payment_method"]
        read_only_fields = fields

    def get_default_payment_method(self, obj) -> str | None:
        return self.context.get("default_payment_method_uid")


class PaymentMethodSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="uid", read_only=True)
    type = serializers.CharField(source="method_type", read_only=True)
    brand = serializers.SerializerMethodField()

    class Meta:
        model = SavedPaymentMethod
        fields = ["id", "type", "brand", "last4", "exp_month", "exp_year", "label", "is_default",
                  "verification_status", "status", "created_at"]
        read_only_fields = fields

    def get_brand(self, obj) -> str:
        return obj.bank_name if obj.method_type == p.METHOD_ACH and not obj.brand else obj.brand

    #: The model fields ``to_representation`` reads (the list endpoint selects only these).
    SOURCE_FIELDS = LIST_COLUMNS

    def to_representation(self, obj) -> dict:
        """The fields above, built directly: the list endpoint's hot path.

        DRF's generic path walks bound field objects per row (and rebuilds them per request, via
        ``ModelSerializer.get_fields``); this gives the same dict for a fraction of the cost.  A test
        compares it with DRF's own ``Serializer.to_representation`` field by field.
        """
        return {
            "id": obj.uid,
            "type": obj.method_type,
            "brand": obj.bank_name if obj.method_type == p.METHOD_ACH and not obj.brand else obj.brand,
            "last4": obj.last4,
            "exp_month": obj.exp_month,
            "exp_year": obj.exp_year,
            "label": obj.label,
            "is_default": obj.is_default,
            "verification_status": obj.verification_status,
            "status": obj.status,
            "created_at": _DATETIME.to_representation(obj.created_at) if obj.created_at else None,
        }


    @staticmethod
    def represent_rows(rows) -> list[dict]:
        """``to_representation`` of rows of ``values_list(*SOURCE_FIELDS)``, as tuples in that order.

        The list endpoint's rows come from a prepared query (``vault_wallets.prepared``), not model
        instances; a test compares both paths with DRF's own.
        """
        created = _datetime_representation()
        ach = p.METHOD_ACH
        return [{
            "id": uid,
            "type": method_type,
            "brand": bank_name if method_type == ach and not brand else brand,
            "last4": last4,
            "exp_month": exp_month,
            "exp_year": exp_year,
            "label": label,
            "is_default": is_default,
            "verification_status": verification_status,
            "status": status,
            "created_at": created(created_at) if created_at else None,
        } for (uid, method_type, brand, bank_name, last4, exp_month, exp_year, label, is_default,
               verification_status, status, created_at) in rows]


_DATETIME = serializers.DateTimeField(read_only=True)  # DRF's own datetime format, timezone and "Z"


def _datetime_representation():
    """``_DATETIME.to_representation`` with the format and time zone looked up once, not per value.

    DRF's ISO 8601 path (the default ``DATETIME_FORMAT``) for an aware datetime is: convert to the
    current time zone, ``isoformat()``, "+00:00" written "Z".  Any other format or value goes
    through DRF itself.
    """
    field = _DATETIME.to_representation
    output_format = getattr(_DATETIME, "format", api_settings.DATETIME_FORMAT)
    zone = _DATETIME.default_timezone()
    if output_format is None or output_format.lower() != ISO_8601 or zone is None:
        return field

    def represent(value):
        if not isinstance(value, datetime.datetime) or value.utcoffset() is None:
            return field(value)
        try:
            text = value.astimezone(zone).isoformat()
        except OverflowError:
            return field(value)  # DRF's own error
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return represent


class PaymentMethodListSerializer(serializers.Serializer):
    results = PaymentMethodSerializer(many=True)


class PaymentMethodCreateSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=512, help_text="The temporary token from the processor's tokenizer.")
    label = serializers.CharField(max_length=100, required=False, allow_blank=True, default="",  # type: ignore[assignment]
                                  validators=PRINTABLE)  # (a field named like Field.label)
    make_default = serializers.BooleanField(required=False, default=False)


_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know, so a PATCH cannot silently ignore a change."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - {n for n, f in self.fields.items() if not f.read_only})
            if unknown:
                # Only field-name-shaped keys are named back; anything else is never echoed.
                named = {k: ["This field cannot be changed."] for k in unknown if _FIELD_NAME.fullmatch(k)}
                if len(named) < len(unknown):
                    named["non_field_errors"] = ["The body holds keys that are not field names."]
                raise serializers.ValidationError(named)
        return super().to_internal_value(data)


class PaymentMethodUpdateSerializer(StrictSerializer):
    label = serializers.CharField(max_length=100, allow_blank=True, validators=PRINTABLE)  # type: ignore[assignment]


class DefaultPaymentMethodSerializer(serializers.Serializer):
    saved_payment_method_id = serializers.CharField(max_length=64)


class AddressSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="uid", read_only=True)
    make_default = serializers.BooleanField(write_only=True, required=False, default=False)

    class Meta:
        model = Address
        fields = ["id", "label", "name", "line1", "line2", "city", "state", "postal_code", "country",
                  "is_default", "make_default", "created_at"]
        read_only_fields = ["id", "is_default", "created_at"]
        extra_kwargs = {name: {"validators": PRINTABLE} for name in Address.TEXT_FIELDS}

    def validate_country(self, value: str) -> str:
        return validators.clean_country(value or "")


class AddressUpdateSerializer(StrictSerializer, AddressSerializer):
    pass


class AddressListSerializer(serializers.Serializer):
    results = AddressSerializer(many=True)


class CustomerTokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()
    expires_in = serializers.IntegerField()
    customer = serializers.CharField()
    processor_client_token = serializers.CharField(allow_null=True)
