"""The fake Odoo invoices like Odoo 17-19 Enterprise (reference/odoo.md §3.4-§3.9), driven over JSON-RPC.

Postpaid (delivered-quantity) and prepaid recurring lines, the recurring-invoice cron (also through
`ir.cron.method_direct_trigger`), the public wizard `sale.advance.payment.inv`, order dates and their
SQL constraint, closing, credit notes, and the ledger helpers a property test will use.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from dataclasses import dataclass
from decimal import Decimal

import odoorpc
import pytest

from odoo_bridge.testing import FakeOdoo
from odoo_bridge.testing import ledger

D = dt.date


@pytest.fixture
def fake():
    with FakeOdoo(version="17.0", price_digits=4) as server:
        yield server


@pytest.fixture
def rpc(fake):
    odoo = odoorpc.ODOO("127.0.0.1", port=fake.port, timeout=5)
    odoo.login(fake.db, fake.login, fake.api_key)
    return odoo


def set_today(fake, day: dt.date) -> None:
    fake.store.clock = lambda: dt.datetime(day.year, day.month, day.day, 9, 0, tzinfo=dt.timezone.utc)


@dataclass
class Sub:
    order: int
    flat_product: int
    usage_product: int
    flat_line: int
    usage_line: int


def subscription(rpc, *, start="2026-11-01", flat_price: float | None = 49.0, usage_price=0.002) -> Sub:
    """A monthly subscription: a prepaid flat fee and a postpaid metered line (recipe §3.8, pattern 1)."""
    pid = rpc.execute_kw("res.partner", "create", [{"name": "Metered Co"}])
    flat = rpc.execute_kw("product.product", "create", [{"name": "Plan Pro", "type": "service",
                                                         "recurring_invoice": True, "invoice_policy": "order"}])
    usage = rpc.execute_kw("product.product", "create", [{
        "name": "API calls", "type": "service", "recurring_invoice": True, "invoice_policy": "delivery",
        "service_type": "manual", "list_price": usage_price}])
    month = rpc.execute_kw("ir.model.data", "check_object_reference", ["sale_subscription", "subscription_plan_month"])[1]
    lines = [[0, 0, {"product_id": usage, "product_uom_qty": 1, "price_unit": usage_price}]]
    if flat_price is not None:  # None: a postpaid-only subscription
        lines.insert(0, [0, 0, {"product_id": flat, "product_uom_qty": 1, "price_unit": flat_price}])
    so = rpc.execute_kw("sale.order", "create", [{
        "partner_id": pid, "plan_id": month, "start_date": start, "client_order_ref": "sub_metered",
        "order_line": lines}])
    rpc.execute_kw("sale.order", "action_confirm", [[so]])
    *flat_line, usage_line = rpc.execute_kw("sale.order", "read", [[so], ["order_line"]])[0]["order_line"]
    return Sub(so, flat, usage, flat_line[0] if flat_line else 0, usage_line)


def one_off(rpc, sub: Sub, *, price: float, name: str = "Overage 2026-11") -> tuple[int, int]:
    """A pre-rated one-off line, the way the bridge pushes usage today (recipe §3.8, pattern 2)."""
    product = rpc.execute_kw("product.product", "create", [{"name": "Overage", "type": "service"}])
    rpc.execute_kw("sale.order", "write", [[sub.order], {"order_line": [[0, 0, {
        "product_id": product, "name": name, "product_uom_qty": 1, "price_unit": price}]]}])
    line = rpc.execute_kw("sale.order.line", "search", [[["order_id", "=", sub.order], ["product_id", "=", product]]])
    return product, line[0]


def lines_of(rpc, move_id: int) -> dict[int, dict]:
    rows = rpc.execute_kw("account.move.line", "search_read", [[["move_id", "=", move_id]]],
                          {"fields": ["product_id", "quantity", "price_unit", "deferred_start_date",
                                      "deferred_end_date", "subscription_id", "sale_line_ids"]})
    return {r["product_id"][0]: r for r in rows}


def period(line: dict) -> tuple[str, str]:
    return line["deferred_start_date"], line["deferred_end_date"]


def read_order(rpc, so: int, *fields: str) -> dict:
    return rpc.execute_kw("sale.order", "read", [[so], list(fields)])[0]


def read_line(rpc, line: int, *fields: str) -> dict:
    return rpc.execute_kw("sale.order.line", "read", [[line], list(fields)])[0]


def wizard(rpc, so: int, **vals) -> dict:
    ctx = {"active_model": "sale.order", "active_ids": [so], "active_id": so}
    wiz = rpc.execute_kw("sale.advance.payment.inv", "create",
                         [{"advance_payment_method": "delivered", "sale_order_ids": [[6, 0, [so]]], **vals}],
                         {"context": ctx})
    return rpc.execute_kw("sale.advance.payment.inv", "create_invoices", [[wiz]], {"context": ctx})


# ------------------------------------------------------------------ §3.4 postpaid lines
def test_qty_delivered_is_manual_and_writable_over_rpc_and_the_method_is_exposed(fake, rpc):
    sub = subscription(rpc)
    assert read_line(rpc, sub.usage_line, "qty_delivered_method")["qty_delivered_method"] == "manual"
    rpc.execute_kw("sale.order.line", "write", [[sub.usage_line], {"qty_delivered": 184233}])
    assert read_line(rpc, sub.usage_line, "qty_delivered")["qty_delivered"] == 184233.0
    meta = rpc.execute_kw("sale.order.line", "fields_get", [["qty_delivered", "qty_invoiced", "qty_delivered_method"]],
                          {"attributes": ["readonly", "type"]})
    assert meta["qty_delivered"]["readonly"] is False and meta["qty_invoiced"]["readonly"] is True


def test_with_sale_stock_goods_lines_are_not_manual():
    """Odoo does not refuse the write: with sale_stock, goods get qty_delivered_method='stock_move'
    and the stock compute owns qty_delivered. A caller must check the method, not expect an error."""
    with FakeOdoo(installed_modules=("sale_stock",)) as fake:
        odoo = odoorpc.ODOO("127.0.0.1", port=fake.port, timeout=5)
        odoo.login(fake.db, fake.login, fake.api_key)
        pid = odoo.execute_kw("res.partner", "create", [{"name": "p"}])
        goods = odoo.execute_kw("product.product", "create", [{"name": "Box", "type": "consu"}])
        service = odoo.execute_kw("product.product", "create", [{"name": "Calls", "type": "service"}])
        so = odoo.execute_kw("sale.order", "create", [{"partner_id": pid, "order_line": [
            [0, 0, {"product_id": goods}], [0, 0, {"product_id": service}]]}])
        lines = odoo.execute_kw("sale.order.line", "search_read", [[["order_id", "=", so]]],
                                {"fields": ["qty_delivered_method"]})
        assert [ln["qty_delivered_method"] for ln in lines] == ["stock_move", "manual"]


def test_postpaid_bills_the_elapsed_period_prepaid_the_coming_one_and_qty_delivered_is_never_reset(fake, rpc):
    sub = subscription(rpc)
    assert read_order(rpc, sub.order, "next_invoice_date")["next_invoice_date"] == "2026-11-01"
    # first invoice: the flat fee in advance; no period has elapsed yet for the metered line
    rpc.execute_kw("sale.order.line", "write", [[sub.usage_line], {"qty_delivered": 7}])
    [first] = fake.run_invoicing_cron(today=D(2026, 11, 1))
    assert set(lines_of(rpc, first)) == {sub.flat_product}
    assert period(lines_of(rpc, first)[sub.flat_product]) == ("2026-11-01", "2026-11-30")
    assert read_order(rpc, sub.order, "next_invoice_date")["next_invoice_date"] == "2026-12-01"

    rpc.execute_kw("sale.order.line", "write", [[sub.usage_line], {"qty_delivered": 1000}])
    assert read_line(rpc, sub.usage_line, "qty_to_invoice")["qty_to_invoice"] == 1000.0
    [second] = fake.run_invoicing_cron(today=D(2026, 12, 1))
    lines = lines_of(rpc, second)
    assert period(lines[sub.flat_product]) == ("2026-12-01", "2026-12-31")  # prepaid: the coming month
    assert period(lines[sub.usage_product]) == ("2026-11-01", "2026-11-30")  # postpaid: the elapsed month
    assert lines[sub.usage_product]["quantity"] == 1000.0
    assert lines[sub.usage_product]["sale_line_ids"] == [sub.usage_line]
    assert rpc.execute_kw("account.move", "read", [[second], ["amount_total", "state"]])[0] == {
        "id": second, "amount_total": 51.0, "state": "posted"}
    assert read_order(rpc, sub.order, "next_invoice_date")["next_invoice_date"] == "2027-01-01"
    assert fake.run_invoicing_cron(today=D(2026, 12, 1)) == []  # the same day again: nothing due

    # Odoo never resets qty_delivered (§3.4): a period without a write bills the old quantity again
    usage = read_line(rpc, sub.usage_line, "qty_delivered", "qty_invoiced", "qty_to_invoice")
    assert (usage["qty_delivered"], usage["qty_invoiced"], usage["qty_to_invoice"]) == (1000.0, 0.0, 1000.0)
    [third] = fake.run_invoicing_cron(today=D(2027, 1, 1))
    assert lines_of(rpc, third)[sub.usage_product]["quantity"] == 1000.0
    rpc.execute_kw("sale.order.line", "write", [[sub.usage_line], {"qty_delivered": 250}])
    [fourth] = fake.run_invoicing_cron(today=D(2027, 2, 1))
    assert lines_of(rpc, fourth)[sub.usage_product]["quantity"] == 250.0

    assert ledger.billed_periods(fake.store, sub.order, sub.usage_product) == {
        (D(2026, 11, 1), D(2026, 11, 30)): Decimal(1000), (D(2026, 12, 1), D(2026, 12, 31)): Decimal(1000),
        (D(2027, 1, 1), D(2027, 1, 31)): Decimal(250)}
    assert fake.invoiced_quantity(sub.order, sub.usage_product) == Decimal(2250)
    assert set(ledger.billed_periods(fake.store, sub.order, sub.flat_product).values()) == {Decimal(1)}


def test_a_non_recurring_delivered_line_bills_only_the_growth_like_community_sale(fake, rpc):
    sub = subscription(rpc)
    product = rpc.execute_kw("product.product", "create", [{"name": "Support hours", "type": "service",
                                                            "invoice_policy": "delivery", "service_type": "manual"}])
    rpc.execute_kw("sale.order", "write", [[sub.order], {"order_line": [[0, 0, {
        "product_id": product, "product_uom_qty": 0, "price_unit": 80.0, "qty_delivered": 10}]]}])
    [first] = fake.run_invoicing_cron(today=D(2026, 11, 1))
    assert lines_of(rpc, first)[product]["quantity"] == 10.0 and lines_of(rpc, first)[product][
        "deferred_start_date"] is False
    line = rpc.execute_kw("sale.order.line", "search", [[["product_id", "=", product]]])[0]
    rpc.execute_kw("sale.order.line", "write", [[line], {"qty_delivered": 15, "qty_invoiced": 0}])  # computed
    assert read_line(rpc, line, "qty_invoiced", "qty_to_invoice") == {"id": line, "qty_invoiced": 10.0,
                                                                        "qty_to_invoice": 5.0}
    [second] = fake.run_invoicing_cron(today=D(2026, 12, 1))
    assert lines_of(rpc, second)[product]["quantity"] == 5.0
    assert fake.invoiced_quantity(sub.order, product) == Decimal(15)


def test_postpaid_only_order_moves_next_invoice_date_one_period(fake, rpc):
    sub = subscription(rpc, flat_price=None)
    assert fake.run_invoicing_cron(today=D(2026, 11, 1)) == []  # nothing elapsed yet: only the date moves
    assert read_order(rpc, sub.order, "next_invoice_date")["next_invoice_date"] == "2026-12-01"
    rpc.execute_kw("sale.order.line", "write", [[sub.usage_line], {"qty_delivered": 500}])
    [move] = fake.run_invoicing_cron(today=D(2026, 12, 1))
    assert {p: (ln["quantity"], period(ln)) for p, ln in lines_of(rpc, move).items()} == {
        sub.usage_product: (500.0, ("2026-11-01", "2026-11-30"))}
    # the invoice ends the day before next_invoice_date: posting leaves it, the run moves it
    assert read_order(rpc, sub.order, "next_invoice_date", "last_invoice_date") == {
        "id": sub.order, "next_invoice_date": "2027-01-01", "last_invoice_date": "2026-12-01"}


# ------------------------------------------------------------------ §3.7 C the wizard
def test_wizard_makes_a_draft_and_a_second_call_of_the_period_bills_only_the_growth(fake, rpc):
    sub = subscription(rpc)
    fake.run_invoicing_cron(today=D(2026, 11, 1))
    set_today(fake, D(2026, 11, 20))
    rpc.execute_kw("sale.order.line", "write", [[sub.usage_line], {"qty_delivered": 100}])
    action = wizard(rpc, sub.order)
    assert action["type"] == "ir.actions.act_window" and action["res_model"] == "account.move"
    draft = action["res_id"]
    found = rpc.execute_kw("account.move", "search", [[["invoice_line_ids.subscription_id", "=", sub.order],
                                                        ["state", "=", "draft"]]])
    assert found == [draft]
    lines = lines_of(rpc, draft)
    # Odoo's wizard does not wait for the period to end (EE19 only warns for postpaid lines)
    assert period(lines[sub.usage_product]) == ("2026-11-01", "2026-11-30") and lines[sub.usage_product][
        "quantity"] == 100.0
    assert period(lines[sub.flat_product]) == ("2026-12-01", "2026-12-31")  # next month, in advance
    assert read_order(rpc, sub.order, "next_invoice_date")["next_invoice_date"] == "2026-12-01"  # drafts move nothing

    rpc.execute_kw("sale.order.line", "write", [[sub.usage_line], {"qty_delivered": 150}])
    ctx = {"active_model": "sale.order", "active_ids": [sub.order], "active_id": sub.order}
    wiz = rpc.execute_kw("sale.advance.payment.inv", "create", [{}], {"context": ctx})  # orders from active_ids
    second = rpc.execute_kw("sale.advance.payment.inv", "create_invoices", [[wiz]], {"context": ctx})["res_id"]
    assert {p: ln["quantity"] for p, ln in lines_of(rpc, second).items()} == {sub.usage_product: 50.0}
    with pytest.raises(odoorpc.error.RPCError) as err:
        wizard(rpc, sub.order)
    assert err.value.info["data"]["name"] == "odoo.exceptions.UserError"
    assert "No items are available to invoice" in err.value.info["data"]["message"]

    assert fake.run_invoicing_cron(today=D(2026, 12, 1)) == []  # a draft blocks the cron (§3.6 step 3)
    assert read_order(rpc, sub.order, "next_invoice_date")["next_invoice_date"] == "2026-12-01"  # skipped
    rpc.execute_kw("account.move", "action_post", [[draft, second]])
    assert read_order(rpc, sub.order, "next_invoice_date")["next_invoice_date"] == "2027-01-01"
    assert fake.invoiced_quantity(sub.order, sub.usage_product) == Decimal(150)


def test_with_a_payment_token_the_cron_cancels_the_draft_and_invoices(fake, rpc):
    sub = subscription(rpc)
    partner = read_order(rpc, sub.order, "partner_id")["partner_id"][0]
    token = rpc.execute_kw("payment.token", "create", [{"partner_id": partner, "provider_ref": "cus_1"}])
    rpc.execute_kw("sale.order", "write", [[sub.order], {"payment_token_id": token}])
    set_today(fake, D(2026, 10, 20))
    draft = wizard(rpc, sub.order)["res_id"]
    [move] = fake.run_invoicing_cron(today=D(2026, 11, 1))
    states = {m["id"]: m["state"] for m in rpc.execute_kw("account.move", "read", [[draft, move], ["state"]])}
    assert states == {draft: "cancel", move: "posted"}
    assert fake.invoiced_quantity(sub.order, sub.flat_product) == Decimal(1)


def test_wizard_consolidates_orders_of_one_customer_and_lists_them(fake, rpc):
    a, b = subscription(rpc), subscription(rpc)
    rpc.execute_kw("sale.order", "write", [[b.order], {"partner_id": read_order(rpc, a.order, "partner_id")[
        "partner_id"][0]}])
    other = subscription(rpc)
    ctx = {"active_model": "sale.order", "active_ids": [a.order, b.order, other.order]}
    wiz = rpc.execute_kw("sale.advance.payment.inv", "create", [{"advance_payment_method": "delivered"}],
                         {"context": ctx})
    action = rpc.execute_kw("sale.advance.payment.inv", "create_invoices", [[wiz]], {"context": ctx})
    assert action["res_id"] == 0 and action["domain"][0][:2] == ["id", "in"]
    moves = rpc.execute_kw("account.move", "read", [action["domain"][0][2], ["invoice_origin", "state"]])
    assert sorted(len(m["invoice_origin"].split(", ")) for m in moves) == [1, 2]
    assert {m["state"] for m in moves} == {"draft"}


# ------------------------------------------------------------------ §3.5 / §3.7 B the cron over RPC
def test_cron_through_method_direct_trigger_runs_with_the_server_date(fake, rpc):
    sub = subscription(rpc)
    cron = rpc.execute_kw("ir.model.data", "check_object_reference",
                          ["sale_subscription", "account_analytic_cron_for_invoice"])
    assert cron[0] == "ir.cron"
    set_today(fake, D(2026, 10, 31))
    assert rpc.execute_kw("ir.cron", "method_direct_trigger", [[cron[1]]]) is True
    assert read_order(rpc, sub.order, "invoice_count")["invoice_count"] == 0
    set_today(fake, D(2026, 11, 1))
    rpc.env["ir.cron"].browse(cron[1]).method_direct_trigger()
    [move] = read_order(rpc, sub.order, "invoice_ids")["invoice_ids"]
    assert rpc.execute_kw("account.move", "read", [[move], ["state", "invoice_date"]])[0] == {
        "id": move, "state": "posted", "invoice_date": "2026-11-01"}
    assert rpc.execute_kw("ir.cron", "read", [[cron[1]], ["lastcall"]])[0]["lastcall"] == "2026-11-01 09:00:00"


# ------------------------------------------------------------------ §3.6 end of contract, free, exception
def test_end_date_bills_the_last_elapsed_period_then_closes(fake, rpc):
    sub = subscription(rpc)
    fake.run_invoicing_cron(today=D(2026, 11, 1))
    rpc.execute_kw("sale.order", "write", [[sub.order], {"end_date": "2026-12-15"}])
    rpc.execute_kw("sale.order.line", "write", [[sub.usage_line], {"qty_delivered": 500}])
    [december] = fake.run_invoicing_cron(today=D(2026, 12, 1))
    assert set(lines_of(rpc, december)) == {sub.flat_product, sub.usage_product}  # Dec starts before the end
    rpc.execute_kw("sale.order.line", "write", [[sub.usage_line], {"qty_delivered": 200}])
    assert fake.run_invoicing_cron(today=D(2026, 12, 14)) == []
    [last] = fake.run_invoicing_cron(today=D(2026, 12, 15))  # due through end_date <= today
    lines = lines_of(rpc, last)
    assert set(lines) == {sub.usage_product} and lines[sub.usage_product]["quantity"] == 200.0
    assert period(lines[sub.usage_product]) == ("2026-12-01", "2026-12-15")
    order = read_order(rpc, sub.order, "subscription_state", "close_reason_id")
    end_of_contract = rpc.execute_kw("ir.model.data", "check_object_reference",
                                     ["sale_subscription", "close_reason_end_of_contract"])[1]
    assert order["subscription_state"] == "6_churn" and order["close_reason_id"][0] == end_of_contract
    assert fake.run_invoicing_cron(today=D(2027, 1, 1)) == []


def test_free_period_moves_the_date_and_a_negative_recurring_part_with_one_offs_is_an_exception(fake, rpc):
    free = subscription(rpc, flat_price=0.0)
    assert fake.run_invoicing_cron(today=D(2026, 11, 1)) == []
    assert read_order(rpc, free.order, "next_invoice_date", "invoice_count") == {
        "id": free.order, "next_invoice_date": "2026-12-01", "invoice_count": 0}

    credit = subscription(rpc, flat_price=-10.0)
    one_off(rpc, credit, price=5.0)
    assert fake.run_invoicing_cron(today=D(2026, 11, 1)) == []
    order = read_order(rpc, credit.order, "payment_exception", "next_invoice_date", "invoice_count")
    assert order == {"id": credit.order, "payment_exception": True, "next_invoice_date": "2026-11-01",
                     "invoice_count": 0}
    assert fake.run_invoicing_cron(today=D(2026, 11, 2)) == []  # excluded from the domain from now on


# ------------------------------------------------------------------ §3.1 dates and closing
def test_next_invoice_date_before_start_date_is_refused_like_the_sql_constraint(fake, rpc):
    sub = subscription(rpc)
    for vals in ({"next_invoice_date": "2026-10-31"}, {"start_date": "2026-11-02"}):
        with pytest.raises(odoorpc.error.RPCError) as err:
            rpc.execute_kw("sale.order", "write", [[sub.order], vals])
        assert err.value.info["data"]["name"] == "odoo.exceptions.ValidationError"
        assert err.value.info["data"]["message"].startswith("The operation cannot be completed: ")
    assert read_order(rpc, sub.order, "start_date", "next_invoice_date") == {
        "id": sub.order, "start_date": "2026-11-01", "next_invoice_date": "2026-11-01"}
    pid = rpc.execute_kw("res.partner", "create", [{"name": "x"}])
    with pytest.raises(odoorpc.error.RPCError):
        rpc.execute_kw("sale.order", "create", [{"partner_id": pid, "start_date": "2026-11-05",
                                                 "next_invoice_date": "2026-11-01"}])


def test_confirming_needs_a_plan_for_recurring_products_and_a_recurring_product_for_a_plan(rpc):
    pid = rpc.execute_kw("res.partner", "create", [{"name": "c"}])
    recurring = rpc.execute_kw("product.product", "create", [{"name": "Plan", "recurring_invoice": True}])
    month = rpc.execute_kw("ir.model.data", "check_object_reference", ["sale_subscription", "subscription_plan_month"])[1]
    for vals in ({"order_line": [[0, 0, {"product_id": recurring}]]},
                 {"plan_id": month, "order_line": [[0, 0, {"name": "one-off"}]]}):
        so = rpc.execute_kw("sale.order", "create", [{"partner_id": pid, **vals}])
        with pytest.raises(odoorpc.error.RPCError) as err:
            rpc.execute_kw("sale.order", "action_confirm", [[so]])
        assert err.value.info["data"]["name"] == "odoo.exceptions.UserError"


def test_a_closed_subscription_is_never_invoiced_by_the_cron(fake, rpc):
    sub = subscription(rpc)
    fake.run_invoicing_cron(today=D(2026, 11, 1))
    product, _ = one_off(rpc, sub, price=12.5)
    rpc.execute_kw("sale.order.line", "write", [[sub.usage_line], {"qty_delivered": 300}])
    reason = rpc.execute_kw("sale.order.close.reason", "search", [[]], {"limit": 1})[0]
    rpc.execute_kw("sale.order", "set_close", [[sub.order]], {"close_reason_id": reason})
    assert read_order(rpc, sub.order, "subscription_state")["subscription_state"] == "6_churn"
    assert fake.run_invoicing_cron(today=D(2026, 12, 1)) == []
    # only standard sale logic is left: the one-off line through the wizard, no recurring line
    draft = wizard(rpc, sub.order)["res_id"]
    assert set(lines_of(rpc, draft)) == {product}


def test_the_expiration_cron_closes_without_invoicing_the_last_period(fake, rpc):
    sub = subscription(rpc)
    fake.run_invoicing_cron(today=D(2026, 11, 1))
    rpc.execute_kw("sale.order", "write", [[sub.order], {"end_date": "2026-12-15"}])
    rpc.execute_kw("sale.order.line", "write", [[sub.usage_line], {"qty_delivered": 300}])
    fake.run_invoicing_cron(today=D(2026, 12, 1))
    rpc.execute_kw("sale.order.line", "write", [[sub.usage_line], {"qty_delivered": 120}])
    assert fake.run_expiration_cron(today=D(2026, 12, 16)) == [sub.order]
    assert fake.run_invoicing_cron(today=D(2026, 12, 16)) == []
    assert (D(2026, 12, 1), D(2026, 12, 15)) not in ledger.billed_periods(fake.store, sub.order, sub.usage_product)


# ------------------------------------------------------------------ §3.9 credit notes
def test_a_reversal_reopens_the_order_lines_and_the_next_run_bills_them_again(fake, rpc):
    sub = subscription(rpc)
    product, line = one_off(rpc, sub, price=12.34)
    [november] = fake.run_invoicing_cron(today=D(2026, 11, 1))
    assert read_line(rpc, line, "qty_invoiced", "qty_to_invoice") == {"id": line, "qty_invoiced": 1.0,
                                                                        "qty_to_invoice": 0.0}
    refund = fake.reverse_invoice(november)
    assert lines_of(rpc, refund)[product]["sale_line_ids"] == [line]  # like _reverse_moves + sale
    assert read_line(rpc, line, "qty_invoiced", "qty_to_invoice") == {"id": line, "qty_invoiced": 0.0,
                                                                        "qty_to_invoice": 1.0}
    [december] = fake.run_invoicing_cron(today=D(2026, 12, 1))
    assert set(lines_of(rpc, december)) == {sub.flat_product, product}
    assert fake.invoiced_quantity(sub.order, product) == Decimal(1)
    totals = fake.invoiced_totals(sub.order)
    assert totals.by_product == {sub.flat_product: Decimal("49.00"), product: Decimal("12.34")}
    assert totals.untaxed == totals.total == Decimal("61.34")
    views = fake.invoices(sub.order)
    assert [(v.move_type, v.sign) for v in views] == [("out_invoice", 1), ("out_refund", -1), ("out_invoice", 1)]
    assert views[1].reversed_entry_id == november and views[1].amount_total == Decimal("61.34")
    flat = [ln for ln in views[2].lines if ln.product_id == sub.flat_product][0]
    assert (flat.deferred_start_date, flat.deferred_end_date) == (D(2026, 12, 1), D(2026, 12, 31))


def test_a_credit_note_typed_by_hand_leaves_the_order_lines_invoiced(fake, rpc):
    sub = subscription(rpc)
    _, line = one_off(rpc, sub, price=12.34)
    [november] = fake.run_invoicing_cron(today=D(2026, 11, 1))
    from odoo_bridge.testing.business import reverse_invoice

    reverse_invoice(fake.store, move_id=november, link_sale_lines=False)
    assert read_line(rpc, line, "qty_invoiced")["qty_invoiced"] == 1.0
    assert fake.invoiced_totals(sub.order).total == Decimal(0)  # the refund still belongs to the order


# ------------------------------------------------------------------ backward compatibility
def test_pre_rated_usage_lines_are_invoiced_once_with_the_next_invoice(fake, rpc):
    sub = subscription(rpc)
    product, line = one_off(rpc, sub, price=12.34)
    [first] = fake.run_invoicing_cron(today=D(2026, 11, 1))
    assert lines_of(rpc, first)[product]["quantity"] == 1.0 and lines_of(rpc, first)[product][
        "deferred_start_date"] is False
    [second] = fake.run_invoicing_cron(today=D(2026, 12, 1))
    assert set(lines_of(rpc, second)) == {sub.flat_product}
    assert fake.invoiced_quantity(sub.order, product) == Decimal(1)


# ------------------------------------------------------------------ JSON-2 (19)
def test_wizard_through_json2_takes_active_ids_from_the_context():
    with FakeOdoo(version="19.0") as fake:
        def call(model, method, **body):
            request = urllib.request.Request(f"{fake.url}/json/2/{model}/{method}", data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json",
                                                      "Authorization": f"bearer {fake.api_key}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())

        [pid] = call("res.partner", "create", vals_list=[{"name": "Json Co"}])
        [product] = call("product.product", "create", vals_list=[{"name": "Setup", "type": "service"}])
        [so] = call("sale.order", "create", vals_list=[{"partner_id": pid, "order_line": [
            [0, 0, {"product_id": product, "price_unit": 100.0}]]}])
        assert call("sale.order", "action_confirm", ids=[so]) is True
        ctx = {"active_model": "sale.order", "active_ids": [so]}
        [wiz] = call("sale.advance.payment.inv", "create", vals_list=[{"advance_payment_method": "delivered"}],
                     context=ctx)
        action = call("sale.advance.payment.inv", "create_invoices", ids=[wiz], context=ctx)
        [move] = call("account.move", "read", ids=[action["res_id"]], fields=["state", "amount_total", "move_type"])
        assert (move["state"], move["amount_total"], move["move_type"]) == ("draft", 100.0, "out_invoice")
        assert action["views"][0] == [False, "form"] and "list" in action["view_mode"]
