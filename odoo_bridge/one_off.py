"""One-off Odoo invoices: add-ons (``POST /invoices``) and paid wallet top-ups.

Odoo stays the invoicing engine: a ``OneOffInvoice`` and its lines are stored first (in the
caller's transaction, so the request that asked for it and the row commit together), then a
step of the push cycle (``push_one_off_invoices``, its own pending-rows query) realises each
in Odoo, exactly once:

1. the customer's commercial partner and the service account's invoice contact (``Pusher``'s
   steps: searched by ``ref`` before any create);
2. the products: one per add-on (``default_code`` ``fb-addon-<uuid>``) and the shared
   "Prepaid credits" product (``fb-prepaid-credits``), searched by ``default_code``;
3. the ``account.move`` (``out_invoice``, ``partner_id`` = the account's invoice contact, ``ref`` =
   ``fb-oneoff-<uuid>``) searched by ``ref`` before it is created with its lines inline (one
   transaction in Odoo); Odoo computes taxes from the products and the fiscal position;
4. ``action_post`` of the drafts (a lost answer leaves a draft or a posted move, found by the next
   cycle: never a second invoice).

The pull mirrors the move into ``Invoice`` (``invoice_type`` ``one_off`` / ``credit``) and sends
``invoice.one_off_created`` / ``invoice.paid_credit_added``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Sequence

from django.db import IntegrityError, transaction
from django.db.models import CharField, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Cast

from billing_kit.errors import ErrorCode, NotFound, ValidationFailed
from billing_kit.formatting import from_cents
from identity.models import AccountLink, Service
from metering.models import AMOUNT, AddOn
from wallets import selectors as wallet_selectors
from wallets import services as wallet_services

from . import mapping
from .client import OdooRemoteError
from .models import OdooSyncState, OneOffInvoice, OneOffInvoiceLine, OneOffInvoiceType, SyncKind, SyncStatus
from .pricing import quantum, to_odoo_number
from .pusher import Pusher
from .state_book import StateBook

CREDITS_PRODUCT_CODE = "fb-prepaid-credits"
CREDITS_PRODUCT_KEY = "prepaid-credits"
AMOUNT_LIMIT = Decimal(10) ** (AMOUNT["max_digits"] - AMOUNT["decimal_places"])


@dataclass(frozen=True)
class FeeSpec:
    """One fee of a one-off invoice: an add-on (or none: a wallet top-up), units and unit price."""

    name: str
    units: Decimal
    unit_amount: Decimal
    add_on: AddOn | None = None
    description: str = ""

    @property
    def amount(self) -> Decimal:
        return self.units * self.unit_amount


def add_on_product_code(add_on: AddOn) -> str:
    return f"fb-addon-{add_on.pk}"


def create_one_off_invoice(*, service: Service, link: AccountLink, currency: str, invoice_type: str,
                           fees: Sequence[FeeSpec], wallet_transaction_id: Any = None) -> OneOffInvoice:
    """Persist a one-off invoice and its lines (pushed to Odoo by the next push cycle)."""
    with transaction.atomic():
        one_off = OneOffInvoice.objects.create(service=service, account_link=link, currency=currency,
                                               invoice_type=invoice_type,
                                               wallet_transaction_id=wallet_transaction_id)
        OneOffInvoiceLine.objects.bulk_create([
            OneOffInvoiceLine(one_off=one_off, position=n, add_on=fee.add_on, name=fee.name[:512],
                              description=fee.description, units=fee.units, unit_amount=fee.unit_amount,
                              amount=fee.amount)
            for n, fee in enumerate(fees)])
    return one_off


def invoice_paid_top_ups(*, limit: int) -> int:
    """Paid wallet top-ups waiting for their invoice get one (``invoice_type`` credit): credits x rate_amount
    on the "Prepaid credits" product. Once per transaction (``wallet_transaction_id`` is unique)."""
    made = 0
    for tx in wallet_selectors.purchases_awaiting_invoice()[:limit]:
        wallet = tx.wallet
        name = f"Prepaid credits — {wallet.name}" if wallet.name else "Prepaid credits"
        try:
            with transaction.atomic():
                one_off = create_one_off_invoice(
                    service=wallet.service, link=wallet.account_link, currency=wallet.currency,
                    invoice_type=OneOffInvoiceType.CREDIT, wallet_transaction_id=tx.pk,
                    fees=[FeeSpec(name=name, units=Decimal(tx.credit_amount), unit_amount=Decimal(wallet.rate_amount))])
                wallet_services.attach_invoice(transaction_id=tx.pk, invoice_id=one_off.pk)
        except IntegrityError:
            continue  # another cycle made it
        made += 1
    return made


def pending_one_off_invoices() -> QuerySet[OneOffInvoice]:
    """One-off invoices not yet posted in Odoo (their state row is not synced final)."""
    done = OdooSyncState.objects.filter(kind=SyncKind.ONE_OFF, object_id=Cast(OuterRef("pk"), output_field=CharField()),
                                        status=SyncStatus.SYNCED, final=True)
    return (OneOffInvoice.objects.filter(~Exists(done))
            .select_related("service", "account_link__customer").prefetch_related("lines__add_on")
            .order_by("created_at", "id"))


@dataclass(frozen=True)
class ProductItem:
    """A one-off product to find or create by ``default_code``."""

    state: OdooSyncState
    vals: dict[str, Any]
    add_on: AddOn | None

    @property
    def code(self) -> str:
        return str(self.vals["default_code"])


@dataclass(frozen=True)
class MoveItem:
    """An ``account.move`` to create, with its lines inline."""

    one_off: OneOffInvoice
    state: OdooSyncState
    vals: dict[str, Any]


def product_vals(*, name: str, code: str) -> dict[str, Any]:
    return {"name": name, "default_code": code, "type": "service", "recurring_invoice": False,
            "invoice_policy": "order", "list_price": 0.0}


def credits_product_vals() -> dict[str, Any]:
    """The "Prepaid credits" product: explicitly untaxed (Odoo would give a new product the company's
    default sale tax): buying credits is not a taxed sale here, and the negative consumption line must
    reduce the invoice by exactly the credits' amount."""
    return {**product_vals(name="Prepaid credits", code=CREDITS_PRODUCT_CODE), "taxes_id": [[6, 0, []]]}


