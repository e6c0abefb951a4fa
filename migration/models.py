"""Import runs, reconciliation rows and go-live attempts of the NexaCloud migration."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from identity.models import Customer, Service
from metering.models import Subscription

ENTITIES = ("plans", "users", "deployments", "usage")
COUNT_KEYS = ("created", "updated", "unchanged", "skipped", "failed")


def empty_counts() -> dict:
    return {entity: {key: 0 for key in COUNT_KEYS} for entity in ENTITIES}


# The migration's COPY, temporary tables and advisory locks are PostgreSQL's.
NEEDS_POSTGRESQL = ("The NexaCloud migration needs PostgreSQL (set DATABASE_URL); "
                    "the embedded SQLite default does not run it.")

class ImportRunStatus(models.TextChoices):
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every row imported or deliberately skipped
    ROWS_FAILED = "rows_failed"  # finished, but some rows failed (see failures)
    FAILED = "failed"  # fatal: nothing was imported (source unreachable, schema mismatch, ...)


class Banner(models.TextChoices):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"


# The importer's phases, in the order it runs them (``ImportRun.phase``).
IMPORT_PHASES = ("plans", "users", "deployments", "usage")


class ImportRun(models.Model):
    """One run of the NexaCloud importer (real or dry), with its counts and progress.

    Progress (``phase``/``processed``) is written from a separate connection while the
    import transaction is open, so the admin sees it move; counts and failures are
    written once the import transaction has committed or (dry run) rolled back.
    """

    service = models.ForeignKey(Service, on_delete=models.PROTECT, null=True, blank=True,
                                related_name="import_runs")
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=ImportRunStatus.choices, default=ImportRunStatus.RUNNING)
    source = models.CharField(max_length=500, blank=True, help_text="Source DSN, password redacted.")
    started_by = models.CharField(max_length=150, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    phase = models.CharField(max_length=32, blank=True)
    processed = models.BigIntegerField(default=0)
    # Rows to read per phase (plans, users, deployments, usage), counted before the import
    # starts: with ``phase``/``processed`` they make the progress bar's percentage.
    expected = models.JSONField(default=dict, blank=True)
    counts = models.JSONField(default=empty_counts)
    fatal_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        verbose_name = "NexaCloud import run"

    def __str__(self) -> str:
        kind = "dry run" if self.dry_run else "import"
        return f"{kind} #{self.pk} ({self.status})"

    @property
    def percent(self) -> int:
        """How far the run is, 0-100, from the rows expected and processed per phase."""
        if self.status != ImportRunStatus.RUNNING:
            return 100
        expected = self.expected or {}
        wanted = sum(int(expected.get(p) or 0) for p in IMPORT_PHASES)
        if not wanted or self.phase not in IMPORT_PHASES:
            return 0
        before = sum(int(expected.get(p) or 0) for p in IMPORT_PHASES[:IMPORT_PHASES.index(self.phase)])
        return min(99, (before + int(self.processed)) * 100 // wanted)

    def total(self, key: str) -> int:
        return sum(int(c.get(key, 0)) for c in (self.counts or {}).values())

    @property
    def banner(self) -> str:
        """Red: fatal or rows failed. Amber: rows skipped. Green: clean."""
        if self.status == ImportRunStatus.RUNNING:
            return ""
        if self.status == ImportRunStatus.FAILED or self.total("failed"):
            return Banner.RED
        if self.total("skipped"):
            return Banner.AMBER
        return Banner.GREEN


class ImportFailure(models.Model):
    """A source row that could not be imported (its savepoint was rolled back)."""

    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="failures")
    entity = models.CharField(max_length=16)
    key = models.CharField(max_length=255)
    exception_type = models.CharField(max_length=255)
    message = models.TextField()
    traceback = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "id"]

    def __str__(self) -> str:
        return f"{self.entity} {self.key}: {self.exception_type}"


class ReconciliationStatus(models.TextChoices):
    MATCH = "match"
    MISMATCH = "mismatch"
    MISSING_IN_FUSION = "missing_in_fusion"
    MISSING_IN_SOURCE = "missing_in_source"


class Reconciliation(models.Model):
    """What Fusion Billing would bill for one subscription and period against what the
    source app billed. One row per (service, external subscription id, period): two
    deployments of one customer keep two rows."""

    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="reconciliations")
    external_subscription_id = models.CharField(max_length=255)
    period_start = models.DateField()
    period_end = models.DateField()
    subscription = models.ForeignKey(Subscription, on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="reconciliations")
    customer = models.ForeignKey(Customer, on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="reconciliations")
    currency = models.CharField(max_length=3, default="CAD")
    fusion_flat_amount = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    fusion_usage_amount = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    fusion_amount = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    fusion_units = models.DecimalField(max_digits=38, decimal_places=10, null=True, blank=True)
    source_flat_amount = models.DecimalField(max_digits=20, decimal_places=4, null=True, blank=True)
    source_overage_amount = models.DecimalField(max_digits=20, decimal_places=4, null=True, blank=True)
    source_amount = models.DecimalField(max_digits=20, decimal_places=4, null=True, blank=True)
    source_cpu_seconds = models.BigIntegerField(null=True, blank=True)
    delta = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True,
                                help_text="fusion_amount - source_amount")
    tolerance = models.DecimalField(max_digits=20, decimal_places=6, default=0)
    status = models.CharField(max_length=20, choices=ReconciliationStatus.choices)
    checked_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period_start", "external_subscription_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "external_subscription_id", "period_start"],
                name="reconciliation_one_per_subscription_period",
            ),
        ]
        indexes = [models.Index(fields=["service", "period_start", "status"], name="reconciliation_report")]

    def __str__(self) -> str:
        return f"{self.service.code}:{self.external_subscription_id} {self.period_start} {self.status}"


class GoLiveAction(models.TextChoices):
    PREFLIGHT = "preflight"
    GO_LIVE = "go_live"
    REVERT = "revert"


class GoLiveAttempt(models.Model):
    """One preflight, flip or revert of one subscription, with every check's outcome."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="go_live_attempts")
    action = models.CharField(max_length=16, choices=GoLiveAction.choices)
    ok = models.BooleanField(default=False)
    checks = models.JSONField(default=list, help_text="[{name, ok, detail}]")
    message = models.TextField(blank=True)
    odoo_sale_order_id = models.PositiveIntegerField(null=True, blank=True)
    odoo_payment_token_id = models.PositiveIntegerField(null=True, blank=True)
    stripe_payment_method_id = models.CharField(max_length=255, blank=True)
    started_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["subscription", "-created_at"], name="go_live_latest")]
        constraints = [
            models.CheckConstraint(condition=Q(action__in=GoLiveAction.values), name="go_live_action_known"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.subscription} ({'ok' if self.ok else 'blocked'})"
