"""Explicit input schemas: only these fields are read from requests (no mass assignment).

Lago fields that Fusion Billing does not model (integrations, payment provider settings,
tax codes, invoice custom sections, ...) are accepted and ignored, as Lago ignores
unpermitted parameters, so unchanged clients keep working.
"""
from rest_framework import serializers

from billing_kit.errors import ErrorCode
from billing_kit.timezones import is_timezone_name
from identity.models import AccountMetadata

# ISO 639-1, optionally with a region (Lago's document locales: "fr", "pt-BR", ...).
LOCALE_PATTERN = r"^[a-z]{2}([-_][A-Za-z]{2})?$"


def _text(max_length: int) -> serializers.CharField:
    return serializers.CharField(max_length=max_length, required=False, allow_null=True, allow_blank=True)


def _country() -> serializers.RegexField:
    return serializers.RegexField(r"^[A-Za-z]{2}$", required=False, allow_null=True, allow_blank=True)


class BillingConfigurationInput(serializers.Serializer):
    invoice_grace_period = serializers.IntegerField(min_value=0, max_value=365, required=False, allow_null=True)
    document_locale = serializers.RegexField(LOCALE_PATTERN, required=False, allow_null=True, allow_blank=True)


class ShippingAddressInput(serializers.Serializer):
    address_line1 = _text(255)
    address_line2 = _text(255)
    city = _text(128)
    zipcode = _text(32)
    state = _text(64)
    country = _country()

    def validate_country(self, value):
        return value.upper() if value else value


class MetadataInput(serializers.Serializer):
    # Lago's own ids of items to update; an id the account does not hold creates a new item.
    id = serializers.CharField(max_length=64, required=False, allow_null=True, allow_blank=True)
    key = serializers.CharField(max_length=AccountMetadata.KEY_MAX_LENGTH)
    value = serializers.CharField(max_length=AccountMetadata.VALUE_MAX_LENGTH)
    display_in_invoice = serializers.BooleanField(required=False, allow_null=True)


class CustomerInput(serializers.Serializer):
    external_id = serializers.CharField(max_length=255)
    name = _text(255)
    firstname = _text(120)
    lastname = _text(120)
    legal_name = _text(255)
    legal_number = _text(255)
    email = serializers.EmailField(max_length=254, required=False, allow_null=True, allow_blank=True)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, allow_null=True)
    address_line1 = _text(255)
    address_line2 = _text(255)
    city = _text(128)
    zipcode = _text(32)
    state = _text(64)
    country = _country()
    phone = _text(64)
    url = _text(255)
    tax_identification_number = _text(64)
    customer_type = serializers.ChoiceField(["company", "individual"], required=False, allow_null=True)
    net_payment_term = serializers.IntegerField(min_value=0, max_value=3650, required=False, allow_null=True)
    billing_configuration = BillingConfigurationInput(required=False, allow_null=True)
    shipping_address = ShippingAddressInput(required=False, allow_null=True)
    metadata = MetadataInput(many=True, required=False, allow_null=True)
    # Lago's IANA ``timezone`` of the account (null or "" = none: BILLING_TIMEZONE applies).
    timezone = serializers.CharField(required=False, allow_null=True, allow_blank=True, trim_whitespace=False)

    def validate_country(self, value):
        return value.upper() if value else value

    def validate_timezone(self, value):
        if value and not is_timezone_name(value):
            raise serializers.ValidationError("unknown timezone", code=ErrorCode.INVALID_TIMEZONE)
        return value

    def validate_metadata(self, value):
        if value is None:
            return value
        if len(value) > AccountMetadata.MAX_PER_ACCOUNT:
            raise serializers.ValidationError("invalid_count", code="invalid_count")
        keys = [item["key"] for item in value]
        if len(keys) != len(set(keys)):
            raise serializers.ValidationError("value_already_exist", code="unique")
        return value
