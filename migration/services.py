"""Import runs: start one, execute it against the source, persist the outcome.

``execute_import_run`` is what the management command, the admin page and the
Celery task all call. It never raises for a problem the operator can fix (no
service, no source, schema mismatch, failed query): the run ends ``failed`` with
a clear ``fatal_error`` instead.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from migration.models import NEEDS_POSTGRESQL, ImportFailure, ImportRun, ImportRunStatus, empty_counts
from migration.reader import NexaCloudReader, SourceError, redact_dsn
from migration.writer import ImportReport, ServiceMissing, get_import_service, write_import

logger = logging.getLogger("migration.import")

ProgressListener = Callable[[str, int, int | None], None]
PROGRESS_WRITE_INTERVAL_SECONDS = 0.5
MAX_STORED_FAILURES = 10_000


class _ProgressRecorder:
    """Writes ``phase``/``processed`` onto the ImportRun through a separate connection,
    so the admin sees progress while the import transaction is still open."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self._last = 0.0
        self._conn: BaseDatabaseWrapper | None = None

    def expect(self, totals: dict[str, int | None]) -> None:
        """Record the rows each phase will read (for the progress bar)."""
        self._write(f"UPDATE {ImportRun._meta.db_table} SET expected = %s WHERE id = %s",
                    [json.dumps({phase: int(n or 0) for phase, n in totals.items()}), self.run_id])

    def _write(self, sql: str, params: list[Any]) -> None:
        try:
            if self._conn is None:
                self._conn = connections.create_connection(DEFAULT_DB_ALIAS)
                self._conn.set_autocommit(True)
            with self._conn.cursor() as cursor:
                cursor.execute(sql, params)
        except Exception:  # progress is best effort; never fail an import for it
            logger.warning("could not record import progress", exc_info=True)

    def __call__(self, phase: str, processed: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_WRITE_INTERVAL_SECONDS:
            return
        self._last = now
        try:
            if self._conn is None:
                self._conn = connections.create_connection(DEFAULT_DB_ALIAS)
                self._conn.set_autocommit(True)
            with self._conn.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {ImportRun._meta.db_table} SET phase = %s, processed = %s WHERE id = %s",
                    [phase, processed, self.run_id],
                )
        except Exception:  # progress is best effort; never fail an import for it
            logger.warning("could not record import progress", exc_info=True)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def start_import_run(*, dry_run: bool, dsn: str | None = None, started_by: str = "") -> ImportRun:
    source = dsn if dsn is not None else settings.NEXACLOUD_DSN
    return ImportRun.objects.create(dry_run=dry_run, source=redact_dsn(source or "") if source else "",
                                    started_by=started_by, counts=empty_counts())


def fail_import_run(*, run: ImportRun, reason: str) -> ImportRun:
    """End ``run`` as failed before it started (e.g. the broker could not take it)."""
    return _finish(run, status=ImportRunStatus.FAILED, report=None, fatal_error=reason)


def _finish(run: ImportRun, *, status: str, report: ImportReport | None, fatal_error: str = "") -> ImportRun:
    run.status = status
    run.finished_at = timezone.now()
    run.fatal_error = fatal_error
    run.phase = "done" if status != ImportRunStatus.FAILED else "failed"
    if report is not None:
        run.counts = report.counts
    with transaction.atomic():
        # Not ``processed``: the progress connection owns it (the last figure stays visible).
        run.save(update_fields=["status", "finished_at", "fatal_error", "phase", "counts", "service"])
        if report is not None and report.failures:
            ImportFailure.objects.bulk_create(
                [ImportFailure(run=run, entity=f.entity, key=f.key[:255], exception_type=f.exception_type[:255],
                               message=f.message, traceback=f.traceback)
                 for f in report.failures[:MAX_STORED_FAILURES]],
                batch_size=1000,
            )
    return run


def execute_import_run(*, run: ImportRun, dsn: str | None = None,
                       listener: ProgressListener | None = None,
                       reader_factory: Callable[[str | None], NexaCloudReader] = NexaCloudReader) -> ImportRun:
    """Run the import described by ``run`` (its ``dry_run`` flag) and persist the result."""
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":  # COPY and temp tables; see README
        return _finish(run, status=ImportRunStatus.FAILED, report=None,
                       fatal_error=NEEDS_POSTGRESQL)
    recorder = _ProgressRecorder(run.pk)
    dsn = dsn if dsn is not None else (settings.NEXACLOUD_DSN or None)
    try:
        service = get_import_service()
    except ServiceMissing as exc:
        logger.error("NexaCloud import #%s not started: %s", run.pk, exc)
        return _finish(run, status=ImportRunStatus.FAILED, report=None, fatal_error=str(exc))
    run.service = service
    run.save(update_fields=["service"])
    totals: dict[str, int | None] = {}

    def progress(phase: str, processed: int) -> None:
        recorder(phase, processed)
        if listener is not None:
            listener(phase, processed, totals.get(phase))

    try:
        with reader_factory(dsn) as reader:
            totals.update(plans=reader.count("plans"), users=reader.count("users"),
                          deployments=reader.count("deployments"), usage=reader.count("usage_hourly"))
            recorder.expect(totals)
            report = write_import(service=service, source=reader, dry_run=run.dry_run, progress=progress)
    except SourceError as exc:
        logger.error("NexaCloud import #%s failed: %s", run.pk, exc)
        return _finish(run, status=ImportRunStatus.FAILED, report=None, fatal_error=str(exc))
    except Exception as exc:  # unexpected: keep the traceback in the log, a clean line in the run
        logger.exception("NexaCloud import #%s failed unexpectedly", run.pk)
        return _finish(run, status=ImportRunStatus.FAILED, report=None,
                       fatal_error=f"Unexpected {type(exc).__name__}: {exc}")
    finally:
        recorder.close()
    status = ImportRunStatus.ROWS_FAILED if report.total("failed") else ImportRunStatus.SUCCEEDED
    logger.info("NexaCloud import #%s (%s) finished: %s", run.pk, "dry run" if run.dry_run else "real",
                report.counts)
    return _finish(run, status=status, report=report)


def import_nexacloud(*, dry_run: bool = False, dsn: str | None = None, started_by: str = "",
                     listener: ProgressListener | None = None) -> ImportRun:
    run = start_import_run(dry_run=dry_run, dsn=dsn, started_by=started_by)
    return execute_import_run(run=run, dsn=dsn, listener=listener)
