"""``/health`` answers like Lago's; ``/ops/health`` checks what a load balancer cares about."""
from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_kit.docs import LAGO_JSON
from billing_project.celery import app as celery_app
from odoo_bridge.health import check_odoo
from webhooks.selectors import delivery_health


class LagoHealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: LAGO_JSON, 503: LAGO_JSON}, auth=[])
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


# A delivery due for longer than this means workers or beat are not keeping up.
WEBHOOK_BACKLOG_ALERT_SECONDS = 300


def check_webhooks() -> dict:
    backlog = delivery_health()
    return {"ok": backlog["oldest_due_seconds"] < WEBHOOK_BACKLOG_ALERT_SECONDS, **backlog}


# Odoo being down does not take this instance out of a load balancer: it is reported only.
REQUIRED_CHECKS = {"database": check_database, "broker": check_broker}
REPORTED_CHECKS = {"odoo": check_odoo, "webhooks": check_webhooks}


def _run(check) -> dict:
    try:
        return check()
    except Exception as exc:  # a health check reports failures, it never raises them
        return {"ok": False, "error": type(exc).__name__}


class OpsHealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: LAGO_JSON, 503: LAGO_JSON}, auth=[])
    def get(self, request) -> Response:
        results = {name: _run(check) for name, check in {**REQUIRED_CHECKS, **REPORTED_CHECKS}.items()}
        healthy = all(results[name]["ok"] for name in REQUIRED_CHECKS)
        return Response(
            {"status": "ok" if healthy else "unavailable", "checks": results},
            status=200 if healthy else 503,
        )
