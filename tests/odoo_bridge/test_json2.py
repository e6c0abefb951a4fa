"""The second transport: Odoo 19's JSON-2 API against the fake, and the whole push through it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from odoo_bridge.client import (
    Json2Transport,
    OdooAccessDenied,
    OdooClient,
    OdooRemoteError,
    OdooRetryableError,
    OdooSettings,
)
from odoo_bridge.testing import FakeOdoo


@pytest.fixture
def fake19():
    with FakeOdoo(version="19.0") as server:
        yield server


def settings_for(fake, **overrides):
    values = dict(url=fake.url, db=fake.db, user=fake.login, api_key=fake.api_key, timeout_seconds=2.0,
                  transport="json2")
    values.update(overrides)
    return OdooSettings(**values)


def test_json2_wire_format(fake19):
    request = urllib.request.Request(f"{fake19.url}/json/2/res.partner/create",
                                     data=json.dumps({"vals_list": [{"name": "A"}]}).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"bearer {fake19.api_key}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        ids = json.loads(response.read())
    assert isinstance(ids, list) and len(ids) == 1  # a recordset comes back as its ids, no envelope
    bad = urllib.request.Request(f"{fake19.url}/json/2/res.partner/search", data=b"{}",
                                 headers={"Content-Type": "application/json", "Authorization": "bearer nope"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad, timeout=5)
    assert err.value.code == 401 and json.loads(err.value.read())["message"] == "Invalid apikey"


def test_json2_client_calls_and_field_names(fake19):
    client = OdooClient(Json2Transport(settings_for(fake19))).connect()
    assert client.fields.line_uom == "product_uom_id" and client.fields.server_version == "19.0"
    [pid] = client.create("res.partner", [{"name": "Acme", "ref": "cus_1"}])
    assert client.search_read("res.partner", [["ref", "=", "cus_1"]], ["name"]) == [{"id": pid, "name": "Acme"}]
    assert client.write("res.partner", [pid], {"email": "a@b.c"}) is True
    assert client.xmlid("base", "CAD") > 0


def test_json2_errors_are_classified_by_status(fake19):
    client = OdooClient(Json2Transport(settings_for(fake19))).connect()
    with pytest.raises(OdooRemoteError) as err:
        client.create("res.partner", [{"email": "nameless"}])
    assert err.value.name == "odoo.exceptions.ValidationError"
    with pytest.raises(OdooRemoteError) as err:
        client.call("sale.order", "_create_recurring_invoice", [[1]])
    assert err.value.name == "odoo.exceptions.AccessError"
    fake19.faults.add("concurrency", model="res.partner", method="search_read")
    with pytest.raises(OdooRetryableError):
        client.search_read("res.partner", [], ["name"])
    with pytest.raises(OdooAccessDenied):
        OdooClient(Json2Transport(settings_for(fake19, api_key="wrong"))).connect()


@pytest.mark.django_db
def test_push_and_pull_through_json2(settings, catalog):
    import datetime as dt

    from odoo_bridge.pull import pull_invoices
    from odoo_bridge.sync import push_cycle

    from .conftest import point_settings_at

    with FakeOdoo(version="19.0") as server:
        point_settings_at(settings, server)
        settings.ODOO_TRANSPORT = "json2"
        sub = catalog.subscription()
        catalog.fee(sub, amount="49.000000")
        catalog.rate(sub, catalog.cpu_charge, units="1234", amount="9.255000")
        server.faults.add("lost_response", model="sale.order", method="create")
        assert push_cycle().aborted
        report = push_cycle(now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
        assert not report.aborted, report.aborted
        assert len(server.records("sale.order")) == 1
        assert server.call_count(service="json2") > 0 and server.call_count(service="object") == 0
        server.run_invoicing_cron(today=dt.date(2026, 12, 1))
        assert pull_invoices().invoices_created == 1


@pytest.mark.django_db
def test_key_revoked_before_a_json2_pull_breaks_the_connection(settings, catalog):
    """JSON-2 answers a bad key with 401 `werkzeug.exceptions.Unauthorized`, not Odoo's AccessDenied name."""
    import datetime as dt

    from odoo_bridge.models import ConnectionStatus, OdooConnectionState
    from odoo_bridge.pull import pull_invoices
    from odoo_bridge.sync import push_cycle

    from .conftest import point_settings_at

    with FakeOdoo(version="19.0") as server:
        point_settings_at(settings, server)
        settings.ODOO_TRANSPORT = "json2"
        catalog.fee(catalog.subscription(), amount="49.000000")
        assert not push_cycle().aborted
        server.run_invoicing_cron(today=dt.date(2026, 12, 1))
        server.revoke_api_key()
        assert pull_invoices().aborted
        assert OdooConnectionState.objects.get().status == ConnectionStatus.BROKEN
        denied = server.access_denied_count
        for _ in range(3):
            assert "broken" in pull_invoices().aborted
        assert server.access_denied_count == denied


@pytest.mark.django_db
def test_termination_invoiced_and_closed_through_json2(settings, catalog):
    """Odoo 19 over JSON-2: the wizard, action_post and set_close with named arguments. Usage 3.00 + fee
    31.03 -> one invoice of 34.03, then the order is churned."""
    import datetime as dt
    from decimal import Decimal

    from metering.models import Subscription
    from odoo_bridge.sync import push_cycle

    from .conftest import point_settings_at

    with FakeOdoo(version="19.0") as server:
        point_settings_at(settings, server)
        settings.ODOO_TRANSPORT = "json2"
        end = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
        sub = catalog.subscription()
        catalog.rate(sub, catalog.api_charge, units="150", amount="3.000000", end=end)
        catalog.fee(sub, amount="31.033333", units="0.633333", end=end)
        Subscription.objects.filter(pk=sub.pk).update(status="terminated", terminated_at=end)
        report = push_cycle(now=end + dt.timedelta(hours=1))
        assert not report.aborted, report.aborted
        [order] = server.records("sale.order", [], ["subscription_state"])
        assert order["subscription_state"] == "6_churn"
        assert [inv.amount_untaxed for inv in server.invoices(order["id"])] == [Decimal("34.03")]
        assert server.call_count(service="object") == 0
