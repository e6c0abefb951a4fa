"""``POST /credit_notes`` realised in Odoo as an ``out_refund`` created directly (no sale-line link, so
nothing is rebilled), Lago's refusals, the estimate, the download, and the customer sub-resources
(``/customers/{id}/credit_notes``, ``/customers/{id}/wallets``)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models.credit_note import CreditNote as CreditNoteInput
from lago_python_client.models.credit_note import CreditNoteEstimate, CreditNoteResponse, Item, Items

from metering.models import Subscription
from odoo_bridge import mapping
from odoo_bridge.models import CreditNote, CreditNoteRequest, Invoice, OdooSyncState, SyncKind, SyncStatus
from odoo_bridge.pull import pull_invoices
from odoo_bridge.sync import push_cycle
from odoo_bridge.testing.invoicing import account_move_action_post
from tests.odoo_bridge.conftest import WINDOW_END
from webhooks.models import WebhookEvent

# transactional: POST /credit_notes calls Odoo only once its own transaction has committed
pytestmark = pytest.mark.django_db(transaction=True)
DEC_1 = dt.date(2026, 12, 1)
JAN_1 = dt.date(2027, 1, 1)
DEC_END = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)


def events(webhook_type):
    return [json.loads(bytes(e.body)) for e in WebhookEvent.objects.filter(webhook_type=webhook_type)
            .order_by("created_at")]


def taxed_products(fake_odoo, catalog) -> int:
    """The catalogue's products carry GST 5 %, which Ontario's fiscal position maps to HST 13 %."""
    store = fake_odoo.store
    gst = store.xmlid_id("account", "1_gst_sale_tax_5")
    for code, name, recurring in ((mapping.charge_product_code(catalog.api_charge), "API calls", False),
                                  (mapping.plan_product_code(catalog.plan), "Pro", True),
                                  (mapping.fee_product_code(catalog.plan), "Pro", False)):
        store.create("product.product", [{"name": name, "default_code": code, "type": "service",
                                          "recurring_invoice": recurring, "taxes_id": [[6, 0, [gst]]]}])
    return store.xmlid_id("account", "1_hst_sale_tax_13")


@pytest.fixture
def invoiced(fake_odoo, catalog):
    """November billed Dec 1: API calls 3.00 + base fee 49.00, HST 13 % (0.39 + 6.37): 58.76."""
    hst = taxed_products(fake_odoo, catalog)
    sub = catalog.subscription()
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000")
    catalog.fee(sub, amount="49.000000")
    push_cycle()
    [move_id] = fake_odoo.run_invoicing_cron(today=DEC_1)
    pull_invoices()
    invoice = Invoice.objects.get(odoo_move_id=move_id)
    fees = {("charge" if line.charge_id else "fee" if line.plan_fee_id else "recurring"):
            f"{invoice.pk}-{line.odoo_line_id}" for line in invoice.lines.all()}
    return sub, invoice, fees, hst


def body(invoice, items, **amounts):
    return {"credit_note": {"invoice_id": str(invoice.pk), "reason": "product_unsatisfactory",
                            "description": "outage of Nov 12", **amounts,
                            "items": [{"fee_id": fee, "amount_cents": cents} for fee, cents in items]}}


# ---------------------------------------------------------------- through the official client, live server
def test_create_find_and_list_through_the_lago_client(fake_odoo, invoiced, live_server, api_key, other_api_key):
    sub, invoice, fees, hst = invoiced
    lago = Client(api_key=api_key, api_url=live_server.url)
    estimate = lago.credit_notes.estimate(CreditNoteEstimate(invoice_id=str(invoice.pk), items=Items(__root__=[
        Item(fee_id=fees["fee"], amount_cents=4900), Item(fee_id=fees["charge"], amount_cents=100)])))
    # 50.00 credited, HST 13 % of it 6.50: what the credit note will be
    assert (estimate.sub_total_excluding_taxes_amount_cents, estimate.taxes_amount_cents) == (5000, 650)
    assert estimate.max_creditable_amount_cents == 5650 and estimate.max_refundable_amount_cents == 0

    created = lago.credit_notes.create(CreditNoteInput(
        invoice_id=str(invoice.pk), reason="product_unsatisfactory", description="outage of Nov 12",
        credit_amount_cents=5650, refund_amount_cents=0,
        items=Items(__root__=[Item(fee_id=fees["fee"], amount_cents=4900),
                              Item(fee_id=fees["charge"], amount_cents=100)])))
    assert isinstance(created, CreditNoteResponse)
    request = CreditNoteRequest.objects.get()
    note = CreditNote.objects.get()
    # realised at once: Odoo's posted refund, mirrored with the lago_id we answered
    assert created.lago_id == str(request.pk) == str(note.pk) and created.number.startswith("RINV/")
    assert (created.total_amount_cents, created.taxes_amount_cents, created.credit_amount_cents) == (5650, 650, 5650)
    assert (created.refund_amount_cents, created.offset_amount_cents, created.balance_amount_cents) == (0, 0, 5650)
    assert created.credit_status == "available" and created.reason == "product_unsatisfactory"
    assert created.lago_invoice_id == str(invoice.pk) and created.invoice_number == invoice.number
    items = sorted(created.items.__root__, key=lambda i: i.amount_cents)
    assert [(i.amount_cents, i.fee.item.type) for i in items] == [(100, "charge"), (4900, "subscription")]
    assert items[0].fee.item.code == "api_calls" and items[0].fee.external_subscription_id == sub.external_id
    [tax] = created.applied_taxes.__root__
    assert (tax.tax_code, tax.amount_cents, tax.base_amount_cents) == (f"odoo_tax_{hst}", 650, 5000)

    # in Odoo: an out_refund of the invoice's partner, reversing it, the fees' products and taxes, no sale line
    refund = fake_odoo.store.records["account.move"][note.odoo_move_id]
    original = fake_odoo.store.records["account.move"][invoice.odoo_move_id]
    assert (refund["move_type"], refund["state"], refund["reversed_entry_id"]) == ("out_refund", "posted",
                                                                                   invoice.odoo_move_id)
    assert refund["partner_id"] == original["partner_id"] and refund["ref"] == request.reference
    lines = [fake_odoo.store.records["account.move.line"][i] for i in refund["_o2m_invoice_line_ids"]]
    assert all(not ln.get("sale_line_ids") and ln["tax_ids"] == [hst] for ln in lines)
    assert sorted(ln["price_unit"] for ln in lines) == [1.0, 49.0]
    # the credited invoice is not voided by a partial credit note
    assert lago.invoices.find(str(invoice.pk)).status == "finalized"

    assert lago.credit_notes.find(created.lago_id).reason == "product_unsatisfactory"
    found = httpx.get(f"{live_server.url}/api/v1/credit_notes/{created.lago_id}",
                      headers={"Authorization": f"Bearer {api_key}"}).json()["credit_note"]
    assert found["description"] == "outage of Nov 12" and found["metadata"] == {"odoo_move_id": str(note.odoo_move_id)}
    assert [n.lago_id for n in lago.credit_notes.find_all()["credit_notes"]] == [created.lago_id]
    # credit_note.created once, whatever the pulls
    pull_invoices()
    pull_invoices()
    [event] = events("credit_note.created")
    assert event["credit_note"]["lago_id"] == created.lago_id and event["credit_note"]["credit_amount_cents"] == 5650

    # the customer's credit notes: lago-python-client 1.55's customer_credit_notes sends no Authorization
    # header, so (like Lago) it gets a 401; the same path with the key answers the list
    with pytest.raises(LagoApiError) as unauthenticated:
        lago.customer_credit_notes.find_all(sub.account_link.external_id)
    assert unauthenticated.value.status_code == 401
    url = f"{live_server.url}/api/v1/customers/{sub.account_link.external_id}/credit_notes"
    listed = httpx.get(url, headers={"Authorization": f"Bearer {api_key}"}).json()
    assert [n["lago_id"] for n in listed["credit_notes"]] == [created.lago_id] and listed["meta"]["total_count"] == 1
    CreditNoteResponse.parse_obj(listed["credit_notes"][0])
    other = httpx.get(url, headers={"Authorization": f"Bearer {other_api_key}"})
    assert other.status_code == 404 and other.json()["code"] == "customer_not_found"
    other_lago = Client(api_key=other_api_key, api_url=live_server.url)
    with pytest.raises(LagoApiError) as hidden:
        other_lago.credit_notes.find(created.lago_id)
    assert hidden.value.status_code == 404

    downloaded = lago.credit_notes.download(created.lago_id)
    assert downloaded.file_url.startswith(f"{fake_odoo.url}/my/invoices/{note.odoo_move_id}?access_token=")
    assert downloaded.file_url.endswith("&report_type=pdf&download=true")


def test_customer_wallets_through_the_lago_client(live_server, api_key, other_api_key, catalog):
    lago = Client(api_key=api_key, api_url=live_server.url)
    link = catalog.account()
    from lago_python_client.models.wallet import Wallet

    wallet = lago.wallets.create(Wallet(external_customer_id=link.external_id, rate_amount="1", currency="CAD",
                                        name="Main", granted_credits="10"))
    # customer_wallets (FindAllChildren) sends no Authorization header: a 401 as from Lago
    with pytest.raises(LagoApiError) as unauthenticated:
        lago.customer_wallets.find_all(link.external_id)
    assert unauthenticated.value.status_code == 401
    url = f"{live_server.url}/api/v1/customers/{link.external_id}/wallets"
    page = httpx.get(url, headers={"Authorization": f"Bearer {api_key}"}).json()
    assert [w["lago_id"] for w in page["wallets"]] == [wallet.lago_id] and page["meta"]["total_count"] == 1
    assert page["wallets"][0]["credits_balance"] == "10.0"
    assert httpx.get(url, headers={"Authorization": f"Bearer {other_api_key}"}).status_code == 404
    refused = httpx.post(url, headers={"Authorization": f"Bearer {api_key}"}, json={"wallet": {}})
    assert refused.status_code == 405 and refused.json()["code"] == "wallet_not_supported"


# ---------------------------------------------------------------- Odoo's next run rebills nothing
def test_odoos_next_invoicing_run_does_not_rebill_the_credited_lines(fake_odoo, invoiced, catalog, api_client):
    sub, invoice, fees, _ = invoiced
    order_id = Subscription.objects.get(pk=sub.pk).odoo_sale_order_id
    order_lines = [dict(fake_odoo.store.records["sale.order.line"][i])
                   for i in fake_odoo.store.records["sale.order"][order_id]["_o2m_order_line"]]
    before = {ln["id"]: ln["qty_invoiced"] for ln in fake_odoo.records(
        "sale.order.line", [["order_id", "=", order_id]], ["qty_invoiced"])}
    answer = api_client.post("/api/v1/credit_notes", body(invoice, [(fees["fee"], 4900), (fees["charge"], 300)],
                                                          credit_amount_cents=5876), format="json")
    assert answer.status_code == 200, answer.json()
    assert answer.json()["credit_note"]["total_amount_cents"] == 5876  # all of it, taxes included
    # the order lines' invoiced quantities are untouched: Odoo owes nothing more on them
    after = {ln["id"]: ln["qty_invoiced"] for ln in fake_odoo.records(
        "sale.order.line", [["order_id", "=", order_id]], ["qty_invoiced"])}
    assert after == before and all(ln.get("qty_to_invoice", 0) == 0 for ln in fake_odoo.records(
        "sale.order.line", [["order_id", "=", order_id]], ["qty_to_invoice"]))

    # December: 2.00 of calls. Odoo's Jan 1 run bills December, never November's credited usage or fee
    catalog.rate(sub, catalog.api_charge, units="100", amount="2.000000", start=WINDOW_END, end=DEC_END)
    push_cycle()
    [january] = fake_odoo.run_invoicing_cron(today=JAN_1)
    lines = [fake_odoo.store.records["account.move.line"][i]
             for i in fake_odoo.store.records["account.move"][january]["_o2m_invoice_line_ids"]]
    billed = [(ln["name"], ln["price_unit"] * ln["quantity"]) for ln in lines if ln["price_unit"]]
    november = {ln["name"] for ln in order_lines if ln["price_unit"]}
    assert [amount for _, amount in billed] == [2.0] and not november & {name for name, _ in billed}
    assert untaxed(fake_odoo, january) == 2.0
    # whereas Odoo's own reversal (the wizard's link to the sale lines) makes them invoiceable again
    fake_odoo.reverse_invoice(january)
    [rebilled] = fake_odoo.run_invoicing_cron(today=dt.date(2027, 2, 1))
    assert untaxed(fake_odoo, rebilled) == 2.0


def untaxed(fake_odoo, move_id: int) -> float:
    [move] = fake_odoo.records("account.move", [["id", "=", move_id]], ["amount_untaxed"])
    return move["amount_untaxed"]


# ---------------------------------------------------------------- a lost answer from Odoo
@pytest.mark.parametrize("lost", ["create", "action_post"])
def test_a_lost_odoo_answer_is_finished_by_the_push_cycle_once(fake_odoo, invoiced, api_client, lost):
    sub, invoice, fees, _ = invoiced
    fake_odoo.faults.add("lost_response", model="account.move", method=lost, times=1)
    answer = api_client.post("/api/v1/credit_notes", body(invoice, [(fees["charge"], 300)], credit_amount_cents=339),
                             format="json")
    assert answer.status_code == 200
    pending = answer.json()["credit_note"]
    request = CreditNoteRequest.objects.get()
    # answered as asked: our lago_id and amounts, no Odoo number yet, not listed, not announced
    assert pending["lago_id"] == str(request.pk) and pending["number"] == ""
    assert (pending["total_amount_cents"], pending["taxes_amount_cents"], pending["credit_amount_cents"]) == (
        339, 39, 339)
    CreditNoteResponse.parse_obj(pending)
    assert api_client.get(f"/api/v1/credit_notes/{request.pk}").json()["credit_note"]["number"] == ""
    assert api_client.get("/api/v1/credit_notes").json()["credit_notes"] == []
    assert events("credit_note.created") == []
    state = OdooSyncState.objects.get(kind=SyncKind.CREDIT_NOTE, object_id=str(request.pk))
    assert state.status == SyncStatus.FAILED
    # Odoo did create the refund (a draft, or posted): the cycle finds it by ref, posts it if need be, mirrors
    # it; never a second one
    assert len(fake_odoo.records("account.move", [["move_type", "=", "out_refund"]], ["id"])) == 1
    report = push_cycle(now=timezone.now() + dt.timedelta(hours=2))
    assert report.credit_notes_posted == 1 and not report.aborted
    refunds = fake_odoo.records("account.move", [["move_type", "=", "out_refund"]], ["state", "ref"])
    assert [(r["state"], r["ref"]) for r in refunds] == [("posted", request.reference)]
    found = api_client.get(f"/api/v1/credit_notes/{request.pk}").json()["credit_note"]
    assert found["number"].startswith("RINV/") and found["total_amount_cents"] == 339
    assert len(events("credit_note.created")) == 1
    push_cycle(now=timezone.now() + dt.timedelta(hours=4))
    pull_invoices()
    assert len(fake_odoo.records("account.move", [["move_type", "=", "out_refund"]], ["id"])) == 1
    assert len(events("credit_note.created")) == 1


# ---------------------------------------------------------------- Lago's refusals
def test_every_refusal_is_lagos(fake_odoo, invoiced, api_client, other_api_client, catalog):
    sub, invoice, fees, _ = invoiced

    def post(payload, client=api_client):
        answer = client.post("/api/v1/credit_notes", payload, format="json")
        return answer.status_code, answer.json().get("code"), answer.json().get("error_details")

    # another service's invoice, an unknown one
    assert post(body(invoice, [(fees["charge"], 100)], credit_amount_cents=113), other_api_client)[:2] == (
        404, "invoice_not_found")
    assert post({"credit_note": {"invoice_id": "nope", "items": [{"fee_id": "x", "amount_cents": 1}]}})[:2] == (
        404, "invoice_not_found")
    # a fee of another invoice
    assert post(body(invoice, [("someone-else-1", 100)], credit_amount_cents=113))[:2] == (404, "fee_not_found")
    # Lago's item and amount rules
    assert post(body(invoice, [(fees["charge"], -1)], credit_amount_cents=0)) == (
        422, "validation_errors", {"amount_cents": ["invalid_value"]})
    assert post(body(invoice, [(fees["charge"], 301)], credit_amount_cents=340)) == (
        422, "validation_errors", {"amount_cents": ["higher_than_remaining_fee_amount"]})
    assert post(body(invoice, [(fees["charge"], 100)], credit_amount_cents=100)) == (
        422, "validation_errors", {"base": ["does_not_match_item_amounts"]})
    assert post(body(invoice, [(fees["charge"], 100)], refund_amount_cents=113)) == (
        422, "validation_errors", {"refund_amount_cents": ["cannot_refund_unpaid_invoice"]})
    assert post(body(invoice, [(fees["charge"], 100)], offset_amount_cents=113))[0] == 200
    # shape: no items, a bad reason, metadata
    assert post({"credit_note": {"invoice_id": str(invoice.pk), "items": []}})[0] == 422
    assert post({**body(invoice, [(fees["charge"], 100)], credit_amount_cents=113)} | {"credit_note": {
        **body(invoice, [(fees["charge"], 100)], credit_amount_cents=113)["credit_note"], "reason": "boredom"}}) == (
        422, "validation_errors", {"reason": ["value_is_invalid"]})
    assert post({"nothing": {}})[0] == 400
    with_metadata = body(invoice, [(fees["charge"], 100)], credit_amount_cents=113)
    with_metadata["credit_note"]["metadata"] = {"ticket": "42"}
    assert post(with_metadata) == (422, "validation_errors", {"metadata": ["not_supported"]})
    assert post(body(invoice, [(fees["charge"], 0)], credit_amount_cents=0)) == (
        422, "validation_errors", {"base": ["invalid_amount"]})
    # what was credited is no longer creditable (2.00 of the usage fee's 3.00 are left)
    assert post(body(invoice, [(fees["charge"], 201)], credit_amount_cents=227))[2] == {
        "amount_cents": ["higher_than_remaining_fee_amount"]}
    assert post(body(invoice, [(fees["charge"], 200)], credit_amount_cents=226))[0] == 200
    assert post(body(invoice, [(fees["charge"], 1)], credit_amount_cents=1))[2] == {
        "amount_cents": ["higher_than_remaining_fee_amount"]}
    # estimate: the same fee rules, amounts computed here
    estimate = api_client.post("/api/v1/credit_notes/estimate", {"credit_note": {
        "invoice_id": str(invoice.pk), "items": [{"fee_id": fees["fee"], "amount_cents": 1000}]}}, format="json")
    assert estimate.status_code == 200
    assert estimate.json()["estimated_credit_note"]["taxes_amount_cents"] == 130
    assert api_client.post("/api/v1/credit_notes/estimate", {"credit_note": {
        "invoice_id": str(invoice.pk), "items": [{"fee_id": fees["charge"], "amount_cents": 1}]}},
        format="json").json()["error_details"] == {"amount_cents": ["higher_than_remaining_fee_amount"]}
    # a voided invoice is not creditable; nor are the routes Lago has and we do not
    for status in ("draft", "voided"):
        Invoice.objects.filter(pk=invoice.pk).update(status=status)
        assert post(body(invoice, [(fees["fee"], 100)], credit_amount_cents=113))[:2] == (
            405, "invalid_type_or_status")
    note_id = CreditNoteRequest.objects.first().pk
    void = api_client.put(f"/api/v1/credit_notes/{note_id}/void")
    assert (void.status_code, void.json()["code"]) == (405, "credit_note_void_not_supported")
    unknown = api_client.post("/api/v1/credit_notes/00000000-0000-0000-0000-000000000000/download")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "credit_note_not_found")
    missing = api_client.get("/api/v1/customers/nobody/credit_notes")
    assert (missing.status_code, missing.json()["code"]) == (404, "customer_not_found")


def test_a_paid_invoice_is_refunded_up_to_its_total(fake_odoo, invoiced, api_client):
    sub, invoice, fees, _ = invoiced
    fake_odoo.register_payment(invoice.odoo_move_id)
    pull_invoices()

    def post(items, **amounts):
        answer = api_client.post("/api/v1/credit_notes", body(invoice, items, **amounts), format="json")
        return answer.status_code, answer.json()

    status, first = post([(fees["fee"], 4900)], refund_amount_cents=5537)
    assert status == 200 and first["credit_note"]["number"].startswith("RINV/")
    note = first["credit_note"]
    assert (note["refund_amount_cents"], note["refund_status"], note["credit_amount_cents"]) == (5537, "pending", 0)
    assert note["credit_status"] is None and note["total_amount_cents"] == 5537
    # nothing is due on a paid invoice: nothing to offset
    assert post([(fees["charge"], 100)], offset_amount_cents=113)[1]["error_details"] == {
        "offset_amount_cents": ["higher_than_remaining_invoice_amount"]}
    assert post([(fees["charge"], 300)], refund_amount_cents=339)[0] == 200
    estimate = api_client.post("/api/v1/credit_notes/estimate", {"credit_note": {
        "invoice_id": str(invoice.pk), "items": [{"fee_id": fees["charge"], "amount_cents": 0}]}}, format="json")
    assert estimate.json()["estimated_credit_note"]["max_refundable_amount_cents"] == 0
    assert sorted(Decimal(n.total_amount) for n in CreditNote.objects.all()) == [Decimal("3.39"), Decimal("55.37")]


def test_a_credit_note_made_in_odoo_counts_against_what_is_left(fake_odoo, invoiced, api_client):
    """An accountant's partial refund in Odoo (typed, not linked to fees) reduces what the invoice can
    still be credited, as Lago counts every earlier credit note of the invoice."""
    sub, invoice, fees, _ = invoiced
    move = fake_odoo.store.records["account.move"][invoice.odoo_move_id]
    [refund] = fake_odoo.store.create("account.move", [{
        "move_type": "out_refund", "partner_id": move["partner_id"], "reversed_entry_id": invoice.odoo_move_id,
        "invoice_line_ids": [[0, 0, {"name": "goodwill", "quantity": 1, "price_unit": 50.0, "tax_ids": [[6, 0, []]],
                                     "subscription_id": sub.odoo_sale_order_id}]]}])
    account_move_action_post(fake_odoo.store, "account.move", [refund])
    pull_invoices()
    # 58.76 of fees, 50.00 already credited in Odoo: 8.76 left
    answer = api_client.post("/api/v1/credit_notes", body(invoice, [(fees["fee"], 4900)], credit_amount_cents=5537),
                             format="json")
    assert answer.status_code == 422 and answer.json()["error_details"] == {
        "credit_amount_cents": ["higher_than_remaining_invoice_amount"],
        "base": ["higher_than_remaining_invoice_amount"]}
    assert api_client.post("/api/v1/credit_notes", body(invoice, [(fees["fee"], 700)], credit_amount_cents=791),
                           format="json").status_code == 200


def test_odoo_19_over_json2(settings, catalog, api_client):
    """The same public calls by name over Odoo 19's JSON-2 (no /jsonrpc)."""
    from odoo_bridge.client import reset_client
    from odoo_bridge.testing import FakeOdoo
    from tests.odoo_bridge.conftest import point_settings_at

    with FakeOdoo(version="19.0") as server:
        point_settings_at(settings, server)
        settings.ODOO_TRANSPORT = "json2"
        reset_client()
        try:
            sub = catalog.subscription()
            catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000")
            push_cycle()
            [move_id] = server.run_invoicing_cron(today=DEC_1)
            pull_invoices()
            invoice = Invoice.objects.get(odoo_move_id=move_id)
            usage = invoice.lines.get(charge__isnull=False)
            fee_id = f"{invoice.pk}-{usage.odoo_line_id}"
            answer = api_client.post("/api/v1/credit_notes", body(invoice, [(fee_id, 300)], credit_amount_cents=300),
                                     format="json")
            assert answer.status_code == 200, answer.json()
            assert answer.json()["credit_note"]["number"].startswith("RINV/")
            assert server.call_count(service="object") == 0
            [refund] = server.records("account.move", [["move_type", "=", "out_refund"]], ["state", "amount_total"])
            assert (refund["state"], refund["amount_total"]) == ("posted", 3.0)
        finally:
            reset_client()


