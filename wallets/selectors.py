"""Reads of wallets, scoped to the calling service, and their balances derived from transactions."""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable

from django.db.models import Max, Q, QuerySet, Sum

from identity.models import AccountLink, Service
from metering.models import RatedUsage, RatedUsageState, SubscriptionMode, SubscriptionStatus

from .models import TransactionKind, TransactionStatus, TransactionType, Wallet, WalletTransaction

ZERO = Decimal(0)


@dataclass(frozen=True)
class Balance:
    """A wallet's figures, all derived from its settled transactions (and the current usage)."""

    credits: Decimal = ZERO  # settled inbound credits minus settled outbound credits
    consumed_credits: Decimal = ZERO  # settled outbound credits consumed by invoices
    last_consumed_at: dt.datetime | None = None
    usage_amount: Decimal = ZERO  # current usage of the account not invoiced yet (open windows)


def wallets_for_service(*, service: Service) -> QuerySet[Wallet]:
    return (Wallet.objects.filter(service=service).select_related("account_link", "service")
            .prefetch_related("rules").order_by("-created_at", "id"))


def wallet_by_id(*, service: Service, lago_id: str) -> Wallet | None:
    try:
        key = uuid.UUID(str(lago_id))
    except ValueError:
        return None
    return wallets_for_service(service=service).filter(pk=key).first()


def credits_of(wallet: Wallet) -> Decimal:
    """Settled inbound minus settled outbound credits (the balance, from the stored transactions)."""
    sums = WalletTransaction.objects.filter(wallet=wallet, status=TransactionStatus.SETTLED).aggregate(
        inbound=Sum("credit_amount", filter=Q(transaction_type=TransactionType.INBOUND)),
        outbound=Sum("credit_amount", filter=Q(transaction_type=TransactionType.OUTBOUND)))
    return (sums["inbound"] or ZERO) - (sums["outbound"] or ZERO)


def current_usage_amounts(links: Iterable[AccountLink]) -> dict[tuple[uuid.UUID, str], Decimal]:
    """(account, currency) -> amount of the open usage windows of its live, active subscriptions."""
    rows = (RatedUsage.objects.filter(subscription__account_link__in=list(links), state=RatedUsageState.OPEN,
                                      subscription__mode=SubscriptionMode.LIVE,
                                      subscription__status=SubscriptionStatus.ACTIVE)
            .values("subscription__account_link_id", "subscription__currency").annotate(total=Sum("amount")))
    return {(r["subscription__account_link_id"], r["subscription__currency"]): r["total"] or ZERO for r in rows}


def balances(wallets: list[Wallet]) -> dict[uuid.UUID, Balance]:
    """Every wallet's ``Balance`` in two queries."""
    if not wallets:
        return {}
    rows = (WalletTransaction.objects.filter(wallet__in=wallets, status=TransactionStatus.SETTLED)
            .values("wallet_id").annotate(
                inbound=Sum("credit_amount", filter=Q(transaction_type=TransactionType.INBOUND)),
                outbound=Sum("credit_amount", filter=Q(transaction_type=TransactionType.OUTBOUND)),
                consumed=Sum("credit_amount", filter=Q(transaction_status=TransactionKind.INVOICED)),
                last_consumed=Max("settled_at", filter=Q(transaction_status=TransactionKind.INVOICED))))
    by_wallet = {r["wallet_id"]: r for r in rows}
    usage = current_usage_amounts({w.account_link for w in wallets})
    result = {}
    for wallet in wallets:
        row = by_wallet.get(wallet.pk, {})
        result[wallet.pk] = Balance(
            credits=(row.get("inbound") or ZERO) - (row.get("outbound") or ZERO),
            consumed_credits=row.get("consumed") or ZERO, last_consumed_at=row.get("last_consumed"),
            usage_amount=usage.get((wallet.account_link_id, wallet.currency), ZERO)
            if wallet.status == "active" else ZERO)
    return result


def transactions_of(*, wallet: Wallet, status: str | None = None, transaction_type: str | None = None,
                    transaction_status: str | None = None) -> QuerySet[WalletTransaction]:
    qs = WalletTransaction.objects.filter(wallet=wallet).select_related("wallet").order_by("-created_at", "id")
    if status:
        qs = qs.filter(status=status)
    if transaction_type:
        qs = qs.filter(transaction_type=transaction_type)
    if transaction_status:
        qs = qs.filter(transaction_status=transaction_status)
    return qs


def active_wallets_of(*, account_link_ids: Iterable[uuid.UUID]) -> dict[tuple[uuid.UUID, str], Wallet]:
    """The active wallet of each account (one at most), by (account, currency): one query for a batch."""
    ids = list(account_link_ids)
    if not ids:
        return {}
    return {(w.account_link_id, w.currency): w
            for w in Wallet.objects.filter(account_link_id__in=ids, status="active").select_related("service")}


def purchases_awaiting_invoice() -> QuerySet[WalletTransaction]:
    """Paid top-ups not yet turned into a one-off invoice (the bridge makes one: ``invoice_id`` is set then)."""
    return (WalletTransaction.objects.filter(transaction_status=TransactionKind.PURCHASED,
                                             status=TransactionStatus.PENDING, invoice_id__isnull=True)
            .select_related("wallet__account_link__customer", "wallet__service").order_by("created_at", "id"))
