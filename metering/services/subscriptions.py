"""Subscription lifecycle: create (Lago's upsert semantics), plan change, update,
terminate, the customer's DELETE and starting pending subscriptions when due.

Every change locks the subscription row, writes it and records its ``subscription.*``
webhook in the outbox in the same transaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from billing_kit.errors import ErrorCode, NotFound, ValidationFailed
from billing_kit.retries import atomic_with_retries
from billing_kit.updates import model_update
from identity import selectors as identity_selectors, services as identity_services
from identity.models import AccountLink, Service
from metering import plan_fees, windows
from metering.models import (
    CLOSED_SUBSCRIPTION_STATUSES,
    Plan,
    Subscription,
    SubscriptionMode,
    SubscriptionStatus,
    UsageEvent,
    window_due_after_grace,
)
from metering.renderers import render_subscription
from metering.selectors import charges_prefetch, get_plan
from metering.services.catalogue import check_currency_compatible
from webhooks.event_types import WebhookType
from webhooks.services import record_event


# --------------------------------------------------------------------------- webhooks


def _emit_subscription(subscription: Subscription, webhook_type: WebhookType) -> None:
    record_event(service=subscription.service, webhook_type=webhook_type, object_type="subscription",
                 payload=render_subscription(subscription))


# --------------------------------------------------------------------------- subscriptions


def _window_fields(*, plan: Plan, billing_time: str, started_at: datetime, now: datetime, tz_name: str
                   ) -> dict[str, Any]:
    tz = windows.zone(tz_name)
    anchor = windows.default_anchor(interval=plan.interval, billing_time=billing_time, started_at=started_at, tz=tz)
    start, end = windows.subscription_window(
        interval=plan.charges_interval, billing_time=billing_time, started_at=started_at, at=max(now, started_at),
        anchor=anchor, tz=tz,
    )
    return {"billing_anchor": anchor, "current_period_start": start, "current_period_end": end}


def billing_timezone_of(link: AccountLink) -> str:
    """The calendar a new subscription of ``link`` is billed in: the customer's Lago
    ``timezone``, else ``BILLING_TIMEZONE``."""
    return link.timezone or settings.BILLING_TIMEZONE


def invoice_grace_of(link: AccountLink) -> timedelta | None:
    """The grace of ``link``'s subscriptions (``Subscription.grace_period``): the customer's
    invoice grace period, else its service's, in days; None when neither is set."""
    days = identity_selectors.invoice_grace_days(link=link)
    return None if days is None else timedelta(days=days)


def apply_invoice_grace(*, service: Service, link: AccountLink | None = None) -> int:
    """A grace setting changed (``identity.models.invoice_grace_period_changed``, in the
    transaction of the change): the subscriptions it applies to — the account's, or the
    service's of accounts without their own (``link`` None) — take it, while not closed.

    It applies to the window open now, unless it already froze: a longer grace keeps taking
    late usage, a shorter one makes the next rating run close it (with every event taken
    until then). A frozen window never reopens. The UPDATE marks them for the Odoo push
    (``next_invoice_date`` moves with the grace). Returns the subscriptions updated."""
    open_subscriptions = Subscription.objects.filter(service=service).exclude(
        status__in=CLOSED_SUBSCRIPTION_STATUSES)
    if link is not None:
        return open_subscriptions.filter(account_link=link).update(grace_period=invoice_grace_of(link))
    days = service.invoice_grace_period
    return open_subscriptions.filter(account_link__invoice_grace_period__isnull=True).update(
        grace_period=None if days is None else timedelta(days=days))


def _check_currency(*, link: AccountLink, plan: Plan) -> None:
    """Lago's ``currencies_does_not_match`` (422) before a subscription is created or its
    plan changed; a customer's first plan sets its currency."""
    if check_currency_compatible(account=link, plan=plan):
        link.currency = plan.amount_currency
        link.save(update_fields=["currency", "updated_at"])


def _locked_subscriptions() -> QuerySet[Subscription]:
    """Subscriptions to change, locked, with what their renderings (webhook, API) read.

    Only the subscription rows are locked: the service, plan and customer rows joined in
    are what every other subscription's writes and usage-event foreign keys need.
    """
    return (Subscription.objects.select_for_update(of=("self",))
            .select_related("plan", "account_link__customer", "service", "previous_subscription__plan",
                            "next_plan")
            .prefetch_related(charges_prefetch(lookup="plan__charges")))


