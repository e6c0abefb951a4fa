"""The order step of a batch: one ``sale.order`` per live subscription, with its lines.

``push_orders`` runs these steps, in this order (the RPCs of a batch follow it):

1. plan: the orders and usage lines whose payload differs from what Odoo confirmed
   (hashes), and whose state row is due; an open window's line at most once per
   ``ODOO_OPEN_USAGE_MIN_INTERVAL``;
2. find the orders by ``client_order_ref`` (a create whose answer was lost is found
   here, not repeated);
3. create the missing ones in one call, each with its flat and usage lines inline
   (one transaction in Odoo);
4. confirm the new orders and the drafts found in 2 (a lost confirmation is retried so);
5. learn the ids of the new usage lines by their natural key (order, product, description);
6. orders found in 2: the flat line's price, and which of them still need closing;
7. usage lines of orders Odoo already held: kept when invoiced there (frozen), else
   created or written;
8. close the terminated subscriptions' orders, after their last usage went out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from metering.models import CLOSED_SUBSCRIPTION_STATUSES, RatedUsage, RatedUsageState, Subscription

from . import mapping
from .client import OdooRemoteError
from .models import OdooSyncState, SyncKind, SyncStatus
from .pusher import Pusher
from .state_book import StateBook

OPEN_ODOO_STATES = ("3_progress", "4_paused")
LineKey = tuple[int | None, int | None, str]  # (order, product, description): a line's natural key


@dataclass(frozen=True)
class OrderWork:
    """A subscription whose order differs from what Odoo confirmed, with the Odoo ids it refers to."""

    subscription: Subscription
    state: OdooSyncState
    digest: str
    partner_id: int
    plan_id: int
    product_id: int  # the plan's recurring product: the flat line

    @property
    def closed(self) -> bool:
        return self.subscription.status in CLOSED_SUBSCRIPTION_STATUSES


@dataclass(frozen=True)
class LineWork:
    """A usage line (one rated window of one charge) that differs from what Odoo confirmed."""

    usage: RatedUsage
    state: OdooSyncState
    line: mapping.UsageLine
    digest: str
    product_id: int  # the charge's usage product

    @property
    def vals(self) -> dict[str, Any]:
        return self.line.vals(product_id=self.product_id)


@dataclass(frozen=True)
class NewOrder:
    """An order to create, with its flat line and its non-zero usage lines inline."""

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
    record: dict[str, Any]  # id, state, subscription_state

    @property
    def state(self) -> OdooSyncState:
        return self.work.state


@dataclass(frozen=True)
class OrderLines:
    """The usage lines to push to one order Odoo already holds."""

    order_id: int
    lines: list[LineWork]


@dataclass(frozen=True)
class NewLine:
    """A usage line to add to an existing order."""

    work: LineWork
    vals: dict[str, Any]

    @property
    def state(self) -> OdooSyncState:
        return self.work.state


@dataclass(frozen=True)
class LineWrite:
    """A usage line Odoo holds (not invoiced) whose quantity or price changes."""

    work: LineWork
    line_id: int


def push_orders(pusher: Pusher, book: StateBook, subscriptions: list[Subscription],
                usages: list[RatedUsage]) -> None:
    """Steps 1–8 above for one batch whose partners and catalog were pushed first."""
    OrderPush(pusher, book).run(subscriptions, usages)


def _line_key(line: dict[str, Any]) -> LineKey:
    return line["order_id"][0], line["product_id"][0] if line["product_id"] else None, line["name"]


class OrderPush:
    """The orders and usage lines of one batch (``pusher`` lives for the cycle, ``book`` for the batch)."""

    def __init__(self, pusher: Pusher, book: StateBook) -> None:
        self.pusher = pusher
        self.book = book
        self.client = pusher.client
        self.report = pusher.report

    def run(self, subscriptions: list[Subscription], usages: list[RatedUsage]) -> None:
        orders, lines = self.plan(subscriptions, usages)
        found = self.find_orders(orders)
        new, existing = self.sort_orders(orders, found, lines)
        created = self.create_orders(new)
        self.confirm(created, existing)
        self.learn_line_ids(created)
        to_close = self.update_existing(existing)
        self.push_usage_lines(self.lines_of_existing_orders(lines))
        self.close(to_close)

    # 1. plan
    def plan(self, subscriptions: list[Subscription], usages: list[RatedUsage]
             ) -> tuple[list[OrderWork], dict[Any, list[LineWork]]]:
        """Orders to push, and usage lines to push by subscription pk (both in the batch's order)."""
        usages_by_sub: dict[Any, list[RatedUsage]] = {}
        for usage in usages:
            usages_by_sub.setdefault(usage.subscription_id, []).append(usage)
        orders: list[OrderWork] = []
        lines: dict[Any, list[LineWork]] = {}
        for sub in subscriptions:
            mapping.assert_billable(sub)
            order = self.order_work(sub)
            if order is None:
                continue  # its partner or catalog failed this cycle; retried with them
            state = order.state
            in_sync = state.odoo_id and state.pushed_hash == order.digest and state.status == SyncStatus.SYNCED
            if not in_sync and self.book.due(state):
                orders.append(order)
            pending = [w for w in (self.line_work(sub, u) for u in usages_by_sub.get(sub.pk, [])) if w is not None]
            if pending:
                lines[sub.pk] = pending
        return orders, lines

    def order_work(self, sub: Subscription) -> OrderWork | None:
        """The order Odoo should hold for ``sub``; None while its partner or catalog is not in Odoo."""
        partner_row = self.book.rows.get((SyncKind.CUSTOMER, str(sub.account_link.customer_id)))
        plan_row = self.book.rows.get((SyncKind.PLAN, str(sub.plan_id)))
        partner_id, plan_id, product_id = (partner_row.odoo_id if partner_row else None, sub.plan.odoo_plan_id,
                                           sub.plan.odoo_product_id)
        if not (partner_id and plan_row and plan_row.status == SyncStatus.SYNCED and product_id and plan_id):
            return None
        state = self.book.get(SyncKind.SUBSCRIPTION, sub.pk, service_id=sub.service_id,
                              reference=mapping.subscription_ref(sub), label=str(sub)[:255], odoo_model="sale.order")
        closed = sub.status in CLOSED_SUBSCRIPTION_STATUSES
        digest = mapping.payload_hash({
            "partner": partner_id, "plan": plan_id, "product": product_id, "flat": str(sub.flat_amount),
            "closed": closed, "start": str(mapping.order_start_date(sub))})
        return OrderWork(sub, state, digest, partner_id=partner_id, plan_id=plan_id, product_id=product_id)

    def line_work(self, sub: Subscription, usage: RatedUsage) -> LineWork | None:
        """The usage line to push for ``usage``, or None when Odoo has it (or it must wait)."""
        product_id = usage.charge.odoo_product_id
        if not product_id:
            return None
        state = self.book.get(SyncKind.USAGE, usage.pk, service_id=sub.service_id, odoo_model="sale.order.line",
                              label=f"{sub} {mapping.usage_label(usage)}"[:255])
        if state.frozen:
            return None
        fields = self.client.fields
        line = mapping.usage_line(usage, price_digits=fields.price_digits, quantity_digits=fields.quantity_digits)
        digest = mapping.payload_hash({**line.payload(), "product": product_id})
        if state.status == SyncStatus.SYNCED and state.pushed_hash == digest:
            if usage.state == RatedUsageState.FROZEN and not state.final:
                state.final = True  # window closed and Odoo already has its amount
                self.book.touch(state)
            return None
        if not self.book.due(state) or self.throttled(usage, state, line):
            return None
        return LineWork(usage, state, line, digest, product_id)

    def throttled(self, usage: RatedUsage, state: OdooSyncState, line: mapping.UsageLine) -> bool:
        """An open window's line is refreshed at most once per interval (one RPC each); its close always goes."""
        return bool(usage.state == RatedUsageState.OPEN and state.status == SyncStatus.SYNCED and state.synced_at
                    and state.odoo_id and not line.zero
                    and self.pusher.now - state.synced_at < dt.timedelta(seconds=settings.ODOO_OPEN_USAGE_MIN_INTERVAL))

    # 2. find
    def find_orders(self, orders: list[OrderWork]) -> dict[str, dict[str, Any]]:
        """Odoo's orders by ``client_order_ref`` (the oldest when there are several)."""
        if not orders:
            return {}
        found = self.pusher.rpc(self.book, [o.state for o in orders], self.client.search_read, "sale.order",
                                [["client_order_ref", "in", [o.state.reference for o in orders]]],
                                ["client_order_ref", "state", "subscription_state"], order="id")
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
            pending = lines.pop(order.subscription.pk, [])
            if order.closed:
                self.book.synced(order.state, odoo_id=None, pushed_hash=order.digest,
                                 pricing_note="closed before it reached Odoo", final=True)
                continue
            new.append(self.new_order(order, pending))
        return new, existing

    def new_order(self, order: OrderWork, pending: list[LineWork]) -> NewOrder:
        """sale.order values with the flat line and the non-zero usage lines inline; zero lines need no line."""
        extras = self.pusher.line_extras(self.book, [order.state])
        flat = mapping.flat_line_vals(order.subscription, product_id=order.product_id,
                                      price_digits=self.client.fields.price_digits)
        order_lines = [[0, 0, {**flat, **extras}]]
        for work in pending:
            if work.line.zero:
                self.line_synced(work, None)
            else:
                order_lines.append([0, 0, {**work.vals, **extras}])
        vals = {"partner_id": order.partner_id, "plan_id": order.plan_id, "client_order_ref": order.state.reference,
                "start_date": mapping.order_start_date(order.subscription).isoformat(), "order_line": order_lines}
        return NewOrder(order, vals, tuple(w for w in pending if not w.line.zero))

    # 3. create
    def create_orders(self, new: list[NewOrder]) -> list[NewOrder]:
        """The orders Odoo created; a refused one fails its usage lines with it (they wait for the order)."""
        created = []
        for order, order_id in self.pusher.create_many(self.book, "sale.order", new):
            if order_id is None:
                for work in order.lines:
                    self.book.failed(work.state, order.state.last_error or "order not created", retry=False)
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
        self.pusher.rpc(self.book, rows, self.client.call, "sale.order", "action_confirm", [to_confirm])
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
                self.line_synced(work, line_ids.get((order.state.odoo_id, work.product_id, work.line.label)))
            self.book.synced(order.state, odoo_id=order.state.odoo_id, pushed_hash=order.work.digest)
            self.remember_order_id(order.work.subscription, order.state.odoo_id)

    # 6. orders Odoo already held
    def update_existing(self, existing: list[FoundOrder]) -> list[FoundOrder]:
        """Fix the flat line of each found order; returns those still to close (after their usage went out)."""
        if not existing:
            return []
        flat_lines = self.pusher.rpc(self.book, [f.state for f in existing], self.client.search_read,
                                     "sale.order.line", [["order_id", "in", [f.state.odoo_id for f in existing]]],
                                     ["order_id", "product_id", "price_unit"], order="id")
        to_close = []
        for found in existing:
            if not self.fix_flat_line(found, flat_lines):
                continue
            odoo_state = found.record.get("subscription_state")
            if found.work.closed and (odoo_state in OPEN_ODOO_STATES + ("1_draft",) or not odoo_state):
                to_close.append(found)
                continue
            self.book.synced(found.state, odoo_id=found.state.odoo_id, pushed_hash=found.work.digest,
                             final=found.work.closed)
            self.remember_order_id(found.work.subscription, found.state.odoo_id)
        return to_close

    def fix_flat_line(self, found: FoundOrder, flat_lines: list[dict[str, Any]]) -> bool:
        """Write the flat line's price when it differs, or add the line when it is missing; False if refused."""
        order = found.work
        wanted = mapping.flat_line_vals(order.subscription, product_id=order.product_id,
                                        price_digits=self.client.fields.price_digits)
        mine = [ln for ln in flat_lines if ln["order_id"][0] == order.state.odoo_id
                and ln["product_id"] and ln["product_id"][0] == order.product_id]
        try:
            if mine and mine[0]["price_unit"] != wanted["price_unit"]:
                self.pusher.rpc(self.book, [order.state], self.client.write, "sale.order.line", [mine[0]["id"]],
                                {"price_unit": wanted["price_unit"]})
                self.report.lines_updated += 1
            elif not mine:
                extras = self.pusher.line_extras(self.book, [order.state])
                self.pusher.rpc(self.book, [order.state], self.client.create, "sale.order.line",
                                [{**wanted, "order_id": order.state.odoo_id, **extras}])
                self.report.lines_created += 1
        except OdooRemoteError as exc:
            self.book.failed(order.state, exc)
            return False
        return True

    # 7. usage lines of orders Odoo already held
    def lines_of_existing_orders(self, lines: dict[Any, list[LineWork]]) -> list[OrderLines]:
        """The lines left in ``lines`` whose subscription has an order in Odoo (created earlier, or found)."""
        result = []
        for sub_pk, pending in lines.items():
            state = self.book.rows.get((SyncKind.SUBSCRIPTION, str(sub_pk)))
            if state and state.odoo_id:
                result.append(OrderLines(state.odoo_id, pending))
        return result

    def push_usage_lines(self, orders: list[OrderLines]) -> None:
        if not orders:
            return
        order_ids = sorted({o.order_id for o in orders})
        existing = self.pusher.rpc(
            self.book, [w.state for o in orders for w in o.lines], self.client.search_read, "sale.order.line",
            [["order_id", "in", order_ids]],
            ["order_id", "product_id", "name", "price_unit", "product_uom_qty", "qty_invoiced"], order="id")
        by_id = {ln["id"]: ln for ln in existing}
        by_key: dict[LineKey, dict[str, Any]] = {}
        for ln in existing:
            by_key.setdefault(_line_key(ln), ln)
        creates: list[NewLine] = []
        writes: list[LineWrite] = []
        for order in orders:
            for work in order.lines:
                found = by_id.get(work.state.odoo_id) if work.state.odoo_id else None
                if found is None:
                    found = by_key.get((order.order_id, work.product_id, work.line.label))
                if found is not None and found["qty_invoiced"]:
                    self.keep_invoiced_line(work, found)
                elif found is not None:
                    writes.append(LineWrite(work, found["id"]))
                elif work.line.zero:
                    self.line_synced(work, None)
                else:
                    extras = self.pusher.line_extras(self.book, [work.state])
                    creates.append(NewLine(work, {**work.vals, "order_id": order.order_id, **extras}))
        self.create_lines(creates)
        self.write_lines(writes)

    def keep_invoiced_line(self, work: LineWork, found: dict[str, Any]) -> None:
        """Invoiced in Odoo: frozen there, never rewritten; a different local amount needs a human."""
        work.state.odoo_id = found["id"]
        wanted = work.vals
        if found["price_unit"] == wanted["price_unit"] and found["product_uom_qty"] == wanted["product_uom_qty"]:
            self.line_synced(work, found["id"], frozen=True)
        else:
            work.state.frozen = True
            self.book.failed(work.state, "line already invoiced in Odoo with a different amount; "
                                         "a correction needs a credit note or a new line", retry=False)

    def create_lines(self, creates: list[NewLine]) -> None:
        for created, line_id in self.pusher.create_many(self.book, "sale.order.line", creates):
            if line_id is not None:
                self.line_synced(created.work, line_id)
                self.report.lines_created += 1

    def write_lines(self, writes: list[LineWrite]) -> None:
        """One ``write`` per line: Odoo's RPC has no multi-record write with different values."""
        for write in writes:
            work, vals = write.work, write.work.vals
            try:
                self.pusher.rpc(self.book, [work.state], self.client.write, "sale.order.line", [write.line_id],
                                {"product_uom_qty": vals["product_uom_qty"], "price_unit": vals["price_unit"]})
            except OdooRemoteError as exc:
                self.book.failed(work.state, exc)
                self.report.failed += 1
                continue
            self.line_synced(work, write.line_id)
            self.report.lines_updated += 1

    # 8. close
    def close(self, to_close: list[FoundOrder]) -> None:
        if not to_close:
            return
        rows = [f.state for f in to_close]
        reason = self.pusher.close_reason_id(self.book, rows)
        kwargs = {"close_reason_id": reason} if reason else {}
        self.pusher.rpc(self.book, rows, self.client.call, "sale.order", "set_close",
                        [[f.state.odoo_id for f in to_close]], kwargs)
        for found in to_close:
            self.book.synced(found.state, odoo_id=found.state.odoo_id, pushed_hash=found.work.digest, final=True)
            self.remember_order_id(found.work.subscription, found.state.odoo_id)
        self.report.orders_closed += len(to_close)

    # bookkeeping shared by the steps
    def line_synced(self, work: LineWork, line_id: int | None, *, frozen: bool = False) -> None:
        line, state = work.line, work.state
        pre_rated = line.pricing.pre_rated and not line.zero
        self.book.synced(state, odoo_id=line_id, pushed_hash=work.digest, reference=line.label, pre_rated=pre_rated,
                         pricing_note=line.pricing.reason if pre_rated else "", frozen=frozen or state.frozen,
                         final=work.usage.state == RatedUsageState.FROZEN)
        if line_id and work.usage.odoo_line_id != line_id:
            work.usage.odoo_line_id = line_id
            self.pusher.write_back(work.usage, "odoo_line_id")

    def remember_order_id(self, sub: Subscription, order_id: int | None) -> None:
        if order_id and sub.odoo_sale_order_id != order_id:
            sub.odoo_sale_order_id = order_id
            self.pusher.write_back(sub, "odoo_sale_order_id")
