"""NexaCloud's source contract lives in the repository, once, and matches what the reader reads."""

from __future__ import annotations

import os
import subprocess

import psycopg
import pytest

from migration.reader import SOURCE_CONTRACT, NexaCloudReader
from migration.testing.source_db import SCHEMA_PATH, create_source_database, drop_source_database, schema_sql
from tests.conftest import REPO_ROOT

# The types the reader's row builders rely on (Decimal money, aware datetimes, dates).
EXPECTED_TYPES = {
    ("users", "created_at"): "timestamp with time zone",
    ("users", "deleted_at"): "timestamp with time zone",
    ("plans", "price_monthly"): "numeric",
    ("plans", "price_yearly"): "numeric",
    ("plans", "cpu_seconds_quota"): "bigint",
    ("deployments", "created_at"): "timestamp with time zone",
    ("deployments", "current_period_start"): "date",
    ("deployments", "current_period_end"): "date",
    ("usage_hourly", "hour_start"): "timestamp with time zone",
    ("usage_hourly", "cpu_seconds"): "bigint",
    ("billed_periods", "period_start"): "date",
    ("billed_periods", "period_end"): "date",
    ("billed_periods", "flat_amount"): "numeric",
    ("billed_periods", "cpu_seconds"): "bigint",
    ("billed_periods", "overage_amount"): "numeric",
}


def test_the_contract_is_one_file_inside_the_repository():
    assert SCHEMA_PATH.is_file()
    assert SCHEMA_PATH.resolve().is_relative_to(REPO_ROOT.resolve())
    tracked = subprocess.run(["git", "ls-files", "--", "*schema.sql"], cwd=REPO_ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    assert tracked == ["migration/contract/schema.sql"]
    assert schema_sql() == SCHEMA_PATH.read_text()


@pytest.fixture
def contract_dsn(source_admin_dsn):
    name = f"nc_src_contract_{os.getpid()}"
    dsn = create_source_database(name, source_admin_dsn)
    yield dsn
    drop_source_database(name, source_admin_dsn)


def test_every_column_the_reader_selects_exists_in_the_contract_with_its_type(contract_dsn):
    with psycopg.connect(contract_dsn) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public'").fetchall()
    columns = {(table, column): data_type for table, column, data_type in rows}
    missing = [f"{table}.{column}" for table, names in SOURCE_CONTRACT.items() for column in names
               if (table, column) not in columns]
    assert missing == []
    assert {key: columns[key] for key in EXPECTED_TYPES} == EXPECTED_TYPES
    # And the reader, opened on a database built from nothing but the contract, agrees.
    with NexaCloudReader(contract_dsn) as reader:
        assert {table: reader.count(table) for table in SOURCE_CONTRACT} == dict.fromkeys(SOURCE_CONTRACT, 0)
