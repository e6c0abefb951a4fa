"""odoo_bridge.client against the fake over HTTP: classification, faults, field names, redaction."""

import logging

import pytest

from odoo_bridge.client import (
    Json2Transport,
    JsonRpcTransport,
    OdooAccessDenied,
    OdooClient,
    OdooConfigurationError,
    OdooRemoteError,
    OdooRetryableError,
    OdooSettings,
    build_client,
    get_client,
    reset_client,
)
from odoo_bridge.testing import FakeOdoo


def settings_for(fake, **overrides):
    values = dict(url=fake.url, db=fake.db, user=fake.login, api_key=fake.api_key, timeout_seconds=2.0)
    values.update(overrides)
    return OdooSettings(**values)


def connect(fake, **overrides):
    return OdooClient(JsonRpcTransport(settings_for(fake, **overrides))).connect()


@pytest.fixture
def fake():
    with FakeOdoo(version="17.0") as server:
        yield server


def test_field_names_and_digits_come_from_fields_get():
    with FakeOdoo(version="17.0", price_digits=2) as v17, FakeOdoo(version="19.0", price_digits=6) as v19:
        old, new = connect(v17), connect(v19)
    assert (old.fields.line_uom, old.fields.line_taxes, old.fields.price_digits) == ("product_uom", "tax_id", 2)
    assert (new.fields.line_uom, new.fields.line_taxes, new.fields.price_digits) == ("product_uom_id", "tax_ids", 6)
    assert old.fields.server_version == "17.0+e"


def test_connect_costs_five_round_trips_and_create_many_is_one(fake):
    client = connect(fake)
    assert fake.call_count() == 5  # version_info, login, context_get, 2x fields_get
    fake.reset_counters()
    ids = client.create("res.partner", [{"name": f"p{i}"} for i in range(50)])
    assert len(ids) == 50 and fake.call_count() == 1


def test_wrong_key_is_access_denied_and_not_retryable(fake):
    with pytest.raises(OdooAccessDenied) as err:
        connect(fake, api_key="wrong")
    assert err.value.retryable is False
    client = connect(fake)
    fake.revoke_api_key()
    with pytest.raises(OdooAccessDenied):
        client.search_read("res.partner", [], ["name"])


@pytest.mark.parametrize("kind,extra", [
    ("concurrency", {}),
    ("http_status", {"status": 502}),
    ("drop", {}),
])
def test_transient_faults_are_retryable(fake, kind, extra):
    client = connect(fake)
    fake.faults.add(kind, model="res.partner", method="search_read", **extra)
    with pytest.raises(OdooRetryableError) as err:
        client.search_read("res.partner", [], ["name"])
    assert err.value.retryable is True
    assert client.search_read("res.partner", [["id", "=", 0]], ["name"]) == []


def test_timeout_is_retryable(fake):
    client = connect(fake, timeout_seconds=0.2)
    fake.faults.add("latency", model="res.partner", method="search_read", seconds=1.0)
    with pytest.raises(OdooRetryableError) as err:
        client.search_read("res.partner", [], ["name"])
    assert err.value.name in ("timeout", "connection")


def test_refused_connection_is_retryable_and_recovers_on_same_url(fake):
    client = connect(fake)
    fake.go_down()
    with pytest.raises(OdooRetryableError):
        client.search_read("res.partner", [], ["name"])
    with pytest.raises(OdooRetryableError):
        connect(fake)
    fake.come_up()
    assert isinstance(client.search_read("res.partner", [], ["name"]), list)


def test_lost_response_after_commit_raises_retryable_but_the_record_exists(fake):
    client = connect(fake)
    fake.faults.add("lost_response", model="res.partner", method="create")
    with pytest.raises(OdooRetryableError):
        client.create("res.partner", [{"name": "Ghost", "ref": "cus_ghost"}])
    assert [r["name"] for r in fake.records("res.partner", [["ref", "=", "cus_ghost"]])] == ["Ghost"]


def test_business_errors_are_not_retryable(fake):
    client = connect(fake)
    with pytest.raises(OdooRemoteError) as err:
        client.create("res.partner", [{"email": "nameless@x.test"}])
    assert err.value.name == "odoo.exceptions.ValidationError" and not err.value.retryable
    with pytest.raises(OdooRemoteError) as err:
        client.call("sale.order", "_create_recurring_invoice", [[1]])
    assert err.value.name == "odoo.exceptions.AccessError"


def test_missing_configuration_is_reported():
    with pytest.raises(OdooConfigurationError):
        JsonRpcTransport(OdooSettings(url="", db="x", user="u", api_key="k"))
    with pytest.raises(OdooConfigurationError):
        JsonRpcTransport(OdooSettings(url="ftp://odoo", db="x", user="u", api_key="k"))
    with pytest.raises(OdooConfigurationError):
        Json2Transport(OdooSettings(url="http://odoo", db="", user="u", api_key="k"))
    with pytest.raises(OdooConfigurationError):
        Json2Transport(OdooSettings(url="odoo.example.com", db="x", user="u", api_key="k"))
    with pytest.raises(OdooConfigurationError):
        build_client(OdooSettings(url="http://odoo", db="x", user="u", api_key="k", transport="xmlrpc"))


def test_get_client_is_lazy_and_one_per_process(fake):
    reset_client()
    try:
        settings = settings_for(fake)
        assert fake.call_count() == 0
        first = get_client(settings)
        assert get_client(settings) is first
        assert fake.call_count(service="common", method=None) == 1  # logged in once
        rotated = get_client(settings_for(fake, timeout_seconds=3.0))
        assert rotated is not first
    finally:
        reset_client()


def test_odoorpc_debug_log_never_contains_the_api_key(fake, caplog):
    secret = fake.api_key
    with caplog.at_level(logging.DEBUG, logger="odoorpc"):
        client = connect(fake)
        client.search_read("res.partner", [], ["name"])
    debug_records = [r for r in caplog.records if r.name.startswith("odoorpc")]
    assert debug_records, "odoorpc did not log at DEBUG; the test would prove nothing"
    assert secret not in caplog.text
    assert "**********" in caplog.text
    assert "search_read" in caplog.text  # the rest of the payload stays readable
