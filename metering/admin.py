from __future__ import annotations

from decimal import Decimal

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from billing_kit.formatting import money_display, rate_display

from .models import (
    BillableMetric, Charge, ChargeTier, Plan, PlanFee, RatedUsage, Subscription, UnmatchedEvent, UsageEvent,
)


def money(amount: Decimal | None, currency: str) -> str:
    return money_display(amount, currency)


@admin.register(BillableMetric)
class BillableMetricAdmin(admin.ModelAdmin):
    list_display = ("code", "service", "name", "aggregation_type", "field_name", "created_at")
    list_filter = ("service", "aggregation_type")
    search_fields = ("code", "name")
    readonly_fields = ("id", "created_at", "updated_at")


class ChargeInline(admin.StackedInline):
    model = Charge
    extra = 0
    fields = ("metric", "charge_model", "amount", "free_units", "unit_batch", "package_size",
              "invoice_display_name", "odoo_product_id")
    show_change_link = True


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("code", "service", "name", "interval", "flat_price", "odoo_plan_id", "created_at")
    list_filter = ("service", "interval", "amount_currency")
    search_fields = ("code", "name")
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [ChargeInline]

    @admin.display(description="flat price", ordering="amount")
    def flat_price(self, plan: Plan) -> str:
        return money(plan.amount, plan.amount_currency)


class ChargeTierInline(admin.TabularInline):
    model = ChargeTier
    extra = 0


@admin.register(Charge)
class ChargeAdmin(admin.ModelAdmin):
    list_display = ("__str__", "charge_model", "price", "free_units", "unit_batch", "package_size")
    list_filter = ("charge_model", "plan__service")
    search_fields = ("plan__code", "metric__code")
    inlines = [ChargeTierInline]

    @admin.display(description="price")
    def price(self, charge: Charge) -> str:
        return rate_display(charge.amount, charge.plan.amount_currency)


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("external_id", "service", "customer_display", "plan", "status", "mode",
                    "flat_price", "current_period_start", "current_period_end", "odoo_sale_order_id")
    list_filter = ("service", "status", "mode", "billing_time", "plan")
    search_fields = ("external_id", "name", "account_link__external_id", "account_link__customer__email")
    raw_id_fields = ("account_link", "plan")
    readonly_fields = ("id", "grace_period", "created_at", "updated_at")
    list_select_related = ("service", "plan", "account_link__customer")

    @admin.display(description="customer")
    def customer_display(self, subscription: Subscription) -> str:
        return str(subscription.account_link.customer)

    @admin.display(description="flat price", ordering="flat_amount")
    def flat_price(self, subscription: Subscription) -> str:
        return money(subscription.flat_amount, subscription.currency)


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    """Usage is evidence: it is never edited by hand."""

    list_display = ("transaction_id", "service", "external_subscription_id", "code", "timestamp", "value",
                    "created_at")
    list_filter = ("service", "code")
    search_fields = ("transaction_id", "external_subscription_id")
    date_hierarchy = "timestamp"
    list_select_related = ("service",)
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(RatedUsage)
class RatedUsageAdmin(admin.ModelAdmin):
    list_display = ("subscription", "metric_code", "window_start", "window_end", "units", "billable_units",
                    "amount_display", "state", "odoo_line_id", "rated_at")
    list_filter = ("state", "subscription__service", "subscription__mode")
    search_fields = ("subscription__external_id",)
    list_select_related = ("subscription__service", "charge__metric", "subscription__plan")
    readonly_fields = [f.name for f in RatedUsage._meta.fields]

    @admin.display(description="metric")
    def metric_code(self, rated: RatedUsage) -> str:
        return rated.charge.metric.code

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, rated: RatedUsage) -> str:
        return money(rated.amount, rated.subscription.currency)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(PlanFee)
class PlanFeeAdmin(admin.ModelAdmin):
    """Base fees written by metering (metering.plan_fees): read-only, final when written."""

    list_display = ("subscription", "kind", "window_start", "window_end", "units", "amount_display",
                    "odoo_line_id", "created_at")
    list_filter = ("kind", "subscription__service")
    search_fields = ("subscription__external_id",)
    list_select_related = ("subscription__service",)
    readonly_fields = [f.name for f in PlanFee._meta.fields]

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, fee: PlanFee) -> str:
        return money(fee.amount, fee.currency)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(UnmatchedEvent)
class UnmatchedEventAdmin(admin.ModelAdmin):
    """Events kept in lenient mode that matched no subscription or metric (never billed)."""

    list_display = ("service", "external_subscription_id", "transaction_id", "code", "error", "timestamp",
                    "reported_at")
    list_filter = ("service", "error")
    search_fields = ("external_subscription_id", "transaction_id", "code")
    readonly_fields = [f.name for f in UnmatchedEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
