"""Hostile input through the HTTP API answers a Lago-shaped 4xx, never a 500 (#17, Low).

A NUL byte in a path or a query value never reaches a PostgreSQL filter (which would
refuse it: 500); JSON nested deeper than Lago's limit is ``invalid_json``; a number
PostgreSQL's numeric type cannot hold is refused.
"""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.django_db

NUL_IN_QUERY = [
    ("/api/v1/customers?currencies[]=%00", "currencies[]"),
    ("/api/v1/customers?currencies[]=CAD&currencies[]=x%00y", "currencies[]"),
    ("/api/v1/events/tx_1?external_subscription_id=%00", "external_subscription_id"),
    ("/api/v1/subscriptions?external_customer_id=%00", "external_customer_id"),
    ("/api/v1/subscriptions?status[]=%00", "status[]"),
    ("/api/v1/customers/cus_1/current_usage?external_subscription_id=%00", "external_subscription_id"),
    ("/api/v1/invoices?external_customer_id=%00", "external_customer_id"),
    ("/api/v1/webhook_endpoints?page=%00", "page"),
    ("/api/v1/plans?undeclared=%00", "undeclared"),
    ("/api/v1/plans?na%00me=1", "na\ufffdme"),
]

NUL_IN_PATH = [
    ("/api/v1/customers/%00", "customer_not_found"),
    ("/api/v1/customers/cus%00_1/current_usage", "customer_not_found"),
    ("/api/v1/customers/%00/subscriptions", "customer_not_found"),
    ("/api/v1/plans/%00", "plan_not_found"),
    ("/api/v1/billable_metrics/%00", "billable_metric_not_found"),
    ("/api/v1/subscriptions/%00", "subscription_not_found"),
    ("/api/v1/events/%00", "event_not_found"),
    ("/api/v1/invoices/%00", "invoice_not_found"),
    ("/api/v1/webhook_endpoints/%00", "webhook_endpoint_not_found"),
    ("/api/v1/nowhere/%00", "resource_not_found"),
]


def assert_lago_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == status and body["code"] == code
    return body


@pytest.mark.parametrize("url, name", NUL_IN_QUERY)
def test_a_nul_byte_in_a_query_value_is_422(api_client, subscription, url, name):
    body = assert_lago_error(api_client.get(url), 422, "validation_errors")
    assert body == {"status": 422, "error": "Unprocessable Entity", "code": "validation_errors",
                    "error_details": {name: ["value_is_invalid"]}}


@pytest.mark.parametrize("url, code", NUL_IN_PATH)
@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_a_nul_byte_in_a_path_is_404(api_client, subscription, url, code, method):
    response = getattr(api_client, method)(url, {}, format="json")
    assert_lago_error(response, 404, code)


def test_escaped_percent_zero_zero_is_not_a_nul_byte(api_client, subscription):
    # "%2500" is the literal text "%00": an ordinary (unknown) customer
    assert_lago_error(api_client.get("/api/v1/customers/%2500"), 404, "customer_not_found")
    assert api_client.get("/api/v1/customers?currencies[]=%2500").status_code == 200


def nested(depth: int, *, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def nested_objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


DEEP_TARGETS = [
    ("post", "/api/v1/customers", "customer"),
    ("post", "/api/v1/plans", "plan"),
    ("put", "/api/v1/plans/starter", "plan"),
    ("post", "/api/v1/subscriptions", "subscription"),
    ("post", "/api/v1/events", "event"),
    ("post", "/api/v1/events/batch", "events"),
    ("post", "/api/v1/webhook_endpoints", "webhook_endpoint"),
]


@pytest.mark.parametrize("method, path, root", DEEP_TARGETS)
@pytest.mark.parametrize("idempotency_key", [None, "deep-1"])
def test_deeply_nested_json_is_400_invalid_json(api_client, subscription, method, path, root, idempotency_key):
    headers = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}
    for body in (nested(100_000), nested_objects(5_000), '{"%s":%s}' % (root, nested_objects(200))):
        response = getattr(api_client, method)(path, body, content_type="application/json", **headers)
        assert_lago_error(response, 400, "invalid_json")


