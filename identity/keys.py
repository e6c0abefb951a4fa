"""API keys: ``fb_<8 hex>_<43 chars of base64url>`` (32 random bytes), stored as SHA-256 only."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import ApiKey, Service

KEY_SCHEME = "fb"
_SECRET_BYTES = 32


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str  # shown to the caller once, never stored


def _hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _split(presented: str) -> str | None:
    """The lookup prefix ``fb_<8 hex>`` of a well-formed key, else None."""
    scheme, sep, rest = presented.partition("_")
    public_id, sep2, secret = rest.partition("_")
    if scheme != KEY_SCHEME or not sep or not sep2 or len(public_id) != 8 or len(secret) < 43:
        return None
    return f"{scheme}_{public_id}"


@transaction.atomic
def issue_key(*, service: Service, name: str = "", expires_at: datetime | None = None) -> IssuedKey:
    while True:
        prefix = f"{KEY_SCHEME}_{secrets.token_hex(4)}"
        if not ApiKey.objects.filter(prefix=prefix).exists():
            break
    plaintext = f"{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    api_key = ApiKey.objects.create(
        service=service, name=name, prefix=prefix, key_hash=_hash(plaintext), expires_at=expires_at
    )
    return IssuedKey(api_key=api_key, plaintext=plaintext)


def revoke_key(*, prefix: str) -> ApiKey:
    api_key = ApiKey.objects.get(prefix=prefix)
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.is_active = False
        api_key.save(update_fields=["revoked_at", "is_active"])
    return api_key


def authenticate(*, presented: str) -> ApiKey | None:
    """The active, unexpired, unrevoked key of an active service matching ``presented``."""
    prefix = _split(presented)
    if prefix is None:
        return None
    api_key = ApiKey.objects.select_related("service").filter(prefix=prefix).first()
    # Compare hashes in constant time even when no key has this prefix.
    expected = api_key.key_hash if api_key else _hash(secrets.token_hex(16))
    if not hmac.compare_digest(expected, _hash(presented)) or api_key is None:
        return None
    now = timezone.now()
    if (
        not api_key.is_active
        or api_key.revoked_at is not None
        or (api_key.expires_at is not None and api_key.expires_at <= now)
        or not api_key.service.is_active
    ):
        return None
    _touch(api_key=api_key, now=now)
    return api_key


def _touch(*, api_key: ApiKey, now: datetime) -> None:
    resolution = timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    if api_key.last_used_at is None or now - api_key.last_used_at >= resolution:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
