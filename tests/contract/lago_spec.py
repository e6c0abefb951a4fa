"""Lago's public OpenAPI (vendored next to this file, see README.md): loading, validating a
body against one of its response schemas, and the operations table of docs/api.md."""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import yaml
from referencing.jsonschema import DRAFT202012

HERE = Path(__file__).resolve().parent
SPEC_PATH = HERE / "lago-openapi" / "openapi.yaml"
DOCS_API = HERE.parent.parent / "docs" / "api.md"
METHODS = ("get", "post", "put", "patch", "delete")
SPEC_URI = "urn:lago-openapi"


@functools.cache
def spec() -> dict[str, Any]:
    with SPEC_PATH.open() as handle:
        document = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    _apply_errata(document)
    return document


def _apply_errata(document: dict[str, Any]) -> None:
    """Where Lago's document contradicts Lago's own answers or says something no value can
    satisfy, the validation follows Lago's behaviour (each listed in docs/api.md):

    * an event property is ``oneOf: [number, integer]`` (no integer can match exactly one):
      read as ``anyOf``;
    * ``POST /events`` and ``/events/batch`` document ``lago_customer_id`` as always null because Lago ingests
      asynchronously; here the event is validated and stored synchronously, so it names the
      customer (a documented difference), and the override is dropped;
    * ``WalletObject`` requires ``balance``, a member it does not declare and Lago's own
      ``V1::WalletSerializer`` no longer writes (``balance_cents`` is the balance): not required.
    """
    schemas = document["components"]["schemas"]

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            one_of = node.get("oneOf")
            if isinstance(one_of, list) and {"type": "number"} in one_of and {"type": "integer"} in one_of:
                node["anyOf"] = node.pop("oneOf")
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schemas)
    for created in (schemas["EventCreated"]["properties"]["event"],
                    schemas["EventsCreated"]["properties"]["events"]["items"]):
        created["allOf"] = [part for part in created["allOf"] if "$ref" in part]
    wallet = schemas["WalletObject"]
    assert "balance" not in wallet["properties"]  # the erratum holds only while Lago's document says so
    wallet["required"] = [name for name in wallet["required"] if name != "balance"]


def operations() -> list[tuple[str, str]]:
    """Every (METHOD, path) of Lago's OpenAPI, in its order."""
    return [(method.upper(), path) for path, item in spec()["paths"].items()
            for method in METHODS if method in item]


@functools.cache
def _registry() -> referencing.Registry:
    resource = referencing.Resource.from_contents(spec(), default_specification=DRAFT202012)
    return referencing.Registry().with_resource(SPEC_URI, resource)


def success_schema(method: str, path: str) -> dict[str, Any] | None:
    """The JSON schema of the operation's 200 answer (a ``$ref`` into the document), or None."""
    response = spec()["paths"][path][method.lower()]["responses"].get("200", {})
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return None
    ref = schema.get("$ref")
    return {"$ref": f"{SPEC_URI}{ref}"} if ref else schema


def _null_or(rule: Any) -> Any:
    def check(validator: Any, value: Any, instance: Any, schema: dict[str, Any]) -> Any:
        if instance is None:
            return iter(())
        return rule(validator, value, instance, schema)
    return check


# Lago's document marks many fields non-nullable (``type: string``, an ``enum``) that Lago's
# own serializers render ``null`` when unset (a plan's ``description``, a customer's
# ``billing_configuration.payment_provider``...): ``null`` is accepted wherever a type or an
# enum is declared. Every other rule (required members, types of set values, formats of
# arrays and objects) is Lago's document as published.
LagoValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    validators={"type": _null_or(jsonschema.Draft202012Validator.VALIDATORS["type"]),
                "enum": _null_or(jsonschema.Draft202012Validator.VALIDATORS["enum"])},
)


def schema_errors(method: str, path: str, body: Any) -> list[str]:
    schema = success_schema(method, path)
    if schema is None:
        return []
    validator = LagoValidator(schema, registry=_registry())
    return sorted(f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
                  for error in validator.iter_errors(body))


ROW = re.compile(r"^\|\s*`(GET|POST|PUT|PATCH|DELETE) (/[^`]*)`\s*\|\s*(.+?)\s*\|\s*$")
ANSWER = re.compile(r"^(?P<status>\d{3}) `(?P<code>[a-z_]+)`")


def documented_answers() -> dict[tuple[str, str], str]:
    """The table "Lago's OpenAPI, operation by operation" of docs/api.md: (METHOD, path) → answer
    (``served``, ``served — …`` or ``405 `<code>` …``)."""
    text = DOCS_API.read_text()
    start = text.index("<!-- lago-operations:start -->")
    end = text.index("<!-- lago-operations:end -->")
    answers: dict[tuple[str, str], str] = {}
    for line in text[start:end].splitlines():
        match = ROW.match(line)
        if match:
            key = (match.group(1), match.group(2))
            assert key not in answers, f"listed twice: {key}"
            answers[key] = match.group(3)
    return answers
