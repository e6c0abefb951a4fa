from __future__ import annotations

import uuid

from django.db import models

from identity.models import AccountLink, Customer, Service
from metering.models import AMOUNT, QUANTITY, RATE, Charge, RatedUsage, Subscription


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft"
    FINALIZED = "finalized"
    VOIDED = "voided"


class InvoicePaymentStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Invoice(models.Model):
    """Mirror of an Odoo ``account.move`` (customer invoice or refund); Odoo is the truth."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="invoices")
    # The unified customer is internal (never rendered); a service lists and reads invoices by its own account.
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")
    account_link = models.ForeignKey(AccountLink, on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="invoices")
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="invoices")
    odoo_move_id = models.PositiveIntegerField(unique=True)
    odoo_move_type = models.CharField(max_length=16, default="out_invoice")
    reversed_move_id = models.PositiveIntegerField(
        null=True, blank=True, help_text="A credit note's original invoice (Odoo reversed_entry_id).")
    number = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    payment_status = models.CharField(max_length=16, choices=InvoicePaymentStatus.choices,
                                      default=InvoicePaymentStatus.PENDING)
    currency = models.CharField(max_length=3)
    issuing_date = models.DateField(null=True, blank=True)
    payment_due_date = models.DateField(null=True, blank=True)
    fees_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                      default=0, help_text="Total before taxes.")
    taxes_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                       default=0)
    total_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                       default=0)
    total_due_amount = models.DecimalField(max_digits=AMOUNT["max_digits"],
                                           decimal_places=AMOUNT["decimal_places"], default=0)
    odoo_write_date = models.DateTimeField(null=True, blank=True)
    # When invoice.payment_overdue was sent (once: Lago's payment_overdue flag turning on).
    payment_overdue_announced_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Non-empty: the move bills more than one service account (or refunds such a move). Showing it to one
    # service would show it another's lines and amounts, so no API answer and no webhook carries it
    # until ops split it in Odoo; /ops/health and the admin list it.
    held_reason = models.CharField(max_length=512, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-issuing_date", "-created_at"]

    def __str__(self) -> str:
        return self.number or f"odoo move {self.odoo_move_id}"


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    odoo_line_id = models.PositiveIntegerField(null=True, blank=True)
    name = models.CharField(max_length=512, blank=True)
    quantity = models.DecimalField(max_digits=QUANTITY["max_digits"], decimal_places=QUANTITY["decimal_places"],
                                   default=0)
    unit_amount = models.DecimalField(max_digits=RATE["max_digits"], decimal_places=RATE["decimal_places"], default=0)
    amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"], default=0,
                                 help_text="Subtotal before taxes.")
    total_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                       default=0)
    subscription = models.ForeignKey(Subscription, on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="+")
    charge = models.ForeignKey(Charge, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    rated_usage = models.ForeignKey(RatedUsage, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="invoice_lines")

    class Meta:
        ordering = ["invoice", "id"]


from .state_models import (  # noqa: E402  (sync state lives in its own module)
    ConnectionStatus,
    OdooConnectionState,
    OdooPullCursor,
    OdooPushChange,
    OdooSyncState,
    SyncKind,
    SyncStatus,
)

__all__ = ["Invoice", "InvoiceLine", "InvoiceStatus", "InvoicePaymentStatus", "ConnectionStatus",
           "OdooConnectionState", "OdooPullCursor", "OdooPushChange", "OdooSyncState", "SyncKind", "SyncStatus"]
