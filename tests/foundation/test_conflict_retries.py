"""billing_kit.retries on a real PostgreSQL: a transaction that lost a race runs again."""
import threading

import pytest
from django.db import IntegrityError, connection

from billing_kit.retries import atomic_with_retries
from identity.models import Service


@pytest.mark.django_db(transaction=True)
def test_a_deadlock_victim_runs_again_and_both_transactions_commit():
    first = Service.objects.create(code="first", name="First")
    second = Service.objects.create(code="second", name="Second")
    both_hold_one_lock = threading.Barrier(2, timeout=10)
    attempts: dict[str, int] = {"forward": 0, "backward": 0}
    errors: list[BaseException] = []

    def lock_in_order(name: str, order: list[Service]) -> None:
        def work() -> None:
            attempts[name] += 1
            Service.objects.select_for_update().get(pk=order[0].pk)
            if attempts[name] == 1:  # only the first attempts meet: they deadlock
                both_hold_one_lock.wait()
            Service.objects.select_for_update().get(pk=order[1].pk)
            Service.objects.filter(pk=order[1].pk).update(name=f"{order[1].name} by {name}")

        try:
            atomic_with_retries(work)
        except BaseException as error:  # reported to the test thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=lock_in_order, args=("forward", [first, second])),
               threading.Thread(target=lock_in_order, args=("backward", [second, first]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    # PostgreSQL aborted exactly one of them; it ran again after the other committed.
    assert sorted(attempts.values()) == [1, 2]
    assert Service.objects.get(pk=second.pk).name == "Second by forward"
    assert Service.objects.get(pk=first.pk).name == "First by backward"


@pytest.mark.django_db(transaction=True)
def test_a_unique_violation_is_retried_and_a_lasting_one_raised_after_the_last_attempt():
    Service.objects.create(code="taken", name="Elsewhere")
    calls = []

    def duplicate() -> None:
        calls.append(1)
        Service.objects.create(code="taken", name="Again")

    with pytest.raises(IntegrityError):
        atomic_with_retries(duplicate, attempts=3)
    assert len(calls) == 3


@pytest.mark.django_db(transaction=True)
def test_an_error_that_is_not_a_race_is_not_retried():
    calls = []

    def broken() -> None:
        calls.append(1)
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    with pytest.raises(Exception):
        atomic_with_retries(broken)
    assert calls == [1]
