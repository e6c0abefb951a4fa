"""Push our picture into Odoo, one batch at a time: partners, catalog, orders and their lines.

A ``Pusher`` lives for one cycle (it caches the lookups Odoo answers once: subscription
plans by period, the unit of measure, the close reason, countries and states); each
step takes the batch's ``StateBook``. Every call to Odoo goes through ``Pusher.rpc``,
which charges a failure to the state rows of the step that made it.

Exactly once: every create is preceded by a search on our reference (``ref``,
``client_order_ref``, ``default_code``, or the line's natural key: order, product,
description), so a create whose response was lost is found, not repeated.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from django.conf import settings

from identity.models import Customer
from metering.models import (
    CLOSED_SUBSCRIPTION_STATUSES,
    Charge,
    Plan,
    RatedUsage,
    RatedUsageState,
    Subscription,
)

from . import mapping
from .client import OdooAccessDenied, OdooClient, OdooRemoteError, OdooRetryableError, OdooSettings
from .connection import CycleAborted, record_connection_failure
from .models import OdooSyncState, SyncKind, SyncStatus
from .state_book import StateBook

OPEN_ODOO_STATES = ("3_progress", "4_paused")


@dataclass
class PushReport:
    batches: int = 0
    subscriptions_seen: int = 0
    partners_created: int = 0
    partners_updated: int = 0
    orders_created: int = 0
    orders_confirmed: int = 0
    orders_closed: int = 0
    lines_created: int = 0
    lines_updated: int = 0
    products_created: int = 0
    failed: int = 0
    skipped_locked: int = 0
    aborted: str = ""
    round_trips: int = 0

    @property
    def records_written(self) -> int:
        return (self.partners_created + self.partners_updated + self.orders_created + self.lines_created
                + self.lines_updated + self.products_created)



@dataclass
class Pusher:
    client: OdooClient
    now: dt.datetime
    report: PushReport = field(default_factory=PushReport)
    settings_: OdooSettings | None = None
    _periods: dict[tuple[int, str], int] = field(default_factory=dict)
    _close_reason: int | None = None
    _uom_unit: int | None = None
    _write_backs: dict = field(default_factory=dict)
    _countries: dict[str, int] = field(default_factory=dict)
    _states: dict[tuple[str, str], int] = field(default_factory=dict)

    def write_back(self, obj: Any, field_name: str) -> None:
        """Odoo ids learnt in this batch, saved in bulk at its end (one UPDATE per model, not per row)."""
        self._write_backs.setdefault((type(obj), field_name), {})[obj.pk] = obj

    def set_order_id(self, sub: Subscription, order_id: int | None) -> None:
        if order_id and sub.odoo_sale_order_id != order_id:
            sub.odoo_sale_order_id = order_id
            self.write_back(sub, "odoo_sale_order_id")

    def flush_write_backs(self) -> None:
        for (model, field_name), objs in self._write_backs.items():
            model.objects.bulk_update(list(objs.values()), [field_name], batch_size=1000)
        self._write_backs.clear()

    # -- RPC with failure bookkeeping
    def rpc(self, book: StateBook, rows: list[OdooSyncState], fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except OdooAccessDenied as exc:
            for row in rows:
                row.last_error, row.last_error_name = str(exc)[:2000], exc.name
                book.touch(row)
            record_connection_failure(exc, settings_=self.settings_)
            raise CycleAborted(f"access denied: {exc}") from exc
        except OdooRetryableError as exc:
            for row in rows:
                book.failed(row, exc)
            self.report.failed += len(rows)
            record_connection_failure(exc, settings_=self.settings_)
            raise CycleAborted(f"Odoo unreachable: {exc}") from exc

    def create_many(self, book: StateBook, model: str, items: list[tuple[OdooSyncState, dict]]) -> list[
            tuple[OdooSyncState, dict, int]]:
        """Multi-record create; on a business error, isolate the bad records one by one."""
        if not items:
            return []
        rows = [row for row, _ in items]
        try:
            ids = self.rpc(book, rows, lambda: self.client.create(model, [vals for _, vals in items]))
            return [(row, vals, oid) for (row, vals), oid in zip(items, ids)]
        except OdooRemoteError:
            done = []
            for row, vals in items:
                try:
                    [oid] = self.rpc(book, [row], lambda v=vals: self.client.create(model, [v]))
                    done.append((row, vals, oid))
                except OdooRemoteError as exc:
                    book.failed(row, exc)
                    self.report.failed += 1
            return done

    # -- lookups cached for the cycle
    def period_plan_id(self, period: tuple[int, str], book: StateBook, rows: list[OdooSyncState]) -> int:
        if not self._periods:
            found = self.rpc(book, rows, lambda: self.client.search_read(
                "sale.subscription.plan", [], ["billing_period_value", "billing_period_unit"], order="id"))
            for rec in found:
                self._periods.setdefault((rec["billing_period_value"], rec["billing_period_unit"]), rec["id"])
        if period not in self._periods:
            vals = {"name": mapping.PERIOD_NAMES.get(period, f"{period[0]} {period[1]}"),
                    "billing_period_value": period[0], "billing_period_unit": period[1]}
            [pid] = self.rpc(book, rows, lambda: self.client.create("sale.subscription.plan", [vals]))
            self._periods[period] = pid
        return self._periods[period]

    def line_extras(self, book: StateBook, rows: list[OdooSyncState]) -> dict:
        """Fields whose name depends on the Odoo version (product_uom in 17/18, product_uom_id in 19)."""
        if self._uom_unit is None:
            self._uom_unit = self.rpc(book, rows, lambda: self.client.xmlid("uom", "product_uom_unit"))
        return {self.client.fields.line_uom: self._uom_unit}

    def close_reason_id(self, book: StateBook, rows: list[OdooSyncState]) -> int | None:
        if self._close_reason is None:
            found = self.rpc(book, rows, lambda: self.client.search_read(
                "sale.order.close.reason", [], ["name"], order="id"))
            wanted = [r["id"] for r in found if "end of contract" in (r["name"] or "").lower()]
            self._close_reason = (wanted or [r["id"] for r in found] or [0])[0]
        return self._close_reason or None

    def location_ids(self, customers: list[Customer], book: StateBook, rows: list[OdooSyncState]) -> None:
        countries = {mapping.partner_location(c)[0] for c in customers} - set(self._countries) - {""}
        if countries:
            found = self.rpc(book, rows, lambda: self.client.search_read(
                "res.country", [["code", "in", sorted(countries)]], ["code"]))
            self._countries.update({r["code"]: r["id"] for r in found})
        states = {mapping.partner_location(c) for c in customers if all(mapping.partner_location(c))}
        states -= set(self._states)
        if states:
            found = self.rpc(book, rows, lambda: self.client.search_read(
                "res.country.state", [["code", "in", sorted({s for _, s in states})]], ["code", "country_id"]))
            by_country = {v: k for k, v in self._countries.items()}
            for r in found:
                country = by_country.get(r["country_id"][0] if r["country_id"] else None)
                if country:
                    self._states[(country, r["code"])] = r["id"]

    # -- partners
    def push_partners(self, book: StateBook, customers: list[Customer]) -> None:
        work = []
        for customer in customers:
            row = book.get(SyncKind.CUSTOMER, customer.pk, reference=mapping.customer_ref(customer),
                           label=str(customer)[:255], odoo_model="res.partner")
            vals = mapping.partner_vals(customer)
            digest = mapping.payload_hash({**vals, "location": mapping.partner_location(customer)})
            if row.odoo_id and row.pushed_hash == digest and row.status == SyncStatus.SYNCED:
                continue
            if book.due(row):
                work.append((customer, row, vals, digest))
        if not work:
            return
        rows = [row for _, row, _, _ in work]
        self.location_ids([customer for customer, *_ in work], book, rows)
        for customer, _, vals, _ in work:
            vals.update(self.location_vals(customer))
        refs = [row.reference for _, row, _, _ in work]
        found = self.rpc(book, rows, lambda: self.client.search_read(
            "res.partner", [["ref", "in", refs]], ["ref"], order="id"))
        by_ref: dict[str, int] = {}
        for rec in found:
            by_ref.setdefault(rec["ref"], rec["id"])
        to_create = [(row, vals) for _, row, vals, _ in work if row.reference not in by_ref]
        digests = {id(row): digest for _, row, _, digest in work}
        for row, vals, oid in self.create_many(book, "res.partner", to_create):
            book.synced(row, odoo_id=oid, pushed_hash=digests[id(row)])
            self.report.partners_created += 1
        for customer, row, vals, digest in work:
            oid = by_ref.get(row.reference)
            if oid is None:
                continue
            try:
                self.rpc(book, [row], lambda o=oid, v=vals: self.client.write("res.partner", [o], v))
            except OdooRemoteError as exc:
                book.failed(row, exc)
                self.report.failed += 1
                continue
            book.synced(row, odoo_id=oid, pushed_hash=digest)
            self.report.partners_updated += 1
        for customer, row, _, _ in work:
            if row.odoo_id and customer.odoo_partner_id != row.odoo_id:
                customer.odoo_partner_id = row.odoo_id
                self.write_back(customer, "odoo_partner_id")

    def location_vals(self, customer: Customer) -> dict:
        country, state = mapping.partner_location(customer)
        return {"country_id": self._countries.get(country, False),
                "state_id": self._states.get((country, state), False)}

    # -- catalog
    def push_catalog(self, book: StateBook, plans: list[Plan], charges: list[Charge]) -> None:
        digits = self.client.fields.price_digits
        work: list[tuple[OdooSyncState, dict, str, Any]] = []
        for plan in plans:
            period = mapping.period_of(plan)
            vals = mapping.plan_product_vals(plan, price_digits=digits)
            row = book.get(SyncKind.PLAN, plan.pk, service_id=plan.service_id, reference=vals["default_code"],
                           label=str(plan)[:255], odoo_model="product.product")
            digest = mapping.payload_hash({**vals, "period": period})
            if row.odoo_id and row.pushed_hash == digest and row.status == SyncStatus.SYNCED \
                    and plan.odoo_plan_id and plan.odoo_product_id:
                continue
            work.append((row, vals, digest, plan))
        for charge in charges:
            vals = mapping.charge_product_vals(charge)
            row = book.get(SyncKind.CHARGE, charge.pk, service_id=charge.plan.service_id,
                           reference=vals["default_code"], label=str(charge)[:255], odoo_model="product.product")
            digest = mapping.payload_hash(vals)
            if row.odoo_id and row.pushed_hash == digest and row.status == SyncStatus.SYNCED \
                    and charge.odoo_product_id:
                continue
            work.append((row, vals, digest, charge))
        work = [w for w in work if book.due(w[0])]
        if not work:
            return
        rows = [w[0] for w in work]
        codes = [vals["default_code"] for _, vals, _, _ in work]
        found = self.rpc(book, rows, lambda: self.client.search_read(
            "product.product", [["default_code", "in", codes]], ["default_code"], order="id"))
        by_code: dict[str, int] = {}
        for rec in found:
            by_code.setdefault(rec["default_code"], rec["id"])
        existing = set(by_code)
        to_create = [(row, vals) for row, vals, _, _ in work if vals["default_code"] not in by_code]
        for row, vals, oid in self.create_many(book, "product.product", to_create):
            by_code[vals["default_code"]] = oid
            self.report.products_created += 1
        for row, vals, digest, obj in work:
            oid = by_code.get(vals["default_code"])
            if oid is None:
                continue  # its create failed; recorded on the row
            if vals["default_code"] in existing and row.pushed_hash != digest:
                try:
                    self.rpc(book, [row], lambda o=oid, v=vals: self.client.write("product.product", [o], v))
                except OdooRemoteError as exc:
                    book.failed(row, exc)
                    continue
            if isinstance(obj, Plan):
                plan_id = self.period_plan_id(mapping.period_of(obj), book, [row])
                Plan.objects.filter(pk=obj.pk).update(odoo_plan_id=plan_id, odoo_product_id=oid)
                obj.odoo_plan_id, obj.odoo_product_id = plan_id, oid
            else:
                Charge.objects.filter(pk=obj.pk).update(odoo_product_id=oid)
                obj.odoo_product_id = oid
            book.synced(row, odoo_id=oid, pushed_hash=digest)

    def push_orders(self, book: StateBook, subscriptions: list[Subscription], usages: list[RatedUsage]) -> None:
        fields = self.client.fields
        usages_by_sub: dict[Any, list[RatedUsage]] = defaultdict(list)
        for usage in usages:
            usages_by_sub[usage.subscription_id].append(usage)

        order_work: list[tuple[Subscription, OdooSyncState, str]] = []
        line_work: dict[Any, list[tuple[RatedUsage, OdooSyncState, mapping.UsageLine, str]]] = defaultdict(list)
        for sub in subscriptions:
            mapping.assert_billable(sub)
            partner_row = book.rows.get((SyncKind.CUSTOMER, str(sub.account_link.customer_id)))
            plan_row = book.rows.get((SyncKind.PLAN, str(sub.plan_id)))
            if not (partner_row and partner_row.odoo_id and plan_row and plan_row.status == SyncStatus.SYNCED
                    and sub.plan.odoo_product_id and sub.plan.odoo_plan_id):
                continue  # its partner or catalog failed this cycle; retried with them
            row = book.get(SyncKind.SUBSCRIPTION, sub.pk, service_id=sub.service_id,
                           reference=mapping.subscription_ref(sub), label=str(sub)[:255], odoo_model="sale.order")
            closed = sub.status in CLOSED_SUBSCRIPTION_STATUSES
            digest = mapping.payload_hash({
                "partner": partner_row.odoo_id, "plan": sub.plan.odoo_plan_id, "product": sub.plan.odoo_product_id,
                "flat": str(sub.flat_amount), "closed": closed, "start": str(self.start_date(sub))})
            if not (row.odoo_id and row.pushed_hash == digest and row.status == SyncStatus.SYNCED):
                if book.due(row):
                    order_work.append((sub, row, digest))
            for usage in usages_by_sub.get(sub.pk, []):
                charge_product = usage.charge.odoo_product_id
                if not charge_product:
                    continue
                urow = book.get(SyncKind.USAGE, usage.pk, service_id=sub.service_id, odoo_model="sale.order.line",
                                label=f"{sub} {mapping.usage_label(usage)}"[:255])
                if urow.frozen:
                    continue
                line = mapping.usage_line(usage, price_digits=fields.price_digits,
                                          quantity_digits=fields.quantity_digits)
                udigest = mapping.payload_hash({**line.payload(), "product": charge_product})
                if urow.status == SyncStatus.SYNCED and urow.pushed_hash == udigest:
                    if usage.state == RatedUsageState.FROZEN and not urow.final:
                        urow.final = True  # window closed and Odoo already has its amount
                        book.touch(urow)
                    continue
                if not book.due(urow):
                    continue
                if (usage.state == RatedUsageState.OPEN and urow.status == SyncStatus.SYNCED and urow.synced_at
                        and urow.odoo_id and not line.zero
                        and self.now - urow.synced_at < dt.timedelta(seconds=settings.ODOO_OPEN_USAGE_MIN_INTERVAL)):
                    continue  # an open window's line is refreshed at most once per interval; its close always goes
                line_work[sub.pk].append((usage, urow, line, udigest))

        # 1. orders: find by client_order_ref; create what is missing (lines inline); confirm; close
        orders_by_ref: dict[str, dict] = {}
        if order_work:
            refs = [r.reference for _, r, _ in order_work]
            found = self.rpc(book, [r for _, r, _ in order_work], lambda: self.client.search_read(
                "sale.order", [["client_order_ref", "in", refs]],
                ["client_order_ref", "state", "subscription_state"], order="id"))
            for rec in found:
                orders_by_ref.setdefault(rec["client_order_ref"], rec)
        to_create, existing = [], []
        inline: dict[int, list] = {}
        for sub, row, digest in order_work:
            rec = orders_by_ref.get(row.reference)
            if rec is not None:
                row.odoo_id = rec["id"]
                existing.append((sub, row, digest, rec))
                continue
            row.odoo_id = None
            if sub.status in CLOSED_SUBSCRIPTION_STATUSES:
                book.synced(row, odoo_id=None, pushed_hash=digest, pricing_note="closed before it reached Odoo",
                            final=True)
                line_work.pop(sub.pk, None)
                continue
            extras = self.line_extras(book, [row])
            lines = [[0, 0, {**mapping.flat_line_vals(sub, product_id=sub.plan.odoo_product_id,
                                                      price_digits=fields.price_digits), **extras}]]
            pending = line_work.pop(sub.pk, [])
            for usage, urow, line, udigest in pending:
                if line.zero:
                    self.line_synced(book, usage, urow, line, udigest, None)
                else:
                    lines.append([0, 0, {**line.vals(product_id=usage.charge.odoo_product_id), **extras}])
            inline[id(row)] = [w for w in pending if not w[2].zero]
            to_create.append((sub, row, digest, {
                "partner_id": book.rows[(SyncKind.CUSTOMER, str(sub.account_link.customer_id))].odoo_id,
                "plan_id": sub.plan.odoo_plan_id, "client_order_ref": row.reference,
                "start_date": self.start_date(sub).isoformat(), "order_line": lines}))
        made = self.create_many(book, "sale.order", [(row, vals) for _, row, _, vals in to_create])
        made_ids = {id(row): oid for row, _, oid in made}
        new_orders = []
        for sub, row, digest, vals in to_create:
            oid = made_ids.get(id(row))
            if oid is None:  # isolated business failure: its lines wait with it
                for _, urow, _, _ in inline.get(id(row), []):
                    book.failed(urow, row.last_error or "order not created", retry=False)
                continue
            row.odoo_id = oid
            new_orders.append((sub, row, digest))
            self.report.orders_created += 1
            self.report.lines_created += len(vals["order_line"])
        to_confirm = [row.odoo_id for _, row, _ in new_orders] + [
            rec["id"] for _, _, _, rec in existing if rec["state"] in ("draft", "sent")]
        if to_confirm:
            rows = [row for _, row, _ in new_orders] + [row for _, row, _, _ in existing]
            self.rpc(book, rows, lambda: self.client.call("sale.order", "action_confirm", [to_confirm]))
            self.report.orders_confirmed += len(to_confirm)
        if new_orders:
            ids = [row.odoo_id for _, row, _ in new_orders]
            lines = self.rpc(book, [row for _, row, _ in new_orders], lambda: self.client.search_read(
                "sale.order.line", [["order_id", "in", ids]], ["order_id", "product_id", "name"], order="id"))
            by_key = {(ln["order_id"][0], ln["product_id"][0] if ln["product_id"] else None, ln["name"]): ln["id"]
                      for ln in lines}
            for sub, row, digest in new_orders:
                for usage, urow, line, udigest in inline.get(id(row), []):
                    line_id = by_key.get((row.odoo_id, usage.charge.odoo_product_id, line.label))
                    self.line_synced(book, usage, urow, line, udigest, line_id)
                book.synced(row, odoo_id=row.odoo_id, pushed_hash=digest)
                self.set_order_id(sub, row.odoo_id)

        # 2. orders that already exist: flat price, then closing (after the last usage went out)
        to_close = []
        if existing:
            order_ids = [row.odoo_id for _, row, _, _ in existing]
            flat_lines = self.rpc(book, [row for _, row, _, _ in existing], lambda: self.client.search_read(
                "sale.order.line", [["order_id", "in", order_ids]], ["order_id", "product_id", "price_unit"],
                order="id"))
            for sub, row, digest, rec in existing:
                wanted = mapping.flat_line_vals(sub, product_id=sub.plan.odoo_product_id,
                                                price_digits=fields.price_digits)
                mine = [ln for ln in flat_lines if ln["order_id"][0] == row.odoo_id
                        and ln["product_id"] and ln["product_id"][0] == sub.plan.odoo_product_id]
                try:
                    if mine and mine[0]["price_unit"] != wanted["price_unit"]:
                        self.rpc(book, [row], lambda m=mine[0], w=wanted: self.client.write(
                            "sale.order.line", [m["id"]], {"price_unit": w["price_unit"]}))
                        self.report.lines_updated += 1
                    elif not mine:
                        extras = self.line_extras(book, [row])
                        self.rpc(book, [row], lambda w=wanted, o=row.odoo_id: self.client.create(
                            "sale.order.line", [{**w, "order_id": o, **extras}]))
                        self.report.lines_created += 1
                except OdooRemoteError as exc:
                    book.failed(row, exc)
                    continue
                if sub.status in CLOSED_SUBSCRIPTION_STATUSES:
                    if rec.get("subscription_state") in OPEN_ODOO_STATES + ("1_draft",) or not rec.get(
                            "subscription_state"):
                        to_close.append((sub, row, digest))
                        continue
                book.synced(row, odoo_id=row.odoo_id, pushed_hash=digest,
                            final=sub.status in CLOSED_SUBSCRIPTION_STATUSES)
                self.set_order_id(sub, row.odoo_id)

        # 3. usage lines of orders that existed before this batch
        orders_with_lines = {}
        for sub_pk in line_work:
            srow = book.rows.get((SyncKind.SUBSCRIPTION, str(sub_pk)))
            if srow and srow.odoo_id:
                orders_with_lines[sub_pk] = srow.odoo_id
        if orders_with_lines:
            self.push_usage_lines(book, {pk: line_work[pk] for pk in orders_with_lines}, orders_with_lines)

        # 4. close terminated subscriptions
        if to_close:
            reason = self.close_reason_id(book, [r for _, r, _ in to_close])
            ids = [r.odoo_id for _, r, _ in to_close]
            kwargs = {"close_reason_id": reason} if reason else {}
            self.rpc(book, [r for _, r, _ in to_close],
                     lambda: self.client.call("sale.order", "set_close", [ids], kwargs))
            for sub, row, digest in to_close:
                book.synced(row, odoo_id=row.odoo_id, pushed_hash=digest, final=True)
                self.set_order_id(sub, row.odoo_id)
            self.report.orders_closed += len(to_close)

    def push_usage_lines(self, book: StateBook, work: dict[Any, list], orders: dict[Any, int]) -> None:
        rows = [w[1] for items in work.values() for w in items]
        order_ids = sorted(set(orders.values()))
        existing = self.rpc(book, rows, lambda: self.client.search_read(
            "sale.order.line", [["order_id", "in", order_ids]],
            ["order_id", "product_id", "name", "price_unit", "product_uom_qty", "qty_invoiced"], order="id"))
        by_id = {ln["id"]: ln for ln in existing}
        by_key = {}
        for ln in existing:
            key = (ln["order_id"][0], ln["product_id"][0] if ln["product_id"] else None, ln["name"])
            by_key.setdefault(key, ln)
        creates, writes = [], []
        for sub_pk, items in work.items():
            order_id = orders[sub_pk]
            for usage, urow, line, udigest in items:
                product = usage.charge.odoo_product_id
                found = by_id.get(urow.odoo_id) if urow.odoo_id else None
                if found is None:
                    found = by_key.get((order_id, product, line.label))
                if found is not None and found["qty_invoiced"]:
                    # invoiced in Odoo: frozen there; never rewrite it
                    urow.odoo_id = found["id"]
                    same = (found["price_unit"] == line.vals(product_id=product)["price_unit"]
                            and found["product_uom_qty"] == line.vals(product_id=product)["product_uom_qty"])
                    if same:
                        self.line_synced(book, usage, urow, line, udigest, found["id"], frozen=True)
                    else:
                        urow.frozen = True
                        book.failed(urow, "line already invoiced in Odoo with a different amount; "
                                          "a correction needs a credit note or a new line", retry=False)
                    continue
                if found is None:
                    if line.zero:
                        self.line_synced(book, usage, urow, line, udigest, None)
                        continue
                    creates.append((urow, {**line.vals(product_id=product), "order_id": order_id,
                                           **self.line_extras(book, [urow])},
                                    (usage, line, udigest)))
                else:
                    writes.append((urow, found["id"], line.vals(product_id=product), (usage, line, udigest)))
        if creates:
            made = self.create_many(book, "sale.order.line", [(row, vals) for row, vals, _ in creates])
            extra = {id(row): ctx for row, _, ctx in creates}
            for row, vals, oid in made:
                usage, line, udigest = extra[id(row)]
                self.line_synced(book, usage, row, line, udigest, oid)
                self.report.lines_created += 1
        for urow, line_id, vals, (usage, line, udigest) in writes:
            try:
                self.rpc(book, [urow], lambda i=line_id, v=vals: self.client.write(
                    "sale.order.line", [i], {"product_uom_qty": v["product_uom_qty"], "price_unit": v["price_unit"]}))
            except OdooRemoteError as exc:
                book.failed(urow, exc)
                self.report.failed += 1
                continue
            self.line_synced(book, usage, urow, line, udigest, line_id)
            self.report.lines_updated += 1

    def line_synced(self, book: StateBook, usage: RatedUsage, urow: OdooSyncState, line: mapping.UsageLine,
                    udigest: str, line_id: int | None, *, frozen: bool = False) -> None:
        book.synced(urow, odoo_id=line_id, pushed_hash=udigest, reference=line.label,
                    pre_rated=line.pricing.pre_rated and not line.zero,
                    pricing_note=(line.pricing.reason if line.pricing.pre_rated and not line.zero else ""),
                    frozen=frozen or urow.frozen, final=usage.state == RatedUsageState.FROZEN)
        if line_id and usage.odoo_line_id != line_id:
            usage.odoo_line_id = line_id
            self.write_back(usage, "odoo_line_id")

    def start_date(self, sub: Subscription) -> dt.date:
        start = sub.current_period_start or sub.started_at or sub.subscription_at
        return start.astimezone(dt.timezone.utc).date()
