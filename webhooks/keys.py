"""The keys behind Lago's ``X-Lago-Signature``: the deployment's RSA key (``jwt``) and each
organization's (service's) HMAC key (``hmac``). Both are made on first use and stored;
neither is ever logged."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from uuid import UUID

from django.conf import settings

from . import signing
from .models import OrganizationHmacKey, WebhookEndpoint, WebhookRsaKey


def rsa_private_pem() -> str:
    """``LAGO_RSA_PRIVATE_KEY`` (base64 of the PEM, as Lago's variable) or the stored key."""
    configured = settings.LAGO_RSA_PRIVATE_KEY
    if configured:
        try:
            return base64.b64decode(configured).decode("ascii")
        except (binascii.Error, ValueError):
            # The message must not echo the value: it is a private key.
            raise signing.InvalidSecret("LAGO_RSA_PRIVATE_KEY is not base64 of a PEM key") from None
    row = WebhookRsaKey.objects.filter(pk=WebhookRsaKey.SINGLETON).first()
    if row is None:
        # get_or_create settles a race between two first signers: the loser reads the winner's key.
        row, _ = WebhookRsaKey.objects.get_or_create(
            pk=WebhookRsaKey.SINGLETON, defaults={"private_pem": signing.generate_rsa_private_key_pem()})
    return row.private_pem


def public_key_base64() -> str:
    return signing.public_key_base64(rsa_private_pem())


def hmac_key_for(*, service_id: int) -> str:
    row = OrganizationHmacKey.objects.filter(service_id=service_id).first()
    if row is None:
        row, _ = OrganizationHmacKey.objects.get_or_create(
            service_id=service_id, defaults={"hmac_key": signing.generate_hmac_key()})
    return row.hmac_key


def lago_signers(endpoints: Iterable[WebhookEndpoint]) -> dict[UUID, signing.LagoSigner]:
    """The X-Lago-Signature signer of each endpoint (read before sending: sending threads
    touch no database)."""
    signers: dict[UUID, signing.LagoSigner] = {}
    pem: str | None = None
    hmac_keys: dict[int, str] = {}
    for endpoint in endpoints:
        if endpoint.signature_algo == signing.ALGO_HMAC:
            if endpoint.service_id not in hmac_keys:
                hmac_keys[endpoint.service_id] = hmac_key_for(service_id=endpoint.service_id)
            signers[endpoint.id] = signing.LagoSigner(algo=signing.ALGO_HMAC,
                                                      hmac_key=hmac_keys[endpoint.service_id])
        else:
            pem = pem if pem is not None else rsa_private_pem()
            signers[endpoint.id] = signing.LagoSigner(algo=signing.ALGO_JWT, rsa_private_pem=pem,
                                                      issuer=settings.WEBHOOK_JWT_ISSUER)
    return signers
