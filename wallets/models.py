"""Lago's wallets and prepaid credits.

A wallet's balance is never stored: it is derived from its SETTLED transactions (inbound
credits minus outbound credits), so it can always be recomputed from the rows that made it.
"""
from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from identity.models import CURRENCY_CODE_CHECK, AccountLink, Service
from metering.models import AMOUNT, QUANTITY, RATE, Subscription


class WalletStatus(models.TextChoices):
    ACTIVE = "active"
    TERMINATED = "terminated"


class Wallet(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="wallets")
    account_link = models.ForeignKey(AccountLink, on_delete=models.PROTECT, related_name="wallets")
    status = models.CharField(max_length=16, choices=WalletStatus.choices, default=WalletStatus.ACTIVE)
    name = models.CharField(max_length=255, blank=True)
    code = models.CharField(max_length=255, blank=True)
    priority = models.PositiveSmallIntegerField(default=50)
    currency = models.CharField(max_length=3)
    # What one credit is worth in the currency (Lago rate_amount).
    rate_amount = models.DecimalField(**RATE)
    expiration_at = models.DateTimeField(null=True, blank=True)
    terminated_at = models.DateTimeField(null=True, blank=True)
    # When wallet.depleted_ongoing_balance was sent; cleared when the ongoing balance is positive again.
    depleted_announced_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            # Lago's rule: one active wallet per customer (here: per service account).
            models.UniqueConstraint(fields=["account_link"], condition=Q(status="active"),
                                    name="wallet_one_active_per_account"),
            models.CheckConstraint(condition=Q(rate_amount__gt=0), name="wallet_rate_amount_positive"),
            models.CheckConstraint(condition=Q(currency__regex=CURRENCY_CODE_CHECK), name="wallet_currency_is_iso_code"),
        ]

    def __str__(self) -> str:
        return f"wallet {self.name or self.pk} of {self.account_link_id}"


class TransactionType(models.TextChoices):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class TransactionStatus(models.TextChoices):
    PENDING = "pending"
    SETTLED = "settled"
    FAILED = "failed"


class TransactionKind(models.TextChoices):
    """Lago's ``transaction_status``: why credits came in or went out."""

    PURCHASED = "purchased"  # paid credits: a one-off Odoo invoice (invoice_type credit), settled once paid
    GRANTED = "granted"  # offered: settled at once
    VOIDED = "voided"  # removed by the API, a termination or the expiry
    INVOICED = "invoiced"  # consumed by an invoice: a negative line on the subscription's Odoo order


class WalletTransaction(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="transactions")
    transaction_type = models.CharField(max_length=8, choices=TransactionType.choices)
    status = models.CharField(max_length=8, choices=TransactionStatus.choices)
    transaction_status = models.CharField(max_length=16, choices=TransactionKind.choices)
    source = models.CharField(max_length=16, default="manual")
    credit_amount = models.DecimalField(**QUANTITY)
    amount = models.DecimalField(**AMOUNT, help_text="credit_amount x the wallet's rate_amount, in its currency.")
    name = models.CharField(max_length=255, blank=True)
    metadata = models.JSONField(default=list, blank=True)
    # The Lago invoice (our Invoice mirror's id) of a purchase, known when the one-off invoice is made.
    invoice_id = models.UUIDField(null=True, blank=True)
    # A consumption: the subscription window whose invoice it reduces (once per window: see constraint).
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="wallet_consumptions")
    window_end = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(credit_amount__gt=0), name="wallet_tx_credits_positive"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="wallet_tx_amount_not_negative"),
            models.UniqueConstraint(fields=["wallet", "subscription", "window_end"],
                                    condition=Q(transaction_status="invoiced"),
                                    name="wallet_tx_one_consumption_per_window"),
            models.CheckConstraint(condition=Q(settled_at__isnull=True) | Q(status="settled"),
                                   name="wallet_tx_settled_at_only_when_settled"),
            models.CheckConstraint(condition=~Q(transaction_status="invoiced") | (
                Q(subscription__isnull=False) & Q(window_end__isnull=False) & Q(transaction_type="outbound")),
                name="wallet_tx_consumption_has_its_window"),
        ]
        indexes = [models.Index(fields=["wallet", "status"], name="wallet_tx_by_status")]

    def __str__(self) -> str:
        return f"{self.transaction_type} {self.transaction_status} {self.credit_amount} ({self.status})"


__all__ = ["Wallet", "WalletStatus", "WalletTransaction", "TransactionType", "TransactionStatus",
           "TransactionKind"]