def _open_subscription(*, service: Service, external_id: str) -> Subscription | None:
    return _locked_subscriptions().filter(service=service, external_id=external_id).exclude(
        status__in=CLOSED_SUBSCRIPTION_STATUSES).first()


@dataclass(frozen=True)
class SubscriptionResult:
    subscription: Subscription
    created: bool
    # Subscriptions this call terminated (an upgrade ends the current one): their final
    # window is to be closed in the same transaction (metering.lifecycle does it).
    ended: tuple[Subscription, ...] = ()


def create_subscription(*, service: Service, data: dict[str, Any], now: datetime | None = None
                        ) -> SubscriptionResult:
    """Lago semantics: unknown customer → created; same external_id and plan → the existing
    subscription; another plan → the plan is changed; another customer → 422."""
    return atomic_with_retries(lambda: _create_subscription(service=service, data=data, now=now or timezone.now()))


def _create_subscription(*, service: Service, data: dict[str, Any], now: datetime) -> SubscriptionResult:
    # A plan being deleted takes no new subscription (its own are being ended).
    plan = get_plan(service=service, code=data["plan_code"], include_pending_deletion=False)
    if plan is None:
        raise NotFound(ErrorCode.PLAN_NOT_FOUND)
    link = (AccountLink.objects.filter(service=service, external_id=data["external_customer_id"],
                                       deleted_at__isnull=True).select_related("customer").first())
    if link is None:
        link = identity_services.upsert_customer(service=service, data={"external_id": data["external_customer_id"]}).link
    existing = _open_subscription(service=service, external_id=data["external_id"])
    if existing is not None:
        if existing.account_link_id != link.id:
            raise ValidationFailed({"external_id": [ErrorCode.VALUE_ALREADY_EXIST]})
        if existing.plan_id == plan.id:
            if existing.next_plan_id is not None:  # back to the current plan: no downgrade
                existing.next_plan = None
                existing.save()
                _emit_subscription(existing, WebhookType.SUBSCRIPTION_UPDATED)
            return SubscriptionResult(existing, created=False)
        _check_currency(link=link, plan=plan)
        return _change_plan(subscription=existing, plan=plan, now=now)
    _check_currency(link=link, plan=plan)

    # Whole seconds: an app that starts a subscription and immediately sends usage stamped
    # with Unix seconds must not see its first event refused as "before start".
    subscription_at = data.get("subscription_at") or now.replace(microsecond=0)
    billing_time = data.get("billing_time") or "calendar"
    subscription = Subscription(
        service=service, account_link=link, external_id=data["external_id"], name=data.get("name") or "",
        plan=plan, mode=SubscriptionMode.LIVE, billing_time=billing_time, subscription_at=subscription_at,
        ending_at=data.get("ending_at"), flat_amount=plan.amount, currency=plan.amount_currency,
        billing_timezone=billing_timezone_of(link), grace_period=invoice_grace_of(link),
    )
    if subscription_at > now:
        subscription.status = SubscriptionStatus.PENDING
    else:
        _activate(subscription, now=now)
    subscription.save()
    if subscription.status == SubscriptionStatus.ACTIVE:
        _first_window_opened(subscription)
        _emit_subscription(subscription, WebhookType.SUBSCRIPTION_STARTED)
    return SubscriptionResult(subscription, created=True)


def _first_window_opened(subscription: Subscription) -> None:
    """The advance fee of the first window (saved subscription; advance plans only)."""
    plan = subscription.plan
    assert subscription.billing_anchor is not None and subscription.current_period_start is not None
    assert subscription.current_period_end is not None
    plan_fees.window_opened(
        subscription_id=subscription.id, plan_id=plan.id, pay_in_advance=plan.pay_in_advance,
        amount=subscription.flat_amount, currency=subscription.currency, interval=plan.interval,
        anchor=subscription.billing_anchor, start=subscription.current_period_start,
        end=subscription.current_period_end, trial_end=subscription.trial_ends_at,
        tz=windows.zone(subscription.billing_timezone), charges_monthly=plan.bill_charges_monthly,
        started_at=subscription.started_at)


def _trial_end(*, plan: Plan, first_started_at: datetime) -> datetime | None:
    """End of the plan's trial counted from the first start of the external id (Lago counts
    an upgraded subscription's trial from the original start)."""
    if plan.trial_period <= 0:
        return None
    return first_started_at + timedelta(seconds=int(plan.trial_period * 86400))


