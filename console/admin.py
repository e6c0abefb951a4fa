"""The console composes the apps' admin pages into safe ones (it is loaded last):

- sensitive fields read-only (``mode``, ``stripe_customer_id`` — shared only by an action —,
  ``odoo_*``); plan changes,
  terminations and go-live only through their services;
- secrets shown once (a new service's first API key, a webhook endpoint's signing secret
  after create or rotate) and masked everywhere else;
- bulk replay and resync run as jobs on a worker, with a progress page;
- celery-beat's actions declare the permission they need;
- the audit log, read-only.
"""
from __future__ import annotations

from typing import Any, ClassVar, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from billing_kit.formatting import money_display
from console import selectors, services
from console.models import AuditEntry, OpsJob, OpsJobKind
from console.views import start_job_response
from identity import keys
from identity.admin import AccountLinkAdmin, CustomerAdmin, ServiceAdmin
from identity.models import AccountLink, Customer, Service
from metering.admin import ChargeAdmin, PlanAdmin, SubscriptionAdmin
from metering.models import Charge, Plan, Subscription, SubscriptionStatus
from metering.selectors import plans as service_plans
from migration.admin import ReconciliationAdmin
from migration.models import Reconciliation
from odoo_bridge.admin import OdooSyncStateAdmin
from odoo_bridge.models import OdooSyncState
from webhooks import services as webhook_services
from webhooks.admin import WebhookDeliveryAdmin, WebhookEndpointAdmin, WebhookEventAdmin
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

site = admin.site


def _replace(model: Any, admin_class: type[admin.ModelAdmin]) -> None:
    if site.is_registered(model):
        site.unregister(model)
    site.register(model, admin_class)


def mask_secret(secret: str) -> str:
    return f"{secret[:6]}…{secret[-4:]}" if secret else "—"


# ------------------------------------------------------------------ identity
class ConsoleServiceAdmin(ServiceAdmin):
    def save_model(self, request: HttpRequest, obj: Service, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            # Kept on the in-memory object only, for the one page that shows it.
            obj._first_key = keys.issue_key(service=obj, name="initial")  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: Service, post_url_continue: str | None = None
                     ) -> HttpResponse:
        issued = obj._first_key  # type: ignore[attr-defined]
        return TemplateResponse(request, "admin/identity/apikey_created.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "api_key": issued.api_key,
            "plaintext": issued.plaintext, "title": f"Service {obj.code} created",
        })


class ConsoleCustomerAdmin(CustomerAdmin):
    list_display: Any = ("customer_360_link", *[f for f in CustomerAdmin.list_display if f != "__str__"])

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Written by Stripe readiness and the Odoo sync only: a typo here bills the wrong partner.
        owned = [name for name in ("stripe_customer_id", "odoo_partner_id")
                 if any(f.name == name for f in Customer._meta.get_fields())]
        return (*super().get_readonly_fields(request, obj), *owned)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Customer]:
        # customer_360_link labels each row from its accounts' profiles: one query, not one per row.
        return super().get_queryset(request).prefetch_related("account_links")

    @admin.display(description="customer")
    def customer_360_link(self, customer: Customer) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:console_customer_360", args=[customer.pk]),
                           selectors.customer_label(customer))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}),
                         "customer_360_url": reverse("admin:console_customer_360", args=[object_id])}
        return super().change_view(request, object_id, form_url, extra_context)


