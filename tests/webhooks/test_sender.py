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
    receiver.add_faults("/h", Fault.error(status, b"boom body"))
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


# --- keep-alive -----------------------------------------------------------------

def test_connections_are_kept_alive_and_reused(receiver):
    for _ in range(3):
        assert post(receiver.url("/ka")).ok
    assert len({r.client_port for r in receiver.received("/ka")}) == 1


def test_error_responses_do_not_poison_the_pool(receiver):
    receiver.add_faults("/ka", Fault.large_body(1024 * 1024, status=500))
    assert post(receiver.url("/ka"), max_response_bytes=1024).status_code == 500  # body not drained: closed
    assert post(receiver.url("/ka")).ok


def test_a_connection_the_server_closed_is_replaced_without_losing_the_request(receiver):
    from dataclasses import replace

    receiver.add_faults("/ka", replace(Fault.ok(), close_after=True))
    assert post(receiver.url("/ka")).ok  # pooled, but the server has silently closed it
    outcome = post(receiver.url("/ka"))
    assert outcome.ok and outcome.error_kind == ""
    first, second = receiver.received("/ka")
    assert first.client_port != second.client_port


def test_reuse_never_skips_the_ssrf_check(receiver):
    answers = {"hooks.example.test": ["127.0.0.1"]}
    resolver = lambda host, port: answers[host]  # noqa: E731
    url = f"http://hooks.example.test:{receiver.port}/ka"
    assert post(url, allow_http_hosts="hooks.example.test", resolver=resolver).ok
    answers["hooks.example.test"] = ["10.0.0.1"]  # rebinding after a connection was pooled
    outcome = post(url.replace("http://", "https://"), allow_http_hosts="", resolver=resolver)
    assert outcome.error_kind == sender.KIND_SSRF
    assert len(receiver.received("/ka")) == 1


def test_one_deadline_covers_a_server_dripping_bytes(receiver):
    # Every byte arrives well within the socket timeout; only the overall deadline stops it.
    receiver.add_faults("/drip", Fault.drip(0.2))  # ~11 s for the whole response
    outcome = post(receiver.url("/drip"), timeout=1)
    assert outcome.error_kind == sender.KIND_TIMEOUT and outcome.status_code is None
    assert outcome.duration_ms >= 1000
    assert len(receiver.received("/drip")) == 1  # and the dripped answer (~11 s) was never accepted


def test_tls_connections_are_reused_and_replaced_when_closed(tls_receiver, client_ctx):
    from dataclasses import replace

    resolver = counting_resolver({"hooks.example.test": ["127.0.0.1"] * 10})
    kwargs = dict(allow_http_hosts="hooks.example.test", resolver=resolver, ssl_context=client_ctx, timeout=5)
    url = f"https://hooks.example.test:{tls_receiver.port}/tls"
    tls_receiver.add_faults("/tls", Fault.ok(), replace(Fault.ok(), close_after=True))
    for _ in range(3):
        assert sender.post_webhook(url=url, body=b"{}", headers={}, **kwargs).ok
    ports = [r.client_port for r in tls_receiver.received("/tls")]
    assert ports[0] == ports[1] != ports[2]  # reused, then replaced after the server closed it
    assert len(resolver.calls) == 3  # but checked every time


@pytest.mark.parametrize("value, expected", [
    ("120", 120),
    (" 7 ", 7),
    ("0", 0),
    ("²", None),  # str.isdigit() says yes; RFC 9110 delta-seconds is ASCII digits only
    ("١٢", None),  # Arabic-Indic digits
    ("-5", None),
    ("1.5", None),
    ("9" * 5000, sender.MAX_RETRY_AFTER_SECONDS),  # no int() of 5000 digits
    ("Thu, 01 Jan 2026 12:05:00 GMT", 300),  # IMF-fixdate
    ("Thursday, 01-Jan-26 12:05:00 GMT", 300),  # obsolete RFC 850
    ("Thu Jan  1 12:05:00 2026", 300),  # obsolete asctime
    ("Fri, 01 Jan 9999 00:00:00 GMT", sender.MAX_RETRY_AFTER_SECONDS),
    ("Thu, 01 Jan 2026 11:00:00 GMT", 0),
    ("Thu, 31 Feb 2026 12:00:00 GMT", None),
    ("garbage", None),
    ("é" * 100, None),
    ("", None),
])
def test_retry_after_is_parsed_per_rfc_9110_and_bounded(value, expected):
    from datetime import datetime, timezone
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert sender.parse_retry_after(value, now=now) == expected


def test_hostile_bytes_in_texts_are_made_storable():
    assert sender.storable_text("a\x00b") == "a\ufffdb"
    assert sender.storable_text("lone \ud800 surrogate") == "lone ? surrogate"
    assert sender.storable_text("café ✓") == "café ✓"
