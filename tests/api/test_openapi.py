"""OpenAPI 3 of the whole API, every parameter documented, and a docs page that works offline."""
from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def test_schema_generation_is_clean(tmp_path):
    # --fail-on-warn: every view has a resolvable request/response and auth scheme.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi: 3")


def test_every_endpoint_of_this_area_is_described(schema):
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    for expected in [("/api/v1/events", "post"), ("/api/v1/events/batch", "post"),
                     ("/api/v1/events/{transaction_id}", "get"), ("/api/v1/customers", "post"),
                     ("/api/v1/customers/{external_id}/current_usage", "get"),
                     ("/api/v1/customers/{external_id}/subscriptions", "get"),
                     ("/api/v1/subscriptions/{external_id}", "delete"), ("/api/v1/plans/{code}", "put"),
                     ("/api/v1/billable_metrics", "get")]:
        assert expected in operations


def test_every_parameter_is_documented(schema):
    undocumented = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path)), (path, method)
            for parameter in operation.get("parameters", []):
                if not parameter.get("description"):
                    undocumented.append(f"{method.upper()} {path} {parameter['name']}")
    assert undocumented == []


def test_docs_page_needs_no_network(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    urls = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r'"(/[^"]+\.(?:js|css))"', html)
    assert urls, html
    assert not [u for u in urls if u.startswith(("http:", "https:", "//"))]
    for url in urls:
        if url.startswith("/static/"):
            assert finders.find(url.removeprefix("/static/")), url
    assert client.get("/api/v1/docs/redoc").status_code == 200
    assert client.get("/api/v1/schema").status_code == 200


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_answer_has_a_real_schema(schema):
    """No operation answers "an object" (the empty schema the issue found): each success body
    is its own object, each error Lago's error body."""
    vague = []
    for path, method, operation in _operations(schema):
        for status, response in operation["responses"].items():
            for content in response.get("content", {}).values():
                body = content.get("schema", {})
                if body.get("type") == "object" and not body.get("properties"):
                    vague.append(f"{method.upper()} {path} {status}")
                if not status.startswith("2") and path.startswith("/api/v1/"):
                    assert body == {"$ref": "#/components/schemas/Error"}, (method, path, status, body)
    assert vague == []
    customer = schema["components"]["schemas"]["Customer"]
    assert {"lago_id", "external_id", "billing_configuration"} <= set(customer["required"])
    batch = schema["paths"]["/api/v1/events/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert batch["schema"]["properties"]["events"]["maxItems"] == 100


def test_bounds_and_refused_fields_as_the_code_enforces_them(schema):
    listing = schema["paths"]["/api/v1/customers"]["get"]["parameters"]
    bounds = {p["name"]: p["schema"] for p in listing if p["name"] in ("page", "per_page")}
    assert bounds == {"page": {"type": "integer", "minimum": 1},
                      "per_page": {"type": "integer", "minimum": 1, "maximum": 1000}}
    components = schema["components"]["schemas"]
    assert not {"expression", "filters", "weighted_interval"} & set(
        components["BillableMetricInputRequest"]["properties"])
    assert "plan_overrides" not in components["SubscriptionInputRequest"]["properties"]
    assert "trial_period" in components["PlanInputRequest"]["properties"]  # built
    assert components["WebhookEndpointInput"]["properties"]["webhook_url"]["format"] == "uri"
    assert components["OrganizationUpdateInputRequest"]["properties"]["default_currency"]["pattern"] == "^[A-Z]{3}$"


def test_refused_fields_are_still_refused(api_client):
    """Hidden from the document, not from the parser: a client that sends one is told."""
    response = api_client.post("/api/v1/billable_metrics", {"billable_metric": {
        "name": "x", "code": "x", "aggregation_type": "count_agg", "expression": "1 + 1"}}, format="json")
    assert response.status_code == 422 and response.json()["error_details"] == {"expression": ["not_supported"]}


def _validator(document):
    """A JSON-schema validator of ``document``'s OpenAPI 3.0 schemas (``nullable``, ``$ref`` to components)."""
    import jsonschema
    from schemathesis.specs.openapi.converter import to_json_schema

    components = {name: to_json_schema(schema, "nullable", is_response_schema=True)
                  for name, schema in document["components"]["schemas"].items()}

    def validate(schema, instance):
        root = {**to_json_schema(schema, "nullable", is_response_schema=True),
                "components": {"schemas": components}}
        jsonschema.validate(instance, root, cls=jsonschema.Draft4Validator)

    return validate


def test_every_operation_has_examples_valid_against_their_own_schemas(schema):
    """Issue #14: each request body and each answer has an example (success and errors), and
    each example is an instance of the schema it illustrates, so examples cannot drift."""
    import jsonschema

    validate = _validator(schema)
    missing, invalid, checked = [], [], 0
    for path, method, operation in _operations(schema):
        bodies = [("request", operation.get("requestBody", {}))]
        bodies += [(status, response) for status, response in operation["responses"].items()]
        for where, holder in bodies:
            for content_type, media in holder.get("content", {}).items():
                if "example" not in media:
                    missing.append(f"{method.upper()} {path} {where} {content_type}")
                    continue
                checked += 1
                try:
                    validate(media["schema"], media["example"])
                except jsonschema.ValidationError as error:
                    invalid.append(f"{method.upper()} {path} {where}: {error.message} at {list(error.path)}")
        success = [s for s in operation["responses"] if s.startswith("2")]
        assert success and all(operation["responses"][s].get("content") for s in success), (method, path)
    assert missing == [] and invalid == []
    assert checked > 400
    # Lago's shapes with Lago-like values, and the real error bodies
    plans = schema["paths"]["/api/v1/plans"]
    request = plans["post"]["requestBody"]["content"]["application/json"]["example"]
    assert request["plan"]["code"] == "premium" and request["plan"]["charges"][0]["charge_model"] == "standard"
    assert "cascade_updates" not in request["plan"]  # a request shows what is required or given a value
    listing = plans["get"]["responses"]["200"]["content"]["application/json"]["example"]
    assert listing["plans"][0]["code"] == "premium" and listing["meta"]["current_page"] == 1
    not_found = schema["paths"]["/api/v1/customers/{external_id}"]["get"]["responses"]["404"]
    assert not_found["content"]["application/json"]["example"] == {
        "status": 404, "error": "Not Found", "code": "customer_not_found"}


def test_a_drifted_example_is_caught(schema):
    """The validation the test above relies on does refuse an example that left its schema."""
    import jsonschema

    validate = _validator(schema)
    answer = schema["paths"]["/api/v1/plans/{code}"]["get"]["responses"]["200"]["content"]["application/json"]
    drifted = {"plan": {**answer["example"]["plan"], "amount_cents": "15.00"}}
    with pytest.raises(jsonschema.ValidationError):
        validate(answer["schema"], drifted)
    with pytest.raises(jsonschema.ValidationError):
        validate(answer["schema"], {"plan": {k: v for k, v in answer["example"]["plan"].items()
                                             if k != "code"}})
