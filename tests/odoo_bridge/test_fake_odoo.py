"""The fake Odoo speaks Odoo's JSON-RPC: unmodified odoorpc and raw HTTP both see Odoo's behaviour."""

import datetime as dt
import json
import urllib.request

import odoorpc
import pytest

from odoo_bridge.testing import FakeOdoo


@pytest.fixture
def fake():
    with FakeOdoo(version="17.0") as server:
        yield server


@pytest.fixture
def rpc(fake):
    odoo = odoorpc.ODOO("127.0.0.1", port=fake.port, timeout=5)
    odoo.login(fake.db, fake.login, fake.api_key)
    return odoo


def raw_jsonrpc(fake, params, path="/jsonrpc"):
    body = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 7, "params": params}).encode()
    request = urllib.request.Request(fake.url + path, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.loads(response.read())


def test_unmodified_odoorpc_detects_version_logs_in_and_uses_model_proxies(fake, rpc):
    assert rpc.version == "17.0+e"
    assert rpc.env.uid == fake.uid
    partners = rpc.env["res.partner"]
    pid = partners.create({"name": "Acme Inc", "email": "billing@acme.test", "ref": "cus_1"})
    assert partners.search([("ref", "=", "cus_1")]) == [pid]
    record = partners.browse(pid)
    assert record.name == "Acme Inc"
    record.email = "ap@acme.test"
    assert partners.read([pid], ["email", "vat", "country_id"]) == [
        {"id": pid, "email": "ap@acme.test", "vat": False, "country_id": False}]
    assert fake.call_count(model="res.partner", method="fields_get") == 1


def test_wire_shapes_many2one_false_and_unknown_ids(rpc):
    ca = rpc.execute_kw("ir.model.data", "check_object_reference", ["base", "ca"])[1]
    pid = rpc.execute_kw("res.partner", "create", [{"name": "Maple", "country_id": ca}])
    rows = rpc.execute_kw("res.partner", "read", [[pid, 999999], ["country_id", "phone"]])
    assert rows == [{"id": pid, "country_id": [ca, "Canada"], "phone": False}]
    classic = rpc.execute_kw("res.partner", "read", [[pid], ["country_id"]], {"load": "_classic_write"})
    assert classic[0]["country_id"] == ca
    many = rpc.execute_kw("res.partner", "create", [[{"name": "A"}, {"name": "B"}]])
    assert isinstance(many, list) and len(many) == 2
    assert rpc.execute_kw("res.partner", "search_count", [[["id", "in", many]]]) == 2


def test_x2many_commands_on_order_lines_and_taxes(rpc):
    hst = rpc.execute_kw("ir.model.data", "check_object_reference", ["account", "1_hst_sale_tax_13"])[1]
    pid = rpc.execute_kw("res.partner", "create", [{"name": "Lines"}])
    product = rpc.execute_kw("product.product", "create", [{"name": "Usage", "type": "service"}])
    so = rpc.execute_kw("sale.order", "create", [{"partner_id": pid, "order_line": [
        [0, 0, {"product_id": product, "price_unit": 10.0, "product_uom_qty": 2, "tax_id": [[6, 0, [hst]]]}],
        [0, 0, {"product_id": product, "price_unit": 1.0}]]}])
    first, second = rpc.execute_kw("sale.order", "read", [[so], ["order_line"]])[0]["order_line"]
    rpc.execute_kw("sale.order", "write", [[so], {"order_line": [[1, first, {"price_unit": 20.0}], [2, second, 0]]}])
    order = rpc.execute_kw("sale.order", "read", [[so], ["order_line", "amount_untaxed", "amount_total"]])[0]
    assert order["order_line"] == [first]
    assert order["amount_untaxed"] == 40.0 and order["amount_total"] == 45.2
    line = rpc.execute_kw("sale.order.line", "read", [[first], ["tax_id", "product_uom", "order_id"]])[0]
    assert line["tax_id"] == [hst] and line["product_uom"][1] == "Units" and line["order_id"][0] == so


def test_errors_are_http_200_envelopes_with_odoo_exception_names(fake):
    status, body = raw_jsonrpc(fake, {"service": "common", "method": "login",
                                      "args": [fake.db, fake.login, fake.api_key]})
    uid = body["result"]
    status, body = raw_jsonrpc(fake, {"service": "object", "method": "execute_kw", "args": [
        fake.db, uid, fake.api_key, "res.partner", "create", [{"email": "no-name@x.test"}], {}]})
    assert status == 200 and body["id"] == 7
    assert body["error"]["code"] == 200 and body["error"]["message"] == "Odoo Server Error"
    assert body["error"]["data"]["name"] == "odoo.exceptions.ValidationError"
    assert "Field: Name (name)" in body["error"]["data"]["message"]
    status, body = raw_jsonrpc(fake, {"service": "object", "method": "execute_kw", "args": [
        fake.db, uid, fake.api_key, "sale.order", "_create_recurring_invoice", [[1]], {}]})
    assert body["error"]["data"]["name"] == "odoo.exceptions.AccessError"
    assert "cannot be called remotely" in body["error"]["data"]["message"]
    status, body = raw_jsonrpc(fake, {"service": "object", "method": "execute_kw", "args": [
        fake.db, uid, "wrong-key", "res.partner", "search", [[]], {}]})
    assert body["error"]["data"]["name"] == "odoo.exceptions.AccessDenied"
    status, body = raw_jsonrpc(fake, {"service": "common", "method": "login", "args": [fake.db, fake.login, "nope"]})
    assert body["result"] is False  # a failed login is not an error envelope
    status, body = raw_jsonrpc(fake, {}, path="/web/webclient/version_info")
    assert body["result"]["server_version"] == "17.0+e"


def test_unknown_method_and_field_errors(rpc):
    with pytest.raises(odoorpc.error.RPCError) as err:
        rpc.execute_kw("res.partner", "frobnicate", [[]])
    assert err.value.info["data"]["name"] == "builtins.AttributeError"
    with pytest.raises(odoorpc.error.RPCError) as err:
        rpc.execute_kw("res.partner", "create", [{"name": "x", "not_a_field": 1}])
    assert err.value.info["data"]["name"] == "builtins.ValueError"


def test_version_19_renames_line_fields_and_uses_error_code_0():
    with FakeOdoo(version="19.0") as fake:
        odoo = odoorpc.ODOO("127.0.0.1", port=fake.port, timeout=5)
        odoo.login(fake.db, fake.login, fake.api_key)
        fields = odoo.execute_kw("sale.order.line", "fields_get", [], {"attributes": ["type"]})
        assert "product_uom_id" in fields and "tax_ids" in fields
        assert "product_uom" not in fields and "tax_id" not in fields
        pid = odoo.execute_kw("res.partner", "create", [{"name": "v19"}])
        so = odoo.execute_kw("sale.order", "create", [{"partner_id": pid}])
        with pytest.raises(odoorpc.error.RPCError) as err:
            odoo.execute_kw("sale.order.line", "create", [{"order_id": so, "name": "x", "product_uom": 1}])
        assert err.value.info["code"] == 0
        assert err.value.info["data"]["name"] == "builtins.ValueError"


@pytest.mark.parametrize("digits,expected", [(2, 0.01), (4, 0.0075)])
def test_price_digits_round_price_unit_on_write(digits, expected):
    with FakeOdoo(price_digits=digits) as fake:
        odoo = odoorpc.ODOO("127.0.0.1", port=fake.port, timeout=5)
        odoo.login(fake.db, fake.login, fake.api_key)
        pid = odoo.execute_kw("res.partner", "create", [{"name": "p"}])
        so = odoo.execute_kw("sale.order", "create", [{"partner_id": pid}])
        line = odoo.execute_kw("sale.order.line", "create", [{"order_id": so, "name": "core-hours",
                                                              "price_unit": 0.0075}])
        assert odoo.execute_kw("sale.order.line", "read", [[line], ["price_unit"]])[0]["price_unit"] == expected
        meta = odoo.execute_kw("sale.order.line", "fields_get", [["price_unit"]], {"attributes": ["digits"]})
        assert meta["price_unit"]["digits"] == [16, digits]


def test_confirmed_order_lines_cannot_be_deleted(rpc):
    pid = rpc.execute_kw("res.partner", "create", [{"name": "c"}])
    so = rpc.execute_kw("sale.order", "create", [{"partner_id": pid, "order_line": [[0, 0, {"name": "l"}]]}])
    rpc.execute_kw("sale.order", "action_confirm", [[so]])
    line = rpc.execute_kw("sale.order", "read", [[so], ["order_line"]])[0]["order_line"][0]
    with pytest.raises(odoorpc.error.RPCError) as err:
        rpc.execute_kw("sale.order.line", "unlink", [[line]])
    assert err.value.info["data"]["name"] == "odoo.exceptions.UserError"


def _subscription(rpc, fake, *, flat=49.0, usage_amount=None, start="2026-11-01"):
    pid = rpc.execute_kw("res.partner", "create", [{"name": "Sub Co", "ref": "cus_9"}])
    flat_product = rpc.execute_kw("product.product", "create", [{"name": "Plan Pro", "type": "service",
                                                                 "recurring_invoice": True}])
    usage_product = rpc.execute_kw("product.product", "create", [{"name": "CPU", "type": "service"}])
    month = rpc.execute_kw("ir.model.data", "check_object_reference",
                           ["sale_subscription", "subscription_plan_month"])[1]
    lines = [[0, 0, {"product_id": flat_product, "price_unit": flat}]]
    so = rpc.execute_kw("sale.order", "create", [{"partner_id": pid, "plan_id": month, "start_date": start,
                                                   "client_order_ref": "sub_9", "order_line": lines}])
    rpc.execute_kw("sale.order", "action_confirm", [[so]])
    if usage_amount is not None:
        rpc.execute_kw("sale.order", "write", [[so], {"order_line": [[0, 0, {
            "product_id": usage_product, "name": "CPU 2026-11", "product_uom_qty": 1, "price_unit": usage_amount}]]}])
    return so


def test_invoicing_cron_posts_due_lines_and_moves_next_invoice_date(fake, rpc):
    so = _subscription(rpc, fake, usage_amount=12.34)
    assert fake.run_invoicing_cron(today=dt.date(2026, 10, 31)) == []
    [move] = fake.run_invoicing_cron(today=dt.date(2026, 11, 1))
    invoice = rpc.execute_kw("account.move", "search_read", [[["invoice_line_ids.subscription_id", "=", so]],
                             ["name", "state", "payment_state", "amount_total", "amount_residual", "move_type",
                              "invoice_line_ids", "invoice_origin"]])
    assert [i["id"] for i in invoice] == [move]
    assert invoice[0]["state"] == "posted" and invoice[0]["name"].startswith("INV/")
    assert invoice[0]["amount_total"] == 61.34 and invoice[0]["payment_state"] == "not_paid"
    assert len(invoice[0]["invoice_line_ids"]) == 2
    order = rpc.execute_kw("sale.order", "read", [[so], ["next_invoice_date"]])[0]
    assert order["next_invoice_date"] == "2026-12-01"
    # the usage line is invoiced once; the next period bills only the flat line
    [second] = fake.run_invoicing_cron(today=dt.date(2026, 12, 1))
    assert rpc.execute_kw("account.move", "read", [[second], ["amount_total"]])[0]["amount_total"] == 49.0
    fake.register_payment(move)
    paid = rpc.execute_kw("account.move", "read", [[move], ["payment_state", "amount_residual"]])[0]
    assert paid == {"id": move, "payment_state": "paid", "amount_residual": 0.0}
    refund = fake.reverse_invoice(second)
    assert rpc.execute_kw("account.move", "read", [[second], ["payment_state"]])[0]["payment_state"] == "reversed"
    assert rpc.execute_kw("account.move", "read", [[refund], ["move_type", "reversed_entry_id"]])[0][
        "move_type"] == "out_refund"


def test_set_close_churns_and_cron_skips_closed(fake, rpc):
    so = _subscription(rpc, fake)
    reason = rpc.execute_kw("sale.order.close.reason", "search", [[]], {"limit": 1})[0]
    rpc.execute_kw("sale.order", "set_close", [[so]], {"close_reason_id": reason})
    order = rpc.execute_kw("sale.order", "read", [[so], ["subscription_state", "close_reason_id"]])[0]
    assert order["subscription_state"] == "6_churn" and order["close_reason_id"][0] == reason
    assert fake.run_invoicing_cron(today=dt.date(2026, 11, 5)) == []


def test_write_date_cursor_search(fake, rpc):
    clock = [dt.datetime(2026, 11, 1, 10, 0, tzinfo=dt.timezone.utc)]
    fake.store.clock = lambda: clock[0]
    a = rpc.execute_kw("res.partner", "create", [{"name": "early"}])
    clock[0] = dt.datetime(2026, 11, 1, 11, 0, tzinfo=dt.timezone.utc)
    b = rpc.execute_kw("res.partner", "create", [{"name": "late"}])
    found = rpc.execute_kw("res.partner", "search_read", [[["write_date", ">=", "2026-11-01 10:30:00"]], ["name"]],
                           {"order": "write_date asc, id asc"})
    assert [r["id"] for r in found] == [b] and a != b


def test_partners_follow_odoos_commercial_entity_and_address_rules(fake, rpc):
    """base res.partner: commercial_partner_id, the VAT synced from the commercial entity, address_get's
    first invoice contact as the order's default invoice address, and the delivery address's fiscal position."""
    partners = rpc.env["res.partner"]
    state = {"ON": fake.store.xmlid_id("base", "state_ca_on"), "AB": fake.store.xmlid_id("base", "state_ca_ab")}
    canada = fake.store.xmlid_id("base", "ca")
    company = partners.create({"name": "Acme", "vat": "CA-ACME"})
    first = partners.create({"name": "Billing A", "type": "invoice", "parent_id": company, "vat": "OWN-A",
                             "country_id": canada, "state_id": state["AB"]})
    second = partners.create({"name": "Billing B", "type": "invoice", "parent_id": company,
                              "country_id": canada, "state_id": state["ON"]})
    [a, b] = partners.read([first, second], ["commercial_partner_id", "vat"])
    assert a["commercial_partner_id"][0] == b["commercial_partner_id"][0] == company
    assert a["vat"] == b["vat"] == "CA-ACME"  # a contact created under a parent takes its VAT
    partners.write([second], {"vat": "OWN-B"})
    assert partners.read([second], ["vat"])[0]["vat"] == "OWN-B"  # written later, it is kept...
    partners.write([company], {"vat": "CA-NEW"})
    assert {r["vat"] for r in partners.read([first, second], ["vat"])} == {"CA-NEW"}  # ...until the parent's moves

    orders = rpc.env["sale.order"]
    by_default = orders.read(orders.create({"partner_id": company}), ["partner_invoice_id", "partner_shipping_id",
                                                                      "fiscal_position_id"])[0]
    assert by_default["partner_invoice_id"][0] == first  # address_get: the first invoice contact found
    assert by_default["partner_shipping_id"][0] == company and not by_default["fiscal_position_id"]
    explicit = orders.read(orders.create({"partner_id": company, "partner_invoice_id": second,
                                          "partner_shipping_id": second}), ["fiscal_position_id"])[0]
    assert explicit["fiscal_position_id"][1] == "Ontario (ON)"
