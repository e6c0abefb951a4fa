"""Odoo business behaviour the bridge relies on: public action methods that can be
called over RPC, and helpers that play what Odoo does by itself (the recurring
invoicing cron, a customer paying, an accountant reversing an invoice).
"""

from __future__ import annotations

import inspect
import uuid
from decimal import Decimal
from typing import Any, Callable

from .invoicing import (
    account_move_action_post,
    ir_cron_method_direct_trigger,
    run_expiration_cron,
    run_invoicing_cron,
    wizard_create_invoices,
)
from .store import (
    AccessError,
    OdooException,
    PythonAttributeError,
    PythonValueError,
    Store,
    UserError,
)

__all__ = ["ACTIONS", "Methods", "account_move_action_post", "fail_payment", "register_payment", "reverse_invoice",
           "run_expiration_cron", "run_invoicing_cron"]

ORM_METHODS = {"fields_get", "search", "search_read", "read", "create", "write", "unlink", "search_count",
               "name_search", "default_get", "check_object_reference", "context_get", "browse", "load"}


def _ids(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value or []]


class Methods:
    """Dispatch of `execute_kw(model, method, args, kwargs)` onto the store."""

    def __init__(self, store: Store, *, uid: int):
        self.store = store
        self.uid = uid
        self.context: dict = {}  # of the call being served (calls are serialized by store.lock)

    def call(self, model: str, method: str, args: list, kwargs: dict) -> Any:
        if not isinstance(method, str) or method.startswith("_") or method == "init":
            raise AccessError(f"Private methods (such as '{model}.{method}') cannot be called remotely.")
        kwargs = dict(kwargs or {})
        self.context = dict(kwargs.pop("context", None) or {})
        self.store.model(model)  # unknown model -> KeyError envelope
        handler = getattr(self, "orm_" + method, None)
        if handler is None:
            handler = ACTIONS.get((model, method))
            if handler is None:
                raise PythonAttributeError(f"The method '{model}.{method}' does not exist")
            return _bind(handler, self.store, model, args, kwargs)
        return _bind(handler, model, args, kwargs)

    # ------------------------------------------------------------ ORM methods
    def orm_fields_get(self, model, allfields=None, attributes=None):
        return self.store.fields_get(model, allfields, attributes)

    def orm_search(self, model, domain=None, offset=0, limit=None, order=None, count=False):
        ids = self.store.search(model, domain or [], offset, limit, order)
        return len(ids) if count else ids

    def orm_search_count(self, model, domain=None, limit=None):
        return len(self.store.search(model, domain or [], 0, limit, None))

    def orm_search_read(self, model, domain=None, fields=None, offset=0, limit=None, order=None, load="_classic_read"):
        ids = self.store.search(model, domain or [], offset, limit, order)
        return self.store.read(model, ids, fields, load)

    def orm_read(self, model, ids, fields=None, load="_classic_read"):
        return self.store.read(model, _ids(ids), fields, load)

    def orm_create(self, model, vals_list):
        single = isinstance(vals_list, dict)
        vals_list = [self._context_defaults(model, vals) for vals in ([vals_list] if single else list(vals_list))]
        ids = self.store.create(model, vals_list)
        return ids[0] if single else ids

    def _context_defaults(self, model: str, vals: Any) -> Any:
        """`default_<field>` context keys, and the wizard's `sale_order_ids` default from `active_ids`."""
        if not isinstance(vals, dict):
            return vals
        fields = self.store.models[model].fields
        out = {key[len("default_"):]: value for key, value in self.context.items()
               if key.startswith("default_") and key[len("default_"):] in fields}
        if model == "sale.advance.payment.inv" and "sale_order_ids" not in vals and self.context.get("active_ids"):
            out["sale_order_ids"] = [[6, 0, _ids(self.context["active_ids"])]]
        return {**out, **vals}

    def orm_write(self, model, ids, vals):
        return self.store.write(model, _ids(ids), vals)

    def orm_unlink(self, model, ids):
        return self.store.unlink(model, _ids(ids))

    def orm_name_search(self, model, name="", args=None, operator="ilike", limit=100):
        rec_name = self.store.models[model].rec_name
        domain = list(args or []) + ([[rec_name, operator, name]] if name else [])
        ids = self.store.search(model, domain, 0, limit, None)
        return [[i, self.store.display_name(model, self.store.records[model][i])] for i in ids]

    def orm_default_get(self, model, fields_list):
        out = {}
        for name in fields_list:
            f = self.store.models[model].fields.get(name)
            if f and f.default is not None and not callable(f.default):
                out[name] = f.default
        return out

    def orm_check_object_reference(self, model, module, xml_id, raise_on_access_error=False):
        if model != "ir.model.data":
            raise PythonAttributeError(f"The method '{model}.check_object_reference' does not exist")
        try:
            return list(self.store.xmlids[(module, xml_id)])
        except KeyError:
            raise PythonValueError(f"External ID not found in the system: {module}.{xml_id}") from None

    def orm_load(self, model, fields, data):
        """``BaseModel.load`` (Odoo 17, odoo/models.py): the import's multi-record create-or-update.

        ``fields`` are column names, ``.id`` the database id of a record to update (no ``.id`` or
        an empty one: a new record); ``data`` rows of strings, converted per field type like
        ``ir.fields.converter`` (float(), int(), text as is). Records are loaded in one batch;
        if it fails they are retried one by one to collect a message per bad row; any error
        rolls the whole call back (``ROLLBACK TO SAVEPOINT model_load``): ``ids`` is False.
        Only the column kinds the bridge needs are played (no external ids, no sub-fields).
        """
        spec = self.store.model(model)
        messages: list[dict] = []
        rows = []
        for index, row in enumerate(data or []):
            info = {"rows": {"from": index, "to": index}, "record": index}
            vals: dict = {}
            record_id = None
            for column, raw in zip(fields, row):
                if column == ".id":
                    record_id = int(raw) if raw not in ("", None, False) else None
                    continue
                f = spec.fields.get(column)
                if f is None or "/" in column or column == "id":
                    messages.append({**info, "type": "error", "field": column,
                                     "message": f"Unknown field {column!r} in the import of {model}"})
                    continue
                try:
                    vals[column] = _import_value(f.type, raw)
                except ValueError:
                    messages.append({**info, "type": "error", "field": column,
                                     "message": f"'{raw}' does not seem to be a number for field '{f.string or column}'"})
            rows.append((info, record_id, vals))
        if messages:
            return {"ids": False, "messages": messages, "nextrow": 0}
        for info, record_id, vals in rows:  # what the batch would refuse, row by row (the retry)
            try:
                if record_id is not None:
                    current = self.store.browse(model, [record_id])[0]
                    self.store.check_sql_constraints(model, {**current, **vals})
            except OdooException as exc:
                messages.append({**info, "type": "error", "message": str(exc)})
        if messages:
            return {"ids": False, "messages": messages, "nextrow": 0}
        ids: list[int] = []
        created: list[int] = []
        try:
            for info, record_id, vals in rows:
                if record_id is not None:
                    self.store.write(model, [record_id], vals)
                    ids.append(record_id)
                else:
                    [new_id] = self.store.create(model, [vals])
                    created.append(new_id)
                    ids.append(new_id)
        except OdooException as exc:  # a create refused late: roll back what this call created
            if created:
                self.store.unlink(model, created)
            return {"ids": False, "messages": [{"type": "error", "message": str(exc)}], "nextrow": 0}
        return {"ids": ids, "messages": [], "nextrow": 0}

    def orm_context_get(self, model):
        if model != "res.users":
            raise PythonAttributeError(f"The method '{model}.context_get' does not exist")
        return {"lang": "en_US", "tz": "America/Toronto", "uid": self.uid}


