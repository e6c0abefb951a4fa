"""OpenAPI of the wallet and wallet transaction objects (as ``wallets.renderers`` writes them)."""
from __future__ import annotations

from billing_kit import examples
from billing_kit.wire import array, component, obj

from wallets.models import (
    RuleInterval,
    RuleMethod,
    RuleStatus,
    RuleTrigger,
    TransactionKind,
    TransactionStatus,
    TransactionType,
    WalletStatus,
)

_METADATA_ITEM = obj({"key": "string", "value": "string"})
_METADATA = {"type": "object", "additionalProperties": {"type": "string", "nullable": True}, "nullable": True}

RECURRING_TRANSACTION_RULE = component("WalletRecurringTransactionRule", obj({
    "lago_id": "string", "trigger": {"type": "string", "enum": RuleTrigger.values},
    "method": {"type": "string", "enum": RuleMethod.values},
    "interval": {"type": "string", "enum": RuleInterval.values, "nullable": True},
    "status": {"type": "string", "enum": RuleStatus.values}, "threshold_credits": "decimal",
    "paid_credits": "decimal", "granted_credits": "decimal", "target_ongoing_balance": "decimal?",
    "grants_target_top_up": "boolean?", "started_at": "datetime?", "expiration_at": "datetime?",
    "created_at": "datetime", "invoice_requires_successful_payment": "boolean",
    "ignore_paid_top_up_limits": "boolean", "transaction_metadata": array(_METADATA_ITEM),
    "transaction_name": "string?", "purchase_order_number": "string?", "payment_method": "object?",
    "applied_invoice_custom_sections": "array",
}, description="A recurring top-up of a wallet (Lago allows one per wallet): on an interval, or when the "
               "ongoing balance falls to or below threshold_credits."))

WALLET_METADATA = obj({"metadata": _METADATA})

WALLET = component("Wallet", obj({
    "lago_id": "string", "lago_customer_id": "string", "external_customer_id": "string",
    "status": {"type": "string", "enum": WalletStatus.values}, "currency": "currency",
    "name": "string?", "code": "string?", "priority": "integer", "rate_amount": "decimal",
    "credits_balance": "decimal", "balance_cents": "integer", "consumed_credits": "decimal",
    "consumed_amount_cents": "integer", "created_at": "datetime", "expiration_at": "datetime?",
    "last_balance_sync_at": "datetime?", "last_consumed_credit_at": "datetime?", "terminated_at": "datetime?",
    "recurring_transaction_rules": array(RECURRING_TRANSACTION_RULE), "ongoing_balance_cents": "integer",
    "ongoing_usage_balance_cents": "integer", "credits_ongoing_balance": "decimal",
    "credits_ongoing_usage_balance": "decimal", "applies_to": "object?",
    "invoice_requires_successful_payment": "boolean", "paid_top_up_max_amount_cents": "integer?",
    "paid_top_up_min_amount_cents": "integer?", "metadata": _METADATA, "payment_method": "object?",
    "applied_invoice_custom_sections": "array", "billing_entity_code": "string",
    "purchase_order_number": "string?",
}, description="A wallet of prepaid credits; its balances are derived from its transactions (credits are "
               "decimal strings, amounts integer minor units)."))

WALLET_TRANSACTION = component("WalletTransaction", obj({
    "lago_id": "string", "lago_wallet_id": "string", "lago_invoice_id": "string?",
    "lago_credit_note_id": "string?", "lago_voided_invoice_id": "string?",
    "status": {"type": "string", "enum": TransactionStatus.values}, "source": "string",
    "transaction_status": {"type": "string", "enum": TransactionKind.values},
    "transaction_type": {"type": "string", "enum": TransactionType.values},
    "amount": "decimal", "credit_amount": "decimal", "remaining_amount_cents": "integer?",
    "remaining_credit_amount": "decimal?", "priority": "integer", "settled_at": "datetime?",
    "failed_at": "datetime?", "created_at": "datetime", "metadata": array(_METADATA_ITEM), "name": "string?",
    "invoice_requires_successful_payment": "boolean", "purchase_order_number": "string?",
    "payment_method": "object?", "applied_invoice_custom_sections": "array",
}))

# Example values (billing_kit.examples derives the rest from the schemas above).
examples.values("wallet", name="Prepaid credits", code="prepaid", status="active", rate_amount="1.0",
                paid_credits="100.0", granted_credits="0.0", credits_balance="100.0", balance_cents=10000,
                consumed_credits="0.0", consumed_amount_cents=0, priority=50, expiration_at=None)
examples.values("wallet_transaction", paid_credits="20.0", granted_credits="0.0", amount="20.0",
                credit_amount="20.0", status="settled", transaction_status="purchased",
                transaction_type="inbound")
