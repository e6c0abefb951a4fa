"""Fast, framework-free parsing and validation of Lago usage events.

This is the hot path of ingestion, so it does not use DRF serializers: the body is
decoded once by msgspec (JSON floats become ``Decimal`` so that timestamps such as
``1700000000.123`` and property values keep every digit), then each event is checked
by plain functions that collect *all* problems as Lago ``error_details`` codes.

Nothing here touches the database: metric/subscription checks happen in
``metering.services`` on the normalised events this module returns.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from billing_kit.errors import ErrorCode

# PostgreSQL's numeric (and so jsonb) holds at most 131072 digits before the decimal point
# and 16383 after it: a JSON number outside that would fail the insert (a 500), so it is
# refused as malformed when the body is decoded.
_PG_NUMERIC_MAX_ADJUSTED = 131071
_PG_NUMERIC_MIN_EXPONENT = -16383


def _bounded_decimal(text: str) -> Decimal:
    value = Decimal(text)
    exponent = value.as_tuple().exponent
    if value and (value.adjusted() > _PG_NUMERIC_MAX_ADJUSTED
                  or (isinstance(exponent, int) and exponent < _PG_NUMERIC_MIN_EXPONENT)):
        raise ValueError(f"number out of range: {text[:32]}")
    return value


# JSON floats are decoded as Decimal: exact timestamps and exact property values.
_json_decoder = msgspec.json.Decoder(float_hook=_bounded_decimal)
# Canonical JSON: sorted keys, Decimals written back as the numbers they were.
_canonical_encoder = msgspec.json.Encoder(order="sorted", decimal_format="number")

MAX_IDENTIFIER_LENGTH = 255
MAX_CODE_LENGTH = 255
# Unix seconds; year 10000 is the datetime ceiling.
_MAX_TIMESTAMP = Decimal(253402300799)
_MIN_TIMESTAMP = Decimal(0)
# Numeric strings as Lago's BigDecimal accepts them, but no whitespace, underscores,
# NaN or Infinity (Python's Decimal() would accept those).
_NUMERIC_STRING = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# precise_total_amount_cents is Decimal(40, 15) in Lago.
_PRECISE_AMOUNT_MAX_INTEGER_DIGITS = 25
_PRECISE_AMOUNT_MAX_FRACTION_DIGITS = 15


class MalformedJSON(ValueError):
    """The request body is not JSON at all (→ 400)."""


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """One syntactically valid event, normalised and ready to be resolved and stored."""

    transaction_id: str
    external_subscription_id: str
    code: str
    timestamp: datetime
    properties: dict[str, Any]
    properties_json: bytes
    precise_total_amount_cents: Decimal | None
    payload_hash: str


def decode_json_body(body: bytes) -> Any:
    """Decode a request body; floats become Decimal. Raises MalformedJSON."""
    try:
        return _json_decoder.decode(body)
    except (msgspec.DecodeError, ValueError) as exc:  # ValueError: invalid Decimal
        raise MalformedJSON(str(exc)) from exc


def canonical_json(value: Any) -> bytes:
    return _canonical_encoder.encode(value)


def parse_numeric(value: Any) -> Decimal | None:
    """A JSON number or a numeric string as Decimal; None when it is neither.

    Booleans are not numbers here even though Python says ``True == 1``.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str) and _NUMERIC_STRING.match(value):
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover - the regex already filtered
            return None
    return None


def timestamp_from_unix_seconds(seconds: Decimal) -> datetime:
    """Exact conversion (microsecond precision, truncated) without a float detour."""
    whole = int(seconds.to_integral_value(rounding="ROUND_FLOOR"))
    micros = int(((seconds - whole) * 1_000_000).to_integral_value(rounding="ROUND_FLOOR"))
    return _EPOCH + timedelta(seconds=whole, microseconds=micros)


def parse_timestamp(value: Any, *, received_at: datetime) -> tuple[datetime | None, str | None]:
    """Lago timestamp rules: Unix seconds as int, float or numeric string; null = now.

    Returns ``(timestamp, error_code)``; ISO-8601 strings are ``invalid_format``.
    """
    if value is None:
        return received_at, None
    seconds = parse_numeric(value)
    if seconds is None or not (_MIN_TIMESTAMP <= seconds <= _MAX_TIMESTAMP):
        return None, ErrorCode.INVALID_FORMAT
    return timestamp_from_unix_seconds(seconds), None


def parse_precise_amount(value: Any) -> tuple[Decimal | None, str | None]:
    if value is None:
        return None, None
    amount = parse_numeric(value)
    if amount is None:
        return None, ErrorCode.INVALID_FORMAT
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)
    fraction_digits = max(0, -exponent)
    integer_digits = max(0, len(digits) + exponent)
    if (
        integer_digits > _PRECISE_AMOUNT_MAX_INTEGER_DIGITS
        or fraction_digits > _PRECISE_AMOUNT_MAX_FRACTION_DIGITS
    ):
        return None, ErrorCode.VALUE_IS_OUT_OF_RANGE
    return amount, None


