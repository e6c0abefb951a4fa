"""The toolkit of a push cycle, and its partner and catalog steps.

A ``Pusher`` lives for one cycle: it holds the client and the report, caches what Odoo
answers once per cycle (subscription plans by period, the unit of measure, the close
reason, countries and states) and collects the Odoo ids learnt in a batch (written back
in bulk). Every call to Odoo goes through ``Pusher.rpc``, which charges a failure to the
state rows of the step that made it; every create goes through ``Pusher.create_many``.
The order step, the largest, is ``orders.push_orders``.

Exactly once: every create is preceded by a search on our reference (``ref`` for
partners, ``default_code`` for products), so a create whose response was lost is found,
not repeated.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ParamSpec, Protocol, Sequence, TypeVar

from django.db import models

from coupons.models import Coupon
from identity.models import AccountLink, Customer
from metering.models import Charge, Plan

from . import mapping
from .client import OdooAccessDenied, OdooClient, OdooRemoteError, OdooRetryableError, OdooSettings
from .connection import CycleAborted, record_connection_failure
from .models import OdooSyncState, SyncKind, SyncStatus
from .state_book import StateBook, update_in_bulk

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class PushReport:
    batches: int = 0
    subscriptions_seen: int = 0
    partners_created: int = 0
    partners_updated: int = 0
    contacts_created: int = 0
    contacts_updated: int = 0
    orders_created: int = 0
    orders_confirmed: int = 0
    orders_closed: int = 0
    orders_dated: int = 0
    invoiced_now: int = 0
    corrections: int = 0
    stale_recurring_lines: int = 0
    lines_created: int = 0
    lines_updated: int = 0
    products_created: int = 0
    credit_notes_posted: int = 0  # POST /credit_notes realised by the cycle (not at once)
    failed: int = 0
    skipped_locked: int = 0
    aborted: str = ""
    round_trips: int = 0
    changes_taken: int = 0  # change-log rows a change-driven cycle took
    requeued: int = 0  # subscriptions put back in the log (a retry after its backoff, or not settled yet)
    budget_exhausted: bool = False  # stopped taking chunks: the rest waits for the next cycle
    swept: int = 0  # subscriptions a full sweep put in the log
    seconds: float = 0.0  # ok-float: duration

    @property
    def records_written(self) -> int:
        return (self.partners_created + self.partners_updated + self.contacts_created + self.contacts_updated
                + self.orders_created + self.lines_created
                + self.lines_updated + self.products_created)


class Creatable(Protocol):
    """A record to create in Odoo: its values, and the state row that answers for it."""

    @property
    def state(self) -> OdooSyncState: ...

    @property
    def vals(self) -> dict[str, Any]: ...


W = TypeVar("W", bound=Creatable)


@dataclass(frozen=True)
class PartnerWork:
    """A customer whose ``res.partner`` differs from what Odoo confirmed."""

    customer: Customer
    state: OdooSyncState
    vals: dict[str, Any]
    digest: str


@dataclass(frozen=True)
class ContactWork:
    """A service account whose invoice-address contact differs from what Odoo confirmed."""

    link: AccountLink
    state: OdooSyncState
    vals: dict[str, Any]
    digest: str


@dataclass(frozen=True)
class FeeProduct:
    """The one-off product a plan's base fees (PlanFee lines) are billed with."""

    plan: Plan


@dataclass(frozen=True)
class DiscountProduct:
    """The one-off product a coupon's discount lines (negative) are billed with."""

    coupon: Coupon


@dataclass(frozen=True)
class ProductWork:
    """A plan (recurring product + subscription plan), its fee product, a charge (usage product) or a
    coupon's discount product to push."""

    subject: Plan | Charge | FeeProduct | DiscountProduct
    state: OdooSyncState
    vals: dict[str, Any]
    digest: str

    @property
    def code(self) -> str:
        return str(self.vals["default_code"])


