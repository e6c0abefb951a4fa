"""Read-only views of the fake Odoo's books, for money assertions in tests (Decimal, never float).

An invoice line belongs to an order when its `subscription_id` is the order or its `sale_line_ids`
hold one of the order's lines. Signs: an `out_invoice` counts +, an `out_refund` counts -.
Only POSTED moves count unless `states` says otherwise (a draft is not money yet).

- `invoiced_quantity(store, order_id, product_id)`: net quantity of that product billed to the order.
- `invoiced_totals(store, order_id)`: `Totals(untaxed, tax, total, by_product)`, net of refunds.
- `billed_periods(store, order_id, product_id)`: {(deferred_start, deferred_end): net quantity}; a
  recurring fee or postpaid line billed twice for one period shows up as a quantity above the line's.
- `invoices(store, order_id=None)`: `InvoiceView`s (with their `LineView`s and deferred periods), the
  list a property test walks to compare "usage billed over all invoices minus refunds" with its own
  ledger.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable

from .store import Store

SIGNS = {"out_invoice": 1, "out_refund": -1}


def _dec(value: object) -> Decimal:
    return Decimal(str(value or 0))


def _date(value: object) -> dt.date | None:
    return dt.date.fromisoformat(str(value)) if value else None


@dataclass(frozen=True)
class LineView:
    id: int
    product_id: int | None
    name: str
    quantity: Decimal
    price_unit: Decimal
    discount: Decimal
    subtotal: Decimal
    subscription_id: int | None
    sale_line_ids: tuple[int, ...]
    deferred_start_date: dt.date | None
    deferred_end_date: dt.date | None


@dataclass(frozen=True)
class InvoiceView:
    id: int
    name: str
    move_type: str
    state: str
    payment_state: str
    invoice_date: dt.date | None
    amount_untaxed: Decimal
    amount_tax: Decimal
    amount_total: Decimal
    reversed_entry_id: int | None
    lines: tuple[LineView, ...]

    @property
    def sign(self) -> int:
        return SIGNS.get(self.move_type, 0)


@dataclass(frozen=True)
class Totals:
    untaxed: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    by_product: dict[int | None, Decimal] = field(default_factory=dict)


def _belongs(store: Store, line: dict, order_id: int) -> bool:
    if line.get("subscription_id") == order_id:
        return True
    order_lines = set(store.records["sale.order"].get(order_id, {}).get("_o2m_order_line", []))
    return bool(order_lines & set(line.get("sale_line_ids") or []))


def _line_view(store: Store, line: dict) -> LineView:
    return LineView(id=line["id"], product_id=line.get("product_id") or None, name=line.get("name") or "",
                    quantity=_dec(line.get("quantity")), price_unit=_dec(line.get("price_unit")),
                    discount=_dec(line.get("discount")), subtotal=_dec(store.line_subtotal(line)),
                    subscription_id=line.get("subscription_id") or None,
                    sale_line_ids=tuple(line.get("sale_line_ids") or ()),
                    deferred_start_date=_date(line.get("deferred_start_date")),
                    deferred_end_date=_date(line.get("deferred_end_date")))


def invoices(store: Store, order_id: int | None = None, *, states: Iterable[str] = ("posted",)) -> list[InvoiceView]:
    """Customer invoices and credit notes in id order; with `order_id`, only those with a line of the
    order, and only those lines (a consolidated invoice also bills other orders)."""
    wanted = set(states)
    out = []
    with store.lock:
        for move in sorted(store.records["account.move"].values(), key=lambda m: m["id"]):
            if move["move_type"] not in SIGNS or move["state"] not in wanted:
                continue
            lines = [store.records["account.move.line"][i] for i in move.get("_o2m_invoice_line_ids", [])]
            lines = [ln for ln in lines if ln.get("display_type", "product") == "product"]
            if order_id is not None:
                lines = [ln for ln in lines if _belongs(store, ln, order_id)]
                if not lines:
                    continue
            untaxed, tax, total = store.move_amounts(move["id"])
            out.append(InvoiceView(
                id=move["id"], name=move.get("name") or "/", move_type=move["move_type"], state=move["state"],
                payment_state=move.get("payment_state") or "not_paid", invoice_date=_date(move.get("invoice_date")),
                amount_untaxed=_dec(untaxed), amount_tax=_dec(tax), amount_total=_dec(total),
                reversed_entry_id=move.get("reversed_entry_id") or None,
                lines=tuple(_line_view(store, ln) for ln in lines)))
    return out


def invoiced_quantity(store: Store, order_id: int, product_id: int, *, states: Iterable[str] = ("posted",)) -> Decimal:
    return sum((inv.sign * ln.quantity for inv in invoices(store, order_id, states=states) for ln in inv.lines
                if ln.product_id == product_id), Decimal(0))


def billed_periods(store: Store, order_id: int, product_id: int, *, states: Iterable[str] = ("posted",)
                   ) -> dict[tuple[dt.date | None, dt.date | None], Decimal]:
    periods: dict[tuple[dt.date | None, dt.date | None], Decimal] = {}
    for inv in invoices(store, order_id, states=states):
        for ln in inv.lines:
            if ln.product_id == product_id:
                key = (ln.deferred_start_date, ln.deferred_end_date)
                periods[key] = periods.get(key, Decimal(0)) + inv.sign * ln.quantity
    return periods


def invoiced_totals(store: Store, order_id: int, *, states: Iterable[str] = ("posted",)) -> Totals:
    """Net untaxed amount (sum of line subtotals), tax and total of the order's lines over its invoices
    minus its credit notes, and the net untaxed amount per product."""
    untaxed = tax = Decimal(0)
    by_product: dict[int | None, Decimal] = {}
    with store.lock:
        for inv in invoices(store, order_id, states=states):
            for ln in inv.lines:
                raw = store.records["account.move.line"][ln.id]
                untaxed += inv.sign * ln.subtotal
                tax += inv.sign * store.line_tax(raw, "tax_ids")
                by_product[ln.product_id] = by_product.get(ln.product_id, Decimal(0)) + inv.sign * ln.subtotal
    return Totals(untaxed=untaxed, tax=tax, total=untaxed + tax, by_product=by_product)
