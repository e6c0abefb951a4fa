"""Admin: "Import from NexaCloud", the reconciliation report, and go-live."""

from __future__ import annotations

import io

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from identity.models import Service
from metering.models import CLOSED_SUBSCRIPTION_STATUSES, Subscription, SubscriptionMode
from migration import golive
from migration.models import (
    ENTITIES,
    GoLiveAttempt,
    ImportRun,
    ImportRunStatus,
    Reconciliation,
)
from migration.reconciliation import totals_by_period, write_csv
from migration.services import start_import_run
from migration.tasks import queue_import_run


class ImportForm(forms.Form):
    dry_run = forms.BooleanField(required=False, initial=True,
                                 help_text="Do the whole import, report the counts, and roll everything back.")


@admin.register(ImportRun)
class ImportRunAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "banner_display", "created", "updated", "skipped", "failed",
                    "started_by", "started_at", "finished_at")
    list_filter = ("status", "dry_run")
    change_list_template = "admin/migration/importrun/change_list.html"

    def get_urls(self):
        urls = [
            path("import/", self.admin_site.admin_view(self.import_view), name="migration_importrun_import"),
            path("<int:run_id>/progress.json", self.admin_site.admin_view(self.progress_view),
                 name="migration_importrun_progress"),
        ]
        return urls + super().get_urls()

    def has_add_permission(self, request) -> bool:
        return False  # runs are started from "Import from NexaCloud", never typed in

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="kind")
    def kind(self, run: ImportRun) -> str:
        return "dry run" if run.dry_run else "import"

    @admin.display(description="result")
    def banner_display(self, run: ImportRun) -> str:
        return run.banner or "…"

    @admin.display(description="created")
    def created(self, run: ImportRun) -> int:
        return run.total("created")

    @admin.display(description="updated")
    def updated(self, run: ImportRun) -> int:
        return run.total("updated")

    @admin.display(description="skipped")
    def skipped(self, run: ImportRun) -> int:
        return run.total("skipped")

    @admin.display(description="failed")
    def failed(self, run: ImportRun) -> int:
        return run.total("failed")

    def import_view(self, request):
        if not request.user.has_perm("migration.add_importrun"):
            raise PermissionDenied
        if request.method == "POST":
            form = ImportForm(request.POST)
            if form.is_valid():
                run = start_import_run(dry_run=form.cleaned_data["dry_run"],
                                       started_by=request.user.get_username())
                queue_import_run(run=run)
                return HttpResponseRedirect(reverse("admin:migration_importrun_change", args=[run.pk]))
        else:
            form = ImportForm()
        return TemplateResponse(request, "admin/migration/importrun/import.html", {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import from NexaCloud",
            "form": form,
            "service_missing": not Service.objects.filter(code="nexacloud").exists(),
            "source_configured": bool(settings.NEXACLOUD_DSN),
            "recent_runs": ImportRun.objects.all()[:10],
        })

    def progress_view(self, request, run_id: int) -> JsonResponse:
        run = get_object_or_404(ImportRun, pk=run_id)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        return JsonResponse({
            "percent": run.percent, "status": run.status, "finished": run.status != ImportRunStatus.RUNNING,
            "message": (f"{run.phase or 'starting'}: {run.processed} rows" if run.status == ImportRunStatus.RUNNING
                        else f"{run.status}: {run.total('created')} created, {run.total('failed')} failed"),
        })

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = get_object_or_404(ImportRun, pk=object_id)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        return TemplateResponse(request, "admin/migration/importrun/detail.html", {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": str(run),
            "run": run,
            "running": run.status == ImportRunStatus.RUNNING,
            "progress_url": reverse("admin:migration_importrun_progress", args=[run.pk]),
            "rows": [(entity, run.counts.get(entity, {})) for entity in ENTITIES],
            "failures": run.failures.all()[:500],
            "failure_count": run.failures.count(),
        })


class PeriodFilter(admin.SimpleListFilter):
    title = "period"
    parameter_name = "period_start"

    def lookups(self, request, model_admin):
        periods = (Reconciliation.objects.order_by("-period_start")
                   .values_list("period_start", flat=True).distinct()[:24])
        return [(p.isoformat(), p.isoformat()) for p in periods]

    def queryset(self, request, queryset):
        return queryset.filter(period_start=self.value()) if self.value() else queryset


