"""Reads of coupons and applied coupons, always scoped to the calling service."""
from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from identity.models import Service

from .models import AppliedCoupon, Coupon, CouponDiscount


def coupons(*, service: Service) -> QuerySet[Coupon]:
    return Coupon.objects.filter(service=service, deleted_at__isnull=True).order_by("-created_at", "id")


def get_coupon(*, service: Service, code: str) -> Coupon | None:
    return coupons(service=service).filter(code=code).first()


def applied_coupons(*, service: Service, external_customer_id: str | None = None, status: str | None = None,
                    coupon_codes: list[str] | None = None) -> QuerySet[AppliedCoupon]:
    qs = AppliedCoupon.objects.filter(service=service, account_link__deleted_at__isnull=True)
    if external_customer_id:
        qs = qs.filter(account_link__external_id=external_customer_id)
    if status:
        qs = qs.filter(status=status)
    if coupon_codes:
        qs = qs.filter(coupon__code__in=coupon_codes)
    return qs.select_related("coupon", "account_link").prefetch_related(
        Prefetch("discounts", queryset=CouponDiscount.objects.order_by("boundary", "id"))).order_by("-created_at", "id")


def get_applied_coupon(*, service: Service, external_customer_id: str, applied_id: str) -> AppliedCoupon | None:
    return applied_coupons(service=service, external_customer_id=external_customer_id).filter(pk=applied_id).first()


def discounts_of_lines(line_ids: list[int]) -> dict[int, CouponDiscount]:
    """The discounts pushed as these Odoo ``sale.order.line`` ids."""
    if not line_ids:
        return {}
    return {d.odoo_line_id: d for d in CouponDiscount.objects.filter(odoo_line_id__in=line_ids)
            .select_related("applied_coupon__coupon") if d.odoo_line_id is not None}
