"""Django's deployment checklist under production settings (#17, Low): ``manage.py check
--deploy`` has nothing to say, insecure keys are refused, TLS is enforced, and a proxy's
``X-Forwarded-Proto`` is trusted only when configured."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, database_url_for_subprocesses

# What the test environment (tests/environment.py) relaxes for its plain-HTTP clients.
RELAXED = ("DJANGO_DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT",
           "SECURE_HSTS_SECONDS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER")


def production_environment(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RELAXED}
    env.update({"DATABASE_URL": database_url_for_subprocesses(), "SECRET_KEY": secrets.token_urlsafe(50),
                "ALLOWED_HOSTS": "billing.example.com", "PYTHONPATH": str(REPO_ROOT)})
    env.update(overrides)
    return env


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=production_environment(**env), timeout=120)


SHOW = ("import json; from django.conf import settings as s; print(json.dumps({"
        "'debug': s.DEBUG, 'ssl_redirect': s.SECURE_SSL_REDIRECT, 'hsts': s.SECURE_HSTS_SECONDS,"
        "'subdomains': s.SECURE_HSTS_INCLUDE_SUBDOMAINS, 'proxy': s.SECURE_PROXY_SSL_HEADER,"
        "'session_secure': s.SESSION_COOKIE_SECURE, 'csrf_secure': s.CSRF_COOKIE_SECURE}))")


def production_settings(**env: str) -> dict:
    result = manage("shell", "-c", SHOW, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_has_no_warnings_under_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "System check identified no issues" in output
    assert "WARNINGS" not in output and "security.W" not in output


def test_production_defaults_enforce_tls():
    assert production_settings() == {
        "debug": False, "ssl_redirect": True, "hsts": 31536000, "subdomains": True, "proxy": None,
        "session_secure": True, "csrf_secure": True,
    }


@pytest.mark.parametrize("header", ["X-Forwarded-Proto", "HTTP_X_FORWARDED_PROTO"])
def test_a_proxys_protocol_header_is_trusted_only_when_configured(header):
    # Not trusted by default: test_production_defaults_enforce_tls ("proxy": None).
    assert production_settings(SECURE_PROXY_SSL_HEADER=header)["proxy"] == ["HTTP_X_FORWARDED_PROTO", "https"]


@pytest.mark.parametrize("make_key", [
    lambda: "django-insecure-" + secrets.token_urlsafe(50),  # startproject's placeholder
    lambda: secrets.token_urlsafe(24),                        # too short
    lambda: "ab" * 30,                                        # too uniform
], ids=["django-insecure", "too-short", "too-uniform"])
def test_weak_secret_keys_are_refused_in_production(make_key):
    # Made in the test: every xdist worker must collect the same test ids.
    key = make_key()
    result = manage("check", SECRET_KEY=key)
    assert result.returncode != 0
    assert "SECRET_KEY (at least 50 random characters; not a django-insecure- key)" in result.stderr
    assert "Traceback" not in result.stderr


def test_handing_tls_to_the_proxy_is_reported_by_check_deploy():
    result = manage("check", "--deploy", SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="0")
    output = result.stdout + result.stderr
    assert "security.W008" in output and "security.W004" in output
