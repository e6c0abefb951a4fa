"""Lago's coupons (a service's catalogue), applied coupons (a coupon given to one account)
and the discounts they gave: one row per (applied coupon, subscription, invoice boundary),
pushed by the Odoo bridge as a negative one-off line on the subscription's order.

Amounts are Decimal in major units (Lago's ``amount_cents`` / 10^exponent of the currency).
"""
from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from identity.models import CURRENCY_CODE_CHECK, AccountLink, Service
from metering.models import AMOUNT, Subscription


class CouponType(models.TextChoices):
    FIXED_AMOUNT = "fixed_amount"
    PERCENTAGE = "percentage"


class Frequency(models.TextChoices):
    ONCE = "once"
    RECURRING = "recurring"
    FOREVER = "forever"


class Expiration(models.TextChoices):
    NO_EXPIRATION = "no_expiration"
    TIME_LIMIT = "time_limit"


class AppliedCouponStatus(models.TextChoices):
    ACTIVE = "active"
    TERMINATED = "terminated"


PERCENTAGE: dict = {"max_digits": 9, "decimal_places": 4}


class Coupon(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="coupons")
    code = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    coupon_type = models.CharField(max_length=16, choices=CouponType.choices)
    amount = models.DecimalField(**AMOUNT, null=True, blank=True)
    amount_currency = models.CharField(max_length=3, blank=True)
    percentage_rate = models.DecimalField(**PERCENTAGE, null=True, blank=True)
    frequency = models.CharField(max_length=16, choices=Frequency.choices, default=Frequency.ONCE)
    frequency_duration = models.PositiveIntegerField(null=True, blank=True)
    reusable = models.BooleanField(default=True)
    expiration = models.CharField(max_length=16, choices=Expiration.choices, default=Expiration.NO_EXPIRATION)
    expiration_at = models.DateTimeField(null=True, blank=True)
    # Lago's DELETE: the coupon is terminated and discarded (its code may be used again).
    terminated_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service__code", "code"]
        constraints = [
            models.UniqueConstraint(fields=["service", "code"], condition=Q(deleted_at__isnull=True),
                                    name="coupon_code_unique_per_service"),
            models.CheckConstraint(
                condition=(Q(coupon_type="fixed_amount", amount__gt=0, amount_currency__regex=CURRENCY_CODE_CHECK)
                           | Q(coupon_type="percentage", percentage_rate__gt=0)),
                name="coupon_value_follows_type"),
            models.CheckConstraint(condition=~Q(frequency="recurring") | Q(frequency_duration__gt=0),
                                   name="coupon_recurring_has_duration"),
        ]

    def __str__(self) -> str:
        return f"{self.service.code}:{self.code}"


class AppliedCoupon(models.Model):
    """A coupon given to one account, with Lago's overrides (amount, rate, frequency)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="+")
    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="applied")
    account_link = models.ForeignKey(AccountLink, on_delete=models.PROTECT, related_name="applied_coupons")
    amount = models.DecimalField(**AMOUNT, null=True, blank=True)
    amount_currency = models.CharField(max_length=3, blank=True)
    percentage_rate = models.DecimalField(**PERCENTAGE, null=True, blank=True)
    frequency = models.CharField(max_length=16, choices=Frequency.choices)
    frequency_duration = models.PositiveIntegerField(null=True, blank=True)
    frequency_duration_remaining = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=AppliedCouponStatus.choices, default=AppliedCouponStatus.ACTIVE)
    terminated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["account_link", "status"], name="applied_coupon_account_status")]

    def __str__(self) -> str:
        return f"{self.coupon} → {self.account_link.external_id}"

    @property
    def is_percentage(self) -> bool:
        return self.coupon.coupon_type == CouponType.PERCENTAGE


class CouponBoundary(models.Model):
    """A subscription's invoice boundary whose coupons were computed: written in the same
    transaction as the discounts and the consumption, so a boundary is discounted once."""

    id = models.BigAutoField(primary_key=True)
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="+")
    boundary = models.DateTimeField()
    subtotal = models.DecimalField(**AMOUNT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["subscription", "boundary"],
                                               name="coupon_boundary_once_per_subscription")]


class CouponDiscount(models.Model):
    """What one applied coupon took off one subscription's invoice at ``boundary`` (positive);
    the Odoo bridge pushes it once as a line at minus this amount."""

    id = models.BigAutoField(primary_key=True)
    applied_coupon = models.ForeignKey(AppliedCoupon, on_delete=models.PROTECT, related_name="discounts")
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="+")
    boundary = models.DateTimeField()
    base = models.DecimalField(**AMOUNT, help_text="The invoice subtotal the coupon applied to.")
    amount = models.DecimalField(**AMOUNT)
    currency = models.CharField(max_length=3)
    odoo_line_id = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["boundary", "id"]
        constraints = [
            models.UniqueConstraint(fields=["applied_coupon", "subscription", "boundary"],
                                    name="coupon_discount_once_per_boundary"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="coupon_discount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.applied_coupon.coupon.code} −{self.amount} {self.currency} @ {self.boundary:%Y-%m-%d}"
