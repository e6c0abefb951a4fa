"""Push our picture into Odoo, exactly once, in batches.

One cycle walks the live subscriptions in batches (``ODOO_PUSH_BATCH_SIZE``). For a
batch it costs, when everything is new: one ``search_read`` + one multi-``create``
for partners, the same for orders (created with their flat and usage lines inline),
one ``action_confirm`` for all new orders and one ``search_read`` to learn the new
line ids. Updates cost one ``write`` per changed record (Odoo has no multi-record
write with different values).

Exactly once: every create is preceded by a search on our reference (``ref``,
``client_order_ref``, ``default_code``, or the line's natural key: order, product,
description), so a create whose response was lost is found, not repeated.

Failures: a retryable error (timeout, refused connection, 5xx, concurrency) marks
the objects of the failing step ``failed`` with a backoff and ends the cycle (Odoo
is likely down); the next due cycle converges. ``AccessDenied`` marks the
connection broken and nothing is sent again until the credentials change or an
admin resets it. A business error (ValidationError, ...) on a multi-create is
isolated by retrying the records one by one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from django.conf import settings
from django.db import connection
from django.db.models import CharField, Exists, OuterRef, Q
from django.db.models.functions import Cast
from django.utils import timezone

from identity.models import Customer
from metering.models import (
    CLOSED_SUBSCRIPTION_STATUSES,
    Charge,
    Plan,
    RatedUsage,
    RatedUsageState,
    Subscription,
    SubscriptionMode,
    SubscriptionStatus,
)

from . import mapping
from .client import (
    OdooAccessDenied,
    OdooClient,
    OdooConfigurationError,
    OdooError,
    OdooRemoteError,
    OdooRetryableError,
    OdooSettings,
    get_client,
    reset_client,
)
from .models import ConnectionStatus, OdooConnectionState, OdooSyncState, SyncKind, SyncStatus

logger = logging.getLogger(__name__)

ADVISORY_NAMESPACE_SUBSCRIPTION = 0x0D00  # pg_advisory locks: (namespace, hashtext(subscription id))
ADVISORY_NAMESPACE_CYCLE = 0x0D01
OPEN_ODOO_STATES = ("3_progress", "4_paused")


class CycleAborted(Exception):
    """Stop the cycle: Odoo is unreachable or refuses our credentials."""


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


# ------------------------------------------------------------------ connection state
def connection_state() -> OdooConnectionState:
    state, _ = OdooConnectionState.objects.get_or_create(pk=1)
    return state


def mark_connection(*, status: str, settings_: OdooSettings, error: str = "", client: OdooClient | None = None,
                    now: dt.datetime | None = None) -> None:
    now = now or timezone.now()
    state = connection_state()
    state.status = status
    state.credentials_fingerprint = settings_.key_fingerprint()
    if status == ConnectionStatus.OK:
        state.last_ok_at = now
        state.broken_at = None
        if client is not None:
            f = client.fields
            state.server_version = f.server_version
            state.price_digits, state.quantity_digits = f.price_digits, f.quantity_digits
            state.line_uom_field, state.line_taxes_field = f.line_uom, f.line_taxes
    else:
        state.last_error, state.last_error_at = error[:2000], now
        if status == ConnectionStatus.BROKEN:
            state.broken_at = now
    state.save()


def connection_is_broken(settings_: OdooSettings) -> bool:
    """Broken stays broken for the same credentials; new credentials get one fresh try."""
    state = OdooConnectionState.objects.filter(pk=1).first()
    return bool(state and state.status == ConnectionStatus.BROKEN
                and state.credentials_fingerprint == settings_.key_fingerprint())


def record_connection_failure(exc: OdooError, *, settings_: OdooSettings | None) -> None:
    """What a failed call mid-cycle says about the connection; shared by push and pull.

    Judged by class, not by Odoo's exception name: JSON-2 answers a bad key with
    ``werkzeug.exceptions.Unauthorized``. A business error says nothing about the connection.
    """
    if isinstance(exc, OdooAccessDenied):
        if settings_ is not None:
            mark_connection(status=ConnectionStatus.BROKEN, settings_=settings_, error=str(exc))
        reset_client()
    elif exc.retryable and settings_ is not None:
        mark_connection(status=ConnectionStatus.DOWN, settings_=settings_, error=str(exc))


def reset_connection() -> None:
    OdooConnectionState.objects.filter(pk=1).update(status=ConnectionStatus.UNKNOWN, broken_at=None)
    reset_client()


def open_client(settings_: OdooSettings | None = None) -> OdooClient:
    """The process client, with connection state bookkeeping. Raises CycleAborted."""
    settings_ = settings_ or OdooSettings.from_django()
    if not settings_.configured:
        raise CycleAborted("Odoo is not configured (ODOO_URL, ODOO_DB, ODOO_USER, ODOO_API_KEY)")
    if connection.vendor != "postgresql":  # advisory locks below; see README "embedded default"
        raise CycleAborted("Odoo sync needs PostgreSQL (set DATABASE_URL); the embedded SQLite default does not sync")
    if connection_is_broken(settings_):
        raise CycleAborted("connection broken (access denied); fix the credentials or reset it in the admin")
    try:
        client = get_client(settings_)
    except OdooAccessDenied as exc:
        mark_connection(status=ConnectionStatus.BROKEN, settings_=settings_, error=str(exc))
        reset_client()
        raise CycleAborted(f"access denied: {exc}") from exc
    except (OdooRetryableError, OdooConfigurationError, OdooRemoteError) as exc:
        mark_connection(status=ConnectionStatus.DOWN, settings_=settings_, error=str(exc))
        raise CycleAborted(f"Odoo unreachable: {exc}") from exc
    mark_connection(status=ConnectionStatus.OK, settings_=settings_, client=client)
    return client


# ------------------------------------------------------------------ locks
@contextlib.contextmanager
def advisory_locks(namespace: int, keys: Iterable[str]) -> Iterator[set[str]]:
    """Session-level try-locks, taken in one statement; yields the keys acquired.

    A key not acquired is being pushed by another worker right now: skipped this cycle.
    """
    wanted = sorted(set(keys))
    acquired: list[str] = []
    try:
        if wanted:
            with connection.cursor() as cursor:
                cursor.execute("SELECT k FROM unnest(%s::text[]) AS k WHERE pg_try_advisory_lock(%s, hashtext(k))",
                               [wanted, namespace])
                acquired = [row[0] for row in cursor.fetchall()]
        yield set(acquired)
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, hashtext(k)) FROM unnest(%s::text[]) AS k",
                               [namespace, acquired])


# ------------------------------------------------------------------ state helpers
def backoff_seconds(attempts: int) -> float:  # ok-float: seconds
    base = settings.ODOO_RETRY_BASE_SECONDS
    delay = min(settings.ODOO_RETRY_MAX_SECONDS, base * (2 ** max(attempts - 1, 0)))
    return delay * (1 + random.random() * 0.1)  # ok-float: jitter


class StateBook:
    """Loads and saves OdooSyncState rows of one batch in bulk."""

    def __init__(self, now: dt.datetime):
        self.now = now
        self.rows: dict[tuple[str, str], OdooSyncState] = {}
        self.dirty: set[tuple[str, str]] = set()

    def load(self, kind: str, object_ids: Iterable[str]) -> None:
        ids = [str(i) for i in object_ids]
        for row in OdooSyncState.objects.filter(kind=kind, object_id__in=ids):
            self.rows[(kind, row.object_id)] = row

    def get(self, kind: str, object_id: Any, **defaults: Any) -> OdooSyncState:
        key = (kind, str(object_id))
        row = self.rows.get(key)
        if row is None:
            row = OdooSyncState(kind=kind, object_id=str(object_id), **defaults)
            self.rows[key] = row
            self.dirty.add(key)
        else:
            changed = False
            for name, value in defaults.items():
                if getattr(row, name) != value:
                    setattr(row, name, value)
                    changed = True
            if changed:
                self.dirty.add(key)
        return row

    def due(self, row: OdooSyncState) -> bool:
        if row.status != SyncStatus.FAILED:
            return True
        return row.next_attempt_at is not None and row.next_attempt_at <= self.now

    def synced(self, row: OdooSyncState, *, odoo_id: int | None, pushed_hash: str, **extra: Any) -> None:
        row.status = SyncStatus.SYNCED
        if odoo_id is not None:
            row.odoo_id = odoo_id
        row.pushed_hash = pushed_hash
        row.attempts = 0
        row.next_attempt_at = None
        row.last_error = row.last_error_name = ""
        row.last_attempt_at = row.synced_at = self.now
        for name, value in extra.items():
            setattr(row, name, value)
        self.dirty.add((row.kind, row.object_id))

    def failed(self, row: OdooSyncState, error: OdooError | str, *, retry: bool = True) -> None:
        row.status = SyncStatus.FAILED
        row.attempts += 1
        row.last_attempt_at = self.now
        row.last_error = str(error)[:2000]
        row.last_error_name = getattr(error, "name", "") or type(error).__name__
        retryable = retry and (getattr(error, "retryable", False)
                               or row.attempts < settings.ODOO_MAX_ATTEMPTS_ON_REMOTE_ERROR)
        row.next_attempt_at = self.now + dt.timedelta(seconds=backoff_seconds(row.attempts)) if retryable else None
        self.dirty.add((row.kind, row.object_id))

    def touch(self, row: OdooSyncState) -> None:
        self.dirty.add((row.kind, row.object_id))

    def save(self) -> None:
        rows = [self.rows[k] for k in self.dirty]
        self.dirty.clear()
        new = [r for r in rows if r.pk is None]
        old = [r for r in rows if r.pk is not None]
        stamp = timezone.now()  # real time: compared with rated_at / updated_at of our own rows
        for r in rows:
            r.updated_at = stamp
        if new:
            OdooSyncState.objects.bulk_create(new, batch_size=1000)
        if old:
            OdooSyncState.objects.bulk_update(old, [
                "service", "reference", "label", "status", "odoo_model", "odoo_id", "pushed_hash", "attempts",
                "next_attempt_at", "last_attempt_at", "synced_at", "last_error", "last_error_name", "pre_rated",
                "pricing_note", "frozen", "final", "updated_at"], batch_size=1000)


# ------------------------------------------------------------------ the cycle
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

    def push_partner_batch(self, customers: list[Customer]) -> None:
        """Partners only: a shadow subscription's customer needs one before it can go live."""
        book = StateBook(self.now)
        book.load(SyncKind.CUSTOMER, [str(c.pk) for c in customers])
        try:
            self.push_partners(book, customers)
        finally:
            book.save()
            self.flush_write_backs()

    # -- subscriptions
    def push_batch(self, subscriptions: list[Subscription]) -> None:
        book = StateBook(self.now)
        sub_ids = [str(s.pk) for s in subscriptions]
        customers = {s.account_link.customer_id: s.account_link.customer for s in subscriptions}
        plans = {s.plan_id: s.plan for s in subscriptions}
        for s in subscriptions:  # one Python object per plan, so ids learnt by the catalog step are seen by all
            s.plan = plans[s.plan_id]
        usages = list(RatedUsage.objects.filter(subscription_id__in=[s.pk for s in subscriptions])
                      .filter(_usage_needs_look())
                      .select_related("charge__metric", "charge__plan").order_by("window_start", "id"))
        charges: dict[Any, Charge] = {}
        for plan in plans.values():  # every charge of the plan gets its product up front
            for charge in plan.charges.all():
                charges.setdefault(charge.pk, charge)
        for usage in usages:
            usage.charge = charges.setdefault(usage.charge_id, usage.charge)
        book.load(SyncKind.SUBSCRIPTION, sub_ids)
        book.load(SyncKind.CUSTOMER, [str(pk) for pk in customers])
        book.load(SyncKind.PLAN, [str(pk) for pk in plans])
        book.load(SyncKind.CHARGE, [str(pk) for pk in charges])
        book.load(SyncKind.USAGE, [str(u.pk) for u in usages])
        try:
            self.push_partners(book, list(customers.values()))
            self.push_catalog(book, list(plans.values()), list(charges.values()))
            self.push_orders(book, subscriptions, usages)
        finally:
            book.save()
            self.flush_write_backs()

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


