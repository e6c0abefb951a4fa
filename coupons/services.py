"""Coupon catalogue, applied coupons, and the realisation of discounts at invoice boundaries.

Realisation (``realise_discounts``): the Odoo bridge calls it for the subscriptions of a
push batch, before it plans their lines. A subscription's lines are grouped by the instant
Odoo bills them (its *boundary*): a frozen usage window and an arrears or commitment fee at
the window's end, an advance fee at its window's start, a termination credit at the
termination. Rating writes every line of a boundary in the transaction that freezes the
window, so a boundary seen here is complete. For each boundary not yet discounted, the
account's active applied coupons (oldest first) are computed by
``discounts.invoice_coupon_discounts`` on the boundary's subtotal, and the discounts, the
consumption of the applied coupons and the ``CouponBoundary`` row are written in one
transaction under a lock of the account's applied coupons: a boundary is discounted once,
whatever the retries.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable

from django.db import IntegrityError, transaction
from django.db.models import Sum

from billing_kit.errors import ErrorCode, NotFound, ValidationFailed
from billing_kit.formatting import from_cents, minor_unit_exponent
from identity.models import AccountLink, Service
from metering.models import PlanFee, PlanFeeKind, RatedUsage, RatedUsageState, Subscription

from .discounts import CouponTerms, invoice_coupon_discounts
from .models import (
    AppliedCoupon,
    AppliedCouponStatus,
    Coupon,
    CouponBoundary,
    CouponDiscount,
    CouponType,
    Expiration,
    Frequency,
)

# Fields a coupon keeps once it has been applied (lago-api Coupons::UpdateService: only these change).
APPLIED_COUPON_EDITABLE = ("name", "description", "expiration", "expiration_at")


# --------------------------------------------------------------------------- catalogue

def _coupon_values(data: dict[str, Any], *, current: Coupon | None, now: dt.datetime) -> dict[str, Any]:
    """The coupon's columns from a Lago body merged over ``current``; the rules of lago-api's model."""
    def pick(name: str, default: Any = None) -> Any:
        if name in data:
            return data[name]
        return getattr(current, name) if current is not None and hasattr(current, name) else default

    coupon_type = pick("coupon_type")
    frequency = pick("frequency") or Frequency.ONCE
    expiration = pick("expiration") or Expiration.NO_EXPIRATION
    currency = data.get("amount_currency") if "amount_currency" in data else (
        current.amount_currency if current else "")
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {
        "name": pick("name"), "code": pick("code"), "description": pick("description") or "",
        "coupon_type": coupon_type, "frequency": frequency, "expiration": expiration,
        "reusable": True if pick("reusable") is None else bool(pick("reusable")),
    }
    if coupon_type == CouponType.FIXED_AMOUNT:
        amount: Decimal | None
        if "amount_cents" in data:
            cents = data["amount_cents"]
            amount = None if cents is None else from_cents(cents, currency or None)
        else:
            amount = current.amount if current is not None else None
        if not currency:
            errors["amount_currency"] = [ErrorCode.VALUE_IS_INVALID]
        if amount is None or amount <= 0:
            errors["amount_cents"] = [ErrorCode.VALUE_IS_INVALID]
        values.update(amount=amount, amount_currency=currency or "", percentage_rate=None)
    else:
        rate = pick("percentage_rate")
        if rate is None or Decimal(rate) <= 0:
            errors["percentage_rate"] = [ErrorCode.VALUE_IS_INVALID]
        values.update(amount=None, amount_currency="", percentage_rate=rate)
    duration = pick("frequency_duration")
    if frequency == Frequency.RECURRING:
        if not duration or duration <= 0:
            errors["frequency_duration"] = [ErrorCode.VALUE_IS_INVALID]
    else:
        duration = None if frequency == Frequency.ONCE else duration
    values["frequency_duration"] = duration
    expiration_at = pick("expiration_at")
    if expiration == Expiration.TIME_LIMIT:
        if expiration_at is None or ("expiration_at" in data and expiration_at <= now):
            errors["expiration_at"] = [ErrorCode.VALUE_IS_INVALID]
    else:
        expiration_at = None
    values["expiration_at"] = expiration_at
    if errors:
        raise ValidationFailed(errors)
    return values


def create_coupon(*, service: Service, data: dict[str, Any], now: dt.datetime) -> Coupon:
    values = _coupon_values(data, current=None, now=now)
    try:
        with transaction.atomic():
            return Coupon.objects.create(service=service, **values)
    except IntegrityError:
        raise ValidationFailed({"code": [ErrorCode.VALUE_ALREADY_EXIST]}) from None


def update_coupon(*, coupon: Coupon, data: dict[str, Any], now: dt.datetime) -> Coupon:
    """Lago: once applied, only the name, description and expiration change (the rest is kept)."""
    if AppliedCoupon.objects.filter(coupon=coupon).exists():
        data = {k: v for k, v in data.items() if k in APPLIED_COUPON_EDITABLE}
    values = _coupon_values(data, current=coupon, now=now)
    try:
        with transaction.atomic():
            for name, value in values.items():
                setattr(coupon, name, value)
            coupon.save()
    except IntegrityError:
        raise ValidationFailed({"code": [ErrorCode.VALUE_ALREADY_EXIST]}) from None
    return coupon


@transaction.atomic
def delete_coupon(*, coupon: Coupon, now: dt.datetime) -> Coupon:
    """Lago's destroy: the coupon is terminated and discarded, and so are its active applications."""
    coupon.terminated_at = coupon.terminated_at or now
    coupon.deleted_at = now
    coupon.save(update_fields=["terminated_at", "deleted_at", "updated_at"])
    AppliedCoupon.objects.filter(coupon=coupon, status=AppliedCouponStatus.ACTIVE).update(
        status=AppliedCouponStatus.TERMINATED, terminated_at=now, updated_at=now)
    return coupon


