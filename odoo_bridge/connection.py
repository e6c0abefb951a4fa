"""The connection to Odoo as the cycles see it: settings, the stored state, cycle locks.

``open_client`` is the one way in for push, pull and the migration gateway: it refuses
to send anything while the connection is *broken* for the same credentials (ten failed
logins would lock the bot user's IP out for everyone behind it) and records whether
Odoo answered. ``advisory_locks`` serializes cycles and subscriptions across workers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Iterable, Iterator

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .client import (
    OdooAccessDenied,
    OdooClient,
    OdooConfigurationError,
    OdooError,
    OdooRemoteError,
    OdooRetryableError,
    OdooSettings,
    get_client,
    reset_client,
)
from .models import ConnectionStatus, OdooConnectionState

ADVISORY_NAMESPACE_SUBSCRIPTION = 0x0D00  # pg_advisory locks: (namespace, hashtext(subscription id))
ADVISORY_NAMESPACE_CYCLE = 0x0D01


class CycleAborted(Exception):
    """Stop the cycle: Odoo is unreachable or refuses our credentials."""


def odoo_settings() -> OdooSettings:
    """The ODOO_* settings as the client needs them (declared in billing_project/settings/odoo.py)."""
    return OdooSettings(url=settings.ODOO_URL, db=settings.ODOO_DB, user=settings.ODOO_USER,
                        api_key=settings.ODOO_API_KEY, timeout_seconds=settings.ODOO_TIMEOUT_SECONDS,
                        transport=settings.ODOO_TRANSPORT)


def connection_state() -> OdooConnectionState:
    state, _ = OdooConnectionState.objects.get_or_create(pk=1)
    return state


def mark_connection(*, status: str, settings_: OdooSettings, error: str = "", client: OdooClient | None = None,
                    now: dt.datetime | None = None) -> None:
    now = now or timezone.now()
    state = connection_state()
    state.status = status
    state.credentials_fingerprint = settings_.key_fingerprint()
    if status == ConnectionStatus.OK:
        state.last_ok_at = now
        state.broken_at = None
        if client is not None:
            f = client.fields
            state.server_version = f.server_version
            state.price_digits, state.quantity_digits = f.price_digits, f.quantity_digits
            state.line_uom_field, state.line_taxes_field = f.line_uom, f.line_taxes
    else:
        state.last_error, state.last_error_at = error[:2000], now
        if status == ConnectionStatus.BROKEN:
            state.broken_at = now
    state.save()


def connection_is_broken(settings_: OdooSettings) -> bool:
    """Broken stays broken for the same credentials; new credentials get one fresh try."""
    state = OdooConnectionState.objects.filter(pk=1).first()
    return bool(state and state.status == ConnectionStatus.BROKEN
                and state.credentials_fingerprint == settings_.key_fingerprint())


def record_connection_failure(exc: OdooError, *, settings_: OdooSettings | None) -> None:
    """What a failed call mid-cycle says about the connection; shared by push and pull.

    Judged by class, not by Odoo's exception name: JSON-2 answers a bad key with
    ``werkzeug.exceptions.Unauthorized``. A business error says nothing about the connection.
    """
    if isinstance(exc, OdooAccessDenied):
        if settings_ is not None:
            mark_connection(status=ConnectionStatus.BROKEN, settings_=settings_, error=str(exc))
        reset_client()
    elif exc.retryable and settings_ is not None:
        mark_connection(status=ConnectionStatus.DOWN, settings_=settings_, error=str(exc))


def reset_connection() -> None:
    OdooConnectionState.objects.filter(pk=1).update(status=ConnectionStatus.UNKNOWN, broken_at=None)
    reset_client()


def open_client(settings_: OdooSettings | None = None) -> OdooClient:
    """The process client, with connection state bookkeeping. Raises CycleAborted."""
    settings_ = settings_ or odoo_settings()
    if not settings_.configured:
        raise CycleAborted("Odoo is not configured (ODOO_URL, ODOO_DB, ODOO_USER, ODOO_API_KEY)")
    if connection.vendor != "postgresql":  # advisory locks below; see README "embedded default"
        raise CycleAborted("Odoo sync needs PostgreSQL (set DATABASE_URL); the embedded SQLite default does not sync")
    if connection_is_broken(settings_):
        raise CycleAborted("connection broken (access denied); fix the credentials or reset it in the admin")
    try:
        client = get_client(settings_)
    except OdooAccessDenied as exc:
        mark_connection(status=ConnectionStatus.BROKEN, settings_=settings_, error=str(exc))
        reset_client()
        raise CycleAborted(f"access denied: {exc}") from exc
    except (OdooRetryableError, OdooConfigurationError, OdooRemoteError) as exc:
        mark_connection(status=ConnectionStatus.DOWN, settings_=settings_, error=str(exc))
        raise CycleAborted(f"Odoo unreachable: {exc}") from exc
    mark_connection(status=ConnectionStatus.OK, settings_=settings_, client=client)
    return client


@contextlib.contextmanager
def advisory_locks(namespace: int, keys: Iterable[str]) -> Iterator[set[str]]:
    """Session-level try-locks, taken in one statement; yields the keys acquired.

    A key not acquired is being pushed by another worker right now: skipped this cycle.
    """
    wanted = sorted(set(keys))
    acquired: list[str] = []
    try:
        if wanted:
            with connection.cursor() as cursor:
                cursor.execute("SELECT k FROM unnest(%s::text[]) AS k WHERE pg_try_advisory_lock(%s, hashtext(k))",
                               [wanted, namespace])
                acquired = [row[0] for row in cursor.fetchall()]
        yield set(acquired)
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, hashtext(k)) FROM unnest(%s::text[]) AS k",
                               [namespace, acquired])
