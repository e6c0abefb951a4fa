"""Go-live preflight (every failure path), flip to live and revert to shadow."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from identity.models import AccountLink, Customer
from metering.models import Subscription
from migration.golive import go_live, preflight_service, preflight_subscription, revert_to_shadow
from migration.models import GoLiveAttempt, Reconciliation
from migration.reconciliation import reconcile_rows
from migration.services import import_nexacloud
from migration.testing.fake_gateway import RecordingGateway
from migration.testing.source_db import Fixture as F
from migration.reader import NexaCloudReader
from odoo_bridge.models import Invoice

pytestmark = pytest.mark.django_db
GATEWAY = "migration.testing.fake_gateway.RecordingGateway"


@pytest.fixture
def ready(service, nexacloud_dsn, fake_stripe, settings):
    """Alice's starter deployment is ready to go live: October matched, Odoo partner, Stripe card."""
    RecordingGateway.reset()
    settings.STRIPE_API_KEY = fake_stripe.api_key
    settings.STRIPE_API_BASE = fake_stripe.url
    settings.MIGRATION_LIVE_ORDER_GATEWAY = GATEWAY
    settings.MIGRATION_GO_LIVE_MATCHED_PERIODS = 1
    import_nexacloud(dsn=nexacloud_dsn)
    with NexaCloudReader(nexacloud_dsn) as reader:
        reconcile_rows(service=service, billed=reader.billed_periods())
    Customer.objects.filter(email="alice@example.com").update(odoo_partner_id=41)
    fake_stripe.add_ready_customer("cus_alice", "pm_alice")
    return Subscription.objects.get(external_id=F.DEP_ALICE_STARTER)


def failing(sub) -> dict[str, str]:
    pre = preflight_subscription(subscription=Subscription.objects.get(pk=sub.pk))
    return {c.name: c.detail for c in pre.failures()}


def test_ready_subscription_passes_every_check(ready):
    pre = preflight_subscription(subscription=ready)
    assert pre.ok, pre.summary()
    assert [c.name for c in pre.checks] == ["shadow", "reconciliation", "odoo_partner", "stripe"]
    assert pre.stripe_payment_method_id == "pm_alice"
    assert "visa ending 4242" in pre.checks[-1].detail
    attempt = GoLiveAttempt.objects.get(subscription=ready)
    assert attempt.action == "preflight" and attempt.ok and len(attempt.checks) == 4


def test_not_shadow(ready):
    Subscription.objects.filter(pk=ready.pk).update(mode="live")
    assert failing(ready) == {"shadow": "subscription is already live"}
    Subscription.objects.filter(pk=ready.pk).update(mode="shadow", status="terminated")
    assert failing(ready) == {"shadow": "subscription is terminated"}


def test_reconciliation_mismatch_missing_and_too_few_periods(ready, settings):
    Reconciliation.objects.filter(external_subscription_id=F.DEP_ALICE_STARTER).update(
        status="mismatch", delta=Decimal("0.5"))
    assert failing(ready) == {"reconciliation": "period 2026-10-01 is mismatch (delta 0.500000)"}
    settings.MIGRATION_GO_LIVE_MATCHED_PERIODS = 2
    Reconciliation.objects.filter(external_subscription_id=F.DEP_ALICE_STARTER).update(status="match")
    assert failing(ready) == {"reconciliation": "only 1 of the last 2 closed period(s) reconciled"}
    Reconciliation.objects.all().delete()
    settings.MIGRATION_GO_LIVE_MATCHED_PERIODS = 1
    assert failing(ready) == {"reconciliation": "only 0 of the last 1 closed period(s) reconciled"}


def test_no_odoo_partner(ready):
    Customer.objects.update(odoo_partner_id=None)
    assert failing(ready) == {"odoo_partner": "customer has no Odoo partner yet (sync the customer first)"}


@pytest.mark.parametrize(("arrange", "detail"), [
    (lambda fake, s: AccountLink.objects.update(stripe_customer_id=""), "customer has no Stripe customer id"),
    (lambda fake, s: setattr(s, "STRIPE_API_KEY", ""), "STRIPE_API_KEY is not configured"),
    (lambda fake, s: setattr(s, "STRIPE_API_KEY", "sk_test_wrong"), "Stripe rejected STRIPE_API_KEY"),
    (lambda fake, s: fake.state.customers.clear(), "customer cus_alice does not exist in Stripe"),
    (lambda fake, s: fake.add_customer("cus_alice", deleted=True), "Stripe customer cus_alice is deleted"),
    (lambda fake, s: fake.add_customer("cus_alice"), "Stripe customer cus_alice has no default payment method"),
    (lambda fake, s: fake.state.payment_methods.clear(), "payment method pm_alice does not exist in Stripe"),
    (lambda fake, s: fake.add_card("pm_alice", customer="cus_other"), "payment method pm_alice is not attached to cus_alice"),
    (lambda fake, s: fake.add_card("pm_alice", customer="cus_alice", exp_month=1, exp_year=2020),
     "card pm_alice expired 01/2020"),
    (lambda fake, s: setattr(fake.state, "fail_with_500", True), "Stripe error reading customer cus_alice"),
])
def test_stripe_not_ready(ready, fake_stripe, settings, arrange, detail):
    arrange(fake_stripe, settings)
    failures = failing(ready)
    assert list(failures) == ["stripe"] and failures["stripe"].startswith(detail)


