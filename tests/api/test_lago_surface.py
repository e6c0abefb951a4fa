"""Every path of lago-python-client 1.55.0 answers: served, or a Lago-shaped 404/405 that
names the right resource — never a 500, an HTML page or another resource's name.

The test walks the client itself (every sub-client of ``Client`` and every public method),
calls each method against a live server with real parents (a customer, a plan, a
subscription of this service) and ids that do not exist, and records every HTTP exchange.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterator
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from lago_python_client.base_model import BaseModel
from lago_python_client.client import Client

from .conftest import create_catalogue, create_subscription

pytestmark = pytest.mark.django_db(transaction=True)

PARENTS = {"customers": "cus_probe", "plans": "starter", "subscriptions": "sub_probe"}
MISSING = "no_such_id"


class Probe(BaseModel):
    """An input object with nothing in it: the server must refuse it Lago's way."""


def sub_clients(lago: Client) -> Iterator[tuple[str, Any]]:
    for name, attr in inspect.getmembers(Client):
        if isinstance(attr, cached_property):
            yield name, getattr(lago, name)._obj


def public_methods(sub_client: Any) -> Iterator[tuple[str, Any]]:
    for name, method in inspect.getmembers(sub_client, inspect.ismethod):
        if not name.startswith("_"):
            yield name, method


def argument(sub_client: Any, parameter: inspect.Parameter) -> Any:
    name = parameter.name
    parent = getattr(sub_client, "PARENT_API_RESOURCE", None)
    if name == "input_object":
        return Probe()
    if name in ("options", "params", "timeout", "timetour"):
        return None
    if name == "metadata":
        return {"probe": "value"}
    if name == "parent_id" and parent in PARENTS:
        return PARENTS[parent]
    for prefix, collection in (("customer", "customers"), ("plan", "plans"), ("subscription", "subscriptions")):
        if name.startswith(prefix) or name == f"external_{prefix}_id":
            return PARENTS[collection]
    if name == "external_id" and sub_client.API_RESOURCE == "subscriptions":
        return PARENTS["subscriptions"]
    return MISSING


def collections_of_the_client() -> set[str]:
    names = set()
    for _, sub_client in sub_clients(Client(api_key="k", api_url="http://x")):
        for attribute in ("API_RESOURCE", "PARENT_API_RESOURCE"):
            value = getattr(sub_client, attribute, None)
            if isinstance(value, str):
                names.add(value)
    return names | {"versions", "analytics", "charges", "filters", "metadata", "alerts", "fixed_charges", "payment_methods"}


def named_resource(path: str, collections: set[str], *, first_missing: bool = False) -> str:
    """The innermost collection in a name position of ``/api/v1/<name>/<id>/<name>/…``; with
    ``first_missing``, the first one whose id does not exist (what a 404 must name)."""
    segments = [s for s in path.split("/api/v1/", 1)[1].split("/") if s]
    if first_missing:
        for name, object_id in zip(segments[0::2], segments[1::2]):
            if object_id == MISSING and name in collections:
                return name
    named = [s for s in segments[0::2] if s in collections]
    return named[-1]


def singular(collection: str) -> str:
    if collection in ("metadata", "analytics"):
        return collection
    if collection == "taxes":
        return "tax"
    if collection.endswith("ies"):
        return collection[:-3] + "y"
    return collection.rstrip("s")


# Answers of served endpoints whose code names a state, not a resource (Lago's own codes).
STATE_CODES = {"no_active_subscription", "does_not_match_an_instant_charge"}


@pytest.fixture
def exchanges(monkeypatch) -> list[tuple[str, str, httpx.Response]]:
    recorded: list[tuple[str, str, httpx.Response]] = []
    original = httpx.Client.send

    def send(self, request, *args, **kwargs):
        response = original(self, request, *args, **kwargs)
        response.read()
        recorded.append((request.method, urlsplit(str(request.url)).path, response))
        return response

    monkeypatch.setattr(httpx.Client, "send", send)
    return recorded