@pytest.mark.parametrize("method, path, root", DEEP_TARGETS)
def test_json_nested_up_to_the_limit_is_not_refused_for_its_depth(api_client, subscription, method, path, root):
    # 100 levels in all, as Lago's parser allows; brackets inside strings do not count.
    body = '{"%s":{"properties":%s, "name":"%s"}}' % (root, nested(98), "[{" * 500)
    response = getattr(api_client, method)(path, body, content_type="application/json")
    assert response.status_code < 500, response.content
    assert response.json().get("code") != "invalid_json", response.content


def event(value: str, transaction_id: str) -> str:
    return ('{"event":{"transaction_id":"%s","external_subscription_id":"sub_1","code":"cpu_seconds",'
            '"properties":{"cpu_seconds":%s}}}' % (transaction_id, value))


@pytest.mark.parametrize("value", [
    "1e-999999",
    "-1E-20000",
    "1e999999",
])
@pytest.mark.parametrize("idempotency_key", [None, "num-1"])
def test_a_number_postgresql_cannot_hold_is_refused(api_client, subscription, value, idempotency_key):
    headers = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}
    response = api_client.post("/api/v1/events", event(value, "tx_num"), content_type="application/json", **headers)
    assert response.status_code in (400, 422), response.content
    assert response["Content-Type"] == "application/json" and response.json()["status"] == response.status_code


def test_a_number_postgresql_cannot_hold_as_another_property_is_refused_too(api_client, subscription):
    body = json.loads(event("1", "tx_other"))
    text = json.dumps(body).replace('"cpu_seconds": 1}', '"cpu_seconds": 1, "other": 1e-999999}')
    response = api_client.post("/api/v1/events", text, content_type="application/json")
    assert response.status_code in (400, 422), response.content


def test_json_nesting_is_counted_outside_strings_only():
    from billing_kit.middleware import MAX_JSON_DEPTH, json_nesting_exceeds
    assert not json_nesting_exceeds(nested(MAX_JSON_DEPTH).encode())
    assert json_nesting_exceeds(nested(MAX_JSON_DEPTH + 1).encode())
    assert not json_nesting_exceeds(b'["%s", "\\"[[", {"k": "]]]"}]' % (b"[" * 5000))
    assert json_nesting_exceeds(b'["\\\\"' + b"[" * 101 + b"]" * 101 + b"]")  # an escaped backslash ends no string
    assert not json_nesting_exceeds(b"[]" * 100_000)  # wide is fine


@pytest.mark.parametrize("method, path", [("post", "/api/v1/plans"), ("put", "/api/v1/plans/starter")])
@pytest.mark.parametrize("charges", [[None], [None, None]])
def test_a_null_charge_is_refused_not_a_server_error(api_client, subscription, method, path, charges):
    plan = {"name": "Starter", "code": "starter", "interval": "monthly", "amount_cents": 1000,
            "amount_currency": "CAD", "charges": charges}
    response = getattr(api_client, method)(path, {"plan": plan}, format="json")
    body = assert_lago_error(response, 422, "validation_errors")
    assert body["error_details"] == {"charges": {str(i): ["value_is_mandatory"] for i in range(len(charges))}}
    # nothing changed: the plan keeps its one charge
    assert len(api_client.get("/api/v1/plans/starter").json()["plan"]["charges"]) == 1


@pytest.mark.parametrize("path, body", [
    ("/api/v1/events", {"event": {"transaction_id": "tx_host", "external_subscription_id": "sub_1",
                                  "code": "cpu_seconds", "properties": {"cpu_seconds": "1"}}}),
    ("/api/v1/events/batch", {"events": [{"transaction_id": "tx_host", "external_subscription_id": "sub_1",
                                          "code": "cpu_seconds", "properties": {"cpu_seconds": "1"}}]}),
])
def test_the_ingest_fast_path_refuses_a_host_outside_allowed_hosts(api_client, subscription, path, body):
    response = api_client.post(path, body, format="json", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": 400, "error": "Bad Request"}
    # as every other path answers, and nothing was stored
    assert api_client.get("/api/v1/plans", HTTP_HOST="evil.example").json() == response.json()
    assert api_client.get("/api/v1/events/tx_host").status_code == 404
    assert api_client.post(path, body, format="json").status_code == 200
