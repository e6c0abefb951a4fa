"""The plan's base fee as ``PlanFee`` rows: when each is written and for how much.

Metering writes them; the Odoo bridge pushes each exactly once as a one-off line. The
rules (docs/rating.md, "Lifecycle" and "Proration"):

* paid in advance: a ``subscription`` fee for a window when it OPENS (the subscription's
  start, each rollover, the new subscription of a plan change);
* paid in arrears: a ``subscription`` fee for a window when it CLOSES (rating freezes it,
  or the subscription ends);
* a window shorter than a full period is prorated by Lago's convention, in whole days of
  the subscription's billing timezone: ``amount x billed days / days of the full period``
  (``Fees::SubscriptionService``):

  - a window that runs to its period's end bills every local date from its start's date
    (a calendar start on Jan 20 at any hour: Jan 20-31, 12 of 31 days);
  - a window cut by a termination bills through the termination's date (that day counts,
    as in Lago even at 00:00), except when an upgrade replaced the subscription: the day of
    the change is billed by the new plan (Lago's ``date_diff_with_timezone`` minus one);

* on an early end of an advance plan, a ``credit`` fee gives back the whole unused days
  after the termination date (after the day before it for an upgrade), at the same day
  price, never more than the fee paid for the window (``CreditNotes::CreateFromTermination``),
  unless ``on_termination_credit_note`` is ``skip`` (``refund`` is treated as ``credit``);
* the part before ``trial_end`` is free;
* a yearly plan billing its charges monthly (``bill_charges_monthly``): the usage windows are
  months, the base fee's period stays the year. The writers are called per (monthly) window
  with ``charges_monthly`` and map it to its fee period (``fee_period``: the year holding it,
  from the subscription's start): the advance fee is written when the period's FIRST window
  opens, the arrears fee when its LAST window closes (or the subscription ends inside it), the
  credit of an early end covers the rest of the year. Mid-year month closes write nothing.

Every writer is idempotent (UNIQUE(subscription, kind, window_start), conflicts ignored)
and runs in the caller's transaction, the one that changes the window.
"""
from __future__ import annotations

from datetime import date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from uuid import UUID

from metering import windows
from metering.models import PlanFee, PlanFeeKind

_AMOUNT_PLACES = Decimal("0.000001")
_UNIT_PLACES = Decimal("0.0000000001")


def period_days(*, interval: str, anchor: datetime, at: datetime, tz: tzinfo) -> int:
    """Number of local dates of the whole billing period (not cut at the subscription's
    start) containing ``at``: Lago's ``compute_duration`` (31 for January, 28 or 29 for a
    Jan 31 anniversary's Feb 28 - Mar 30 period... counted from its own boundaries)."""
    start, end = windows.billing_window(interval=interval, anchor=anchor, at=at, tz=tz)
    return (windows.local_date(end, tz) - windows.local_date(start, tz)).days


def prorated(*, amount: Decimal, days: int, of: int) -> tuple[Decimal, Decimal]:
    """``(units, amount)`` of ``days`` out of a period of ``of`` days: the fraction (10 dp)
    and ``amount x days / of`` (6 dp, half up, from the exact fraction)."""
    units = (Decimal(days) / Decimal(of)).quantize(_UNIT_PLACES, rounding=ROUND_HALF_UP)
    value = (amount * days / of).quantize(_AMOUNT_PLACES, rounding=ROUND_HALF_UP)
    return units, value


def billed_days(*, start: datetime, end: datetime, period_end: datetime, tz: tzinfo, replaced: bool = False) -> int:
    """Lago's count of the days billed for ``[start, end)`` inside a period ending at
    ``period_end`` (``start`` may be a trial's end): every local date from ``start``'s;
    through ``end``'s date when ``end`` cuts the period (termination), minus that day when
    an upgrade ``replaced`` the subscription. Nothing when ``end <= start``."""
    if end <= start:
        return 0
    whole = (windows.local_date(period_end, tz) - windows.local_date(start, tz)).days
    if end >= period_end:
        return whole
    days = (windows.local_date(end, tz) - windows.local_date(start, tz)).days + (0 if replaced else 1)
    return max(0, min(days, whole))


def unused_days(*, start: datetime, ended_at: datetime, period_end: datetime, tz: tzinfo, replaced: bool,
                trial_end: datetime | None) -> int:
    """Whole local dates of ``[start, period_end)`` after the subscription ended at
    ``ended_at``: after the termination date (Lago counts it used), after the day before
    it on an upgrade (the new plan bills it); all of them when it ended at or before the
    window's start. The trial's dates were never paid, so never credited."""
    last = windows.local_date(period_end, tz)
    if ended_at <= start:
        first_unused: date = windows.local_date(start, tz)
    else:
        first_unused = windows.local_date(ended_at, tz)
        if not replaced:
            first_unused = date.fromordinal(first_unused.toordinal() + 1)
    if trial_end is not None:
        first_unused = max(first_unused, windows.local_date(trial_end, tz))
    return max(0, (last - first_unused).days)


