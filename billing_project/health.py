"""``/health`` answers like Lago's; ``/ops/health`` checks what a load balancer cares about."""
from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_kit.wire import obj

HEALTH = obj({"version": "string", "github_url": "string", "message": "string"}, description="Lago's health answer.")
OPS_HEALTH = obj({"status": {"type": "string", "enum": ["ok", "unavailable"]}, "checked_at": "string",
                  "checks": "object"})
from billing_kit.errors import Unauthorized
from billing_kit.http import error_response
from billing_project.beat import BEAT_SYNC_SECONDS
from billing_project.celery import app as celery_app
from odoo_bridge.health import check_held_invoices, check_odoo
from webhooks.selectors import delivery_health, endpoint_health


class LagoHealthView(APIView):
    """Public and trivial: no database, broker or Odoo call."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: HEALTH}, auth=[])
    def get(self, request) -> Response:
        return Response({
            "version": settings.FUSION_BILLING_VERSION,
            "github_url": settings.FUSION_BILLING_SOURCE_URL,
            "message": "Success",
        })


def check_database() -> dict:
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}  # ok-float


def check_broker() -> dict:
    started = time.monotonic()
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}  # ok-float


# How long /ops/health waits for workers to answer a ping.
WORKER_PING_SECONDS = 1.0


def check_workers() -> dict:
    """Workers answering a broadcast ping now; none means no queue is being consumed."""
    replies = celery_app.control.ping(timeout=WORKER_PING_SECONDS) or []
    names = sorted(name for reply in replies for name in reply)
    return {"ok": bool(names), "count": len(names), "names": names}


# Beat sends the webhook sweep every few seconds and writes run times every
# BEAT_SYNC_SECONDS: a newest run older than this means beat is not running.
BEAT_STALE_SECONDS = max(120, BEAT_SYNC_SECONDS * 6)


def check_beat() -> dict:
    from django_celery_beat.models import PeriodicTask

    last = PeriodicTask.objects.filter(enabled=True).aggregate(last=Max("last_run_at"))["last"]
    if last is None:
        return {"ok": False, "last_run_at": None, "error": "beat never ran"}
    age = int((timezone.now() - last).total_seconds())
    return {"ok": age < BEAT_STALE_SECONDS, "last_run_at": last.isoformat(), "seconds_ago": max(0, age)}


# A delivery due for longer than this means workers or beat are not keeping up.
WEBHOOK_BACKLOG_ALERT_SECONDS = 300


def check_webhooks() -> dict:
    backlog = delivery_health()
    endpoints = endpoint_health()
    return {"ok": backlog["oldest_due_seconds"] < WEBHOOK_BACKLOG_ALERT_SECONDS, **backlog, **endpoints}


# Odoo, workers and beat being down does not take this instance out of a load balancer
# (it still takes API calls, and the outbox keeps their effects): they are reported only.
REQUIRED_CHECKS: dict[str, Callable[[], dict]] = {"database": check_database, "broker": check_broker}
REPORTED_CHECKS: dict[str, Callable[[], dict]] = {
    "workers": check_workers, "beat": check_beat, "odoo": check_odoo, "webhooks": check_webhooks,
    "held_invoices": check_held_invoices,
}


def _run(check: Callable[[], dict]) -> dict:
    try:
        return check()
    except Exception as exc:  # a health check reports failures, it never raises them
        return {"ok": False, "error": type(exc).__name__}


_cache_lock = threading.Lock()
_cached: dict[str, Any] = {}


def clear_cache() -> None:
    with _cache_lock:
        _cached.clear()


def run_checks() -> dict[str, dict]:
    """Every check, run at most once per ``OPS_HEALTH_CACHE_SECONDS`` in this process.

    Probes reach the database, the broker, every worker and Odoo; a monitor or an
    attacker polling /ops/health must not turn into that much traffic. Concurrent
    callers wait for one probe instead of each starting their own.
    """
    ttl = settings.OPS_HEALTH_CACHE_SECONDS
    with _cache_lock:
        fresh = _cached and time.monotonic() - _cached["at"] < ttl
        if not fresh:
            results = {name: _run(check) for name, check in {**REQUIRED_CHECKS, **REPORTED_CHECKS}.items()}
            _cached.update(at=time.monotonic(), checked_at=timezone.now().isoformat(), results=results)
        return {"checked_at": _cached["checked_at"], "results": _cached["results"]}


def _authorized(request) -> bool:
    user = request.user
    if user is not None and user.is_active and user.is_staff:
        return True
    token = settings.OPS_HEALTH_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, given = header.partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class OpsHealthView(APIView):
    """For monitoring: a staff session or the ``OPS_HEALTH_TOKEN`` bearer token."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [AllowAny]

    @extend_schema(responses={200: OPS_HEALTH, 401: obj({"status": "integer", "error": "string"}), 503: OPS_HEALTH},
                   auth=[])
    def get(self, request) -> Response:
        if not _authorized(request):
            return error_response(Unauthorized())
        snapshot = run_checks()
        results = snapshot["results"]
        healthy = all(results[name]["ok"] for name in REQUIRED_CHECKS)
        return Response(
            {"status": "ok" if healthy else "unavailable", "checked_at": snapshot["checked_at"], "checks": results},
            status=200 if healthy else 503,
        )
