"""Read-only reader of NexaCloud's billing tables (``migration/contract/schema.sql``).

The reader never writes: it opens one ``READ ONLY`` ``REPEATABLE READ``
transaction (so every table is read from the same snapshot) and streams each
table through a server-side (named) cursor, so memory stays bounded however
large ``usage_hourly`` is. Rows come back as small typed objects (``Decimal``
money, timezone-aware datetimes, ``date`` periods, ids as strings).

Every failure a user can hit becomes one of three exceptions with a message
that names the problem (and never the password in the DSN):
``SourceUnavailable``, ``SourceSchemaMismatch``, ``SourceQueryFailed``.

This module is plain psycopg 3: it imports nothing from Django, so the writer
(``migration.writer``) can be tested without a source database and this reader
without Django.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, TypeVar

import psycopg
from psycopg import sql

from billing_kit.dsn import redact_dsn as _redact_dsn

DEFAULT_CHUNK_SIZE = 5000
CONNECT_TIMEOUT_SECONDS = 10


class SourceError(Exception):
    """Base class: any problem reading the NexaCloud source."""


class SourceUnavailable(SourceError):
    """The source database cannot be reached or refused the connection."""


class SourceSchemaMismatch(SourceError):
    """A table or column of the contract is missing from the source."""

    def __init__(self, missing: list[str]):
        self.missing = missing
        super().__init__(
            "NexaCloud source does not match schema.sql; missing: " + ", ".join(missing)
        )


class SourceQueryFailed(SourceError):
    """A query against the source failed after connecting."""


@dataclass(frozen=True, slots=True)
class SourceUser:
    id: str
    email: str
    full_name: str | None
    company: str | None
    stripe_customer_id: str | None
    created_at: datetime
    deleted_at: datetime | None


@dataclass(frozen=True, slots=True)
class SourcePlan:
    id: int
    code: str
    name: str
    price_monthly: Decimal | None
    price_yearly: Decimal | None
    cpu_seconds_quota: int
    currency: str
    active: bool


@dataclass(frozen=True, slots=True)
class SourceDeployment:
    id: str
    user_id: str
    plan_id: int
    name: str
    billing_cycle: str
    status: str
    created_at: datetime
    current_period_start: date
    current_period_end: date


@dataclass(frozen=True, slots=True)
class SourceUsageHour:
    deployment_id: str
    hour_start: datetime
    cpu_seconds: int


@dataclass(frozen=True, slots=True)
class SourceBilledPeriod:
    deployment_id: str
    period_start: date
    period_end: date
    flat_amount: Decimal
    cpu_seconds: int
    overage_amount: Decimal
    currency: str


# The contract: table -> columns this importer relies on (schema.sql).
SOURCE_CONTRACT: dict[str, tuple[str, ...]] = {
    "users": ("id", "email", "full_name", "company", "stripe_customer_id", "created_at", "deleted_at"),
    "plans": (
        "id", "code", "name", "price_monthly", "price_yearly",
        "cpu_seconds_quota", "currency", "active",
    ),
    "deployments": (
        "id", "user_id", "plan_id", "name", "billing_cycle", "status",
        "created_at", "current_period_start", "current_period_end",
    ),
    "usage_hourly": ("deployment_id", "hour_start", "cpu_seconds"),
    "billed_periods": (
        "deployment_id", "period_start", "period_end", "flat_amount",
        "cpu_seconds", "overage_amount", "currency",
    ),
}

def redact_dsn(dsn: str) -> str:
    """The DSN, in any of libpq's forms, with its secrets replaced by ``***`` (safe for logs
    and errors; ``billing_kit.dsn``)."""
    return _redact_dsn(dsn, mask="***")


def _describe(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    return message[0] if message else type(exc).__name__


T = TypeVar("T")


def _select(table: str, tail: str = "") -> sql.Composed:
    """SELECT of exactly the contract's columns, in its order: the row builders below
    read them by position, and ``check_schema`` has verified each one exists."""
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, SOURCE_CONTRACT[table])), sql.Identifier(table))
    return query + sql.SQL(" " + tail) if tail else query


def _user(row: tuple) -> SourceUser:
    return SourceUser(
        id=str(row[0]), email=row[1], full_name=row[2], company=row[3],
        stripe_customer_id=row[4], created_at=row[5], deleted_at=row[6],
    )


def _plan(row: tuple) -> SourcePlan:
    return SourcePlan(
        id=row[0], code=row[1], name=row[2], price_monthly=row[3], price_yearly=row[4],
        cpu_seconds_quota=int(row[5]), currency=(row[6] or "CAD").strip(), active=bool(row[7]),
    )


def _deployment(row: tuple) -> SourceDeployment:
    return SourceDeployment(
        id=str(row[0]), user_id=str(row[1]), plan_id=row[2], name=row[3],
        billing_cycle=row[4], status=row[5], created_at=row[6],
        current_period_start=row[7], current_period_end=row[8],
    )


def _usage(row: tuple) -> SourceUsageHour:
    return SourceUsageHour(deployment_id=str(row[0]), hour_start=row[1], cpu_seconds=int(row[2]))


def _billed(row: tuple) -> SourceBilledPeriod:
    return SourceBilledPeriod(
        deployment_id=str(row[0]), period_start=row[1], period_end=row[2],
        flat_amount=row[3], cpu_seconds=int(row[4]), overage_amount=row[5],
        currency=(row[6] or "CAD").strip(),
    )


class NexaCloudReader:
    """Streams NexaCloud's tables out of one read-only snapshot.

    Use as a context manager::

        with NexaCloudReader(dsn) as reader:
            for user in reader.users():
                ...

    ``dsn`` defaults to the ``NEXACLOUD_DSN`` environment variable.
    """

    def __init__(self, dsn: str | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE):
        dsn = dsn if dsn is not None else os.environ.get("NEXACLOUD_DSN", "")
        if not dsn:
            raise SourceUnavailable(
                "No NexaCloud source configured: set NEXACLOUD_DSN or pass --dsn."
            )
        self.dsn = dsn
        self.chunk_size = chunk_size
        self._conn: psycopg.Connection | None = None
        self._cursor_seq = 0

    # -- connection ---------------------------------------------------------------
    def open(self) -> "NexaCloudReader":
        try:
            conn = psycopg.connect(
                self.dsn,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                # Belt and braces: the session default AND the transaction are read-only.
                options="-c default_transaction_read_only=on",
                application_name="fusion-billing-import",
            )
        except psycopg.Error as exc:
            raise SourceUnavailable(
                f"Cannot connect to the NexaCloud source ({redact_dsn(self.dsn)}): {_describe(exc)}"
            ) from None
        except Exception as exc:  # e.g. a malformed DSN (ProgrammingError is a psycopg.Error)
            raise SourceUnavailable(
                f"Invalid NexaCloud DSN ({redact_dsn(self.dsn)}): {_describe(exc)}"
            ) from None
        conn.read_only = True
        # One snapshot for every table: users, deployments and usage agree.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self._conn = conn
        self.check_schema()
        return self

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.rollback()  # nothing to commit, ever
            finally:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "NexaCloudReader":
        return self.open()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def connection(self) -> psycopg.Connection:
        if self._conn is None:
            raise SourceUnavailable("The NexaCloud reader is not open.")
        return self._conn

    # -- schema ---------------------------------------------------------------------
    def check_schema(self) -> None:
        """Raise ``SourceSchemaMismatch`` naming every missing table or column."""
        rows = self._fetchall(
            # pg_catalog, not information_schema: the latter hides columns the
            # role may not read, which would be reported as "missing".
            "SELECT c.relname, a.attname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
            " WHERE n.nspname = ANY(current_schemas(false)) AND c.relname = ANY(%s)"
            " AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            (list(SOURCE_CONTRACT),),
        )
        present: dict[str, set[str]] = {}
        for table, column in rows:
            present.setdefault(table, set()).add(column)
        missing: list[str] = []
        for table, columns in SOURCE_CONTRACT.items():
            if table not in present:
                missing.append(f"table {table}")
                continue
            missing.extend(f"column {table}.{c}" for c in columns if c not in present[table])
        if missing:
            raise SourceSchemaMismatch(missing)

    # -- queries --------------------------------------------------------------------
    def _fetchall(self, query: sql.Composed | str, params: tuple = ()) -> list[tuple]:
        try:
            with self.connection.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()
        except psycopg.OperationalError as exc:
            raise SourceUnavailable(f"Lost the NexaCloud source: {_describe(exc)}") from None
        except psycopg.Error as exc:
            raise SourceQueryFailed(f"NexaCloud query failed: {_describe(exc)}") from None

    def _stream(self, label: str, query: sql.Composed, params: tuple, build: Callable[[tuple], T]) -> Iterator[T]:
        """Stream ``query`` through a server-side cursor, ``chunk_size`` rows at a time."""
        self._cursor_seq += 1
        name = f"fb_import_{label}_{self._cursor_seq}"
        try:
            with self.connection.cursor(name=name) as cur:
                cur.itersize = self.chunk_size
                cur.execute(query, params)
                while True:
                    chunk = cur.fetchmany(self.chunk_size)
                    if not chunk:
                        break
                    for row in chunk:
                        yield build(row)
        except psycopg.OperationalError as exc:
            raise SourceUnavailable(f"Lost the NexaCloud source reading {label}: {_describe(exc)}") from None
        except psycopg.Error as exc:
            raise SourceQueryFailed(f"NexaCloud query on {label} failed: {_describe(exc)}") from None

    def count(self, table: str) -> int:
        if table not in SOURCE_CONTRACT:
            raise ValueError(f"not a source table: {table}")
        ((n,),) = self._fetchall(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        return int(n)

    def users(self) -> Iterator[SourceUser]:
        """Every user, deleted ones included (the writer counts them as skipped)."""
        return self._stream("users", _select("users", "ORDER BY created_at, id"), (), _user)

    def plans(self) -> Iterator[SourcePlan]:
        return self._stream("plans", _select("plans", "ORDER BY id"), (), _plan)

    def deployments(self) -> Iterator[SourceDeployment]:
        return self._stream("deployments", _select("deployments", "ORDER BY created_at, id"), (), _deployment)

    def usage_hours(self, *, before: datetime | None = None) -> Iterator[SourceUsageHour]:
        """Hourly counters, optionally only hours that started before ``before``.

        Not ordered: ordering 1M rows costs the source a sort for nothing (the
        writer inserts set-based with ON CONFLICT DO NOTHING).
        """
        if before is None:
            return self._stream("usage_hourly", _select("usage_hourly"), (), _usage)
        return self._stream("usage_hourly", _select("usage_hourly", "WHERE hour_start < %s"), (before,), _usage)

    def billed_periods(self, *, period_start: date | None = None) -> Iterator[SourceBilledPeriod]:
        if period_start is None:
            return self._stream("billed_periods", _select("billed_periods", "ORDER BY period_start, deployment_id"),
                                (), _billed)
        return self._stream("billed_periods",
                            _select("billed_periods", "WHERE period_start = %s ORDER BY deployment_id"),
                            (period_start,), _billed)

