"""Writes of wallets and their transactions (Lago's ``Wallets::*`` and ``WalletTransactions::*``).

Every change is written with its webhook events in one transaction (the outbox). The balance is
derived from the settled transactions (``selectors.credits_of``); a write that needs it locks the
wallet row first, so two writers never spend the same credits.

- granted credits settle at once; voided credits leave at once (never more than the balance);
- paid credits stay ``pending`` until Odoo says their one-off invoice is paid (the bridge makes the
  invoice from ``selectors.purchases_awaiting_invoice`` and calls ``settle_purchase`` from the pull);
- consumption (``consume``) is one outbound ``invoiced`` transaction per subscription window, written
  by the bridge in the same transaction as the sync state of its Odoo line;
- a terminated or expired wallet voids what is left.
"""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_kit.errors import ErrorCode, NotAllowed, ValidationFailed
from billing_kit.formatting import minor_unit_exponent
from identity.models import AccountLink, Service
from metering.models import AMOUNT, Subscription
from webhooks.event_types import WebhookType
from webhooks.services import record_event

from .models import (
    TransactionKind,
    TransactionStatus,
    TransactionType,
    Wallet,
    WalletStatus,
    WalletTransaction,
)
from .renderers import render_transaction, render_wallet
from .selectors import balances, credits_of

ZERO = Decimal(0)
AMOUNT_QUANTUM = Decimal(1).scaleb(-AMOUNT["decimal_places"])


# The input field each kind of transaction comes from (where an out-of-range amount is reported).
INPUT_FIELD: dict[str, str] = {TransactionKind.PURCHASED: "paid_credits", TransactionKind.GRANTED: "granted_credits",
               TransactionKind.VOIDED: "voided_credits"}
AMOUNT_LIMIT = Decimal(10) ** (AMOUNT["max_digits"] - AMOUNT["decimal_places"])


def _amount(wallet: Wallet, credits: Decimal, *, field: str = "credits") -> Decimal:
    amount = (credits * Decimal(wallet.rate_amount)).quantize(AMOUNT_QUANTUM)
    if amount >= AMOUNT_LIMIT:
        raise ValidationFailed({field: [ErrorCode.VALUE_IS_OUT_OF_RANGE]})
    return amount


def _wallet_event(wallet: Wallet, webhook_type: str) -> None:
    record_event(service=wallet.service, webhook_type=webhook_type, object_type="wallet",
                 payload=render_wallet(wallet, balances([wallet])[wallet.pk]))


def _transaction_event(tx: WalletTransaction, webhook_type: str) -> None:
    record_event(service=tx.wallet.service, webhook_type=webhook_type, object_type="wallet_transaction",
                 payload=render_transaction(tx))


def _locked(wallet: Wallet) -> Wallet:
    locked = Wallet.objects.select_for_update().select_related("service", "account_link").get(pk=wallet.pk)
    return locked


def _add(wallet: Wallet, *, kind: str, credits: Decimal, now: dt.datetime, name: str = "",
         metadata: list[dict[str, str]] | None = None, source: str = "manual",
         subscription: Subscription | None = None, window_end: dt.datetime | None = None) -> WalletTransaction:
    inbound = kind in (TransactionKind.PURCHASED, TransactionKind.GRANTED)
    settled = kind != TransactionKind.PURCHASED
    tx = WalletTransaction.objects.create(
        wallet=wallet, transaction_type=TransactionType.INBOUND if inbound else TransactionType.OUTBOUND,
        status=TransactionStatus.SETTLED if settled else TransactionStatus.PENDING, transaction_status=kind,
        source=source, credit_amount=credits, amount=_amount(wallet, credits, field=INPUT_FIELD.get(kind, "credits")),
        name=name, metadata=metadata or [],
        subscription=subscription, window_end=window_end, settled_at=now if settled else None)
    _transaction_event(tx, WebhookType.WALLET_TRANSACTION_CREATED)
    return tx


def _top_up(wallet: Wallet, data: dict[str, Any], now: dt.datetime) -> list[WalletTransaction]:
    """Lago's order: paid credits, then granted credits (a zero or missing amount makes no transaction)."""
    made = []
    meta, name = data.get("metadata") or data.get("transaction_metadata"), data.get("name") or data.get(
        "transaction_name") or ""
    for field, kind in (("paid_credits", TransactionKind.PURCHASED), ("granted_credits", TransactionKind.GRANTED)):
        credits = data.get(field)
        if credits:
            made.append(_add(wallet, kind=kind, credits=credits, now=now, name=name, metadata=meta))
    return made


