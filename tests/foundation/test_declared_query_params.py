"""Query parameters are declared once: the OpenAPI lists exactly what each operation reads."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from drf_spectacular.generators import EndpointEnumerator, SchemaGenerator

from billing_kit.params import Query, QueryParam, UndeclaredQueryParam, declared_query

REPO_ROOT = Path(__file__).resolve().parents[2]
APPS = ("billing_kit", "billing_project", "identity", "metering", "webhooks", "coupons", "odoo_bridge", "migration")


def test_no_api_view_reads_the_raw_query_string():
    """Only the kit's declared-parameter reader touches it (the admin's HTML views may)."""
    readers = []
    api_modules = [*(REPO_ROOT / "billing_kit").rglob("*.py"), *(REPO_ROOT / "billing_project").rglob("*.py"),
                   *(p for app in APPS for p in (REPO_ROOT / app).glob("api/*.py"))]
    for path in api_modules:
        if path == REPO_ROOT / "billing_kit" / "params.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("query_params", "GET"):
                readers.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert readers == []


def test_every_operation_documents_exactly_the_query_parameters_it_declares():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    checked = 0
    for path, _regex, method, callback in EndpointEnumerator().get_api_endpoints():
        view_class = getattr(callback, "cls", None)
        handler = getattr(view_class, method.lower(), None)
        operation = schema["paths"].get(path, {}).get(method.lower())
        if handler is None or operation is None:
            continue
        documented = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert documented == set(declared_query(handler)), f"{method} {path}"
        checked += 1
    assert checked > 20


def test_reading_an_undeclared_parameter_is_a_programming_error():
    from django.http import QueryDict

    query = Query(raw=QueryDict("status=active&other=1"), declared={"status": QueryParam("status", "x")})
    assert query.get("status") == "active"
    with pytest.raises(UndeclaredQueryParam):
        query.get("other")
