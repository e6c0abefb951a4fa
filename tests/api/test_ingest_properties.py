"""Property test of ingest idempotency: whatever the sequence of batches and resends,
each (subscription, transaction_id) is stored once, with the first accepted payload, and a
batch containing a conflicting payload stores nothing."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering import services
from metering.event_schema import validate_event_batch
from metering.models import Subscription, UsageEvent, UsageEventKey

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC)
event_refs = st.tuples(st.sampled_from(["sub_1", "sub_2"]), st.integers(0, 5), st.integers(0, 1))
batches = st.lists(st.lists(event_refs, min_size=1, max_size=6), min_size=1, max_size=8)


def as_event(subscription: str, tx: int, variant: int) -> dict:
    return {"transaction_id": f"tx{tx}", "external_subscription_id": subscription, "code": "cpu_seconds",
            "timestamp": None, "properties": {"cpu_seconds": 10 + variant}}


def test_any_sequence_of_batches_stores_each_event_once(api_client, subscription, service):
    from tests.api.conftest import create_subscription

    create_subscription(api_client, external_id="sub_2")
    assert Subscription.objects.count() == 2

    @settings(max_examples=60, suppress_health_check=list(HealthCheck), deadline=None)
    @given(sequence=batches)
    def check(sequence):
        UsageEvent.objects.all().delete()
        UsageEventKey.objects.all().delete()  # the keys hold the uniqueness rule
        model: dict[tuple[str, str], int] = {}
        for batch in sequence:
            parsed, errors = validate_event_batch([as_event(*ref) for ref in batch], received_at=NOW,
                                                  max_events=100)
            in_batch = {}
            conflict = bool(errors)
            for sub, tx, variant in batch:
                key = (sub, f"tx{tx}")
                known = model.get(key, in_batch.get(key))
                if known is not None and known != variant:
                    conflict = True
                in_batch.setdefault(key, variant)
            try:
                services.ingest_events(service=service, events=parsed,
                                       errors={int(i): d for i, d in errors.items()})
                accepted = True
            except services.EventsRejected:
                accepted = False
            assert accepted == (not conflict)
            if accepted:
                for key, variant in in_batch.items():
                    model.setdefault(key, variant)
        stored = {(e.external_subscription_id, e.transaction_id): int(e.value) - 10 for e in UsageEvent.objects.all()}
        assert stored == model

    check()
