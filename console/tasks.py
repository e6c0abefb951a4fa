"""Celery tasks of the console (thin wrappers over console.services)."""
from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import transaction

from console import services
from console.models import OpsJob, OpsJobStatus


@shared_task(name="console.tasks.refresh_dashboard", bind=True)
def refresh_dashboard(self: Any) -> int:
    # The worker's own name: the dashboard reports it as the last worker seen alive.
    return services.refresh_event_rollup(worker=str(self.request.hostname or ""))


@shared_task(name="console.tasks.run_job", acks_late=True)
def run_job(job_id: int) -> str:
    return services.run_job(job_id=job_id).status


def queue_job(*, job: OpsJob) -> None:
    """Run ``job`` on a worker once it is committed; a broker that refuses it fails the job
    (the page shows why instead of a bar that never moves)."""
    def enqueue() -> None:
        try:
            run_job.delay(job.pk)
        except Exception as exc:  # any broker failure ends this job; staff can start another
            OpsJob.objects.filter(pk=job.pk).update(
                status=OpsJobStatus.FAILED, message=f"could not queue the job ({type(exc).__name__}); "
                                                    "is the broker running?")

    transaction.on_commit(enqueue)