def _first_started_at(subscription: Subscription) -> datetime | None:
    """Start of the first subscription of ``subscription``'s plan-change chain."""
    started_at = subscription.started_at
    previous = subscription.previous_subscription
    while previous is not None:
        started_at = previous.started_at or started_at
        previous = previous.previous_subscription
    return started_at


def _activate(subscription: Subscription, *, now: datetime) -> None:
    """Assign (the caller saves) what starting changes: the status, the start, the first window."""
    started_at = subscription.subscription_at
    model_update(instance=subscription, save=False, data={
        "status": SubscriptionStatus.ACTIVE, "started_at": started_at,
        "trial_ends_at": _trial_end(plan=subscription.plan, first_started_at=started_at),
        **_window_fields(plan=subscription.plan, billing_time=subscription.billing_time, started_at=started_at,
                         now=now, tz_name=subscription.billing_timezone),
    })


_MONTHS_PER_PERIOD = {"weekly": Decimal(12) / Decimal(52), "monthly": Decimal(1), "quarterly": Decimal(3),
                      "yearly": Decimal(12)}


def is_upgrade(*, current: Plan, new: Plan) -> bool:
    """Lago: a plan whose price per period, normalised by its interval (here per month), is
    at least the current one's is an upgrade (applied now); a cheaper one is a downgrade
    (applied at the end of the current window)."""
    return new.amount / _MONTHS_PER_PERIOD[new.interval] >= current.amount / _MONTHS_PER_PERIOD[current.interval]


def _change_plan(*, subscription: Subscription, plan: Plan, now: datetime) -> SubscriptionResult:
    """Lago's plan change of the active (or pending) subscription with this external id.

    * pending: the plan is replaced (nothing was billed yet);
    * upgrade: the current subscription is terminated now and a NEW one (new lago_id, same
      external id and customer) starts now on the new plan (``previous_plan_code``);
    * downgrade: the plan is stored as pending (``next_plan_code``, ``downgrade_plan_date``)
      and swapped at the end of the current window (``apply_due_downgrade``); a second change
      replaces it.
    """
    if subscription.status == SubscriptionStatus.PENDING:
        subscription.plan = plan
        subscription.flat_amount = plan.amount
        subscription.currency = plan.amount_currency
        if subscription.billing_anchor is not None:
            subscription.billing_anchor = None
        subscription.save()
        _emit_subscription(subscription, WebhookType.SUBSCRIPTION_UPDATED)
        return SubscriptionResult(subscription, created=False)
    if not is_upgrade(current=subscription.plan, new=plan):
        subscription.next_plan = plan
        subscription.save()
        _emit_subscription(subscription, WebhookType.SUBSCRIPTION_UPDATED)
        return SubscriptionResult(subscription, created=False)
    instant = max(now.replace(microsecond=0), subscription.started_at or now)
    _terminate(subscription, at=instant, credit_note=None)
    successor = _successor(subscription, plan=plan, at=instant, now=now)
    return SubscriptionResult(successor, created=False, ended=(subscription,))


def _successor(previous: Subscription, *, plan: Plan, at: datetime, now: datetime) -> Subscription:
    """The subscription that replaces ``previous`` (terminated at ``at``) on ``plan`` from ``at``.

    Lago keeps ``subscription_at`` (so anniversary periods keep their day) and starts the new
    one at the change: its first window is ``[at, end of the period containing at)``.
    Events already stored for ``previous`` at or after ``at`` (none, usually) move to it:
    they were never rated (``previous``'s last window ends at ``at``).
    """
    tz = windows.zone(previous.billing_timezone)
    anchor = windows.default_anchor(interval=plan.interval, billing_time=previous.billing_time,
                                    started_at=previous.subscription_at, tz=tz)
    start, end = windows.subscription_window(interval=plan.charges_interval, billing_time=previous.billing_time,
                                             started_at=at, at=at, anchor=anchor, tz=tz)
    successor = Subscription(
        service=previous.service, account_link=previous.account_link, external_id=previous.external_id,
        name=previous.name, plan=plan, mode=previous.mode, billing_time=previous.billing_time,
        subscription_at=previous.subscription_at, started_at=at, ending_at=previous.ending_at,
        flat_amount=plan.amount, currency=plan.amount_currency, status=SubscriptionStatus.ACTIVE,
        billing_anchor=anchor, current_period_start=start, current_period_end=end,
        billing_timezone=previous.billing_timezone, grace_period=previous.grace_period,
        previous_subscription=previous,
        trial_ends_at=_trial_end(plan=plan, first_started_at=_first_started_at(previous) or at),
    )
    successor.trial_ended_at = previous.trial_ended_at
    successor.save()
    UsageEvent.objects.filter(subscription=previous, timestamp__gte=at).update(subscription=successor)
    _first_window_opened(successor)
    _emit_subscription(successor, WebhookType.SUBSCRIPTION_STARTED)
    return successor