def canonical_decimal(value: Decimal) -> str:
    """``1.50``, ``1.5`` and ``15E-1`` are the same amount: one spelling for hashing."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _identifier_error(value: Any, max_length: int) -> str | None:
    if value is None or value == "":
        return ErrorCode.VALUE_IS_MANDATORY
    if not isinstance(value, str):
        return ErrorCode.VALUE_IS_INVALID
    if len(value) > max_length:
        return ErrorCode.VALUE_IS_OUT_OF_RANGE
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        return ErrorCode.VALUE_IS_INVALID
    return None


def event_payload_hash(
    *,
    code: str,
    timestamp: datetime | None,
    properties: dict[str, Any],
    precise_total_amount_cents: Decimal | None,
) -> str:
    """Fingerprint of what an event *says*, for "identical resend" detection.

    ``timestamp`` is the instant the client sent (None when it sent null, so that a
    retried null-timestamp event is still identical even though "now" has moved).
    The unique key (service, external_subscription_id, transaction_id) is not part of
    it: the hash is compared only among events that already share that key.
    """
    timestamp_micros = (
        None if timestamp is None else (timestamp - _EPOCH) // timedelta(microseconds=1)
    )
    material = [
        code,
        timestamp_micros,
        None if precise_total_amount_cents is None else canonical_decimal(precise_total_amount_cents),
        properties,
    ]
    return hashlib.sha256(canonical_json(material)).hexdigest()


def validate_event(
    raw: Any, *, received_at: datetime
) -> tuple[ParsedEvent | None, dict[str, list[str]]]:
    """Validate one decoded event object. Returns the event or Lago error_details."""
    if not isinstance(raw, dict):
        return None, {"event": [ErrorCode.VALUE_IS_INVALID]}
    errors: dict[str, list[str]] = {}

    transaction_id = raw.get("transaction_id")
    if error := _identifier_error(transaction_id, MAX_IDENTIFIER_LENGTH):
        errors["transaction_id"] = [error]
    external_subscription_id = raw.get("external_subscription_id")
    if error := _identifier_error(external_subscription_id, MAX_IDENTIFIER_LENGTH):
        errors["external_subscription_id"] = [error]
    code = raw.get("code")
    if error := _identifier_error(code, MAX_CODE_LENGTH):
        errors["code"] = [error]

    sent_timestamp = raw.get("timestamp")
    timestamp, error = parse_timestamp(sent_timestamp, received_at=received_at)
    if error:
        errors["timestamp"] = [error]

    precise_amount, error = parse_precise_amount(raw.get("precise_total_amount_cents"))
    if error:
        errors["precise_total_amount_cents"] = [error]

    properties = raw.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        errors["properties"] = [ErrorCode.VALUE_IS_INVALID]

    properties_json = canonical_json(properties) if "properties" not in errors else b""
    if b"\\u0000" in properties_json:  # jsonb cannot hold NUL either
        errors["properties"] = [ErrorCode.VALUE_IS_INVALID]
    if errors:
        return None, errors
    # Narrowing only: _identifier_error and parse_timestamp refused everything else.
    assert timestamp is not None
    assert isinstance(transaction_id, str) and isinstance(external_subscription_id, str) and isinstance(code, str)
    payload_hash = event_payload_hash(
        code=code,
        timestamp=None if sent_timestamp is None else timestamp,
        properties=properties,
        precise_total_amount_cents=precise_amount,
    )
    return (
        ParsedEvent(
            transaction_id=transaction_id,
            external_subscription_id=external_subscription_id,
            code=code,
            timestamp=timestamp,
            properties=properties,
            properties_json=properties_json,
            precise_total_amount_cents=precise_amount,
            payload_hash=payload_hash,
        ),
        {},
    )


def validate_event_batch(
    raw_events: Any, *, received_at: datetime, max_events: int
) -> tuple[list[tuple[int, ParsedEvent]], dict[str, Any]]:
    """Validate a batch; errors are keyed by the string index of the offending event.

    Returns ``[(index_in_request, event), ...]`` and the errors. The whole-batch errors (``no_events``, ``too_many_events``, not a list) come back
    under the key ``events``. Within one batch, a repeated (subscription,
    transaction_id) with an identical payload is folded into the first occurrence;
    with a different payload the later occurrence is ``value_already_exist``.
    """
    if not isinstance(raw_events, list):
        return [], {"events": [ErrorCode.VALUE_IS_INVALID]}
    if not raw_events:
        return [], {"events": [ErrorCode.NO_EVENTS]}
    if len(raw_events) > max_events:
        return [], {"events": [ErrorCode.TOO_MANY_EVENTS]}

    parsed: list[tuple[int, ParsedEvent]] = []
    errors: dict[str, Any] = {}
    first_seen: dict[tuple[str, str], ParsedEvent] = {}
    for index, raw in enumerate(raw_events):
        event, event_errors = validate_event(raw, received_at=received_at)
        if event_errors:
            errors[str(index)] = event_errors
            continue
        assert event is not None
        key = (event.external_subscription_id, event.transaction_id)
        earlier = first_seen.get(key)
        if earlier is None:
            first_seen[key] = event
            parsed.append((index, event))
        elif earlier.payload_hash != event.payload_hash:
            errors[str(index)] = {"transaction_id": [ErrorCode.VALUE_ALREADY_EXIST]}
    return parsed, errors


def numeric_property_error(
    *, aggregation_type: str, field_name: str | None, properties: dict[str, Any]
) -> dict[str, list[str]] | None:
    """The metric's value must be present (and numeric where it is summed/compared).

    ``count_agg`` needs no value; ``unique_count_agg`` needs one of any type.
    """
    if aggregation_type == "count_agg" or not field_name:
        return None
    value = properties.get(field_name)
    if value is None or value == "":
        return {field_name: [ErrorCode.VALUE_IS_MANDATORY]}
    if aggregation_type == "unique_count_agg":
        return None
    if parse_numeric(value) is None:
        return {field_name: [ErrorCode.VALUE_IS_INVALID]}
    return None
