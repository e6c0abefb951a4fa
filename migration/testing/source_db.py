"""Build real NexaCloud source databases for tests and the benchmark.

``create_source_database("nc_src_x", admin_dsn)`` creates a PostgreSQL database,
loads ``migration/contract/schema.sql`` into it and returns its DSN; ``drop_source_database``
removes it. ``generate_source_data`` fills one with synthetic users,
deployments, hourly usage and billed periods through ``COPY`` (fast, bounded
memory). Only names starting with ``nc_src_`` are accepted, so a typo can't
drop somebody else's database.
"""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# NexaCloud's source contract, kept in the repository (the reader's SOURCE_CONTRACT
# names the columns it relies on; tests check both agree).
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "contract" / "schema.sql"
RATE_PER_CORE_HOUR = Decimal("0.0075")
SECONDS_PER_HOUR = 3600


def schema_sql() -> str:
    return SCHEMA_PATH.read_text()


def admin_dsn_from_database_url(database_url: str | None = None) -> str:
    """The ``postgres`` maintenance database on the server of DATABASE_URL."""
    url = database_url or os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    params = conninfo_to_dict(url)
    params["dbname"] = "postgres"
    return make_conninfo(**params)


def dsn_for(admin_dsn: str, name: str) -> str:
    params = conninfo_to_dict(admin_dsn)
    params["dbname"] = name
    return make_conninfo(**params)


def _check_name(name: str) -> None:
    if not name.startswith("nc_src_") or not name.replace("_", "").isalnum():
        raise ValueError(f"source database names must look like nc_src_<something>, not {name!r}")


