"""A PostgreSQL ``statement_timeout`` for the statements of API requests.

A runaway query (a pathological filter, a lock held by a migration) must not hold a web
worker thread indefinitely: under API_STATEMENT_TIMEOUT_MS the database cancels it and
the client gets a Lago-shaped 503 ``statement_timeout`` (``billing_kit.http``). Celery
tasks, management commands and the admin share the settings but not the limit: they may
legitimately run long statements.

The limit is a session setting, set once per database connection and not per request
(which would cost a round trip on every event posted): when the request's connection is
opened, or when a connection opened for something else is first used by an API request.
A connection kept across requests (CONN_MAX_AGE) keeps it. A non-API request on a
connection that has it restores the server's default.
"""
from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.db import connection as default_connection
from django.db.backends.signals import connection_created
from django.http import HttpRequest, HttpResponse

_API_PREFIX = "/api/"
_DEFAULT = "DEFAULT"
# The timeout the current request wants ("DEFAULT" outside /api/), None outside requests.
_wanted: ContextVar[str | None] = ContextVar("statement_timeout_wanted", default=None)


def _apply(wrapper: Any) -> None:
    """Bring the session's statement_timeout of ``wrapper`` (a Django connection) to what
    the current request wants, if it is open and not there already."""
    wanted = _wanted.get()
    raw = wrapper.connection
    if wanted is None or raw is None or wrapper.vendor != "postgresql":
        return
    applied = wrapper.__dict__.get("_api_statement_timeout")
    if applied == (id(raw), wanted) or (applied is None and wanted == _DEFAULT):
        return
    if wanted == _DEFAULT:
        raw.execute("SET statement_timeout TO DEFAULT")
    else:
        raw.execute("SELECT set_config('statement_timeout', %s, false)", [wanted])
    wrapper.__dict__["_api_statement_timeout"] = (id(raw), wanted)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    _apply(connection)


connection_created.connect(_on_connection_created, dispatch_uid="billing_kit.statement_timeout")


class ApiStatementTimeoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.API_STATEMENT_TIMEOUT_MS
        wanted = f"{limit}ms" if limit > 0 and request.path_info.startswith(_API_PREFIX) else _DEFAULT
        token = _wanted.set(wanted)
        try:
            try:
                _apply(default_connection)
            except Exception:
                # A connection the server dropped: the request opens a new one, and the
                # connection_created hook sets the timeout there.
                default_connection.close()
            return self.get_response(request)
        finally:
            _wanted.reset(token)
