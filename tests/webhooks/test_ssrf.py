"""Every SSRF form is refused, before any connection is attempted."""

import pytest

from webhooks import ssrf
from webhooks.sender import KIND_SSRF, post_webhook


def static_resolver(mapping):
    calls = []

    def resolve(host, port):
        calls.append((host, port))
        if host not in mapping:
            raise OSError("no such host")
        value = mapping[host]
        return value if isinstance(value, list) else [value]

    resolve.calls = calls
    return resolve


PUBLIC = "93.184.215.14"


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link_local"),  # cloud metadata
        ("169.254.0.1", "link_local"),
        ("100.64.0.1", "cgnat"),
        ("100.127.255.254", "cgnat"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.0.8", "reserved"),
        ("198.18.0.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "unique_local"),
        ("fd12:3456:789a::1", "unique_local"),
        ("fe80::1", "link_local"),
        ("fe80::1%eth0", "link_local"),
        ("fec0::1", "site_local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "ipv4_mapped"),
        ("::ffff:169.254.169.254", "ipv4_mapped"),
        ("::ffff:8.8.8.8", "ipv4_mapped"),
        ("::127.0.0.1", "ipv4_compatible"),
        ("64:ff9b::a9fe:a9fe", "nat64"),  # NAT64 of 169.254.169.254
        ("64:ff9b:1::1", "nat64"),
        ("2002:7f00:1::1", "6to4"),
        ("2001:0:4136:e378::1", "teredo"),
        ("2001:db8::1", "reserved"),
    ],
)
def test_blocked_addresses(address, reason):
    assert ssrf.blocked_reason(address) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::200e"])
def test_public_addresses_allowed(address):
    assert ssrf.blocked_reason(address) is None


@pytest.mark.parametrize(
    "url, code",
    [
        ("http://hooks.example.com/x", "scheme_not_allowed"),
        ("ftp://hooks.example.com/x", "scheme_not_allowed"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("gopher://hooks.example.com/", "scheme_not_allowed"),
        ("https://user:pw@hooks.example.com/", "url_is_invalid"),
        ("https:///nohost", "url_is_invalid"),
        ("https://hooks.example.com:0/", "url_is_invalid"),
        ("https://hooks.example.com:99999/", "url_is_invalid"),
        ("https://hooks.example.com/a b", "url_is_invalid"),
        ("https://hooks.example.com/\r\nX-Injected: 1", "url_is_invalid"),
        ("https://" + "a" * 2100 + ".com/", "url_is_invalid"),
        ("", "url_is_invalid"),
    ],
)
def test_malformed_or_non_https_urls_refused(url, code):
    with pytest.raises(ssrf.UnsafeWebhookUrl) as exc:
        ssrf.check_url(url, resolver=static_resolver({"hooks.example.com": PUBLIC}))
    assert exc.value.code == code


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:169.254.169.254]/",
        "https://[::ffff:7f00:1]/",
        "https://[fd00::1]/",
        "https://[fe80::1]/",
        "https://100.64.1.1/",
        "https://0.0.0.0/",
        "https://10.0.0.1:8443/",
        "https://localhost/hook",
        "https://2130706433/",  # decimal form of 127.0.0.1
        "https://0x7f.0.0.1/",  # hex form
        "https://0177.0.0.1/",  # octal form
        "https://127.1/",  # short form
    ],
)
def test_literal_and_numeric_forms_refused_with_system_resolver(url):
    # These never leave the machine: numeric forms and localhost resolve locally.
    with pytest.raises(ssrf.UnsafeWebhookUrl) as exc:
        ssrf.check_url(url)
    assert exc.value.code == "private_address"


@pytest.mark.parametrize("private", ["10.0.0.5", "127.0.0.1", "169.254.169.254", "::1", "fd00::5", "::ffff:10.0.0.1", "100.64.3.2"])
def test_hostname_resolving_to_private_address_refused(private):
    resolver = static_resolver({"hooks.attacker.example": private})
    with pytest.raises(ssrf.UnsafeWebhookUrl) as exc:
        ssrf.check_url("https://hooks.attacker.example/x", resolver=resolver)
    assert exc.value.code == "private_address"
    assert resolver.calls == [("hooks.attacker.example", 443)]


def test_any_private_answer_among_several_refuses():
    resolver = static_resolver({"mixed.example": [PUBLIC, "10.0.0.1"]})
    with pytest.raises(ssrf.UnsafeWebhookUrl):
        ssrf.check_url("https://mixed.example/", resolver=resolver)


def test_public_hostname_is_pinned_to_the_checked_address():
    resolver = static_resolver({"hooks.example.com": [PUBLIC, "2606:4700:4700::1111"]})
    target = ssrf.check_url("https://Hooks.Example.com./in?x=1#frag", resolver=resolver)
    assert target.pinned_ip == PUBLIC
    assert target.parsed.host == "hooks.example.com"
    assert target.parsed.port == 443
    assert target.parsed.target == "/in?x=1"
    assert not target.private_allowed


def test_idn_hostname_is_punycoded():
    resolver = static_resolver({"xn--bcher-kva.example": PUBLIC})
    assert ssrf.check_url("https://bücher.example/", resolver=resolver).parsed.host == "xn--bcher-kva.example"


def test_unresolvable_host_refused():
    with pytest.raises(ssrf.UnsafeWebhookUrl) as exc:
        ssrf.check_url("https://nowhere.example/", resolver=static_resolver({}))
    assert exc.value.code == "unresolvable_host"


