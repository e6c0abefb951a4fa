"""Push our picture into Odoo, exactly once, in batches: the cycle.

One cycle walks the live subscriptions in batches (``ODOO_PUSH_BATCH_SIZE``). For a
batch it costs, when everything is new: one ``search_read`` + one multi-``create``
for partners, the same for orders (created with their flat and usage lines inline),
one ``action_confirm`` for all new orders and one ``search_read`` to learn the new
line ids. Updates cost one ``write`` per changed record (Odoo has no multi-record
write with different values).

Exactly once: every create is preceded by a search on our reference (``ref``,
``client_order_ref``, ``default_code``, or the line's natural key: order, product,
description), so a create whose response was lost is found, not repeated.

Failures: a retryable error (timeout, refused connection, 5xx, concurrency) marks
the objects of the failing step ``failed`` with a backoff and ends the cycle (Odoo
is likely down); the next due cycle converges. ``AccessDenied`` marks the
connection broken and nothing is sent again until the credentials change or an
admin resets it. A business error (ValidationError, ...) on a multi-create is
isolated by retrying the records one by one.

Change-driven: a cycle examines only the subscriptions of the change log (``changes``:
rows appended by triggers in the same transaction as the change, and by the push for
retries), chunk after chunk, and stops taking chunks once it has run for
``ODOO_PUSH_CYCLE_BUDGET_SECONDS``: the rest waits for the next cycle. A cycle with nothing
changed reads one empty chunk and makes no RPC. The full sweep (``full=True``; beat daily,
``odoo_sync --full``, the admin) puts every subscription the old walk examined in the log.
One cycle at a time (an advisory lock): a second one is refused, never run beside it.

The steps of a batch live in ``pusher`` (partners, catalog) and ``orders`` (orders and
their lines), the connection and the locks in ``connection``, the sync state rows in
``state_book``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any, Iterable

from django.conf import settings
from django.db.models import CharField, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone

from coupons.models import CouponDiscount
from coupons.services import realise_discounts
from identity.models import Customer
from metering.models import (
    CLOSED_SUBSCRIPTION_STATUSES,
    Charge,
    PlanFee,
    RatedUsage,
    RatedUsageState,
    Subscription,
    SubscriptionMode,
    SubscriptionStatus,
)

from . import changes, mapping
from .client import OdooClient, OdooError, OdooSettings
from .connection import (
    ADVISORY_NAMESPACE_CYCLE,
    ADVISORY_NAMESPACE_SUBSCRIPTION,
    CycleAborted,
    advisory_locks,
    mark_connection,
    odoo_settings,
    open_client,
)
from .models import ConnectionStatus, OdooSyncState, SyncKind, SyncStatus
from .credit_notes import push_credit_notes
from .one_off import push_one_off_invoices
from .orders import push_orders
from .pusher import Pusher, PushReport
from .state_book import StateBook
from .wallet_credits import decide_consumptions, push_credit_lines

# The cycle's entry points. CycleAborted and open_client are part of them: the migration's
# live-order gateway opens the client itself, then drives a cycle for one subscription.
__all__ = ["CycleAborted", "PushReport", "customers_awaiting_partner", "full_sweep", "open_client", "push_cycle",
           "resync", "subscriptions_to_push"]

logger = logging.getLogger(__name__)


def _push_partner_batch(pusher: Pusher, customers: list[Customer]) -> None:
    """Partners only: a shadow subscription's customer needs one before it can go live."""
    book = StateBook(pusher.now)
    book.load(SyncKind.CUSTOMER, [str(c.pk) for c in customers])
    try:
        pusher.push_partners(book, customers)
    finally:
        book.save()
        pusher.flush_write_backs()