def _import_value(field_type: str, raw: Any) -> Any:
    """``ir.fields.converter``: an imported cell (text) as the field's value; ValueError if it is not one."""
    if raw in ("", None, False):
        return False
    if field_type in ("float", "monetary"):
        return float(raw)
    if field_type == "integer":
        return int(raw)
    if field_type == "boolean":
        return str(raw).lower() in ("1", "true", "yes")
    return str(raw)


def _bind(handler: Callable, *lead_and_rest) -> Any:
    *lead, args, kwargs = lead_and_rest
    try:
        inspect.signature(handler).bind(*lead, *args, **kwargs)
    except TypeError as exc:
        raise PythonValueError(str(exc)) from None
    return handler(*lead, *args, **kwargs)


# ---------------------------------------------------------------- actions
def sale_order_action_confirm(store: Store, model: str, ids: list[int]) -> bool:
    for order in store.browse(model, _ids(ids)):
        if order["state"] not in ("draft", "sent"):
            raise UserError("Some orders are not in a state requiring confirmation.")
        recurring = [line for line in store.browse("sale.order.line", order.get("_o2m_order_line", []))
                     if not line.get("display_type")
                     and store.product_value(line.get("product_id"), "recurring_invoice")]
        if recurring and not order.get("plan_id"):
            raise UserError("You cannot save a sale order with recurring product and no subscription plan.")
        if order.get("plan_id") and not recurring:
            raise UserError("You cannot save a sale order with a subscription plan and no recurring product.")
        updates: dict = {"state": "sale"}
        if order.get("plan_id"):
            start = order.get("start_date") or store.today().isoformat()
            updates.update(subscription_state="3_progress", start_date=start,
                           next_invoice_date=order.get("next_invoice_date") or start)
        store.write(model, [order["id"]], updates)
    return True


