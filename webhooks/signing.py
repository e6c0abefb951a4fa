"""Webhook secrets and signatures.

Every request carries two independent signatures over the exact body bytes:

* Standard Webhooks v1 (https://www.standardwebhooks.com/): ``webhook-id``,
  ``webhook-timestamp`` and ``webhook-signature: v1,<base64>`` where the HMAC-SHA256
  key is the base64-decoded part of the ``whsec_`` secret and the signed content is
  ``"{id}.{timestamp}.{body}"``. While a rotated-out secret is still valid the header
  lists one signature per secret, space-separated, so receivers on either secret pass.
* Lago's ``X-Lago-Signature`` exactly as Lago makes it, so a receiver written for Lago
  verifies ours unchanged. ``X-Lago-Signature-Algorithm`` says which:

  - ``jwt`` (Lago's default): an RS256 JWT whose claims are ``{"data": <body as text>,
    "iss": <issuer>}``, signed with the deployment's RSA key; receivers check it with the
    public key from ``GET /api/v1/webhooks/json_public_key``;
  - ``hmac``: base64 HMAC-SHA256 of the body keyed by the organization's HMAC key (one
    per service, like Lago's ``organization.hmac_key``), as Lago's receivers check it
    (``hmac.new(key.encode(), body, "sha256")``).

This module is pure (no Django) so it can be reused by receivers and tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

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

ALGO_JWT = "jwt"
ALGO_HMAC = "hmac"
LAGO_ALGOS = (ALGO_JWT, ALGO_HMAC)
RSA_KEY_BITS = 2048
HMAC_KEY_RANDOM_BYTES = 32


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
    """Lago's ``hmac`` signature: base64 HMAC-SHA256 of the body keyed by the key's text."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def generate_hmac_key() -> str:
    # Lago's organization hmac_key is a random token shown to the integrator as is.
    return _secrets.token_urlsafe(HMAC_KEY_RANDOM_BYTES)


def generate_rsa_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
    ).decode("ascii")


@lru_cache(maxsize=4)
def load_rsa_private_key(pem: str) -> rsa.RSAPrivateKey:
    # Cached: loading checks the key, which costs more than signing with it.
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidSecret("the webhook signing key must be an RSA private key")
    return key


def public_key_pem(private_pem: str) -> str:
    public = load_rsa_private_key(private_pem).public_key()
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo,
    ).decode("ascii")


def public_key_base64(private_pem: str) -> str:
    """What Lago's ``json_public_key`` returns: the PEM, base64 (Ruby's ``Base64.encode64``,
    which wraps lines; ``base64.b64decode`` ignores the newlines as Lago's clients do)."""
    return base64.encodebytes(public_key_pem(private_pem).encode("ascii")).decode("ascii")


def jwt_signature(*, private_pem: str, body: bytes, issuer: str) -> str:
    """Lago's ``jwt`` signature: RS256 over ``{"data": <body text>, "iss": issuer}``."""
    return jwt.encode({"data": body.decode("utf-8"), "iss": issuer}, load_rsa_private_key(private_pem),
                      algorithm="RS256")


@dataclass(frozen=True)
class LagoSigner:
    """How ``X-Lago-Signature`` is made for one endpoint: its algorithm and the key."""

    algo: str
    hmac_key: str = ""
    rsa_private_pem: str = ""
    issuer: str = ""

    def sign(self, body: bytes) -> str:
        if self.algo == ALGO_JWT:
            if not self.rsa_private_pem:
                raise InvalidSecret("jwt signatures need the RSA private key")
            return jwt_signature(private_pem=self.rsa_private_pem, body=body, issuer=self.issuer)
        if self.algo == ALGO_HMAC:
            if not self.hmac_key:
                raise InvalidSecret("hmac signatures need the organization's HMAC key")
            return lago_signature(secret=self.hmac_key, body=body)
        raise InvalidSecret(f"unknown signature_algo {self.algo!r}")


def signature_headers(
    *, msg_id: str, timestamp: int, body: bytes, secrets: Iterable[str], lago: LagoSigner | None = None,
) -> dict[str, str]:
    """All signature headers for one attempt.

    ``secrets`` (the endpoint's, for Standard Webhooks) is ordered current first, then any
    still-valid previous secrets. ``lago`` makes ``X-Lago-Signature`` as Lago does; without
    it the header is an HMAC keyed by the endpoint's current secret.
    """
    active = [s for s in secrets if s]
    if not active:
        raise InvalidSecret("at least one signing secret is required")
    standard = " ".join(
        standard_signature(secret=s, msg_id=msg_id, timestamp=timestamp, body=body) for s in active
    )
    lago = lago or LagoSigner(algo=ALGO_HMAC, hmac_key=active[0])
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(int(timestamp)),
        HEADER_SIGNATURE: standard,
        HEADER_LAGO_SIGNATURE: lago.sign(body),
        HEADER_LAGO_ALGORITHM: lago.algo,
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


def verify_lago_jwt(*, public_pem: str, headers: Mapping[str, str], body: bytes, issuer: str) -> bool:
    """Receiver-side check of a ``jwt`` signature, as Lago's docs show it."""
    lowered = {k.lower(): v for k, v in headers.items()}
    token = lowered.get(HEADER_LAGO_SIGNATURE.lower(), "")
    try:
        claims = jwt.decode(token, public_pem, algorithms=["RS256"], issuer=issuer)
    except jwt.PyJWTError:
        return False
    return bool(claims.get("data") == body.decode("utf-8"))
