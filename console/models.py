"""The console's own records: the audit log, long-running jobs, and the dashboard's rollups."""
from __future__ import annotations

from django.conf import settings
from django.db import models

from identity.models import Service


class AuditEntry(models.Model):
    """One operator action in the console: who, what, when, and the objects before and after.

    Written by the console's site for every state-changing admin request (actions, forms,
    custom pages); secrets are masked in the snapshots. Never edited or deleted here."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="+")
    username = models.CharField(max_length=150)
    action = models.CharField(max_length=200)
    target = models.CharField(max_length=200, blank=True, help_text="app_label.model of the objects")
    object_ids = models.JSONField(default=list, blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    path = models.CharField(max_length=500)
    status_code = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit log"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username}: {self.action}"


class OpsJobKind(models.TextChoices):
    RECONCILE = "reconcile", "reconciliation"
    RESYNC = "resync", "Odoo resync"
    REPLAY = "replay", "webhook replay"


class OpsJobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class OpsJob(models.Model):
    """Long ops work started from the console, run on a worker; its page shows ``done/total``."""

    kind = models.CharField(max_length=16, choices=OpsJobKind.choices)
    status = models.CharField(max_length=16, choices=OpsJobStatus.choices, default=OpsJobStatus.QUEUED)
    parameters = models.JSONField(default=dict, blank=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    started_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "ops job"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def percent(self) -> int:
        if self.status == OpsJobStatus.SUCCEEDED:
            return 100
        return int(self.done * 100 // self.total) if self.total else 0


class EventHourlyRollup(models.Model):
    """Usage events ingested per service per hour (by ``created_at``): the dashboard reads
    this instead of counting the events table."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    events = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "service"], name="console_event_rollup_once")]


class DashboardRefresh(models.Model):
    """Singleton: when the rollups were last refreshed, and by which worker (liveness)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    rolled_up_from = models.DateTimeField(null=True, blank=True,
                                          help_text="Hours from here on are recounted on each refresh.")
    worker = models.CharField(max_length=200, blank=True)
    worker_seen_at = models.DateTimeField(null=True, blank=True)
