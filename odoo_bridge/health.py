"""Ops health check of Odoo: does it answer, and may we talk to it? Never raises."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from django.conf import settings

from .client import OdooError, OdooSettings, classify_exception
from .connection import odoo_settings
from .models import ConnectionStatus, OdooConnectionState
from .selectors import held_credit_notes, held_invoices

HELD_INVOICES_LISTED = 20


def check_odoo() -> dict[str, Any]:
    """Reported by ``/ops/health`` (Odoo being down never takes this instance out of a load balancer).

    A cheap unauthenticated ``version_info`` proves Odoo answers; the stored connection
    state says whether our credentials work (a broken connection is not retried here:
    a health probe must not add failed logins).
    """
    if not settings.ODOO_URL:
        return {"ok": True, "configured": False}
    settings_ = odoo_settings()
    state = OdooConnectionState.objects.filter(pk=1).first()
    result: dict[str, Any] = {"configured": settings_.configured,
                              "connection": state.status if state else ConnectionStatus.UNKNOWN}
    if state and state.last_ok_at:
        result["last_ok_at"] = state.last_ok_at.isoformat()
    started = time.monotonic()
    try:
        version = _version_info(settings_)
    except OdooError as exc:
        return {**result, "ok": False, "error": exc.name or "unreachable"}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)  # ok-float: latency
    result["server_version"] = version.get("server_version", "")
    result["ok"] = not (state and state.status == ConnectionStatus.BROKEN)
    if not result["ok"]:
        result["error"] = "access denied: connection broken until the API key is fixed"
    if state and state.config_report:  # checked at connect (odoo_bridge.config_check): what ops must set
        result["config"] = state.config_report
        if state.config_report.get("warnings") and result["ok"]:
            result["ok"] = False
            result["error"] = "configuration: " + "; ".join(state.config_report["warnings"])
    return result


def _version_info(settings_: OdooSettings) -> dict[str, Any]:
    request = urllib.request.Request(settings_.url.rstrip("/") + "/web/webclient/version_info",
                                     data=json.dumps({"jsonrpc": "2.0", "method": "call", "params": {}}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=min(settings_.timeout_seconds, 5)) as response:
            body = json.loads(response.read())
    except Exception as exc:
        raise classify_exception(exc, model="web", method="version_info") from exc
    return body.get("result") or {}


def check_held_invoices() -> dict[str, Any]:
    """Odoo invoices billing several service accounts at once: no service sees them (nor hears of them)
    until ops split them in Odoo (docs/odoo.md "An invoice of several services")."""
    fields = ("odoo_move_id", "number", "held_reason")
    held = list(held_invoices().values(*fields)[:HELD_INVOICES_LISTED + 1])
    held += list(held_credit_notes().values(*fields)[:HELD_INVOICES_LISTED + 1])  # a held invoice's refund
    count = (held_invoices().count() + held_credit_notes().count()) if len(held) > HELD_INVOICES_LISTED else len(held)
    return {"ok": not held, "count": count, "invoices": held[:HELD_INVOICES_LISTED]}
