"""Webhook secrets and signatures.

Every request carries two independent signatures over the exact body bytes:

* Standard Webhooks v1 (https://www.standardwebhooks.com/): ``webhook-id``,
  ``webhook-timestamp`` and ``webhook-signature: v1,<base64>`` where the HMAC-SHA256
  key is the base64-decoded part of the ``whsec_`` secret and the signed content is
  ``"{id}.{timestamp}.{body}"``. While a rotated-out secret is still valid the header
  lists one signature per secret, space-separated, so receivers on either secret pass.
* Lago-compatible ``X-Lago-Signature``: base64 HMAC-SHA256 of the body, keyed — as
  Lago's own receivers expect (``hmac.new(key.encode(), body, "sha256")``) — by the
  secret string exactly as shown to the integrator. Lago's header has room for a
  single value, so it is always made with the current secret.

This module is pure (no Django) so it can be reused by receivers and tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"
SECRET_RANDOM_BYTES = 32  # Standard Webhooks asks for 24..64 bytes
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
HEADER_LAGO_SIGNATURE = "X-Lago-Signature"
HEADER_LAGO_ALGORITHM = "X-Lago-Signature-Algorithm"
HEADER_LAGO_UNIQUE_KEY = "X-Lago-Unique-Key"


class InvalidSecret(ValueError):
    pass


def generate_secret(*, random_bytes: int = SECRET_RANDOM_BYTES) -> str:
    if not MIN_SECRET_BYTES <= random_bytes <= MAX_SECRET_BYTES:
        raise InvalidSecret(f"secret must hold {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} random bytes")
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(random_bytes)).decode("ascii")


def secret_key_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret for Standard Webhooks signatures."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise InvalidSecret("secret must start with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret("secret is not valid base64") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidSecret(f"secret must hold {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes")
    return key


def validate_message_id(msg_id: str) -> None:
    # The id is part of the signed content "id.timestamp.body"; a '.' would make the
    # split ambiguous (Standard Webhooks forbids it).
    if not msg_id or "." in msg_id or any(c.isspace() for c in msg_id):
        raise ValueError("webhook id must be non-empty without '.' or whitespace")


def standard_signature(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    validate_message_id(msg_id)
    signed = b"%s.%d.%s" % (msg_id.encode("ascii"), int(timestamp), body)
    digest = hmac.new(secret_key_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def lago_signature(*, secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_headers(
    *, msg_id: str, timestamp: int, body: bytes, secrets: Iterable[str]
) -> dict[str, str]:
    """All signature headers for one attempt.

    ``secrets`` is ordered current first, then any still-valid previous secrets.
    """
    active = [s for s in secrets if s]
    if not active:
        raise InvalidSecret("at least one signing secret is required")
    standard = " ".join(
        standard_signature(secret=s, msg_id=msg_id, timestamp=timestamp, body=body) for s in active
    )
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(int(timestamp)),
        HEADER_SIGNATURE: standard,
        HEADER_LAGO_SIGNATURE: lago_signature(secret=active[0], body=body),
        HEADER_LAGO_ALGORITHM: "hmac",
        HEADER_LAGO_UNIQUE_KEY: msg_id,
    }


def verify_standard(
    *, secret: str, headers: Mapping[str, str], body: bytes, now: int, tolerance_seconds: int = 300
) -> bool:
    """Receiver-side check (used by our own tools and docs examples)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get(HEADER_ID)
    ts = lowered.get(HEADER_TIMESTAMP)
    sig_header = lowered.get(HEADER_SIGNATURE)
    if not (msg_id and ts and sig_header):
        return False
    try:
        ts_int = int(ts)
    except ValueError:
        return False
    if abs(now - ts_int) > tolerance_seconds:
        return False
    expected = standard_signature(secret=secret, msg_id=msg_id, timestamp=ts_int, body=body)
    return any(hmac.compare_digest(expected, candidate) for candidate in sig_header.split(" "))


def verify_lago(*, secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    lowered = {k.lower(): v for k, v in headers.items()}
    received = lowered.get(HEADER_LAGO_SIGNATURE.lower(), "")
    return hmac.compare_digest(lago_signature(secret=secret, body=body), received)
