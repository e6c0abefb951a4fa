from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.html import format_html

from . import keys, services
from .models import OrganizationHmacKey, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent


class WebhookEndpointForm(forms.ModelForm):
    class Meta:
        model = WebhookEndpoint
        fields = ["service", "name", "url", "event_types", "signature_algo", "is_active"]

    def clean_url(self) -> str:
        try:
            return services.validate_url(self.cleaned_data["url"])
        except services.EndpointInvalid as exc:
            raise forms.ValidationError(exc.message or "URL is not allowed") from None

    def clean_event_types(self):  # noqa: ANN201
        value = self.cleaned_data.get("event_types")
        if value is not None and (not isinstance(value, list) or not all(isinstance(t, str) for t in value)):
            raise forms.ValidationError('Enter a JSON list of webhook types, e.g. ["invoice.created"].')
        try:
            return services.validate_event_types(value)
        except services.EndpointInvalid as exc:
            raise forms.ValidationError(exc.message) from None


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("url", "service", "name", "is_active", "circuit", "disabled_reason", "created_at")
    list_filter = ("is_active", "service")
    search_fields = ("url", "name")
    list_select_related = ("service",)
    readonly_fields = (
        "id", "signature_algo", "secret", "previous_secret", "previous_secret_expires_at",
        "disabled_reason", "disabled_at", "consecutive_failures", "failing_since", "circuit_open_until",
        "deleted_at", "created_at", "updated_at", "deliveries_link",
    )
    actions = ["enable_endpoints", "disable_endpoints", "rotate_secrets"]

    def get_queryset(self, request):  # noqa: ANN001, ANN201
        return super().get_queryset(request).filter(deleted_at__isnull=True)

    def get_readonly_fields(self, request, obj=None):  # noqa: ANN001, ANN201
        # An endpoint never moves to another service: its deliveries and secret belong to this one.
        return (*self.readonly_fields, "service") if obj is not None else self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False  # deletion is a soft delete through the API; disable here instead

    @admin.display(description="circuit")
    def circuit(self, obj: WebhookEndpoint) -> str:
        """The circuit breaker's state, so ops see a failing receiver before it is disabled."""
        if obj.circuit_open_until is not None:
            return f"open until {obj.circuit_open_until:%Y-%m-%d %H:%M:%S} UTC ({obj.consecutive_failures} failures)"
        if obj.consecutive_failures:
            return f"closed, {obj.consecutive_failures} failures since {obj.failing_since:%Y-%m-%d %H:%M} UTC"
        return "closed"

    @admin.display(description="deliveries")
    def deliveries_link(self, obj: WebhookEndpoint) -> str:
        if not obj.pk:
            return "-"
        url = reverse("admin:webhooks_webhookdelivery_changelist") + f"?endpoint__id__exact={obj.pk}"
        return format_html('<a href="{}">deliveries to this endpoint</a>', url)

    def save_model(self, request, obj: WebhookEndpoint, form, change: bool) -> None:  # noqa: ANN001
        if not change:
            issued = services.create_endpoint(
                service=obj.service, url=obj.url, name=obj.name, event_types_filter=obj.event_types,
                is_active=obj.is_active,
            )
            obj.pk = issued.endpoint.pk
            obj.secret = issued.secret
            obj._state.adding = False
            messages.info(request, "Signing secret created; it is shown on this endpoint's page.")
            return
        changed = set(form.changed_data)
        current = WebhookEndpoint.objects.get(pk=obj.pk)
        services.update_endpoint(endpoint=current, url=obj.url, name=obj.name, event_types_filter=obj.event_types)
        if "is_active" in changed:
            services.set_endpoint_active(endpoint=current, active=obj.is_active)

    @admin.action(description="Enable selected endpoints", permissions=["change"])
    def enable_endpoints(self, request, queryset: QuerySet[WebhookEndpoint]) -> None:  # noqa: ANN001
        for endpoint in queryset:
            services.set_endpoint_active(endpoint=endpoint, active=True)
        self.message_user(request, f"Enabled {queryset.count()} endpoint(s).")

    @admin.action(description="Disable selected endpoints", permissions=["change"])
    def disable_endpoints(self, request, queryset: QuerySet[WebhookEndpoint]) -> None:  # noqa: ANN001
        for endpoint in queryset:
            services.set_endpoint_active(endpoint=endpoint, active=False, reason=f"disabled by {request.user}")
        self.message_user(request, f"Disabled {queryset.count()} endpoint(s).")

    @admin.action(description="Rotate signing secret (old one stays valid for the overlap)", permissions=["change"])
    def rotate_secrets(self, request, queryset: QuerySet[WebhookEndpoint]) -> None:  # noqa: ANN001
        for endpoint in queryset:
            services.rotate_secret(endpoint=endpoint)
        self.message_user(request, f"Rotated {queryset.count()} secret(s); see each endpoint's page.")


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False


class DeliveryInline(_ReadOnlyInline):
    model = WebhookDelivery
    fields = ("endpoint", "status", "attempts_count", "replay_count", "next_attempt_at", "last_status_code", "last_error")
    readonly_fields = fields


class AttemptInline(_ReadOnlyInline):
    model = WebhookAttempt
    show_change_link = False
    fields = ("replay_round", "attempt_number", "outcome", "started_at", "duration_ms", "status_code",
              "error_kind", "error", "response_excerpt", "connected_ip", "signed_timestamp")
    readonly_fields = fields


