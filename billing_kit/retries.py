"""Re-running a whole transaction that lost a race to a concurrent one.

PostgreSQL resolves two transactions that wait on each other by aborting one of them
(``deadlock_detected``, often only at COMMIT, when deferred foreign keys take their
locks) and refuses a write that would duplicate a row another transaction just
committed (a unique violation). Neither is the client's fault, and both are decided
once the other transaction has finished: running the whole unit of work again sees
its result. Inside an outer transaction the unit of work is a savepoint, which
PostgreSQL rolls back alone (the outer transaction's earlier locks stay held).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import IntegrityError, OperationalError, transaction

T = TypeVar("T")

# SQLSTATEs of a transaction aborted only because of another one.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


def lost_a_race(error: BaseException) -> bool:
    if isinstance(error, IntegrityError):
        return True
    return getattr(error.__cause__, "sqlstate", None) in RETRYABLE_SQLSTATES


def atomic_with_retries(work: Callable[[], T], *, attempts: int = 5) -> T:
    """``work()`` in its own transaction, re-run (up to ``attempts`` times in all) when it
    lost a race: a unique violation, a deadlock or a serialization failure."""
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                return work()
        except (IntegrityError, OperationalError) as error:
            if attempt == attempts or not lost_a_race(error):
                raise
    raise AssertionError("unreachable")