@admin.register(Reconciliation)
class ReconciliationAdmin(admin.ModelAdmin):
    list_display = ("external_subscription_id", "service", "customer", "period_start", "period_end",
                    "fusion_amount", "source_amount", "delta", "status", "checked_at")
    list_filter = ("status", "service", PeriodFilter)
    search_fields = ("external_subscription_id", "customer__email", "subscription__account_link__name")
    list_select_related = ("service", "customer")
    readonly_fields = [f.name for f in Reconciliation._meta.fields]
    change_list_template = "admin/migration/reconciliation/change_list.html"
    actions = ["export_selected_csv"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        return [
            path("export.csv", self.admin_site.admin_view(self.export_view), name="migration_reconciliation_export"),
        ] + super().get_urls()

    def _filtered(self, request):
        return self.get_changelist_instance(request).get_queryset(request)

    def changelist_view(self, request, extra_context=None):
        extra_context = extra_context or {}
        try:
            extra_context["period_totals"] = totals_by_period(self._filtered(request).order_by())
        except Exception:  # an invalid filter: the changelist itself reports it
            extra_context["period_totals"] = []
        extra_context["export_query"] = request.GET.urlencode()
        return super().changelist_view(request, extra_context=extra_context)

    def _csv_response(self, queryset) -> HttpResponse:
        stream = io.StringIO()
        write_csv(queryset.select_related("service").order_by("period_start", "external_subscription_id"), stream)
        response = HttpResponse(stream.getvalue(), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="reconciliation.csv"'
        return response

    def export_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return self._csv_response(self._filtered(request))

    @admin.action(description="Export selected as CSV", permissions=["view"])
    def export_selected_csv(self, request, queryset):
        return self._csv_response(queryset)


@admin.register(GoLiveAttempt)
class GoLiveAttemptAdmin(admin.ModelAdmin):
    list_display = ("subscription", "action", "ok", "message", "odoo_sale_order_id", "odoo_payment_token_id",
                    "started_by", "created_at")
    list_filter = ("action", "ok", "subscription__service")
    search_fields = ("subscription__external_id", "message")
    list_select_related = ("subscription__service",)
    readonly_fields = [f.name for f in GoLiveAttempt._meta.fields]
    change_list_template = "admin/migration/golive/change_list.html"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        return [
            path("go-live/", self.admin_site.admin_view(self.golive_view), name="migration_golive"),
        ] + super().get_urls()

    def golive_view(self, request):
        if not request.user.has_perm("metering.change_subscription"):
            raise PermissionDenied
        service = Service.objects.filter(code=request.POST.get("service") or request.GET.get("service")
                                         or "nexacloud").first()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Go-live",
            "service": service,
            "services": Service.objects.all(),
            "preflight": None,
            "results": [],
        }
        user = request.user.get_username()
        if service is not None and request.method == "POST":
            action = request.POST.get("action")
            ids = request.POST.getlist("subscription")
            chosen = list(Subscription.objects.filter(service=service, pk__in=ids)
                          .select_related("account_link__customer", "plan"))
            if action == "preflight":
                context["preflight"] = golive.preflight_service(service=service, started_by=user)
            elif action == "go_live":
                if not chosen:
                    messages.warning(request, "Choose at least one subscription.")
                context["results"] = golive.go_live(subscriptions=chosen, started_by=user)
            elif action == "revert":
                context["results"] = [golive.revert_to_shadow(subscription=s, started_by=user) for s in chosen]
            for attempt in context["results"]:
                level = messages.SUCCESS if attempt.ok else messages.ERROR
                messages.add_message(request, level, f"{attempt.subscription.external_id}: {attempt.message}")
        if service is not None:
            live = (Subscription.objects.filter(service=service, mode=SubscriptionMode.LIVE)
                    .exclude(status__in=CLOSED_SUBSCRIPTION_STATUSES)
                    .select_related("account_link__customer").order_by("external_id"))
            context["live_subscriptions"] = live
            context["latest"] = golive.latest_attempts([s.pk for s in live])
        return TemplateResponse(request, "admin/migration/golive/golive.html", context)
