from __future__ import annotations

import uuid

from django.db import models

from identity.models import AccountLink, Customer, Service
from coupons.models import CouponDiscount
from metering.models import AMOUNT, QUANTITY, RATE, AddOn, Charge, PlanFee, RatedUsage, Subscription


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft"
    FINALIZED = "finalized"
    VOIDED = "voided"


class InvoicePaymentStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Invoice(models.Model):
    """Mirror of an Odoo customer invoice (``account.move`` ``out_invoice``); Odoo is the truth.

    Refunds (``out_refund``) are ``CreditNote`` rows, never invoices.
    """

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
    # Lago's invoice_type when it is not read from the move type: "one_off" (add-ons, POST /invoices) and
    # "credit" (a paid wallet top-up), both from a OneOffInvoice. Empty: subscription / credit_note.
    invoice_type = models.CharField(max_length=16, blank=True, default="")
    # Lago's file_url: the PDF of the invoice on Odoo's portal (access token), set by POST .../download.
    file_url = models.CharField(max_length=1024, blank=True, default="")
    # The newest Odoo payment.transaction in error announced by invoice.payment_failure (once each).
    last_failed_transaction_id = models.PositiveIntegerField(null=True, blank=True, editable=False)
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
    one_off_line = models.ForeignKey("OneOffInvoiceLine", on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="+")
    # The negative "Prepaid credits" line of a wallet consumption (rendered as Lago's prepaid credits, not a fee).
    prepaid_credit = models.BooleanField(default=False)
    # The coupon discount this line carries (a negative line, Lago's ``credits``), if any.
    coupon_discount = models.ForeignKey(CouponDiscount, on_delete=models.SET_NULL, null=True, blank=True,
                                        related_name="invoice_lines")
    # The base fee, credit or commitment true-up the line bills (found by its sale line): renders
    # Lago's fee type (`subscription`, `commitment`) and the fee's window.
    plan_fee = models.ForeignKey(PlanFee, on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="invoice_lines")
    # Odoo's taxes of the line (tax_ids): [{"odoo_tax_id", "name", "rate" (percent, str), "amount" (str)}]
    taxes = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["invoice", "id"]


class OneOffInvoiceType(models.TextChoices):
    ONE_OFF = "one_off"  # add-ons (POST /invoices)
    CREDIT = "credit"  # a paid wallet top-up


