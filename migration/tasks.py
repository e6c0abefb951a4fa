"""Celery tasks of the migration (thin wrappers over services), and queueing an import."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import transaction

from migration import services
from migration.models import ImportRun, ImportRunStatus
from migration.reconciliation import reconcile_service

logger = logging.getLogger("migration")


@shared_task(name="migration.tasks.run_import", acks_late=True)
def run_import(run_id: int) -> str:
    run = ImportRun.objects.get(pk=run_id)
    if run.status != ImportRunStatus.RUNNING or run.finished_at is not None:
        return run.status  # redelivered after it finished: nothing to do
    return services.execute_import_run(run=run).status


@shared_task(name="migration.tasks.reconcile_nightly")
def reconcile_nightly(service_code: str = "nexacloud") -> dict:
    result = reconcile_service(service_code=service_code)
    logger.info("nightly reconciliation of %s: %s", service_code, result.as_dict())
    return result.as_dict()


def queue_import_run(*, run: ImportRun) -> None:
    """Run the import on a worker once ``run`` is committed (or here, when configured synchronous).

    If the broker cannot take the task, the run is finished as failed with the reason, so
    the admin shows it instead of an error page and a run that never leaves "running".
    """
    if settings.MIGRATION_IMPORT_SYNCHRONOUS:
        services.execute_import_run(run=run)
        return

    def enqueue() -> None:
        try:
            run_import.delay(run.pk)
        except Exception as exc:  # any broker failure ends this run; staff can start another
            services.logger.error("NexaCloud import #%s could not be queued: %s", run.pk, exc)
            services.fail_import_run(
                run=run, reason=f"could not queue the import on a worker ({type(exc).__name__}); "
                                "is the broker running?")

    transaction.on_commit(enqueue)
