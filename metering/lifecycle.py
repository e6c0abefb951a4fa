"""Subscription lifecycle operations that end a subscription: the status change
(``metering.services``) and the closing of its final window (``metering.rating``) in ONE
transaction, so the final usage is frozen and the final base fee / credit written
(``metering.plan_fees``) as the subscription becomes terminated. The Odoo bridge can then
invoice the final lines before it closes the order.

Used by the API (terminate, customer delete, plan change) and the beat tasks
(``ending_at``, downgrades at the window's end).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from django.db import transaction
from django.utils import timezone

from billing_kit.retries import atomic_with_retries
from identity.models import AccountLink, Service
from metering import plan_fees, rating, services, windows
from metering.models import Plan, Subscription, SubscriptionStatus, window_due_after_grace
from metering.services.subscriptions import SubscriptionResult


def _close_final_windows(ended: Iterable[Subscription], now: datetime) -> None:
    for subscription in sorted(ended, key=lambda s: s.id):
        rating.rate_subscription(subscription_id=subscription.id, now=max(now, subscription.terminated_at or now))
        _credit_window_opened_after_end(subscription.id)


def _credit_window_opened_after_end(subscription_id: Any) -> None:
    """Terminated exactly at a boundary rating had already rolled over: the window opened
    there (its advance fee written) was never used; credit it whole (no-op otherwise)."""
    sub = Subscription.objects.select_related("plan").get(pk=subscription_id)
    if (sub.terminated_at is None or sub.current_period_start is None or sub.current_period_end is None
            or sub.billing_anchor is None or sub.terminated_at > sub.current_period_start):
        return
    tz = windows.zone(sub.billing_timezone)
    fee_start = sub.current_period_start
    if sub.plan.bill_charges_monthly:  # the fee's window is the year holding the month
        fee_start, _ = plan_fees.fee_period(interval=sub.plan.interval, anchor=sub.billing_anchor,
                                            at=sub.current_period_start, tz=tz, started_at=sub.started_at)
    kept = rating.kept_plan_amounts([(sub.id, fee_start)])
    plan_fees.window_closed(
        subscription_id=sub.id, plan_id=sub.plan_id, pay_in_advance=sub.plan.pay_in_advance,
        amount=kept.get((sub.id, fee_start), sub.flat_amount), currency=sub.currency,
        interval=sub.plan.interval, anchor=sub.billing_anchor, start=sub.current_period_start,
        period_end=sub.current_period_end, ended_at=sub.terminated_at, credit_note=sub.on_termination_credit_note,
        tz=tz, replaced=bool(rating.replaced_subscriptions([sub.id])),
        trial_end=sub.trial_ends_at, charges_monthly=sub.plan.bill_charges_monthly, started_at=sub.started_at)


def create_subscription(*, service: Service, data: dict[str, Any], now: datetime | None = None
                        ) -> SubscriptionResult:
    """``services.create_subscription``; an upgrade's ended subscription is closed at once."""
    now = now or timezone.now()

    def create() -> SubscriptionResult:
        result = services.create_subscription(service=service, data=data, now=now)
        _close_final_windows(result.ended, now)
        return result

    return atomic_with_retries(create)


def terminate_subscription(*, subscription: Subscription, now: datetime | None = None,
                           at: datetime | None = None, credit_note: str | None = None) -> Subscription:
    now = now or timezone.now()
    with transaction.atomic():
        subscription = services.terminate_subscription(subscription=subscription, now=now, at=at,
                                                       credit_note=credit_note)
        if subscription.status == SubscriptionStatus.TERMINATED:
            _close_final_windows([subscription], now)
    subscription.refresh_from_db()
    return subscription


def delete_customer(*, link: AccountLink, now: datetime | None = None) -> AccountLink:
    now = now or timezone.now()
    with transaction.atomic():
        link, ended = services.delete_customer(link=link)
        _close_final_windows([s for s in ended if s.status == SubscriptionStatus.TERMINATED], now)
    return link


def terminate_ended_subscriptions(*, now: datetime | None = None) -> int:
    """Beat: terminate active subscriptions whose ``ending_at`` has come, AT ``ending_at``
    (subscription.terminated emitted, final window closed). Idempotent: a terminated one is
    no longer active."""
    now = now or timezone.now()
    count = 0
    for subscription in Subscription.objects.filter(status=SubscriptionStatus.ACTIVE, ending_at__lte=now):
        with transaction.atomic():
            locked = (Subscription.objects.select_for_update(of=("self",))
                      .filter(pk=subscription.pk, status=SubscriptionStatus.ACTIVE, ending_at__lte=now).first())
            if locked is None:
                continue
            assert locked.ending_at is not None
            terminate_subscription(subscription=locked, now=now, at=max(locked.ending_at,
                                                                        locked.started_at or locked.ending_at))
            count += 1
    return count


def apply_due_downgrades(*, now: datetime | None = None) -> int:
    """Beat (and each rating run): swap pending downgrades whose window has ended."""
    now = now or timezone.now()
    count = 0
    for subscription_id in Subscription.objects.filter(
            window_due_after_grace(now), status=SubscriptionStatus.ACTIVE, next_plan__isnull=False,
    ).values_list("id", flat=True):
        with transaction.atomic():
            result = services.apply_due_downgrade(subscription_id=subscription_id, now=now)
            if result is None:
                continue
            _close_final_windows(result.ended, now)
            count += 1
    return count


def finish_plan_deletions(*, now: datetime | None = None) -> int:
    """Lago's ``Plans::DestroyJob`` for every plan pending deletion: its active subscriptions
    are terminated now (final window closed, as a DELETE of each), its pending ones
    canceled, then the plan is discarded. Queued by the DELETE, run again by each rating
    run (a lost task only delays it). Returns the plans discarded."""
    now = now or timezone.now()
    discarded = 0
    for plan_id in Plan.objects.filter(pending_deletion=True, deleted_at__isnull=True).values_list("id", flat=True):
        for subscription in Subscription.objects.filter(
                plan_id=plan_id, status__in=(SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING)):
            terminate_subscription(subscription=subscription, now=now)
        if services.discard_plan(plan_id=plan_id, now=now):
            discarded += 1
    return discarded