class ConsoleAccountLinkAdmin(AccountLinkAdmin):
    """A service's customer account: its profile is editable; its payment method is not typed
    in (a typo would charge another client's card) — ops share one client's card between its
    accounts with an action, which the audit log records."""
    actions = ["share_payment_method"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return (*super().get_readonly_fields(request, obj), "stripe_customer_id")

    @admin.action(description="Share the payment method among these accounts of one client", permissions=["change"])
    def share_payment_method(self, request: HttpRequest, queryset: QuerySet[AccountLink]) -> None:
        try:
            source = services.share_payment_method(accounts=list(queryset))
        except services.PaymentMethodNotShared as refused:
            self.message_user(request, str(refused), messages.ERROR)
            return
        self.message_user(request, f"The payment method of {source.service.code}:{source.external_id} is now "
                                   f"shared by {queryset.count()} accounts.", messages.SUCCESS)


# ------------------------------------------------------------------ metering
class ReadOnlyFormMixin:
    """Every field read-only in the form; changes go through the services (actions, API)."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields]  # type: ignore[attr-defined]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ChangePlanForm(forms.Form):
    plan_code = forms.ChoiceField(label="New plan")


class ConsoleSubscriptionAdmin(ReadOnlyFormMixin, SubscriptionAdmin):
    actions = ["change_plan", "terminate_subscriptions"]
    readonly_fields: ClassVar[Any] = ()

    @admin.action(description="Change plan (upgrade now, downgrade at the window's end)", permissions=["change"])
    def change_plan(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> HttpResponse | None:
        subscriptions = list(queryset.filter(status=SubscriptionStatus.ACTIVE).select_related("service", "plan",
                                                                                               "account_link"))
        services_of = {s.service_id for s in subscriptions}
        if len(services_of) != 1:
            self.message_user(request, "Choose active subscriptions of one service.", messages.ERROR)
            return None
        form = ChangePlanForm(request.POST if "apply" in request.POST else None)
        cast(forms.ChoiceField, form.fields["plan_code"]).choices = [(p.code, f"{p.code} — {p.name}") for p in
                                            service_plans(service=subscriptions[0].service)]
        if "apply" in request.POST and form.is_valid():
            for subscription in subscriptions:
                services.change_plan(subscription=subscription, plan_code=form.cleaned_data["plan_code"])
            self.message_user(request, f"Plan changed for {len(subscriptions)} subscription(s).", messages.SUCCESS)
            return None
        return TemplateResponse(request, "console/change_plan.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Change plan",
            "subscriptions": subscriptions, "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        })

    @admin.action(description="Terminate now (final window rated and invoiced)", permissions=["change"])
    def terminate_subscriptions(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        ended = [services.terminate(subscription=s) for s in queryset.exclude(status__in=("terminated", "canceled"))]
        self.message_user(request, f"Terminated {len(ended)} subscription(s).", messages.SUCCESS)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "golive_url": reverse("admin:migration_golive")}
        return super().change_view(request, object_id, form_url, extra_context)


class ConsolePlanAdmin(ReadOnlyFormMixin, PlanAdmin):
    """The catalogue changes through the API, whose rules lock fields once a plan is in use."""

    def get_inline_instances(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return []


class ConsoleChargeAdmin(ReadOnlyFormMixin, ChargeAdmin):
    def get_inline_instances(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return []


# ------------------------------------------------------------------ webhooks
class ConsoleWebhookEndpointAdmin(WebhookEndpointAdmin):
    readonly_fields: ClassVar[Any] = tuple(f for f in WebhookEndpointAdmin.readonly_fields
                            if f not in ("secret", "previous_secret")) + ("masked_secret", "masked_previous_secret")
    actions = ["enable_endpoints", "disable_endpoints", "rotate_and_show_secrets"]

    @admin.display(description="signing secret")
    def masked_secret(self, endpoint: WebhookEndpoint) -> str:
        return mask_secret(endpoint.secret)

    @admin.display(description="previous secret (still accepted until its expiry)")
    def masked_previous_secret(self, endpoint: WebhookEndpoint) -> str:
        return mask_secret(endpoint.previous_secret)

    def response_add(self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None
                     ) -> HttpResponse:
        return self._secrets_page(request, [obj], "Webhook endpoint created")

    def _secrets_page(self, request: HttpRequest, endpoints: list[WebhookEndpoint], title: str) -> HttpResponse:
        return TemplateResponse(request, "console/webhook_secret.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": title,
            "endpoints": endpoints,
        })

    @admin.action(description="Rotate signing secret (shown once; the old one stays valid for the overlap)",
                  permissions=["change"])
    def rotate_and_show_secrets(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> HttpResponse:
        rotated = [webhook_services.rotate_secret(endpoint=e).endpoint for e in queryset]
        return self._secrets_page(request, rotated, "Signing secrets rotated")


class ConsoleWebhookDeliveryAdmin(WebhookDeliveryAdmin):
    actions = ["replay_as_job"]

    @admin.action(description="Replay selected deliveries (incl. dead letters), as a job", permissions=["change"])
    def replay_as_job(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> HttpResponse:
        ids = [str(pk) for pk in queryset.values_list("id", flat=True)]
        return start_job_response(request=request, kind=OpsJobKind.REPLAY, parameters={"delivery_ids": ids},
                                  total=len(ids))


class ConsoleWebhookEventAdmin(WebhookEventAdmin):
    actions = ["replay_events_as_job"]

    @admin.action(description="Replay all deliveries of selected events, as a job", permissions=["change"])
    def replay_events_as_job(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> HttpResponse:
        ids = [str(pk) for pk in WebhookDelivery.objects.filter(event__in=queryset).values_list("id", flat=True)]
        return start_job_response(request=request, kind=OpsJobKind.REPLAY, parameters={"delivery_ids": ids},
                                  total=len(ids))


# ------------------------------------------------------------------ Odoo bridge, migration
class ConsoleOdooSyncStateAdmin(OdooSyncStateAdmin):
    actions = ["resync_as_job"]

    @admin.action(description="Resync with Odoo (search by reference and rewrite), as a job",
                  permissions=["change"])
    def resync_as_job(self, request: HttpRequest, queryset: QuerySet[OdooSyncState]) -> HttpResponse:
        ids = list(queryset.values_list("id", flat=True))
        return start_job_response(request=request, kind=OpsJobKind.RESYNC, parameters={"state_ids": ids},
                                  total=len(ids))


class ConsoleReconciliationAdmin(ReconciliationAdmin):
    change_list_template = "console/reconciliation_change_list.html"
    list_display: Any = tuple({"fusion_amount": "fusion_total", "source_amount": "source_total",
                               "delta": "delta_total"}.get(f, f) for f in ReconciliationAdmin.list_display)

    @admin.display(description="Fusion amount", ordering="fusion_amount")
    def fusion_total(self, row: Reconciliation) -> str:
        return money_display(row.fusion_amount, row.currency)

    @admin.display(description="source amount", ordering="source_amount")
    def source_total(self, row: Reconciliation) -> str:
        return money_display(row.source_amount, row.currency)

    @admin.display(description="delta", ordering="delta")
    def delta_total(self, row: Reconciliation) -> str:
        return money_display(row.delta, row.currency)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}),
                         "can_reconcile": request.user.has_perm("migration.add_reconciliation")}
        return super().changelist_view(request, extra_context)


# ------------------------------------------------------------------ celery-beat
class GuardedPeriodicTaskAdmin(PeriodicTaskAdmin):
    """celery-beat's actions, each requiring the change permission (they run or stop tasks)."""

    @admin.action(description="Enable selected tasks", permissions=["change"])
    def enable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> Any:
        return super().enable_tasks(request, queryset)

    @admin.action(description="Disable selected tasks", permissions=["change"])
    def disable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> Any:
        return super().disable_tasks(request, queryset)

    @admin.action(description="Toggle activity of selected tasks", permissions=["change"])
    def toggle_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> Any:
        return super().toggle_tasks(request, queryset)

    @admin.action(description="Run selected tasks", permissions=["change"])
    def run_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> Any:
        return super().run_tasks(request, queryset)


# ------------------------------------------------------------------ the console's own
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at", "username", "action", "target", "object_count", "status_code", "path")
    list_filter = ("action", "target", "username")
    search_fields = ("username", "action", "path", "object_ids")
    date_hierarchy = "at"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in AuditEntry._meta.concrete_fields]

    @admin.display(description="objects")
    def object_count(self, entry: AuditEntry) -> int:
        return len(entry.object_ids or [])

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OpsJobAdmin(admin.ModelAdmin):
    list_display = ("__str__", "kind", "status", "done", "total", "started_by", "created_at", "finished_at")
    list_filter = ("kind", "status")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in OpsJob._meta.concrete_fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        from django.http import HttpResponseRedirect

        return HttpResponseRedirect(reverse("admin:console_job", args=[object_id]))


