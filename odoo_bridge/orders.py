"""The order step of a batch: one ``sale.order`` per live subscription, with its lines.

``push_orders`` runs these steps, in this order (the RPCs of a batch follow it):

1. plan: the orders whose payload differs from what Odoo confirmed (hashes), the one-off
   lines to push (usage of FROZEN windows only, and plan fees), each with a due state row;
2. find the orders by ``client_order_ref`` (a create whose answer was lost is found
   here, not repeated);
3. create the missing ones in one call, each with its recurring line (the plan's product at
   price 0), ``start_date``/``next_invoice_date`` and its one-off lines inline (one transaction);
4. confirm the new orders and the drafts found in 2 (a lost confirmation is retried so);
5. learn the ids of the new one-off lines by their natural key (order, product, description);
6. orders found in 2: their recurring line (exactly one, the current plan's: invariant 3) and
   their ``next_invoice_date`` (the current window's close; one multi-record ``write`` per date);
7. one-off lines of orders Odoo already held: created (one multi-create), written while not
   invoiced (one ``load`` for all of the batch's lines), or corrected by a DELTA line when Odoo
   invoiced a different amount (never dropped);
8. invoice now through the public wizard: advance fees at a subscription's start, and every
   remaining line of a terminated subscription (drafts found are posted, not duplicated);
9. close the terminated subscriptions' orders once every one-off line is invoiced (invariant 4).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable

from django.conf import settings

from coupons.models import CouponDiscount
from metering.models import (
    CLOSED_SUBSCRIPTION_STATUSES,
    PlanFee,
    PlanFeeKind,
    RatedUsage,
    RatedUsageState,
    Subscription,
)

from . import mapping
from .client import OdooRemoteError
from .models import OdooSyncState, SyncKind, SyncStatus
from .pricing import LinePricing, quantum, to_odoo_number
from .pusher import Pusher
from .state_book import StateBook

OPEN_ODOO_STATES = ("3_progress", "4_paused")
LineKey = tuple[int | None, int | None, str]  # (order, product, description): a line's natural key
CORRECTION = " (correction {n})"
CURRENCY_NOTE = "Odoo's order is in"
LINE_FIELDS = ["order_id", "product_id", "name", "price_unit", "product_uom_qty", "qty_invoiced",
               "recurring_invoice"]


def billing_timezone() -> dt.tzinfo:
    """``BILLING_TIMEZONE`` (settings/odoo.py): the calendar of Odoo's order dates."""
    return zoneinfo.ZoneInfo(settings.BILLING_TIMEZONE)


def _dec(value: Any) -> Decimal:
    return Decimal(str(value or 0))


@dataclass(frozen=True)
class OrderWork:
    """A subscription whose order differs from what Odoo confirmed, with the Odoo ids it refers to."""

    subscription: Subscription
    state: OdooSyncState
    digest: str
    partner_id: int  # the customer's commercial partner
    invoice_partner_id: int  # the service account's invoice-address contact (also the delivery address)
    plan_id: int
    product_id: int  # the plan's recurring product: the recurring line, at price 0
    pricelist_id: int  # the plan currency's pricelist: the order's (and its invoices') currency
    start_date: dt.date
    next_invoice_date: dt.date

    @property
    def closed(self) -> bool:
        return self.subscription.status in CLOSED_SUBSCRIPTION_STATUSES


@dataclass(frozen=True)
class LineWork:
    """A one-off line to push: a frozen usage window of one charge, one plan fee, or one coupon discount."""

    subject: RatedUsage | PlanFee | CouponDiscount
    state: OdooSyncState
    label: str
    pricing: LinePricing
    zero: bool
    digest: str
    product_id: int
    invoice_now: bool = False  # an advance fee of the subscription's first window

    @property
    def vals(self) -> dict[str, Any]:
        if self.zero:
            return {"product_id": self.product_id, "name": self.label, "product_uom_qty": 0.0, "price_unit": 0.0}
        return {"product_id": self.product_id, "name": self.label,
                "product_uom_qty": to_odoo_number(self.pricing.quantity),
                "price_unit": to_odoo_number(self.pricing.price_unit)}

    @property
    def total(self) -> Decimal:
        return Decimal(0) if self.zero else self.pricing.total


@dataclass(frozen=True)
class NewOrder:
    """An order to create, with its recurring line and its non-zero one-off lines inline."""

    work: OrderWork
    vals: dict[str, Any]
    lines: tuple[LineWork, ...]

    @property
    def state(self) -> OdooSyncState:
        return self.work.state


@dataclass(frozen=True)
class FoundOrder:
    """An order Odoo already holds for the subscription, as found by ``client_order_ref``."""

    work: OrderWork
    record: dict[str, Any]  # id, state, subscription_state, start_date, next_invoice_date

    @property
    def state(self) -> OdooSyncState:
        return self.work.state


@dataclass(frozen=True)
class OrderLines:
    """The one-off lines to push to one order Odoo already holds."""

    order_id: int
    lines: list[LineWork]


@dataclass(frozen=True)
class NewLine:
    """A one-off line (or a correction) to add to an existing order."""

    work: LineWork
    vals: dict[str, Any]
    correction: bool = False

    @property
    def state(self) -> OdooSyncState:
        return self.work.state