def downgrade_boundary(subscription: Subscription) -> datetime | None:
    """When a pending downgrade happens: the end of the current window, or of the plan's period
    holding it when a yearly plan bills its charges monthly (Lago changes the plan at the end
    of the billing period)."""
    end = subscription.current_period_end
    plan = subscription.plan
    if end is None or subscription.current_period_start is None or not plan.bill_charges_monthly:
        return end
    assert subscription.billing_anchor is not None
    return plan_fees.fee_period(interval=plan.interval, anchor=subscription.billing_anchor,
                                at=subscription.current_period_start, tz=windows.zone(subscription.billing_timezone),
                                started_at=subscription.started_at)[1]


def apply_due_downgrade(*, subscription_id: Any, now: datetime | None = None) -> SubscriptionResult | None:
    """Swap a pending downgrade whose window has ended (plus its grace, ``Subscription.grace``,
    so its late usage is still taken): terminate at the window's end and start the next plan's
    subscription there (no proration: a full window ended); events stamped after the end,
    taken during the grace, move to the new one. Caller:
    ``metering.lifecycle`` (closes the old one's final window in the same transaction)."""
    now = now or timezone.now()
    subscription = _locked_subscriptions().filter(
        window_due_after_grace(now), pk=subscription_id, status=SubscriptionStatus.ACTIVE,
        next_plan__isnull=False).first()
    if subscription is None:
        return None
    plan = subscription.next_plan
    assert plan is not None and subscription.current_period_end is not None
    boundary = subscription.current_period_end
    if boundary != downgrade_boundary(subscription):
        return None  # charges billed monthly: the plan changes at the end of the year, not of a month
    _terminate(subscription, at=boundary, credit_note=None)
    successor = _successor(subscription, plan=plan, at=boundary, now=now)
    return SubscriptionResult(successor, created=False, ended=(subscription,))


@transaction.atomic
def update_subscription(*, subscription: Subscription, data: dict[str, Any], now: datetime | None = None
                        ) -> Subscription:
    now = now or timezone.now()
    subscription = _locked_subscriptions().get(pk=subscription.pk)
    if data.get("name") is not None:
        subscription.name = data["name"]
    if "ending_at" in data:
        subscription.ending_at = data["ending_at"]
    started = False
    if data.get("subscription_at") is not None:
        if subscription.status != SubscriptionStatus.PENDING:
            raise ValidationFailed({"subscription_at": [ErrorCode.VALUE_IS_INVALID]})
        subscription.subscription_at = data["subscription_at"]
        if subscription.subscription_at <= now:
            _activate(subscription, now=now)
            started = True
    subscription.save()
    if started:
        _first_window_opened(subscription)
    _emit_subscription(
        subscription, WebhookType.SUBSCRIPTION_STARTED if started else WebhookType.SUBSCRIPTION_UPDATED)
    return subscription


def _terminate(subscription: Subscription, *, at: datetime, credit_note: str | None) -> None:
    """Active -> terminated at ``at`` (saved, subscription.terminated emitted)."""
    if credit_note is None:
        credit_note = "credit" if subscription.plan.pay_in_advance else ""
    subscription.status = SubscriptionStatus.TERMINATED
    subscription.terminated_at = at
    subscription.next_plan = None
    subscription.on_termination_credit_note = credit_note
    subscription.save()
    _emit_subscription(subscription, WebhookType.SUBSCRIPTION_TERMINATED)


@transaction.atomic
def terminate_subscription(*, subscription: Subscription, now: datetime | None = None,
                           at: datetime | None = None, credit_note: str | None = None) -> Subscription:
    """Active -> terminated at ``at`` (default now); pending -> canceled.

    ``credit_note`` is Lago's ``on_termination_credit_note`` (default ``credit`` for a plan
    paid in advance). The final window is closed by the caller in the same transaction
    (``metering.lifecycle.terminate_subscription``).
    """
    now = now or timezone.now()
    subscription = _locked_subscriptions().get(pk=subscription.pk)
    if subscription.status == SubscriptionStatus.PENDING:
        subscription.status = SubscriptionStatus.CANCELED
        subscription.canceled_at = now
        subscription.save()
        _emit_subscription(subscription, WebhookType.SUBSCRIPTION_CANCELED)
    elif subscription.status == SubscriptionStatus.ACTIVE:
        _terminate(subscription, at=at or now, credit_note=credit_note)
    return subscription


