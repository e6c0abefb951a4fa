"""Fixtures of the Odoo bridge tests: a fake Odoo over HTTP and a small live catalogue."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from itertools import count

import pytest

from identity.models import AccountLink, Customer
from identity.services import allocate_account_number
from metering.models import (
    AggregationType,
    BillableMetric,
    Charge,
    ChargeModel,
    Plan,
    PlanFee,
    RatedUsage,
    Subscription,
)
from odoo_bridge.client import OdooSettings, reset_client
from odoo_bridge.testing import FakeOdoo

UTC = dt.timezone.utc
WINDOW_START = dt.datetime(2026, 11, 1, tzinfo=UTC)
WINDOW_END = dt.datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def fake_odoo(settings):
    reset_client()
    with FakeOdoo(version="17.0") as server:
        point_settings_at(settings, server)
        yield server
    reset_client()


def point_settings_at(settings, server: FakeOdoo) -> None:
    settings.ODOO_URL = server.url
    settings.ODOO_DB = server.db
    settings.ODOO_USER = server.login
    settings.ODOO_API_KEY = server.api_key
    settings.ODOO_TIMEOUT_SECONDS = 2.0
    settings.ODOO_RETRY_BASE_SECONDS = 30
    reset_client()


def odoo_settings(server: FakeOdoo, **overrides) -> OdooSettings:
    values = dict(url=server.url, db=server.db, user=server.login, api_key=server.api_key, timeout_seconds=2.0)
    values.update(overrides)
    return OdooSettings(**values)


class Catalog:
    """Builds live subscriptions with rated usage, the way the API and rating would leave them."""

    def __init__(self, service):
        self.service = service
        self._n = count(1)
        self.metric = BillableMetric.objects.create(service=service, code="api_calls", name="API calls",
                                                    aggregation_type=AggregationType.SUM, field_name="calls")
        self.cpu = BillableMetric.objects.create(service=service, code="cpu_seconds", name="CPU core-hours",
                                                 aggregation_type=AggregationType.SUM, field_name="cpu_seconds")
        self.plan = Plan.objects.create(service=service, code="pro", name="Pro", interval="monthly",
                                        amount=Decimal("49.00"), amount_currency="CAD")
        self.api_charge = Charge.objects.create(plan=self.plan, metric=self.metric, charge_model=ChargeModel.STANDARD,
                                                amount=Decimal("0.02"))
        self.cpu_charge = Charge.objects.create(plan=self.plan, metric=self.cpu, charge_model=ChargeModel.STANDARD,
                                                amount=Decimal("0.0075"), unit_batch=Decimal(1))

    def customer(self, **fields) -> Customer:
        n = next(self._n)
        return Customer.objects.create(email=fields.get("email", f"c{n}@example.test"))

    def account(self, *, customer: Customer | None = None, service=None, **profile) -> AccountLink:
        """A service account with its own profile (an Ontario address unless told)."""
        customer = customer or self.customer()
        service = service or self.service
        n = next(self._n)
        number, slug = allocate_account_number(service=service)
        values = {"name": f"Customer {n}", "country": "CA", "state": "ON", "external_email": customer.email}
        values.update(profile)
        return AccountLink.objects.create(service=service, external_id=f"acct-{n}", customer=customer,
                                          sequential_id=number, slug=slug, **values)

    def subscription(self, *, customer: Customer | None = None, mode: str = "live", status: str = "active",
                     flat_amount: Decimal = Decimal("49.00"), account: AccountLink | None = None) -> Subscription:
        link = account or self.account(customer=customer)
        n = next(self._n)
        return Subscription.objects.create(
            service=self.service, account_link=link, external_id=f"sub-{n}", plan=self.plan, status=status,
            mode=mode, started_at=WINDOW_START, subscription_at=WINDOW_START, billing_anchor=WINDOW_START,
            current_period_start=WINDOW_START, current_period_end=WINDOW_END, flat_amount=flat_amount,
            currency="CAD")

    def rate(self, subscription: Subscription, charge: Charge, *, units: str, amount: str,
             start: dt.datetime = WINDOW_START, end: dt.datetime = WINDOW_END, state: str = "frozen") -> RatedUsage:
        usage, _ = RatedUsage.objects.update_or_create(
            subscription=subscription, charge=charge, window_start=start,
            defaults={"window_end": end, "units": Decimal(units), "billable_units": Decimal(units),
                      "amount": Decimal(amount), "state": state})
        return usage

    def fee(self, subscription: Subscription, *, amount: str, kind: str = "subscription", units: str = "1",
            start: dt.datetime = WINDOW_START, end: dt.datetime = WINDOW_END, plan: Plan | None = None) -> PlanFee:
        """A base fee as metering writes it (final when written)."""
        return PlanFee.objects.create(subscription=subscription, plan=plan or subscription.plan, kind=kind,
                                      window_start=start, window_end=end, units=Decimal(units),
                                      amount=Decimal(amount), currency=subscription.currency)


@pytest.fixture
def catalog(service) -> Catalog:
    return Catalog(service)
