"""End to end: the official Lago client drives the API, usage is rated, the window closes and is pushed
to (fake) Odoo with the plan's fee, Odoo's invoicing cron bills it on the window's close, the invoice
comes back and a signed webhook reaches the app. An open window never reaches Odoo."""

from __future__ import annotations

import datetime as dt
import json
import time

import jwt
import pytest
from django.core.management import call_command
from lago_python_client.client import Client
from lago_python_client.models import BillableMetric, Charge, Charges, Customer, Event, Plan, Subscription
from standardwebhooks.webhooks import Webhook

from metering.models import PlanFee, RatedUsage
from metering.models import Subscription as SubscriptionModel
from metering.rating import rate_subscription
from odoo_bridge.client import reset_client
from odoo_bridge.pull import pull_invoices
from odoo_bridge.sync import push_cycle
from odoo_bridge.testing import FakeOdoo
from webhooks.services import create_endpoint
from webhooks.testing.receiver import WebhookReceiver

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fake_odoo(settings):
    reset_client()
    with FakeOdoo(version="17.0", price_digits=2) as server:
        settings.ODOO_URL, settings.ODOO_DB = server.url, server.db
        settings.ODOO_USER, settings.ODOO_API_KEY = server.login, server.api_key
        yield server
    reset_client()


def test_lago_client_to_signed_invoice_webhook_through_odoo(live_server, api_key, service, fake_odoo):
    lago = Client(api_key=api_key, api_url=live_server.url)
    metric = lago.billable_metrics.create(BillableMetric(
        name="API calls", code="api_calls", aggregation_type="sum_agg", field_name="calls"))
    lago.billable_metrics.create(BillableMetric(
        name="CPU seconds", code="cpu_seconds", aggregation_type="sum_agg", field_name="cpu_seconds"))
    cpu = lago.billable_metrics.find("cpu_seconds")
    lago.plans.create(Plan(name="Pro", code="pro", interval="monthly", amount_cents=4900, amount_currency="CAD",
                           pay_in_advance=False, charges=Charges(__root__=[
                               Charge(billable_metric_id=metric.lago_id, charge_model="standard",
                                      properties={"amount": "0.02"}),
                               Charge(billable_metric_id=cpu.lago_id, charge_model="standard",
                                      properties={"amount": "0.0075", "unit_batch": 3600})])))
    lago.customers.create(Customer(external_id="acct-42", name="Acme Inc", email="ap@acme.test", currency="CAD",
                                   country="CA", state="ON"))
    lago.subscriptions.create(Subscription(external_customer_id="acct-42", plan_code="pro", external_id="dep-1",
                                           billing_time="anniversary"))
    now = int(time.time()) + 2  # after the subscription started (its start has sub-second precision)
    for i in range(3):
        lago.events.create(Event(transaction_id=f"tx-{i}", external_subscription_id="dep-1", code="api_calls",
                                 timestamp=now, properties={"calls": "50"}))
    lago.events.create(Event(transaction_id="tx-cpu", external_subscription_id="dep-1", code="cpu_seconds",
                             timestamp=now, properties={"cpu_seconds": "7200"}))

    with WebhookReceiver() as receiver:
        issued = create_endpoint(service=service, url=receiver.url("/billing"))

        subscription = SubscriptionModel.objects.get(service=service, external_id="dep-1")
        rate_subscription(subscription_id=subscription.pk)
        amounts = sorted(str(u.amount) for u in RatedUsage.objects.filter(subscription=subscription))
        assert amounts == ["0.015000", "3.000000"]  # 150 calls x 0.02; 2 core-hours x 0.0075

        report = push_cycle()
        assert not report.aborted, report.aborted
        [order] = fake_odoo.records("sale.order", [["client_order_ref", "=", f"fb-sub-{subscription.pk}"]],
                                    ["state", "start_date", "next_invoice_date", "order_line", "partner_id",
                                     "partner_invoice_id"])
        # the window is open: only the plan's recurring line (price 0), no usage yet (invariant 1)
        assert order["state"] == "sale" and len(order["order_line"]) == 1
        [partner] = fake_odoo.records("res.partner", [["id", "=", order["partner_id"][0]]], ["email"])
        assert partner["email"] == "ap@acme.test"
        # the account's own invoice address, a contact under the client's commercial partner
        [contact] = fake_odoo.records("res.partner", [["id", "=", order["partner_invoice_id"][0]]],
                                      ["name", "state_id", "parent_id"])
        assert contact["state_id"][1] == "Ontario" and contact["name"] == "Acme Inc"
        assert contact["parent_id"][0] == partner["id"]
        assert fake_odoo.run_invoicing_cron(today=dt.date.fromisoformat(order["start_date"])) == []

        # the window closes: rating freezes it; metering's arrears fee of the full window (anniversary: 49.00)
        subscription.refresh_from_db()
        window_start, window_end = subscription.current_period_start, subscription.current_period_end
        assert order["next_invoice_date"] == window_end.date().isoformat()  # Odoo invoices at the close
        after_close = window_end + dt.timedelta(seconds=1)
        rate_subscription(subscription_id=subscription.pk, now=after_close)
        RatedUsage.objects.filter(subscription=subscription, window_start=window_start).update(state="frozen")
        PlanFee.objects.get_or_create(subscription=subscription, kind="subscription", window_start=window_start,
                                      defaults={"plan": subscription.plan, "window_end": window_end, "units": 1,
                                                "amount": "49.000000", "currency": "CAD"})
        assert not push_cycle(now=after_close).aborted
        fake_odoo.store.clock = lambda: after_close
        [move_id] = fake_odoo.run_invoicing_cron(today=window_end.date())
        pull = pull_invoices()
        assert (pull.invoices_created, pull.events) == (1, 2)  # invoice.created, invoice.generated

        call_command("deliver_webhooks")
        [request] = [r for r in receiver.wait_for(2) if json.loads(r.body)["webhook_type"] == "invoice.created"]
        assert Webhook(issued.secret).verify(request.body, request.headers) is not None
        # X-Lago-Signature as Lago signs by default (jwt), verified as Lago's docs show
        assert request.header("x-lago-signature-algorithm") == "jwt"
        claims = jwt.decode(request.header("x-lago-signature"), lago.webhooks.public_key(), algorithms=["RS256"],
                            issuer="https://api.getlago.com")
        assert claims["data"] == request.body.decode()
        body = json.loads(request.body)
        assert body["webhook_type"] == "invoice.created" and body["object_type"] == "invoice"
        invoice = body["invoice"]
        # 49.00 flat + 3.00 api calls + 0.015 cpu (pre-rated: Odoo's 2 price digits, rounded once) = 52.02
        assert invoice["total_amount_cents"] == 5202 and invoice["currency"] == "CAD"
        assert invoice["customer"]["external_id"] == "acct-42"
        assert {fee["item"]["type"] for fee in invoice["fees"]} == {"subscription", "charge"}

        # the app reads the same invoice back through the Lago client
        found = lago.invoices.find(invoice["lago_id"])
        assert found.number == invoice["number"] and found.total_amount_cents == 5202
        assert [i.lago_id for i in lago.invoices.find_all({"external_customer_id": "acct-42"})["invoices"]] == [
            invoice["lago_id"]]

        # Odoo records the payment: the app hears about it once
        fake_odoo.register_payment(move_id)
        assert pull_invoices().events == 1
        call_command("deliver_webhooks")
        types = sorted(json.loads(r.body)["webhook_type"] for r in receiver.wait_for(3))
        assert types == ["invoice.created", "invoice.generated", "invoice.payment_status_updated"]
        assert lago.invoices.find(invoice["lago_id"]).payment_status == "succeeded"