@dataclass(frozen=True)
class LineWrite:
    """A line Odoo holds (not invoiced) whose quantity or price changes."""

    work: LineWork
    line_id: int
    vals: dict[str, Any]
    correction: bool = False


@dataclass
class Finishing:
    """An order to invoice now (and, for a terminated subscription, to close afterwards)."""

    order_id: int
    order: OrderWork
    close: bool
    fees: list[LineWork] = field(default_factory=list)


def push_orders(pusher: Pusher, book: StateBook, subscriptions: list[Subscription], usages: list[RatedUsage],
                fees: list[PlanFee] | None = None, *, waiting: Iterable[Any] = (),
                discounts: list[CouponDiscount] | None = None) -> None:
    """Steps 1–9 above for one batch whose partners and catalog were pushed first.

    ``waiting``: terminated subscriptions whose final window metering has not frozen yet (not
    invoiced nor closed before it is). ``discounts``: coupon discounts to push (negative lines,
    ``OrderPush.discount_work``), with the lines of the invoice they discount.
    """
    OrderPush(pusher, book, waiting=set(waiting)).run(subscriptions, usages, fees or [], discounts or [])


def _line_key(line: dict[str, Any]) -> LineKey:
    return line["order_id"][0], line["product_id"][0] if line["product_id"] else None, line["name"]