def test_allow_http_hosts_permit_plain_http_and_private_addresses():
    allow = "127.0.0.1, receiver.local"
    target = ssrf.check_url("http://127.0.0.1:8080/h", allow_http_hosts=allow)
    assert target.pinned_ip == "127.0.0.1" and target.private_allowed
    resolver = static_resolver({"receiver.local": "10.9.9.9"})
    assert ssrf.check_url("http://receiver.local/h", allow_http_hosts=allow, resolver=resolver).pinned_ip == "10.9.9.9"
    # other hosts keep both rules
    with pytest.raises(ssrf.UnsafeWebhookUrl):
        ssrf.check_url("http://127.0.0.2/h", allow_http_hosts=allow)
    with pytest.raises(ssrf.UnsafeWebhookUrl):
        ssrf.check_url("https://127.0.0.2/h", allow_http_hosts=allow)


def test_sender_refuses_before_connecting():
    resolver = static_resolver({"rebind.example": "127.0.0.1"})
    outcome = post_webhook(url="https://rebind.example/", body=b"{}", headers={}, resolver=resolver)
    assert outcome.error_kind == KIND_SSRF
    assert outcome.status_code is None
    assert "private_address" in outcome.error
    assert outcome.connected_ip == ""


@pytest.mark.parametrize("url, normalised, target", [
    ("https://Hooks.Example.com./in?x=1#frag", "https://hooks.example.com/in?x=1", "/in?x=1"),
    ("https://hooks.example.com:443/a", "https://hooks.example.com/a", "/a"),
    ("https://bücher.example/ünï/çødé?q=é", "https://xn--bcher-kva.example/%C3%BCn%C3%AF/%C3%A7%C3%B8d%C3%A9?q=%C3%A9",
     "/%C3%BCn%C3%AF/%C3%A7%C3%B8d%C3%A9?q=%C3%A9"),
    ("https://hooks.example.com/already%20encoded%2F", "https://hooks.example.com/already%20encoded%2F",
     "/already%20encoded%2F"),
    ("https://hooks.example.com/100%", "https://hooks.example.com/100%25", "/100%25"),
    ("https://hooks.example.com/a<b>{c}|\"d\"^`", "https://hooks.example.com/a%3Cb%3E%7Bc%7D%7C%22d%22%5E%60",
     "/a%3Cb%3E%7Bc%7D%7C%22d%22%5E%60"),
    ("https://hooks.example.com", "https://hooks.example.com/", "/"),
])
def test_urls_are_normalised_idna_and_percent_encoded(url, normalised, target):
    resolver = static_resolver({"hooks.example.com": PUBLIC, "xn--bcher-kva.example": PUBLIC})
    parsed = ssrf.check_url(url, resolver=resolver).parsed
    assert parsed.url == normalised and parsed.target == target
    assert parsed.target.isascii()


def test_a_url_too_long_once_percent_encoded_is_invalid():
    # 700 characters, 4200 once encoded: more than the stored column holds
    with pytest.raises(ssrf.UnsafeWebhookUrl) as exc:
        ssrf.check_url("https://hooks.example.com/" + "é" * 700, resolver=static_resolver({"hooks.example.com": PUBLIC}))
    assert exc.value.code == "url_is_invalid"


def test_a_lone_surrogate_in_the_url_is_invalid():
    with pytest.raises(ssrf.UnsafeWebhookUrl) as exc:
        ssrf.check_url("https://hooks.example.com/\ud800", resolver=static_resolver({"hooks.example.com": PUBLIC}))
    assert exc.value.code == "url_is_invalid"


def test_a_port_other_than_443_needs_an_explicit_allow_list_entry():
    resolver = static_resolver({"hooks.example.com": PUBLIC, "other.example.com": PUBLIC, "xn--bcher-kva.example": PUBLIC,
                                "2606:4700:4700::1111": "2606:4700:4700::1111"})
    with pytest.raises(ssrf.UnsafeWebhookUrl) as exc:
        ssrf.check_url("https://hooks.example.com:8443/h", resolver=resolver)
    assert exc.value.code == "port_not_allowed"
    allowed = "hooks.example.com:8443, Bücher.example:9443,[2606:4700:4700::1111]:8443"
    target = ssrf.check_url("https://hooks.example.com:8443/h", resolver=resolver, allowed_ports=allowed)
    assert target.parsed.port == 8443 and target.parsed.url == "https://hooks.example.com:8443/h"
    assert ssrf.check_url("https://bücher.example:9443/", resolver=resolver, allowed_ports=allowed).parsed.port == 9443
    assert ssrf.check_url("https://[2606:4700:4700::1111]:8443/", resolver=resolver,
                          allowed_ports=allowed).parsed.url == "https://[2606:4700:4700::1111]:8443/"
    for url in ("https://hooks.example.com:9443/h", "https://other.example.com:8443/h", "https://hooks.example.com:80/"):
        with pytest.raises(ssrf.UnsafeWebhookUrl) as exc:
            ssrf.check_url(url, resolver=resolver, allowed_ports=allowed)
        assert exc.value.code == "port_not_allowed"
    # Local development hosts (WEBHOOK_ALLOW_HTTP_HOSTS) keep any port.
    assert ssrf.check_url("http://127.0.0.1:8080/h", allow_http_hosts="127.0.0.1").parsed.port == 8080


def test_a_malformed_allowed_ports_entry_is_a_configuration_error():
    with pytest.raises(ValueError):
        ssrf.normalise_allowed_ports("hooks.example.com")
