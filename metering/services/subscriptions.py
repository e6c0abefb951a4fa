"""Subscription lifecycle: create (Lago's upsert semantics), plan change, update,
terminate, the customer's DELETE and starting pending subscriptions when due.

Every change locks the subscription row, writes it and records its ``subscription.*``
webhook in the outbox in the same transaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from billing_kit.errors import ErrorCode, NotFound, ValidationFailed
from billing_kit.updates import model_update
from identity import services as identity_services
from identity.models import AccountLink, Service
from metering import windows
from metering.models import (
    CLOSED_SUBSCRIPTION_STATUSES,
    Plan,
    Subscription,
    SubscriptionMode,
    SubscriptionStatus,
)
from metering.renderers import render_subscription
from metering.selectors import charges_prefetch, get_plan
from webhooks.event_types import WebhookType
from webhooks.services import record_event


# --------------------------------------------------------------------------- webhooks


def _emit_subscription(subscription: Subscription, webhook_type: WebhookType) -> None:
    record_event(service=subscription.service, webhook_type=webhook_type, object_type="subscription",
                 payload=render_subscription(subscription))


# --------------------------------------------------------------------------- subscriptions


def _window_fields(*, plan: Plan, billing_time: str, started_at: datetime, now: datetime) -> dict[str, Any]:
    anchor = windows.default_anchor(interval=plan.interval, billing_time=billing_time, started_at=started_at)
    start, end = windows.subscription_window(
        interval=plan.interval, billing_time=billing_time, started_at=started_at, at=max(now, started_at),
        anchor=anchor,
    )
    return {"billing_anchor": anchor, "current_period_start": start, "current_period_end": end}


def _locked_subscriptions() -> QuerySet[Subscription]:
    """Subscriptions to change, locked, with what their renderings (webhook, API) read.

    Only the subscription rows are locked: the service, plan and customer rows joined in
    are what every other subscription's writes and usage-event foreign keys need.
    """
    return (Subscription.objects.select_for_update(of=("self",))
            .select_related("plan", "account_link__customer", "service")
            .prefetch_related(charges_prefetch(lookup="plan__charges")))


def _open_subscription(*, service: Service, external_id: str) -> Subscription | None:
    return _locked_subscriptions().filter(service=service, external_id=external_id).exclude(
        status__in=CLOSED_SUBSCRIPTION_STATUSES).first()


@dataclass(frozen=True)
class SubscriptionResult:
    subscription: Subscription
    created: bool


def create_subscription(*, service: Service, data: dict[str, Any], now: datetime | None = None
                        ) -> SubscriptionResult:
    """Lago semantics: unknown customer → created; same external_id and plan → the existing
    subscription; another plan → the plan is changed; another customer → 422."""
    for attempt in range(3):
        try:
            with transaction.atomic():
                return _create_subscription(service=service, data=data, now=now or timezone.now())
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _create_subscription(*, service: Service, data: dict[str, Any], now: datetime) -> SubscriptionResult:
    plan = get_plan(service=service, code=data["plan_code"])
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
            return SubscriptionResult(existing, created=False)
        return SubscriptionResult(_change_plan(subscription=existing, plan=plan, now=now), created=False)

    # Whole seconds: an app that starts a subscription and immediately sends usage stamped
    # with Unix seconds must not see its first event refused as "before start".
    subscription_at = data.get("subscription_at") or now.replace(microsecond=0)
    billing_time = data.get("billing_time") or "calendar"
    subscription = Subscription(
        service=service, account_link=link, external_id=data["external_id"], name=data.get("name") or "",
        plan=plan, mode=SubscriptionMode.LIVE, billing_time=billing_time, subscription_at=subscription_at,
        ending_at=data.get("ending_at"), flat_amount=plan.amount, currency=plan.amount_currency,
    )
    if subscription_at > now:
        subscription.status = SubscriptionStatus.PENDING
    else:
        _activate(subscription, now=now)
    subscription.save()
    if subscription.status == SubscriptionStatus.ACTIVE:
        _emit_subscription(subscription, WebhookType.SUBSCRIPTION_STARTED)
    return SubscriptionResult(subscription, created=True)


def _activate(subscription: Subscription, *, now: datetime) -> None:
    """Assign (the caller saves) what starting changes: the status, the start, the first window."""
    started_at = subscription.subscription_at
    model_update(instance=subscription, save=False, data={
        "status": SubscriptionStatus.ACTIVE, "started_at": started_at,
        **_window_fields(plan=subscription.plan, billing_time=subscription.billing_time, started_at=started_at,
                         now=now),
    })


def _change_plan(*, subscription: Subscription, plan: Plan, now: datetime) -> Subscription:
    """Upgrade/downgrade in place, effective for the current window (never reopening a
    closed one: the window start only moves forward)."""
    interval_changed = subscription.plan.interval != plan.interval
    subscription.plan = plan
    subscription.flat_amount = plan.amount
    subscription.currency = plan.amount_currency
    if interval_changed and subscription.status == SubscriptionStatus.ACTIVE and subscription.started_at:
        fields = _window_fields(plan=plan, billing_time=subscription.billing_time,
                                started_at=subscription.started_at, now=now)
        start = max(fields["current_period_start"], subscription.current_period_start or fields[
            "current_period_start"])
        subscription.billing_anchor = fields["billing_anchor"]
        subscription.current_period_start = start
        subscription.current_period_end = max(fields["current_period_end"], start + (
            fields["current_period_end"] - fields["current_period_start"]))
    subscription.save()
    _emit_subscription(subscription, WebhookType.SUBSCRIPTION_UPDATED)
    return subscription


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
    _emit_subscription(
        subscription, WebhookType.SUBSCRIPTION_STARTED if started else WebhookType.SUBSCRIPTION_UPDATED)
    return subscription


@transaction.atomic
def terminate_subscription(*, subscription: Subscription, now: datetime | None = None) -> Subscription:
    """Active → terminated now (its last window is rated up to now); pending → canceled."""
    now = now or timezone.now()
    subscription = _locked_subscriptions().get(pk=subscription.pk)
    if subscription.status == SubscriptionStatus.PENDING:
        subscription.status = SubscriptionStatus.CANCELED
        subscription.canceled_at = now
        subscription.save()
        _emit_subscription(subscription, WebhookType.SUBSCRIPTION_CANCELED)
    elif subscription.status == SubscriptionStatus.ACTIVE:
        subscription.status = SubscriptionStatus.TERMINATED
        subscription.terminated_at = now
        subscription.save()
        _emit_subscription(subscription, WebhookType.SUBSCRIPTION_TERMINATED)
    return subscription


def terminate_customer_subscriptions(*, link: AccountLink) -> None:
    for subscription in Subscription.objects.filter(account_link=link).exclude(
            status__in=CLOSED_SUBSCRIPTION_STATUSES):
        terminate_subscription(subscription=subscription)


@transaction.atomic
def delete_customer(*, link: AccountLink) -> AccountLink:
    """Lago's customer DELETE: end the account's subscriptions, then soft-delete it.

    One transaction: a failure after the subscriptions ended must not leave a customer
    without subscriptions who still looks active (or the reverse).
    """
    terminate_customer_subscriptions(link=link)
    return identity_services.delete_customer(link=link)


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
            _emit_subscription(subscription, WebhookType.SUBSCRIPTION_STARTED)
            started += 1
    return started
