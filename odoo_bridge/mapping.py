"""Our objects → Odoo values (pure: no I/O). References are what we search on before creating."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from coupons.models import Coupon, CouponDiscount
from identity.models import AccountLink, Customer
from metering.models import Charge, ChargeModel, Plan, PlanFee, PlanFeeKind, RatedUsage, Subscription, SubscriptionMode
from metering import windows

from .pricing import LinePricing, quantum, to_odoo_number, usage_line_pricing, window_label

# Plan interval -> (billing_period_value, billing_period_unit) of sale.subscription.plan
PERIODS = {"weekly": (1, "week"), "monthly": (1, "month"), "quarterly": (3, "month"), "yearly": (1, "year")}
PERIOD_NAMES = {(1, "week"): "Weekly", (1, "month"): "Monthly", (3, "month"): "Quarterly", (1, "year"): "Yearly"}


def customer_ref(customer: Customer) -> str:
    return f"fb-cus-{customer.pk}"


def subscription_ref(subscription: Subscription) -> str:
    return f"fb-sub-{subscription.pk}"


def plan_product_code(plan: Plan) -> str:
    return f"fb-plan-{plan.pk}"


def fee_product_code(plan: Plan) -> str:
    return f"fb-plan-fee-{plan.pk}"


def charge_product_code(charge: Charge) -> str:
    return f"fb-charge-{charge.pk}"


def pricelist_name(currency: str) -> str:
    """The pricelist of one currency (searched by this name and the currency before it is created)."""
    return f"Fusion Billing {currency.upper()}"


def plan_currency(plan: Plan) -> str:
    """The currency of a plan's orders and invoices (Lago's ``amount_currency``)."""
    return plan.amount_currency.upper()


def payload_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def account_ref(link: AccountLink) -> str:
    return f"fb-acct-{link.pk}"


def partner_vals(customer: Customer) -> dict:
    """The commercial partner of a unified customer: only the identity fact (the email). Every
    profile field is a service's own and lives on that account's invoice contact (``account_vals``);
    nothing one service set reaches another service's invoices. Never a VAT number here: Odoo
    copies a commercial partner's VAT onto every contact below it."""
    return {"name": customer.email or customer_ref(customer), "ref": customer_ref(customer),
            "email": customer.email or False, "customer_rank": 1}


def account_display_name(link: AccountLink) -> str:
    """Lago's ``Customer#display_name``: the legal name (or name), then first and last names."""
    names = [link.legal_name or link.name]
    person = " ".join(p for p in (link.firstname, link.lastname) if p)
    if person:
        names = [n for n in names if n] + (["-"] if any(names) else []) + [person]
    return " ".join(n for n in names if n)


def account_vals(link: AccountLink, *, parent_id: int) -> dict:
    """The service account's invoice-address contact (``type='invoice'``) under the commercial partner:
    the address and tax number that service set. Orders use it as ``partner_invoice_id`` and
    ``partner_shipping_id``, so the fiscal position (HST by province) follows this address."""
    return {
        "name": account_display_name(link) or link.external_email or account_ref(link), "ref": account_ref(link),
        "type": "invoice", "parent_id": parent_id, "email": link.external_email or False,
        "phone": link.phone or False, "vat": link.tax_identification_number or False,
        "street": link.address_line1 or False, "street2": link.address_line2 or False,
        "city": link.city or False, "zip": link.zipcode or False, "customer_rank": 1,
    }


def account_location(link: AccountLink) -> tuple[str, str]:
    """(country code, state code): resolved to Odoo ids by the sync (HST follows the state)."""
    return (link.country or "").upper(), (link.state or "").upper()


def period_of(plan: Plan) -> tuple[int, str]:
    """The Odoo plan's billing period: the period of the plan's usage windows, so Odoo invoices at
    each window's close. A yearly plan billing charges monthly is a MONTHLY Odoo plan: its usage is
    invoiced every month and its yearly fee, a one-off PlanFee line, once a year (its period's first
    window when paid in advance, after its last when paid in arrears)."""
    try:
        return PERIODS[plan.charges_interval]
    except KeyError:
        raise ValueError(f"plan {plan} has an interval Odoo cannot bill: {plan.interval!r}") from None


def plan_product_vals(plan: Plan, *, price_digits: int) -> dict:
    """The plan's recurring product: Odoo needs one on a subscription order; it carries no money
    (list price 0, the order line at price_unit 0): the base fee arrives as PlanFee one-off lines."""
    return {"name": plan.invoice_display_name or plan.name, "default_code": plan_product_code(plan),
            "type": "service", "recurring_invoice": True, "invoice_policy": "order", "list_price": 0.0}


def fee_product_vals(plan: Plan) -> dict:
    """The plan's base-fee product: NOT recurring, so a PlanFee line is invoiced once (a recurring
    product's line would be billed again every period by Odoo's cron)."""
    return {"name": plan.invoice_display_name or plan.name, "default_code": fee_product_code(plan),
            "type": "service", "recurring_invoice": False, "invoice_policy": "order", "list_price": 0.0}


def coupon_product_code(coupon: Coupon) -> str:
    return f"fb-coupon-{coupon.pk}"


def coupon_product_vals(coupon: Coupon) -> dict:
    """A coupon's discount product: one-off (not recurring), its lines carry a negative price."""
    return {"name": f"Coupon {coupon.name}", "default_code": coupon_product_code(coupon), "type": "service",
            "recurring_invoice": False, "invoice_policy": "order", "list_price": 0.0}


def discount_label(discount: CouponDiscount) -> str:
    """The discount line's description; with (order, coupon product) its natural key. Only immutable
    parts: the coupon's code (locked once applied), the applied coupon and the boundary's date."""
    applied = discount.applied_coupon
    day = billing_date(discount.boundary, subscription_calendar(discount.subscription))
    return f"Coupon {applied.coupon.code} invoice of {day.isoformat()} ({applied.pk.hex[:8]})"


