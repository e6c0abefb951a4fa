"""Prepaid credits through Odoo (#14): a paid top-up is one posted Odoo invoice (invoice_type credit)
whose credits settle when Odoo says it is paid; consumed credits reduce the next subscription invoice
by one negative order line, exactly once whatever answer is lost."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.utils import timezone
from lago_python_client.client import Client
from lago_python_client.models import Customer, Wallet
from lago_python_client.models.invoice import InvoiceResponse
from lago_python_client.models.wallet import RecurringTransactionRule, RecurringTransactionRuleList, WalletResponse

from odoo_bridge.models import CreditNote, Invoice, OneOffInvoice
from odoo_bridge.pull import pull_invoices
from odoo_bridge.sync import push_cycle
from wallets import tasks
from wallets.models import RecurringTransactionRule as RuleRow
from wallets.models import Wallet as WalletRow
from wallets.models import WalletTransaction
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lago(live_server, api_key) -> Client:
    return Client(api_key=api_key, api_url=live_server.url)


def sent(*types: str) -> list[dict]:
    return [json.loads(bytes(e.body)) for e in WebhookEvent.objects.filter(webhook_type__in=types)
            .order_by("created_at")]


def test_paid_top_up_is_a_credit_invoice_in_odoo_settled_once_paid(lago, fake_odoo):
    lago.customers.create(Customer(external_id="cus_1", name="Acme", currency="CAD", country="CA", state="ON"))
    wallet = lago.wallets.create(Wallet(external_customer_id="cus_1", name="Main", rate_amount="2.5",
                                        paid_credits="40"))
    assert wallet.credits_balance == "0.0"

    push_cycle()
    push_cycle()
    [one_off] = OneOffInvoice.objects.all()
    [move] = fake_odoo.records("account.move", [["ref", "=", one_off.reference]])
    assert move["state"] == "posted" and move["amount_total"] == 100.0  # 40 credits x 2.5, untaxed
    [line] = fake_odoo.records("account.move.line", [["move_id", "=", move["id"]]])
    assert (line["name"], line["quantity"], line["price_unit"]) == ("Prepaid credits — Main", 40.0, 2.5)
    purchase = WalletTransaction.objects.get(transaction_status="purchased")
    assert purchase.invoice_id == one_off.pk and purchase.status == "pending"

    pull_invoices()
    invoice = lago.invoices.find(str(one_off.pk))
    assert (invoice.invoice_type, invoice.status, invoice.payment_status) == ("credit", "finalized", "pending")
    assert [f.item.type for f in invoice.fees.__root__] == ["credit"]
    [added] = sent("invoice.paid_credit_added")
    InvoiceResponse.parse_obj(added["invoice"])
    assert lago.wallets.find(wallet.lago_id).credits_balance == "0.0"  # not paid yet

    fake_odoo.register_payment(move["id"])
    pull_invoices()
    pull_invoices()
    found = lago.wallets.find(wallet.lago_id)
    assert (found.credits_balance, found.balance_cents) == ("40.0", 10000)
    purchase.refresh_from_db()
    assert purchase.status == "settled" and purchase.settled_at is not None
    [updated] = sent("wallet_transaction.updated")
    assert updated["wallet_transaction"]["status"] == "settled"
    assert updated["wallet_transaction"]["lago_invoice_id"] == str(one_off.pk)
    WalletResponse.parse_obj(sent("wallet.updated")[-1]["wallet"])
    assert Invoice.objects.count() == 1 and OneOffInvoice.objects.count() == 1


def test_a_cancelled_top_up_invoice_fails_the_purchase(lago, fake_odoo):
    lago.customers.create(Customer(external_id="cus_1", name="Acme", currency="CAD"))
    lago.wallets.create(Wallet(external_customer_id="cus_1", rate_amount="1", paid_credits="10"))
    push_cycle()
    [one_off] = OneOffInvoice.objects.all()
    refund = fake_odoo.reverse_invoice(one_off.odoo_move_id)
    pull_invoices()
    purchase = WalletTransaction.objects.get()
    assert purchase.status == "failed" and purchase.failed_at is not None
    assert CreditNote.objects.get(odoo_move_id=refund).invoice == Invoice.objects.get(pk=one_off.pk)
    assert not Invoice.objects.filter(odoo_move_id=refund).exists()  # a refund is a credit note, never an invoice
    assert lago.invoices.find(str(one_off.pk)).status == "voided"
    assert [e["wallet_transaction"]["status"] for e in sent("wallet_transaction.updated")] == ["failed"]


def test_consumed_credits_reduce_the_next_invoice_once(lago, fake_odoo, catalog):
    sub = catalog.subscription()
    push_cycle()  # the order exists before the window closes
    wallet = lago.wallets.create(Wallet(external_customer_id=sub.account_link.external_id, rate_amount="1",
                                        granted_credits="30"))
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000", state="open")
    assert lago.wallets.find(wallet.lago_id).ongoing_balance_cents == 2700  # balance minus current usage
    assert lago.wallets.find(wallet.lago_id).credits_ongoing_balance == "27.0"

    # the window closes: 3.00 + 9.255 (9.26 in Odoo) + the 49.00 arrears fee = 61.26 before credits
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000")
    catalog.rate(sub, catalog.cpu_charge, units="1234", amount="9.255000")
    catalog.fee(sub, amount="49.000000")
    # Odoo commits the credit line but the answer is lost: the next cycle finds it, never adds a second
    fake_odoo.faults.add("lost_response", model="sale.order.line", method="create", times=1)
    assert push_cycle().aborted
    later = timezone.now() + dt.timedelta(hours=1)
    push_cycle(now=later)
    push_cycle(now=later + dt.timedelta(hours=1))
    sub.refresh_from_db()
    credit_lines = fake_odoo.records("sale.order.line", [["order_id", "=", sub.odoo_sale_order_id],
                                                         ["name", "=like", "Prepaid credits%"]])
    assert [(ln["name"], ln["product_uom_qty"], ln["price_unit"]) for ln in credit_lines] == [
        ("Prepaid credits (period ending 2026-11-30)", 1.0, -30.0)]

    [move_id] = fake_odoo.run_invoicing_cron(today=dt.date(2026, 12, 1))
    [move] = fake_odoo.records("account.move", [["id", "=", move_id]])
    assert move["amount_total"] == 31.26  # 61.26 - 30.00 of credits, once
    push_cycle(now=later + dt.timedelta(hours=2))
    pull_invoices()
    invoice = Invoice.objects.get(odoo_move_id=move_id)
    assert [ln.amount for ln in invoice.lines.all() if ln.prepaid_credit] == [Decimal("-30.00")]
    rendered = lago.invoices.find(str(invoice.pk))
    assert (rendered.fees_amount_cents, rendered.prepaid_credit_amount_cents, rendered.total_amount_cents) == (
        6126, 3000, 3126)
    assert not any(f.item.invoice_display_name.startswith("Prepaid") for f in rendered.fees.__root__)
    found = lago.wallets.find(wallet.lago_id)
    assert (found.credits_balance, found.consumed_credits, found.balance_cents) == ("0.0", "30.0", 0)
    [consumed] = WalletTransaction.objects.filter(transaction_status="invoiced")
    assert (consumed.transaction_type, consumed.status, consumed.amount) == ("outbound", "settled", Decimal("30"))
    assert consumed.subscription_id == sub.pk

    # the next window closes with no credit left: nothing more is deducted
    catalog.rate(sub, catalog.api_charge, units="10", amount="0.200000", start=dt.datetime(
        2026, 12, 1, tzinfo=dt.timezone.utc), end=dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc))
    push_cycle(now=dt.datetime(2027, 1, 1, 1, tzinfo=dt.timezone.utc))
    assert WalletTransaction.objects.filter(transaction_status="invoiced").count() == 1
    assert len(fake_odoo.records("sale.order.line", [["name", "=like", "Prepaid credits%"]])) == 1


def test_a_recurring_paid_top_up_is_a_one_off_odoo_invoice_settled_once_paid(lago, fake_odoo):
    lago.customers.create(Customer(external_id="cus_1", name="Acme", currency="CAD", country="CA", state="ON"))
    wallet = lago.wallets.create(Wallet(
        external_customer_id="cus_1", name="Main", rate_amount="2", recurring_transaction_rules=(
            RecurringTransactionRuleList(__root__=[RecurringTransactionRule(
                trigger="interval", interval="weekly", paid_credits="15", transaction_name="Weekly credits")]))))
    past = timezone.now() - dt.timedelta(days=8)
    WalletRow.objects.update(created_at=past)
    RuleRow.objects.update(created_at=past)
    assert tasks.run_recurring_top_ups()["interval"] == 1
    push_cycle()
    push_cycle()
    [one_off] = OneOffInvoice.objects.all()
    [move] = fake_odoo.records("account.move", [["ref", "=", one_off.reference]])
    assert move["amount_total"] == 30.0  # 15 credits x 2, untaxed
    purchase = WalletTransaction.objects.get(source="interval")
    assert (purchase.transaction_status, purchase.status, purchase.invoice_id) == ("purchased", "pending", one_off.pk)
    assert tasks.run_recurring_top_ups()["interval"] == 0 and OneOffInvoice.objects.count() == 1
    fake_odoo.register_payment(move["id"])
    pull_invoices()
    assert lago.wallets.find(wallet.lago_id).credits_balance == "15.0"
    assert [(e["wallet_transaction"]["source"], e["wallet_transaction"]["status"])
            for e in sent("wallet_transaction.updated")] == [("interval", "settled")]


def test_credits_consumed_by_an_invoice_cross_the_threshold_in_the_same_transaction(lago, fake_odoo, catalog):
    sub = catalog.subscription()
    push_cycle()
    wallet = lago.wallets.create(Wallet(
        external_customer_id=sub.account_link.external_id, rate_amount="1", granted_credits="60",
        recurring_transaction_rules=RecurringTransactionRuleList(__root__=[RecurringTransactionRule(
            trigger="threshold", threshold_credits="20", granted_credits="25")])))
    catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000")
    catalog.fee(sub, amount="49.000000")
    push_cycle(now=timezone.now() + dt.timedelta(hours=1))  # 52.00 consumed: 60 -> 8, then topped up
    [consumed] = WalletTransaction.objects.filter(transaction_status="invoiced")
    [top_up] = WalletTransaction.objects.filter(source="threshold")
    assert (consumed.credit_amount, top_up.credit_amount, top_up.status) == (Decimal("52"), Decimal("25"), "settled")
    assert top_up.created_at >= consumed.created_at
    assert lago.wallets.find(wallet.lago_id).credits_balance == "33.0"
