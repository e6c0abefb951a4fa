"""Fail closed: with DEBUG off, refuse to start without a real secret key and hosts, and
run with Django's deployment checklist satisfied (``manage.py check --deploy`` is clean;
tests/foundation/test_deploy_checklist.py holds it so).

TLS: HTTPS redirect and HSTS are on by default. Behind a TLS-terminating proxy, set
``SECURE_PROXY_SSL_HEADER`` to the header the proxy sets (and strips from clients), else
every request looks like plain HTTP and is redirected; where the proxy itself redirects
and sends HSTS, ``SECURE_SSL_REDIRECT=0`` / ``SECURE_HSTS_SECONDS=0`` hand that duty to it
(check --deploy then warns, as a reminder to verify the proxy)."""
import secrets

from django.core.exceptions import ImproperlyConfigured

from .core import DEBUG
from .env import VAR_DIR, env

_INSECURE_MARKERS = ("insecure", "changeme", "change-me", "secret")
# Django's own check (security.W009): shorter or less varied keys are guessable.
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5


def _weak_secret_key(key: str) -> bool:
    return (len(key) < SECRET_KEY_MIN_LENGTH or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
            or key.lower() in _INSECURE_MARKERS
            # startproject's placeholder, pasted into production more often than one would think
            or key.startswith("django-insecure"))


def _meta_header_name(header: str) -> str:
    """``X-Forwarded-Proto`` or ``HTTP_X_FORWARDED_PROTO`` → ``HTTP_X_FORWARDED_PROTO``."""
    name = header.strip().upper().replace("-", "_")
    return name if name.startswith("HTTP_") else f"HTTP_{name}"


def _development_secret_key() -> str:
    """A per-checkout random key, kept so sessions survive a restart of the dev server."""
    path = VAR_DIR / "dev-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="")
# Merged into SILENCED_SYSTEM_CHECKS by the package (each check named with its reason).
SECURITY_SILENCED_SYSTEM_CHECKS: list[str] = []
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])

if DEBUG:
    SECRET_KEY = SECRET_KEY or _development_secret_key()
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["localhost", "127.0.0.1", "[::1]", "testserver"]
else:
    missing = []
    if _weak_secret_key(SECRET_KEY):
        missing.append(f"SECRET_KEY (at least {SECRET_KEY_MIN_LENGTH} random characters; "
                       "not a django-insecure- key)")
    if not ALLOWED_HOSTS:
        missing.append("ALLOWED_HOSTS (comma-separated host names)")
    if missing:
        raise ImproperlyConfigured(
            "DJANGO_DEBUG is off, so Fusion Billing refuses to start without: "
            + "; ".join(missing)
            + ". Set them in the environment, or set DJANGO_DEBUG=1 for local development."
        )
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # A load balancer's plain-HTTP health probe must not be redirected.
    SECURE_REDIRECT_EXEMPT = [r"^health$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    # Preloading commits the whole domain to HTTPS in browsers' built-in lists: the
    # operator's decision (hstspreload.org), not a default.
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        SECURITY_SILENCED_SYSTEM_CHECKS.append("security.W021")
    # Only a proxy that sets this header itself (and drops it from clients) may be
    # trusted with it: opt-in, e.g. SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto.
    _proxy_ssl_header = env.str("SECURE_PROXY_SSL_HEADER", default="")
    if _proxy_ssl_header:
        SECURE_PROXY_SSL_HEADER = (_meta_header_name(_proxy_ssl_header), "https")
