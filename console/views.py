"""The console's own pages: the dashboard, the customer 360 page, job progress."""
from __future__ import annotations

from typing import Any, Callable

from celery import current_app
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from console import selectors, services
from console.models import OpsJob, OpsJobKind, OpsJobStatus
from console.tasks import queue_job
from identity.models import Customer


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() is not None
    except Exception:  # a health check reports failures, it never raises them
        return False


def _broker_ok() -> bool:
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:  # a health check reports failures, it never raises them
        return False


def dashboard(site: admin.AdminSite, request: HttpRequest, extra_context: dict[str, Any] | None
              ) -> TemplateResponse:
    now = timezone.now()
    if services.rollup_is_stale(now=now):
        # No worker refreshed it lately (just installed, or workers down): count the recent
        # hours here so the page is never empty; a live worker keeps this off the request.
        services.refresh_event_rollup(now=now)
    charts = selectors.dashboard_charts(now=now)
    context = {
        **site.each_context(request),
        "title": "Dashboard",
        "health": selectors.health_strip(now=now, database_ok=_database_ok(), broker_ok=_broker_ok()),
        "charts": [c.as_dict() for c in charts],
        "top_customers": selectors.top_customers(),
        "app_list": site.get_app_list(request),
        **(extra_context or {}),
    }
    request.current_app = site.name
    return TemplateResponse(request, "console/dashboard.html", context)


def customer_360(site: admin.AdminSite) -> Callable[..., HttpResponse]:
    def view(request: HttpRequest, customer_id: Any) -> HttpResponse:
        if not request.user.has_perm("identity.view_customer"):
            raise PermissionDenied
        customer = get_object_or_404(Customer, pk=customer_id)
        page = selectors.customer_page(customer=customer)
        return TemplateResponse(request, "console/customer_360.html", {
            **site.each_context(request),
            "title": f"Customer {selectors.customer_label(customer)}",
            "page": page,
            "usage_chart": page.usage_chart,
        })
    view.__name__ = "customer_360"
    return view


def job_page(site: admin.AdminSite) -> Callable[..., HttpResponse]:
    def view(request: HttpRequest, job_id: int) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied
        job = get_object_or_404(OpsJob, pk=job_id)
        return TemplateResponse(request, "console/job.html", {
            **site.each_context(request), "title": str(job), "job": job,
            "progress_url": reverse("admin:console_job_progress", args=[job.pk]),
        })
    view.__name__ = "job_page"
    return view


def job_progress(request: HttpRequest, job_id: int) -> JsonResponse:
    job = get_object_or_404(OpsJob, pk=job_id)
    return JsonResponse({"percent": job.percent, "done": job.done, "total": job.total, "status": job.status,
                         "finished": job.status in (OpsJobStatus.SUCCEEDED, OpsJobStatus.FAILED),
                         "message": job.message})


def start_job_response(*, request: HttpRequest, kind: str, parameters: dict[str, Any], total: int
                       ) -> HttpResponseRedirect:
    job = services.start_job(kind=kind, parameters=parameters, total=total, started_by=request.user.get_username())
    queue_job(job=job)
    return HttpResponseRedirect(reverse("admin:console_job", args=[job.pk]))


def start_reconciliation(site: admin.AdminSite) -> Callable[..., HttpResponse]:
    def view(request: HttpRequest) -> HttpResponse:
        # Reconciling writes the report's rows.
        if request.method != "POST" or not request.user.has_perm("migration.add_reconciliation"):
            raise PermissionDenied
        return start_job_response(request=request, kind=OpsJobKind.RECONCILE,
                                  parameters={"service_code": request.POST.get("service_code") or "nexacloud"},
                                  total=1)
    view.__name__ = "start_reconciliation"
    return view
