"""The OpenAPI of the wire objects: compact JSON-schema builders, and the registry of the
named objects (``components/schemas``) each app declares next to its views.

Every member a renderer always writes is listed as required, with its type and whether it
may be ``null``; schemathesis (``tests/api/test_schemathesis.py``) holds the answers to
these schemas, so a renderer that drifts from its schema fails the suite.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Schema = dict[str, Any]

_COMPONENTS: dict[str, Schema] = {}

_SCALARS: dict[str, Schema] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "uuid": {"type": "string", "format": "uuid"},
    # Decimal amounts and units are strings on the wire (never floats).
    "decimal": {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"},
    "currency": {"type": "string", "pattern": r"^[A-Z]{3}$", "description": "ISO 4217 code"},
    "object": {"type": "object", "additionalProperties": True},
    "array": {"type": "array", "items": {}},
}


def scalar(spec: str) -> Schema:
    """``"string"``, ``"integer?"`` (nullable), ``"datetime"``, ``"decimal"``, ``"currency"``..."""
    name, nullable = spec.rstrip("?"), spec.endswith("?")
    schema = dict(_SCALARS[name])
    return {**schema, "nullable": True} if nullable else schema


def _field(value: Any) -> Schema:
    """A scalar's name (``"string?"``) or a schema."""
    return scalar(value) if isinstance(value, str) else dict(value)


def obj(fields: Mapping[str, Any], *, optional: tuple[str, ...] = (), nullable: bool = False,
        description: str = "") -> Schema:
    """An object with these members, all required but ``optional``; others may appear."""
    schema: Schema = {"type": "object", "properties": {name: _field(value) for name, value in fields.items()}}
    required = [name for name in fields if name not in optional]
    if required:  # OpenAPI 3.0: never an empty list
        schema["required"] = required
    if nullable:
        schema["nullable"] = True
    if description:
        schema["description"] = description
    return schema


def array(item: Any) -> Schema:
    return {"type": "array", "items": _field(item)}


def ref(name: str, *, nullable: bool = False) -> Schema:
    """A named object, by name (another app may declare it; the generated document is
    validated, so a dangling name fails tests/api/test_openapi.py)."""
    reference = {"$ref": f"#/components/schemas/{name}"}
    return {"allOf": [reference], "nullable": True} if nullable else reference


def component(name: str, schema: Schema) -> Schema:
    """Register a named object; returns its ``$ref``."""
    _COMPONENTS[name] = schema
    return ref(name)


def components() -> dict[str, Schema]:
    return dict(_COMPONENTS)


# Input fields of Lago's that are refused (``not_supported``) unless neutral: accepted
# only as null/false/empty, so not advertised. Keyed by serializer class name.
_REFUSED_INPUT_FIELDS: dict[str, tuple[str, ...]] = {}


def refused_in_docs(serializer_name: str, fields: tuple[str, ...]) -> None:
    _REFUSED_INPUT_FIELDS[serializer_name] = fields


def hide_refused_fields(schemas: dict[str, Schema]) -> None:
    """Drop the refused fields from the request components of their serializers (drf-spectacular
    names them ``<Serializer>`` or ``<Serializer>Request``) and say so in their description."""
    for name, fields in _REFUSED_INPUT_FIELDS.items():
        for component_name in (name, f"{name}Request"):
            schema = schemas.get(component_name)
            if not schema or not fields:
                continue
            properties = schema.get("properties", {})
            for field in fields:
                properties.pop(field, None)
            if "required" in schema:
                schema["required"] = [f for f in schema["required"] if f not in fields]
                if not schema["required"]:
                    del schema["required"]
            note = ("Lago fields refused with 422 not_supported unless null, false or empty "
                    f"(docs/api.md \"Catalogue fields\"): {', '.join(fields)}.")
            schema["description"] = f"{schema['description']} {note}" if schema.get("description") else note


PAGINATION_META = component("PaginationMeta", obj({
    "current_page": "integer", "next_page": "integer?", "prev_page": "integer?",
    "total_pages": "integer", "total_count": "integer"}))

ERROR = component("Error", obj(
    {"status": "integer", "error": "string", "code": "string",
     "error_details": {"type": "object", "additionalProperties": True}},
    optional=("code", "error_details"),
    description="Lago's error body: `code` names the error; `error_details` maps each field to its codes."))


def envelope(root: str, item: Schema) -> Schema:
    """Lago's ``{"<root>": {...}}``."""
    return obj({root: item})


def page(root: str, item: Schema) -> Schema:
    """Lago's list: ``{"<root>": [...], "meta": {pagination}}``."""
    return obj({root: array(item), "meta": PAGINATION_META})
