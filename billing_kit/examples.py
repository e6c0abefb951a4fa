"""Request and response examples of the OpenAPI document, derived from the schemas themselves.

An example is never written out as a second copy of an object's shape: the generator walks
each operation's own schema (the wire declarations and the serializers' components) and
fills every member with a value — the value an app registered for that member of that
resource next to its schema (``values("plan", code="premium")`` in ``<app>/api/schemas.py``),
else a common one by member name, else one derived from the member's type, format, enum and
bounds. Error examples are the bodies ``billing_kit.http`` writes for the real errors.
tests/api/test_openapi.py validates every example against its own schema, so an example
cannot drift from the document.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import (
    BadRequest,
    BillingError,
    ErrorCode,
    NotAllowed,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from .http import error_body
from .lago_surface import LAGO_COLLECTIONS, singular

Schema = dict[str, Any]

LAGO_ID = "1a901a90-1a90-1a90-1a90-1a901a901a90"
DATETIME = "2026-01-01T00:00:00Z"
DATE = "2026-01-01"

# Members whose meaning does not depend on the resource (values in the style of Lago's documentation).
_COMMON: dict[str, Any] = {
    "lago_id": LAGO_ID, "external_customer_id": "hooli_1234", "external_subscription_id": "sub_1234",
    "lago_organization_id": LAGO_ID, "currency": "CAD", "amount_currency": "CAD", "amount_cents": 1500,
    "total_amount_currency": "CAD", "plan_amount_currency": "CAD", "default_currency": "CAD",
    "created_at": DATETIME, "updated_at": DATETIME, "deleted_at": None, "terminated_at": None,
    "description": "", "invoice_display_name": None, "email": "billing@hooli.test", "timezone": "UTC",
    "applicable_timezone": "UTC", "country": "CA", "city": "Toronto", "zipcode": "M5V 2T6",
    "address_line1": "5230 Penfield Ave", "address_line2": None, "state": "ON", "phone": "+1 416 555 0100",
    "document_locale": "en", "plan_code": "premium", "billable_metric_code": "storage_gb",
    "current_page": 1, "next_page": None, "prev_page": None, "total_pages": 1, "total_count": 1,
    "metadata": {"team": "platform"}, "taxes": [], "error_details": [], "add_on_code": "setup_fee",
    # what has not happened to the example objects
    "voided_at": None, "failed_at": None, "canceled_at": None, "trial_ended_at": None, "expiration_at": None,
    "payment_dispute_lost_at": None, "downgrade_plan_date": None, "parent_id": None, "lago_parent_id": None,
    "lago_credit_note_id": None, "lago_voided_invoice_id": None,
}

# Per resource (the envelope's member name, singular: "plan", "billable_metric"), registered
# by each app next to its schemas.
_BY_RESOURCE: dict[str, dict[str, Any]] = {}


def values(resource: str, **members: Any) -> None:
    """The example values of ``resource``'s members (the rest are derived)."""
    _BY_RESOURCE.setdefault(resource, {}).update(members)


_PATTERN_CANDIDATES = ("CAD", "12.5", "1", "2026-01-01")
_DEPTH_LIMIT = 12


def example_of(schema: Any, components: Mapping[str, Schema], *, request: bool = False,
               resource: str | None = None, member: str | None = None, _depth: int = 0) -> Any:
    """An example value of ``schema`` (``$ref``s resolved against ``components``). A request
    shows its required members and those that have a value of their own; an answer all."""
    if not isinstance(schema, dict) or _depth > _DEPTH_LIMIT:
        return None
    if member is not None:
        value = _registered(schema, resource=resource, member=member)
        if value is not _NONE:
            return value
    nested: dict[str, Any] = {"request": request, "resource": resource, "member": member,
                              "_depth": _depth + 1}
    if "$ref" in schema:
        return example_of(components.get(schema["$ref"].rsplit("/", 1)[-1]), components, **nested)
    for combinator in ("allOf", "oneOf", "anyOf"):
        if schema.get(combinator):
            return example_of(schema[combinator][0], components, **nested)
    enum = [value for value in schema.get("enum", ()) if value is not None]
    if enum:
        return enum[0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        required = set(schema.get("required", ()))
        shown = {}
        for name, sub in schema.get("properties", {}).items():
            inner = _resource_of(name, resource)
            if (request and name not in required and inner == resource
                    and _registered(sub, resource=resource, member=name) is _NONE):
                continue
            shown[name] = example_of(sub, components, request=request, resource=inner, member=name,
                                     _depth=_depth + 1)
        return shown
    if kind == "array":
        items = schema.get("items") or {}
        if not items:
            return []
        item = example_of(items, components, request=request, resource=resource, _depth=_depth + 1)
        return [item] * max(1, schema.get("minItems", 1))
    if kind == "string":
        plain = not ({"format", "pattern"} & set(schema)) and not (member or "").endswith("_id")
        # an answer's optional text nobody gave a value: null, as most are
        return None if plain and schema.get("nullable") and not request else _string(schema, member)
    if kind == "integer":
        return _bounded(1, schema)
    if kind == "number":
        # ok-float: an example value for a JSON "number" in the OpenAPI document, never money
        return float(_bounded(1, schema))
    if kind == "boolean":
        return False
    return None


_NONE = object()


def _registered(schema: Schema, *, resource: str | None, member: str) -> Any:
    """The value registered for ``member`` of ``resource``, else the common one, if it is of
    the member's type here (one name may be a string in a request and a number in an answer)."""
    for known in (_BY_RESOURCE.get(resource or "", {}), _COMMON):
        if member in known and _fits(known[member], schema):
            return known[member]
    return _NONE


_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "number": (int, float),
                                        "boolean": (bool,), "object": (dict,), "array": (list,)}


