from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from . import keys, services
from .models import AccountLink, AccountMetadata, ApiKey, Customer, Service


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    fields = ("prefix", "name", "is_active", "expires_at", "revoked_at", "last_used_at", "created_at")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "is_active", "default_currency", "lenient_events", "invoice_grace_period",
                    "active_key_count", "created_at")
    list_filter = ("is_active", "default_currency", "lenient_events")
    search_fields = ("code", "name")
    inlines = [ApiKeyInline]

    def save_model(self, request: HttpRequest, obj: Service, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "invoice_grace_period" in form.changed_data:
            # In the admin's transaction: the subscriptions' grace moves with the setting.
            services.organization_grace_changed(service=obj)

    @admin.display(description="active keys")
    def active_key_count(self, service: Service) -> int:
        return service.api_keys.filter(is_active=True, revoked_at__isnull=True).count()


class ApiKeyCreationForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("service", "name", "expires_at")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "service", "name", "state", "expires_at", "last_used_at", "created_at")
    list_filter = ("service", "is_active")
    search_fields = ("prefix", "name", "service__code")
    readonly_fields = ("prefix", "service", "last_used_at", "revoked_at", "created_at")
    fields = ("service", "prefix", "name", "is_active", "expires_at", "revoked_at", "last_used_at",
              "created_at")
    actions = ["revoke_selected"]

    def get_form(self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False,
                 **kwargs: Any) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = ApiKeyCreationForm
            kwargs["fields"] = ApiKeyCreationForm.Meta.fields
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def get_fields(self, request, obj=None):
        return ApiKeyCreationForm.Meta.fields if obj is None else self.fields

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = keys.issue_key(service=obj.service, name=obj.name, expires_at=obj.expires_at)
        obj.pk = issued.api_key.pk
        obj.prefix = issued.api_key.prefix
        # Kept on the in-memory object only, for the one page that shows it.
        obj._plaintext_key = issued.plaintext

    def response_add(self, request, obj, post_url_continue=None):
        return TemplateResponse(request, "admin/identity/apikey_created.html", {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "api_key": obj,
            "plaintext": obj._plaintext_key,
            "title": "API key created",
        })

    @admin.display(description="state")
    def state(self, api_key: ApiKey) -> str:
        if api_key.revoked_at:
            return "revoked"
        if not api_key.is_active:
            return "inactive"
        if api_key.expires_at and api_key.expires_at <= timezone.now():
            return "expired"
        return "active"

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request, queryset) -> None:
        for api_key in queryset:
            keys.revoke_key(prefix=api_key.prefix)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


class AccountLinkInline(admin.TabularInline):
    model = AccountLink
    extra = 0
    fields = ("service", "external_id", "external_email", "deleted_at", "created_at")
    readonly_fields = ("service", "external_id", "created_at")
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # accounts are created by their service (they need its numbering)


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("__str__", "email", "odoo_partner_id", "created_at")
    list_filter = ("account_links__service",)
    search_fields = ("email", "account_links__external_id", "account_links__stripe_customer_id")
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [AccountLinkInline]


class AccountMetadataInline(admin.TabularInline):
    model = AccountMetadata
    extra = 0
    fields = ("key", "value", "display_in_invoice", "created_at")
    readonly_fields = ("created_at",)


@admin.register(AccountLink)
class AccountLinkAdmin(admin.ModelAdmin):
    list_display = ("external_id", "service", "sequential_id", "name", "customer", "external_email", "currency",
                    "country", "stripe_customer_id", "deleted_at", "created_at")
    list_filter = ("service", "currency", "country", ("deleted_at", admin.EmptyFieldListFilter))
    search_fields = ("external_id", "external_email", "name", "legal_name", "customer__email", "stripe_customer_id")
    # The unified customer is an identity fact set when the account was created: not editable here.
    readonly_fields = ("id", "customer", "sequential_id", "slug", "odoo_invoice_partner_id", "created_at",
                       "updated_at")
    inlines = [AccountMetadataInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # accounts are created by their service through the API (they need its numbering)

    def save_model(self, request: HttpRequest, obj: AccountLink, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "invoice_grace_period" in form.changed_data:
            services.customer_grace_changed(link=obj)
