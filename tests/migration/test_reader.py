"""The read-only NexaCloud reader against a real PostgreSQL source database."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import psycopg
import pytest

from migration.reader import (
    NexaCloudReader,
    SourceQueryFailed,
    SourceSchemaMismatch,
    SourceUnavailable,
    redact_dsn,
)
from migration.testing.source_db import Fixture


def test_reads_typed_rows(nexacloud_dsn):
    with NexaCloudReader(nexacloud_dsn, chunk_size=2) as reader:
        users = {u.id: u for u in reader.users()}
        plans = {p.code: p for p in reader.plans()}
        deployments = {d.id: d for d in reader.deployments()}
        usage = list(reader.usage_hours())
        billed = list(reader.billed_periods())
    assert len(users) == 5 and users[Fixture.USER_DELETED].deleted_at is not None
    alice = users[Fixture.USER_ALICE]
    assert alice.stripe_customer_id == "cus_alice" and alice.created_at.tzinfo is not None
    assert plans["nc-starter"].price_monthly == Decimal("12.00")
    assert plans["nc-pro"].price_yearly is None  # NULL stays NULL, never 0
    assert plans["nc-free"].price_monthly == Decimal("0.00")
    assert plans["nc-pro"].cpu_seconds_quota == 3_600_000 and plans["nc-pro"].currency == "CAD"
    dep = deployments[Fixture.DEP_ALICE_YEARLY]
    assert dep.current_period_start == date(2026, 1, 1) and isinstance(dep.current_period_end, date)
    assert deployments[Fixture.DEP_ORPHAN].user_id == Fixture.USER_MISSING
    assert len(usage) == 200 + 100 + 101 + 10 + 5 + 3
    assert all(isinstance(u.hour_start, datetime) and u.hour_start.tzinfo for u in usage)
    assert {b.deployment_id for b in billed} >= {Fixture.DEP_ALICE_STARTER, Fixture.DEP_ALICE_PRO}
    assert all(isinstance(b.overage_amount, Decimal) for b in billed)


def test_usage_before_cutoff_and_billed_period_filter(nexacloud_dsn):
    with NexaCloudReader(nexacloud_dsn) as reader:
        october = list(reader.usage_hours(before=datetime.fromisoformat("2026-11-01T00:00:00+00:00")))
        nov_bills = list(reader.billed_periods(period_start=date(2026, 11, 1)))
        assert reader.count("usage_hourly") == 419
    assert len(october) == 409 and nov_bills == []


def test_streams_through_a_server_side_cursor_in_a_read_only_snapshot(nexacloud_dsn):
    with NexaCloudReader(nexacloud_dsn, chunk_size=3) as reader:
        rows = reader.usage_hours()
        next(rows)  # cursor opened on the server
        conn = reader.connection
        names = [r[0] for r in conn.execute("SELECT name FROM pg_cursors").fetchall()]
        assert any(n.startswith("fb_import_usage_hourly") for n in names)
        assert conn.execute("SHOW transaction_read_only").fetchone()[0] == "on"
        assert conn.execute("SHOW transaction_isolation").fetchone()[0] == "repeatable read"
        rows.close()
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM usage_hourly")


def test_refused_connection_is_a_clear_error():
    with pytest.raises(SourceUnavailable) as info:
        NexaCloudReader("postgresql://nexa:s3cret@127.0.0.1:1/nexacloud").open()
    assert "Cannot connect to the NexaCloud source" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_no_dsn_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NEXACLOUD_DSN", raising=False)
    with pytest.raises(SourceUnavailable, match="NEXACLOUD_DSN"):
        NexaCloudReader()


def test_missing_table_and_column_are_named(empty_source_dsn):
    with psycopg.connect(empty_source_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE billed_periods")
        conn.execute("ALTER TABLE plans DROP COLUMN cpu_seconds_quota")
    with pytest.raises(SourceSchemaMismatch) as info:
        NexaCloudReader(empty_source_dsn).open()
    assert info.value.missing == ["column plans.cpu_seconds_quota", "table billed_periods"]
    assert "plans.cpu_seconds_quota" in str(info.value)


def test_failing_query_is_a_clear_error(empty_source_dsn):
    with psycopg.connect(empty_source_dsn, autocommit=True) as conn:
        # Every contract column exists, but this role may not read usage_hourly.
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'nc_src_reader_no_usage'").fetchone():
            conn.execute("CREATE ROLE nc_src_reader_no_usage LOGIN")
        conn.execute("GRANT SELECT ON users, plans, deployments, billed_periods TO nc_src_reader_no_usage")
    params = psycopg.conninfo.conninfo_to_dict(empty_source_dsn)
    params["user"] = "nc_src_reader_no_usage"
    dsn = psycopg.conninfo.make_conninfo(**params)
    try:
        with NexaCloudReader(dsn) as reader:
            assert list(reader.users()) == []
            with pytest.raises(SourceQueryFailed, match="usage_hourly.*permission denied"):
                list(reader.usage_hours())
    finally:
        with psycopg.connect(empty_source_dsn, autocommit=True) as conn:
            conn.execute("DROP OWNED BY nc_src_reader_no_usage")
            conn.execute("DROP ROLE nc_src_reader_no_usage")


def test_redact_dsn_hides_passwords():
    assert redact_dsn("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    # key=value DSNs are parsed by psycopg.conninfo and rebuilt (libpq's parameter order)
    assert redact_dsn("host=h password=pw dbname=x") == "password=*** dbname=x host=h"
    assert redact_dsn("host=h sslpassword=pw dbname=x") == "dbname=x host=h sslpassword=***"
