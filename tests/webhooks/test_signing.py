"""Signatures as third-party receivers check them."""

import base64
import hashlib
import hmac
import time
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from webhooks import signing

BODY = b'{"webhook_type":"invoice.created","object_type":"invoice","invoice":{"lago_id":"x","total_amount_cents":1999}}'


def test_generated_secret_format_and_entropy():
    secret = signing.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[len("whsec_"):])) >= 24
    assert signing.generate_secret() != secret
    with pytest.raises(signing.InvalidSecret):
        signing.generate_secret(random_bytes=16)


@pytest.mark.parametrize("bad", ["", "abc", "whsec_", "whsec_!!!notbase64", "whsec_" + base64.b64encode(b"short").decode()])
def test_bad_secrets_rejected(bad):
    with pytest.raises(signing.InvalidSecret):
        signing.secret_key_bytes(bad)


def test_standard_webhooks_library_verifies_our_headers():
    secret = signing.generate_secret()
    now = int(time.time())
    headers = signing.signature_headers(msg_id="msg_2f1c", timestamp=now, body=BODY, secrets=[secret])
    assert headers["webhook-id"] == "msg_2f1c"
    assert headers["webhook-timestamp"] == str(now)
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == {
        "webhook_type": "invoice.created", "object_type": "invoice",
        "invoice": {"lago_id": "x", "total_amount_cents": 1999},
    }
    # a different secret, a modified body or a modified id must fail
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"1999", b"1"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_other"})


def test_library_sign_matches_ours_exactly():
    secret = signing.generate_secret()
    ts = 1_700_000_000
    ours = signing.standard_signature(secret=secret, msg_id="evt_1", timestamp=ts, body=BODY)
    theirs = Webhook(secret).sign("evt_1", datetime.fromtimestamp(ts, tz=timezone.utc), BODY.decode())
    assert ours == theirs


def test_rotation_signs_with_both_secrets_and_each_verifies():
    old, new = signing.generate_secret(), signing.generate_secret()
    headers = signing.signature_headers(msg_id="evt_9", timestamp=int(time.time()), body=BODY, secrets=[new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(BODY, headers)
    Webhook(old).verify(BODY, headers)
    # Lago's single-valued header uses the current (new) secret
    assert signing.verify_lago(secret=new, headers=headers, body=BODY)
    assert not signing.verify_lago(secret=old, headers=headers, body=BODY)


def test_lago_documented_hmac_check_passes():
    secret = signing.generate_secret()
    headers = signing.signature_headers(msg_id="evt_1", timestamp=int(time.time()), body=BODY, secrets=[secret])
    assert headers["X-Lago-Signature-Algorithm"] == "hmac"
    assert headers["X-Lago-Unique-Key"] == "evt_1"
    # verbatim from Lago's receiver snippet: key is the secret string as displayed
    expected = base64.b64encode(hmac.new(secret.encode(), BODY, "sha256").digest()).decode()
    assert headers["X-Lago-Signature"] == expected
    assert not signing.verify_lago(secret=secret, headers=headers, body=BODY + b" ")


def test_own_verifier_checks_timestamp_tolerance():
    secret = signing.generate_secret()
    ts = 1_700_000_000
    headers = signing.signature_headers(msg_id="evt_1", timestamp=ts, body=BODY, secrets=[secret])
    assert signing.verify_standard(secret=secret, headers=headers, body=BODY, now=ts + 10)
    assert not signing.verify_standard(secret=secret, headers=headers, body=BODY, now=ts + 3600)


@pytest.mark.parametrize("bad_id", ["", "a.b", "a b"])
def test_message_id_must_not_break_signed_content(bad_id):
    with pytest.raises(ValueError):
        signing.standard_signature(secret=signing.generate_secret(), msg_id=bad_id, timestamp=1, body=b"{}")


def test_signature_is_hmac_of_id_timestamp_body():
    secret = signing.generate_secret()
    key = base64.b64decode(secret[6:])
    sig = signing.standard_signature(secret=secret, msg_id="m1", timestamp=42, body=b"{}")
    assert sig == "v1," + base64.b64encode(hmac.new(key, b"m1.42.{}", hashlib.sha256).digest()).decode()