def create_wallet(*, service: Service, link: AccountLink, data: dict[str, Any],
                  now: dt.datetime | None = None) -> Wallet:
    """Lago's ``Wallets::CreateService``: the wallet, then its first top-up; currency = the account's."""
    now = now or timezone.now()
    currency = (data.get("currency") or link.currency or service.default_currency).upper()
    if link.currency and link.currency.upper() != currency:
        raise ValidationFailed({"currency": [ErrorCode.CURRENCIES_DOES_NOT_MATCH]})
    expiration = data.get("expiration_at")
    if expiration is not None and expiration <= now:
        raise ValidationFailed({"expiration_at": [ErrorCode.INVALID_EXPIRATION_AT]})
    try:
        with transaction.atomic():
            if not link.currency:
                AccountLink.objects.filter(pk=link.pk).update(currency=currency)
                link.currency = currency
            wallet = Wallet.objects.create(
                service=service, account_link=link, name=data.get("name") or "", code=data.get("code") or "",
                priority=data.get("priority") or 50, currency=currency, rate_amount=data["rate_amount"],
                expiration_at=expiration)
            _wallet_event(wallet, WebhookType.WALLET_CREATED)
            _top_up(wallet, data, now)
    except IntegrityError:
        raise ValidationFailed({"customer": [ErrorCode.WALLET_ALREADY_EXISTS]}) from None
    return wallet


def update_wallet(*, wallet: Wallet, data: dict[str, Any], now: dt.datetime | None = None) -> Wallet:
    now = now or timezone.now()
    if wallet.status != WalletStatus.ACTIVE:
        raise NotAllowed(ErrorCode.WALLET_IS_TERMINATED)
    with transaction.atomic():
        wallet = _locked(wallet)
        if "expiration_at" in data:
            expiration = data["expiration_at"]
            if expiration is not None and expiration <= now:
                raise ValidationFailed({"expiration_at": [ErrorCode.INVALID_EXPIRATION_AT]})
            wallet.expiration_at = expiration
        for field in ("name", "code"):
            if field in data:
                setattr(wallet, field, data[field] or "")
        if data.get("priority") is not None:
            wallet.priority = data["priority"]
        wallet.save()
        _wallet_event(wallet, WebhookType.WALLET_UPDATED)
    return wallet


def _void_rest(wallet: Wallet, now: dt.datetime, *, source: str) -> WalletTransaction | None:
    left = credits_of(wallet)
    if left <= 0:
        return None
    return _add(wallet, kind=TransactionKind.VOIDED, credits=left, now=now, source=source)


def terminate_wallet(*, wallet: Wallet, now: dt.datetime | None = None, source: str = "manual") -> Wallet:
    """Lago's ``Wallets::TerminateService``: the wallet ends; the credits left are voided (a terminated
    wallet holds none). Idempotent."""
    now = now or timezone.now()
    with transaction.atomic():
        wallet = _locked(wallet)
        if wallet.status == WalletStatus.TERMINATED:
            return wallet
        _void_rest(wallet, now, source=source)
        wallet.status = WalletStatus.TERMINATED
        wallet.terminated_at = now
        wallet.save(update_fields=["status", "terminated_at", "updated_at"])
        _wallet_event(wallet, WebhookType.WALLET_TERMINATED)
    return wallet


def create_transactions(*, wallet: Wallet, data: dict[str, Any], now: dt.datetime | None = None
                        ) -> list[WalletTransaction]:
    """Lago's ``WalletTransactions::CreateService``: paid, granted, then voided credits."""
    now = now or timezone.now()
    with transaction.atomic():
        wallet = _locked(wallet)
        if wallet.status != WalletStatus.ACTIVE:
            raise NotAllowed(ErrorCode.WALLET_IS_TERMINATED)
        voided = data.get("voided_credits") or ZERO
        if voided and voided > credits_of(wallet):
            raise ValidationFailed({"voided_credits": [ErrorCode.INSUFFICIENT_CREDITS]})
        made = _top_up(wallet, data, now)
        if voided:
            made.append(_add(wallet, kind=TransactionKind.VOIDED, credits=voided, now=now,
                             name=data.get("name") or "", metadata=data.get("metadata")))
        if made:
            _wallet_event(wallet, WebhookType.WALLET_UPDATED)
    return made


def attach_invoice(*, transaction_id: uuid.UUID, invoice_id: uuid.UUID) -> None:
    """The one-off invoice made for a paid top-up (its lago_id), recorded by the bridge."""
    WalletTransaction.objects.filter(pk=transaction_id, invoice_id__isnull=True).update(invoice_id=invoice_id)


