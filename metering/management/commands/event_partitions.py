"""``python manage.py event_partitions [--ensure] [--archive [--older-than-months N] [--directory DIR]]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from metering.services import partitions


class Command(BaseCommand):
    help = ("List the monthly partitions of the usage-event table (PostgreSQL); create the ones ahead "
            "(--ensure) and apply the retention policy (--archive), as the beat tasks do.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ensure", action="store_true", help="create this month's and the next ones")
        parser.add_argument("--archive", action="store_true",
                            help="archive and drop the months the retention policy lets go")
        parser.add_argument("--older-than-months", type=int, default=None,
                            help="retention age for --archive (default: EVENTS_RETENTION_MONTHS)")
        parser.add_argument("--directory", default=None, help="archive directory (default: EVENTS_ARCHIVE_DIR)")

    def handle(self, *args: Any, ensure: bool = False, archive: bool = False, older_than_months: int | None = None,
               directory: str | None = None, **options: Any) -> None:
        if not partitions.is_partitioned():
            self.stdout.write("The usage-event table is not partitioned (embedded SQLite default): nothing to do.")
            return
        if older_than_months is not None and older_than_months < 0:
            raise CommandError("--older-than-months must not be negative")
        if ensure:
            for name in partitions.ensure_event_partitions():
                self.stdout.write(f"created {name}")
        if archive:
            for outcome in partitions.archive_event_partitions(
                    older_than_months=older_than_months, directory=Path(directory) if directory else None):
                if outcome.archived:
                    self.stdout.write(f"archived {outcome.partition}: {outcome.rows} events -> {outcome.path}")
                else:
                    self.stdout.write(f"kept {outcome.partition}: {outcome.reason}")
        for partition in partitions.event_partitions():
            self.stdout.write(f"{partition.name}  [{partition.start:%Y-%m-%d}, {partition.end:%Y-%m-%d})")