def _fits(value: Any, schema: Schema) -> bool:
    if value is None:
        return bool(schema.get("nullable"))
    kind = schema.get("type")
    return kind is None or isinstance(value, _TYPES.get(kind, object))


def _resource_of(member: str, current: str | None) -> str | None:
    """Entering ``member``: it names a resource (``plan``, ``charges``) or stays in ``current``
    (a request shows an optional member that names a resource)."""
    for name in (member, singular(member)):
        if name in _BY_RESOURCE:
            return name
    return current


def _string(schema: Schema, member: str | None) -> str:
    formats = {"date-time": DATETIME, "date": DATE, "uuid": LAGO_ID, "uri": "https://example.com/webhooks"}
    if schema.get("format") in formats:
        return formats[schema["format"]]
    pattern = schema.get("pattern")
    if pattern:
        return next((c for c in _PATTERN_CANDIDATES if re.search(pattern, c)), _PATTERN_CANDIDATES[0])
    if member and member.endswith("_id") and not member.startswith("external_"):
        return LAGO_ID
    text = member or "string"
    return text[: schema.get("maxLength", len(text))]


def _bounded(value: int, schema: Schema) -> int:
    if "minimum" in schema:
        value = max(value, int(schema["minimum"]))
    if "maximum" in schema:
        value = min(value, int(schema["maximum"]))
    return value


# ---------------------------------------------------------------- errors


def _resource_in(path: str) -> str:
    """The innermost Lago collection of ``path``, singular (``/plans/{code}/charges`` → charge)."""
    names = [segment for segment in path.removeprefix("/api/v1/").split("/") if segment in LAGO_COLLECTIONS]
    return singular(names[-1]) if names else "resource"


# The state a 405 of these operations most often reports (the services raise them).
_NOT_ALLOWED: dict[str, str] = {
    "/billable_metrics/{code}": ErrorCode.BILLABLE_METRIC_IN_USE, "_usage": ErrorCode.NO_ACTIVE_SUBSCRIPTION,
    "/download": "is_draft", "/void": "not_voidable", "/portal_url": "customer_portal_url_not_supported",
}


def _error_for(status: str, *, path: str, body_member: str | None,
               first_field: str | None) -> BillingError | None:
    if status == "400":
        # without a body, the request guard's answer (billing_kit.middleware)
        return BadRequest(f"param is missing or the value is empty: {body_member}" if body_member
                          else "invalid Content-Length")
    if status == "401":
        return Unauthorized()
    if status == "404":
        code = f"{_resource_in(path)}_not_found"
        return NotFound(code if code in ErrorCode._value2member_map_ else ErrorCode.RESOURCE_NOT_FOUND)
    if status == "405":
        return NotAllowed(next((code for end, code in _NOT_ALLOWED.items() if path.endswith(end)),
                               ErrorCode.METHOD_NOT_ALLOWED))
    if status == "422":
        field = first_field or "per_page"
        return ValidationFailed({field: [str(ErrorCode.VALUE_IS_MANDATORY if first_field
                                             else ErrorCode.VALUE_IS_OUT_OF_RANGE)]})
    if status == "429":
        return TooManyRequests()
    if status == "503":
        return ServiceUnavailable()
    return None


def _envelope_member(schema: Any, components: Mapping[str, Schema]) -> tuple[str | None, str | None]:
    """A request body ``{"plan": {...}}``: its member and the first required field inside it."""
    while isinstance(schema, dict) and "$ref" in schema:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1])
    if not isinstance(schema, dict) or len(schema.get("properties", {})) != 1:
        return None, None
    member, inner = next(iter(schema["properties"].items()))
    while isinstance(inner, dict) and ("$ref" in inner or inner.get("allOf")):
        inner = components.get(inner["$ref"].rsplit("/", 1)[-1]) if "$ref" in inner else inner["allOf"][0]
    required = inner.get("required", []) if isinstance(inner, dict) else []
    return member, (required[0] if required else None)


def add_examples(document: dict[str, Any]) -> None:
    """Give every request body and every answer of every operation an ``example``."""
    components = document.get("components", {}).get("schemas", {})
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            body_member = first_field = None
            for media in operation.get("requestBody", {}).get("content", {}).values():
                media["example"] = example_of(media.get("schema"), components, request=True)
                body_member, first_field = _envelope_member(media.get("schema"), components)
            for status, response in operation["responses"].items():
                error = None if status.startswith("2") else _error_for(
                    status, path=path, body_member=body_member, first_field=first_field)
                for media in response.get("content", {}).values():
                    is_error_body = media.get("schema", {}).get("$ref", "").endswith("/Error")
                    media["example"] = (error_body(error) if error is not None and is_error_body
                                        else example_of(media.get("schema"), components))
