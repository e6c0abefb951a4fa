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
    # Lago's wallet metadata: string keys, string or null values (null: none set).
    metadata = models.JSONField(null=True, blank=True)
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


class RuleStatus(models.TextChoices):
    ACTIVE = "active"
    TERMINATED = "terminated"


class RuleTrigger(models.TextChoices):
    INTERVAL = "interval"
    THRESHOLD = "threshold"


class RuleMethod(models.TextChoices):
    FIXED = "fixed"
    TARGET = "target"


class RuleInterval(models.TextChoices):
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    SEMIANNUAL = "semiannual"
    YEARLY = "yearly"


class RecurringTransactionRule(models.Model):
    """Lago's recurring top-up of a wallet: on an interval counted from ``started_at`` (else the wallet's
    creation), or when the ongoing balance falls to or below ``threshold_credits``; a fixed number of
    paid/granted credits, or what reaches ``target_ongoing_balance``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="rules")
    status = models.CharField(max_length=16, choices=RuleStatus.choices, default=RuleStatus.ACTIVE)
    trigger = models.CharField(max_length=16, choices=RuleTrigger.choices)
    method = models.CharField(max_length=16, choices=RuleMethod.choices, default=RuleMethod.FIXED)
    interval = models.CharField(max_length=16, choices=RuleInterval.choices, blank=True)
    threshold_credits = models.DecimalField(**QUANTITY, default=0)
    paid_credits = models.DecimalField(**QUANTITY, default=0)
    granted_credits = models.DecimalField(**QUANTITY, default=0)
    target_ongoing_balance = models.DecimalField(**QUANTITY, null=True, blank=True)
    # target rules: grant the gap instead of buying it (Lago's grants_target_top_up)
    grants_target_top_up = models.BooleanField(default=False)
    ignore_paid_top_up_limits = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    expiration_at = models.DateTimeField(null=True, blank=True)
    transaction_metadata = models.JSONField(default=list, blank=True)
    transaction_name = models.CharField(max_length=255, blank=True)
    # A threshold rule that topped up and left the ongoing balance still at or below its threshold: it
    # fires again only after the balance was above it in between (one top-up per crossing).
    threshold_spent_at = models.DateTimeField(null=True, blank=True, editable=False)
    terminated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # Lago: one recurring rule per wallet.
            models.UniqueConstraint(fields=["wallet"], condition=Q(status="active"), name="wallet_rule_one_active"),
            models.CheckConstraint(condition=~Q(trigger="interval") | ~Q(interval=""),
                                   name="wallet_rule_interval_has_interval"),
            models.CheckConstraint(condition=~Q(method="target") | Q(target_ongoing_balance__isnull=False),
                                   name="wallet_rule_target_has_target"),
        ]

    def __str__(self) -> str:
        return f"{self.trigger} {self.method} rule of {self.wallet_id}"


class RecurringTopUp(models.Model):
    """One run of an interval rule for one due date: written in the transaction of its top-up, so a retried
    or concurrent beat task never tops up twice for one period (even when the run adds no credits)."""

    rule = models.ForeignKey(RecurringTransactionRule, on_delete=models.PROTECT, related_name="runs")
    due_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "due_at"], name="wallet_rule_once_per_due_date")]


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
    # The recurring rule whose top-up this is (source interval or threshold).
    rule = models.ForeignKey(RecurringTransactionRule, on_delete=models.PROTECT, null=True, blank=True,
                             related_name="transactions")
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


__all__ = ["Wallet", "WalletStatus", "RecurringTransactionRule", "RecurringTopUp", "RuleStatus", "RuleTrigger",
           "RuleMethod", "RuleInterval", "WalletTransaction", "TransactionType", "TransactionStatus",
           "TransactionKind"]