def _push_batch(pusher: Pusher, subscriptions: list[Subscription], book: StateBook | None = None) -> StateBook:
    """Partners, catalog, then orders and lines of one batch; its state rows are saved whatever happens."""
    book = book or StateBook(pusher.now)
    sub_ids = [str(s.pk) for s in subscriptions]
    customers = {s.account_link.customer_id: s.account_link.customer for s in subscriptions}
    links = {s.account_link_id: s.account_link for s in subscriptions}
    plans = {s.plan_id: s.plan for s in subscriptions}
    for s in subscriptions:  # one Python object per plan, so ids learnt by the catalog step are seen by all
        s.plan = plans[s.plan_id]
    sub_pks = [s.pk for s in subscriptions]
    usages = list(RatedUsage.objects.filter(subscription_id__in=sub_pks, state=RatedUsageState.FROZEN)
                  .filter(_not_pushed_final(SyncKind.USAGE))
                  .select_related("charge__metric", "charge__plan").order_by("window_start", "id"))
    fees = list(PlanFee.objects.filter(subscription_id__in=sub_pks).filter(_not_pushed_final(SyncKind.PLAN_FEE))
                .select_related("plan").order_by("window_start", "kind", "id"))
    for fee in fees:  # a fee of an earlier plan (old data) needs that plan's fee product
        fee.plan = plans.setdefault(fee.plan_id, fee.plan)
    by_pk = {s.pk: s for s in subscriptions}
    # Their labels are dated in the subscription's calendar: no query per row for it.
    for usage in usages:
        usage.subscription = by_pk[usage.subscription_id]
    for fee in fees:
        fee.subscription = by_pk[fee.subscription_id]
    waiting = set(RatedUsage.objects.filter(subscription_id__in=[s.pk for s in subscriptions
                                                                 if s.status in CLOSED_SUBSCRIPTION_STATUSES],
                                            state=RatedUsageState.OPEN).values_list("subscription_id", flat=True))
    charges: dict[Any, Charge] = {}
    for plan in plans.values():  # every charge of the plan gets its product up front
        for charge in plan.charges.all():
            charges.setdefault(charge.pk, charge)
    for usage in usages:
        usage.charge = charges.setdefault(usage.charge_id, usage.charge)
    book.load(SyncKind.SUBSCRIPTION, sub_ids)
    book.load(SyncKind.CUSTOMER, [str(pk) for pk in customers])
    book.load(SyncKind.ACCOUNT, [str(pk) for pk in links])
    book.load(SyncKind.PLAN, [str(pk) for pk in plans])
    book.load(SyncKind.FEE_PRODUCT, [str(pk) for pk in plans])
    currencies = {mapping.plan_currency(p) for p in plans.values()}
    book.load(SyncKind.PRICELIST, sorted(currencies))
    book.load(SyncKind.CHARGE, [str(pk) for pk in charges])
    book.load(SyncKind.USAGE, [str(u.pk) for u in usages])
    book.load(SyncKind.PLAN_FEE, [str(f.pk) for f in fees])
    discounts = _coupon_discounts(pusher, book, subscriptions)
    credit_states: list[tuple[OdooSyncState, Any]] = []
    try:
        pusher.push_partners(book, list(customers.values()))
        pusher.push_contacts(book, list(links.values()))
        pusher.push_catalog(book, list(plans.values()), list(charges.values()))
        pusher.push_pricelists(book, currencies)
        pusher.push_discount_products(book, list({d.applied_coupon.coupon_id: d.applied_coupon.coupon
                                                  for d in discounts}.values()))
        # prepaid credits of the closed windows pushed now, on what the coupons left: decided, then
        # their own lines (wallet_credits)
        decide_consumptions(subscriptions, usages, fees, pusher.now)
        credit_states = push_credit_lines(pusher, subscriptions, book)
        push_orders(pusher, book, subscriptions, usages, fees, waiting=waiting, discounts=discounts)
    finally:
        for kind, subjects in ((SyncKind.USAGE, usages), (SyncKind.PLAN_FEE, fees)):
            for subject in subjects:
                row = book.rows.get((kind, str(subject.pk)))
                if row is not None:
                    book.rows_of_subscription.setdefault(str(subject.subscription_id), []).append(row)
        # a failed coupon or prepaid-credit line is retried with its subscription (_settlement)
        for discount in discounts:
            row = book.rows.get((SyncKind.COUPON_DISCOUNT, str(discount.pk)))
            if row is not None:
                book.rows_of_subscription.setdefault(str(discount.subscription_id), []).append(row)
        for row, subscription_id in credit_states:
            book.rows_of_subscription.setdefault(str(subscription_id), []).append(row)
        book.save()
        pusher.flush_write_backs()
    return book


