from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone

from identity.models import CURRENCY_CODE_CHECK, AccountLink, Customer, Service
from metering import windows

# Rates keep 10 decimal places (CAD 0.0075 per core-hour is stored exactly); amounts 6.
# Keyword arguments of DecimalField (typed as such: a dict[str, int] cannot be ** into its signature).
RATE: dict[str, Any] = {"max_digits": 28, "decimal_places": 10}
QUANTITY: dict[str, Any] = {"max_digits": 38, "decimal_places": 10}
AMOUNT: dict[str, Any] = {"max_digits": 20, "decimal_places": 6}


class AggregationType(models.TextChoices):
    COUNT = "count_agg", "count"
    SUM = "sum_agg", "sum"
    MAX = "max_agg", "max"
    UNIQUE_COUNT = "unique_count_agg", "unique count"
    LATEST = "latest_agg", "latest"


class BillableMetric(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="metrics")
    code = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    aggregation_type = models.CharField(max_length=32, choices=AggregationType.choices)
    field_name = models.CharField(max_length=255, blank=True)
    recurring = models.BooleanField(default=False)
    # Lago: the aggregated units of a window are rounded (round|ceil|floor) to
    # ``rounding_precision`` decimal places (0 when null) before pricing; blank = no rounding.
    rounding_function = models.CharField(max_length=8, blank=True,
                                         choices=[("round", "round"), ("ceil", "ceil"), ("floor", "floor")])
    rounding_precision = models.SmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service__code", "code"]
        constraints = [
            models.UniqueConstraint(fields=["service", "code"], name="metric_code_unique_per_service"),
            models.CheckConstraint(
                condition=Q(aggregation_type=AggregationType.COUNT) | ~Q(field_name=""),
                name="metric_field_name_required_unless_count",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service.code}:{self.code}"


class PlanInterval(models.TextChoices):
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"


class Plan(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="plans")
    code = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    invoice_display_name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    interval = models.CharField(max_length=16, choices=PlanInterval.choices)
    amount = models.DecimalField(**AMOUNT, help_text="Flat price per billing period.")
    amount_currency = models.CharField(max_length=3)
    pay_in_advance = models.BooleanField(default=False)
    # Days from a subscription's start without base fee (Lago's trial_period).
    trial_period = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    # Lago's bill_charges_monthly (yearly plans only): usage windows are months, the base
    # fee's period stays the year (metering.plan_fees "charges billed monthly").
    bill_charges_monthly = models.BooleanField(default=False, db_default=False)
    odoo_plan_id = models.PositiveIntegerField(null=True, blank=True)
    odoo_product_id = models.PositiveIntegerField(null=True, blank=True)
    # Lago's plan metadata: string keys, string or null values; null = none.
    metadata = models.JSONField(null=True, blank=True)
    # Lago's DELETE: pending_deletion while its subscriptions are being ended, then
    # deleted_at (discarded: kept for the bills that reference it, its code free again).
    pending_deletion = models.BooleanField(default=False)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service__code", "code"]
        constraints = [
            models.UniqueConstraint(fields=["service", "code"], condition=Q(deleted_at__isnull=True),
                                    name="plan_code_unique_per_service"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="plan_amount_not_negative"),
            models.CheckConstraint(condition=Q(bill_charges_monthly=False) | Q(interval="yearly"),
                                   name="plan_charges_monthly_only_yearly"),
            models.CheckConstraint(
                condition=Q(amount_currency__regex=CURRENCY_CODE_CHECK), name="plan_currency_is_iso_code"
            ),
        ]

    @property
    def charges_interval(self) -> str:
        """The period of the usage windows: a month for a yearly plan billing charges monthly."""
        return windows.charges_interval(interval=self.interval, bill_charges_monthly=self.bill_charges_monthly)

    def __str__(self) -> str:
        return f"{self.service.code}:{self.code}"


class AddOn(models.Model):
    """Lago's add-on: a named one-off price a service bills through ``POST /invoices``
    (a one-off Odoo invoice, ``odoo_bridge.one_off``). Deleting one keeps the invoices that used it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="add_ons")
    code = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    invoice_display_name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    amount = models.DecimalField(**AMOUNT)
    amount_currency = models.CharField(max_length=3)
    odoo_product_id = models.PositiveIntegerField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service__code", "code"]
        constraints = [
            models.UniqueConstraint(fields=["service", "code"], condition=Q(deleted_at__isnull=True),
                                    name="add_on_code_unique_per_service"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="add_on_amount_not_negative"),
            models.CheckConstraint(condition=Q(amount_currency__regex=CURRENCY_CODE_CHECK),
                                   name="add_on_currency_is_iso_code"),
        ]

    def __str__(self) -> str:
        return f"{self.service.code}:{self.code}"


class MinimumCommitment(models.Model):
    """Lago's plan ``minimum_commitment``: the least a subscription pays per billing period,
    base fee and usage together; the shortfall is billed as a ``commitment`` PlanFee (the
    true-up) when the window closes. A change applies from each subscription's next window
    (``WindowTerms``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan = models.OneToOneField(Plan, on_delete=models.CASCADE, related_name="minimum_commitment")
    amount = models.DecimalField(**AMOUNT)
    invoice_display_name = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="minimum_commitment_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.plan} commitment {self.amount}"


class ChargeModel(models.TextChoices):
    STANDARD = "standard"
    PACKAGE = "package"
    GRADUATED = "graduated"
    VOLUME = "volume"


class Charge(models.Model):
    """How one metric is priced on one plan. Lago's ``properties`` are stored as typed columns."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="charges")
    metric = models.ForeignKey(BillableMetric, on_delete=models.PROTECT, related_name="charges")
    charge_model = models.CharField(max_length=16, choices=ChargeModel.choices)
    # standard: price per ``unit_batch`` units; package: price per package.
    amount = models.DecimalField(**RATE, null=True, blank=True)
    # Included quota: units that are never billed.
    free_units = models.DecimalField(**QUANTITY, default=0)
    unit_batch = models.DecimalField(**QUANTITY, default=1)
    package_size = models.DecimalField(**QUANTITY, null=True, blank=True)
    invoice_display_name = models.CharField(max_length=255, blank=True)
    # Lago ``min_amount_cents`` in major units: a window's amount is at least this (the
    # shortfall, Lago's true-up fee, is included in the window's rated amount).
    min_amount = models.DecimalField(**AMOUNT, default=0)
    odoo_product_id = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["plan", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "metric"], name="charge_one_per_metric_per_plan"),
            models.CheckConstraint(condition=Q(amount__isnull=True) | Q(amount__gte=0),
                                   name="charge_amount_not_negative"),
            models.CheckConstraint(condition=Q(free_units__gte=0), name="charge_free_units_not_negative"),
            models.CheckConstraint(condition=Q(unit_batch__gt=0), name="charge_unit_batch_positive"),
            models.CheckConstraint(condition=Q(package_size__isnull=True) | Q(package_size__gt=0),
                                   name="charge_package_size_positive"),
            models.CheckConstraint(
                condition=~Q(charge_model__in=[ChargeModel.STANDARD, ChargeModel.PACKAGE])
                | Q(amount__isnull=False),
                name="charge_amount_required_for_flat_models",
            ),
            models.CheckConstraint(
                condition=~Q(charge_model=ChargeModel.PACKAGE) | Q(package_size__isnull=False),
                name="charge_package_size_required_for_package",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan} / {self.metric.code} ({self.charge_model})"


class ChargeTier(models.Model):
    """One range of a graduated or volume charge, ``[from_value, to_value]`` as Lago has it."""

    charge = models.ForeignKey(Charge, on_delete=models.CASCADE, related_name="tiers")
    position = models.PositiveSmallIntegerField()
    from_value = models.DecimalField(**QUANTITY)
    to_value = models.DecimalField(**QUANTITY, null=True, blank=True)
    per_unit_amount = models.DecimalField(**RATE)
    flat_amount = models.DecimalField(**RATE, default=0)

    class Meta:
        ordering = ["charge", "position"]
        constraints = [
            models.UniqueConstraint(fields=["charge", "position"], name="charge_tier_position_unique"),
            models.CheckConstraint(condition=Q(from_value__gte=0), name="charge_tier_from_not_negative"),
            models.CheckConstraint(condition=Q(to_value__isnull=True) | Q(to_value__gte=F("from_value")),
                                   name="charge_tier_range_ordered"),
            models.CheckConstraint(condition=Q(per_unit_amount__gte=0), name="charge_tier_price_not_negative"),
            models.CheckConstraint(condition=Q(flat_amount__gte=0), name="charge_tier_flat_not_negative"),
        ]


class SubscriptionStatus(models.TextChoices):
    PENDING = "pending"
    ACTIVE = "active"
    TERMINATED = "terminated"
    CANCELED = "canceled"


CLOSED_SUBSCRIPTION_STATUSES = [SubscriptionStatus.TERMINATED, SubscriptionStatus.CANCELED]


class SubscriptionMode(models.TextChoices):
    LIVE = "live"  # billed through Odoo
    SHADOW = "shadow"  # rated for reconciliation only, never billed


class BillingTime(models.TextChoices):
    CALENDAR = "calendar"
    ANNIVERSARY = "anniversary"


class Subscription(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="subscriptions")
    account_link = models.ForeignKey(AccountLink, on_delete=models.PROTECT, related_name="subscriptions")
    external_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255, blank=True)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=16, choices=SubscriptionStatus.choices,
                              default=SubscriptionStatus.ACTIVE)
    mode = models.CharField(max_length=8, choices=SubscriptionMode.choices, default=SubscriptionMode.LIVE)
    billing_time = models.CharField(max_length=16, choices=BillingTime.choices,
                                    default=BillingTime.CALENDAR)
    subscription_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    ending_at = models.DateTimeField(null=True, blank=True)
    terminated_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    # The instant billing periods are counted from (see metering.windows).
    billing_anchor = models.DateTimeField(null=True, blank=True)
    # IANA name of the calendar its windows and proration days are counted in: the
    # customer's ``timezone`` (else BILLING_TIMEZONE) when the API created it, kept so that
    # a later change of the customer's timezone never moves its windows. UTC for imported
    # subscriptions (NexaCloud's periods are UTC) and those created before this field.
    billing_timezone = models.CharField(max_length=64, default="UTC", db_default="UTC", editable=False)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    # Rating: usage before this instant is frozen (closed windows); set when a window closes.
    usage_frozen_until = models.DateTimeField(null=True, blank=True, editable=False)
    # How long after its end the current window still takes late usage before it closes: the
    # customer's invoice grace period (days), else its service's; null = RATING_GRACE_SECONDS.
    # Kept in step with those settings in the transaction that changes them, while the
    # subscription is not closed (``metering.services.subscriptions.apply_invoice_grace``).
    grace_period = models.DurationField(null=True, blank=True, editable=False)
    flat_amount = models.DecimalField(**AMOUNT, help_text="Flat price per period, set explicitly.")
    currency = models.CharField(max_length=3)
    # Lifecycle (Lago): the subscription this one replaced on a plan change (rendered as
    # previous_plan_code), the plan a downgrade switches to at the current window's end
    # (next_plan_code / downgrade_plan_date), and what happens to the unused part of a fee
    # paid in advance on an early end ("credit" | "refund" | "skip"; "" = not terminated yet).
    previous_subscription = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True,
                                              related_name="+", editable=False)
    next_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
                                  editable=False)
    on_termination_credit_note = models.CharField(max_length=8, blank=True, default="")
    # Trial (plan's trial_period, from the first start of this external id's chain): no base
    # fee before trial_ends_at; trial_ended_at (Lago) is set, with subscription.trial_ended,
    # when the beat sees it passed.
    trial_ends_at = models.DateTimeField(null=True, blank=True, editable=False)
    trial_ended_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The UTC day subscription.termination_alert was last sent (Lago sends it once a day
    # when ending_at is N days away).
    termination_alert_sent_on = models.DateField(null=True, blank=True, editable=False)
    odoo_sale_order_id = models.PositiveIntegerField(null=True, blank=True)
    # Odoo's taxes of the order's lines (the partner's fiscal position applied), cached by the Odoo pull for
    # current_usage's taxes_amount_cents: {"<odoo product id>": "<sum of percentage rates>", "": recurring line's}.
    odoo_tax_rates = models.JSONField(default=dict, blank=True, editable=False)
    odoo_tax_rates_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service__code", "external_id", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "external_id"],
                condition=~Q(status__in=CLOSED_SUBSCRIPTION_STATUSES),
                name="subscription_one_open_per_external_id",
            ),
            models.CheckConstraint(condition=Q(flat_amount__gte=0), name="subscription_flat_not_negative"),
            models.CheckConstraint(
                condition=Q(currency__regex=CURRENCY_CODE_CHECK), name="subscription_currency_is_iso_code"
            ),
            models.CheckConstraint(
                condition=Q(current_period_start__isnull=True) | Q(current_period_end__gt=F("current_period_start")),
                name="subscription_window_not_empty",
            ),
        ]
        indexes = [models.Index(fields=["service", "status"], name="subscription_service_status")]

    def __str__(self) -> str:
        return f"{self.service.code}:{self.external_id}"

    @property
    def customer(self) -> Customer:
        return self.account_link.customer

    @property
    def grace(self) -> timedelta:
        """The effective grace of its windows (``effective_grace``)."""
        return effective_grace(self.grace_period)


def effective_grace(stored: timedelta | None) -> timedelta:
    """A subscription's grace: its own (``Subscription.grace_period``), else the deployment
    default ``RATING_GRACE_SECONDS``."""
    return stored if stored is not None else timedelta(seconds=settings.RATING_GRACE_SECONDS)


def window_due_after_grace(now: datetime, path: str = "") -> Q:
    """The current window's end + the subscription's grace has come (``Subscription.grace``),
    per row; ``path`` leads to the subscription. The first term (no grace is negative) keeps
    an index on ``current_period_end`` usable."""
    end = f"{path}current_period_end"
    return Q(**{f"{end}__lte": now}) & (
        Q(**{f"{path}grace_period__isnull": True, f"{end}__lte": now - effective_grace(None)})
        | Q(LessThanOrEqual(F(end) + F(f"{path}grace_period"), now)))


class UsageEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    # No single-column FK indexes: the unique constraint (service, ...) and the rating index
    # (subscription, ...) already lead with these columns; two fewer B-trees per ingested row.
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="+", db_index=False)
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="events",
                                     db_index=False)
    # Kept on the row so that the uniqueness below is Lago's, whatever the subscription row.
    external_subscription_id = models.CharField(max_length=255)
    code = models.CharField(max_length=255)
    transaction_id = models.CharField(max_length=255)
    timestamp = models.DateTimeField()
    properties = models.JSONField(default=dict, blank=True)
    # The metric's ``field_name`` property as a number, extracted at ingest so SQL can aggregate it.
    value = models.DecimalField(**QUANTITY, null=True, blank=True)
    precise_total_amount_cents = models.DecimalField(max_digits=40, decimal_places=15, null=True, blank=True)
    # SHA-256 of the canonical payload: an identical resend is a success, a different one a 422.
    payload_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # On PostgreSQL the table is partitioned by month of ``timestamp`` (migration
        # 0009, metering.services.partitions); its primary key there is (id, timestamp).
        # Lago's uniqueness (service, external_subscription_id, transaction_id) cannot be
        # a unique index of a table partitioned by timestamp: UsageEventKey holds it.
        indexes = [
            # Rating reads (subscription, code, timestamp range) -> value: an index-only scan.
            models.Index(fields=["subscription", "code", "timestamp"], include=["value"],
                         name="usage_event_rating_cover"),
        ]

    def __str__(self) -> str:
        return f"{self.external_subscription_id}:{self.transaction_id}"


class UsageEventKey(models.Model):
    """The unique key of every stored usage event, outside the monthly partitions.

    A unique index of a partitioned table must contain the partition key, which would
    make (service, external_subscription_id, transaction_id) unique per timestamp only.
    This slim table is not partitioned: its primary key is the exact rule, ordered so
    that it also serves ``GET /events/{transaction_id}`` without the subscription. It is
    written in the same statement as the event (ingest), and ``event_id`` + ``timestamp``
    find the event in its partition. Rows leave with their archived partition.
    """

    pk = models.CompositePrimaryKey("service_id", "transaction_id", "external_subscription_id")
    # No foreign-key constraint: the event row carries the real one, and a second
    # referential check per ingested row would cost for nothing.
    service = models.ForeignKey(Service, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False,
                                db_index=False)
    transaction_id = models.CharField(max_length=255)
    external_subscription_id = models.CharField(max_length=255)
    event_id = models.BigIntegerField()
    timestamp = models.DateTimeField()
    payload_hash = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"{self.external_subscription_id}:{self.transaction_id}"


class RatedUsageState(models.TextChoices):
    OPEN = "open"
    FROZEN = "frozen"


class RatedUsage(models.Model):
    """The priced usage of one charge of one subscription over one billing window."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: rated_usage_one_per_window starts with the subscription and
    # serves its lookups; a second index would only slow rating's bulk upserts.
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="rated_usages",
                                     db_index=False)
    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="rated_usages")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    units = models.DecimalField(**QUANTITY, default=0)
    billable_units = models.DecimalField(**QUANTITY, default=0)
    amount = models.DecimalField(**AMOUNT, default=0)
    events_count = models.BigIntegerField(default=0)
    state = models.CharField(max_length=8, choices=RatedUsageState.choices, default=RatedUsageState.OPEN)
    odoo_line_id = models.PositiveIntegerField(null=True, blank=True)
    rated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-window_start"]
        verbose_name_plural = "rated usage"
        constraints = [
            models.UniqueConstraint(fields=["subscription", "charge", "window_start"],
                                    name="rated_usage_one_per_window"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="rated_usage_amount_not_negative"),
            models.CheckConstraint(condition=Q(window_end__gt=F("window_start")),
                                   name="rated_usage_window_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.subscription} {self.charge.metric.code} [{self.window_start:%Y-%m-%d}…)"


class PlanFeeKind(models.TextChoices):
    # The plan's base fee for one window: charged at the window's start when the plan is
    # paid in advance, after the window closed when paid in arrears; prorated when the
    # window is shorter than a full period (mid-period calendar start, termination, upgrade).
    SUBSCRIPTION = "subscription"
    # Negative: the unused part of a fee paid in advance, given back when the subscription
    # ends early (termination or upgrade) and on_termination_credit_note asks for it.
    CREDIT = "credit"
    # The plan's minimum commitment minus what the window billed (base fee and usage), when
    # positive: Lago's ``commitment`` fee (true-up), written when the window closes.
    COMMITMENT = "commitment"


class PlanFee(models.Model):
    """A base-fee amount of one subscription for one window, computed here and invoiced by
    Odoo as a one-off line. Usage fees are ``RatedUsage``; this is the plan's flat part.

    Rows are final when written (a window's fee never changes afterwards): the Odoo bridge
    pushes each exactly once.
    """

    id = models.BigAutoField(primary_key=True)
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="plan_fees")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=PlanFeeKind.choices)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    # Fraction of a full period billed (1 for a full window): amount = plan amount x units.
    units = models.DecimalField(**QUANTITY)
    amount = models.DecimalField(**AMOUNT)
    currency = models.CharField(max_length=3)
    odoo_line_id = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["subscription", "window_start", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "kind", "window_start"],
                                    name="plan_fee_one_per_kind_and_window"),
            models.CheckConstraint(condition=Q(window_end__gt=F("window_start")), name="plan_fee_window_not_empty"),
            models.CheckConstraint(
                condition=(Q(kind__in=["subscription", "commitment"], amount__gte=0)
                           | Q(kind="credit", amount__lte=0)),
                name="plan_fee_sign_follows_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.subscription} {self.kind} [{self.window_start:%Y-%m-%d}…) {self.amount} {self.currency}"


class WindowTerms(models.Model):
    """The price terms an OPEN window started with, kept when the catalogue changes mid-window.

    Price changes (plan ``amount_cents``, charge properties, ``min_amount_cents``, a charge
    added to the plan) apply from the next window: when a plan that has subscriptions is
    edited, each of its subscriptions' current window gets one row per changed charge (and
    one with ``charge`` null for the plan amount) holding the terms BEFORE the change. The
    first change of a window wins (later edits keep the window's original terms). Rating
    prices a window with its row when there is one, else with the charge as stored; rows of
    closed windows are history. ``terms`` is ``metering.pricing.terms_to_snapshot`` (charges),
    ``{"amount": "<plan amount>"}`` (plan), or ``{"absent": true}`` for a charge the window
    did not have.
    """

    id = models.BigAutoField(primary_key=True)
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="+")
    charge = models.ForeignKey(Charge, on_delete=models.CASCADE, related_name="+", null=True, blank=True)
    window_start = models.DateTimeField()
    terms = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscription", "charge", "window_start"],
                                    condition=Q(charge__isnull=False), name="window_terms_one_per_charge"),
            models.UniqueConstraint(fields=["subscription", "window_start"],
                                    condition=Q(charge__isnull=True), name="window_terms_one_plan_amount"),
        ]
        indexes = [models.Index(fields=["subscription", "window_start"], name="window_terms_lookup")]


class UnmatchedEvent(models.Model):
    """An event accepted in lenient mode (``Service.lenient_events``) that no subscription or
    metric covered when it arrived: kept as sent, never rated, reported once by an
    ``events.errors`` webhook (``reported_at``)."""

    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="+")
    external_subscription_id = models.CharField(max_length=255)
    transaction_id = models.CharField(max_length=255)
    code = models.CharField(max_length=255)
    timestamp = models.DateTimeField()
    properties = models.JSONField(default=dict, blank=True, null=True)
    precise_total_amount_cents = models.DecimalField(max_digits=40, decimal_places=15, null=True, blank=True)
    payload_hash = models.CharField(max_length=64)
    # Lago's events.errors category: invalid_code, missing_aggregation_property, or ours,
    # missing_subscription (no subscription of that id ran at the timestamp).
    error = models.CharField(max_length=40)
    error_details = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    reported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["service", "external_subscription_id", "transaction_id"],
                                               name="unmatched_event_key")]
        indexes = [models.Index(fields=["service", "reported_at"], name="unmatched_event_unreported")]

    def __str__(self) -> str:
        return f"{self.external_subscription_id}/{self.transaction_id} ({self.error})"
