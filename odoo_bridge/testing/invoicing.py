"""How the fake Odoo invoices sale orders and subscriptions (reference/odoo.md §3.4-§3.7).

Three entry points produce invoices, as in Odoo 17-19 Enterprise:

- `run_invoicing_cron` plays `sale_subscription`'s daily `_cron_recurring_create_invoice`
  (§3.6): every due subscription gets one invoice for one period, which is posted.
- `wizard_create_invoices` plays the public wizard `sale.advance.payment.inv` with
  `advance_payment_method='delivered'` (§3.7 C): standard `sale._create_invoices(final=True)`,
  a DRAFT invoice per customer (or per order without consolidated billing).
- `ir_cron_method_direct_trigger` runs a seeded `ir.cron` record over RPC (§3.7 B).

What is invoiced (`invoiceable_lines`):

- non-recurring lines (one-off, pre-rated usage): standard `sale`, `qty_to_invoice != 0`, i.e.
  (`product_uom_qty` for invoice_policy 'order' | `qty_delivered` for 'delivery') minus every
  quantity ever invoiced (refunds subtract, drafts count);
- prepaid recurring lines (`invoice_policy='order'`): `product_uom_qty` for the COMING period
  [next_invoice_date, next_invoice_date + period - 1], deferred dates set to it;
- postpaid recurring lines (`invoice_policy='delivery'`, EE19 `_is_postpaid_line`): `qty_delivered`
  for the ELAPSED period [next_invoice_date - period, next_invoice_date - 1] (§3.4), minus what an
  earlier invoice of the same period already billed. `qty_delivered` is never reset (§3.4:
  `_reset_subscription_quantity_post_invoice` is a no-op), so the next period bills the value that
  is still there: a missed write re-bills the previous quantity (§3.8).

Which Odoo semantics for postpaid lines, and why: EE19's (§3.4: `_is_postpaid_line()` is
`invoice_policy == 'delivery'`, `_prepare_invoice_line` invoices `quantity = qty_delivered` for the
elapsed period), for 17 and 18 as well: EE17 makes the same lines due in `_get_invoiceable_lines`
(§3.4, "a recurring line with invoice_policy == 'delivery' and non-zero qty_delivered is due"), and
the reference records no different quantity or period for 17. The cumulative reading
(`qty_delivered` minus everything ever invoiced, so that a run bills only growth) is community
`sale` and is what the fake does for NON-recurring delivery lines; for recurring lines it would
contradict §3.4/§3.8 (never reset, "a missed write re-bills the previous quantity"). The fake
reconciles both: a recurring line's invoiced quantity is scoped to one period (by the invoice
line's `deferred_start_date`), so a second invoicing of the SAME period (wizard twice, wizard then
cron) bills only the growth, while the NEXT period bills `qty_delivered` again.

Other choices where EE is not public (*inferred*):

- A postpaid line is not billed while no period has elapsed under the contract
  (`next_invoice_date <= start_date`, i.e. the first invoice of a subscription).
- When `end_date` is reached the run bills the elapsed period up to `end_date` for postpaid lines,
  no prepaid period starting on/after `end_date` (a prepaid period already billed is not prorated
  or credited), then closes the order (`6_churn`, reason `close_reason_end_of_contract`).
- Recurring lines are only invoiced while the subscription is `3_progress`; non-recurring lines of a
  churned order are still invoiceable through the wizard (standard `sale`), never by the cron.
- The wizard does not close ended contracts first (EE19's override does, §3.7).
- One period per order per cron pass: a late order catches up over several passes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .store import Store, UserError, _round


def _ids(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value or []]


def _date(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


@dataclass
class Due:
    """One order line to invoice: its quantity and, for a recurring line, the period it pays for."""

    line: dict
    quantity: Decimal
    period: tuple[dt.date, dt.date] | None
    recurring: bool

    def amount(self, store: Store) -> Decimal:
        price = Decimal(str(self.line.get("price_unit") or 0)) * self.quantity
        price *= 1 - Decimal(str(self.line.get("discount") or 0)) / 100
        return Decimal(str(store.currency_round(price, store.line_currency(self.line))))


# ------------------------------------------------------------------ what is due
def invoiceable_lines(store: Store, order: dict, *, today: dt.date, automatic: bool) -> list[Due]:
    """EE `_get_invoiceable_lines` (+ sale's): `automatic` is the cron's `recurring_automatic` context,
    under which recurring lines are due only when `next_invoice_date <= today` and `start_date <= today`
    (§3.6 step 2). The wizard (automatic=False) bills the current period even before it is due, as
    Odoo does (EE19 only warns for postpaid lines: `postpaid_warning_message`)."""
    if order.get("state") != "sale":
        return []
    running = order.get("subscription_state") == "3_progress"
    nid, start, end = _date(order.get("next_invoice_date")), _date(order.get("start_date")), _date(
        order.get("end_date"))
    ended = end is not None and end <= today
    recurring_due = running and nid is not None and (
        not automatic or (nid <= today and (start is None or start <= today)))
    dues: list[Due] = []
    for line_id in order.get("_o2m_order_line", []):
        line = store.records["sale.order.line"][line_id]
        if line.get("display_type"):
            continue
        period: tuple[dt.date, dt.date] | None = None
        recurring = store.is_recurring_line(line)
        if recurring:
            if not running or nid is None:
                continue  # draft, paused or closed contracts bill no recurring line
            if store.is_postpaid_line(line):
                if start is not None and nid <= start:
                    continue  # no period has elapsed under the contract yet
                if automatic and not (nid <= today or ended):
                    continue
                current = store.current_period(order)
                assert current is not None
                period = (current[0], min(current[1], end)) if end and current[0] <= end < current[1] else current
                quantity = Decimal(str(line.get("qty_delivered") or 0)) - store.sale_line_invoiced(
                    line_id, period=current)
            else:
                if not recurring_due or (end is not None and nid >= end):
                    continue  # not due yet, or the contract ends before that period starts
                period = store.coming_period(order)
                quantity = Decimal(str(line.get("product_uom_qty") or 0)) - store.sale_line_invoiced(
                    line_id, period=period)
        else:
            quantity = Decimal(str(store.line_qty_to_invoice(line)))
        quantity = Decimal(str(_round(quantity, store.quantity_digits)))
        if quantity == 0:
            continue
        dues.append(Due(line=line, quantity=quantity, period=period, recurring=recurring))
    return dues


def _line_vals(store: Store, order: dict, due: Due, *, sign: int = 1) -> dict:
    line = due.line
    vals = {"product_id": line.get("product_id") or False, "name": line["name"],
            "quantity": float(sign * due.quantity),  # ok-float: Odoo's Float field
            "price_unit": line["price_unit"], "discount": line.get("discount") or 0.0,
            "tax_ids": [[6, 0, list(line.get(store.line_tax_field) or [])]],
            "sale_line_ids": [[6, 0, [line["id"]]]]}
    if order.get("plan_id") and order.get("subscription_state") != "7_upsell":
        vals["subscription_id"] = order["id"]
    if due.period is not None:
        vals.update(deferred_start_date=due.period[0].isoformat(), deferred_end_date=due.period[1].isoformat())
    return vals


def _create_move(store: Store, orders: list[dict], dues: list[tuple[dict, Due]], *,
                 invoice_date: dt.date | None = None) -> int:
    """sale `_prepare_invoice` + lines; a negative total becomes a credit note (final=True)."""
    total = sum((due.amount(store) for _, due in dues), Decimal(0))
    refund = total < 0
    first = orders[0]
    vals: dict = {"move_type": "out_refund" if refund else "out_invoice",
                  "partner_id": first.get("partner_invoice_id") or first["partner_id"],
                  "fiscal_position_id": first.get("fiscal_position_id") or False,
                  "currency_id": store.order_currency(first),  # sale `_prepare_invoice`
                  "invoice_origin": ", ".join(o["name"] for o in orders),
                  "ref": ", ".join(o["client_order_ref"] for o in orders if o.get("client_order_ref")) or False,
                  "invoice_line_ids": [[0, 0, _line_vals(store, order, due, sign=-1 if refund else 1)]
                                       for order, due in dues]}
    if invoice_date is not None:
        vals.update(invoice_date=invoice_date.isoformat(), invoice_date_due=invoice_date.isoformat())
    return store.create("account.move", [vals])[0]


# ------------------------------------------------------------------ posting
def account_move_action_post(store: Store, model: str, ids: list[int]) -> bool:
    for move in store.browse(model, _ids(ids)):
        if move["state"] != "draft":
            raise UserError("The entry is not in draft.")
        if move["move_type"] in ("out_invoice", "out_refund") and not move.get("partner_id"):
            raise UserError("The field 'Customer' is required, please complete it to validate the Customer Invoice.")
        prefix = "RINV" if move["move_type"] == "out_refund" else "INV"
        year = store.today().year
        vals = {"state": "posted", "name": store.next_sequence(f"{prefix}/{year}", f"{prefix}/{year}/{{:05d}}")}
        if not move.get("invoice_date"):
            vals["invoice_date"] = store.today().isoformat()
        if not move.get("invoice_date_due"):
            vals["invoice_date_due"] = vals.get("invoice_date") or move["invoice_date"]
        store.write(model, [move["id"]], vals)
        if move["move_type"] == "out_invoice":
            _advance_subscriptions_after_post(store, move)
    return True


def _advance_subscriptions_after_post(store: Store, move: dict) -> None:
    """EE18 `account.move._post`: next_invoice_date = max(deferred_end_date) + 1 day (§3.6 step 6), for
    manual invoices too. The fake never moves it backwards: an invoice of postpaid lines only ends the
    day before next_invoice_date, which leaves it where it is (the cron then moves it one period)."""
    ends: dict[int, str] = {}
    for line_id in move.get("_o2m_invoice_line_ids", []):
        line = store.records["account.move.line"][line_id]
        if line.get("subscription_id") and line.get("deferred_end_date"):
            sub = line["subscription_id"]
            ends[sub] = max(ends.get(sub, ""), line["deferred_end_date"])
    for sub, end in ends.items():
        following = (dt.date.fromisoformat(end) + dt.timedelta(days=1)).isoformat()
        current = store.records["sale.order"][sub].get("next_invoice_date")
        if not current or following > current:
            store.write("sale.order", [sub], {"next_invoice_date": following})


# ------------------------------------------------------------------ the cron
def _has_draft_invoice(store: Store, order_id: int) -> list[int]:
    return [mid for mid in store.order_invoice_ids(order_id)
            if store.records["account.move"][mid]["state"] == "draft"
            and store.records["account.move"][mid]["move_type"] == "out_invoice"]


def _close(store: Store, order: dict, xml_reason: str) -> None:
    vals: dict = {"subscription_state": "6_churn"}
    if not order.get("close_reason_id"):
        vals["close_reason_id"] = store.xmlid_id("sale_subscription", xml_reason)
    store.write("sale.order", [order["id"]], vals)


def recurring_invoice_domain_matches(order: dict, today: dt.date) -> bool:
    """`_recurring_invoice_domain()` (§3.6 step 1)."""
    day = today.isoformat()
    return (bool(order.get("plan_id")) and order.get("subscription_state") == "3_progress"
            and not order.get("is_batch") and not order.get("is_invoice_cron")
            and not order.get("payment_exception") and not order.get("pending_transaction")
            and ((bool(order.get("next_invoice_date")) and order["next_invoice_date"] <= day)
                 or (bool(order.get("end_date")) and order["end_date"] <= day)))


def run_invoicing_cron(store: Store, *, today: dt.date) -> list[int]:
    """Play `_cron_recurring_create_invoice` once (§3.6): returns the ids of the invoices it posted.

    Per due subscription (id order; one period per order per run, like one cron pass):
    1. a draft out_invoice already linked to it: skipped if it has no payment token, else the draft
       is cancelled;
    2. its invoiceable lines (`invoiceable_lines`, automatic);
    3. "free" check: an untaxed total <= 0 creates no invoice and only moves next_invoice_date one
       period (a negative recurring part mixed with one-off lines sets `payment_exception` instead);
    4. otherwise one invoice dated `today`, posted (posting moves next_invoice_date, §3.6 step 6);
       if the recurring period was due and posting did not move the date (postpaid-only or one-off
       lines only), it is moved one period here (`_update_next_invoice_date`);
    5. a contract whose `end_date <= today` is closed (`6_churn`) after its last invoice.
    Token charging (`_do_payment`) is not played: an invoice of an order with a token is posted too.
    """
    created: list[int] = []
    with store.lock:
        due_orders = [o for o in store.records["sale.order"].values() if recurring_invoice_domain_matches(o, today)]
        for order in sorted(due_orders, key=lambda o: o["id"]):
            drafts = _has_draft_invoice(store, order["id"])
            if drafts:
                if not order.get("payment_token_id"):
                    continue
                store.write("account.move", drafts, {"state": "cancel"})
            nid = order["next_invoice_date"]
            period = store.order_period(order)
            recurring_due = nid <= today.isoformat() and (not order.get("start_date")
                                                          or order["start_date"] <= today.isoformat())
            ended = bool(order.get("end_date")) and order["end_date"] <= today.isoformat()
            dues = invoiceable_lines(store, order, today=today, automatic=True)
            total = sum((d.amount(store) for d in dues), Decimal(0))
            recurring_part = sum((d.amount(store) for d in dues if d.recurring), Decimal(0))
            if dues and total > 0:
                move_id = _create_move(store, [order], [(order, d) for d in dues], invoice_date=today)
                account_move_action_post(store, "account.move", [move_id])
                created.append(move_id)
            elif recurring_part < 0 and any(not d.recurring for d in dues):
                store.write("sale.order", [order["id"]], {"payment_exception": True})
                continue
            if recurring_due and period and not ended:
                following = store.shift(dt.date.fromisoformat(nid), period, 1).isoformat()
                if store.records["sale.order"][order["id"]]["next_invoice_date"] < following:
                    store.write("sale.order", [order["id"]], {"next_invoice_date": following})
            if ended:
                _close(store, store.records["sale.order"][order["id"]], "close_reason_end_of_contract")
    return created


def run_expiration_cron(store: Store, *, today: dt.date) -> list[int]:
    """Play the weekly `_cron_subscription_expiration` (§3.6 step 7): returns the ids it closed.

    Closes running or paused contracts whose end_date is past (`end_date < today`; the exact
    comparison is not public), whose posted invoice is still unpaid `auto_close_limit` days after its
    due date, or whose next_invoice_date is more than `auto_close_limit` days late. It does NOT
    invoice anything: a contract it closes before the invoicing cron ran keeps its last elapsed
    period (postpaid usage) and pending one-off lines uninvoiced by the cron.
    """
    closed: list[int] = []
    with store.lock:
        for order in sorted(store.records["sale.order"].values(), key=lambda o: o["id"]):
            if not order.get("plan_id") or order.get("subscription_state") not in ("3_progress", "4_paused"):
                continue
            plan = store.records["sale.subscription.plan"][order["plan_id"]]
            limit = dt.timedelta(days=plan.get("auto_close_limit") or 0)
            reason = None
            if order.get("end_date") and dt.date.fromisoformat(order["end_date"]) < today:
                reason = "close_reason_end_of_contract"
            elif any(store.records["account.move"][m]["state"] == "posted"
                     and store.records["account.move"][m]["move_type"] == "out_invoice"
                     and store.records["account.move"][m].get("payment_state") not in ("paid", "in_payment",
                                                                                        "reversed")
                     and store.records["account.move"][m].get("invoice_date_due")
                     and dt.date.fromisoformat(store.records["account.move"][m]["invoice_date_due"]) + limit < today
                     for m in store.order_invoice_ids(order["id"])):
                reason = "close_reason_unpaid_subscription"
            elif order.get("next_invoice_date") and dt.date.fromisoformat(order["next_invoice_date"]) + limit < today:
                reason = "close_reason_auto_close_limit_reached"
            if reason:
                _close(store, order, reason)
                closed.append(order["id"])
    return closed


def ir_cron_method_direct_trigger(store: Store, model: str, ids: list[int]) -> bool:
    """`ir.cron.method_direct_trigger` (§3.7 B): runs the job now, with the server's date."""
    for cron in store.browse(model, _ids(ids)):
        code = cron.get("code") or ""
        if "_cron_recurring_create_invoice" in code:
            run_invoicing_cron(store, today=store.today())
        elif "_cron_subscription_expiration" in code:
            run_expiration_cron(store, today=store.today())
        store.write(model, [cron["id"]], {"lastcall": store.now_string()})
    return True


# ------------------------------------------------------------------ the wizard
NOTHING_TO_INVOICE = (
    "Cannot create an invoice. No items are available to invoice.\n\n"
    "To resolve this issue, please ensure that:\n"
    "   \u2022 The products have been delivered before attempting to invoice them.\n"
    "   \u2022 The invoicing policy of the product is configured correctly.")


def create_invoices(store: Store, order_ids: list[int], *, grouped: bool = False) -> list[int]:
    """sale `_create_invoices(final=True)`: DRAFT invoices of the invoiceable lines, one per
    (customer, currency) unless `grouped` (one per order). UserError when nothing is invoiceable."""
    today = store.today()
    batches: dict[tuple, list[tuple[dict, list[Due]]]] = {}
    for order in store.browse("sale.order", order_ids):
        dues = invoiceable_lines(store, order, today=today, automatic=False)
        if not dues:
            continue
        # sale `_get_invoice_grouping_keys`: company, partner (the invoice address) and currency
        key = (order["id"],) if grouped else (order.get("partner_invoice_id") or order["partner_id"],
                                               store.order_currency(order))
        batches.setdefault(key, []).append((order, dues))
    if not batches:
        raise UserError(NOTHING_TO_INVOICE)
    moves = []
    for batch in batches.values():
        moves.append(_create_move(store, [o for o, _ in batch], [(o, d) for o, dues in batch for d in dues]))
    return moves


def _action_view_invoice(store: Store, move_ids: list[int], orders: list[dict]) -> dict:
    """sale `action_view_invoice(invoices)`: the form of one invoice (`res_id`), or a list (`domain`)."""
    listing = "list" if store.major_version >= 18 else "tree"
    action: dict = {"type": "ir.actions.act_window", "name": "Invoices", "res_model": "account.move",
                    "view_mode": f"{listing},kanban,form", "views": [[False, listing], [False, "kanban"],
                                                                     [False, "form"]],
                    "target": "current", "res_id": 0, "domain": False}
    if len(move_ids) > 1:
        action["domain"] = [["id", "in", move_ids]]
    elif len(move_ids) == 1:
        action["views"] = [[False, "form"]] + [v for v in action["views"] if v[1] != "form"]
        action["res_id"] = move_ids[0]
    else:
        return {"type": "ir.actions.act_window_close"}
    context: dict = {"default_move_type": "out_invoice"}
    if len(orders) == 1:
        context.update(default_partner_id=orders[0]["partner_id"], default_invoice_origin=orders[0]["name"])
    action["context"] = context
    return action


def wizard_create_invoices(store: Store, model: str, ids: list[int]) -> dict:
    """`sale.advance.payment.inv.create_invoices` (§3.7 C)."""
    [wizard] = store.browse(model, _ids(ids)[:1]) if _ids(ids) else [None]
    if wizard is None:
        raise UserError("Expected singleton: sale.advance.payment.inv()")
    if wizard["advance_payment_method"] != "delivered":
        raise UserError("The fake Odoo implements only advance_payment_method='delivered' (no down payments).")
    order_ids = list(wizard.get("sale_order_ids") or [])
    moves = create_invoices(store, order_ids, grouped=not wizard.get("consolidated_billing", True))
    return _action_view_invoice(store, moves, store.browse("sale.order", order_ids))