def terminate_customer_subscriptions(*, link: AccountLink) -> list[Subscription]:
    return [terminate_subscription(subscription=subscription) for subscription in
            Subscription.objects.filter(account_link=link).exclude(status__in=CLOSED_SUBSCRIPTION_STATUSES)]


@transaction.atomic
def delete_customer(*, link: AccountLink) -> tuple[AccountLink, list[Subscription]]:
    """Lago's customer DELETE: end the account's subscriptions, then soft-delete it;
    returns it and the subscriptions ended (``metering.lifecycle`` closes their windows).

    One transaction: a failure after the subscriptions ended must not leave a customer
    without subscriptions who still looks active (or the reverse).
    """
    ended = terminate_customer_subscriptions(link=link)
    return identity_services.delete_customer(link=link), ended


def activate_due_subscriptions(*, now: datetime | None = None) -> int:
    """Start pending subscriptions whose ``subscription_at`` has come (beat / on demand)."""
    now = now or timezone.now()
    started = 0
    for subscription_id in Subscription.objects.filter(
            status=SubscriptionStatus.PENDING, subscription_at__lte=now).values_list("id", flat=True):
        with transaction.atomic():
            subscription = _locked_subscriptions().filter(pk=subscription_id,
                                                          status=SubscriptionStatus.PENDING).first()
            if subscription is None:
                continue
            _activate(subscription, now=now)
            subscription.save()
            _first_window_opened(subscription)
            _emit_subscription(subscription, WebhookType.SUBSCRIPTION_STARTED)
            started += 1
    return started


def end_trials(*, now: datetime | None = None) -> int:
    """Beat: record the end of trials that have passed (``trial_ended_at`` = the trial's end,
    not the run's time) and emit subscription.trial_ended once each."""
    now = now or timezone.now()
    ended = 0
    for subscription_id in Subscription.objects.filter(
            status=SubscriptionStatus.ACTIVE, trial_ends_at__lte=now, trial_ended_at__isnull=True
    ).values_list("id", flat=True):
        with transaction.atomic():
            subscription = _locked_subscriptions().filter(
                pk=subscription_id, status=SubscriptionStatus.ACTIVE, trial_ended_at__isnull=True).first()
            if subscription is None:
                continue
            subscription.trial_ended_at = subscription.trial_ends_at
            subscription.save()
            _emit_subscription(subscription, WebhookType.SUBSCRIPTION_TRIAL_ENDED)
            ended += 1
    return ended


def send_termination_alerts(*, now: datetime | None = None) -> int:
    """Beat: Lago's ``subscription.termination_alert``, sent for an active subscription whose
    ``ending_at`` falls (UTC day) ``SUBSCRIPTION_TERMINATION_ALERT_DAYS`` days from today
    (Lago's default 15 and 45), at most once a day each."""
    now = now or timezone.now()
    today = now.astimezone(dt_timezone.utc).date()
    days = [today + timedelta(days=int(n)) for n in settings.SUBSCRIPTION_TERMINATION_ALERT_DAYS]
    start_of = {day: datetime.combine(day, time.min, tzinfo=dt_timezone.utc) for day in days}
    due = Q()
    for day in days:
        due |= Q(ending_at__gte=start_of[day], ending_at__lt=start_of[day] + timedelta(days=1))
    if not days:
        return 0
    sent = 0
    for subscription_id in (Subscription.objects.filter(due, status=SubscriptionStatus.ACTIVE)
                            .exclude(termination_alert_sent_on=today).values_list("id", flat=True)):
        with transaction.atomic():
            subscription = _locked_subscriptions().filter(pk=subscription_id, status=SubscriptionStatus.ACTIVE
                                                          ).exclude(termination_alert_sent_on=today).first()
            if subscription is None:
                continue
            subscription.termination_alert_sent_on = today
            subscription.save(update_fields=["termination_alert_sent_on", "updated_at"])
            _emit_subscription(subscription, WebhookType.SUBSCRIPTION_TERMINATION_ALERT)
            sent += 1
    return sent