def _usage_needs_look() -> Q:
    """Rated usage worth hashing this cycle: open windows, and closed ones not yet pushed in their final state.

    No clock comparison: rating may run with its own notion of "now".
    """
    pushed_final = OdooSyncState.objects.filter(
        kind=SyncKind.USAGE, object_id=Cast(OuterRef("pk"), output_field=CharField()), status=SyncStatus.SYNCED,
        final=True)
    return Q(state=RatedUsageState.OPEN) | ~Exists(pushed_final)


def subscriptions_to_push(*, subscription_ids: list[Any] | None = None):
    """Live subscriptions that are running, or closed but not yet closed in Odoo. Never shadow ones."""
    qs = Subscription.objects.filter(mode=SubscriptionMode.LIVE)
    closed_and_synced = OdooSyncState.objects.filter(
        kind=SyncKind.SUBSCRIPTION, object_id=Cast(OuterRef("pk"), output_field=CharField()), status=SyncStatus.SYNCED,
        final=True)
    qs = qs.filter(Q(status=SubscriptionStatus.ACTIVE)
                   | Q(status__in=CLOSED_SUBSCRIPTION_STATUSES) & ~Exists(closed_and_synced))
    if subscription_ids is not None:
        qs = qs.filter(pk__in=subscription_ids)
    return qs.select_related("plan", "account_link__customer", "service").prefetch_related(
        "plan__charges__metric").order_by("pk")


