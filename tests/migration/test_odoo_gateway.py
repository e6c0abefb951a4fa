"""Go-live end to end through the Odoo bridge against the bridge's fake Odoo."""

from __future__ import annotations

import pytest

from identity.models import Customer
from metering.models import Subscription
from migration.golive import go_live, revert_to_shadow
from migration.odoo_gateway import OdooBridgeLiveOrderGateway
from migration.reader import NexaCloudReader
from migration.reconciliation import reconcile_rows
from migration.services import import_nexacloud
from migration.testing.source_db import Fixture as F
from odoo_bridge import mapping
from odoo_bridge.client import reset_client
from odoo_bridge.testing import FakeOdoo

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake_odoo(settings):
    reset_client()
    with FakeOdoo(version="17.0") as server:
        settings.ODOO_URL, settings.ODOO_DB = server.url, server.db
        settings.ODOO_USER, settings.ODOO_API_KEY = server.login, server.api_key
        settings.ODOO_TIMEOUT_SECONDS = 2.0
        reset_client()
        yield server
    reset_client()


@pytest.fixture
def alice_ready(service, nexacloud_dsn, fake_stripe, fake_odoo, settings):
    settings.STRIPE_API_KEY = fake_stripe.api_key
    settings.STRIPE_API_BASE = fake_stripe.url
    settings.MIGRATION_LIVE_ORDER_GATEWAY = "migration.odoo_gateway.OdooBridgeLiveOrderGateway"
    import_nexacloud(dsn=nexacloud_dsn)
    with NexaCloudReader(nexacloud_dsn) as reader:
        reconcile_rows(service=service, billed=reader.billed_periods())
    alice = Customer.objects.get(email="alice@example.com")
    # The bridge already knows Alice's partner (synced before go-live, found by our ref).
    [partner] = OdooBridgeLiveOrderGateway().client().create(
        "res.partner", [{"name": alice.email, "ref": mapping.customer_ref(alice), "email": alice.email}])
    Customer.objects.filter(pk=alice.pk).update(odoo_partner_id=partner)
    fake_stripe.add_ready_customer("cus_alice", "pm_alice")
    return Subscription.objects.get(external_id=F.DEP_ALICE_STARTER), partner


def test_flip_pushes_a_live_order_with_a_stripe_payment_token(alice_ready, fake_odoo):
    sub, partner = alice_ready
    (attempt,) = go_live(subscriptions=[sub])
    assert attempt.ok, attempt.message
    sub.refresh_from_db()
    assert sub.mode == "live" and sub.odoo_sale_order_id == attempt.odoo_sale_order_id
    [order] = fake_odoo.records("sale.order", [["id", "=", sub.odoo_sale_order_id]],
                                ["client_order_ref", "state", "payment_token_id", "partner_id"])
    assert order["client_order_ref"] == mapping.subscription_ref(sub) and order["state"] == "sale"
    assert order["payment_token_id"][0] == attempt.odoo_payment_token_id
    [token] = fake_odoo.records("payment.token", [["id", "=", attempt.odoo_payment_token_id]],
                                ["partner_id", "provider_ref"])
    # the token belongs to this service account's own invoice contact (a child of the commercial partner),
    # so no other service's order of the same client is ever charged with it
    sub.account_link.refresh_from_db()
    contact = sub.account_link.odoo_invoice_partner_id
    assert token["partner_id"][0] == contact and token["provider_ref"] == "cus_alice"
    [row] = fake_odoo.records("res.partner", [["id", "=", contact]], ["parent_id", "type"])
    assert (row["parent_id"][0], row["type"]) == (partner, "invoice")

    # Idempotent: going live again after a revert finds the same token, no duplicate.
    assert revert_to_shadow(subscription=sub).ok
    [closed] = fake_odoo.records("sale.order", [["id", "=", attempt.odoo_sale_order_id]],
                                 ["subscription_state", "payment_token_id"])
    assert closed["subscription_state"] == "6_churn" and not closed["payment_token_id"]
    assert len(fake_odoo.records("payment.token", [["provider_ref", "=", "cus_alice"]])) == 1


def test_odoo_down_keeps_the_subscription_in_shadow(alice_ready, fake_odoo, settings):
    sub, _ = alice_ready
    settings.ODOO_URL = "http://127.0.0.1:1"
    reset_client()
    (attempt,) = go_live(subscriptions=[sub])
    sub.refresh_from_db()
    assert not attempt.ok and sub.mode == "shadow" and sub.odoo_sale_order_id is None
    assert "Odoo" in attempt.message
