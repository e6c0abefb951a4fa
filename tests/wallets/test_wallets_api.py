"""Wallets and prepaid credits (#14) through the official Lago client against a live server: every
answer parses into the client's models, the balance is what the settled transactions say, and each
change is announced by its webhook."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.utils import timezone
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer, Wallet, WalletTransaction
from lago_python_client.models.wallet import RecurringTransactionRule, RecurringTransactionRuleList
from lago_python_client.models.wallet_transaction import WalletTransactionResponse
from lago_python_client.models.wallet import WalletResponse

from wallets import tasks
from wallets.models import Wallet as WalletRow
from wallets.models import WalletTransaction as TransactionRow
from wallets.selectors import credits_of
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lago(live_server, api_key) -> Client:
    return Client(api_key=api_key, api_url=live_server.url)


@pytest.fixture
def other_lago(live_server, other_api_key) -> Client:
    return Client(api_key=other_api_key, api_url=live_server.url)


def sent(*types: str) -> list[tuple[str, dict]]:
    rows = WebhookEvent.objects.filter(webhook_type__in=types).order_by("created_at")
    return [(e.webhook_type, json.loads(bytes(e.body))) for e in rows]


def refused(call) -> LagoApiError:
    with pytest.raises(LagoApiError) as error:
        call()
    return error.value


def test_wallet_lifecycle_through_the_client(lago, other_lago):
    lago.customers.create(Customer(external_id="cus_1", name="Acme", currency="CAD"))
    expiry = (timezone.now() + dt.timedelta(days=30)).replace(microsecond=0)
    wallet = lago.wallets.create(Wallet(external_customer_id="cus_1", name="Prepaid", rate_amount="0.5",
                                        paid_credits="100", granted_credits="20", currency="CAD",
                                        expiration_at=expiry.isoformat()))
    assert isinstance(wallet, WalletResponse)
    # granted credits settle at once; paid ones wait for their Odoo invoice to be paid
    assert (wallet.status, wallet.rate_amount, wallet.credits_balance, wallet.balance_cents) == (
        "active", "0.5", "20.0", 1000)
    assert wallet.ongoing_balance_cents == 1000 and wallet.expiration_at == expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    transactions = lago.wallet_transactions.find_all(wallet.lago_id)["wallet_transactions"]
    assert sorted((t.transaction_status, t.status, t.credit_amount, t.amount) for t in transactions) == [
        ("granted", "settled", "20.0", "10.00"), ("purchased", "pending", "100.0", "50.00")]
    assert [w.lago_id for w in lago.wallets.find_all({"external_customer_id": "cus_1"})["wallets"]] == [
        wallet.lago_id]

    voided = lago.wallet_transactions.create(WalletTransaction(wallet_id=wallet.lago_id, voided_credits="5"))
    [void] = voided["wallet_transactions"]
    assert (void.transaction_type, void.transaction_status, void.credit_amount) == ("outbound", "voided", "5.0")
    assert lago.wallets.find(wallet.lago_id).credits_balance == "15.0"
    too_much = refused(lambda: lago.wallet_transactions.create(
        WalletTransaction(wallet_id=wallet.lago_id, voided_credits="15.5")))
    assert too_much.status_code == 422 and too_much.response["error_details"] == {
        "voided_credits": ["insufficient_credits"]}
    granted = lago.wallet_transactions.create(WalletTransaction(wallet_id=wallet.lago_id, granted_credits="4.5"))
    assert [t.credit_amount for t in granted["wallet_transactions"]] == ["4.5"]

    later = expiry + dt.timedelta(days=30)
    renamed = lago.wallets.update(Wallet(name="Credits", expiration_at=later.isoformat()), wallet.lago_id)
    assert renamed.name == "Credits" and renamed.credits_balance == "19.5"
    assert renamed.expiration_at == later.strftime("%Y-%m-%dT%H:%M:%SZ")

    # Lago's rules and what is not built
    second = refused(lambda: lago.wallets.create(Wallet(external_customer_id="cus_1", rate_amount="1")))
    assert second.response["error_details"] == {"customer": ["wallet_already_exists"]}
    rules = refused(lambda: lago.wallets.update(Wallet(recurring_transaction_rules=RecurringTransactionRuleList(
        __root__=[RecurringTransactionRule(trigger="interval", interval="monthly", paid_credits="10",
                                           purchase_order_number="PO-1")])), wallet.lago_id))
    assert rules.response["error_details"] == {"recurring_transaction_rules": ["not_supported"]}
    assert refused(lambda: other_lago.wallets.find(wallet.lago_id)).response["code"] == "wallet_not_found"
    assert refused(lambda: lago.wallets.find_all()).response["error_details"] == {
        "external_customer_id": ["value_is_mandatory"]}
    assert refused(lambda: lago.wallets.find_all({"external_customer_id": "nobody"})).response[
        "code"] == "customer_not_found"

    terminated = lago.wallets.destroy(wallet.lago_id)
    assert (terminated.status, terminated.credits_balance, terminated.balance_cents) == ("terminated", "0.0", 0)
    assert terminated.terminated_at is not None
    assert refused(lambda: lago.wallet_transactions.create(
        WalletTransaction(wallet_id=wallet.lago_id, granted_credits="1"))).status_code == 405

    # the balance is derived from the stored transactions, and every change was announced
    row = WalletRow.objects.get()
    assert credits_of(row) == Decimal(0)
    settled = TransactionRow.objects.filter(wallet=row, status="settled")
    assert sum(t.credit_amount for t in settled if t.transaction_type == "inbound") == Decimal("24.5")
    events = sent("wallet.created", "wallet.updated", "wallet.terminated", "wallet_transaction.created")
    assert [t for t, _ in events].count("wallet_transaction.created") == 5  # paid, granted, void, grant, void rest
    assert [t for t, _ in events][0] == "wallet.created" and [t for t, _ in events][-1] == "wallet.terminated"
    for webhook_type, body in events:
        if webhook_type.startswith("wallet_transaction."):
            WalletTransactionResponse.parse_obj(body["wallet_transaction"])
        else:
            WalletResponse.parse_obj(body["wallet"])


def test_expired_wallets_are_terminated_by_beat_with_their_credits_voided(lago):
    lago.customers.create(Customer(external_id="cus_1", name="Acme", currency="CAD"))
    wallet = lago.wallets.create(Wallet(external_customer_id="cus_1", rate_amount="1", granted_credits="12.5",
                                        expiration_at=(timezone.now() + dt.timedelta(minutes=5)).isoformat()))
    assert tasks.expire_wallets()["terminated"] == 0
    WalletRow.objects.update(expiration_at=timezone.now() - dt.timedelta(seconds=1))
    assert tasks.expire_wallets()["terminated"] == 1
    assert tasks.expire_wallets()["terminated"] == 0
    found = lago.wallets.find(wallet.lago_id)
    assert (found.status, found.credits_balance) == ("terminated", "0.0")
    [void] = [t for t in lago.wallet_transactions.find_all(wallet.lago_id, {"transaction_status": "voided"})[
        "wallet_transactions"]]
    assert void.credit_amount == "12.5" and void.source == "interval"
    assert [t for t, _ in sent("wallet.terminated")] == ["wallet.terminated"]
