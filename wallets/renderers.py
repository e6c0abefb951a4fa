"""Lago's wallet and wallet transaction objects (lago-python-client ``WalletResponse``,
``WalletTransactionResponse``). Credits are decimal strings; amounts integer minor units."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing_kit.formatting import iso_seconds, minor_unit_exponent, to_cents

from .models import RecurringTransactionRule, RuleMethod, RuleStatus, Wallet, WalletTransaction
from .selectors import Balance


def credits_text(value: Decimal) -> str:
    """Lago renders credits with their decimals ("10.0", "2.5"): normalized, at least one decimal."""
    text = format(value.normalize(), "f")
    return text if "." in text else f"{text}.0"


def render_rule(rule: RecurringTransactionRule) -> dict[str, Any]:
    """Lago's ``RecurringTransactionRuleResponse``."""
    target = rule.target_ongoing_balance
    return {
        "lago_id": str(rule.pk),
        "trigger": rule.trigger,
        "method": rule.method,
        "interval": rule.interval or None,
        "status": rule.status,
        "threshold_credits": credits_text(Decimal(rule.threshold_credits)),
        "paid_credits": credits_text(Decimal(rule.paid_credits)),
        "granted_credits": credits_text(Decimal(rule.granted_credits)),
        "target_ongoing_balance": credits_text(Decimal(target)) if target is not None else None,
        "grants_target_top_up": rule.grants_target_top_up if rule.method == RuleMethod.TARGET else None,
        "started_at": iso_seconds(rule.started_at),
        "expiration_at": iso_seconds(rule.expiration_at),
        "created_at": iso_seconds(rule.created_at),
        "invoice_requires_successful_payment": False,
        "ignore_paid_top_up_limits": rule.ignore_paid_top_up_limits,
        "transaction_metadata": rule.transaction_metadata or [],
        "transaction_name": rule.transaction_name or None,
        "purchase_order_number": None,
        "payment_method": None,
        "applied_invoice_custom_sections": [],
    }


def render_wallet(wallet: Wallet, balance: Balance) -> dict[str, Any]:
    rate = Decimal(wallet.rate_amount)
    amount = balance.credits * rate
    usage_credits = balance.usage_amount / rate
    link = wallet.account_link
    return {
        "lago_id": str(wallet.pk),
        "lago_customer_id": str(link.pk),
        "external_customer_id": link.external_id,
        "status": wallet.status,
        "currency": wallet.currency,
        "name": wallet.name or None,
        "code": wallet.code or None,
        "priority": wallet.priority,
        "rate_amount": credits_text(rate),
        "credits_balance": credits_text(balance.credits),
        "balance_cents": to_cents(amount, wallet.currency),
        "consumed_credits": credits_text(balance.consumed_credits),
        "consumed_amount_cents": to_cents(balance.consumed_credits * rate, wallet.currency),
        "created_at": iso_seconds(wallet.created_at),
        "expiration_at": iso_seconds(wallet.expiration_at),
        "last_balance_sync_at": iso_seconds(wallet.updated_at),
        "last_consumed_credit_at": iso_seconds(balance.last_consumed_at),
        "terminated_at": iso_seconds(wallet.terminated_at),
        # the active rule (Lago allows one); a replaced or expired rule is terminated and no longer listed
        "recurring_transaction_rules": [render_rule(r) for r in wallet.rules.all() if r.status == RuleStatus.ACTIVE],
        "ongoing_balance_cents": to_cents(amount - balance.usage_amount, wallet.currency),
        "ongoing_usage_balance_cents": to_cents(balance.usage_amount, wallet.currency),
        "credits_ongoing_balance": credits_text(balance.credits - usage_credits),
        "credits_ongoing_usage_balance": credits_text(usage_credits),
        "applies_to": None,
        "invoice_requires_successful_payment": False,
        "paid_top_up_max_amount_cents": None,
        "paid_top_up_min_amount_cents": None,
        "metadata": wallet.metadata,
        "payment_method": None,
        "applied_invoice_custom_sections": [],
        "billing_entity_code": wallet.service.code,
        "purchase_order_number": None,
    }


def render_transaction(tx: WalletTransaction) -> dict[str, Any]:
    wallet = tx.wallet
    return {
        "lago_id": str(tx.pk),
        "lago_wallet_id": str(wallet.pk),
        "lago_invoice_id": str(tx.invoice_id) if tx.invoice_id else None,
        "lago_credit_note_id": None,
        "lago_voided_invoice_id": None,
        "status": tx.status,
        "source": tx.source,
        "transaction_status": tx.transaction_status,
        "transaction_type": tx.transaction_type,
        "amount": format(Decimal(tx.amount).quantize(Decimal(1).scaleb(-minor_unit_exponent(wallet.currency))), "f"),
        "credit_amount": credits_text(Decimal(tx.credit_amount)),
        "remaining_amount_cents": None,
        "remaining_credit_amount": None,
        "priority": wallet.priority,
        "settled_at": iso_seconds(tx.settled_at),
        "failed_at": iso_seconds(tx.failed_at),
        "created_at": iso_seconds(tx.created_at),
        "metadata": tx.metadata or [],
        "name": tx.name or None,
        "invoice_requires_successful_payment": False,
        "purchase_order_number": None,
        "payment_method": None,
        "applied_invoice_custom_sections": [],
    }
