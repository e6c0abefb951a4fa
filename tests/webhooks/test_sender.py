"""The sender against a real local receiver with injected faults."""

import socket
import ssl
from pathlib import Path

import pytest

from webhooks import sender
from webhooks.testing.receiver import Fault, WebhookReceiver

TLS_DIR = Path(__file__).parent / "tls"
LOCAL = "127.0.0.1"


@pytest.fixture
def receiver():
    with WebhookReceiver() as r:
        yield r


def post(url, **kwargs):
    kwargs.setdefault("allow_http_hosts", LOCAL)
    kwargs.setdefault("timeout", 2)
    return sender.post_webhook(url=url, body=b'{"a":1}', headers={"webhook-id": "msg_1"}, **kwargs)


def test_success_sends_exact_body_and_headers(receiver):
    outcome = post(receiver.url("/ok"))
    assert outcome.ok and outcome.status_code == 200 and outcome.error_kind == ""
    assert outcome.connected_ip == LOCAL
    [req] = receiver.received("/ok")
    assert req.method == "POST" and req.body == b'{"a":1}'
    assert req.header("webhook-id") == "msg_1"
    assert req.header("content-type") == "application/json"


@pytest.mark.parametrize("status", [201, 202, 204])
def test_every_2xx_is_success(receiver, status):
    receiver.add_faults("/h", Fault.ok(status))
    assert post(receiver.url("/h")).ok


@pytest.mark.parametrize("status", [400, 401, 404, 500, 502])
def test_error_status_is_failure(receiver, status):
    receiver.add_faults("/h", Fault.status(status, b"boom body"))
    outcome = post(receiver.url("/h"))
    assert not outcome.ok and outcome.status_code == status
    assert outcome.error_kind == sender.KIND_HTTP_STATUS
    assert outcome.response_excerpt == "boom body"
    assert outcome.retry_after_seconds is None


def test_redirect_is_a_failure_and_not_followed(receiver):
    receiver.add_faults("/h", Fault.redirect(receiver.url("/elsewhere")))
    outcome = post(receiver.url("/h"))
    assert not outcome.ok and outcome.status_code == 302
    assert outcome.error_kind == sender.KIND_REDIRECT
    assert receiver.received("/elsewhere") == []


def test_timeout(receiver):
    receiver.add_faults("/h", Fault.timeout())
    outcome = post(receiver.url("/h"), timeout=0.5)
    assert outcome.status_code is None and outcome.error_kind == sender.KIND_TIMEOUT
    assert outcome.duration_ms >= 500


def test_slow_but_within_timeout_succeeds(receiver):
    receiver.add_faults("/h", Fault.slow(0.3))
    outcome = post(receiver.url("/h"), timeout=5)
    assert outcome.ok and outcome.duration_ms >= 300


def test_gone(receiver):
    receiver.add_faults("/h", Fault.gone())
    assert post(receiver.url("/h")).status_code == 410


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_reported(receiver, status):
    receiver.add_faults("/h", Fault.rate_limited(120, status=status))
    outcome = post(receiver.url("/h"))
    assert outcome.status_code == status and outcome.retry_after_seconds == 120


def test_retry_after_http_date():
    from datetime import datetime, timezone
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert sender.parse_retry_after("Thu, 01 Jan 2026 12:05:00 GMT", now=now) == 300
    assert sender.parse_retry_after("garbage", now=now) is None
    assert sender.parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0


def test_response_read_is_capped(receiver):
    receiver.add_faults("/h", Fault.large_body(5 * 1024 * 1024, status=500))
    outcome = post(receiver.url("/h"), max_response_bytes=4096)
    assert outcome.status_code == 500
    assert len(outcome.response_excerpt) == sender.RESPONSE_EXCERPT_CHARS


def test_connection_refused():
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        port = s.getsockname()[1]
    outcome = post(f"http://{LOCAL}:{port}/h")
    assert outcome.status_code is None and outcome.error_kind == sender.KIND_CONNECTION


# --- TLS: pinned address, hostname verification, SNI -------------------------------

@pytest.fixture
def tls_receiver():
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(TLS_DIR / "server.pem", TLS_DIR / "server.key")
    sni_seen = []
    server_ctx.sni_callback = lambda sslobj, name, ctx: sni_seen.append(name)
    with WebhookReceiver(ssl_context=server_ctx) as r:
        r.sni_seen = sni_seen
        yield r


@pytest.fixture
def client_ctx():
    ctx = ssl.create_default_context(cafile=str(TLS_DIR / "ca.pem"))
    return ctx


def counting_resolver(answers):
    calls = []

    def resolve(host, port):
        calls.append(host)
        return [answers[host][min(len(calls), len(answers[host])) - 1]]

    resolve.calls = calls
    return resolve


def test_https_connects_to_pinned_address_with_sni_and_hostname_check(tls_receiver, client_ctx):
    # First answer is what gets checked and pinned; a rebinding second answer would be
    # unroutable, so success proves there was exactly one lookup.
    resolver = counting_resolver({"hooks.example.test": [LOCAL, "192.0.2.1"]})
    outcome = sender.post_webhook(
        url=f"https://hooks.example.test:{tls_receiver.port}/tls", body=b"{}", headers={},
        allow_http_hosts="hooks.example.test", resolver=resolver, ssl_context=client_ctx, timeout=5,
    )
    assert outcome.ok, outcome.error
    assert resolver.calls == ["hooks.example.test"]
    assert tls_receiver.sni_seen == ["hooks.example.test"]
    [req] = tls_receiver.received("/tls")
    assert req.header("host") == f"hooks.example.test:{tls_receiver.port}"


def test_https_certificate_for_another_name_is_refused(tls_receiver, client_ctx):
    resolver = counting_resolver({"other.example.test": [LOCAL]})
    outcome = sender.post_webhook(
        url=f"https://other.example.test:{tls_receiver.port}/tls", body=b"{}", headers={},
        allow_http_hosts="other.example.test", resolver=resolver, ssl_context=client_ctx, timeout=5,
    )
    assert outcome.error_kind == sender.KIND_TLS and not outcome.ok
    assert tls_receiver.received("/tls") == []


def test_https_untrusted_certificate_is_refused_by_default_context(tls_receiver):
    resolver = counting_resolver({"hooks.example.test": [LOCAL]})
    outcome = sender.post_webhook(
        url=f"https://hooks.example.test:{tls_receiver.port}/tls", body=b"{}", headers={},
        allow_http_hosts="hooks.example.test", resolver=resolver, timeout=5,
    )
    assert outcome.error_kind == sender.KIND_TLS
