"""Query parameters, declared once: the declaration documents them and is the only way to
read them.

A view method lists what it reads with ``@documented(query=(...), ...)``; the same
declaration feeds its OpenAPI operation and ``self.query(request)``, which answers only
declared names. Nothing else in the code base reads ``request.query_params`` (a test
checks), so the OpenAPI lists every parameter the code reads, aliases included.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class QueryParam:
    name: str
    description: str
    type: OpenApiTypes = OpenApiTypes.STR
    many: bool = False
    required: bool = False
    enum: Sequence[str] | None = None
    deprecated: bool = False
    # A raw JSON schema (bounds, patterns) instead of ``type``.
    schema: dict[str, Any] | None = None

    def openapi(self) -> OpenApiParameter:
        return OpenApiParameter(self.name, self.schema or self.type, OpenApiParameter.QUERY, required=self.required,
                                description=self.description, many=self.many or None,
                                enum=list(self.enum) if self.enum else None, deprecated=self.deprecated)


class UndeclaredQueryParam(LookupError):
    """A view read a query parameter its declaration does not list (a programming error)."""


class Query:
    """The declared query parameters of one request: ``get``/``getlist`` by declared name."""

    def __init__(self, *, raw: Any, declared: dict[str, QueryParam]) -> None:
        self._raw = raw
        self._declared = declared

    def _check(self, name: str) -> None:
        if name not in self._declared:
            raise UndeclaredQueryParam(f"query parameter {name!r} is not declared for this operation")

    def get(self, name: str) -> str | None:
        self._check(name)
        value = self._raw.get(name)
        return None if value is None else str(value)

    def getlist(self, name: str) -> list[str]:
        self._check(name)
        return [str(value) for value in self._raw.getlist(name)]

    def first_of(self, *names: str) -> str | None:
        """The first non-empty value among ``names`` (a parameter and its aliases)."""
        for name in names:
            value = self.get(name)
            if value:
                return value
        return None

    def list_of(self, *names: str) -> list[str]:
        """The values of the first of ``names`` that has any (``status[]`` or ``status``)."""
        for name in names:
            values = self.getlist(name)
            if values:
                return values
        return []


PAGE = QueryParam("page", "Page number, from 1 (0 or less: 422 value_is_out_of_range).", OpenApiTypes.INT,
                  schema={"type": "integer", "minimum": 1})
PER_PAGE = QueryParam("per_page", f"Items per page (default {settings.API_PAGE_SIZE_DEFAULT}, "
                      f"1 to {settings.API_PAGE_SIZE_MAX}; outside: 422 value_is_out_of_range).", OpenApiTypes.INT,
                      schema={"type": "integer", "minimum": 1, "maximum": settings.API_PAGE_SIZE_MAX})
PAGINATION = (PAGE, PER_PAGE)


def documented(*, query: Sequence[QueryParam] = (), parameters: Sequence[OpenApiParameter] = (),
               **schema: Any) -> Callable[[F], F]:
    """``extend_schema`` for a view method whose query parameters are exactly ``query``."""
    def decorate(method: F) -> F:
        method = extend_schema(parameters=[*parameters, *(p.openapi() for p in query)], **schema)(method)
        method.declared_query = {p.name: p for p in query}  # type: ignore[attr-defined]
        return method

    return decorate


def declared_query(handler: Callable[..., Any]) -> dict[str, QueryParam]:
    return getattr(handler, "declared_query", {})


def names_holding_nul(request: Any) -> list[str]:
    """Query parameters (declared or not) whose name or a value holds a NUL byte.

    PostgreSQL refuses NUL in text, so such a value must never reach a filter: the
    request guard (``billing_kit.middleware``) answers them 422 first. Names are given
    with the NUL replaced by U+FFFD.
    """
    query_string = request.META.get("QUERY_STRING", "")
    if "%00" not in query_string and "\x00" not in query_string:
        return []
    return [
        name.replace("\x00", "\ufffd") for name, values in request.GET.lists()
        if "\x00" in name or any("\x00" in value for value in values)
    ]


def read_query(request: Any, handler: Callable[..., Any]) -> Query:
    return Query(raw=request.query_params, declared=declared_query(handler))