def _coupon_discounts(pusher: Pusher, book: StateBook, subscriptions: list[Subscription]) -> list[CouponDiscount]:
    """The coupon step: discount the boundaries of the batch's subscriptions that their frozen windows and
    fees completed (``coupons.services.realise_discounts``: the discounts and the coupons' consumption are
    committed before anything reaches Odoo), then the discounts not yet pushed in their final state, with
    their sync state rows loaded. They are pushed as negative lines with the lines of the same invoice."""
    by_pk = {s.pk: s for s in subscriptions}
    realise_discounts(subscriptions=subscriptions, now=pusher.now)
    discounts = list(CouponDiscount.objects.filter(subscription_id__in=list(by_pk))
                     .filter(_not_pushed_final(SyncKind.COUPON_DISCOUNT))
                     .select_related("applied_coupon__coupon").order_by("boundary", "id"))
    for discount in discounts:  # labels are dated in the subscription's calendar: no query per row
        discount.subscription = by_pk[discount.subscription_id]
    book.load(SyncKind.COUPON_PRODUCT, sorted({str(d.applied_coupon.coupon_id) for d in discounts}))
    book.load(SyncKind.COUPON_DISCOUNT, [str(d.pk) for d in discounts])
    return discounts


def _not_pushed_final(kind: str) -> Q:
    """Rows not yet pushed in their final state: frozen usage windows, plan fees (final when written).

    Open windows are never looked at: usage reaches Odoo only once its window closed (invariant 1).
    No clock comparison: rating decides when a window freezes, with its own notion of "now".
    """
    pushed_final = OdooSyncState.objects.filter(
        kind=kind, object_id=Cast(OuterRef("pk"), output_field=CharField()), status=SyncStatus.SYNCED,
        final=True)
    return Q(~Exists(pushed_final))


def subscriptions_to_push(*, subscription_ids: list[Any] | None = None) -> QuerySet[Subscription]:
    """Live subscriptions that are running, or closed but not yet closed in Odoo. Never shadow ones.

    What a full sweep examines; a change-driven cycle examines those of them with a change.
    """
    qs = Subscription.objects.filter(mode=SubscriptionMode.LIVE)
    closed_and_synced = OdooSyncState.objects.filter(
        kind=SyncKind.SUBSCRIPTION, object_id=Cast(OuterRef("pk"), output_field=CharField()), status=SyncStatus.SYNCED,
        final=True)
    qs = qs.filter(Q(status=SubscriptionStatus.ACTIVE)
                   | Q(status__in=CLOSED_SUBSCRIPTION_STATUSES) & ~Exists(closed_and_synced))
    if subscription_ids is not None:
        qs = qs.filter(pk__in=subscription_ids)
    # the account's service too: its label (str) names it, one query per account otherwise
    return qs.select_related("plan", "account_link__customer", "account_link__service", "service").prefetch_related(
        "plan__charges__metric").order_by("pk")


def customers_awaiting_partner() -> QuerySet[Customer]:
    """Customers of open shadow subscriptions without an Odoo partner yet.

    A partner bills nothing, so pushing one for a shadow subscription is safe; go-live
    requires it.
    """
    open_shadow = Subscription.objects.filter(
        account_link__customer=OuterRef("pk"), mode=SubscriptionMode.SHADOW,
    ).exclude(status__in=CLOSED_SUBSCRIPTION_STATUSES)
    return Customer.objects.filter(odoo_partner_id__isnull=True).filter(Exists(open_shadow)).order_by("pk")


def _push_awaiting_partners(pusher: Pusher, report: PushReport, batch_size: int) -> None:
    last_pk = None
    while True:
        page = customers_awaiting_partner()
        if last_pk is not None:
            page = page.filter(pk__gt=last_pk)
        batch = list(page[:batch_size])
        if not batch:
            return
        last_pk = batch[-1].pk
        report.batches += 1
        _push_partner_batch(pusher, batch)


