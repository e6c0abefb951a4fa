"""The plan's base fee as ``PlanFee`` rows: when each is written and for how much.

Metering writes them; the Odoo bridge pushes each exactly once as a one-off line. The
rules (docs/rating.md, "Lifecycle"):

* paid in advance: a ``subscription`` fee for a window when it OPENS (the subscription's
  start, each rollover, the new subscription of a plan change);
* paid in arrears: a ``subscription`` fee for a window when it CLOSES (rating freezes it,
  or the subscription ends);
* a window shorter than a full period (mid-period calendar start, termination, plan
  change) is prorated: ``units`` = duration of the window / duration of the full period
  containing it (whole days when, as usual, the instants are midnights: 17/31 for
  Jan 15 - Feb 1);
* on an early end of an advance plan, a ``credit`` fee gives back the unused part,
  ``-(amount x (period end - end) / full period)``, unless ``on_termination_credit_note``
  is ``skip`` (``refund`` is treated as ``credit``).

Every writer is idempotent (UNIQUE(subscription, kind, window_start), conflicts ignored)
and runs in the caller's transaction, the one that changes the window.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from uuid import UUID

from metering import windows
from metering.models import PlanFee, PlanFeeKind

_AMOUNT_PLACES = Decimal("0.000001")
_UNIT_PLACES = Decimal("0.0000000001")
_MICROSECOND = timedelta(microseconds=1)


def _micros(delta: timedelta) -> int:
    return delta // _MICROSECOND


def full_period(*, interval: str, anchor: datetime, at: datetime) -> tuple[datetime, datetime]:
    """The whole billing period (not cut at the subscription's start) containing ``at``."""
    return windows.billing_window(interval=interval, anchor=anchor, at=at)


def prorated(*, amount: Decimal, interval: str, anchor: datetime, start: datetime, end: datetime
             ) -> tuple[Decimal, Decimal]:
    """``(units, amount)`` of ``[start, end)`` (inside one period): the fraction of the full
    period (10 dp) and ``amount x fraction`` (6 dp, half up, from the exact fraction)."""
    period_start, period_end = full_period(interval=interval, anchor=anchor, at=start)
    numerator = _micros(end - start)
    denominator = _micros(period_end - period_start)
    units = (Decimal(numerator) / Decimal(denominator)).quantize(_UNIT_PLACES, rounding=ROUND_HALF_UP)
    value = (amount * numerator / denominator).quantize(_AMOUNT_PLACES, rounding=ROUND_HALF_UP)
    return units, value


def _after_trial(start: datetime, trial_end: datetime | None) -> datetime:
    return start if trial_end is None else max(start, trial_end)


def save(fees: list[PlanFee]) -> None:
    """Insert ``fees``; one already written for its (subscription, kind, window) is kept."""
    if fees:
        PlanFee.objects.bulk_create(fees, ignore_conflicts=True, batch_size=1000)


def _write(*, subscription_id: UUID, plan_id: UUID, kind: str, start: datetime, end: datetime,
           units: Decimal, amount: Decimal, currency: str, into: list[PlanFee] | None) -> None:
    fee = PlanFee(subscription_id=subscription_id, plan_id=plan_id, kind=kind, window_start=start, window_end=end,
                  units=units, amount=amount, currency=currency)
    if into is None:
        save([fee])
    else:
        into.append(fee)


def window_opened(*, subscription_id: UUID, plan_id: UUID, pay_in_advance: bool, amount: Decimal,
                  currency: str, interval: str, anchor: datetime, start: datetime, end: datetime,
                  into: list[PlanFee] | None = None, trial_end: datetime | None = None) -> None:
    """A window ``[start, end)`` opened: its advance fee (advance plans only), for the part
    after ``trial_end``. With ``into`` the fee is appended there (the caller ``save``s a
    batch), else written at once."""
    billed_from = _after_trial(start, trial_end)
    if not pay_in_advance or end <= billed_from:
        return
    units, value = prorated(amount=amount, interval=interval, anchor=anchor, start=billed_from, end=end)
    _write(subscription_id=subscription_id, plan_id=plan_id, kind=PlanFeeKind.SUBSCRIPTION, start=start,
           end=end, units=units, amount=value, currency=currency, into=into)


def window_closed(*, subscription_id: UUID, plan_id: UUID, pay_in_advance: bool, amount: Decimal,
                  currency: str, interval: str, anchor: datetime, start: datetime, period_end: datetime,
                  ended_at: datetime | None, credit_note: str, into: list[PlanFee] | None = None,
                  trial_end: datetime | None = None) -> None:
    """The window ``[start, period_end)`` closed, cut at ``ended_at`` when the subscription
    ended inside it: the arrears fee of the part used, or the advance credit of the rest
    (in both, the part before ``trial_end`` is free)."""
    end = period_end if ended_at is None else max(min(period_end, ended_at), start)
    if not pay_in_advance:
        billed_from = _after_trial(start, trial_end)
        if end > billed_from:
            units, value = prorated(amount=amount, interval=interval, anchor=anchor, start=billed_from, end=end)
            _write(subscription_id=subscription_id, plan_id=plan_id, kind=PlanFeeKind.SUBSCRIPTION,
                   start=start, end=end, units=units, amount=value, currency=currency, into=into)
        return
    if end >= period_end or credit_note == "skip":
        return
    paid = PlanFee.objects.filter(subscription_id=subscription_id, kind=PlanFeeKind.SUBSCRIPTION,
                                  window_start=start).exists()
    if not paid:
        return
    unused_from = _after_trial(end, trial_end)
    if unused_from >= period_end:
        return
    units, value = prorated(amount=amount, interval=interval, anchor=anchor, start=unused_from, end=period_end)
    _write(subscription_id=subscription_id, plan_id=plan_id, kind=PlanFeeKind.CREDIT, start=end,
           end=period_end, units=units, amount=-value, currency=currency, into=into)