# --------------------------------------------------------------------------- applied coupons

def apply_coupon(*, service: Service, link: AccountLink, coupon: Coupon | None, data: dict[str, Any],
                 now: dt.datetime) -> AppliedCoupon:
    """``POST /applied_coupons`` (lago-api AppliedCoupons::CreateService): the coupon must be live
    (not terminated nor expired), reusable or never applied to this customer; the body's
    amount, rate and frequency override the coupon's."""
    if coupon is None or coupon.terminated_at is not None or (
            coupon.expiration == Expiration.TIME_LIMIT and coupon.expiration_at is not None
            and coupon.expiration_at <= now):
        raise NotFound(ErrorCode.COUPON_NOT_FOUND)
    with transaction.atomic():
        AccountLink.objects.select_for_update().filter(pk=link.pk).first()  # one application at a time
        if not coupon.reusable and AppliedCoupon.objects.filter(coupon=coupon, account_link=link).exists():
            raise ValidationFailed({"coupon": [ErrorCode.COUPON_IS_NOT_REUSABLE]})
        fixed = coupon.coupon_type == CouponType.FIXED_AMOUNT
        currency = (data.get("amount_currency") or coupon.amount_currency) if fixed else ""
        if fixed and link.currency and currency != link.currency:
            raise ValidationFailed({"currency": [ErrorCode.CURRENCIES_DOES_NOT_MATCH]})
        amount = coupon.amount
        if fixed and data.get("amount_cents") is not None:
            amount = from_cents(data["amount_cents"], currency)
            if amount <= 0:
                raise ValidationFailed({"amount_cents": [ErrorCode.VALUE_IS_INVALID]})
        rate = coupon.percentage_rate
        if not fixed and data.get("percentage_rate") is not None:
            rate = data["percentage_rate"]
            if rate <= 0:
                raise ValidationFailed({"percentage_rate": [ErrorCode.VALUE_IS_INVALID]})
        frequency = data.get("frequency") or coupon.frequency
        duration = data.get("frequency_duration") if data.get("frequency_duration") is not None \
            else coupon.frequency_duration
        if frequency == Frequency.RECURRING and not duration:
            raise ValidationFailed({"frequency_duration": [ErrorCode.VALUE_IS_INVALID]})
        if frequency == Frequency.ONCE:
            duration = None
        applied = AppliedCoupon.objects.create(
            service=service, coupon=coupon, account_link=link, amount=amount if fixed else None,
            amount_currency=currency or "", percentage_rate=None if fixed else rate, frequency=frequency,
            frequency_duration=duration,
            frequency_duration_remaining=duration if frequency == Frequency.RECURRING else None)
    return applied


def terminate_applied_coupon(*, applied: AppliedCoupon, now: dt.datetime) -> AppliedCoupon:
    """``DELETE /customers/{id}/applied_coupons/{id}`` (lago-api AppliedCoupons::TerminateService): an
    already terminated one is answered as it is."""
    with transaction.atomic():
        applied = AppliedCoupon.objects.select_for_update().get(pk=applied.pk)
        if applied.status == AppliedCouponStatus.TERMINATED:
            return applied
        applied.status, applied.terminated_at = AppliedCouponStatus.TERMINATED, now
        applied.save(update_fields=["status", "terminated_at", "updated_at"])
    return applied


def amount_spent(applied_ids: Iterable[Any]) -> dict[Any, Decimal]:
    rows = (CouponDiscount.objects.filter(applied_coupon_id__in=list(applied_ids))
            .values("applied_coupon_id").annotate(total=Sum("amount")))
    return {r["applied_coupon_id"]: r["total"] for r in rows}


# --------------------------------------------------------------------------- realisation

