"""Error reports (the DEBUG technical 500/400 pages, error e-mails) never show a credential.

Django's ``SafeExceptionReporterFilter`` hides settings whose *name* looks secret
(``PASSWORD``, ``SECRET_KEY``, ...), but not credentials inside a *value*: ``REDIS_URL``,
``CELERY_BROKER_URL``, ``NEXACLOUD_DSN``, ``ODOO_URL``, or ``DATABASE_URL`` in
``request.META`` (the development server puts the whole process environment there) all
carry their password in the value. This filter also masks, in every setting, request
header/environment value and traceback variable:

- the password of any URL (``postgres://user:pw@host/db`` -> ``postgres://user:********@host/db``,
  ``redis://:pw@host``), and ``password``/``secret``/``token``/``key`` query parameters;
- the ``password`` and ``sslpassword`` of a libpq ``key=value`` DSN (``host=db password=pw``
  and quoted forms), parsed by ``psycopg.conninfo`` (``billing_kit.dsn``).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pprint import pformat
from typing import Any
from django.views.debug import SafeExceptionReporterFilter

from billing_kit.dsn import KV_PASSWORD, redact_conninfo, redact_url

MASK = SafeExceptionReporterFilter.cleansed_substitute

# A URL; its user info may hold anything but whitespace up to an "@" (unescaped quotes,
# slashes and "@" in pasted passwords included).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://(?:[^\s@]*@)*[^\s'\"<>`]*")


def _redact_url(url: str) -> str:
    return redact_url(url, mask=MASK)


def _redact_conninfo(text: str) -> str:
    """A whole ``key=value`` DSN, parsed as libpq does."""
    return redact_conninfo(text, mask=MASK)


_KV_PASSWORD = KV_PASSWORD


def redact_credentials(text: str) -> str:
    """``text`` with every password of a URL or a ``key=value`` DSN replaced by stars."""
    if "://" not in text:
        if "=" not in text or not _KV_PASSWORD.search(text):
            return text
        if "\n" not in text:
            return _redact_conninfo(text)
        return _KV_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    # URLs and the text between them (which may hold key=value DSNs) are redacted apart.
    pieces, last = [], 0
    for match in _URL.finditer(text):
        pieces.append(_KV_PASSWORD.sub(lambda m: m.group(1) + MASK, text[last:match.start()]))
        pieces.append(_redact_url(match.group()))
        last = match.end()
    pieces.append(_KV_PASSWORD.sub(lambda m: m.group(1) + MASK, text[last:]))
    return "".join(pieces)


class _Redacted:
    """Stands in for a traceback variable: shows its representation, credentials masked."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_credentials(value)
    if isinstance(value, (bytes, bytearray, int, float, bool, type(None))):
        return value
    if isinstance(value, Mapping):
        return {k: redact_value(v) for k, v in value.items()}
    if type(value) in (list, tuple, set, frozenset):
        return type(value)(redact_value(v) for v in value)
    try:
        text = pformat(value)
    except Exception:  # Django's page shows "Error in formatting" for these; so do we
        return value
    redacted = redact_credentials(text)
    return value if redacted == text else _Redacted(redacted)


class CredentialMaskingExceptionReporterFilter(SafeExceptionReporterFilter):
    """``DEFAULT_EXCEPTION_REPORTER_FILTER``: Django's filter, plus credentials inside values."""

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        return redact_credentials(cleansed) if isinstance(cleansed, str) else cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [(name, redact_value(value)) for name, value in variables]