def _push_subscriptions(pusher: Pusher, qs: QuerySet[Subscription], batch_size: int) -> None:
    """Batch after batch in pk order; a subscription another worker holds waits for the next cycle."""
    report = pusher.report
    last_pk = None
    while True:
        page = qs if last_pk is None else qs.filter(pk__gt=last_pk)
        batch = list(page[:batch_size])
        if not batch:
            return
        last_pk = batch[-1].pk
        report.batches += 1
        report.subscriptions_seen += len(batch)
        with advisory_locks(ADVISORY_NAMESPACE_SUBSCRIPTION, [str(s.pk) for s in batch]) as mine:
            locked = [s for s in batch if str(s.pk) in mine]
            report.skipped_locked += len(batch) - len(locked)
            if not locked:
                continue
            try:
                _push_batch(pusher, locked)
            except CycleAborted as exc:
                report.aborted = str(exc)
                return


def _push_one_offs(pusher: Pusher, report: PushReport, batch_size: int) -> None:
    """One-off invoices (add-ons, paid wallet top-ups): their own step and pending-rows query."""
    try:
        push_one_off_invoices(pusher, batch_size=batch_size)
    except CycleAborted as exc:
        report.aborted = str(exc)


def _push_credit_notes(client: OdooClient, report: PushReport, now: dt.datetime, batch_size: int) -> None:
    """Credit notes of POST /credit_notes that could not be realised at once: their own step and query."""
    try:
        report.credit_notes_posted = push_credit_notes(client, now=now, limit=batch_size)
    except OdooError as exc:
        report.aborted = str(exc)


def _settlement(book: StateBook, sub: Subscription) -> tuple[dt.datetime | None, str]:
    """When ``sub`` must be examined again although nothing changes (None: only on a change), and why.

    A failed row its push depends on (partner, contact, products, order, lines) is retried at
    its ``next_attempt_at`` (none once retries are given up: a resync or the full sweep brings
    it back). An order that waits for Odoo's invoicing cron (dates not settled) or an advance
    fee not invoiced yet is looked at again by the next cycle. A terminated subscription
    whose final window rating has not frozen needs nothing: the freeze is a change.
    """
    keys = [(SyncKind.SUBSCRIPTION, sub.pk), (SyncKind.CUSTOMER, sub.account_link.customer_id),
            (SyncKind.ACCOUNT, sub.account_link_id), (SyncKind.PLAN, sub.plan_id),
            (SyncKind.FEE_PRODUCT, sub.plan_id)]
    keys += [(SyncKind.CHARGE, charge.pk) for charge in sub.plan.charges.all()]
    rows = [book.rows.get((kind, str(pk))) for kind, pk in keys]
    rows += book.rows_of_subscription.get(str(sub.pk), [])
    due: dt.datetime | None = None
    for row in rows:
        if row is not None and row.status == SyncStatus.FAILED and row.next_attempt_at is not None:
            due = row.next_attempt_at if due is None else min(due, row.next_attempt_at)
    if due is not None:
        return due, "retry"
    order = rows[0]
    if order is not None and order.status == SyncStatus.SYNCED and not order.pushed_hash:
        return changes.AT_ONCE, "unsettled"
    if any(row is not None and row.kind in (SyncKind.USAGE, SyncKind.PLAN_FEE) and row.status == SyncStatus.SYNCED
           and not row.final for row in rows):
        return changes.AT_ONCE, "unsettled"
    return None, ""


def _push_changed(pusher: Pusher, batch_size: int, deadline: float | None) -> None:  # ok-float: clock
    """Chunk after chunk of changed subscriptions (id order) until none is due or the budget is spent."""
    report, now = pusher.report, pusher.now
    after = None
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            report.budget_exhausted = bool(changes.take_chunk(now=now, after=after, limit=1))
            return
        chunk = changes.take_chunk(now=now, after=after, limit=batch_size)
        if not chunk:
            return
        after = chunk[-1][0]
        report.changes_taken += sum(len(ids) for _, ids in chunk)
        taken = dict(chunk)
        batch = list(subscriptions_to_push(subscription_ids=list(taken)))
        report.batches += 1
        report.subscriptions_seen += len(batch)
        pushable = {s.pk for s in batch}
        done = [i for sid, ids in chunk if sid not in pushable for i in ids]  # shadow, or closed in Odoo
        requeue: dict[Any, dt.datetime] = {}
        reasons: dict[Any, str] = {}
        with advisory_locks(ADVISORY_NAMESPACE_SUBSCRIPTION, [str(s.pk) for s in batch]) as mine:
            locked = [s for s in batch if str(s.pk) in mine]
            report.skipped_locked += len(batch) - len(locked)  # their rows stay: the next cycle
            if locked:
                book = StateBook(now)
                try:
                    _push_batch(pusher, locked, book)
                except CycleAborted as exc:
                    report.aborted = str(exc)
                for sub in locked:
                    due, reason = _settlement(book, sub)
                    if report.aborted and reason != "retry":
                        continue  # not reached, or not charged with the failure: its rows stay as they are
                    done.extend(taken[sub.pk])
                    if due is not None:
                        requeue[sub.pk], reasons[sub.pk] = due, reason
        report.requeued += len(requeue)
        changes.settle(taken=done, requeue=requeue, reasons=reasons)
        if report.aborted:
            return


