from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from billing_kit.formatting import money_display

from . import connection
from .health import check_odoo
from .models import CreditNote, CreditNoteItem, Invoice, InvoiceLine, OdooConnectionState, OdooPullCursor, OdooSyncState
from .sync import full_sweep, resync


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    readonly_fields = ("name", "quantity", "unit_amount", "amount", "total_amount", "subscription", "charge",
                       "odoo_line_id")
    fields = readonly_fields


class HeldFilter(admin.SimpleListFilter):
    """Invoices of several service accounts, which no service is shown until ops split them in Odoo."""

    title = "held from the API"
    parameter_name = "held"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Held (several service accounts)"), ("no", "Shown to its service")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.exclude(held_reason="")
        if self.value() == "no":
            return queryset.filter(held_reason="")
        return queryset


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "service", "account_link", "status", "payment_status", "total_display",
                    "issuing_date", "odoo_move_id", "held")
    list_filter = (HeldFilter, "service", "status", "payment_status", "currency")
    search_fields = ("number", "customer__email", "account_link__external_id", "account_link__name")
    readonly_fields = [f.name for f in Invoice._meta.fields]
    inlines = [InvoiceLineInline]

    @admin.display(description="total", ordering="total_amount")
    def total_display(self, invoice: Invoice) -> str:
        return money_display(invoice.total_amount, invoice.currency)

    @admin.display(description="held from the API", ordering="held_reason")
    def held(self, invoice: Invoice) -> str:
        return invoice.held_reason

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class CreditNoteItemInline(admin.TabularInline):
    model = CreditNoteItem
    extra = 0
    can_delete = False
    readonly_fields = ("name", "quantity", "unit_amount", "amount", "total_amount", "subscription", "charge",
                       "odoo_line_id")
    fields = readonly_fields


@admin.register(CreditNote)
class CreditNoteAdmin(admin.ModelAdmin):
    """Odoo refunds (out_refund), mirrored: read-only, Odoo is the truth."""

    list_display = ("__str__", "service", "account_link", "status", "total_display", "issuing_date",
                    "odoo_move_id", "held")
    list_filter = (HeldFilter, "service", "status", "currency")
    search_fields = ("number", "customer__email", "account_link__external_id", "account_link__name")
    readonly_fields = [f.name for f in CreditNote._meta.fields]
    inlines = [CreditNoteItemInline]

    @admin.display(description="total", ordering="total_amount")
    def total_display(self, note: CreditNote) -> str:
        return money_display(note.total_amount, note.currency)

    @admin.display(description="held from the API", ordering="held_reason")
    def held(self, note: CreditNote) -> str:
        return note.held_reason

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


# ---------------------------------------------------------------- sync state
@admin.register(OdooSyncState)
class OdooSyncStateAdmin(admin.ModelAdmin):
    list_display = ("kind", "label", "status", "odoo_model", "odoo_id", "attempts", "next_attempt_at",
                    "pre_rated", "frozen", "short_error", "updated_at")
    list_filter = ("kind", "status", "pre_rated", "frozen", "service")
    search_fields = ("reference", "label", "object_id", "last_error")
    readonly_fields = [f.name for f in OdooSyncState._meta.fields]
    actions = ["resync_selected"]
    list_per_page = 100

    @admin.display(description="last error")
    def short_error(self, state: OdooSyncState) -> str:
        text = state.last_error or state.pricing_note
        return text[:120]

    @admin.action(description="Resync with Odoo (search by reference and rewrite on the next cycle)",
                  permissions=["change"])
    def resync_selected(self, request: HttpRequest, queryset: QuerySet[OdooSyncState]) -> None:
        count = resync(queryset)
        self.message_user(request, f"{count} object(s) will be searched and rewritten on the next push cycle.",
                          messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(OdooConnectionState)
class OdooConnectionStateAdmin(admin.ModelAdmin):
    list_display = ("__str__", "status", "server_version", "price_digits", "last_ok_at", "last_error_at",
                    "broken_at", "short_error")
    readonly_fields = [f.name for f in OdooConnectionState._meta.fields]
    actions = ["reset_connection", "check_now", "check_config_now", "full_sweep_now"]

    @admin.display(description="last error")
    def short_error(self, state: OdooConnectionState) -> str:
        return state.last_error[:160]

    @admin.action(description="Reset a broken connection (after fixing the API key)", permissions=["change"])
    def reset_connection(self, request: HttpRequest, queryset: QuerySet[OdooConnectionState]) -> None:
        connection.reset_connection()
        self.message_user(request, "Connection reset: the next cycle will log in again once.", messages.SUCCESS)

    @admin.action(description="Check Odoo now", permissions=["change"])
    def check_now(self, request: HttpRequest, queryset: QuerySet[OdooConnectionState]) -> None:
        result = check_odoo()
        level = messages.SUCCESS if result.get("ok") else messages.ERROR
        self.message_user(request, f"Odoo: {result}", level)

    @admin.action(description="Full sweep: examine every subscription on the next push cycles (beat does it daily)",
                  permissions=["change"])
    def full_sweep_now(self, request: HttpRequest, queryset: QuerySet[OdooConnectionState]) -> None:
        count = full_sweep()
        self.message_user(request, f"{count} subscription(s) will be examined by the next push cycles.",
                          messages.SUCCESS)

    @admin.action(description="Re-check Odoo's configuration now (invoicing cron, price precision)",
                  permissions=["change"])
    def check_config_now(self, request: HttpRequest, queryset: QuerySet[OdooConnectionState]) -> None:
        try:
            report = connection.refresh_config_report(connection.open_client(), force=True)
        except connection.CycleAborted as exc:
            self.message_user(request, f"Odoo: {exc}", messages.ERROR)
            return
        warnings = report.get("warnings") or []
        self.message_user(request, "Odoo configuration: " + ("; ".join(warnings) or "ok"),
                          messages.WARNING if warnings else messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(OdooPullCursor)
class OdooPullCursorAdmin(admin.ModelAdmin):
    list_display = ("name", "write_date", "last_run_at")
    readonly_fields = ("name", "last_run_at", "updated_at")
