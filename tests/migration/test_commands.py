"""Management commands through call_command, and the import task."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from metering.models import Subscription
from migration.models import ImportRun, ImportRunStatus, empty_counts
from migration.tasks import run_import

pytestmark = pytest.mark.django_db


def test_import_command_reports_counts_and_exits_2_on_failed_rows(service, nexacloud_dsn):
    out = StringIO()
    with pytest.raises(CommandError) as info:
        call_command("import_nexacloud", dsn=nexacloud_dsn, stdout=out)
    assert info.value.returncode == 2
    text = out.getvalue()
    assert "deployments" in text and "UnknownBillingCycle" in text
    assert "deployments         5        0          0        2       3" in text
    assert Subscription.objects.count() == 5


def test_import_command_dry_run_leaves_nothing(service, nexacloud_dsn):
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("import_nexacloud", "--dry-run", dsn=nexacloud_dsn, stdout=out)
    assert "dry run, rolled back" in out.getvalue()
    assert Subscription.objects.count() == 0 and ImportRun.objects.get().dry_run


def test_import_command_clean_exit_when_no_row_fails(service, empty_source_dsn):
    out = StringIO()
    call_command("import_nexacloud", dsn=empty_source_dsn, stdout=out)
    assert "Clean import." in out.getvalue()


def test_import_command_fatal_errors_exit_1_without_traceback(db, nexacloud_dsn):
    with pytest.raises(CommandError) as info:
        call_command("import_nexacloud", dsn=nexacloud_dsn, stdout=StringIO())
    assert info.value.returncode == 1 and "'nexacloud' service does not exist" in str(info.value)


def test_import_command_unreachable_source(service):
    with pytest.raises(CommandError) as info:
        call_command("import_nexacloud", dsn="postgresql://u:secret@127.0.0.1:1/x", stdout=StringIO())
    assert info.value.returncode == 1 and "Cannot connect" in str(info.value) and "secret" not in str(info.value)


def test_import_task_redelivered_after_the_run_finished_does_nothing(db):
    finished_at = timezone.now()
    run = ImportRun.objects.create(status=ImportRunStatus.SUCCEEDED, finished_at=finished_at, counts=empty_counts())
    # Without a nexacloud service a second execution would end the run "failed".
    assert run_import.apply(args=[run.pk]).get() == ImportRunStatus.SUCCEEDED
    run.refresh_from_db()
    assert (run.status, run.finished_at, run.fatal_error) == (ImportRunStatus.SUCCEEDED, finished_at, "")
