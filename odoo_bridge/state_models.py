"""Outbox / sync state of the Odoo bridge (imported by ``odoo_bridge.models``)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from identity.models import Service


class SyncKind(models.TextChoices):
    CUSTOMER = "customer", "customer → commercial res.partner"
    ACCOUNT = "account", "service account → invoice-address contact"
    PLAN = "plan", "plan → subscription plan + flat product"
    CHARGE = "charge", "charge → usage product"
    SUBSCRIPTION = "subscription", "subscription → sale.order"
    USAGE = "rated_usage", "rated usage → order line"
    FEE_PRODUCT = "fee_product", "plan → base-fee product (one-off)"
    PLAN_FEE = "plan_fee", "plan fee → one-off order line"
    ADD_ON = "add_on", "add-on → one-off product"
    CREDITS_PRODUCT = "credits_product", "prepaid credits product"
    ONE_OFF = "one_off_invoice", "one-off invoice → posted account.move"
    WALLET_CREDIT = "wallet_credit", "consumed prepaid credits → negative order line"
    COUPON_PRODUCT = "coupon_product", "coupon → discount product (one-off)"
    COUPON_DISCOUNT = "coupon_discount", "coupon discount → negative order line"
    PRICELIST = "pricelist", "currency → pricelist (the currency of its orders)"
    CREDIT_NOTE = "credit_note", "credit note (POST /credit_notes) → posted account.move out_refund"


class SyncStatus(models.TextChoices):
    PENDING = "pending"
    SYNCED = "synced"
    FAILED = "failed"


class OdooSyncState(models.Model):
    """What Odoo holds for one of our objects, and what is left to do about it.

    ``pushed_hash`` is the hash of the last payload Odoo confirmed; a different
    desired payload means work. ``reference`` is what we search on before any
    create (``ref``, ``client_order_ref``, ``default_code``, or the line's natural
    key) so that a response lost after Odoo committed never creates a duplicate.
    """

    kind = models.CharField(max_length=16, choices=SyncKind.choices)
    object_id = models.CharField(max_length=64, help_text="Primary key of the local object.")
    service = models.ForeignKey(Service, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    reference = models.CharField(max_length=255, blank=True)
    label = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=8, choices=SyncStatus.choices, default=SyncStatus.PENDING)
    odoo_model = models.CharField(max_length=64, blank=True)
    odoo_id = models.PositiveIntegerField(null=True, blank=True)
    pushed_hash = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_name = models.CharField(max_length=128, blank=True)
    pre_rated = models.BooleanField(
        default=False, help_text="Pushed as quantity 1 at the pre-rated amount: Odoo's price digits "
                                 "could not hold the rate (see pricing_note).")
    pricing_note = models.CharField(max_length=255, blank=True)
    frozen = models.BooleanField(default=False, help_text="Invoiced in Odoo: never written again.")
    final = models.BooleanField(default=False, help_text="Pushed in its final local state (usage window "
                                                         "frozen, subscription closed): not looked at again.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Odoo sync state"
        ordering = ["kind", "-updated_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "object_id"], name="odoo_sync_state_one_per_object"),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="odoo_sync_due"),
            models.Index(fields=["kind", "odoo_id"], name="odoo_sync_odoo_id",
                         condition=Q(odoo_id__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.label or self.object_id} ({self.status})"


class ConnectionStatus(models.TextChoices):
    UNKNOWN = "unknown"
    OK = "ok"
    DOWN = "down", "unreachable (retrying)"
    BROKEN = "broken", "broken (access denied, not retrying)"


class OdooConnectionState(models.Model):
    """Singleton (pk=1): how the last conversation with Odoo went.

    ``broken`` is set on AccessDenied and stops every further call (ten failed
    logins would lock the bot user's IP out) until the credentials change or an
    admin resets it.
    """

    status = models.CharField(max_length=8, choices=ConnectionStatus.choices, default=ConnectionStatus.UNKNOWN)
    credentials_fingerprint = models.CharField(max_length=16, blank=True,
                                               help_text="Hash of URL/DB/user/key when the status was set.")
    server_version = models.CharField(max_length=64, blank=True)
    price_digits = models.PositiveSmallIntegerField(null=True, blank=True)
    quantity_digits = models.PositiveSmallIntegerField(null=True, blank=True)
    line_uom_field = models.CharField(max_length=32, blank=True)
    line_taxes_field = models.CharField(max_length=32, blank=True)
    config_report = models.JSONField(
        default=dict, blank=True, help_text="Odoo configuration checked at connect (price precision, invoicing "
                                            "cron and its next call); shown by /ops/health.")
    last_ok_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    broken_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Odoo connection"

    def __str__(self) -> str:
        return f"Odoo connection: {self.get_status_display()}"


class OdooPullCursor(models.Model):
    """Where the invoice pull resumes: Odoo's ``write_date`` (naive UTC text, second precision)."""

    name = models.CharField(max_length=64, unique=True)
    write_date = models.CharField(max_length=19, default="1970-01-01 00:00:00")
    last_run_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.write_date}"


class OdooPushChange(models.Model):
    """The change log of the push: a subscription whose picture in Odoo may have to change.

    Written in the same transaction as the change, by PostgreSQL triggers (migration
    ``0007``) on every table the push reads (subscriptions, frozen usage windows, plan
    fees, customers, service accounts, plans, charges, metrics), and by the push itself
    (a retry after a backoff, a subscription left unsettled). Append-only: a writer
    never waits on another. A cycle takes the due rows of a chunk of subscriptions, pushes
    them and deletes exactly the rows it took (a change committed meanwhile stays).
    """

    id = models.BigAutoField(primary_key=True)
    subscription_id = models.UUIDField()
    reason = models.CharField(max_length=32, help_text="The table changed, or retry / unsettled / full sweep / "
                                                       "resync.")
    due_at = models.DateTimeField(help_text="Not examined before (a retry waits out its backoff).")
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "Odoo push change"
        indexes = [models.Index(fields=["subscription_id", "due_at"], name="odoo_push_change_sub_due")]

    def __str__(self) -> str:
        return f"{self.subscription_id} ({self.reason})"