class OneOffInvoice(models.Model):
    """A one-off Odoo invoice we asked for, persisted before anything is sent (the outbox of
    ``odoo_bridge.one_off``): an ``account.move`` ``out_invoice`` of the service account's invoice
    contact, found by ``ref`` = ``reference`` before any create, created and posted once, then
    mirrored back into ``Invoice`` by the pull like every other move."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="one_off_invoices")
    account_link = models.ForeignKey(AccountLink, on_delete=models.PROTECT, related_name="one_off_invoices")
    invoice_type = models.CharField(max_length=16, choices=OneOffInvoiceType.choices)
    currency = models.CharField(max_length=3)
    odoo_move_id = models.PositiveIntegerField(null=True, blank=True, unique=True)
    invoice = models.OneToOneField(Invoice, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="one_off")
    # A paid top-up's inbound wallet transaction (wallets.WalletTransaction pk), settled when Odoo says paid.
    wallet_transaction_id = models.UUIDField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    @property
    def reference(self) -> str:
        return f"fb-oneoff-{self.pk}"

    def __str__(self) -> str:
        return f"{self.invoice_type} {self.reference}"


class OneOffInvoiceLine(models.Model):
    """One fee of a one-off invoice; its name and price are snapshots (the add-on may change later)."""

    one_off = models.ForeignKey(OneOffInvoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    add_on = models.ForeignKey(AddOn, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    name = models.CharField(max_length=512)
    description = models.TextField(blank=True)
    units = models.DecimalField(max_digits=QUANTITY["max_digits"], decimal_places=QUANTITY["decimal_places"])
    unit_amount = models.DecimalField(max_digits=RATE["max_digits"], decimal_places=RATE["decimal_places"])
    amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"])

    class Meta:
        ordering = ["one_off", "position"]
        constraints = [models.UniqueConstraint(fields=["one_off", "position"], name="one_off_line_position")]


class CreditNoteStatus(models.TextChoices):
    DRAFT = "draft"
    FINALIZED = "finalized"
    VOIDED = "voided"  # cancelled in Odoo after it was posted


class CreditNote(models.Model):
    """Mirror of an Odoo customer credit note (``account.move`` ``out_refund``), Lago's credit note.

    Odoo refunds are never Invoice rows: their original invoice is ``invoice`` (Odoo ``reversed_entry_id``,
    when it is one of ours). The amount is split as Lago's: ``offset`` when the invoice was not paid (Odoo
    reconciles the credit note against it), else ``credit`` (an open credit of the customer, ``balance``
    = what Odoo still has to use or refund of it).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="credit_notes")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credit_notes")
    account_link = models.ForeignKey(AccountLink, on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="credit_notes")
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="credit_notes")
    invoice = models.ForeignKey(Invoice, on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="credit_notes")
    odoo_move_id = models.PositiveIntegerField(unique=True)
    reversed_move_id = models.PositiveIntegerField(null=True, blank=True,
                                                   help_text="The original invoice (Odoo reversed_entry_id).")
    number = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=512, blank=True, default="", help_text="Odoo's ref of the credit note.")
    status = models.CharField(max_length=16, choices=CreditNoteStatus.choices, default=CreditNoteStatus.DRAFT)
    currency = models.CharField(max_length=3)
    issuing_date = models.DateField(null=True, blank=True)
    fees_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                      default=0, help_text="Total before taxes.")
    taxes_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                       default=0)
    total_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                       default=0)
    credit_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                        default=0)
    offset_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                        default=0)
    balance_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                         default=0, help_text="Odoo's amount_residual of the credit note.")
    odoo_write_date = models.DateTimeField(null=True, blank=True)
    # When credit_note.created was sent (once, when first seen posted and not held).
    announced_at = models.DateTimeField(null=True, blank=True, editable=False)
    held_reason = models.CharField(max_length=512, blank=True, default="")
    # Lago's file_url: the credit note's PDF on Odoo's portal (access token), set by POST .../download.
    file_url = models.CharField(max_length=1024, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-issuing_date", "-created_at"]

    def __str__(self) -> str:
        return self.number or f"odoo move {self.odoo_move_id}"


class CreditNoteReason(models.TextChoices):
    DUPLICATED_CHARGE = "duplicated_charge"
    PRODUCT_UNSATISFACTORY = "product_unsatisfactory"
    ORDER_CHANGE = "order_change"
    ORDER_CANCELLATION = "order_cancellation"
    FRAUDULENT_CHARGE = "fraudulent_charge"
    OTHER = "other"


class CreditNoteRequest(models.Model):
    """A credit note asked for through ``POST /credit_notes``, persisted before anything is sent to Odoo
    (the outbox of ``odoo_bridge.credit_notes``): an ``account.move`` ``out_refund`` of the invoice's
    partner, ``reversed_entry_id`` = the invoice, NO ``sale_line_ids`` (so nothing is rebilled), found by
    ``ref`` = ``reference`` before any create, created and posted once. Its pk is the credit note's
    ``lago_id``: the pull mirrors the move into ``CreditNote`` with the same pk."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="credit_note_requests")
    account_link = models.ForeignKey(AccountLink, on_delete=models.PROTECT, related_name="credit_note_requests")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_note_requests")
    reason = models.CharField(max_length=32, choices=CreditNoteReason.choices, default=CreditNoteReason.OTHER)
    description = models.TextField(blank=True, default="")
    currency = models.CharField(max_length=3)
    # Lago's split of the total (taxes included): credited to the customer, refunded, offset against the invoice.
    credit_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                        default=0)
    refund_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                        default=0)
    offset_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                        default=0)
    # Computed here from the fees' Odoo taxes (Odoo computes its own when it posts; the mirror shows Odoo's).
    taxes_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                       default=0)
    odoo_move_id = models.PositiveIntegerField(null=True, blank=True, unique=True)
    credit_note = models.OneToOneField(CreditNote, on_delete=models.SET_NULL, null=True, blank=True,
                                       related_name="request")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    @property
    def reference(self) -> str:
        return f"fb-cn-{self.pk}"

    def __str__(self) -> str:
        return f"credit note {self.reference}"


class CreditNoteRequestItem(models.Model):
    """One credited fee: the invoice line (by its Odoo line id, stable across re-mirroring) and the amount
    before taxes. Earlier items of the same fee reduce what is still creditable."""

    request = models.ForeignKey(CreditNoteRequest, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveSmallIntegerField()
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="+")
    odoo_line_id = models.PositiveIntegerField()
    fee_lago_id = models.CharField(max_length=80)
    amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"])

    class Meta:
        ordering = ["request", "position"]
        constraints = [models.UniqueConstraint(fields=["request", "position"], name="credit_note_item_position")]
        indexes = [models.Index(fields=["invoice", "odoo_line_id"], name="credit_note_item_fee")]


class CreditNoteItem(models.Model):
    """One product line of the credit note (Lago's credit note item, its fee rendered from the line)."""

    credit_note = models.ForeignKey(CreditNote, on_delete=models.CASCADE, related_name="items")
    odoo_line_id = models.PositiveIntegerField(null=True, blank=True)
    name = models.CharField(max_length=512, blank=True)
    quantity = models.DecimalField(max_digits=QUANTITY["max_digits"], decimal_places=QUANTITY["decimal_places"],
                                   default=0)
    unit_amount = models.DecimalField(max_digits=RATE["max_digits"], decimal_places=RATE["decimal_places"], default=0)
    amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"], default=0,
                                 help_text="Subtotal before taxes (positive: what is credited).")
    total_amount = models.DecimalField(max_digits=AMOUNT["max_digits"], decimal_places=AMOUNT["decimal_places"],
                                       default=0)
    subscription = models.ForeignKey(Subscription, on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="+")
    charge = models.ForeignKey(Charge, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    rated_usage = models.ForeignKey(RatedUsage, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="credit_note_items")
    taxes = models.JSONField(default=list, blank=True)  # as InvoiceLine.taxes

    class Meta:
        ordering = ["credit_note", "id"]


from .state_models import (  # noqa: E402  (sync state lives in its own module)
    ConnectionStatus,
    OdooConnectionState,
    OdooPullCursor,
    OdooPushChange,
    OdooSyncState,
    SyncKind,
    SyncStatus,
)

__all__ = ["Invoice", "InvoiceLine", "OneOffInvoice", "OneOffInvoiceLine", "OneOffInvoiceType", "InvoiceStatus",
           "InvoicePaymentStatus", "CreditNote", "CreditNoteItem", "CreditNoteStatus", "CreditNoteReason",
           "CreditNoteRequest", "CreditNoteRequestItem", "ConnectionStatus",
           "OdooConnectionState", "OdooPullCursor", "OdooPushChange", "OdooSyncState", "SyncKind", "SyncStatus"]