def push_one_off_invoices(pusher: Pusher, *, batch_size: int) -> None:
    """The one-off step of a push cycle, batch after batch (``CycleAborted`` ends it, as the other steps)."""
    invoice_paid_top_ups(limit=10 * batch_size)
    last: OneOffInvoice | None = None
    while True:
        page = pending_one_off_invoices()
        if last is not None:
            page = page.filter(Q(created_at__gt=last.created_at) | Q(created_at=last.created_at, id__gt=last.id))
        batch = list(page[:batch_size])
        if not batch:
            return
        last = batch[-1]
        OneOffPush(pusher).run(batch)


class OneOffPush:
    """Partners, products, moves and posting of one batch of one-off invoices."""

    def __init__(self, pusher: Pusher) -> None:
        self.pusher = pusher
        self.client = pusher.client
        self.book = StateBook(pusher.now)

    def run(self, batch: list[OneOffInvoice]) -> None:
        book = self.book
        links = {o.account_link_id: o.account_link for o in batch}
        customers = {link.customer_id: link.customer for link in links.values()}
        add_ons = {ln.add_on_id: ln.add_on for o in batch for ln in o.lines.all() if ln.add_on is not None}
        book.load(SyncKind.ONE_OFF, [str(o.pk) for o in batch])
        book.load(SyncKind.CUSTOMER, [str(pk) for pk in customers])
        book.load(SyncKind.ACCOUNT, [str(pk) for pk in links])
        book.load(SyncKind.ADD_ON, [str(pk) for pk in add_ons])
        book.load(SyncKind.CREDITS_PRODUCT, [CREDITS_PRODUCT_KEY])
        try:
            self.pusher.push_partners(book, list(customers.values()))
            self.pusher.push_contacts(book, list(links.values()))
            products = self.push_products(list(add_ons.values()), any(o.invoice_type == "credit" for o in batch))
            self.push_moves(batch, products)
        finally:
            book.save()
            self.pusher.flush_write_backs()

    # products
    def push_products(self, add_ons: list[AddOn], credits: bool) -> dict[Any, int]:
        """Odoo product ids by add-on pk (and ``CREDITS_PRODUCT_KEY``), searched by ``default_code`` first."""
        book = self.book
        ids: dict[Any, int] = {}
        items: list[ProductItem] = []
        for add_on in add_ons:
            state = book.get(SyncKind.ADD_ON, add_on.pk, service_id=add_on.service_id,
                             reference=add_on_product_code(add_on), label=str(add_on)[:255],
                             odoo_model="product.product")
            if state.status == SyncStatus.SYNCED and state.odoo_id:
                ids[add_on.pk] = state.odoo_id
            elif book.due(state):
                items.append(ProductItem(state, product_vals(name=add_on.invoice_display_name or add_on.name,
                                                             code=add_on_product_code(add_on)), add_on))
        if credits:
            state = book.get(SyncKind.CREDITS_PRODUCT, CREDITS_PRODUCT_KEY, reference=CREDITS_PRODUCT_CODE,
                             label="Prepaid credits", odoo_model="product.product")
            if state.status == SyncStatus.SYNCED and state.odoo_id:
                ids[CREDITS_PRODUCT_KEY] = state.odoo_id
            elif book.due(state):
                items.append(ProductItem(state, credits_product_vals(), None))
        if not items:
            return ids
        found = self.pusher.rpc(book, [i.state for i in items], self.client.search_read, "product.product",
                                [["default_code", "in", [i.code for i in items]]], ["default_code"], order="id")
        by_code: dict[str, int] = {}
        for rec in found:
            by_code.setdefault(rec["default_code"], rec["id"])
        for item, product_id in self.pusher.create_many(book, "product.product",
                                                        [i for i in items if i.code not in by_code]):
            if product_id is not None:
                by_code[item.code] = product_id
                self.pusher.report.products_created += 1
        for item in items:
            product_id = by_code.get(item.code)
            if product_id is None:
                continue
            book.synced(item.state, odoo_id=product_id, pushed_hash=mapping.payload_hash(item.vals))
            if item.add_on is not None:
                ids[item.add_on.pk] = product_id
                if item.add_on.odoo_product_id != product_id:
                    item.add_on.odoo_product_id = product_id
                    self.pusher.write_back(item.add_on, "odoo_product_id")
            else:
                ids[CREDITS_PRODUCT_KEY] = product_id
        return ids

    # moves
    def currency_ids(self, names: set[str], rows: list[OdooSyncState]) -> dict[str, int]:
        found = self.pusher.rpc(self.book, rows, self.client.search_read, "res.currency",
                                [["name", "in", sorted(names)]], ["name"], order="id")
        return {r["name"]: r["id"] for r in found}

    def move_vals(self, one_off: OneOffInvoice, contact_id: int, currency_id: int,
                  products: dict[Any, int]) -> dict[str, Any] | None:
        digits = self.client.fields.price_digits
        lines = []
        for line in one_off.lines.all():
            key = line.add_on_id if line.add_on_id is not None else CREDITS_PRODUCT_KEY
            product_id = products.get(key)
            if product_id is None:
                return None  # its product failed this cycle
            # price_unit at Odoo's price digits when it holds the unit price exactly, else quantity 1 at the amount
            price = Decimal(line.unit_amount)
            quantity = Decimal(line.units)
            if price != price.quantize(quantum(digits)) or (price * quantity) != line.amount:
                price, quantity = Decimal(line.amount).quantize(quantum(digits)), Decimal(1)
            name = line.name if not line.description else f"{line.name} — {line.description}"
            lines.append([0, 0, {"product_id": product_id, "name": name[:512],
                                 "quantity": to_odoo_number(quantity), "price_unit": to_odoo_number(price)}])
        return {"move_type": "out_invoice", "partner_id": contact_id, "currency_id": currency_id,
                "ref": one_off.reference, "invoice_origin": f"Fusion Billing {one_off.invoice_type}",
                "invoice_line_ids": lines}

    def push_moves(self, batch: list[OneOffInvoice], products: dict[Any, int]) -> None:
        book, rpc, client = self.book, self.pusher.rpc, self.client
        states = {o.pk: book.get(SyncKind.ONE_OFF, o.pk, service_id=o.service_id, reference=o.reference,
                                 label=str(o)[:255], odoo_model="account.move") for o in batch}
        todo = [o for o in batch if book.due(states[o.pk])]
        if not todo:
            return
        rows = [states[o.pk] for o in todo]
        found = rpc(book, rows, client.search_read, "account.move",
                    [["ref", "in", [o.reference for o in todo]], ["move_type", "=", "out_invoice"]],
                    ["ref", "state"], order="id")
        by_ref: dict[str, dict[str, Any]] = {}
        for rec in found:
            by_ref.setdefault(rec["ref"], rec)
        missing = [o for o in todo if o.reference not in by_ref]
        currencies = self.currency_ids({o.currency for o in missing}, rows) if missing else {}
        items = []
        for one_off in missing:
            contact_id = self.pusher.contact_id(book, one_off.account_link)
            currency_id = currencies.get(one_off.currency)
            vals = self.move_vals(one_off, contact_id, currency_id, products) if contact_id and currency_id else None
            if vals is None:
                states[one_off.pk].last_error = ("waiting for its partner or products" if currency_id or not missing
                                                 else f"currency {one_off.currency} not active in Odoo")
                book.touch(states[one_off.pk])
                continue
            items.append(MoveItem(one_off, states[one_off.pk], vals))
        for item, move_id in self.pusher.create_many(book, "account.move", items):
            if move_id is not None:
                by_ref[item.one_off.reference] = {"id": move_id, "state": "draft"}
        drafts = [by_ref[o.reference]["id"] for o in todo
                  if o.reference in by_ref and by_ref[o.reference]["state"] == "draft"]
        if drafts:
            try:
                rpc(book, rows, client.call, "account.move", "action_post", [drafts])
            except OdooRemoteError as exc:  # the drafts are found and posted by the next cycle
                for one_off in todo:
                    if one_off.reference in by_ref:
                        book.failed(states[one_off.pk], exc)
                return
        for one_off in todo:
            record = by_ref.get(one_off.reference)
            if record is None:
                continue
            book.synced(states[one_off.pk], odoo_id=record["id"], pushed_hash="posted", final=True)
            if one_off.odoo_move_id != record["id"]:
                one_off.odoo_move_id = record["id"]
                self.pusher.write_back(one_off, "odoo_move_id")