_replace(Service, ConsoleServiceAdmin)
_replace(Customer, ConsoleCustomerAdmin)
_replace(AccountLink, ConsoleAccountLinkAdmin)
_replace(Subscription, ConsoleSubscriptionAdmin)
_replace(Plan, ConsolePlanAdmin)
_replace(Charge, ConsoleChargeAdmin)
_replace(WebhookEndpoint, ConsoleWebhookEndpointAdmin)
_replace(WebhookDelivery, ConsoleWebhookDeliveryAdmin)
_replace(WebhookEvent, ConsoleWebhookEventAdmin)
_replace(OdooSyncState, ConsoleOdooSyncStateAdmin)
_replace(Reconciliation, ConsoleReconciliationAdmin)
_replace(PeriodicTask, GuardedPeriodicTaskAdmin)
site.register(AuditEntry, AuditEntryAdmin)
site.register(OpsJob, OpsJobAdmin)


class GuardedAccessAttemptAdmin(AccessAttemptAdmin):
    """django-axes' clean-up deletes attempt records: it needs the delete permission."""

    actions = ["cleanup_expired_attempts"]

    @admin.action(description="Clean up expired attempts", permissions=["delete"])
    def cleanup_expired_attempts(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> Any:
        return super().cleanup_expired_attempts(request, queryset)


_replace(AccessAttempt, GuardedAccessAttemptAdmin)