def settle_purchase(*, transaction_id: uuid.UUID, now: dt.datetime | None = None) -> bool:
    """Odoo says the top-up's invoice is paid: its credits join the balance (once). Call inside the
    caller's transaction (the pull's mirror of that invoice)."""
    now = now or timezone.now()
    tx = (WalletTransaction.objects.select_for_update().select_related("wallet__service", "wallet__account_link")
          .filter(pk=transaction_id, status=TransactionStatus.PENDING).first())
    if tx is None:
        return False
    tx.status, tx.settled_at = TransactionStatus.SETTLED, now
    tx.save(update_fields=["status", "settled_at", "updated_at"])
    _transaction_event(tx, WebhookType.WALLET_TRANSACTION_UPDATED)
    if tx.wallet.status == WalletStatus.TERMINATED:
        _void_rest(tx.wallet, now, source=tx.source)  # paid after the end: given back by Odoo, not kept here
    _wallet_event(tx.wallet, WebhookType.WALLET_UPDATED)
    return True


def fail_purchase(*, transaction_id: uuid.UUID, now: dt.datetime | None = None) -> bool:
    """The top-up's invoice was cancelled or reversed in Odoo before it was paid: the purchase fails."""
    now = now or timezone.now()
    tx = (WalletTransaction.objects.select_for_update().select_related("wallet__service")
          .filter(pk=transaction_id, status=TransactionStatus.PENDING).first())
    if tx is None:
        return False
    tx.status, tx.failed_at = TransactionStatus.FAILED, now
    tx.save(update_fields=["status", "failed_at", "updated_at"])
    _transaction_event(tx, WebhookType.WALLET_TRANSACTION_UPDATED)
    return True


def consume(*, wallet: Wallet, subscription: Subscription, window_end: dt.datetime, invoice_amount: Decimal,
            now: dt.datetime | None = None) -> WalletTransaction | None:
    """Prepaid credits reduce the invoice of one closed window: min(balance, invoice amount), once per
    window (a second call for the same window returns the first transaction). Call inside the caller's
    transaction, which also writes the Odoo sync state of the credit line."""
    now = now or timezone.now()
    wallet = _locked(wallet)
    existing = WalletTransaction.objects.filter(wallet=wallet, subscription=subscription, window_end=window_end,
                                                transaction_status=TransactionKind.INVOICED).first()
    if existing is not None:
        return existing
    if wallet.status != WalletStatus.ACTIVE or invoice_amount <= 0:
        return None
    rate = Decimal(wallet.rate_amount)
    balance_amount = credits_of(wallet) * rate
    amount = min(balance_amount, invoice_amount)
    # at the currency's minor unit (what the Odoo line carries), never more than the balance
    amount = amount.quantize(Decimal(1).scaleb(-minor_unit_exponent(wallet.currency)), rounding=ROUND_DOWN)
    if amount <= 0:
        return None
    credits = min(credits_of(wallet), (amount / rate).quantize(Decimal("1e-10")))
    tx = WalletTransaction.objects.create(
        wallet=wallet, transaction_type=TransactionType.OUTBOUND, status=TransactionStatus.SETTLED,
        transaction_status=TransactionKind.INVOICED, source="manual", credit_amount=credits, amount=amount,
        subscription=subscription, window_end=window_end, settled_at=now)
    _transaction_event(tx, WebhookType.WALLET_TRANSACTION_CREATED)
    _wallet_event(wallet, WebhookType.WALLET_UPDATED)
    return tx


def terminate_expired_wallets(*, now: dt.datetime | None = None) -> int:
    """Beat: active wallets whose ``expiration_at`` has come end there, their credits voided."""
    now = now or timezone.now()
    done = 0
    for wallet in Wallet.objects.filter(status=WalletStatus.ACTIVE, expiration_at__lte=now).select_related(
            "service", "account_link"):
        terminate_wallet(wallet=wallet, now=now, source="interval")
        done += 1
    return done


def announce_depleted_ongoing_balances(*, now: dt.datetime | None = None) -> int:
    """Lago's ``wallet.depleted_ongoing_balance``: once when an active wallet's ongoing balance (balance minus
    the usage not invoiced yet) reaches 0 or below; again only after it was positive in between."""
    now = now or timezone.now()
    wallets = list(Wallet.objects.filter(status=WalletStatus.ACTIVE).select_related("service", "account_link"))
    figures = balances(wallets)
    sent = 0
    for wallet in wallets:
        balance = figures[wallet.pk]
        ongoing = balance.credits * Decimal(wallet.rate_amount) - balance.usage_amount
        if ongoing > 0 and wallet.depleted_announced_at is not None:
            Wallet.objects.filter(pk=wallet.pk).update(depleted_announced_at=None)
        elif ongoing <= 0 and wallet.depleted_announced_at is None and (balance.credits or balance.usage_amount
                                                                      or balance.consumed_credits):
            with transaction.atomic():
                updated = Wallet.objects.filter(pk=wallet.pk, depleted_announced_at__isnull=True).update(
                    depleted_announced_at=now)
                if updated:
                    _wallet_event(wallet, WebhookType.WALLET_DEPLETED_ONGOING_BALANCE)
                    sent += 1
    return sent