def sale_order_set_close(store: Store, model: str, ids: list[int], close_reason_id: int | None = None,
                         renew: bool = False) -> bool:
    for order in store.browse(model, _ids(ids)):
        if order.get("subscription_state") not in ("3_progress", "4_paused"):
            continue
        vals = {"subscription_state": "6_churn", "end_date": store.today().isoformat()}
        if close_reason_id:
            vals["close_reason_id"] = close_reason_id
        store.write(model, [order["id"]], vals)
    return True


def sale_order_set_open(store: Store, model: str, ids: list[int]) -> bool:
    for order in store.browse(model, _ids(ids)):
        if order.get("subscription_state") == "6_churn":
            store.write(model, [order["id"]], {"subscription_state": "3_progress", "end_date": False,
                                               "close_reason_id": False})
    return True


def sale_order_pause(store: Store, model: str, ids: list[int]) -> bool:
    for order in store.browse(model, _ids(ids)):
        if order.get("subscription_state") == "3_progress":
            store.write(model, [order["id"]], {"subscription_state": "4_paused"})
    return True


def sale_order_resume(store: Store, model: str, ids: list[int]) -> bool:
    for order in store.browse(model, _ids(ids)):
        if order.get("subscription_state") == "4_paused":
            store.write(model, [order["id"]], {"subscription_state": "3_progress"})
    return True


def account_move_button_draft(store: Store, model: str, ids: list[int]) -> bool:
    for move in store.browse(model, _ids(ids)):
        if move["state"] not in ("posted", "cancel"):
            raise UserError("Only posted/cancelled journal entries can be reset to draft.")
        if move.get("inalterable_hash"):
            # account: a posted entry of a journal in strict mode (hashed) cannot be modified
            raise UserError("You cannot modify a posted entry of this journal because it is in strict mode.")
        if move.get("payment_state") in ("paid", "in_payment", "partial"):
            raise UserError("You cannot reset to draft an entry having a payment.")
        store.write(model, [move["id"]], {"state": "draft"})
    return True


def account_move_button_cancel(store: Store, model: str, ids: list[int]) -> bool:
    """Odoo 17 `button_cancel`: a shortcut from posted to cancelled (through `button_draft`, with its
    checks), then only drafts can be cancelled; `auto_post` is reset."""
    moves = store.browse(model, _ids(ids))
    posted = [move["id"] for move in moves if move["state"] == "posted"]
    if posted:
        account_move_button_draft(store, model, posted)
    for move in store.browse(model, _ids(ids)):
        if move["state"] != "draft":
            raise UserError("Only draft journal entries can be cancelled.")
    store.write(model, _ids(ids), {"state": "cancel"})
    return True


def account_move_get_portal_url(store: Store, model: str, ids: list[int], suffix: str | None = None,
                                report_type: str | None = None, download: bool | None = None,
                                query_string: str | None = None, anchor: str | None = None) -> str:
    """portal.mixin `get_portal_url` (public): `access_url` + the access token, made once and kept
    (`_portal_ensure_token`), plus the flags the portal route reads (`report_type=pdf&download=true`)."""
    records = store.browse(model, _ids(ids))
    if len(records) != 1:
        raise PythonValueError(f"Expected singleton: {model}({', '.join(str(i) for i in _ids(ids))})")
    move = records[0]
    token = move.get("access_token")
    if not token:
        token = str(uuid.uuid4())
        store.write(model, [move["id"]], {"access_token": token})
    return "%s%s?access_token=%s%s%s%s%s" % (
        store.get_value(model, move, "access_url"), suffix or "", token,
        f"&report_type={report_type}" if report_type else "", "&download=true" if download else "",
        query_string or "", f"#{anchor}" if anchor else "")