def fee_period(*, interval: str, anchor: datetime, at: datetime, tz: tzinfo, started_at: datetime | None
               ) -> tuple[datetime, datetime]:
    """The base fee's window holding ``at``: the plan period (the year of a plan billing its
    charges monthly), from the subscription's start when it started inside it."""
    start, end = windows.billing_window(interval=interval, anchor=anchor, at=at, tz=tz)
    return (start if started_at is None else max(start, started_at)), end


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
                  currency: str, interval: str, anchor: datetime, start: datetime, end: datetime, tz: tzinfo,
                  into: list[PlanFee] | None = None, trial_end: datetime | None = None,
                  charges_monthly: bool = False, started_at: datetime | None = None) -> None:
    """A window ``[start, end)`` opened: its advance fee (advance plans only), for the days
    from ``trial_end``'s date. With ``into`` the fee is appended there (the caller ``save``s
    a batch), else written at once. ``charges_monthly``: ``[start, end)`` is a usage window
    of the plan's period, whose fee is written when its first window opens."""
    if not pay_in_advance:
        return
    if charges_monthly:
        fee_start, end = fee_period(interval=interval, anchor=anchor, at=start, tz=tz, started_at=started_at)
        if start != fee_start:
            return  # a later month of the period: its fee was written with the first
    days = billed_days(start=_after_trial(start, trial_end), end=end, period_end=end, tz=tz)
    if days <= 0:
        return
    units, value = prorated(amount=amount, days=days,
                            of=period_days(interval=interval, anchor=anchor, at=start, tz=tz))
    _write(subscription_id=subscription_id, plan_id=plan_id, kind=PlanFeeKind.SUBSCRIPTION, start=start,
           end=end, units=units, amount=value, currency=currency, into=into)


def window_closed(*, subscription_id: UUID, plan_id: UUID, pay_in_advance: bool, amount: Decimal,
                  currency: str, interval: str, anchor: datetime, start: datetime, period_end: datetime,
                  ended_at: datetime | None, credit_note: str, tz: tzinfo, replaced: bool = False,
                  into: list[PlanFee] | None = None, trial_end: datetime | None = None,
                  charges_monthly: bool = False, started_at: datetime | None = None) -> None:
    """The window ``[start, period_end)`` closed, cut at ``ended_at`` when the subscription
    ended inside it (``replaced``: by an upgrade): the arrears fee of the days used, or the
    advance credit of the unused days (in both, the days before ``trial_end`` are free).
    ``amount`` is the plan amount the window was priced at (``WindowTerms``).
    ``charges_monthly``: a usage window of the plan's period; the fee (or credit) is the
    period's, written when its last window closes or the subscription ends inside it."""
    if charges_monthly:
        fee_start, fee_end = fee_period(interval=interval, anchor=anchor, at=start, tz=tz, started_at=started_at)
        if ended_at is None and period_end < fee_end:
            return  # a month inside the period: the fee waits for the period's end
        start, period_end = fee_start, fee_end
    end = period_end if ended_at is None else max(min(period_end, ended_at), start)
    of = period_days(interval=interval, anchor=anchor, at=start, tz=tz)
    if not pay_in_advance:
        days = billed_days(start=_after_trial(start, trial_end), end=end, period_end=period_end, tz=tz,
                           replaced=replaced)
        if days > 0:
            units, value = prorated(amount=amount, days=days, of=of)
            _write(subscription_id=subscription_id, plan_id=plan_id, kind=PlanFeeKind.SUBSCRIPTION,
                   start=start, end=end, units=units, amount=value, currency=currency, into=into)
        return
    if ended_at is None or ended_at >= period_end or credit_note == "skip":
        return
    paid = (PlanFee.objects.filter(subscription_id=subscription_id, kind=PlanFeeKind.SUBSCRIPTION,
                                   window_start=start).values_list("amount", flat=True).first())
    if not paid:
        return
    days = unused_days(start=start, ended_at=end, period_end=period_end, tz=tz, replaced=replaced,
                       trial_end=trial_end)
    if days <= 0:
        return
    units, value = prorated(amount=amount, days=days, of=of)
    # Lago never credits more than the fee paid (a fee already prorated, e.g. a first window).
    value = min(value, paid)
    _write(subscription_id=subscription_id, plan_id=plan_id, kind=PlanFeeKind.CREDIT, start=end,
           end=period_end, units=units, amount=-value, currency=currency, into=into)