def _replay(modeladmin, request, ids: list, noun: str) -> None:  # noqa: ANN001
    count = services.replay_deliveries(delivery_ids=ids)
    skipped = len(ids) - count
    msg = f"Queued {count} {noun} for redelivery (same webhook-id, fresh retry budget)."
    if skipped:
        msg += f" {skipped} being sent right now were left alone."
    modeladmin.message_user(request, msg, messages.SUCCESS if count else messages.WARNING)


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("webhook_type", "service", "object_type", "created_at", "delivery_states")
    list_filter = ("service", "webhook_type", "created_at")
    search_fields = ("id",)
    date_hierarchy = "created_at"
    list_select_related = ("service",)
    readonly_fields = ("id", "service", "webhook_type", "object_type", "created_at", "pretty_body")
    exclude = ("body",)
    inlines = [DeliveryInline]
    actions = ["replay_events"]

    def has_add_permission(self, request) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    @admin.display(description="body (sent verbatim)")
    def pretty_body(self, obj: WebhookEvent) -> str:
        try:
            text = json.dumps(json.loads(bytes(obj.body)), indent=2, sort_keys=True)
        except ValueError:
            text = bytes(obj.body).decode("utf-8", errors="replace")
        return format_html("<pre>{}</pre>", text)

    @admin.display(description="circuit")
    def circuit(self, obj: WebhookEndpoint) -> str:
        """The circuit breaker's state, so ops see a failing receiver before it is disabled."""
        if obj.circuit_open_until is not None:
            return f"open until {obj.circuit_open_until:%Y-%m-%d %H:%M:%S} UTC ({obj.consecutive_failures} failures)"
        if obj.consecutive_failures:
            return f"closed, {obj.consecutive_failures} failures since {obj.failing_since:%Y-%m-%d %H:%M} UTC"
        return "closed"

    @admin.display(description="deliveries")
    def delivery_states(self, obj: WebhookEvent) -> str:
        states = [d.status for d in obj.deliveries.all()]
        return ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))) or "no endpoint"

    def get_queryset(self, request):  # noqa: ANN001, ANN201
        return super().get_queryset(request).prefetch_related("deliveries")

    @admin.action(description="Replay all deliveries of selected events", permissions=["change"])
    def replay_events(self, request, queryset: QuerySet[WebhookEvent]) -> None:  # noqa: ANN001
        ids = list(WebhookDelivery.objects.filter(event__in=queryset).values_list("id", flat=True))
        _replay(self, request, ids, "deliveries")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("event_type", "endpoint", "status", "attempts_count", "replay_count", "next_attempt_at",
                    "last_status_code", "last_error", "created_at")
    list_filter = ("status", "endpoint__service", "event__webhook_type", "endpoint", "created_at")
    search_fields = ("event__id", "endpoint__url")
    list_select_related = ("event", "endpoint", "endpoint__service")
    date_hierarchy = "created_at"
    readonly_fields = (
        "id", "event_link", "endpoint", "status", "attempts_count", "replay_count", "next_attempt_at",
        "claimed_until", "dispatched_until", "last_attempt_at", "last_status_code", "last_error",
        "succeeded_at", "dead_at", "created_at",
    )
    exclude = ("event",)
    inlines = [AttemptInline]
    actions = ["replay_deliveries"]

    def has_add_permission(self, request) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    @admin.display(description="type", ordering="event__webhook_type")
    def event_type(self, obj: WebhookDelivery) -> str:
        return obj.event.webhook_type

    @admin.display(description="event")
    def event_link(self, obj: WebhookDelivery) -> str:
        url = reverse("admin:webhooks_webhookevent_change", args=[obj.event_id])
        return format_html('<a href="{}">{} {}</a>', url, obj.event.webhook_type, obj.event_id)

    @admin.action(description="Replay selected deliveries (incl. dead letters)", permissions=["change"])
    def replay_deliveries(self, request, queryset: QuerySet[WebhookDelivery]) -> None:  # noqa: ANN001
        _replay(self, request, list(queryset.values_list("id", flat=True)), "deliveries")


class OrganizationHmacKeyForm(forms.ModelForm):
    class Meta:
        model = OrganizationHmacKey
        fields = ["service"]


@admin.register(OrganizationHmacKey)
class OrganizationHmacKeyAdmin(admin.ModelAdmin):
    """Lago's organization HMAC key, to give an app whose endpoints use ``hmac`` (made on
    first use, or here by choosing the service)."""

    form = OrganizationHmacKeyForm
    list_display = ("service", "created_at")
    readonly_fields = ("hmac_key", "created_at")

    def get_readonly_fields(self, request, obj=None):  # noqa: ANN001, ANN201
        return ("service", "hmac_key", "created_at") if obj is not None else ()

    def save_model(self, request, obj, form, change) -> None:  # noqa: ANN001
        if not change:
            keys.hmac_key_for(service_id=obj.service_id)  # made (or already there) exactly once
            return
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):  # noqa: ANN001, ANN201
        obj.pk = OrganizationHmacKey.objects.get(service_id=obj.service_id).pk
        return super().response_add(request, obj, post_url_continue)
