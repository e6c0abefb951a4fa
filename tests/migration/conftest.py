"""Fixtures of the migration area: a real NexaCloud source database and a fake Stripe."""

from __future__ import annotations

import os

import pytest

from migration.testing.fake_stripe import FakeStripe
from migration.testing.source_db import (
    admin_dsn_from_database_url,
    create_source_database,
    drop_source_database,
    load_fixture_rows,
)


@pytest.fixture(scope="session")
def source_admin_dsn() -> str:
    return admin_dsn_from_database_url(os.environ.get("DATABASE_URL"))


@pytest.fixture(scope="session")
def nexacloud_dsn(source_admin_dsn):
    """DSN of a real PostgreSQL database built from schema.sql with the fixture rows
    (good rows plus one of each bad kind). Tests only read it."""
    name = f"nc_src_test_{os.getpid()}"
    dsn = create_source_database(name, source_admin_dsn)
    load_fixture_rows(dsn)
    yield dsn
    drop_source_database(name, source_admin_dsn)


@pytest.fixture
def empty_source_dsn(source_admin_dsn):
    """A source database with the schema and no rows (tests may alter it)."""
    name = f"nc_src_empty_{os.getpid()}"
    dsn = create_source_database(name, source_admin_dsn)
    yield dsn
    drop_source_database(name, source_admin_dsn)


@pytest.fixture
def fake_stripe():
    with FakeStripe(api_key="sk_test_fusion") as fake:
        yield fake
