"""Error reports (the DEBUG technical 500/400 pages, error e-mails) never show a credential.

Django's ``SafeExceptionReporterFilter`` hides settings whose *name* looks secret
(``PASSWORD``, ``SECRET_KEY``, ...), but not credentials inside a *value*: ``REDIS_URL``,
``CELERY_BROKER_URL``, ``NEXACLOUD_DSN``, ``ODOO_URL``, or ``DATABASE_URL`` in
``request.META`` (the development server puts the whole process environment there) all
carry their password in the value. This filter also masks, in every setting, request
header/environment value and traceback variable:

- the password of any URL (``postgres://user:pw@host/db`` -> ``postgres://user:********@host/db``,
  ``redis://:pw@host``), and ``password``/``secret``/``token``/``key`` query parameters;
- the ``password`` of a libpq ``key=value`` DSN (``host=db password=pw`` and quoted forms).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pprint import pformat
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.views.debug import SafeExceptionReporterFilter
from psycopg.conninfo import conninfo_to_dict, make_conninfo

MASK = SafeExceptionReporterFilter.cleansed_substitute

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
_SECRET_QUERY_KEY = re.compile(r"pass|secret|token|key", re.IGNORECASE)
# libpq key=value: password=value, password = 'quoted \' value'
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.IGNORECASE)


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL after all (e.g. an invalid port)
        return url
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_QUERY_KEY.search(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _SECRET_QUERY_KEY.search(k) else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_conninfo(text: str) -> str:
    """A whole ``key=value`` DSN, parsed as libpq does."""
    try:
        params = conninfo_to_dict(text)
    except Exception:  # not a DSN: psycopg raises ProgrammingError
        return _KV_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    if "password" not in params:
        return text
    params["password"] = MASK
    return make_conninfo("", **params)


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
