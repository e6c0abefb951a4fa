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
from lago_python_client.models.wallet import WalletResponse

from odoo_bridge.models import Invoice, OneOffInvoice
from odoo_bridge.pull import pull_invoices
from odoo_bridge.sync import push_cycle
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
    assert Invoice.objects.get(odoo_move_id=refund).odoo_move_type == "out_refund"
    assert lago.invoices.find(str(one_off.pk)).status == "voided"
    assert [e["wallet_transaction"]["status"] for e in sent("wallet_transaction.updated")] == ["failed"]