class OrderPush:
    """The orders and one-off lines of one batch (``pusher`` lives for the cycle, ``book`` for the batch)."""

    def __init__(self, pusher: Pusher, book: StateBook, *, waiting: set[Any] | None = None) -> None:
        self.pusher = pusher
        self.book = book
        self.client = pusher.client
        self.report = pusher.report
        self.waiting = waiting or set()
        self.tz = billing_timezone()
        self.today = mapping.billing_date(pusher.now, self.tz)
        self.finishing: dict[int, Finishing] = {}
        self.pending_invoice_now: dict[Any, list[LineWork]] = {}
        self.unconfirmed: set[int] = set()  # orders Odoo refused to confirm this cycle (drafts, retried)

    def run(self, subscriptions: list[Subscription], usages: list[RatedUsage], fees: list[PlanFee],
            discounts: list[CouponDiscount] | None = None) -> None:
        orders, lines = self.plan(subscriptions, usages, fees, discounts or [])
        all_lines = dict(lines)  # sort_orders takes the new orders' lines out of ``lines``
        found = self.find_orders(orders)
        new, existing = self.sort_orders(orders, found, lines)
        created = self.create_orders(new)
        self.confirm(created, existing)
        self.learn_line_ids(created)
        self.update_existing(existing)
        self.push_lines(self.lines_of_existing_orders(lines))
        self.collect_invoice_now(subscriptions, all_lines)
        fully_invoiced = self.invoice_now(list(self.finishing.values()))
        self.close(fully_invoiced)

    # 1. plan
    def plan(self, subscriptions: list[Subscription], usages: list[RatedUsage], fees: list[PlanFee],
             discounts: list[CouponDiscount] | None = None) -> tuple[list[OrderWork], dict[Any, list[LineWork]]]:
        """Orders to push, and one-off lines to push by subscription pk (both in the batch's order)."""
        discounts_by_sub: dict[Any, list[CouponDiscount]] = {}
        for discount in discounts or []:
            discounts_by_sub.setdefault(discount.subscription_id, []).append(discount)
        usages_by_sub: dict[Any, list[RatedUsage]] = {}
        for usage in usages:
            usages_by_sub.setdefault(usage.subscription_id, []).append(usage)
        fees_by_sub: dict[Any, list[PlanFee]] = {}
        for fee in fees:
            fees_by_sub.setdefault(fee.subscription_id, []).append(fee)
        orders: list[OrderWork] = []
        lines: dict[Any, list[LineWork]] = {}
        for sub in subscriptions:
            mapping.assert_billable(sub)
            order = self.order_work(sub)
            if order is None:
                continue  # its partner or catalog failed this cycle; retried with them
            state = order.state
            in_sync = (state.odoo_id and state.pushed_hash == order.digest and state.status == SyncStatus.SYNCED
                       and (state.final or not order.closed))
            if not in_sync and self.book.due(state):
                orders.append(order)
            pending = [w for w in (self.usage_work(sub, u) for u in usages_by_sub.get(sub.pk, [])) if w is not None]
            pending += [w for w in (self.fee_work(sub, f) for f in fees_by_sub.get(sub.pk, [])) if w is not None]
            pending += [w for w in (self.discount_work(sub, d) for d in discounts_by_sub.get(sub.pk, []))
                        if w is not None]
            if pending:
                lines[sub.pk] = pending
        return orders, lines

    def order_work(self, sub: Subscription) -> OrderWork | None:
        """The order Odoo should hold for ``sub``; None while its partner or catalog is not in Odoo."""
        partner_row = self.book.rows.get((SyncKind.CUSTOMER, str(sub.account_link.customer_id)))
        plan_row = self.book.rows.get((SyncKind.PLAN, str(sub.plan_id)))
        partner_id, plan_id, product_id = (partner_row.odoo_id if partner_row else None, sub.plan.odoo_plan_id,
                                           sub.plan.odoo_product_id)
        invoice_partner_id = self.pusher.contact_id(self.book, sub.account_link)
        pricelist_id = self.pusher.pricelist_id(self.book, mapping.plan_currency(sub.plan))
        if not (partner_id and invoice_partner_id and plan_row and plan_row.status == SyncStatus.SYNCED
                and product_id and plan_id and pricelist_id):
            return None
        state = self.book.get(SyncKind.SUBSCRIPTION, sub.pk, service_id=sub.service_id,
                              reference=mapping.subscription_ref(sub), label=str(sub)[:255], odoo_model="sale.order")
        closed = sub.status in CLOSED_SUBSCRIPTION_STATUSES
        calendar = mapping.subscription_calendar(sub)
        start = mapping.order_start_date(sub, calendar)
        nid = mapping.order_next_invoice_date(sub, calendar)  # the subscription's own grace
        digest = mapping.payload_hash({
            "partner": partner_id, "invoice_partner": invoice_partner_id, "plan": plan_id, "product": product_id,
            "closed": closed, "start": str(start),
            "next_invoice_date": str(nid),  # one look a day (of its calendar): Odoo moves its date
            "day": str(mapping.billing_date(self.pusher.now, calendar))})
        return OrderWork(sub, state, digest, partner_id=partner_id, invoice_partner_id=invoice_partner_id,
                         plan_id=plan_id, product_id=product_id, pricelist_id=pricelist_id, start_date=start,
                         next_invoice_date=nid)

    def usage_work(self, sub: Subscription, usage: RatedUsage) -> LineWork | None:
        """The line of a FROZEN usage window, or None when Odoo has it. Open windows never go (invariant 1)."""
        product_id = usage.charge.odoo_product_id
        if not product_id or usage.state != RatedUsageState.FROZEN:
            return None
        state = self.book.get(SyncKind.USAGE, usage.pk, service_id=sub.service_id, odoo_model="sale.order.line",
                              label=f"{sub} {mapping.usage_label(usage)}"[:255])
        fields = self.client.fields
        line = mapping.usage_line(usage, price_digits=fields.price_digits, quantity_digits=fields.quantity_digits)
        digest = mapping.payload_hash({**line.payload(), "product": product_id})
        if state.status == SyncStatus.SYNCED and state.pushed_hash == digest:
            if not state.final:
                state.final = True
                self.book.touch(state)
            return None
        if not (self.book.due(state) or state.frozen):  # an old "needs a human" row is corrected now
            return None
        return LineWork(usage, state, line.label, line.pricing, line.zero, digest, product_id)

    def fee_work(self, sub: Subscription, fee: PlanFee) -> LineWork | None:
        """The one-off line of a plan fee (pushed once), or None when Odoo has it."""
        product_id = self.pusher.fee_product_id(self.book, fee.plan)
        if not product_id:
            return None
        label = mapping.fee_label(fee)
        state = self.book.get(SyncKind.PLAN_FEE, fee.pk, service_id=sub.service_id, odoo_model="sale.order.line",
                              label=f"{sub} {label}"[:255])
        pricing = mapping.fee_line_pricing(fee, price_digits=self.client.fields.price_digits)
        zero = pricing.price_unit == 0
        digest = mapping.payload_hash({"label": label, "price": str(pricing.price_unit), "product": product_id})
        first_start = sub.started_at or sub.subscription_at
        invoice_now = (fee.kind == PlanFeeKind.SUBSCRIPTION and fee.plan.pay_in_advance and not zero
                       and fee.window_start <= first_start)
        work = LineWork(fee, state, label, pricing, zero, digest, product_id, invoice_now=invoice_now)
        if state.status == SyncStatus.SYNCED and state.pushed_hash == digest:
            if invoice_now and not state.final:
                self.pending_invoice_now.setdefault(sub.pk, []).append(work)
            elif not state.final:
                state.final = True
                self.book.touch(state)
            return None
        if not (self.book.due(state) or state.frozen):
            return None
        return work

    def discount_work(self, sub: Subscription, discount: CouponDiscount) -> LineWork | None:
        """The negative line of a coupon discount on the coupon's discount product (pushed once), or None
        when Odoo has it. It goes with the lines of the invoice it discounts (same boundary)."""
        product_id = self.pusher.discount_product_id(self.book, discount.applied_coupon.coupon)
        if not product_id:
            return None
        label = mapping.discount_label(discount)
        state = self.book.get(SyncKind.COUPON_DISCOUNT, discount.pk, service_id=sub.service_id,
                              odoo_model="sale.order.line", label=f"{sub} {label}"[:255])
        pricing = mapping.discount_line_pricing(discount, price_digits=self.client.fields.price_digits)
        digest = mapping.payload_hash({"label": label, "price": str(pricing.price_unit), "product": product_id})
        if state.status == SyncStatus.SYNCED and state.pushed_hash == digest:
            if not state.final:
                state.final = True
                self.book.touch(state)
            return None
        if not (self.book.due(state) or state.frozen):
            return None
        return LineWork(discount, state, label, pricing, pricing.price_unit == 0, digest, product_id)

    # 2. find
    def find_orders(self, orders: list[OrderWork]) -> dict[str, dict[str, Any]]:
        """Odoo's orders by ``client_order_ref`` (the oldest when there are several)."""
        if not orders:
            return {}
        found = self.pusher.rpc(self.book, [o.state for o in orders], self.client.search_read, "sale.order",
                                [["client_order_ref", "in", [o.state.reference for o in orders]]],
                                ["client_order_ref", "state", "subscription_state", "start_date",
                                 "next_invoice_date", "partner_invoice_id", "partner_shipping_id", "pricelist_id",
                                 "currency_id"], order="id")
        by_ref: dict[str, dict[str, Any]] = {}
        for rec in found:
            by_ref.setdefault(rec["client_order_ref"], rec)
        return by_ref

    def sort_orders(self, orders: list[OrderWork], found: dict[str, dict[str, Any]],
                    lines: dict[Any, list[LineWork]]) -> tuple[list[NewOrder], list[FoundOrder]]:
        """Found orders, and the orders to create; the latter take their subscription's lines out of ``lines``."""
        new: list[NewOrder] = []
        existing: list[FoundOrder] = []
        for order in orders:
            record = found.get(order.state.reference)
            if record is not None:
                order.state.odoo_id = record["id"]
                existing.append(FoundOrder(order, record))
                continue
            order.state.odoo_id = None
            if order.closed and order.subscription.pk in self.waiting:
                continue  # terminated before its order reached Odoo, final window not frozen yet: wait for it
            if order.closed and not any(not w.zero for w in lines.get(order.subscription.pk, [])):
                for work in lines.pop(order.subscription.pk, []):
                    self.line_synced(work, None)
                self.book.synced(order.state, odoo_id=None, pushed_hash=order.digest,
                                 pricing_note="closed before it reached Odoo, nothing to bill", final=True)
                continue
            new.append(self.new_order(order, lines.pop(order.subscription.pk, [])))
        return new, existing

    def new_order(self, order: OrderWork, pending: list[LineWork]) -> NewOrder:
        """sale.order values: the recurring line (price 0), dates = windows, the non-zero one-off lines inline."""
        extras = self.pusher.line_extras(self.book, [order.state])
        recurring = mapping.recurring_line_vals(order.subscription, product_id=order.product_id)
        order_lines = [[0, 0, {**recurring, **extras}]]
        for work in pending:
            if work.zero:
                self.line_synced(work, None)
            else:
                order_lines.append([0, 0, {**work.vals, **extras}])
        vals = {"partner_id": order.partner_id, "plan_id": order.plan_id, "client_order_ref": order.state.reference,
                "pricelist_id": order.pricelist_id, **self.address_vals(order),
                "start_date": order.start_date.isoformat(),
                "next_invoice_date": order.next_invoice_date.isoformat(), "order_line": order_lines}
        return NewOrder(order, vals, tuple(w for w in pending if not w.zero))

    # 3. create
    def create_orders(self, new: list[NewOrder]) -> list[NewOrder]:
        """The orders Odoo created; a refused one's lines stay pending and go with the order's next attempt."""
        created = []
        for order, order_id in self.pusher.create_many(self.book, "sale.order", new):
            if order_id is None:
                for work in order.lines:  # not failed: they go with the order's next attempt (never forgotten)
                    work.state.last_error = f"waiting for its order: {order.state.last_error or 'not created'}"[:2000]
                    self.book.touch(work.state)
                continue
            order.state.odoo_id = order_id
            created.append(order)
            self.report.orders_created += 1
            self.report.lines_created += len(order.vals["order_line"])
        return created

    # 4. confirm
    def confirm(self, created: list[NewOrder], existing: list[FoundOrder]) -> None:
        to_confirm = [o.state.odoo_id for o in created] + [
            f.record["id"] for f in existing if f.record["state"] in ("draft", "sent")]
        if not to_confirm:
            return
        rows = [o.state for o in created] + [f.state for f in existing]
        try:
            self.pusher.rpc(self.book, rows, self.client.call, "sale.order", "action_confirm", [to_confirm])
        except OdooRemoteError as exc:  # refused: the drafts are found and confirmed by the next cycle
            for row in rows:
                self.book.failed(row, exc)
            self.unconfirmed.update(to_confirm)
            self.report.failed += len(rows)
            return
        self.report.orders_confirmed += len(to_confirm)

    # 5. learn the new lines' ids
    def learn_line_ids(self, created: list[NewOrder]) -> None:
        if not created:
            return
        order_ids = [o.state.odoo_id for o in created]
        found = self.pusher.rpc(self.book, [o.state for o in created], self.client.search_read, "sale.order.line",
                                [["order_id", "in", order_ids]], ["order_id", "product_id", "name"], order="id")
        line_ids = {_line_key(ln): ln["id"] for ln in found}
        for order in created:
            for work in order.lines:
                self.line_synced(work, line_ids.get((order.state.odoo_id, work.product_id, work.label)))
            self.remember_order_id(order.work.subscription, order.state.odoo_id)
            assert order.state.odoo_id is not None
            if order.state.odoo_id in self.unconfirmed:
                continue  # stays failed: the next cycle finds the draft and confirms it
            self.book.synced(order.state, odoo_id=order.state.odoo_id, pushed_hash=order.work.digest)
            if order.work.closed:
                self.finish(order.state.odoo_id, order.work.subscription, order.work, close=True)

    # 6. orders Odoo already held
    def update_existing(self, existing: list[FoundOrder]) -> None:
        """The recurring line and the dates of each found order; terminated ones go to be finished."""
        if not existing:
            return
        lines = self.pusher.rpc(self.book, [f.state for f in existing], self.client.search_read,
                                "sale.order.line", [["order_id", "in", [f.state.odoo_id for f in existing]]],
                                LINE_FIELDS, order="id")
        dating: list[tuple[OrderWork, dict[str, Any]]] = []
        for found in existing:
            if (found.record["id"] in self.unconfirmed or not self.fix_recurring_line(found, lines)
                    or not self.fix_addresses(found)):
                continue
            self.check_currency(found)
            order, sub = found.work, found.work.subscription
            self.remember_order_id(sub, found.state.odoo_id)
            if order.closed:
                self.book.synced(found.state, odoo_id=found.state.odoo_id, pushed_hash=order.digest)
                if sub.pk not in self.waiting:  # metering has not frozen the final window yet
                    self.finish(found.record["id"], sub, order, close=True)
                continue
            dating.append((order, found.record))
        settled = self.fix_dates(dating, [])
        for order, record in dating:
            if record["id"] in settled:
                self.book.synced(order.state, odoo_id=order.state.odoo_id,
                                 pushed_hash=order.digest if settled[record["id"]] else "")

    @staticmethod
    def address_vals(order: OrderWork) -> dict[str, int]:
        """The service account's own contact as invoice and delivery address: Odoo's defaults
        (``address_get``) would pick the first invoice contact of the commercial partner, possibly
        another service's, and the fiscal position follows the delivery address."""
        return {"partner_invoice_id": order.invoice_partner_id, "partner_shipping_id": order.invoice_partner_id}

    def check_currency(self, found: FoundOrder) -> None:
        """An order's currency never changes (nor does an attached plan's: metering refuses it): an order Odoo
        holds in another currency (created before pricelists were pushed) is noted on its row, not rewritten."""
        state, wanted = found.state, mapping.plan_currency(found.work.subscription.plan)
        currency = found.record.get("currency_id")
        held = currency[1] if isinstance(currency, list) and len(currency) > 1 else None
        if held and held != wanted:
            state.pricing_note = f"{CURRENCY_NOTE} {held}, its plan in {wanted}: not changed"[:255]
            self.book.touch(state)
        elif state.pricing_note.startswith(CURRENCY_NOTE):
            state.pricing_note = ""
            self.book.touch(state)

    def fix_addresses(self, found: FoundOrder) -> bool:
        """A found order bills the service account's own contact; False if Odoo refused the write."""
        wanted = self.address_vals(found.work)
        current = {k: (v[0] if isinstance(v, list) and v else v) for k, v in found.record.items() if k in wanted}
        if current == wanted:
            return True
        try:
            self.pusher.rpc(self.book, [found.state], self.client.write, "sale.order", [found.record["id"]], wanted)
        except OdooRemoteError as exc:
            self.book.failed(found.state, exc)
            return False
        return True

    def fix_recurring_line(self, found: FoundOrder, lines: list[dict[str, Any]]) -> bool:
        """Exactly one active recurring line, the current plan's, at price 0 (invariant 3); False if refused.

        An order whose subscription changed plan is from the old model (today a plan change is a new
        subscription with its own order): its stale recurring line is set to quantity 0 and no second
        recurring line is added.
        """
        order = found.work
        mine = [ln for ln in lines if ln["order_id"][0] == order.state.odoo_id and ln.get("recurring_invoice")]
        current = [ln for ln in mine if ln["product_id"] and ln["product_id"][0] == order.product_id]
        stale = [ln for ln in mine if ln not in current]
        try:
            for ln in stale:
                if ln["product_uom_qty"]:
                    self.pusher.rpc(self.book, [order.state], self.client.write, "sale.order.line", [ln["id"]],
                                    {"product_uom_qty": 0.0})
                    self.report.stale_recurring_lines += 1
            if stale:
                order.state.pricing_note = "plan changed on an order of the old model: stale recurring line zeroed"
            if current and current[0]["price_unit"] != 0:
                self.pusher.rpc(self.book, [order.state], self.client.write, "sale.order.line", [current[0]["id"]],
                                {"price_unit": 0.0})
                self.report.lines_updated += 1
            elif not mine:
                extras = self.pusher.line_extras(self.book, [order.state])
                vals = mapping.recurring_line_vals(order.subscription, product_id=order.product_id)
                self.pusher.rpc(self.book, [order.state], self.client.create, "sale.order.line",
                                [{**vals, "order_id": order.state.odoo_id, **extras}])
                self.report.lines_created += 1
        except OdooRemoteError as exc:
            self.book.failed(order.state, exc)
            return False
        return True

    def should_write_next_invoice_date(self, odoo_value: Any, wanted: dt.date, today: dt.date | None = None
                                       ) -> bool | None:
        """Write ``wanted`` unless Odoo holds it, or holds an earlier boundary that is due and not yet invoiced
        (the cron bills it first; None = look again next cycle). ``today``: in the subscription's calendar."""
        current = dt.date.fromisoformat(odoo_value) if odoo_value else None
        if current == wanted:
            return False
        if current is not None and current < wanted and current <= (today or self.today):
            return None
        return True

    def fix_dates(self, orders: list[tuple[OrderWork, dict[str, Any]]], rows: list[OdooSyncState]
                  ) -> dict[int, bool]:
        """``next_invoice_date`` = the current window's close, by order id: True when Odoo holds it, False when
        it must wait for the cron; an order whose write Odoo refused is left out (failed).

        Orders whose date agrees are written together (one multi-record ``write`` per date: at a period
        boundary every calendar subscription of a batch shares it); a refused group is written order by
        order to isolate the bad one."""
        result: dict[int, bool] = {}
        groups: dict[dt.date, list[tuple[OrderWork, int]]] = {}
        for order, record in orders:
            today = mapping.billing_date(self.pusher.now, mapping.subscription_calendar(order.subscription))
            decision = self.should_write_next_invoice_date(record.get("next_invoice_date"), order.next_invoice_date,
                                                           today)
            if decision:
                groups.setdefault(order.next_invoice_date, []).append((order, record["id"]))
            else:
                result[record["id"]] = decision is not None
        for wanted, group in groups.items():
            vals = {"next_invoice_date": wanted.isoformat()}
            charged = rows or [order.state for order, _ in group]  # a failure that ends the cycle: these rows
            try:
                self.pusher.rpc(self.book, charged, self.client.write, "sale.order", [i for _, i in group], vals)
            except OdooRemoteError as exc:
                if len(group) == 1:
                    self.book.failed(group[0][0].state, exc)
                    continue
                for order, order_id in group:
                    try:
                        self.pusher.rpc(self.book, rows or [order.state], self.client.write, "sale.order", [order_id],
                                        vals)
                    except OdooRemoteError as one:
                        self.book.failed(order.state, one)
                        continue
                    result[order_id] = True
                    self.report.orders_dated += 1
                continue
            for _, order_id in group:
                result[order_id] = True
            self.report.orders_dated += len(group)
        return result

    # 7. one-off lines of orders Odoo already held
    def lines_of_existing_orders(self, lines: dict[Any, list[LineWork]]) -> list[OrderLines]:
        """The lines left in ``lines`` whose subscription has an order in Odoo (created earlier, or found)."""
        result = []
        for sub_pk, pending in lines.items():
            state = self.book.rows.get((SyncKind.SUBSCRIPTION, str(sub_pk)))
            if state and state.odoo_id:
                result.append(OrderLines(state.odoo_id, pending))
        return result

    def push_lines(self, orders: list[OrderLines]) -> None:
        if not orders:
            return
        order_ids = sorted({o.order_id for o in orders})
        existing = self.pusher.rpc(
            self.book, [w.state for o in orders for w in o.lines], self.client.search_read, "sale.order.line",
            [["order_id", "in", order_ids]], LINE_FIELDS, order="id")
        by_product: dict[tuple[int, int | None], list[dict[str, Any]]] = {}
        for ln in existing:
            key = _line_key(ln)
            by_product.setdefault((key[0], key[1]), []).append(ln)  # type: ignore[arg-type]
        creates: list[NewLine] = []
        writes: list[LineWrite] = []
        for order in orders:
            for work in order.lines:
                candidates = by_product.get((order.order_id, work.product_id), [])
                original = next((ln for ln in candidates if ln["name"] == work.label), None)
                prefix = work.label + CORRECTION.split("{")[0]
                corrections = [ln for ln in candidates if ln["name"].startswith(prefix)]
                self.plan_line(order.order_id, work, original, corrections, creates, writes)
        self.create_lines(creates)
        self.write_lines(writes)

    def plan_line(self, order_id: int, work: LineWork, original: dict[str, Any] | None,
                  corrections: list[dict[str, Any]], creates: list[NewLine], writes: list[LineWrite]) -> None:
        """Create, write, keep, or correct by a delta line (never drop: invariant 2)."""
        if original is None and not corrections:
            if work.zero:
                self.line_synced(work, None)
            else:
                creates.append(NewLine(work, {**work.vals, "order_id": order_id,
                                              **self.pusher.line_extras(self.book, [work.state])}))
            return
        if original is not None and not corrections and not original["qty_invoiced"]:
            vals = work.vals
            if original["price_unit"] == vals["price_unit"] and original["product_uom_qty"] == vals["product_uom_qty"]:
                self.line_synced(work, original["id"])
            else:
                writes.append(LineWrite(work, original["id"], {"product_uom_qty": vals["product_uom_qty"],
                                                               "price_unit": vals["price_unit"]}))
            return
        carried_lines = ([original] if original else []) + corrections
        carried = sum((_dec(ln["product_uom_qty"]) * _dec(ln["price_unit"]) for ln in carried_lines), Decimal(0))
        delta = (work.total - carried).quantize(quantum(self.client.fields.price_digits))
        anchor = original["id"] if original else corrections[0]["id"]
        invoiced = any(ln["qty_invoiced"] for ln in carried_lines)
        if delta == 0:
            self.line_synced(work, anchor, frozen=invoiced)
            return
        open_corrections = [ln for ln in corrections if not ln["qty_invoiced"]]
        if open_corrections:
            last = open_corrections[-1]
            price = _dec(last["product_uom_qty"]) * _dec(last["price_unit"]) + delta
            writes.append(LineWrite(work, last["id"], {"product_uom_qty": 1.0, "price_unit": to_odoo_number(price)},
                                    correction=True))
            return
        name = work.label + CORRECTION.format(n=len(corrections) + 1)
        creates.append(NewLine(work, {"product_id": work.product_id, "name": name, "product_uom_qty": 1.0,
                                      "price_unit": to_odoo_number(delta), "order_id": order_id,
                                      **self.pusher.line_extras(self.book, [work.state])}, correction=True))

    def create_lines(self, creates: list[NewLine]) -> None:
        for created, line_id in self.pusher.create_many(self.book, "sale.order.line", creates):
            if line_id is None:
                continue
            if created.correction:
                self.corrected(created.work, created.work.state.odoo_id or line_id)
            else:
                self.line_synced(created.work, line_id)
                self.report.lines_created += 1

    def write_lines(self, writes: list[LineWrite]) -> None:
        """Every line of the batch in one ``load`` (``.id``, quantity, price: a multi-record update with
        different values; absolute values, so a lost answer is simply written again). If Odoo refuses a
        row the call changes nothing and the lines are written one by one, to isolate the bad ones."""
        if not writes:
            return
        if len(writes) > 1:
            rows = [[str(w.line_id), repr(w.vals["product_uom_qty"]), repr(w.vals["price_unit"])]  # Odoo floats as text
                    for w in writes]
            try:
                result = self.pusher.rpc(self.book, [w.work.state for w in writes], self.client.load,
                                         "sale.order.line", [".id", "product_uom_qty", "price_unit"], rows)
            except OdooRemoteError:
                result = {"ids": False}
            if isinstance(result, dict) and result.get("ids"):
                for write in writes:
                    self.line_written(write)
                return
        for write in writes:
            work = write.work
            try:
                self.pusher.rpc(self.book, [work.state], self.client.write, "sale.order.line", [write.line_id],
                                write.vals)
            except OdooRemoteError as exc:
                self.book.failed(work.state, exc)
                self.report.failed += 1
                continue
            self.line_written(write)

    def line_written(self, write: LineWrite) -> None:
        if write.correction:
            self.corrected(write.work, write.work.state.odoo_id or write.line_id)
        else:
            self.line_synced(write.work, write.line_id)
            self.report.lines_updated += 1

    def corrected(self, work: LineWork, line_id: int) -> None:
        self.line_synced(work, line_id, frozen=True)
        work.state.pricing_note = "Odoo invoiced another amount: the difference went on a correction line"
        self.report.corrections += 1

    # 8. invoice now
    def finish(self, order_id: int, sub: Subscription, order: OrderWork | None, *, close: bool,
               fees: Iterable[LineWork] = ()) -> None:
        item = self.finishing.get(order_id)
        if item is None:
            order = order or self.order_work(sub)
            if order is None:
                return  # its partner or catalog is not in Odoo this cycle
            item = self.finishing[order_id] = Finishing(order_id, order, close)
        item.close = item.close or close
        item.fees.extend(fees)

    def collect_invoice_now(self, subscriptions: list[Subscription], lines: dict[Any, list[LineWork]]) -> None:
        """Advance fees of a first window, pushed now or earlier but not yet invoiced; a terminated
        subscription whose line push failed waits (its order is not finished this cycle)."""
        for sub in subscriptions:
            state = self.book.rows.get((SyncKind.SUBSCRIPTION, str(sub.pk)))
            if not (state and state.odoo_id):
                continue
            pending = lines.get(sub.pk, [])
            if any(w.state.status == SyncStatus.FAILED for w in pending):
                self.finishing.pop(state.odoo_id, None)
                continue
            fees = [w for w in pending if w.invoice_now and w.state.status == SyncStatus.SYNCED]
            fees += self.pending_invoice_now.get(sub.pk, [])
            if fees:
                self.finish(state.odoo_id, sub, None, close=False, fees=fees)

    def invoice_now(self, items: list[Finishing]) -> list[Finishing]:
        """Post the orders' drafts, invoice what is left through ``sale.advance.payment.inv`` and post it.

        Returns the items whose one-off lines are all invoiced. A failure leaves the rest to the next
        cycle, which finds the draft (never a second invoice).
        """
        if not items:
            return []
        rows = [r for i in items for r in [i.order.state, *(f.state for f in i.fees)]]
        ids = [i.order_id for i in items]
        rpc, client = self.pusher.rpc, self.client
        try:
            self.post_drafts(ids, rows)
            lines = rpc(self.book, rows, client.search_read, "sale.order.line", [["order_id", "in", ids]],
                        LINE_FIELDS + ["qty_to_invoice"], order="id")
            if _orders_to_invoice(lines):
                [wizard] = rpc(self.book, rows, client.create, "sale.advance.payment.inv", [{
                    "advance_payment_method": "delivered", "consolidated_billing": False,
                    "sale_order_ids": [[6, 0, sorted(_orders_to_invoice(lines))]]}])
                action = rpc(self.book, rows, client.call, "sale.advance.payment.inv", "create_invoices", [[wizard]])
                moves = _action_move_ids(action)
                if moves:
                    rpc(self.book, rows, client.call, "account.move", "action_post", [moves])
                    self.report.invoiced_now += len(moves)
                lines = rpc(self.book, rows, client.search_read, "sale.order.line", [["order_id", "in", ids]],
                            LINE_FIELDS + ["qty_to_invoice"], order="id")
            self.redate([i for i in items if not i.close], rows)
        except OdooRemoteError as exc:
            for i in items:
                self.book.failed(i.order.state, exc)
            self.report.failed += len(items)
            return []
        left = _orders_to_invoice(lines)
        done = []
        for item in items:
            if item.order_id in left:
                continue
            for fee in item.fees:
                fee.state.final = True
                self.book.touch(fee.state)
            done.append(item)
        return done

    def post_drafts(self, order_ids: list[int], rows: list[OdooSyncState]) -> None:
        orders = self.pusher.rpc(self.book, rows, self.client.search_read, "sale.order", [["id", "in", order_ids]],
                                 ["invoice_ids"])
        invoice_ids = sorted({m for o in orders for m in o.get("invoice_ids") or []})
        if not invoice_ids:
            return
        drafts = self.pusher.rpc(self.book, rows, self.client.search_read, "account.move",
                                 [["id", "in", invoice_ids], ["state", "=", "draft"],
                                  ["move_type", "in", ["out_invoice", "out_refund"]]], ["id"])
        if drafts:
            self.pusher.rpc(self.book, rows, self.client.call, "account.move", "action_post",
                            [[d["id"] for d in drafts]])
            self.report.invoiced_now += len(drafts)

    def redate(self, items: list[Finishing], rows: list[OdooSyncState]) -> None:
        """Posting moved ``next_invoice_date`` by Odoo's own period: put back the window's close."""
        if not items:
            return
        found = self.pusher.rpc(self.book, rows, self.client.search_read, "sale.order",
                                [["id", "in", [i.order_id for i in items]]], ["next_invoice_date"])
        by_id = {r["id"]: r for r in found}
        self.fix_dates([(item.order, by_id[item.order_id]) for item in items if item.order_id in by_id], rows)

    # 9. close
    def close(self, done: list[Finishing]) -> None:
        to_close = [i for i in done if i.close]
        if not to_close:
            return
        rows = [i.order.state for i in to_close]
        reason = self.pusher.close_reason_id(self.book, rows)
        kwargs = {"close_reason_id": reason} if reason else {}
        try:
            self.pusher.rpc(self.book, rows, self.client.call, "sale.order", "set_close",
                            [[i.order_id for i in to_close]], kwargs)
        except OdooRemoteError as exc:  # refused: everything is invoiced, the next cycle closes them
            for item in to_close:
                self.book.failed(item.order.state, exc)
            self.report.failed += len(to_close)
            return
        for item in to_close:
            self.book.synced(item.order.state, odoo_id=item.order_id, pushed_hash=item.order.digest, final=True)
            self.remember_order_id(item.order.subscription, item.order_id)
        self.report.orders_closed += len(to_close)

    # bookkeeping shared by the steps
    def line_synced(self, work: LineWork, line_id: int | None, *, frozen: bool = False) -> None:
        pricing, state = work.pricing, work.state
        pre_rated = pricing.pre_rated and not work.zero
        self.book.synced(state, odoo_id=line_id, pushed_hash=work.digest, reference=work.label, pre_rated=pre_rated,
                         pricing_note=pricing.reason if pre_rated else "", frozen=frozen or state.frozen,
                         final=not work.invoice_now)
        subject = work.subject
        if line_id and subject.odoo_line_id != line_id:
            subject.odoo_line_id = line_id
            self.pusher.write_back(subject, "odoo_line_id")

    def remember_order_id(self, sub: Subscription, order_id: int | None) -> None:
        if order_id and sub.odoo_sale_order_id != order_id:
            sub.odoo_sale_order_id = order_id
            self.pusher.write_back(sub, "odoo_sale_order_id")


def _orders_to_invoice(lines: list[dict[str, Any]]) -> set[int]:
    """Orders with a one-off line still to invoice (recurring lines carry price 0 and are billed per period)."""
    return {ln["order_id"][0] for ln in lines if not ln.get("recurring_invoice") and ln.get("qty_to_invoice")}


def _action_move_ids(action: Any) -> list[int]:
    """The invoices an ``ir.actions.act_window`` of ``action_view_invoice`` shows (one ``res_id`` or a domain)."""
    if not isinstance(action, dict):
        return []
    if action.get("res_id"):
        return [int(action["res_id"])]
    for term in action.get("domain") or []:
        if isinstance(term, (list, tuple)) and len(term) == 3 and term[0] == "id" and term[1] == "in":
            return [int(i) for i in term[2]]
    return []
