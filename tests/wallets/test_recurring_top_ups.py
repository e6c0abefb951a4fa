"""Recurring top-ups (Lago's ``recurring_transaction_rules``) and wallet metadata (#14), through the official
Lago client against a live server and the beat task: rules are rendered and replaced as Lago does, a
threshold rule tops up once per crossing (also when two runs race), an interval rule once per due date
(also when its task is retried or runs twice at once), and the balance is always what the stored
transactions say."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer, Wallet, WalletTransaction
from lago_python_client.models.wallet import RecurringTransactionRule, RecurringTransactionRuleList, WalletResponse
from lago_python_client.models.wallet_transaction import WalletTransactionResponse

from tests.odoo_bridge.conftest import Catalog
from wallets import services, tasks
from wallets.models import RecurringTopUp
from wallets.models import RecurringTransactionRule as RuleRow
from wallets.models import Wallet as WalletRow
from wallets.models import WalletTransaction as TransactionRow
from wallets.selectors import credits_of
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lago(live_server, api_key) -> Client:
    return Client(api_key=api_key, api_url=live_server.url)


def rules(*items: RecurringTransactionRule) -> RecurringTransactionRuleList:
    return RecurringTransactionRuleList(__root__=list(items))


def refused(call) -> LagoApiError:
    with pytest.raises(LagoApiError) as error:
        call()
    return error.value


def sent(*types: str) -> list[tuple[str, dict]]:
    rows = WebhookEvent.objects.filter(webhook_type__in=types).order_by("created_at")
    return [(e.webhook_type, json.loads(bytes(e.body))) for e in rows]


def assert_balance_is_derived(lago: Client, wallet_id: str) -> None:
    """credits_balance = settled inbound - settled outbound, over every transaction the API lists."""
    listed = lago.wallet_transactions.find_all(wallet_id, {"per_page": 100})["wallet_transactions"]
    settled = [t for t in listed if t.status == "settled"]
    total = (sum(Decimal(t.credit_amount) for t in settled if t.transaction_type == "inbound")
             - sum(Decimal(t.credit_amount) for t in settled if t.transaction_type == "outbound"))
    assert Decimal(lago.wallets.find(wallet_id).credits_balance) == total == credits_of(WalletRow.objects.get(
        pk=wallet_id))


def backdate(wallet_id: str, *, days: int) -> None:
    """The wallet and its rules as if made ``days`` ago (due dates are counted from then)."""
    past = timezone.now() - dt.timedelta(days=days)
    WalletRow.objects.filter(pk=wallet_id).update(created_at=past)
    RuleRow.objects.filter(wallet_id=wallet_id).update(created_at=past)


def test_threshold_rule_and_metadata_through_the_client(lago):
    lago.customers.create(Customer(external_id="cus_1", name="Acme", currency="CAD"))
    wallet = lago.wallets.create(Wallet(
        external_customer_id="cus_1", rate_amount="1", granted_credits="20", metadata={"team": "ops", "cc": None},
        recurring_transaction_rules=rules(RecurringTransactionRule(
            trigger="threshold", threshold_credits="5", granted_credits="10", transaction_name="Auto top-up",
            transaction_metadata=[{"key": "origin", "value": "rule"}]))))
    assert isinstance(wallet, WalletResponse) and wallet.metadata == {"team": "ops", "cc": None}
    [rule] = wallet.recurring_transaction_rules.__root__
    assert (rule.trigger, rule.method, rule.status, rule.threshold_credits, rule.granted_credits,
            rule.paid_credits, rule.interval, rule.transaction_name) == (
        "threshold", "fixed", "active", "5.0", "10.0", "0.0", None, "Auto top-up")
    assert rule.transaction_metadata == [{"key": "origin", "value": "rule"}] and rule.lago_id

    # the void that brings the balance to 4 (<= 5) tops up in the same request
    [void] = lago.wallet_transactions.create(WalletTransaction(wallet_id=wallet.lago_id, voided_credits="16"))[
        "wallet_transactions"]
    assert void.transaction_status == "voided"
    assert lago.wallets.find(wallet.lago_id).credits_balance == "14.0"
    [top_up] = lago.wallet_transactions.find_all(wallet.lago_id, {"transaction_status": "granted"})[
        "wallet_transactions"][:1]
    assert (top_up.source, top_up.status, top_up.credit_amount, top_up.name, top_up.metadata) == (
        "threshold", "settled", "10.0", "Auto top-up", [{"key": "origin", "value": "rule"}])
    assert tasks.run_recurring_top_ups()["threshold"] == 0  # 14 > 5: nothing more
    created = [b["wallet_transaction"] for t, b in sent("wallet_transaction.created")]
    assert [c["source"] for c in created] == ["manual", "manual", "threshold"]
    for body in created:
        WalletTransactionResponse.parse_obj(body)

    # Lago's update: the rule named by lago_id is updated in place ...
    updated = lago.wallets.update(Wallet(recurring_transaction_rules=rules(RecurringTransactionRule(
        lago_id=rule.lago_id, trigger="threshold", threshold_credits="8"))), wallet.lago_id)
    [same] = updated.recurring_transaction_rules.__root__
    assert (same.lago_id, same.threshold_credits, same.granted_credits) == (rule.lago_id, "8.0", "10.0")
    # ... a rule without one replaces it (the old one is terminated) ...
    replaced = lago.wallets.update(Wallet(recurring_transaction_rules=rules(RecurringTransactionRule(
        trigger="interval", interval="monthly", method="target", target_ongoing_balance="50"))), wallet.lago_id)
    [new] = replaced.recurring_transaction_rules.__root__
    assert new.lago_id != rule.lago_id and (new.trigger, new.interval, new.method, new.target_ongoing_balance,
                                            new.grants_target_top_up) == ("interval", "monthly", "target", "50.0",
                                                                          False)
    assert RuleRow.objects.get(pk=rule.lago_id).status == "terminated"
    # ... an update without the list keeps the rules; an empty list removes them
    assert len(lago.wallets.update(Wallet(name="Main"), wallet.lago_id).recurring_transaction_rules.__root__) == 1
    assert lago.wallets.update(Wallet(recurring_transaction_rules=rules()), wallet.lago_id
                               ).recurring_transaction_rules.__root__ == []

    # Lago's validation codes
    for bad in (RecurringTransactionRule(trigger="interval"),  # no interval
                RecurringTransactionRule(trigger="interval", interval="daily"),
                RecurringTransactionRule(trigger="threshold"),  # no threshold_credits
                RecurringTransactionRule(trigger="threshold", threshold_credits="-1"),
                RecurringTransactionRule(trigger="threshold", threshold_credits="5", method="target"),
                RecurringTransactionRule(trigger="threshold", threshold_credits="5", paid_credits="abc"),
                RecurringTransactionRule(trigger="when", threshold_credits="5"),
                RecurringTransactionRule(trigger="interval", interval="weekly", started_at="2026-13-45T00:00:00Z"),
                RecurringTransactionRule(trigger="interval", interval="weekly", started_at="soon"),
                RecurringTransactionRule(trigger="interval", interval="weekly",
                                         transaction_metadata=[{"key": "k"}])):
        error = refused(lambda: lago.wallets.update(Wallet(recurring_transaction_rules=rules(bad)), wallet.lago_id))
        assert (error.status_code, error.response["error_details"]) == (
            422, {"recurring_transaction_rules": ["invalid_recurring_rule"]}), bad
    for huge in ("1" + "0" * 20, "1" + "0" * 15):  # the credits, then their amount at the rate
        too_much = rules(RecurringTransactionRule(trigger="interval", interval="weekly", paid_credits=huge))
        assert refused(lambda: lago.wallets.update(Wallet(recurring_transaction_rules=too_much), wallet.lago_id)
                       ).response["error_details"] == {"recurring_transaction_rules": ["value_is_out_of_range"]}
    two = rules(RecurringTransactionRule(trigger="interval", interval="weekly", granted_credits="1"),
                RecurringTransactionRule(trigger="threshold", threshold_credits="1", granted_credits="1"))
    assert refused(lambda: lago.wallets.update(Wallet(recurring_transaction_rules=two), wallet.lago_id)).response[
        "error_details"] == {"recurring_transaction_rules": ["invalid_number_of_recurring_rules"]}

    # wallet metadata: replaced by an update, and Lago's /metadata endpoints
    assert lago.wallets.update(Wallet(metadata={"tier": "gold"}), wallet.lago_id).metadata == {"tier": "gold"}
    assert lago.wallets.merge_metadata(wallet.lago_id, {"region": "ca"}) == {"tier": "gold", "region": "ca"}
    assert lago.wallets.replace_metadata(wallet.lago_id, {"a": "1", "b": None}) == {"a": "1", "b": None}
    assert lago.wallets.delete_metadata_key(wallet.lago_id, "a") == {"b": None}
    assert lago.wallets.find(wallet.lago_id).metadata == {"b": None}
    assert lago.wallets.delete_all_metadata(wallet.lago_id) is None
    assert refused(lambda: lago.wallets.delete_metadata_key(wallet.lago_id, "b")).response[
        "code"] == "metadata_not_found"
    assert refused(lambda: lago.wallets.replace_metadata(wallet.lago_id, {"k": 3})).response[
        "error_details"] == {"metadata": ["value_is_invalid"]}
    assert refused(lambda: lago.wallets.merge_metadata("no-such-wallet", {"k": "v"})).response[
        "code"] == "wallet_not_found"
    assert_balance_is_derived(lago, wallet.lago_id)
    for webhook_type, body in sent("wallet.created", "wallet.updated"):
        WalletResponse.parse_obj(body["wallet"])


def test_paid_threshold_top_up_counts_until_its_invoice_fails(lago):
    lago.customers.create(Customer(external_id="cus_1", name="Acme", currency="CAD"))
    wallet = lago.wallets.create(Wallet(
        external_customer_id="cus_1", rate_amount="2", granted_credits="10",
        recurring_transaction_rules=rules(RecurringTransactionRule(trigger="threshold", threshold_credits="5",
                                                                   paid_credits="10"))))
    lago.wallet_transactions.create(WalletTransaction(wallet_id=wallet.lago_id, voided_credits="7"))
    [purchase] = TransactionRow.objects.filter(source="threshold")
    # a paid top-up: pending until its Odoo invoice is paid (the bridge's one-off invoice), 20.00 CAD
    assert (purchase.transaction_status, purchase.status, purchase.amount) == ("purchased", "pending", Decimal("20"))
    # the credits bought but not paid yet count: 2 + 10 pending > 5, no second top-up
    lago.wallet_transactions.create(WalletTransaction(wallet_id=wallet.lago_id, voided_credits="1"))
    assert tasks.run_recurring_top_ups()["threshold"] == 0
    assert TransactionRow.objects.filter(source="threshold").count() == 1
    # its invoice is cancelled in Odoo: the promised credits are gone, the rule tops up again
    with transaction.atomic():  # as the pull does, in the transaction of its invoice mirror
        assert services.fail_purchase(transaction_id=purchase.pk)
    assert TransactionRow.objects.filter(source="threshold", status="pending").count() == 1
    assert TransactionRow.objects.filter(source="threshold").count() == 2
    assert_balance_is_derived(lago, wallet.lago_id)


def race(target, runners: int = 2) -> list:
    barrier, results, errors = threading.Barrier(runners), [], []

    def run() -> None:
        try:
            barrier.wait()
            results.append(target())
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def test_a_threshold_crossing_raced_by_two_runs_tops_up_once(service):
    catalog = Catalog(service)
    sub = catalog.subscription()
    wallet = services.create_wallet(service=service, link=sub.account_link, data={
        "rate_amount": Decimal("1"), "granted_credits": Decimal("20"),
        "recurring_transaction_rules": [{"trigger": "threshold", "threshold_credits": "10",
                                         "granted_credits": "5"}]})
    # usage not invoiced yet lowers the ongoing balance to 20 - 12 = 8 (<= 10): the beat's job
    catalog.rate(sub, catalog.api_charge, units="600", amount="12.000000", state="open")
    results = race(tasks.run_recurring_top_ups)
    assert sorted(r["threshold"] for r in results) == [0, 1]
    assert TransactionRow.objects.filter(source="threshold").count() == 1
    # 8 + 5 = 13 > 10: the crossing is over; nothing more until the balance falls to 10 again
    assert tasks.run_recurring_top_ups()["threshold"] == 0
    catalog.rate(sub, catalog.api_charge, units="750", amount="15.000000", state="open")  # 25 - 15 = 10
    assert race(tasks.run_recurring_top_ups, 3) and TransactionRow.objects.filter(source="threshold").count() == 2
    assert credits_of(wallet) == Decimal("30")


def test_a_top_up_too_small_to_leave_the_threshold_fires_once_per_crossing(service):
    catalog = Catalog(service)
    sub = catalog.subscription()
    wallet = services.create_wallet(service=service, link=sub.account_link, data={
        "rate_amount": Decimal("1"), "granted_credits": Decimal("20"),
        "recurring_transaction_rules": [{"trigger": "threshold", "threshold_credits": "10",
                                         "granted_credits": "1"}]})
    catalog.rate(sub, catalog.api_charge, units="750", amount="15.000000", state="open")  # ongoing 5
    assert [tasks.run_recurring_top_ups()["threshold"] for _ in range(3)] == [1, 0, 0]  # 6: still below
    services.create_transactions(wallet=wallet, data={"granted_credits": Decimal("10")})  # 16: above again
    assert TransactionRow.objects.filter(source="threshold").count() == 1
    services.create_transactions(wallet=wallet, data={"voided_credits": Decimal("7")})  # 9: a new crossing
    assert TransactionRow.objects.filter(source="threshold").count() == 2
    assert credits_of(wallet) == Decimal("20") + 1 + 10 - 7 + 1


def test_interval_rule_tops_up_once_per_due_date(lago):
    lago.customers.create(Customer(external_id="cus_1", name="Acme", currency="CAD"))
    wallet = lago.wallets.create(Wallet(
        external_customer_id="cus_1", rate_amount="1", granted_credits="5",
        recurring_transaction_rules=rules(RecurringTransactionRule(
            trigger="interval", interval="weekly", granted_credits="3",
            transaction_metadata=[{"key": "plan", "value": "weekly"}]))))
    assert tasks.run_recurring_top_ups()["interval"] == 0  # the creation is not a due date
    backdate(wallet.lago_id, days=8)  # due a day ago
    # the task run twice (a retry after a lost acknowledgement) and raced: one top-up for the date
    assert tasks.run_recurring_top_ups.apply().get()["interval"] == 1
    assert tasks.run_recurring_top_ups.apply().get()["interval"] == 0
    assert sorted(r["interval"] for r in race(tasks.run_recurring_top_ups)) == [0, 0]
    [top_up] = lago.wallet_transactions.find_all(wallet.lago_id, {"transaction_status": "granted"})[
        "wallet_transactions"][:1]
    assert (top_up.source, top_up.credit_amount, top_up.metadata) == ("interval", "3.0",
                                                                      [{"key": "plan", "value": "weekly"}])
    [run] = RecurringTopUp.objects.all()
    assert run.due_at == WalletRow.objects.get(pk=wallet.lago_id).created_at + dt.timedelta(weeks=1)
    backdate(wallet.lago_id, days=15)  # the next week is due
    assert sorted(r["interval"] for r in race(tasks.run_recurring_top_ups)) == [0, 1]
    assert lago.wallets.find(wallet.lago_id).credits_balance == "11.0"
    assert_balance_is_derived(lago, wallet.lago_id)


def test_a_task_that_fails_before_commit_is_retried_into_one_top_up(lago, monkeypatch):
    lago.customers.create(Customer(external_id="cus_1", name="Acme", currency="CAD"))
    wallet = lago.wallets.create(Wallet(
        external_customer_id="cus_1", rate_amount="1", granted_credits="5",
        recurring_transaction_rules=rules(RecurringTransactionRule(trigger="interval", interval="monthly",
                                                                   method="target", target_ongoing_balance="12",
                                                                   grants_target_top_up=True))))
    backdate(wallet.lago_id, days=40)
    real_event, calls = services._wallet_event, []

    def broker_down_once(wallet, webhook_type):  # the webhook outbox write fails inside the top-up
        calls.append(webhook_type)
        if len(calls) == 1:
            raise ConnectionError("outbox unavailable")
        real_event(wallet, webhook_type)

    monkeypatch.setattr(services, "_wallet_event", broker_down_once)
    with pytest.raises(ConnectionError):
        tasks.run_recurring_top_ups()
    assert not RecurringTopUp.objects.exists() and not TransactionRow.objects.filter(source="interval").exists()
    assert tasks.run_recurring_top_ups()["interval"] == 1  # the retry
    assert tasks.run_recurring_top_ups()["interval"] == 0
    [top_up] = TransactionRow.objects.filter(source="interval")
    # target 12, ongoing 5: the gap, granted (grants_target_top_up)
    assert (top_up.transaction_status, top_up.credit_amount) == ("granted", Decimal("7"))
    assert lago.wallets.find(wallet.lago_id).credits_ongoing_balance == "12.0"


def test_expired_rules_end_and_terminated_wallets_end_their_rules(lago):
    lago.customers.create(Customer(external_id="cus_1", name="Acme", currency="CAD"))
    soon = (timezone.now() + dt.timedelta(minutes=5)).replace(microsecond=0)
    wallet = lago.wallets.create(Wallet(
        external_customer_id="cus_1", rate_amount="1", recurring_transaction_rules=rules(RecurringTransactionRule(
            trigger="interval", interval="yearly", granted_credits="1", expiration_at=soon.isoformat()))))
    [rule] = wallet.recurring_transaction_rules.__root__
    assert rule.expiration_at == soon.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert tasks.run_recurring_top_ups()["rules_expired"] == 0
    RuleRow.objects.update(expiration_at=timezone.now() - dt.timedelta(seconds=1))
    backdate(wallet.lago_id, days=400)
    assert tasks.run_recurring_top_ups() == {"rules_expired": 1, "interval": 0, "threshold": 0}
    assert lago.wallets.find(wallet.lago_id).recurring_transaction_rules.__root__ == []
    past = refused(lambda: lago.wallets.update(Wallet(recurring_transaction_rules=rules(RecurringTransactionRule(
        trigger="interval", interval="weekly", expiration_at="2020-01-01T00:00:00Z"))), wallet.lago_id))
    assert past.response["error_details"] == {"recurring_transaction_rules": ["invalid_recurring_rule"]}

    lago.wallets.update(Wallet(recurring_transaction_rules=rules(RecurringTransactionRule(
        trigger="threshold", threshold_credits="1", granted_credits="1"))), wallet.lago_id)
    lago.wallets.destroy(wallet.lago_id)
    assert not RuleRow.objects.filter(status="active").exists()


@pytest.mark.slow
def test_the_beat_entry_run_by_a_real_worker_tops_up_once_however_often_it_is_sent(lago, start_celery_worker):
    from django.conf import settings

    from billing_project.celery import app

    lago.customers.create(Customer(external_id="cus_1", name="Acme", currency="CAD"))
    wallet = lago.wallets.create(Wallet(
        external_customer_id="cus_1", rate_amount="1", recurring_transaction_rules=rules(RecurringTransactionRule(
            trigger="interval", interval="monthly", granted_credits="4"))))
    backdate(wallet.lago_id, days=40)
    worker = start_celery_worker(queues="celery", concurrency=2)
    entry = settings.CELERY_BEAT_SCHEDULE["wallet-recurring-top-ups"]
    for _ in range(3):  # beat's own message, sent three times (a redelivery, an overlapping beat)
        app.send_task(entry["task"], **entry["options"])

    def done() -> int:
        return sum(1 for line in worker.log().splitlines() if f"Task {entry['task']}[" in line and "succeeded" in line)

    deadline = time.monotonic() + 60
    while done() < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert done() == 3, worker.log()
    assert TransactionRow.objects.filter(source="interval").count() == 1
    assert lago.wallets.find(wallet.lago_id).credits_balance == "4.0"


def test_malformed_rules_and_metadata_are_lago_422s_never_500s(api_client):
    assert api_client.post("/api/v1/customers", {"customer": {"external_id": "cus_1", "name": "Acme"}},
                           format="json").status_code == 200
    base = {"external_customer_id": "cus_1", "rate_amount": "1"}
    for rules_value, code in (({"trigger": "interval"}, "invalid_recurring_rule"),
                              ("weekly", "invalid_recurring_rule"),
                              (["weekly"], "invalid_recurring_rule"),
                              ([{"trigger": "threshold", "threshold_credits": "1", "colour": "red"}],
                               "invalid_recurring_rule"),
                              ([{"trigger": "threshold", "threshold_credits": [1]}], "invalid_recurring_rule"),
                              ([{"trigger": "threshold", "threshold_credits": "NaN"}], "invalid_recurring_rule"),
                              ([{"trigger": "threshold", "threshold_credits": "1", "grants_target_top_up": "yes"}],
                               "invalid_recurring_rule"),
                              ([{"trigger": "threshold", "threshold_credits": "1",
                                 "invoice_requires_successful_payment": True}], "not_supported"),
                              ([{"trigger": "threshold", "threshold_credits": "1",
                                 "payment_method": {"payment_method_type": "manual"}}], "not_supported")):
        response = api_client.post("/api/v1/wallets", {"wallet": {**base, "recurring_transaction_rules": rules_value}},
                                   format="json")
        assert (response.status_code, response.json()["error_details"]) == (
            422, {"recurring_transaction_rules": [code]}), rules_value
    for metadata in ("tag", {"k": 1}, {"": "v"}, {"k" * 101: "v"}, {"k": "v" * 256}):
        response = api_client.post("/api/v1/wallets", {"wallet": {**base, "metadata": metadata}}, format="json")
        assert (response.status_code, response.json()["error_details"]) == (422, {"metadata": ["value_is_invalid"]})
    assert not WalletRow.objects.exists()
    # a rule given as Lago renders it (read-only fields included) is accepted
    made = api_client.post("/api/v1/wallets", {"wallet": {**base, "recurring_transaction_rules": [{
        "trigger": "threshold", "threshold_credits": 1, "granted_credits": 2.5, "status": "active",
        "created_at": "2026-01-01T00:00:00Z", "applied_invoice_custom_sections": [],
        "invoice_requires_successful_payment": False}]}}, format="json")
    assert made.status_code == 200, made.content
    [rule] = made.json()["wallet"]["recurring_transaction_rules"]
    assert (rule["threshold_credits"], rule["granted_credits"], rule["invoice_requires_successful_payment"]) == (
        "1.0", "2.5", False)