def discount_line_pricing(discount: CouponDiscount, *, price_digits: int) -> LinePricing:
    """Quantity 1 at minus the discount (already in the currency's minor units)."""
    price = (-Decimal(discount.amount)).quantize(quantum(price_digits), rounding=ROUND_HALF_UP)
    return LinePricing(quantity=Decimal(1), price_unit=price, pre_rated=False)


def charge_product_vals(charge: Charge) -> dict:
    name = charge.invoice_display_name or charge.metric.name or charge.metric.code
    return {"name": name, "default_code": charge_product_code(charge), "type": "service",
            "recurring_invoice": False, "invoice_policy": "order", "list_price": 0.0}


def unit_rate(charge: Charge) -> Decimal | None:
    """The per-unit price when the charge is plainly unit-priced, else None (tiers, packages, batches)."""
    if charge.charge_model == ChargeModel.STANDARD and charge.amount is not None and charge.unit_batch == 1:
        return Decimal(charge.amount)
    return None


def usage_label(usage: RatedUsage) -> str:
    """The order line's description; with (order, product) it is the line's natural key."""
    charge = usage.charge
    name = charge.invoice_display_name or charge.metric.name or charge.metric.code
    return f"{name} {window_label(start=usage.window_start, end=usage.window_end, tz=subscription_calendar(usage.subscription))}"


@dataclass(frozen=True)
class UsageLine:
    label: str
    pricing: LinePricing
    zero: bool

    def vals(self, *, product_id: int) -> dict:
        if self.zero:
            return {"product_id": product_id, "name": self.label, "product_uom_qty": 0.0, "price_unit": 0.0}
        return {"product_id": product_id, "name": self.label,
                "product_uom_qty": to_odoo_number(self.pricing.quantity),
                "price_unit": to_odoo_number(self.pricing.price_unit)}

    def payload(self) -> dict:
        return {"label": self.label, "qty": str(self.pricing.quantity), "price": str(self.pricing.price_unit),
                "zero": self.zero}


def usage_line(usage: RatedUsage, *, price_digits: int, quantity_digits: int) -> UsageLine:
    amount = Decimal(usage.amount)
    pricing = usage_line_pricing(billable_units=Decimal(usage.billable_units), amount=amount,
                                 unit_rate=unit_rate(usage.charge), price_digits=price_digits,
                                 quantity_digits=quantity_digits)
    return UsageLine(label=usage_label(usage), pricing=pricing, zero=amount == 0)


def assert_billable(subscription: Subscription) -> None:
    """Last line of defence: a shadow subscription must never reach Odoo as billable."""
    if subscription.mode != SubscriptionMode.LIVE:
        raise ValueError(f"subscription {subscription} is {subscription.mode}: never pushed to Odoo")


def recurring_line_vals(subscription: Subscription, *, product_id: int) -> dict:
    """The order's one recurring line: the current plan's product at price 0 (invariant 3)."""
    plan = subscription.plan
    return {"product_id": product_id, "name": plan.invoice_display_name or plan.name, "product_uom_qty": 1.0,
            "price_unit": 0.0}


def fee_label(fee: PlanFee) -> str:
    """The fee line's description; with (order, fee product) its natural key (one fee per kind and window)."""
    name = fee.plan.invoice_display_name or fee.plan.name
    window = window_label(start=fee.window_start, end=fee.window_end, tz=subscription_calendar(fee.subscription))
    if fee.kind == PlanFeeKind.CREDIT:
        return f"{name} credit for unused time {window}"
    if fee.kind == PlanFeeKind.COMMITMENT:
        # Not the commitment's invoice_display_name: it can change after the line is pushed,
        # and the label is how a retry finds the line again.
        return f"{name} minimum commitment true-up {window}"
    return f"{name} {window}"


def fee_line_pricing(fee: PlanFee, *, price_digits: int) -> LinePricing:
    """Quantity 1 at the fee's amount (6 dp) rounded once to Odoo's price digits (as pre-rated usage)."""
    price = Decimal(fee.amount).quantize(quantum(price_digits), rounding=ROUND_HALF_UP)
    return LinePricing(quantity=Decimal(1), price_unit=price, pre_rated=False)


def billing_date(moment: dt.datetime, tz: dt.tzinfo) -> dt.date:
    """The calendar day of ``moment`` in the billing timezone: how a window boundary becomes an Odoo date."""
    return moment.astimezone(tz).date()


def subscription_calendar(subscription: Subscription) -> dt.tzinfo:
    """The timezone the subscription's windows are counted in (its snapshot of the customer's
    ``timezone`` or ``BILLING_TIMEZONE``): its window boundaries are midnights there, so its
    order's dates are days there."""
    return windows.zone(subscription.billing_timezone)


def order_start_date(subscription: Subscription, tz: dt.tzinfo) -> dt.date:
    """``start_date``: the day of the subscription's first window start (its start) in the billing timezone."""
    start = subscription.started_at or subscription.subscription_at
    return billing_date(start, tz)


def order_next_invoice_date(subscription: Subscription, tz: dt.tzinfo, grace: dt.timedelta | None = None) -> dt.date:
    """``next_invoice_date``: the day the current window closes (end + grace) in the billing timezone,
    never before ``start_date`` (Odoo's constraint). ``grace``: the subscription's own by default
    (``Subscription.grace``: the customer's or service's invoice grace period, or the deployment's),
    so Odoo never invoices a window before it froze and its lines were pushed."""
    start = order_start_date(subscription, tz)
    end = subscription.current_period_end
    if end is None:
        return start
    return max(start, billing_date(end + (subscription.grace if grace is None else grace), tz))
