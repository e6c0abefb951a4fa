"""Prepaid credits reduce the next invoice in Odoo, exactly once (#14).

Usage reaches a subscription's Odoo order only when its window closed, before Odoo's invoicing run
at the window's end (``orders``). When a batch pushes a closed window's lines, this step:

1. ``decide_consumptions``: for each closed window of the batch whose subscription's order is in Odoo
   and whose account has an active wallet in the subscription's currency, records in ONE database
   transaction the outbound ``invoiced`` wallet transaction for min(balance, that invoice's amount)
   (``wallets.services.consume``: once per window) and the ``OdooSyncState`` of its Odoo line;
2. ``push_credit_lines`` (its own pending-rows query: credit states not synced final for the batch's
   subscriptions): one negative line "Prepaid credits …" on the order, quantity 1 at −amount, on the
   untaxed "Prepaid credits" product — as Odoo deducts a down payment on the final invoice, a negative
   line of a non-taxed deposit-like product. Searched by its natural key (order, product, description)
   before every create, so a lost answer or a retry never adds it twice.

The cron then bills it with the window's lines: the invoice's total is reduced once. Coupons (another
helper's negative discount lines) come first in Lago: ``invoice_amount`` is the one place to subtract
them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

from django.db import transaction
from django.db.models import CharField, Exists, OuterRef, Q, Sum
from django.db.models.functions import Cast

from coupons.models import CouponDiscount
from metering.models import PlanFee, PlanFeeKind, RatedUsage, RatedUsageState, Subscription
from wallets import selectors as wallet_selectors
from wallets import services as wallet_services
from wallets.models import WalletTransaction

from . import mapping
from .client import OdooRemoteError
from .models import OdooSyncState, SyncKind, SyncStatus
from .one_off import CREDITS_PRODUCT_CODE, CREDITS_PRODUCT_KEY, credits_product_vals
from .pricing import to_odoo_number
from .pusher import Pusher
from .state_book import StateBook

ZERO = Decimal(0)


def invoice_amount(subscription: Subscription, window_end: dt.datetime) -> Decimal:
    """What the invoice of the window closing at ``window_end`` bills before prepaid credits, untaxed:
    the window's frozen usage, its plan fees (arrears fee, commitment true-up, credit for unused time)
    and the advance fee of the window starting there (the same invoicing run bills them together).
    Coupons come off first (Lago applies them before prepaid credits): the push cycle realises the
    boundary's discounts before it decides consumptions. Never below 0."""
    usage = RatedUsage.objects.filter(subscription=subscription, window_end=window_end,
                                      state=RatedUsageState.FROZEN).aggregate(total=Sum("amount"))["total"] or ZERO
    fees = PlanFee.objects.filter(
        Q(window_end=window_end) | Q(window_start=window_end, kind=PlanFeeKind.SUBSCRIPTION, plan__pay_in_advance=True),
        subscription=subscription).aggregate(total=Sum("amount"))["total"] or ZERO
    coupons = CouponDiscount.objects.filter(subscription=subscription, boundary=window_end).aggregate(
        total=Sum("amount"))["total"] or ZERO
    return max(usage + fees - coupons, ZERO).quantize(Decimal("0.01"))


def credit_label(tx: WalletTransaction) -> str:
    """The line's description; with (order, credits product) its natural key (one per window)."""
    assert tx.subscription is not None and tx.window_end is not None
    last = tx.window_end - dt.timedelta(seconds=1)
    tz = mapping.subscription_calendar(tx.subscription)
    return f"Prepaid credits (period ending {last.astimezone(tz):%Y-%m-%d})"


def closed_windows(subscriptions: list[Subscription], usages: Iterable[RatedUsage], fees: Iterable[PlanFee],
                   now: dt.datetime) -> list[tuple[Subscription, dt.datetime]]:
    """The closed windows whose lines this batch pushes (frozen usage, fees of ended windows)."""
    by_pk = {s.pk: s for s in subscriptions}
    seen: dict[tuple[Any, dt.datetime], Subscription] = {}
    for usage in usages:
        if usage.state == RatedUsageState.FROZEN and usage.subscription_id in by_pk:
            seen.setdefault((usage.subscription_id, usage.window_end), by_pk[usage.subscription_id])
    for fee in fees:
        if fee.window_end <= now and fee.subscription_id in by_pk:
            seen.setdefault((fee.subscription_id, fee.window_end), by_pk[fee.subscription_id])
    return [(sub, end) for (_, end), sub in sorted(seen.items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))]


def decide_consumptions(subscriptions: list[Subscription], usages: Iterable[RatedUsage], fees: Iterable[PlanFee],
                        now: dt.datetime) -> int:
    """Step 1: one consumption per closed window, written with its sync state in one transaction."""
    made = 0
    # its order is created with these lines inline when it is not in Odoo yet: nothing to reduce it with
    windows = [(sub, end) for sub, end in closed_windows(subscriptions, usages, fees, now) if sub.odoo_sale_order_id]
    wallets = wallet_selectors.active_wallets_of(account_link_ids={sub.account_link_id for sub, _ in windows})
    for sub, window_end in windows:
        wallet = wallets.get((sub.account_link_id, sub.currency))
        if wallet is None:
            continue
        with transaction.atomic():
            tx = wallet_services.consume(wallet=wallet, subscription=sub, window_end=window_end,
                                         invoice_amount=invoice_amount(sub, window_end), now=now)
            if tx is None:
                continue
            _, created = OdooSyncState.objects.get_or_create(
                kind=SyncKind.WALLET_CREDIT, object_id=str(tx.pk),
                defaults={"service_id": sub.service_id, "reference": credit_label(tx), "odoo_model": "sale.order.line",
                          "label": f"{sub} {credit_label(tx)}"[:255]})
            made += int(created)
    return made