def fee_boundary(fee: PlanFee) -> dt.datetime:
    """When Odoo bills a plan fee: an advance fee and a termination credit at their window's start,
    an arrears fee and a commitment true-up at their window's end."""
    if fee.kind == PlanFeeKind.CREDIT or (fee.kind == PlanFeeKind.SUBSCRIPTION and fee.plan.pay_in_advance):
        return fee.window_start
    return fee.window_end


def _line_amount(amount: Decimal, exponent: int) -> Decimal:
    """A line's subtotal as Odoo carries it: rounded once to the currency's minor units."""
    return amount.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_UP)


def boundary_subtotals(*, subscription: Subscription, since: dt.datetime, now: dt.datetime
                       ) -> dict[dt.datetime, Decimal]:
    """The subtotal before taxes of each of ``subscription``'s boundaries in ``[since, now]``: frozen
    usage windows and plan fees, each line rounded to the currency's minor units."""
    exponent = minor_unit_exponent(subscription.currency)
    totals: dict[dt.datetime, Decimal] = defaultdict(Decimal)
    for end, amount in RatedUsage.objects.filter(
            subscription=subscription, state=RatedUsageState.FROZEN, window_end__gte=since,
            window_end__lte=now).values_list("window_end", "amount"):
        totals[end] += _line_amount(amount, exponent)
    for fee in PlanFee.objects.filter(subscription=subscription).select_related("plan"):
        boundary = fee_boundary(fee)
        if since <= boundary <= now:
            totals[boundary] += _line_amount(fee.amount, exponent)
    return dict(totals)


def _terms(applied: AppliedCoupon, spent: Decimal) -> CouponTerms:
    return CouponTerms(key=applied.pk, percentage=applied.is_percentage, frequency=applied.frequency,
                       amount=applied.amount, currency=applied.amount_currency, rate=applied.percentage_rate,
                       spent=spent, periods_left=applied.frequency_duration_remaining)


def realise_discounts(*, subscriptions: Iterable[Subscription], now: dt.datetime) -> list[CouponDiscount]:
    """Discount every boundary of ``subscriptions`` not discounted yet whose account has active applied
    coupons; a coupon applies to the boundaries from its application on. Returns the new discounts."""
    subs = list(subscriptions)
    links = {s.account_link_id for s in subs}
    first_applied: dict[Any, dt.datetime] = {}
    for link_id, applied_at in AppliedCoupon.objects.filter(
            account_link_id__in=links, status=AppliedCouponStatus.ACTIVE).values_list("account_link_id", "created_at"):
        first_applied[link_id] = min(applied_at, first_applied.get(link_id, applied_at))
    created: list[CouponDiscount] = []
    for sub in subs:
        since = first_applied.get(sub.account_link_id)
        if since is None:
            continue
        subtotals = boundary_subtotals(subscription=sub, since=since, now=now)
        done = set(CouponBoundary.objects.filter(subscription=sub, boundary__in=list(subtotals))
                   .values_list("boundary", flat=True))
        for boundary in sorted(b for b in subtotals if b not in done):
            created += _discount_boundary(subscription=sub, boundary=boundary, subtotal=subtotals[boundary])
    return created


def _discount_boundary(*, subscription: Subscription, boundary: dt.datetime, subtotal: Decimal
                       ) -> list[CouponDiscount]:
    """One boundary, in one transaction: its discounts, the coupons' consumption and its CouponBoundary."""
    with transaction.atomic():
        applied = list(AppliedCoupon.objects.select_for_update(of=("self",)).select_related("coupon").filter(
            account_link_id=subscription.account_link_id, status=AppliedCouponStatus.ACTIVE,
            created_at__lte=boundary).order_by("created_at", "id"))
        if CouponBoundary.objects.filter(subscription=subscription, boundary=boundary).exists():
            return []  # another worker did it while we waited for the lock
        spent = amount_spent(a.pk for a in applied)
        discounts = invoice_coupon_discounts(
            subtotal=subtotal, currency=subscription.currency, exponent=minor_unit_exponent(subscription.currency),
            coupons=[_terms(a, spent.get(a.pk, Decimal(0))) for a in applied])
        CouponBoundary.objects.create(subscription=subscription, boundary=boundary, subtotal=subtotal)
        by_pk = {a.pk: a for a in applied}
        rows = []
        for discount in discounts:
            coupon = by_pk[discount.key]
            rows.append(CouponDiscount.objects.create(
                applied_coupon=coupon, subscription=subscription, boundary=boundary, base=subtotal,
                amount=discount.amount, currency=subscription.currency))
            coupon.frequency_duration_remaining = discount.periods_left
            if discount.terminated:
                coupon.status, coupon.terminated_at = AppliedCouponStatus.TERMINATED, boundary
            coupon.save(update_fields=["frequency_duration_remaining", "status", "terminated_at", "updated_at"])
        return rows