ACTIONS: dict[tuple[str, str], Callable] = {
    ("sale.order", "action_confirm"): sale_order_action_confirm,
    ("sale.order", "set_close"): sale_order_set_close,
    ("sale.order", "set_open"): sale_order_set_open,
    ("sale.order", "pause_subscription"): sale_order_pause,
    ("sale.order", "resume_subscription"): sale_order_resume,
    ("account.move", "action_post"): account_move_action_post,
    ("account.move", "button_draft"): account_move_button_draft,
    ("account.move", "button_cancel"): account_move_button_cancel,
    ("account.move", "get_portal_url"): account_move_get_portal_url,
    ("sale.advance.payment.inv", "create_invoices"): wizard_create_invoices,
    ("ir.cron", "method_direct_trigger"): ir_cron_method_direct_trigger,
}


# ------------------------------------------------- what Odoo does on its own
# run_invoicing_cron, run_expiration_cron: see invoicing.py (re-exported here)


def register_payment(store: Store, *, move_id: int, amount: Decimal | None = None) -> None:
    with store.lock:
        move = store.browse("account.move", [move_id])[0]
        if move["state"] != "posted":
            raise UserError("You can only register payment for posted journal entries.")
        total = Decimal(str(store.move_amounts(move_id)[2]))
        paid = Decimal(str(move.get("amount_paid") or 0)) + (total if amount is None else Decimal(str(amount)))
        state = "paid" if paid >= total else "partial"
        store.write("account.move", [move_id], {"amount_paid": store.currency_round(paid, move.get("currency_id")),
                                                "payment_state": state})


def reverse_invoice(store: Store, *, move_id: int, link_sale_lines: bool = True) -> int:
    """Credit note for the whole invoice, posted and reconciled; the original ends up `reversed`.

    Like Odoo's reversal (`account.move._reverse_moves` copies the lines with
    `include_business_fields`, and `sale` extends it to `sale_line_ids`), the credit note's lines stay
    linked to the order lines: their `qty_invoiced` goes down and what was refunded becomes
    invoiceable again (a one-off usage line is billed again by the next run). `link_sale_lines=False`
    plays a credit note typed by hand, linked to nothing.
    """
    with store.lock:
        move = store.browse("account.move", [move_id])[0]
        lines = [store.records["account.move.line"][i] for i in move.get("_o2m_invoice_line_ids", [])]
        refund_id = store.create("account.move", [{
            "move_type": "out_refund", "partner_id": move["partner_id"], "currency_id": move["currency_id"],
            "reversed_entry_id": move_id, "ref": f"Reversal of: {move['name']}",
            "invoice_origin": move.get("invoice_origin") or False,
            "invoice_line_ids": [[0, 0, {"product_id": ln.get("product_id"), "name": ln.get("name"),
                                         "quantity": ln["quantity"], "price_unit": ln["price_unit"],
                                         "discount": ln.get("discount") or 0.0,
                                         "tax_ids": [[6, 0, list(ln.get("tax_ids") or [])]],
                                         "subscription_id": ln.get("subscription_id"),
                                         "deferred_start_date": ln.get("deferred_start_date") or False,
                                         "deferred_end_date": ln.get("deferred_end_date") or False,
                                         **({"sale_line_ids": [[6, 0, list(ln["sale_line_ids"])]]}
                                            if link_sale_lines and ln.get("sale_line_ids") else {})}]
                                 for ln in lines]}])[0]
        account_move_action_post(store, "account.move", [refund_id])
        store.write("account.move", [refund_id], {"payment_state": "paid",
                                                  "amount_paid": store.move_amounts(refund_id)[2]})
        store.write("account.move", [move_id], {"payment_state": "reversed"})
        return refund_id


def fail_payment(store: Store, *, move_id: int, message: str) -> int:
    """A charge of the invoice refused by the provider (Stripe's card declined): the transaction is
    created and set in error (payment `_set_error`); the invoice itself is not written."""
    with store.lock:
        move = store.browse("account.move", [move_id])[0]
        tx_id = store.create("payment.transaction", [{
            "reference": store.next_sequence("payment.transaction", f"{move['name']}-{{}}"),
            "amount": store.move_amounts(move_id)[2], "partner_id": move["partner_id"],
            "invoice_ids": [[6, 0, [move_id]]]}])[0]
        store.write("payment.transaction", [tx_id], {"state": "error", "state_message": message,
                                                     "last_state_change": store.now_string()})
        return tx_id
