"""Credentials masked out of connection strings, in every form a DSN takes, so that a DSN
can be logged, stored (an import run's ``source``) or shown (error pages) safely.

- libpq ``key=value`` strings are parsed by ``psycopg.conninfo`` exactly as libpq reads
  them (quoting, escapes, spacing) and rebuilt with ``password`` and ``sslpassword``
  masked;
- URIs (``postgresql://``, ``redis://``, ``https://`` ...): the password of the user
  info, up to the *last* ``@`` (people paste unescaped ``/ ? # @ '`` in passwords, which
  urllib then misreads as path or query), and every query parameter whose name speaks
  of a secret (``password``, ``sslpassword``, ``api_key``, ``token`` ...). A PostgreSQL
  URI is then read back by ``psycopg.conninfo``: if a secret parameter still has a value
  other than the mask, everything after the scheme is masked.

Masking errs towards hiding too much: a URI whose query holds an ``@`` loses its host.
"""
from __future__ import annotations

import re

from psycopg.conninfo import conninfo_to_dict, make_conninfo

MASK = "********************"
# libpq's parameters that hold a secret.
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
_SECRET_QUERY_NAME = re.compile(r"pass|secret|token|key", re.IGNORECASE)
_QUERY_PAIR = re.compile(r"([?&;])([^=&#;]*)=([^&#;]*)")
# A libpq pair as text, for strings psycopg cannot parse: password=value, password = 'a \' b'
KV_PASSWORD = re.compile(r"((?<![A-Za-z0-9_])(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s'\"]+)",
                         re.IGNORECASE)
_POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def _mask_query(text: str, mask: str) -> str:
    def masked(match: re.Match[str]) -> str:
        separator, name, value = match.groups()
        return f"{separator}{name}={mask}" if _SECRET_QUERY_NAME.search(name) and value else match.group()

    return _QUERY_PAIR.sub(masked, text)


def redact_url(url: str, *, mask: str = MASK) -> str:
    """A URI with the user info's password and secret query parameters masked."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    at = rest.rfind("@")
    userinfo, tail = (rest[:at], rest[at:]) if at >= 0 else ("", rest)
    if ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        userinfo = f"{user}:{mask}"
    redacted = f"{scheme}://{userinfo}{_mask_query(tail, mask)}"
    if url.lower().startswith(_POSTGRES_SCHEMES) and _secret_survives(redacted, mask):
        return f"{scheme}://{mask}"
    return redacted


def _secret_survives(dsn: str, mask: str) -> bool:
    try:
        params = conninfo_to_dict(dsn)
    except Exception:  # psycopg.ProgrammingError: libpq cannot read it, so cannot connect with it
        return False
    return any(params.get(name) not in (None, "", mask) for name in SECRET_PARAMETERS)


def redact_conninfo(dsn: str, *, mask: str = MASK) -> str:
    """A libpq ``key=value`` string with its secret parameters masked."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:  # not a valid conninfo: mask what looks like a password
        return KV_PASSWORD.sub(lambda m: m.group(1) + mask, dsn)
    if not SECRET_PARAMETERS & params.keys():
        return dsn
    return make_conninfo("", **{k: mask if k in SECRET_PARAMETERS else v for k, v in params.items()})


def redact_dsn(dsn: str, *, mask: str = MASK) -> str:
    """A whole DSN in either of libpq's forms (URI or ``key=value``), secrets masked."""
    if "://" in dsn:
        return redact_url(dsn.strip(), mask=mask)
    return redact_conninfo(dsn, mask=mask)