@dataclass(frozen=True)
class PricelistWork:
    """A currency whose pricelist Odoo has not confirmed."""

    code: str
    state: OdooSyncState
    vals: dict[str, Any]

    @property
    def key(self) -> tuple[str, int]:
        return str(self.vals["name"]), int(self.vals["currency_id"])


@dataclass
class Pusher:
    """One cycle's client, report, cached lookups and pending write-backs (see the module docstring)."""

    client: OdooClient
    now: dt.datetime
    report: PushReport = field(default_factory=PushReport)
    settings_: OdooSettings | None = None
    _periods: dict[tuple[int, str], int] = field(default_factory=dict)
    _close_reason: int | None = None
    _uom_unit: int | None = None
    _write_backs: dict[tuple[type[models.Model], str], dict[Any, models.Model]] = field(default_factory=dict)
    _countries: dict[str, int] = field(default_factory=dict)
    _states: dict[tuple[str, str], int] = field(default_factory=dict)

    def write_back(self, obj: models.Model, field_name: str) -> None:
        """Odoo ids learnt in this batch, saved in bulk at its end (one UPDATE per model, not per row)."""
        self._write_backs.setdefault((type(obj), field_name), {})[obj.pk] = obj

    def flush_write_backs(self) -> None:
        for (model, field_name), objs in self._write_backs.items():
            update_in_bulk(model, list(objs.values()), [field_name])
        self._write_backs.clear()

    # -- RPC with failure bookkeeping
    def rpc(self, book: StateBook, rows: Sequence[OdooSyncState], call: Callable[P, R],
            *args: P.args, **kwargs: P.kwargs) -> R:
        """``call(*args, **kwargs)``; a failure that ends the cycle is charged to ``rows``."""
        try:
            return call(*args, **kwargs)
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

    def create_many(self, book: StateBook, model: str, items: Sequence[W]) -> list[tuple[W, int | None]]:
        """Multi-record create: each item with its new id, in order; None where Odoo refused the record.

        On a business error the records are retried one by one, to isolate the bad ones (marked failed).
        """
        if not items:
            return []
        try:
            ids = self.rpc(book, [item.state for item in items], self.client.create, model,
                           [item.vals for item in items])
        except OdooRemoteError:
            return [(item, self._create_one(book, model, item)) for item in items]
        return list(zip(items, ids))

    def _create_one(self, book: StateBook, model: str, item: Creatable) -> int | None:
        try:
            [odoo_id] = self.rpc(book, [item.state], self.client.create, model, [item.vals])
        except OdooRemoteError as exc:
            book.failed(item.state, exc)
            self.report.failed += 1
            return None
        return odoo_id

    # -- lookups cached for the cycle
    def period_plan_id(self, period: tuple[int, str], book: StateBook, rows: list[OdooSyncState]) -> int:
        if not self._periods:
            found = self.rpc(book, rows, self.client.search_read, "sale.subscription.plan", [],
                             ["billing_period_value", "billing_period_unit"], order="id")
            for rec in found:
                self._periods.setdefault((rec["billing_period_value"], rec["billing_period_unit"]), rec["id"])
        if period not in self._periods:
            vals = {"name": mapping.PERIOD_NAMES.get(period, f"{period[0]} {period[1]}"),
                    "billing_period_value": period[0], "billing_period_unit": period[1]}
            [plan_id] = self.rpc(book, rows, self.client.create, "sale.subscription.plan", [vals])
            self._periods[period] = plan_id
        return self._periods[period]

    def line_extras(self, book: StateBook, rows: list[OdooSyncState]) -> dict[str, int]:
        """Fields whose name depends on the Odoo version (product_uom in 17/18, product_uom_id in 19)."""
        if self._uom_unit is None:
            self._uom_unit = self.rpc(book, rows, self.client.xmlid, "uom", "product_uom_unit")
        return {self.client.fields.line_uom: self._uom_unit}

    def close_reason_id(self, book: StateBook, rows: list[OdooSyncState]) -> int | None:
        if self._close_reason is None:
            found = self.rpc(book, rows, self.client.search_read, "sale.order.close.reason", [], ["name"],
                             order="id")
            wanted = [r["id"] for r in found if "end of contract" in (r["name"] or "").lower()]
            self._close_reason = (wanted or [r["id"] for r in found] or [0])[0]
        return self._close_reason or None

    def location_ids(self, locations: list[tuple[str, str]], book: StateBook, rows: list[OdooSyncState]) -> None:
        countries = {country for country, _ in locations} - set(self._countries) - {""}
        if countries:
            found = self.rpc(book, rows, self.client.search_read, "res.country",
                             [["code", "in", sorted(countries)]], ["code"])
            self._countries.update({r["code"]: r["id"] for r in found})
        states = {loc for loc in locations if all(loc)} - set(self._states)
        if states:
            found = self.rpc(book, rows, self.client.search_read, "res.country.state",
                             [["code", "in", sorted({s for _, s in states})]], ["code", "country_id"])
            by_country: dict[int | None, str] = {v: k for k, v in self._countries.items()}
            for r in found:
                country = by_country.get(r["country_id"][0] if r["country_id"] else None)
                if country:
                    self._states[(country, r["code"])] = r["id"]

    def location_vals(self, location: tuple[str, str]) -> dict[str, Any]:
        country, state = location
        return {"country_id": self._countries.get(country, False),
                "state_id": self._states.get((country, state), False)}

    # -- partners: search by ref, create the missing ones in one call, write the changed ones
    def push_partners(self, book: StateBook, customers: list[Customer]) -> None:
        work = [w for w in (self._partner_work(book, c) for c in customers) if w is not None]
        if not work:
            return
        states = [w.state for w in work]
        found = self.rpc(book, states, self.client.search_read, "res.partner",
                         [["ref", "in", [w.state.reference for w in work]]], ["ref"], order="id")
        by_ref: dict[str, int] = {}
        for rec in found:
            by_ref.setdefault(rec["ref"], rec["id"])
        to_create = [w for w in work if w.state.reference not in by_ref]
        for created, partner_id in self.create_many(book, "res.partner", to_create):
            if partner_id is not None:
                book.synced(created.state, odoo_id=partner_id, pushed_hash=created.digest)
                self.report.partners_created += 1
        for w in work:
            if w.state.reference in by_ref:
                self._write_partner(book, w, by_ref[w.state.reference])
        for w in work:
            if w.state.odoo_id and w.customer.odoo_partner_id != w.state.odoo_id:
                w.customer.odoo_partner_id = w.state.odoo_id
                self.write_back(w.customer, "odoo_partner_id")

    def _partner_work(self, book: StateBook, customer: Customer) -> PartnerWork | None:
        state = book.get(SyncKind.CUSTOMER, customer.pk, reference=mapping.customer_ref(customer),
                         label=str(customer)[:255], odoo_model="res.partner")
        vals = mapping.partner_vals(customer)
        digest = mapping.payload_hash(vals)
        if state.odoo_id and state.pushed_hash == digest and state.status == SyncStatus.SYNCED:
            return None
        return PartnerWork(customer, state, vals, digest) if book.due(state) else None

    def _write_partner(self, book: StateBook, work: PartnerWork, partner_id: int) -> None:
        try:
            self.rpc(book, [work.state], self.client.write, "res.partner", [partner_id], work.vals)
        except OdooRemoteError as exc:
            book.failed(work.state, exc)
            self.report.failed += 1
            return
        book.synced(work.state, odoo_id=partner_id, pushed_hash=work.digest)
        self.report.partners_updated += 1

    # -- service accounts: one invoice-address contact each, under its customer's commercial partner
    def push_contacts(self, book: StateBook, links: list[AccountLink]) -> None:
        """Search by ref, create the missing contacts in one call, write the changed ones.

        Odoo gives a contact created under a parent the commercial partner's VAT number
        (``_commercial_sync_from_company``): a created contact's own number is written right after.
        Writes never send ``parent_id`` (which would copy the parent's VAT again): an account's
        customer never changes.
        """
        work = [w for w in (self._contact_work(book, link) for link in links) if w is not None]
        if not work:
            return
        states = [w.state for w in work]
        locations = [mapping.account_location(w.link) for w in work]
        self.location_ids(locations, book, states)
        work = [replace(w, vals={**w.vals, **self.location_vals(loc)}) for w, loc in zip(work, locations)]
        found = self.rpc(book, states, self.client.search_read, "res.partner",
                         [["ref", "in", [w.state.reference for w in work]]], ["ref"], order="id")
        by_ref: dict[str, int] = {}
        for rec in found:
            by_ref.setdefault(rec["ref"], rec["id"])
        to_create = [w for w in work if w.state.reference not in by_ref]
        for created, partner_id in self.create_many(book, "res.partner", to_create):
            if partner_id is None:
                continue
            self.report.contacts_created += 1
            if created.vals.get("vat"):
                self._write_contact(book, created, partner_id, {"vat": created.vals["vat"]}, created_now=True)
            else:
                book.synced(created.state, odoo_id=partner_id, pushed_hash=created.digest)
        for w in work:
            if w.state.reference in by_ref:
                vals = {k: v for k, v in w.vals.items() if k != "parent_id"}
                self._write_contact(book, w, by_ref[w.state.reference], vals)
        for w in work:
            if w.state.odoo_id and w.link.odoo_invoice_partner_id != w.state.odoo_id:
                w.link.odoo_invoice_partner_id = w.state.odoo_id
                self.write_back(w.link, "odoo_invoice_partner_id")

    def _contact_work(self, book: StateBook, link: AccountLink) -> ContactWork | None:
        parent = book.rows.get((SyncKind.CUSTOMER, str(link.customer_id)))
        parent_id = parent.odoo_id if parent and parent.odoo_id else link.customer.odoo_partner_id
        if not parent_id:
            return None  # its commercial partner failed this cycle; retried with it
        state = book.get(SyncKind.ACCOUNT, link.pk, service_id=link.service_id, reference=mapping.account_ref(link),
                         label=str(link)[:255], odoo_model="res.partner")
        vals = mapping.account_vals(link, parent_id=parent_id)
        digest = mapping.payload_hash({**vals, "location": mapping.account_location(link)})
        if state.odoo_id and state.pushed_hash == digest and state.status == SyncStatus.SYNCED:
            return None
        return ContactWork(link, state, vals, digest) if book.due(state) else None

    def _write_contact(self, book: StateBook, work: ContactWork, partner_id: int, vals: dict[str, Any], *,
                       created_now: bool = False) -> None:
        try:
            self.rpc(book, [work.state], self.client.write, "res.partner", [partner_id], vals)
        except OdooRemoteError as exc:
            work.state.odoo_id = partner_id  # found next time by ref; its VAT is written then
            book.failed(work.state, exc)
            self.report.failed += 1
            return
        book.synced(work.state, odoo_id=partner_id, pushed_hash=work.digest)
        if not created_now:
            self.report.contacts_updated += 1

    @staticmethod
    def contact_id(book: StateBook, link: AccountLink) -> int | None:
        """The account's invoice-address contact in Odoo, once pushed."""
        row = book.rows.get((SyncKind.ACCOUNT, str(link.pk)))
        return row.odoo_id if row and row.status == SyncStatus.SYNCED else None

    # -- catalog: products by default_code (plans also get their subscription plan)
    def push_catalog(self, book: StateBook, plans: list[Plan], charges: list[Charge]) -> None:
        self._push_products(book, [w for w in self._catalog_work(book, plans, charges) if book.due(w.state)])

    def push_pricelists(self, book: StateBook, currencies: set[str]) -> None:
        """One ``product.pricelist`` per currency (``mapping.pricelist_name``): the orders' currency is their
        pricelist's. Found by name and currency before any create (a create whose answer was lost is found
        by the next cycle, not repeated); the id lives on the state row (``pricelist_id``)."""
        work: list[PricelistWork] = []
        for code in sorted(currencies):
            name = mapping.pricelist_name(code)
            state = book.get(SyncKind.PRICELIST, code, reference=name, label=f"{code} pricelist",
                             odoo_model="product.pricelist")
            if state.odoo_id and state.status == SyncStatus.SYNCED and state.pushed_hash == name:
                continue
            if book.due(state):
                work.append(PricelistWork(code, state, {"name": name}))
        if not work:
            return
        rows = [w.state for w in work]
        found = self.rpc(book, rows, self.client.search_read, "res.currency",
                         [["name", "in", [w.code for w in work]]], ["name"])
        currency_ids = {r["name"]: r["id"] for r in found}
        for w in work:
            if w.code not in currency_ids:
                book.failed(w.state, f"currency {w.code} not active in Odoo")
                self.report.failed += 1
        work = [replace(w, vals={**w.vals, "currency_id": currency_ids[w.code]}) for w in work
                if w.code in currency_ids]
        if not work:
            return
        found = self.rpc(book, rows, self.client.search_read, "product.pricelist",
                         [["name", "in", [w.vals["name"] for w in work]],
                          ["currency_id", "in", [w.vals["currency_id"] for w in work]]], ["name", "currency_id"],
                         order="id")
        by_key: dict[tuple[str, int], int] = {}
        for rec in found:
            by_key.setdefault((rec["name"], rec["currency_id"][0]), rec["id"])
        to_create = [w for w in work if w.key not in by_key]
        for created, pricelist_id in self.create_many(book, "product.pricelist", to_create):
            if pricelist_id is not None:
                by_key[created.key] = pricelist_id
        for w in work:
            if w.key in by_key:
                book.synced(w.state, odoo_id=by_key[w.key], pushed_hash=w.vals["name"])

    @staticmethod
    def pricelist_id(book: StateBook, currency: str) -> int | None:
        """The pricelist of ``currency`` in Odoo, once pushed."""
        row = book.rows.get((SyncKind.PRICELIST, currency.upper()))
        return row.odoo_id if row and row.status == SyncStatus.SYNCED else None

    def push_discount_products(self, book: StateBook, coupons: list[Coupon]) -> None:
        """The discount product of each coupon whose discounts are to push (``mapping.coupon_product_vals``)."""
        work = []
        for coupon in coupons:
            vals = mapping.coupon_product_vals(coupon)
            state = book.get(SyncKind.COUPON_PRODUCT, coupon.pk, service_id=coupon.service_id,
                             reference=vals["default_code"], label=str(coupon)[:255], odoo_model="product.product")
            digest = mapping.payload_hash(vals)
            if not (state.odoo_id and state.pushed_hash == digest and state.status == SyncStatus.SYNCED):
                work.append(ProductWork(DiscountProduct(coupon), state, vals, digest))
        self._push_products(book, [w for w in work if book.due(w.state)])

    @staticmethod
    def discount_product_id(book: StateBook, coupon: Coupon) -> int | None:
        row = book.rows.get((SyncKind.COUPON_PRODUCT, str(coupon.pk)))
        return row.odoo_id if row and row.status == SyncStatus.SYNCED else None

    def _push_products(self, book: StateBook, work: list[ProductWork]) -> None:
        """Find by ``default_code``, create the missing ones in one call, write the changed ones."""
        if not work:
            return
        found = self.rpc(book, [w.state for w in work], self.client.search_read, "product.product",
                         [["default_code", "in", [w.code for w in work]]], ["default_code"], order="id")
        by_code: dict[str, int] = {}
        for rec in found:
            by_code.setdefault(rec["default_code"], rec["id"])
        existing = set(by_code)
        to_create = [w for w in work if w.code not in by_code]
        for created, product_id in self.create_many(book, "product.product", to_create):
            if product_id is not None:
                by_code[created.code] = product_id
                self.report.products_created += 1
        for w in work:
            product_id = by_code.get(w.code)
            if product_id is None:
                continue  # its create failed; recorded on the row
            if w.code in existing and w.state.pushed_hash != w.digest:
                try:
                    self.rpc(book, [w.state], self.client.write, "product.product", [product_id], w.vals)
                except OdooRemoteError as exc:
                    book.failed(w.state, exc)
                    continue
            self._link_product(book, w, product_id)

    @staticmethod
    def fee_product_id(book: StateBook, plan: Plan) -> int | None:
        """The plan's base-fee product in Odoo, once pushed (see ``mapping.fee_product_vals``)."""
        row = book.rows.get((SyncKind.FEE_PRODUCT, str(plan.pk)))
        return row.odoo_id if row and row.status == SyncStatus.SYNCED else None

    def _catalog_work(self, book: StateBook, plans: list[Plan], charges: list[Charge]) -> list[ProductWork]:
        """Plans, then charges, whose product differs from what Odoo confirmed (or whose ids we lack)."""
        digits = self.client.fields.price_digits
        work = []
        for plan in plans:
            period = mapping.period_of(plan)  # refuses an interval Odoo cannot bill, before any state is kept
            vals = mapping.plan_product_vals(plan, price_digits=digits)
            state = book.get(SyncKind.PLAN, plan.pk, service_id=plan.service_id, reference=vals["default_code"],
                             label=str(plan)[:255], odoo_model="product.product")
            digest = mapping.payload_hash({**vals, "period": period})
            if not (state.odoo_id and state.pushed_hash == digest and state.status == SyncStatus.SYNCED
                    and plan.odoo_plan_id and plan.odoo_product_id):
                work.append(ProductWork(plan, state, vals, digest))
            vals = mapping.fee_product_vals(plan)
            state = book.get(SyncKind.FEE_PRODUCT, plan.pk, service_id=plan.service_id,
                             reference=vals["default_code"], label=str(plan)[:255], odoo_model="product.product")
            digest = mapping.payload_hash(vals)
            if not (state.odoo_id and state.pushed_hash == digest and state.status == SyncStatus.SYNCED):
                work.append(ProductWork(FeeProduct(plan), state, vals, digest))
        for charge in charges:
            vals = mapping.charge_product_vals(charge)
            state = book.get(SyncKind.CHARGE, charge.pk, service_id=charge.plan.service_id,
                             reference=vals["default_code"], label=str(charge)[:255], odoo_model="product.product")
            digest = mapping.payload_hash(vals)
            if not (state.odoo_id and state.pushed_hash == digest and state.status == SyncStatus.SYNCED
                    and charge.odoo_product_id):
                work.append(ProductWork(charge, state, vals, digest))
        return work

    def _link_product(self, book: StateBook, work: ProductWork, product_id: int) -> None:
        subject = work.subject
        if isinstance(subject, Plan):
            plan_id = self.period_plan_id(mapping.period_of(subject), book, [work.state])
            Plan.objects.filter(pk=subject.pk).update(odoo_plan_id=plan_id, odoo_product_id=product_id)
            subject.odoo_plan_id, subject.odoo_product_id = plan_id, product_id
        elif isinstance(subject, (FeeProduct, DiscountProduct)):
            pass  # its id lives on the state row (fee_product_id, discount_product_id)
        else:
            Charge.objects.filter(pk=subject.pk).update(odoo_product_id=product_id)
            subject.odoo_product_id = product_id
        book.synced(work.state, odoo_id=product_id, pushed_hash=work.digest)
