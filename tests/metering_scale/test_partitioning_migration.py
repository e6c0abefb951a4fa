"""Migration 0009 turns an existing, plain usage-event table into monthly partitions with
every row kept: run on a scratch database migrated to 0008 and filled through the models
of that state (tests/metering_scale/seed_unpartitioned.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from decimal import Decimal

import psycopg
import pytest
from django.db import connection

from tests.conftest import REPO_ROOT, subprocess_environment


@pytest.fixture
def scratch_database(db):
    name = f"{connection.settings_dict['NAME']}_partitioning"
    settings = connection.settings_dict
    server = f"postgresql://{settings.get('USER') or 'postgres'}@{settings.get('HOST') or '127.0.0.1'}:" \
             f"{settings.get('PORT') or 5432}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(url: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                            env=subprocess_environment(DATABASE_URL=url, DJANGO_DEBUG="1"), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_an_existing_events_table_is_partitioned_with_its_rows(scratch_database):
    manage(scratch_database, "migrate", "metering", "0008", "-v", "0")
    seeded = json.loads(manage(scratch_database, "shell", "-c",
                               "exec(open('tests/metering_scale/seed_unpartitioned.py').read())").splitlines()[-1])
    manage(scratch_database, "migrate", "-v", "0")

    with psycopg.connect(scratch_database) as db:
        assert db.execute("SELECT relkind FROM pg_class WHERE relname = 'metering_usageevent'").fetchone() == ("p",)
        rows = db.execute("SELECT id, transaction_id, \"timestamp\", value::text, tableoid::regclass::text"
                          " FROM metering_usageevent ORDER BY id").fetchall()
        assert [(r[0], r[1], r[2].isoformat(), Decimal(r[3])) for r in rows] == [
            (i, tx, ts, Decimal(value)) for i, tx, ts, value in seeded]
        # Each row in the partition of its month.
        assert [r[4] for r in rows] == [f"metering_usageevent_p{datetime.fromisoformat(ts):%Y_%m}"
                                        for _, _, ts, _ in seeded]
        # Keys filled from the rows; the id sequence continues after them.
        assert db.execute("SELECT event_id, transaction_id FROM metering_usageeventkey ORDER BY event_id"
                          ).fetchall() == [(i, tx) for i, tx, _, _ in seeded]
        assert db.execute("SELECT nextval('metering_usageevent_id_seq')").fetchone()[0] == len(seeded) + 1
        # Only the months with events and those around now: an outlier month leaves no
        # trail of empty partitions.
        names = [n for (n,) in db.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                           " WHERE i.inhparent = 'metering_usageevent'::regclass")]
        assert "metering_usageevent_p2024_01" in names and "metering_usageevent_p2024_06" not in names
        assert "metering_usageevent_default" in names
