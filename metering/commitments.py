"""A plan's minimum commitment: the true-up written when a window closes.

Lago (``Commitments::Minimum::CalculateTrueUpFeeService`` and its in-advance/in-arrears
variants, ``Commitments::CalculateProratedCoefficientService``): when a billing period's
charges are billed, the fees of that period (the base fee of the period, whether paid in
advance or in arrears, and the usage charges of the period) are compared with the
commitment prorated to the days the subscription had in the period; the shortfall is a
``commitment`` fee. Here it is a ``PlanFee`` of kind ``commitment`` for the window, which
the Odoo bridge bills once as a one-off line, like the base fee.

Proration follows Lago's coefficient, not the base fee's: every local date from the
window's start through its end (the termination date included, even for an upgrade) out
of the full period's dates; a trial does not shrink the commitment (its base fee is zero,
so the true-up grows). The commitment a window is held to is the one it opened with
(``WindowTerms``): a change applies from the next window. Amounts stay at 6 dp; cents are
rounded once, on the Odoo line.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Sequence
from uuid import UUID

from django.db.models import Sum

from metering import plan_fees
from metering.models import MinimumCommitment, PlanFee, PlanFeeKind, RatedUsage, WindowTerms


@dataclass(frozen=True)
class ClosedWindow:
    """A window ``[start, period_end)`` that closed, cut at ``ended_at`` when the
    subscription ended inside it."""

    subscription_id: UUID
    plan_id: UUID
    currency: str
    interval: str
    anchor: datetime
    start: datetime
    period_end: datetime
    ended_at: datetime | None
    tz: tzinfo

    @property
    def end(self) -> datetime:
        if self.ended_at is None:
            return self.period_end
        return max(min(self.period_end, self.ended_at), self.start)


def _window_commitments(closed: Sequence[ClosedWindow]) -> dict[tuple[UUID, datetime], Decimal]:
    """The commitment each closed window is held to: the one kept for it when the plan's
    changed mid-window, else the plan's; windows without one are left out."""
    current = dict(MinimumCommitment.objects.filter(plan_id__in={w.plan_id for w in closed})
                   .values_list("plan_id", "amount"))
    wanted = {(w.subscription_id, w.start) for w in closed}
    kept: dict[tuple[UUID, datetime], str | None] = {}
    for sub_id, start, terms in (WindowTerms.objects
                                 .filter(subscription_id__in={w.subscription_id for w in closed}, charge__isnull=True)
                                 .values_list("subscription_id", "window_start", "terms")):
        if (sub_id, start) in wanted and "minimum_commitment" in terms:
            kept[(sub_id, start)] = terms["minimum_commitment"]
    found: dict[tuple[UUID, datetime], Decimal] = {}
    for window in closed:
        key = (window.subscription_id, window.start)
        if key in kept:
            kept_amount = kept[key]
            amount = None if kept_amount is None else Decimal(kept_amount)
        else:
            amount = current.get(window.plan_id)
        if amount:
            found[key] = amount
    return found


def _billed(windows_of: Sequence[ClosedWindow]) -> dict[tuple[UUID, datetime], Decimal]:
    """What each window billed: its base fee (not net of a termination credit, as in Lago)
    and its rated usage."""
    subs = {w.subscription_id for w in windows_of}
    starts = {w.start for w in windows_of}
    totals: dict[tuple[UUID, datetime], Decimal] = {}
    fee_rows = (PlanFee.objects.filter(subscription_id__in=subs, window_start__in=starts, kind=PlanFeeKind.SUBSCRIPTION)
                .values_list("subscription_id", "window_start").annotate(total=Sum("amount")))
    usage_rows = (RatedUsage.objects.filter(subscription_id__in=subs, window_start__in=starts)
                  .values_list("subscription_id", "window_start").annotate(total=Sum("amount")))
    for sub_id, start, total in [*fee_rows, *usage_rows]:
        totals[(sub_id, start)] = totals.get((sub_id, start), Decimal(0)) + (total or Decimal(0))
    return totals


def write_true_ups(closed: Sequence[ClosedWindow]) -> None:
    """The ``commitment`` fee of each closed window that billed less than its prorated
    commitment. Runs in the transaction that closes the windows, after their base fees and
    frozen usage are written; idempotent (one per subscription, kind and window)."""
    commitments = _window_commitments(closed)
    held = [w for w in closed if (w.subscription_id, w.start) in commitments]
    if not held:
        return
    billed = _billed(held)
    fees: list[PlanFee] = []
    for window in held:
        key = (window.subscription_id, window.start)
        days = plan_fees.billed_days(start=window.start, end=window.end, period_end=window.period_end, tz=window.tz)
        if days <= 0:
            continue
        of = plan_fees.period_days(interval=window.interval, anchor=window.anchor, at=window.start, tz=window.tz)
        units, due = plan_fees.prorated(amount=commitments[key], days=days, of=of)
        true_up = due - billed.get(key, Decimal(0))
        if true_up > 0:
            fees.append(PlanFee(subscription_id=window.subscription_id, plan_id=window.plan_id,
                                kind=PlanFeeKind.COMMITMENT, window_start=window.start, window_end=window.end,
                                units=units, amount=true_up, currency=window.currency))
    plan_fees.save(fees)