def create_add_on_invoice(*, service: Service, link: AccountLink, currency: str | None,
                          fees: list[dict[str, Any]]) -> OneOffInvoice:
    """Lago's ``POST /invoices`` (``Invoices::CreateOneOffService``): one fee per add-on, its price the
    add-on's unless ``unit_amount_cents`` is given; the currency is the request's, else the account's,
    else the first add-on's, and must be the account's once it has one."""
    codes = [fee["add_on_code"] for fee in fees]
    add_ons = {a.code: a for a in AddOn.objects.filter(service=service, deleted_at__isnull=True, code__in=codes)}
    missing = [code for code in codes if code not in add_ons]
    if missing:
        raise NotFound(ErrorCode.ADD_ON_NOT_FOUND)
    currency = (currency or link.currency or add_ons[codes[0]].amount_currency).upper()
    if link.currency and link.currency.upper() != currency:
        raise ValidationFailed({"currency": [ErrorCode.CURRENCIES_DOES_NOT_MATCH]})
    specs = []
    for fee in fees:
        add_on = add_ons[fee["add_on_code"]]
        cents = fee.get("unit_amount_cents")
        if cents is None and add_on.amount_currency.upper() != currency:
            raise ValidationFailed({"currency": [ErrorCode.CURRENCIES_DOES_NOT_MATCH]})
        unit_amount = from_cents(cents, currency) if cents is not None else Decimal(add_on.amount)
        units = fee.get("units")
        specs.append(FeeSpec(name=fee.get("invoice_display_name") or add_on.invoice_display_name or add_on.name,
                             units=Decimal(1) if units is None else Decimal(units), unit_amount=unit_amount,
                             add_on=add_on, description=fee.get("description") or ""))
    if any(spec.amount >= AMOUNT_LIMIT for spec in specs):
        raise ValidationFailed({"fees": [ErrorCode.VALUE_IS_OUT_OF_RANGE]})
    with transaction.atomic():
        if not link.currency:
            AccountLink.objects.filter(pk=link.pk).update(currency=currency)
            link.currency = currency
        return create_one_off_invoice(service=service, link=link, currency=currency,
                                      invoice_type=OneOffInvoiceType.ONE_OFF, fees=specs)
