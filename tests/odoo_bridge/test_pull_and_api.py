"""Invoices back from the fake Odoo: mirror (Decimal), webhook outbox rows, Lago-shaped API."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from lago_python_client.models.invoice import InvoiceResponse

from odoo_bridge.models import (
    ConnectionStatus,
    CreditNote,
    Invoice,
    OdooConnectionState,
    OdooPullCursor,
    OdooSyncState,
    SyncKind,
)
from odoo_bridge.pull import pull_invoices
from odoo_bridge.sync import push_cycle
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db
BILLING_DAY = dt.date(2026, 12, 1)  # the window [Nov 1, Dec 1) closes: Odoo's next_invoice_date


def events(webhook_type=None):
    qs = WebhookEvent.objects.order_by("created_at")
    if webhook_type:
        qs = qs.filter(webhook_type=webhook_type)
    return [json.loads(bytes(e.body)) for e in qs]


@pytest.fixture
def invoiced(fake_odoo, catalog):
    sub = catalog.subscription()
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000")
    catalog.rate(sub, catalog.cpu_charge, units="1234", amount="9.255000")
    catalog.fee(sub, amount="49.000000")  # the plan's arrears fee of the window
    push_cycle()
    [move_id] = fake_odoo.run_invoicing_cron(today=BILLING_DAY)
    return sub, move_id


def test_pulled_invoice_is_mirrored_with_decimal_totals_and_lines(fake_odoo, invoiced):
    sub, move_id = invoiced
    report = pull_invoices()
    assert (report.invoices_created, report.events) == (1, 2)  # invoice.created, invoice.generated
    invoice = Invoice.objects.get(odoo_move_id=move_id)
    assert invoice.service == sub.service and invoice.subscription == sub
    assert invoice.number.startswith("INV/") and invoice.status == "finalized"
    # 49.00 flat + 3.00 + 9.26 (pre-rated) = 61.26, HST is Odoo's business (no tax on these products)
    assert invoice.fees_amount == Decimal("61.26") and invoice.total_amount == Decimal("61.26")
    assert invoice.total_due_amount == Decimal("61.26") and invoice.currency == "CAD"
    lines = {line.name: line for line in invoice.lines.all()}
    # the recurring line at 0 (Odoo bills it for the coming period), the fee of [Nov 1, Dec 1), two usage lines
    assert len(lines) == 4 and lines["Pro"].amount == 0 and lines["Pro 2026-11-01 – 2026-11-30"].amount == 49
    usage_lines = [line for line in lines.values() if line.rated_usage_id]
    assert {line.charge_id for line in usage_lines} == {sub.plan.charges.get(metric__code="api_calls").pk,
                                                        sub.plan.charges.get(metric__code="cpu_seconds").pk}
    # invoiced in Odoo: the usage lines are frozen for the push
    assert OdooSyncState.objects.filter(kind=SyncKind.USAGE, frozen=True).count() == 2
    [event] = events("invoice.created")
    assert event["object_type"] == "invoice" and event["invoice"]["lago_id"] == str(invoice.pk)
    assert event["invoice"]["total_amount_cents"] == 6126
    InvoiceResponse.parse_obj(event["invoice"])  # what the official Lago client requires


def test_payment_and_reversal_emit_status_events_once(fake_odoo, invoiced):
    sub, move_id = invoiced
    pull_invoices()
    assert pull_invoices().events == 0  # nothing changed: no event, however often we pull
    fake_odoo.register_payment(move_id)
    assert pull_invoices().events == 1
    [paid] = events("invoice.payment_status_updated")
    assert paid["invoice"]["payment_status"] == "succeeded" and paid["invoice"]["total_due_amount_cents"] == 0
    refund = fake_odoo.reverse_invoice(move_id)
    pull_invoices()
    [voided] = events("invoice.voided")
    assert voided["invoice"]["status"] == "voided"
    credit_note = CreditNote.objects.get(odoo_move_id=refund)  # a refund is a credit note, never an invoice
    assert credit_note.subscription == sub and not Invoice.objects.filter(odoo_move_id=refund).exists()
    assert [e["webhook_type"] for e in events()] == ["invoice.created", "invoice.generated",
                                                     "invoice.payment_status_updated", "invoice.voided",
                                                     "credit_note.created"]


def test_usage_frozen_once_invoiced_is_never_rewritten(fake_odoo, catalog, invoiced):
    sub, _ = invoiced
    pull_invoices()
    catalog.rate(sub, catalog.api_charge, units="999", amount="19.980000")
    push_cycle()
    assert fake_odoo.store.writes_to_invoiced_lines == 0


def test_cursor_advances_and_foreign_invoices_are_ignored(fake_odoo, invoiced):
    partner = fake_odoo.store.create("res.partner", [{"name": "Not ours"}])[0]
    fake_odoo.store.create("account.move", [{"move_type": "out_invoice", "partner_id": partner,
                                             "invoice_line_ids": [[0, 0, {"name": "x", "price_unit": 5.0}]]}])
    report = pull_invoices()
    assert report.invoices_created == 1 and report.moves_seen == 1
    assert OdooPullCursor.objects.get(name="account.move").write_date > "2026-01-01"


def test_invoice_api_lists_filters_and_scopes_to_the_service(fake_odoo, invoiced, api_client, other_api_client):
    sub, _ = invoiced
    pull_invoices()
    invoice = Invoice.objects.get()
    body = api_client.get("/api/v1/invoices").json()
    assert [i["lago_id"] for i in body["invoices"]] == [str(invoice.pk)]
    assert body["meta"] == {"current_page": 1, "next_page": None, "prev_page": None, "total_pages": 1,
                            "total_count": 1}
    assert api_client.get("/api/v1/invoices", {"status": "voided"}).json()["invoices"] == []
    assert api_client.get("/api/v1/invoices", {"payment_status": "pending"}).json()["meta"]["total_count"] == 1
    assert api_client.get("/api/v1/invoices", {"status": "nope"}).status_code == 422
    external = sub.account_link.external_id
    assert len(api_client.get("/api/v1/invoices", {"external_customer_id": external}).json()["invoices"]) == 1
    detail = api_client.get(f"/api/v1/invoices/{invoice.pk}")
    assert detail.status_code == 200 and detail.json()["invoice"]["fees_amount_cents"] == 6126
    assert len(api_client.get(f"/api/v1/customers/{external}/invoices").json()["invoices"]) == 1
    # another service sees nothing of it
    assert other_api_client.get("/api/v1/invoices").json()["invoices"] == []
    missing = other_api_client.get(f"/api/v1/invoices/{invoice.pk}")
    assert missing.status_code == 404 and missing.json()["code"] == "invoice_not_found"
    assert other_api_client.get(f"/api/v1/customers/{external}/invoices").json()["code"] == "customer_not_found"
    assert api_client.get("/api/v1/invoices/not-a-uuid").status_code == 404


def test_invoice_api_customer_filter_skips_unknown_and_deleted_customers(fake_odoo, invoiced, api_client):
    from django.utils import timezone

    sub, _ = invoiced
    pull_invoices()
    body = api_client.get("/api/v1/invoices", {"external_customer_id": "nobody"}).json()
    assert body["invoices"] == [] and body["meta"]["total_count"] == 0
    link = sub.account_link
    link.deleted_at = timezone.now()
    link.save(update_fields=["deleted_at"])
    assert api_client.get("/api/v1/invoices", {"external_customer_id": link.external_id}).json()["invoices"] == []
    missing = api_client.get(f"/api/v1/customers/{link.external_id}/invoices")
    assert missing.status_code == 404 and missing.json()["code"] == "customer_not_found"


def test_invoice_list_costs_the_same_queries_for_one_invoice_or_a_page(fake_odoo, catalog, api_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(3):
        sub = catalog.subscription()
        catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000")
        catalog.rate(sub, catalog.cpu_charge, units="1234", amount="9.255000")
    push_cycle()
    fake_odoo.run_invoicing_cron(today=BILLING_DAY)
    assert pull_invoices().invoices_created == 3
    api_client.get("/api/v1/invoices")  # the key's last_used_at is written on first use only
    counts = []
    for per_page in (1, 3):
        with CaptureQueriesContext(connection) as queries:
            body = api_client.get("/api/v1/invoices", {"per_page": per_page}).json()
        assert len(body["invoices"]) == per_page and len(body["invoices"][0]["fees"]) == 3
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_invoice_api_requires_a_key(client):
    response = client.get("/api/v1/invoices")
    assert response.status_code == 401 and response.json() == {"status": 401, "error": "Unauthorized"}


def test_draft_invoice_is_drafted_then_announced_once_posted(fake_odoo, catalog):
    sub = catalog.subscription()
    push_cycle()
    sub.refresh_from_db()
    partner = fake_odoo.records("res.partner", [["ref", "=like", "fb-cus-%"]])[0]["id"]
    move = fake_odoo.store.create("account.move", [{
        "move_type": "out_invoice", "partner_id": partner,
        "invoice_line_ids": [[0, 0, {"name": "manual", "price_unit": 10.0, "subscription_id":
                                     sub.odoo_sale_order_id}]]}])[0]
    assert pull_invoices().events == 1  # Lago's invoice.drafted
    assert Invoice.objects.get(odoo_move_id=move).status == "draft"
    [drafted] = events()
    assert drafted["webhook_type"] == "invoice.drafted" and drafted["invoice"]["status"] == "draft"
    assert pull_invoices().events == 0  # once
    from odoo_bridge.testing.business import account_move_action_post

    account_move_action_post(fake_odoo.store, "account.move", [move])
    pull_invoices()
    assert [e["webhook_type"] for e in events()] == ["invoice.drafted", "invoice.created", "invoice.generated"]
    assert Invoice.objects.get(odoo_move_id=move).number.startswith("INV/")


def test_unpaid_invoice_past_its_due_date_is_announced_overdue_once(fake_odoo, invoiced):
    from odoo_bridge.pull import announce_overdue_invoices

    _, move_id = invoiced
    pull_invoices()
    invoice = Invoice.objects.get(odoo_move_id=move_id)
    assert invoice.payment_due_date is not None and invoice.payment_status == "pending"
    due = dt.datetime.combine(invoice.payment_due_date, dt.time(12), tzinfo=dt.timezone.utc)
    assert announce_overdue_invoices(now=due) == 0  # due today: not overdue yet
    assert announce_overdue_invoices(now=due + dt.timedelta(days=1)) == 1
    [overdue] = events("invoice.payment_overdue")
    assert overdue["invoice"]["lago_id"] == str(invoice.pk) and overdue["invoice"]["payment_overdue"] is True
    assert announce_overdue_invoices(now=due + dt.timedelta(days=2)) == 0  # once


def test_a_paid_invoice_is_never_overdue(fake_odoo, invoiced):
    from odoo_bridge.pull import announce_overdue_invoices

    _, move_id = invoiced
    pull_invoices()
    Invoice.objects.filter(odoo_move_id=move_id).update(payment_status="succeeded")
    assert announce_overdue_invoices(now=dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)) == 0


def test_odoo_down_mid_pull_keeps_the_cursor_and_the_next_pull_catches_up(fake_odoo, invoiced):
    _, move_id = invoiced
    fake_odoo.faults.add("http_status", model="account.move.line", method="search_read", status=502)
    report = pull_invoices()
    assert report.aborted and report.invoices_created == 0
    assert OdooConnectionState.objects.get().status == ConnectionStatus.DOWN
    assert OdooPullCursor.objects.get(name="account.move").write_date == "1970-01-01 00:00:00"  # read again
    report = pull_invoices()
    assert not report.aborted and report.invoices_created == 1
    assert Invoice.objects.get().odoo_move_id == move_id
    assert [e["webhook_type"] for e in events()] == ["invoice.created", "invoice.generated"]


def test_key_revoked_before_a_pull_breaks_the_connection_and_stops_sending_it(fake_odoo, invoiced):
    fake_odoo.revoke_api_key()
    report = pull_invoices()
    assert report.aborted
    assert OdooConnectionState.objects.get().status == ConnectionStatus.BROKEN
    denied = fake_odoo.access_denied_count
    for _ in range(3):
        assert "broken" in pull_invoices().aborted
    assert fake_odoo.access_denied_count == denied


@pytest.mark.django_db(transaction=True)
def test_a_second_pull_while_one_runs_reads_nothing(fake_odoo, invoiced):
    import threading

    from django.db import connection

    from odoo_bridge.connection import ADVISORY_NAMESPACE_CYCLE, advisory_locks

    with advisory_locks(ADVISORY_NAMESPACE_CYCLE, ["pull"]) as held:
        assert held == {"pull"}
        fake_odoo.reset_counters()
        out = []

        def other():
            try:
                out.append(pull_invoices())
            finally:
                connection.close()

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert out[0].aborted == "another pull is running"
    assert fake_odoo.call_count(model="account.move") == 0 and not Invoice.objects.exists()
    assert pull_invoices().invoices_created == 1


def test_credit_notes_reduce_what_a_subscription_was_billed(fake_odoo, invoiced):
    """Billed 61.26 (49.00 fee + 3.00 + 9.26 usage); the invoice is reversed by a credit note: net 0.
    Odoo makes the refunded one-off lines invoiceable again: the next run bills them once more, net 61.26."""
    from odoo_bridge.selectors import billed_totals

    sub, move_id = invoiced
    pull_invoices()
    totals = billed_totals(sub)
    assert (totals.untaxed, totals.usage) == (Decimal("61.26"), Decimal("12.26"))
    fake_odoo.reverse_invoice(move_id)
    pull_invoices()
    assert Invoice.objects.get(odoo_move_id=move_id).status == "voided"
    assert billed_totals(sub).untaxed == 0 and billed_totals(sub).usage == 0
    fake_odoo.run_invoicing_cron(today=dt.date(2027, 1, 1))
    pull_invoices()
    assert billed_totals(sub).usage == Decimal("12.26")
