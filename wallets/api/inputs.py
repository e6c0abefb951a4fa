"""Explicit inputs of ``/wallets`` and ``/wallet_transactions`` (lago-python-client ``Wallet``,
``WalletTransaction``). Lago fields not built are refused with ``not_supported`` when set."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from billing_kit.errors import ErrorCode

CREDITS: dict[str, Any] = {"max_digits": 28, "decimal_places": 10, "min_value": Decimal(0), "required": False,
                           "allow_null": True}


def _refuse_if_set(serializer: serializers.Serializer, value: Any) -> Any:
    if value:
        raise serializers.ValidationError(ErrorCode.NOT_SUPPORTED, code=ErrorCode.NOT_SUPPORTED)
    return value


def _anything() -> serializers.JSONField:
    return serializers.JSONField(required=False, allow_null=True)


class MetadataItem(serializers.Serializer):
    key = serializers.CharField(max_length=255)
    value = serializers.CharField(max_length=255, allow_blank=True)


class WalletUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    code = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    priority = serializers.IntegerField(min_value=1, max_value=50, required=False, allow_null=True)
    expiration_at = serializers.DateTimeField(required=False, allow_null=True)
    # Checked by wallets.services as Lago's validators do (invalid_recurring_rule, ...).
    recurring_transaction_rules = serializers.JSONField(required=False, allow_null=True)
    # Lago's wallet metadata: string keys, string or null values (checked by the service).
    metadata = serializers.JSONField(required=False, allow_null=True)
    # Not built: fee restrictions, top-up limits, payment options, settlement before credit.
    applies_to = _anything()
    invoice_requires_successful_payment = serializers.BooleanField(required=False, allow_null=True)
    paid_top_up_max_amount_cents = _anything()
    paid_top_up_min_amount_cents = _anything()
    payment_method = _anything()
    invoice_custom_section = _anything()
    purchase_order_number = _anything()

    validate_applies_to = _refuse_if_set
    validate_invoice_requires_successful_payment = validate_paid_top_up_max_amount_cents = _refuse_if_set
    validate_paid_top_up_min_amount_cents = validate_payment_method = _refuse_if_set
    validate_invoice_custom_section = validate_purchase_order_number = _refuse_if_set


class WalletInput(WalletUpdateInput):
    external_customer_id = serializers.CharField(max_length=255)
    rate_amount = serializers.DecimalField(max_digits=28, decimal_places=10, min_value=Decimal("0.0000000001"))
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, allow_null=True)
    paid_credits = serializers.DecimalField(**CREDITS)
    granted_credits = serializers.DecimalField(**CREDITS)
    transaction_metadata = serializers.ListField(child=MetadataItem(), required=False, allow_null=True)
    transaction_name = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    ignore_paid_top_up_limits_on_creation = serializers.BooleanField(required=False, allow_null=True)
    billing_entity_code = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class WalletTransactionInput(serializers.Serializer):
    wallet_id = serializers.CharField(max_length=64)
    paid_credits = serializers.DecimalField(**CREDITS)
    granted_credits = serializers.DecimalField(**CREDITS)
    voided_credits = serializers.DecimalField(**CREDITS)
    metadata = serializers.ListField(child=MetadataItem(), required=False, allow_null=True)
    name = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    invoice_requires_successful_payment = serializers.BooleanField(required=False, allow_null=True)
    ignore_paid_top_up_limits = serializers.BooleanField(required=False, allow_null=True)
    purchase_order_number = _anything()
    payment_method = _anything()
    invoice_custom_section = _anything()

    validate_invoice_requires_successful_payment = validate_purchase_order_number = _refuse_if_set
    validate_payment_method = validate_invoice_custom_section = _refuse_if_set