def push_cycle(*, client: OdooClient | None = None, now: dt.datetime | None = None,
               subscription_ids: list[Any] | None = None, batch_size: int | None = None,
               settings_: OdooSettings | None = None, full: bool = False,
               budget_seconds: float | None = -1.0) -> PushReport:  # ok-float: seconds
    """One push pass. Returns what happened; never raises for Odoo trouble (it is recorded).

    Without ``subscription_ids`` the cycle examines the change log (``full``: every
    subscription, put in the log first) for at most ``budget_seconds``
    (default ``ODOO_PUSH_CYCLE_BUDGET_SECONDS``; None: until the log has nothing due).
    ``subscription_ids`` pushes those subscriptions now (the migration's go-live).
    """
    now = now or timezone.now()
    settings_ = settings_ or odoo_settings()
    report = PushReport()
    try:
        client = client or open_client(settings_)
    except CycleAborted as exc:
        report.aborted = str(exc)
        return report
    start_trips = client.round_trips
    started = time.monotonic()
    if budget_seconds is not None and budget_seconds < 0:
        budget_seconds = settings.ODOO_PUSH_CYCLE_BUDGET_SECONDS
    deadline = started + budget_seconds if budget_seconds is not None else None
    batch_size = batch_size or settings.ODOO_PUSH_BATCH_SIZE
    pusher = Pusher(client=client, now=now, report=report, settings_=settings_)
    with advisory_locks(ADVISORY_NAMESPACE_CYCLE, ["push"] if subscription_ids is None else []) as cycle:
        if subscription_ids is None and "push" not in cycle:
            report.aborted = "another push cycle is running"
            return report
        if subscription_ids is None:
            try:
                _push_awaiting_partners(pusher, report, batch_size)
            except CycleAborted as exc:
                report.aborted = str(exc)
                return report
            if full:
                report.swept = full_sweep()
            _push_changed(pusher, batch_size, deadline)
        else:
            _push_subscriptions(pusher, subscriptions_to_push(subscription_ids=subscription_ids), batch_size)
        if subscription_ids is None and not report.aborted:
            _push_one_offs(pusher, report, batch_size)
        if subscription_ids is None and not report.aborted:
            _push_credit_notes(client, report, now, batch_size)
    report.round_trips = client.round_trips - start_trips
    report.seconds = round(time.monotonic() - started, 3)
    if not report.aborted:
        mark_connection(status=ConnectionStatus.OK, settings_=settings_, client=client, now=now)
    logger.info("odoo push: %s", report)
    return report


def full_sweep() -> int:
    """The safety net: every subscription the push examines goes in the change log (one INSERT ... SELECT);
    cycles work through them in budgeted chunks. Returns how many."""
    return changes.enqueue_all(subscriptions_to_push())


def resync(states: Iterable[OdooSyncState]) -> int:
    """Admin 'resync': forget what we believe Odoo holds; the next cycle searches and rewrites it
    (the subscriptions those rows belong to go in the change log)."""
    rows = list(states)
    ids = [s.pk for s in rows]
    changes.enqueue(changes.subscriptions_of_states(rows), reason="resync")
    return OdooSyncState.objects.filter(pk__in=ids).update(
        status=SyncStatus.PENDING, pushed_hash="", attempts=0, next_attempt_at=None, last_error="",
        last_error_name="", frozen=False, final=False)
