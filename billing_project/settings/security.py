"""Fail closed: with DEBUG off, refuse to start without a real secret key and hosts."""
import secrets

from django.core.exceptions import ImproperlyConfigured

from .core import DEBUG
from .env import VAR_DIR, env

_INSECURE_MARKERS = ("insecure", "changeme", "change-me", "secret")


def _development_secret_key() -> str:
    """A per-checkout random key, kept so sessions survive a restart of the dev server."""
    path = VAR_DIR / "dev-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])

if DEBUG:
    SECRET_KEY = SECRET_KEY or _development_secret_key()
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["localhost", "127.0.0.1", "[::1]", "testserver"]
else:
    missing = []
    if len(SECRET_KEY) < 32 or SECRET_KEY.lower() in _INSECURE_MARKERS:
        missing.append("SECRET_KEY (at least 32 random characters)")
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
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