def drop_source_database(name: str, admin_dsn: str) -> None:
    _check_name(name)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def create_source_database(name: str, admin_dsn: str) -> str:
    """(Re)create ``name`` with NexaCloud's schema; returns its DSN."""
    drop_source_database(name, admin_dsn)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = dsn_for(admin_dsn, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(schema_sql())
    return dsn


def overage_amount(*, cpu_seconds: int, quota: int) -> Decimal:
    """NexaCloud's own formula, kept at 4 dp (schema.sql)."""
    over = max(0, cpu_seconds - quota)
    return (Decimal(over) / SECONDS_PER_HOUR * RATE_PER_CORE_HOUR).quantize(Decimal("0.0001"), ROUND_HALF_UP)


def month_start(d: date) -> date:
    return d.replace(day=1)


def add_month(d: date) -> date:
    return (d.replace(day=28) + timedelta(days=4)).replace(day=1)


@dataclass(frozen=True)
class GeneratedSizes:
    users: int
    deployments: int
    usage_rows: int
    billed_periods: int


# (code, name, price_monthly, price_yearly, cpu_seconds_quota)
BENCH_PLANS = (
    ("nc-starter", "Starter", Decimal("12.00"), Decimal("120.00"), 360_000),
    ("nc-pro", "Pro", Decimal("49.00"), Decimal("490.00"), 3_600_000),
    ("nc-scale", "Scale", Decimal("199.00"), None, 36_000_000),
)


def generate_source_data(
    dsn: str, *, users: int, deployments: int, usage_rows: int, today: date | None = None, seed: int = 7
) -> GeneratedSizes:
    """Fill a fresh source DB: every deployment is monthly and active; its usage
    falls in the last closed month, and billed_periods holds NexaCloud's bill for
    that month computed with NexaCloud's formula (so reconciliation matches)."""
    rng = random.Random(seed)
    today = today or datetime.now(timezone.utc).date()
    current_start = month_start(today)
    current_end = add_month(current_start)
    closed_start = month_start(current_start - timedelta(days=1))
    closed_hours = int((current_start - closed_start).days) * 24
    per_deployment = max(1, usage_rows // max(1, deployments))
    per_deployment = min(per_deployment, closed_hours)
    created = datetime.combine(closed_start, datetime.min.time(), tzinfo=timezone.utc) - timedelta(days=30)

    user_ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(users)]
    plan_rows = [(i + 1, *p) for i, p in enumerate(BENCH_PLANS)]
    deployment_rows: list[tuple[uuid.UUID, uuid.UUID, int]] = []
    for i in range(deployments):
        deployment_rows.append((uuid.UUID(int=rng.getrandbits(128), version=4), user_ids[i % users], rng.randint(1, len(plan_rows))))

    usage_written = 0
    billed = 0
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            with cur.copy("COPY users (id, email, full_name, company, stripe_customer_id, created_at) FROM STDIN") as copy:
                for i, uid in enumerate(user_ids):
                    copy.write_row((uid, f"user{i}@example.com", f"User {i}", None if i % 3 else f"Company {i}",
                                    f"cus_bench{i}" if i % 2 == 0 else None, created))
            with cur.copy("COPY plans (id, code, name, price_monthly, price_yearly, cpu_seconds_quota) FROM STDIN") as copy:
                for row in plan_rows:
                    copy.write_row(row)
            cur.execute("SELECT setval('plans_id_seq', %s)", (len(plan_rows),))
            with cur.copy(
                "COPY deployments (id, user_id, plan_id, name, billing_cycle, status, created_at,"
                " current_period_start, current_period_end) FROM STDIN"
            ) as copy:
                for i, (did, uid, plan_id) in enumerate(deployment_rows):
                    copy.write_row((did, uid, plan_id, f"app-{i}", "monthly", "active", created, current_start, current_end))
            quotas = {row[0]: row[5] for row in plan_rows}
            prices = {row[0]: row[3] for row in plan_rows}
            totals: list[int] = []
            base = datetime.combine(closed_start, datetime.min.time(), tzinfo=timezone.utc)
            with cur.copy("COPY usage_hourly (deployment_id, hour_start, cpu_seconds) FROM STDIN") as copy:
                for did, _uid, _plan in deployment_rows:
                    first_hour = rng.randint(0, closed_hours - per_deployment)
                    total = 0
                    for h in range(per_deployment):
                        seconds = rng.randint(0, 7200)
                        total += seconds
                        copy.write_row((did, base + timedelta(hours=first_hour + h), seconds))
                    usage_written += per_deployment
                    totals.append(total)
            with cur.copy(
                "COPY billed_periods (deployment_id, period_start, period_end, flat_amount, cpu_seconds, overage_amount)"
                " FROM STDIN"
            ) as copy:
                for (did, _uid, plan_id), total in zip(deployment_rows, totals):
                    copy.write_row((did, closed_start, current_start, prices[plan_id], total,
                                    overage_amount(cpu_seconds=total, quota=quotas[plan_id])))
                    billed += 1
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return GeneratedSizes(users=users, deployments=deployments, usage_rows=usage_written, billed_periods=billed)


# ---------------------------------------------------------------------------------
# The test fixture: good rows and one of each bad kind, with fixed ids.
# ---------------------------------------------------------------------------------
def _u(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _d(n: int) -> str:
    return f"00000000-0000-4000-9000-{n:012d}"


class Fixture:
    """Ids and expectations of ``load_fixture_rows`` (import them in tests)."""

    USER_ALICE = _u(1)
    USER_ALICE_UPPER = _u(2)  # same person, email in another case
    USER_BOB = _u(3)
    USER_DELETED = _u(4)
    USER_CAROL = _u(5)
    USER_MISSING = _u(99)  # referenced by the orphan deployment, never inserted

    DEP_ALICE_STARTER = _d(1)
    DEP_ALICE_PRO = _d(2)  # second deployment of the same customer
    DEP_ALICE_YEARLY = _d(3)  # third, through the upper-case-email account
    DEP_BOB_STARTER = _d(4)
    DEP_BAD_CYCLE = _d(5)  # billing_cycle 'weekly'
    DEP_NULL_PRICE = _d(6)  # yearly on a plan with price_yearly NULL
    DEP_ORPHAN = _d(7)  # user_id points nowhere
    DEP_OF_DELETED_USER = _d(8)
    DEP_DELETED = _d(9)  # status 'deleted'
    DEP_FREE = _d(10)  # a real 0.00 monthly price (not NULL)

    PLAN_STARTER, PLAN_PRO, PLAN_FREE = 1, 2, 3

    CLOSED_START = date(2026, 10, 1)
    CURRENT_START = date(2026, 11, 1)
    CURRENT_END = date(2026, 12, 1)

    GOOD_DEPLOYMENTS = (DEP_ALICE_STARTER, DEP_ALICE_PRO, DEP_ALICE_YEARLY, DEP_BOB_STARTER, DEP_FREE)
    FAILED_DEPLOYMENTS = (DEP_BAD_CYCLE, DEP_NULL_PRICE, DEP_ORPHAN)
    SKIPPED_DEPLOYMENTS = (DEP_OF_DELETED_USER, DEP_DELETED)


def load_fixture_rows(dsn: str) -> None:
    F = Fixture
    ts = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
    users = [
        (F.USER_ALICE, "alice@example.com", "Alice Martin", "Acme Inc.", "cus_alice", ts, None),
        (F.USER_ALICE_UPPER, "ALICE@Example.COM", "Alice M.", None, None, ts, None),
        (F.USER_BOB, "bob@example.com", "Bob Tremblay", None, "cus_bob", ts, None),
        (F.USER_DELETED, "gone@example.com", "Gone User", None, "cus_gone", ts, ts + timedelta(days=3)),
        (F.USER_CAROL, "carol@example.com", "Carol Singh", "Singh Ltd", None, ts, None),
    ]
    plans = [
        (F.PLAN_STARTER, "nc-starter", "Starter", Decimal("12.00"), Decimal("120.00"), 360_000),
        (F.PLAN_PRO, "nc-pro", "Pro", Decimal("49.00"), None, 3_600_000),
        (F.PLAN_FREE, "nc-free", "Free", Decimal("0.00"), None, 36_000),
    ]
    cur_s, cur_e = F.CURRENT_START, F.CURRENT_END
    deployments = [
        (F.DEP_ALICE_STARTER, F.USER_ALICE, F.PLAN_STARTER, "alice-web", "monthly", "active", ts, cur_s, cur_e),
        (F.DEP_ALICE_PRO, F.USER_ALICE, F.PLAN_PRO, "alice-api", "monthly", "active", ts, cur_s, cur_e),
        (F.DEP_ALICE_YEARLY, F.USER_ALICE_UPPER, F.PLAN_STARTER, "alice-blog", "yearly", "active", ts,
         date(2026, 1, 1), date(2027, 1, 1)),
        (F.DEP_BOB_STARTER, F.USER_BOB, F.PLAN_STARTER, "bob-shop", "monthly", "suspended", ts, cur_s, cur_e),
        (F.DEP_BAD_CYCLE, F.USER_BOB, F.PLAN_STARTER, "bob-weekly", "weekly", "active", ts, cur_s, cur_e),
        (F.DEP_NULL_PRICE, F.USER_BOB, F.PLAN_PRO, "bob-pro-yearly", "yearly", "active", ts,
         date(2026, 1, 1), date(2027, 1, 1)),
        (F.DEP_ORPHAN, F.USER_MISSING, F.PLAN_STARTER, "orphan", "monthly", "active", ts, cur_s, cur_e),
        (F.DEP_OF_DELETED_USER, F.USER_DELETED, F.PLAN_STARTER, "gone-app", "monthly", "active", ts, cur_s, cur_e),
        (F.DEP_DELETED, F.USER_CAROL, F.PLAN_STARTER, "carol-old", "monthly", "deleted", ts, cur_s, cur_e),
        (F.DEP_FREE, F.USER_CAROL, F.PLAN_FREE, "carol-free", "monthly", "active", ts, cur_s, cur_e),
    ]
    oct_1 = datetime(2026, 10, 1, tzinfo=timezone.utc)
    nov_1 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    usage: list[tuple] = []
    # Alice starter: 200 hours x 3,600 s in October = 720,000 s, 360,000 over quota.
    usage += [(F.DEP_ALICE_STARTER, oct_1 + timedelta(hours=h), 3600) for h in range(200)]
    # Alice pro: 100 hours x 36,000 s = 3,600,000 s = exactly the quota -> no overage.
    usage += [(F.DEP_ALICE_PRO, oct_1 + timedelta(hours=h), 36_000) for h in range(100)]
    # Bob starter: 400,001 s in October (1 s over a round figure).
    usage += [(F.DEP_BOB_STARTER, oct_1 + timedelta(hours=h), 4000) for h in range(100)] + [
        (F.DEP_BOB_STARTER, oct_1 + timedelta(hours=100), 1)]
    # Open period usage (November) for Alice starter.
    usage += [(F.DEP_ALICE_STARTER, nov_1 + timedelta(hours=h), 1800) for h in range(10)]
    # Usage of rows that are not imported.
    usage += [(F.DEP_ORPHAN, oct_1 + timedelta(hours=h), 100) for h in range(5)]
    usage += [(F.DEP_DELETED, oct_1 + timedelta(hours=h), 100) for h in range(3)]
    closed_s, closed_e = F.CLOSED_START, F.CURRENT_START
    billed = [
        (F.DEP_ALICE_STARTER, closed_s, closed_e, Decimal("12.00"), 720_000,
         overage_amount(cpu_seconds=720_000, quota=360_000)),
        (F.DEP_ALICE_PRO, closed_s, closed_e, Decimal("49.00"), 3_600_000, Decimal("0.0000")),
        (F.DEP_BOB_STARTER, closed_s, closed_e, Decimal("12.00"), 400_001,
         overage_amount(cpu_seconds=400_001, quota=360_000)),
        # NexaCloud billed a deployment Fusion Billing could not import.
        (F.DEP_BAD_CYCLE, closed_s, closed_e, Decimal("12.00"), 0, Decimal("0.0000")),
    ]
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            # The orphan deployment violates the FK: load the way a restored dump does.
            cur.execute("SET session_replication_role = replica")
            cur.executemany(
                "INSERT INTO users (id, email, full_name, company, stripe_customer_id, created_at, deleted_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)", users)
            cur.executemany(
                "INSERT INTO plans (id, code, name, price_monthly, price_yearly, cpu_seconds_quota)"
                " VALUES (%s, %s, %s, %s, %s, %s)", plans)
            cur.executemany(
                "INSERT INTO deployments (id, user_id, plan_id, name, billing_cycle, status, created_at,"
                " current_period_start, current_period_end) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                deployments)
            cur.executemany("INSERT INTO usage_hourly (deployment_id, hour_start, cpu_seconds) VALUES (%s, %s, %s)", usage)
            cur.executemany(
                "INSERT INTO billed_periods (deployment_id, period_start, period_end, flat_amount, cpu_seconds,"
                " overage_amount) VALUES (%s, %s, %s, %s, %s, %s)", billed)
            cur.execute("SET session_replication_role = origin")
        conn.commit()
