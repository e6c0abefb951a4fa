"""Lago's OpenAPI, operation by operation (the contract of docs/api.md "Lago's OpenAPI,
operation by operation"): every operation of Lago's published document is either served —
a request of the documented shape reaches it (never a 405, never a 5xx) and its success
answer validates against Lago's own response schema — or listed in that table with the
answer it gets, which the test checks too.

The table of docs/api.md is the one place to edit when an operation becomes served: change
its answer to ``served``; if it needs data to succeed, add its request to ``PROBES``.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction

from coupons.models import AppliedCoupon, CouponDiscount
from identity.models import AccountLink
from odoo_bridge.models import CreditNote, CreditNoteItem, Invoice, InvoiceLine

from tests.api.conftest import create_catalogue, create_subscription

from . import lago_spec

pytestmark = pytest.mark.django_db

# Values of Lago's path parameters, for data the ``world`` fixture creates.
PATH_VALUES = {
    "external_customer_id": "cus_1", "external_id": "sub_1", "charge_code": "cpu_seconds",
    "transaction_id": "tr_1", "key": "region",
}
CODES = {"plans": "starter", "billable_metrics": "cpu_seconds", "add_ons": "setup", "coupons": "welcome"}
MISSING = "no_such_id"

METRIC = {"name": "Storage", "code": "storage_gb", "aggregation_type": "max_agg", "field_name": "gb"}
PLAN = {"name": "Pro", "code": "pro", "interval": "monthly", "amount_cents": 5000, "amount_currency": "CAD",
        "pay_in_advance": False, "charges": [{"billable_metric_code": "cpu_seconds", "charge_model": "standard",
                                               "properties": {"amount": "0.01"}}]}
EVENT = {"transaction_id": "tr_new", "external_subscription_id": "sub_1", "code": "cpu_seconds",
         "properties": {"cpu_seconds": 30}}
WEBHOOK_URL = "http://127.0.0.1:9/lago"  # allowed by WEBHOOK_ALLOW_HTTP_HOSTS in tests
ADD_ON = {"name": "Setup", "code": "setup", "amount_cents": 5000, "amount_currency": "CAD"}
COUPON = {"name": "Welcome", "code": "welcome", "coupon_type": "fixed_amount", "amount_cents": 1000,
          "amount_currency": "CAD", "frequency": "once", "expiration": "no_expiration"}

# Requests that need a body or query to succeed (served operations). Others are sent bare. A path
# parameter named in a probe takes the ``world`` value of that name; a callable body is given ``world``.
PROBES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/billable_metrics"): {"body": {"billable_metric": {**METRIC, "code": "disk_gb"}}},
    ("DELETE", "/billable_metrics/{code}"): {"code": "storage_gb"},  # on no plan: deletable
    ("PUT", "/billable_metrics/{code}"): {"body": {"billable_metric": {"name": "CPU time"}}},
    ("POST", "/customers"): {"body": {"customer": {"external_id": "cus_2", "name": "Acme", "currency": "CAD"}}},
    ("GET", "/customers/{external_customer_id}/current_usage"): {"query": {"external_subscription_id": "sub_1"}},
    ("GET", "/customers/{external_customer_id}/projected_usage"): {"query": {"external_subscription_id": "sub_1"}},
    ("GET", "/customers/{external_customer_id}/past_usage"): {"query": {"external_subscription_id": "sub_1"}},
    ("POST", "/events"): {"body": {"event": EVENT}},
    ("POST", "/events/batch"): {"body": {"events": [EVENT, {**EVENT, "transaction_id": "tr_new_2"}]}},
    # A valid event for a charge billed in arrears: Lago's 422 does_not_match_an_instant_charge.
    ("POST", "/events/estimate_fees"): {"body": {"event": {k: v for k, v in EVENT.items() if k != "transaction_id"}},
                                       "status": 422},
    ("GET", "/invoices/{lago_id}"): {"lago_id": "invoice"},
    ("POST", "/invoices"): {"body": {"invoice": {"external_customer_id": "cus_1", "currency": "CAD",
                                                 "fees": [{"add_on_code": "setup", "units": "2",
                                                           "description": "Onboarding"}]}}},
    # Invoice actions on the world's invoice (finalized, unpaid). Finalize answers a finalized invoice as it
    # is (Lago); the others ask Odoo, which is not configured here: the table lists their 503.
    ("PUT", "/invoices/{lago_id}/finalize"): {"lago_id": "invoice"},
    ("POST", "/invoices/{lago_id}/download"): {"lago_id": "invoice"},
    ("PUT", "/invoices/{lago_id}/refresh"): {"lago_id": "invoice"},
    ("POST", "/invoices/{lago_id}/void"): {"lago_id": "invoice"},
    ("POST", "/invoices/{lago_id}/payment_url"): {"lago_id": "invoice"},
    ("GET", "/credit_notes/{lago_id}"): {"lago_id": "credit_note"},
    # Odoo is not configured here: the credit note is answered as asked (pending), for the push cycle.
    ("POST", "/credit_notes"): {"body": lambda world: {"credit_note": {
        "invoice_id": world["invoice"], "reason": "duplicated_charge", "credit_amount_cents": 113,
        "items": [{"fee_id": world["fee"], "amount_cents": 100}]}}},
    ("POST", "/credit_notes/estimate"): {"body": lambda world: {"credit_note": {
        "invoice_id": world["invoice"], "items": [{"fee_id": world["fee"], "amount_cents": 100}]}}},
    ("POST", "/credit_notes/{lago_id}/download"): {"lago_id": "credit_note"},
    ("POST", "/add_ons"): {"body": {"add_on": {**ADD_ON, "code": "install", "name": "Install"}}},
    ("PUT", "/add_ons/{code}"): {"body": {"add_on": {"name": "Setup fee", "amount_cents": 6000}}},
    ("POST", "/coupons"): {"body": {"coupon": {**COUPON, "code": "autumn", "coupon_type": "percentage",
                                               "percentage_rate": "12.5", "amount_cents": None,
                                               "amount_currency": None}}},
    ("PUT", "/coupons/{code}"): {"body": {"coupon": {"name": "Welcome!"}}},
    ("POST", "/applied_coupons"): {"body": {"applied_coupon": {"external_customer_id": "cus_1",
                                                               "coupon_code": "spring"}}},
    ("DELETE", "/customers/{external_customer_id}/applied_coupons/{applied_coupon_id}"): {
        "applied_coupon_id": "applied_coupon"},
    ("GET", "/wallets"): {"query": {"external_customer_id": "cus_1"}},
    ("POST", "/wallets"): {"body": {"wallet": {"external_customer_id": "cus_3", "rate_amount": "1.5",
                                               "paid_credits": "20", "granted_credits": "10", "name": "Prepaid"}}},
    ("GET", "/wallets/{lago_id}"): {"lago_id": "wallet"},
    ("PUT", "/wallets/{lago_id}"): {"lago_id": "wallet", "body": {"wallet": {"name": "Main wallet"}}},
    ("DELETE", "/wallets/{lago_id}"): {"lago_id": "wallet"},
    ("GET", "/wallets/{lago_id}/wallet_transactions"): {"lago_id": "wallet"},
    ("POST", "/wallets/{lago_id}/metadata"): {"lago_id": "wallet", "body": {"metadata": {"region": "us"}}},
    ("PATCH", "/wallets/{lago_id}/metadata"): {"lago_id": "wallet", "body": {"metadata": {"tier": "gold"}}},
    ("DELETE", "/wallets/{lago_id}/metadata"): {"lago_id": "wallet"},
    ("DELETE", "/wallets/{lago_id}/metadata/{key}"): {"lago_id": "wallet"},
    ("POST", "/wallet_transactions"): {"body": lambda world: {"wallet_transaction": {
        "wallet_id": world["wallet"], "granted_credits": "5", "voided_credits": "1"}}},
    ("PUT", "/organizations"): {"body": {"organization": {"webhook_url": WEBHOOK_URL}}},
    ("POST", "/plans"): {"body": {"plan": PLAN}},
    ("PUT", "/plans/{code}"): {"body": {"plan": {"name": "Starter 2"}}},
    ("POST", "/plans/{code}/metadata"): {"body": {"metadata": {"region": "ca"}}},
    ("PATCH", "/plans/{code}/metadata"): {"body": {"metadata": {"tier": "gold"}}},
    ("POST", "/plans/{code}/charges"): {"body": {"charge": {
        "billable_metric_code": "storage_gb", "charge_model": "standard", "properties": {"amount": "1"}}}},
    ("PUT", "/plans/{code}/charges/{charge_code}"): {"body": {"charge": {"properties": {"amount": "0.02"}}}},
    ("POST", "/subscriptions"): {"body": {"subscription": {
        "external_customer_id": "cus_1", "plan_code": "starter", "external_id": "sub_2"}}},
    ("PUT", "/subscriptions/{external_id}"): {"body": {"subscription": {"name": "Main"}}},
    ("POST", "/webhook_endpoints"): {"body": {"webhook_endpoint": {"webhook_url": WEBHOOK_URL + "/2"}}},
    ("GET", "/webhook_endpoints/{lago_id}"): {"lago_id": "webhook_endpoint"},
    ("PUT", "/webhook_endpoints/{lago_id}"): {"lago_id": "webhook_endpoint",
                                             "body": {"webhook_endpoint": {"webhook_url": WEBHOOK_URL + "/3"}}},
    ("DELETE", "/webhook_endpoints/{lago_id}"): {"lago_id": "webhook_endpoint"},
}

LAGO_OPERATIONS = lago_spec.operations()
ANSWERS = lago_spec.documented_answers()


@pytest.fixture
def world(api_client) -> dict[str, str]:
    """A catalogue, a customer with a subscription, an event, plan metadata, a webhook
    endpoint, an invoice and a credit note of the customer's account, an add-on, coupons (one
    applied), a wallet with credits and a customer without one: what served operations act on."""
    create_catalogue(api_client)
    api_client.post("/api/v1/billable_metrics", {"billable_metric": METRIC}, format="json")
    create_subscription(api_client, customer="cus_1", subscription_at="2026-01-01T00:00:00Z")
    assert api_client.post("/api/v1/events", {"event": {**EVENT, "transaction_id": "tr_1"}},
                           format="json").status_code == 200
    assert api_client.post("/api/v1/plans/starter/metadata", {"metadata": {"region": "ca"}},
                           format="json").status_code == 200
    endpoint = api_client.post("/api/v1/webhook_endpoints", {"webhook_endpoint": {"webhook_url": WEBHOOK_URL}},
                               format="json")
    assert endpoint.status_code == 200, endpoint.content
    link = AccountLink.objects.get(external_id="cus_1")
    invoice = Invoice.objects.create(
        service=link.service, customer=link.customer, account_link=link, subscription=link.subscriptions.first(),
        odoo_move_id=1, number="INV/2026/0001", status="finalized", currency="CAD", issuing_date=date(2026, 11, 1))
    fee = InvoiceLine.objects.create(invoice=invoice, odoo_line_id=11, name="fee", quantity=1, unit_amount=10,
                                     amount=10, total_amount=Decimal("11.30"),
                                     taxes=[{"odoo_tax_id": 7, "name": "HST 13%", "rate": "13", "amount": "1.30"}])
    note = CreditNote.objects.create(
        service=link.service, customer=link.customer, account_link=link, invoice=invoice, odoo_move_id=2,
        number="RINV/2026/0001", status="finalized", currency="CAD", issuing_date=date(2026, 11, 5),
        fees_amount=10, total_amount=10, credit_amount=10, balance_amount=10)
    CreditNoteItem.objects.create(credit_note=note, name="fee", quantity=1, unit_amount=10, amount=10,
                                  total_amount=10)
    created = {}
    for path, root, body in (("add_ons", "add_on", ADD_ON), ("coupons", "coupon", COUPON),
                             ("coupons", "coupon", {**COUPON, "code": "spring", "name": "Spring"}),
                             ("applied_coupons", "applied_coupon",
                              {"external_customer_id": "cus_1", "coupon_code": "welcome"}),
                             ("customers", "customer", {"external_id": "cus_3", "name": "Beta", "currency": "CAD"}),
                             ("wallets", "wallet", {"external_customer_id": "cus_1", "rate_amount": "1",
                                                    "granted_credits": "10", "metadata": {"region": "ca"},
                                                    "recurring_transaction_rules": [{
                                                        "trigger": "threshold", "threshold_credits": "2",
                                                        "method": "target", "target_ongoing_balance": "10"}]})):
        response = api_client.post(f"/api/v1/{path}", {root: body}, format="json")
        assert response.status_code == 200, response.content
        created[root] = response.json()[root]
    # the applied coupon's discount on the invoice: Lago's `credits` item
    discount = CouponDiscount.objects.create(
        applied_coupon=AppliedCoupon.objects.get(pk=created["applied_coupon"]["lago_id"]),
        subscription=invoice.subscription, boundary=datetime(2026, 11, 1, tzinfo=timezone.utc), base=10, amount=2,
        currency="CAD")
    InvoiceLine.objects.create(invoice=invoice, name="Welcome", quantity=1, unit_amount=-2, amount=-2,
                               total_amount=-2, coupon_discount=discount)
    return {"invoice": str(invoice.pk), "webhook_endpoint": endpoint.json()["webhook_endpoint"]["lago_id"],
            "credit_note": str(note.pk), "applied_coupon": created["applied_coupon"]["lago_id"],
            "wallet": created["wallet"]["lago_id"], "fee": f"{invoice.pk}-{fee.odoo_line_id}"}


def concrete_path(path: str, probe: dict[str, Any], world: dict[str, str]) -> str:
    collection = path.strip("/").split("/")[0]

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "code":
            return probe.get("code") or CODES.get(collection, MISSING)
        if name in probe:
            return world[probe[name]]
        return PATH_VALUES.get(name, MISSING)

    return "/api/v1" + re.sub(r"{(\w+)}", value, path)


def call(api_client, method: str, path: str, world: dict[str, str]):
    probe = PROBES.get((method, path), {})
    url = concrete_path(path, probe, world)
    send = getattr(api_client, method.lower())
    if method == "GET":
        return send(url, probe.get("query", {}))
    if "query" in probe:
        url += "?" + "&".join(f"{k}={v}" for k, v in probe["query"].items())
    body = probe["body"](world) if callable(probe.get("body")) else probe.get("body")
    return send(url, body, format="json") if "body" in probe else send(url)


def test_every_lago_operation_is_in_the_table():
    listed = set(ANSWERS)
    assert [op for op in LAGO_OPERATIONS if op not in listed] == []
    assert sorted(listed - set(LAGO_OPERATIONS)) == []


SERVED = [op for op in LAGO_OPERATIONS if ANSWERS.get(op, "").startswith("served")]
REFUSED = [op for op in LAGO_OPERATIONS if op in ANSWERS and op not in SERVED]


@contextmanager
def rolled_back() -> Iterator[None]:
    """One operation's effects, undone after it: every operation meets the same world."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def test_every_served_operation_answers_with_lagos_shape(api_client, world):
    assert len(SERVED) >= 49  # what was served when the table was written; it only grows
    wrong = []
    for method, path in SERVED:
        with rolled_back():
            response = call(api_client, method, path, world)
        expected = PROBES.get((method, path), {}).get("status", 200)
        if response.status_code != expected:
            wrong.append((method, path, response.status_code, response.content[:300]))
        elif expected == 200 and response.get("Content-Type", "").startswith("application/json"):
            errors = lago_spec.schema_errors(method, path, response.json())
            if errors:
                wrong.append((method, path, errors[:5]))
    assert wrong == []


def test_every_other_operation_answers_as_the_table_says(api_client, world):
    wrong = []
    for method, path in REFUSED:
        answer = lago_spec.ANSWER.match(ANSWERS[(method, path)])
        assert answer, f"unreadable answer for {method} {path}: {ANSWERS[(method, path)]!r}"
        with rolled_back():
            response = call(api_client, method, path, world)
        got = (response.status_code, response.json().get("code"))
        if got != (int(answer["status"]), answer["code"]):
            wrong.append((method, path, got))
    assert wrong == []