@dataclass(frozen=True)
class CreditLine:
    """A consumption's negative order line to create."""

    tx: WalletTransaction
    state: OdooSyncState
    vals: dict[str, Any]


def pending_credit_states(subscription_ids: list[Any]) -> list[tuple[OdooSyncState, WalletTransaction]]:
    """Step 2's own query: consumptions of these subscriptions whose line Odoo has not confirmed."""
    txs = {str(tx.pk): tx for tx in WalletTransaction.objects.filter(
        subscription_id__in=subscription_ids, transaction_status="invoiced").filter(
        ~Exists(OdooSyncState.objects.filter(kind=SyncKind.WALLET_CREDIT, status=SyncStatus.SYNCED, final=True,
                                             object_id=Cast(OuterRef("pk"), output_field=CharField()))))
        .select_related("subscription", "wallet")}
    if not txs:
        return []
    states = OdooSyncState.objects.filter(kind=SyncKind.WALLET_CREDIT, object_id__in=list(txs))
    return [(state, txs[state.object_id]) for state in states]


def push_credit_lines(pusher: Pusher, subscriptions: list[Subscription],
                      book: StateBook | None = None) -> list[tuple[OdooSyncState, Any]]:
    """Step 2: find or create each consumption's negative line on its subscription's order.

    With the batch's ``book`` its rows are saved (and a failed one retried) with the batch's;
    returns each pending row with its subscription id."""
    pending = pending_credit_states([s.pk for s in subscriptions if s.odoo_sale_order_id])
    if not pending:
        return []
    own_book = book is None
    book = book or StateBook(pusher.now)
    for state, _ in pending:
        book.rows[(state.kind, state.object_id)] = state
    book.load(SyncKind.CREDITS_PRODUCT, [CREDITS_PRODUCT_KEY])
    try:
        _push(pusher, book, [(state, tx) for state, tx in pending if book.due(state)])
    finally:
        if own_book:
            book.save()
    return [(state, tx.subscription_id) for state, tx in pending]


def credits_product_id(pusher: Pusher, book: StateBook, rows: list[OdooSyncState]) -> int | None:
    """The "Prepaid credits" product (untaxed, not recurring), searched by ``default_code`` first."""
    state = book.get(SyncKind.CREDITS_PRODUCT, CREDITS_PRODUCT_KEY, reference=CREDITS_PRODUCT_CODE,
                     label="Prepaid credits", odoo_model="product.product")
    if state.status == SyncStatus.SYNCED and state.odoo_id:
        return state.odoo_id
    vals = credits_product_vals()
    found = pusher.rpc(book, rows + [state], pusher.client.search_read, "product.product",
                       [["default_code", "=", CREDITS_PRODUCT_CODE]], ["default_code"], order="id")
    if found:
        product_id = found[0]["id"]
    else:
        try:
            [product_id] = pusher.rpc(book, rows + [state], pusher.client.create, "product.product", [vals])
        except OdooRemoteError as exc:
            book.failed(state, exc)
            return None
        pusher.report.products_created += 1
    book.synced(state, odoo_id=product_id, pushed_hash=mapping.payload_hash(vals))
    return product_id


def _push(pusher: Pusher, book: StateBook, pending: list[tuple[OdooSyncState, WalletTransaction]]) -> None:
    if not pending:
        return
    rows = [state for state, _ in pending]
    product_id = credits_product_id(pusher, book, rows)
    if product_id is None:
        return
    order_of = {tx.pk: tx.subscription.odoo_sale_order_id for _, tx in pending if tx.subscription}
    existing = pusher.rpc(book, rows, pusher.client.search_read, "sale.order.line",
                          [["order_id", "in", sorted({o for o in order_of.values() if o})],
                           ["product_id", "=", product_id]], ["order_id", "name"], order="id")
    found = {(ln["order_id"][0], ln["name"]): ln["id"] for ln in existing}
    extras = pusher.line_extras(book, rows)
    creates = []
    for state, tx in pending:
        order_id, label = order_of.get(tx.pk), credit_label(tx)
        if not order_id:
            continue
        if (order_id, label) in found:
            book.synced(state, odoo_id=found[(order_id, label)], pushed_hash=label, final=True)
            continue
        creates.append(CreditLine(tx, state, {"order_id": order_id, "product_id": product_id, "name": label,
                                              "product_uom_qty": 1.0,
                                              "price_unit": to_odoo_number(-Decimal(tx.amount)), **extras}))
    for line, line_id in pusher.create_many(book, "sale.order.line", creates):
        if line_id is not None:
            book.synced(line.state, odoo_id=line_id, pushed_hash=credit_label(line.tx), final=True)
            pusher.report.lines_created += 1
