"""Explicit input schemas: only these fields are read from requests (no mass assignment).

Lago fields that Fusion Billing does not model (metadata, billing
configuration, integrations, ...) are accepted and ignored, as Lago ignores
unpermitted parameters, so unchanged clients keep working.
"""
from rest_framework import serializers

from billing_kit.errors import ErrorCode
from billing_kit.timezones import is_timezone_name


class CustomerInput(serializers.Serializer):
    external_id = serializers.CharField(max_length=255)
    name = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    firstname = serializers.CharField(max_length=120, required=False, allow_null=True, allow_blank=True)
    lastname = serializers.CharField(max_length=120, required=False, allow_null=True, allow_blank=True)
    legal_name = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    email = serializers.EmailField(max_length=254, required=False, allow_null=True, allow_blank=True)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, allow_null=True)
    address_line1 = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    address_line2 = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    city = serializers.CharField(max_length=128, required=False, allow_null=True, allow_blank=True)
    zipcode = serializers.CharField(max_length=32, required=False, allow_null=True, allow_blank=True)
    state = serializers.CharField(max_length=64, required=False, allow_null=True, allow_blank=True)
    country = serializers.RegexField(r"^[A-Za-z]{2}$", required=False, allow_null=True, allow_blank=True)
    phone = serializers.CharField(max_length=64, required=False, allow_null=True, allow_blank=True)
    tax_identification_number = serializers.CharField(max_length=64, required=False, allow_null=True,
                                                      allow_blank=True)
    customer_type = serializers.ChoiceField(["company", "individual"], required=False, allow_null=True)
    # Lago's IANA ``timezone`` of the account (null or "" = none: BILLING_TIMEZONE applies).
    timezone = serializers.CharField(required=False, allow_null=True, allow_blank=True, trim_whitespace=False)

    def validate_timezone(self, value):
        if value and not is_timezone_name(value):
            raise serializers.ValidationError("unknown timezone", code=ErrorCode.INVALID_TIMEZONE)
        return value

    def validate_country(self, value):
        return value.upper() if value else value
