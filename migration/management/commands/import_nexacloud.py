"""``python manage.py import_nexacloud [--dry-run] [--dsn DSN]``.

Exit status: 0 clean, 2 when rows failed (see the failure list), 1 on a fatal
error (no ``nexacloud`` service, source unreachable, schema mismatch, ...).
"""

from __future__ import annotations

import sys
from typing import TextIO

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from migration.models import ENTITIES, ImportRunStatus
from migration.services import import_nexacloud


class _ProgressBars:
    """One tqdm bar per phase, only when stdout is a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bar: tqdm | None = None
        self._phase: str | None = None

    def __call__(self, phase: str, processed: int, total: int | None) -> None:
        bar = self._bar
        if bar is None or phase != self._phase:
            self.close()
            self._phase = phase
            self._bar = bar = tqdm(total=total, desc=phase, unit="rows", file=self._stream, leave=True)
        bar.update(processed - bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Command(BaseCommand):
    help = "Import NexaCloud users, plans, deployments and hourly usage (read-only on the source)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="Do the whole import and roll it back; report the same counts.")
        parser.add_argument("--dsn", default=None, help="Source DSN (default: NEXACLOUD_DSN).")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar even on a terminal.")

    def handle(self, *args, dry_run: bool, dsn: str | None, no_progress: bool, **options) -> None:
        bars = None
        if not no_progress and hasattr(self.stdout, "isatty") and self.stdout.isatty():
            bars = _ProgressBars(sys.stderr)
        try:
            run = import_nexacloud(dry_run=dry_run, dsn=dsn, started_by="manage.py import_nexacloud",
                                   listener=bars)
        finally:
            if bars is not None:
                bars.close()
        title = "NexaCloud import (dry run, rolled back)" if dry_run else "NexaCloud import"
        self.stdout.write(f"{title} #{run.pk}: {run.status}")
        if run.status == ImportRunStatus.FAILED:
            raise CommandError(run.fatal_error, returncode=1)
        self.stdout.write(f"{'entity':<12}{'created':>9}{'updated':>9}{'unchanged':>11}{'skipped':>9}{'failed':>8}")
        for entity in ENTITIES:
            c = run.counts[entity]
            self.stdout.write(f"{entity:<12}{c['created']:>9}{c['updated']:>9}{c['unchanged']:>11}"
                              f"{c['skipped']:>9}{c['failed']:>8}")
        failures = list(run.failures.all()[:50])
        for failure in failures:
            self.stdout.write(f"  FAILED {failure.entity} {failure.key}: {failure.exception_type}: {failure.message}")
        if run.total("failed"):
            more = run.total("failed") - len(failures)
            if more > 0:
                self.stdout.write(f"  ... and {more} more (see the admin, import run #{run.pk})")
            raise CommandError(f"{run.total('failed')} row(s) failed; see import run #{run.pk}", returncode=2)
        self.stdout.write(self.style.SUCCESS("Clean import."))
