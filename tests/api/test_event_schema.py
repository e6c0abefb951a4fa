"""Pure tests of the hot-path event parser (no database, no HTTP)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.event_schema import (
    MalformedJSON,
    decode_json_body,
    numeric_property_error,
    parse_timestamp,
    validate_event,
    validate_event_batch,
)

NOW = datetime(2026, 11, 22, 3, 0, 0, tzinfo=UTC)


def event(**overrides):
    base = {
        "transaction_id": "tx_1",
        "external_subscription_id": "sub_1",
        "code": "cpu_seconds",
        "timestamp": "1700000000",
        "precise_total_amount_cents": None,
        "properties": {"cpu_seconds": 12},
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    "sent, expected",
    [
        (1700000000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("1700000000.5", datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)),
        (Decimal("1700000000.123"), datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)),
        (None, NOW),
    ],
)
def test_lago_timestamps_are_unix_seconds(sent, expected):
    assert parse_timestamp(sent, received_at=NOW) == (expected, None)


@pytest.mark.parametrize(
    "sent",
    ["2023-11-14T22:13:20Z", "2023-11-14", "", " 1700000000", "1_700_000_000", "NaN", "Infinity",
     True, {"t": 1}, [1], -5, "99999999999999"],
)
def test_iso_and_garbage_timestamps_are_invalid_format(sent):
    assert parse_timestamp(sent, received_at=NOW) == (None, "invalid_format")


def test_float_timestamp_from_json_keeps_milliseconds_exactly():
    body = b'{"event": {"timestamp": 1700000000.123}}'
    ts, _ = parse_timestamp(decode_json_body(body)["event"]["timestamp"], received_at=NOW)
    assert ts.microsecond == 123000


@given(st.integers(min_value=0, max_value=253402300798), st.integers(min_value=0, max_value=999999))
def test_timestamp_string_round_trips_to_the_microsecond(seconds, micros):
    sent = f"{seconds}.{micros:06d}"
    ts, error = parse_timestamp(sent, received_at=NOW)
    assert error is None
    assert ts == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=micros)


def test_malformed_json_is_reported():
    with pytest.raises(MalformedJSON):
        decode_json_body(b'{"event": ')
    with pytest.raises(MalformedJSON):
        decode_json_body(b"")


def test_valid_event_is_normalised():
    parsed, errors = validate_event(event(precise_total_amount_cents="12.50"), received_at=NOW)
    assert errors == {}
    assert parsed.transaction_id == "tx_1"
    assert parsed.timestamp == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert parsed.precise_total_amount_cents == Decimal("12.50")
    assert parsed.properties_json == b'{"cpu_seconds":12}'


def test_null_properties_become_an_empty_object():
    parsed, errors = validate_event(event(properties=None), received_at=NOW)
    assert errors == {} and parsed.properties == {}


def test_every_problem_is_reported_at_once():
    parsed, errors = validate_event(
        {"transaction_id": "", "code": 7, "timestamp": "2024-01-01T00:00:00Z",
         "properties": [1], "precise_total_amount_cents": "abc"},
        received_at=NOW,
    )
    assert parsed is None
    assert errors == {
        "transaction_id": ["value_is_mandatory"],
        "external_subscription_id": ["value_is_mandatory"],
        "code": ["value_is_invalid"],
        "timestamp": ["invalid_format"],
        "properties": ["value_is_invalid"],
        "precise_total_amount_cents": ["invalid_format"],
    }


def test_precise_amount_respects_lago_precision():
    _, errors = validate_event(event(precise_total_amount_cents="1." + "1" * 16), received_at=NOW)
    assert errors == {"precise_total_amount_cents": ["value_is_out_of_range"]}


def test_payload_hash_ignores_spelling_but_not_content():
    a, _ = validate_event(event(timestamp="1700000000", properties={"a": 1, "b": 2}), received_at=NOW)
    b, _ = validate_event(event(timestamp=1700000000, properties={"b": 2, "a": 1}), received_at=NOW)
    c, _ = validate_event(event(timestamp=1700000001, properties={"b": 2, "a": 1}), received_at=NOW)
    d, _ = validate_event(event(properties={"a": 1, "b": 3}), received_at=NOW)
    assert a.payload_hash == b.payload_hash
    assert len({a.payload_hash, c.payload_hash, d.payload_hash}) == 3


def test_null_timestamp_resend_is_identical_although_now_moved():
    later = datetime(2026, 11, 22, 3, 5, tzinfo=UTC)
    a, _ = validate_event(event(timestamp=None), received_at=NOW)
    b, _ = validate_event(event(timestamp=None), received_at=later)
    assert a.payload_hash == b.payload_hash and a.timestamp != b.timestamp
    explicit, _ = validate_event(event(timestamp=str(int(NOW.timestamp()))), received_at=NOW)
    assert explicit.payload_hash != a.payload_hash


def test_batch_errors_are_keyed_by_string_index():
    events, errors = validate_event_batch(
        [event(), event(transaction_id="tx_2", timestamp="yesterday"), event(transaction_id=None)],
        received_at=NOW, max_events=100,
    )
    assert errors == {"1": {"timestamp": ["invalid_format"]}, "2": {"transaction_id": ["value_is_mandatory"]}}


@pytest.mark.parametrize(
    "payload, expected",
    [([], {"events": ["no_events"]}), ([{}] * 4, {"events": ["too_many_events"]}),
     ({"a": 1}, {"events": ["value_is_invalid"]})],
)
def test_batch_shape_errors(payload, expected):
    assert validate_event_batch(payload, received_at=NOW, max_events=3) == ([], expected)


def test_batch_folds_identical_repeats_and_flags_conflicting_ones():
    events, errors = validate_event_batch(
        [event(), event(), event(properties={"cpu_seconds": 99}), event(external_subscription_id="sub_2")],
        received_at=NOW, max_events=100,
    )
    assert errors == {"2": {"transaction_id": ["value_already_exist"]}}
    assert [(i, e.external_subscription_id, e.transaction_id) for i, e in events] == [
        (0, "sub_1", "tx_1"), (3, "sub_2", "tx_1")]


@pytest.mark.parametrize(
    "aggregation, properties, expected",
    [
        ("count_agg", {}, None),
        ("sum_agg", {"n": "12.5"}, None),
        ("sum_agg", {"n": Decimal("0.1")}, None),
        ("sum_agg", {}, {"n": ["value_is_mandatory"]}),
        ("max_agg", {"n": "lots"}, {"n": ["value_is_invalid"]}),
        ("sum_agg", {"n": True}, {"n": ["value_is_invalid"]}),
        ("unique_count_agg", {"n": "user-1"}, None),
        ("unique_count_agg", {}, {"n": ["value_is_mandatory"]}),
    ],
)
def test_metric_value_checks(aggregation, properties, expected):
    assert numeric_property_error(aggregation_type=aggregation, field_name="n", properties=properties) == expected


def test_event_lago_id_is_the_uuid5_of_its_unique_key():
    import uuid

    from metering.renderers import EVENT_ID_NAMESPACE, event_lago_id

    for service_id, subscription, transaction in [(1, "sub_1", "tx"), (42, "s/é", "t\x01"), (7, "", "")]:
        expected = uuid.uuid5(EVENT_ID_NAMESPACE, f"{service_id}\0{subscription}\0{transaction}")
        assert event_lago_id(service_id=service_id, external_subscription_id=subscription,
                             transaction_id=transaction) == str(expected)