def customers_awaiting_partner():
    """Customers of open shadow subscriptions without an Odoo partner yet.

    A partner bills nothing, so pushing one for a shadow subscription is safe; go-live
    requires it.
    """
    open_shadow = Subscription.objects.filter(
        account_link__customer=OuterRef("pk"), mode=SubscriptionMode.SHADOW,
    ).exclude(status__in=CLOSED_SUBSCRIPTION_STATUSES)
    return Customer.objects.filter(odoo_partner_id__isnull=True).filter(Exists(open_shadow)).order_by("pk")


def _push_awaiting_partners(pusher: Pusher, report: PushReport, batch_size: int) -> None:
    last_pk = None
    while True:
        page = customers_awaiting_partner()
        if last_pk is not None:
            page = page.filter(pk__gt=last_pk)
        batch = list(page[:batch_size])
        if not batch:
            return
        last_pk = batch[-1].pk
        report.batches += 1
        pusher.push_partner_batch(batch)


def push_cycle(*, client: OdooClient | None = None, now: dt.datetime | None = None,
               subscription_ids: list[Any] | None = None, batch_size: int | None = None,
               settings_: OdooSettings | None = None) -> PushReport:
    """One push pass. Returns what happened; never raises for Odoo trouble (it is recorded)."""
    now = now or timezone.now()
    settings_ = settings_ or OdooSettings.from_django()
    report = PushReport()
    try:
        client = client or open_client(settings_)
    except CycleAborted as exc:
        report.aborted = str(exc)
        return report
    start_trips = client.round_trips
    batch_size = batch_size or settings.ODOO_PUSH_BATCH_SIZE
    pusher = Pusher(client=client, now=now, report=report, settings_=settings_)
    qs = subscriptions_to_push(subscription_ids=subscription_ids)
    with advisory_locks(ADVISORY_NAMESPACE_CYCLE, ["push"] if subscription_ids is None else []) as cycle:
        if subscription_ids is None and "push" not in cycle:
            report.aborted = "another push cycle is running"
            return report
        if subscription_ids is None:
            try:
                _push_awaiting_partners(pusher, report, batch_size)
            except CycleAborted as exc:
                report.aborted = str(exc)
                return report
        last_pk = None
        while True:
            page = qs if last_pk is None else qs.filter(pk__gt=last_pk)
            batch = list(page[:batch_size])
            if not batch:
                break
            last_pk = batch[-1].pk
            report.batches += 1
            report.subscriptions_seen += len(batch)
            with advisory_locks(ADVISORY_NAMESPACE_SUBSCRIPTION, [str(s.pk) for s in batch]) as mine:
                locked = [s for s in batch if str(s.pk) in mine]
                report.skipped_locked += len(batch) - len(locked)
                if not locked:
                    continue
                try:
                    pusher.push_batch(locked)
                except CycleAborted as exc:
                    report.aborted = str(exc)
                    break
    report.round_trips = client.round_trips - start_trips
    if not report.aborted:
        mark_connection(status=ConnectionStatus.OK, settings_=settings_, client=client, now=now)
    logger.info("odoo push: %s", report)
    return report


def resync(states: Iterable[OdooSyncState]) -> int:
    """Admin 'resync': forget what we believe Odoo holds; the next cycle searches and rewrites it."""
    ids = [s.pk for s in states]
    return OdooSyncState.objects.filter(pk__in=ids).update(
        status=SyncStatus.PENDING, pushed_hash="", attempts=0, next_attempt_at=None, last_error="",
        last_error_name="", frozen=False, final=False)
