"""Read-only views of coupons, applied coupons and the discounts they gave (the API is where they change)."""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from billing_kit.formatting import money_display

from .models import AppliedCoupon, Coupon, CouponDiscount


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Coupon)
class CouponAdmin(ReadOnlyAdmin):
    list_display = ("code", "service", "name", "coupon_type", "value", "frequency", "frequency_duration",
                    "expiration_at", "terminated_at")
    list_filter = ("service", "coupon_type", "frequency")
    search_fields = ("code", "name")

    @admin.display(description="value")
    def value(self, coupon: Coupon) -> str:
        if coupon.amount is not None:
            return money_display(coupon.amount, coupon.amount_currency)
        return f"{coupon.percentage_rate} %"


@admin.register(AppliedCoupon)
class AppliedCouponAdmin(ReadOnlyAdmin):
    list_display = ("coupon", "account_link", "status", "frequency", "frequency_duration_remaining", "created_at",
                    "terminated_at")
    list_filter = ("status", "service")
    search_fields = ("coupon__code", "account_link__external_id")
    list_select_related = ("coupon__service", "account_link")


@admin.register(CouponDiscount)
class CouponDiscountAdmin(ReadOnlyAdmin):
    list_display = ("applied_coupon", "subscription", "boundary", "discount", "odoo_line_id", "created_at")
    search_fields = ("applied_coupon__coupon__code", "subscription__external_id")
    list_select_related = ("applied_coupon__coupon__service", "applied_coupon__account_link",
                           "subscription__service")

    @admin.display(description="discount", ordering="amount")
    def discount(self, row: CouponDiscount) -> str:
        return money_display(row.amount, row.currency)