def test_every_client_method_answers_with_its_own_resource(api_client, lago, exchanges):
    create_catalogue(api_client)
    create_subscription(api_client, external_id=PARENTS["subscriptions"], customer=PARENTS["customers"])
    called = []
    for client_name, sub_client in sub_clients(lago):
        for method_name, method in public_methods(sub_client):
            kwargs = {p.name: argument(sub_client, p) for p in inspect.signature(method).parameters.values()
                      if p.default is inspect.Parameter.empty or p.name in ("options", "params")}
            try:
                method(**kwargs)
            except Exception:  # noqa: BLE001 — the client raises on every non-2xx; the exchange is what counts
                pass
            called.append(f"{client_name}.{method_name}")
    assert len(called) > 150 and len(exchanges) > 150

    collections = collections_of_the_client()
    wrong = []
    for method, path, response in exchanges:
        assert response.status_code < 500, (method, path, response.text)
        assert response.headers["content-type"].startswith(("application/json", "text/plain")), (method, path)
        if response.status_code < 400:
            continue
        body = response.json()
        assert set(body) >= {"status", "error"} and body["status"] == response.status_code, (method, path, body)
        if response.status_code in (400, 401, 422):
            continue
        resource = singular(named_resource(path, collections, first_missing=response.status_code == 404))
        code = body.get("code", "")
        if code in STATE_CODES:
            continue
        expected = (f"{resource}_not_found",) if response.status_code == 404 else (
            f"{resource}_not_supported",)
        if not (code in expected or (response.status_code == 405 and code.startswith(f"{resource}_")
                                     and code.endswith("_not_supported"))):
            wrong.append((method, path, response.status_code, code))
    assert wrong == [], "\n".join(map(str, wrong))


def test_the_paths_named_in_the_issue(api_client, lago):
    create_catalogue(api_client)
    charges = api_client.get("/api/v1/plans/starter/charges")
    assert charges.status_code == 200 and [c["code"] for c in charges.json()["charges"]] == ["cpu_seconds"]
    missing = api_client.get("/api/v1/plans/starter/charges/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "charge_not_found"
    # served since #14 (customer wallets): an unknown customer is its own 404; creating through it is not served
    wallets = api_client.get("/api/v1/customers/cus_1/wallets")
    assert wallets.status_code == 404 and wallets.json()["code"] == "customer_not_found"
    wallets = api_client.post("/api/v1/customers/cus_1/wallets", {}, format="json")
    assert wallets.status_code == 405 and wallets.json() == {
        "status": 405, "error": "Method Not Allowed", "code": "wallet_not_supported"}
    retry = api_client.post("/api/v1/invoices/x/retry_payment")
    assert retry.json()["code"] == "invoice_retry_payment_not_supported"
    # served since #14 (Odoo's portal PDF): an unknown invoice is its own 404
    assert api_client.post("/api/v1/invoices/x/download").json()["code"] == "invoice_not_found"
    filters = api_client.get("/api/v1/plans/starter/charges/cpu_seconds/filters")
    assert filters.status_code == 405 and filters.json()["code"] == "filter_not_supported"
    # an unknown (non-Lago) path stays a plain 404
    assert api_client.get("/api/v1/nothing_here").json()["code"] == "resource_not_found"
    # a Lago path we do not serve is still behind authentication
    assert api_client.__class__().get("/api/v1/wallets").status_code == 401


@pytest.mark.parametrize("collection", ["add_ons", "plans", "billable_metrics", "coupons"])
@pytest.mark.parametrize("code", ["abc%0A", "a%0Ab", "%0A"])
def test_a_code_holding_a_newline_is_looked_up_not_routed_elsewhere(api_client, collection, code):
    # Lago codes may hold any character; a regex "." stops at a newline, which once routed
    # "add_ons/abc\n" past its own view to the unsupported-path 405 (found by schemathesis).
    response = api_client.get(f"/api/v1/{collection}/{code}")
    assert response.status_code == 404, response.content
    assert response.json()["code"] == f"{singular(collection)}_not_found"