def test_stripe_unreachable(ready, settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:1"
    assert failing(ready) == {"stripe": "Stripe is unreachable"}


def test_service_preflight(ready, service):
    result = preflight_service(service=service)
    assert result.ok and {c.name for c in result.checks} == {"stripe_key", "odoo_gateway", "reconciliation_run"}
    by_sub = {p.subscription.external_id: p for p in result.subscriptions}
    assert set(by_sub) == set(F.GOOD_DEPLOYMENTS)
    # Both of Alice's monthly deployments matched October; each is checked on its own rows.
    assert [p.subscription.external_id for p in result.ready] == [F.DEP_ALICE_STARTER, F.DEP_ALICE_PRO]
    assert set(by_sub[F.DEP_ALICE_YEARLY].summary().split(": ")[:1]) == {"reconciliation"}
    assert by_sub[F.DEP_BOB_STARTER].summary().startswith("reconciliation: ") is False
    assert {c.name for c in by_sub[F.DEP_BOB_STARTER].failures()} == {"odoo_partner", "stripe"}


def test_service_preflight_without_configuration(ready, service, settings):
    settings.MIGRATION_LIVE_ORDER_GATEWAY = ""
    settings.STRIPE_API_KEY = ""
    Reconciliation.objects.all().delete()
    result = preflight_service(service=service)
    assert {c.name for c in result.checks if not c.ok} == {"stripe_key", "odoo_gateway", "reconciliation_run"}
    assert not result.ok and result.ready == []


def test_go_live_flips_ready_subscriptions_only(ready):
    blocked = Subscription.objects.get(external_id=F.DEP_BOB_STARTER)  # no partner, no card
    attempts = go_live(subscriptions=[ready, blocked])
    assert [a.ok for a in attempts] == [True, False]
    ready.refresh_from_db()
    blocked.refresh_from_db()
    assert ready.mode == "live" and ready.odoo_sale_order_id == 1001
    assert blocked.mode == "shadow" and attempts[1].message.startswith("preflight failed: ")
    assert attempts[0].odoo_payment_token_id == 501 and attempts[0].stripe_payment_method_id == "pm_alice"
    assert RecordingGateway.calls == [("push", F.DEP_ALICE_STARTER, "cus_alice", "pm_alice")]


def test_go_live_odoo_failure_leaves_shadow(ready):
    RecordingGateway.fail_with = ConnectionError("Odoo is down")
    (attempt,) = go_live(subscriptions=[ready])
    ready.refresh_from_db()
    assert not attempt.ok and ready.mode == "shadow"
    assert attempt.message == "Odoo refused the live order: ConnectionError: Odoo is down"


def test_go_live_without_gateway(ready, settings):
    settings.MIGRATION_LIVE_ORDER_GATEWAY = ""
    (attempt,) = go_live(subscriptions=[ready])
    assert not attempt.ok and "MIGRATION_LIVE_ORDER_GATEWAY" in attempt.message


def test_revert_until_first_live_invoice(ready, service):
    go_live(subscriptions=[ready])
    ready.refresh_from_db()
    attempt = revert_to_shadow(subscription=ready)
    ready.refresh_from_db()
    assert attempt.ok and ready.mode == "shadow" and ready.odoo_sale_order_id is None
    assert attempt.odoo_sale_order_id == 1001 and RecordingGateway.calls[-1] == ("revert", F.DEP_ALICE_STARTER)

    go_live(subscriptions=[ready])
    ready.refresh_from_db()
    Invoice.objects.create(service=service, customer=ready.customer, subscription=ready, odoo_move_id=77,
                           number="INV/2026/0001", currency="CAD", issuing_date=date(2026, 12, 1))
    refused = revert_to_shadow(subscription=ready)
    ready.refresh_from_db()
    assert not refused.ok and ready.mode == "live" and "INV/2026/0001" in refused.message
