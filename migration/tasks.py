"""Celery tasks of the migration (thin wrappers over services)."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger("migration")


@shared_task(name="migration.tasks.run_import", acks_late=True)
def run_import(run_id: int) -> str:
    from migration.models import ImportRun, ImportRunStatus
    from migration.services import execute_import_run

    run = ImportRun.objects.get(pk=run_id)
    if run.status != ImportRunStatus.RUNNING or run.finished_at is not None:
        return run.status  # redelivered after it finished: nothing to do
    return execute_import_run(run=run).status


@shared_task(name="migration.tasks.reconcile_nightly")
def reconcile_nightly(service_code: str = "nexacloud") -> dict:
    from migration.reconciliation import reconcile_service

    result = reconcile_service(service_code=service_code)
    logger.info("nightly reconciliation of %s: %s", service_code, result.as_dict())
    return result.as_dict()