def test_with_an_idempotency_key_odoo_is_called_after_the_commit_by_the_push_cycle(fake_odoo, invoiced,
                                                                                   api_client):
    sub, invoice, fees, _ = invoiced
    payload = body(invoice, [(fees["charge"], 300)], credit_amount_cents=339)
    first = api_client.post("/api/v1/credit_notes", payload, format="json", HTTP_IDEMPOTENCY_KEY="cn-1")
    assert first.status_code == 200 and first.json()["credit_note"]["number"] == ""
    assert fake_odoo.records("account.move", [["move_type", "=", "out_refund"]], ["id"]) == []
    again = api_client.post("/api/v1/credit_notes", payload, format="json", HTTP_IDEMPOTENCY_KEY="cn-1")
    assert again["Idempotent-Replayed"] == "true" and CreditNoteRequest.objects.count() == 1
    assert push_cycle().credit_notes_posted == 1
    lago_id = first.json()["credit_note"]["lago_id"]
    assert api_client.get(f"/api/v1/credit_notes/{lago_id}").json()["credit_note"]["number"].startswith("RINV/")
    assert len(events("credit_note.created")) == 1


def test_two_concurrent_credit_notes_cannot_both_take_what_is_left_of_a_fee(fake_odoo, invoiced, api_key):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    from tests.conftest import make_api_client

    sub, invoice, fees, _ = invoiced
    payload = body(invoice, [(fees["charge"], 200)], credit_amount_cents=226)

    def post(_):
        try:
            return make_api_client(api_key).post("/api/v1/credit_notes", payload, format="json").status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = sorted(pool.map(post, range(2)))
    # 3.00 of calls: one credit of 2.00 passes, the other finds 1.00 left
    assert statuses == [200, 422]
    assert CreditNoteRequest.objects.count() == 1 and CreditNote.objects.count() == 1
