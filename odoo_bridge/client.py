"""The Odoo client: one small transport interface, error classification, lazy
one-client-per-process, version-dependent field names read at connect.

- `Transport` is what the sync code talks to (`call(model, method, args, kwargs)`).
  `JsonRpcTransport` uses odoorpc 0.10.1 over `/jsonrpc` (Odoo 17–21);
  `Json2Transport` speaks Odoo 19's JSON-2 API (`POST /json/2/<model>/<method>`,
  bearer key, real HTTP statuses), the only one from Odoo 22 (`ODOO_TRANSPORT`).
- No Django here: `connection.odoo_settings()` builds the `OdooSettings` from the
  ODOO_* settings.
- Every failure leaves this module as an `OdooError` subclass whose `retryable`
  says what the caller may do: timeouts, connection errors, 5xx and Odoo's
  concurrency errors are retryable; `AccessDenied` never is (ten failed logins
  from one IP lock the bot user out, Odoo reference notes §5).
- odoorpc's DEBUG log prints the API key (`params.args[2]`); `SecretRedactingFilter`
  is installed on its logger whenever a client is built.
"""

from __future__ import annotations

import copy
import hashlib
import http.client
import json
import logging
import os
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol
from urllib.parse import SplitResult, urlsplit

import odoorpc
import odoorpc.error

logger = logging.getLogger(__name__)

ODOORPC_LOGGERS = ("odoorpc", "odoorpc.rpc.jsonrpclib", "odoorpc.odoo")
REDACTED = "**********"

CONCURRENCY_ERROR_NAMES = frozenset({
    "psycopg2.errors.SerializationFailure",
    "psycopg2.errors.LockNotAvailable",
    "psycopg2.errors.DeadlockDetected",
    "psycopg2.extensions.TransactionRollbackError",
    "odoo.exceptions.ConcurrencyError",
    "odoo.exceptions.LockError",
})
ACCESS_DENIED_NAMES = frozenset({"odoo.exceptions.AccessDenied"})


# ---------------------------------------------------------------- errors
class OdooError(Exception):
    """Base of everything the bridge raises about Odoo."""

    retryable = False

    def __init__(self, message: str, *, name: str = "", model: str = "", method: str = ""):
        super().__init__(message)
        self.message = message
        self.name = name
        self.model = model
        self.method = method

    def __str__(self) -> str:
        where = f"{self.model}.{self.method}: " if self.model else ""
        kind = f"[{self.name}] " if self.name else ""
        return f"{where}{kind}{self.message}"


class OdooRetryableError(OdooError):
    """Timeouts, refused connections, 5xx, Odoo concurrency errors: outcome unknown, retry later."""

    retryable = True


class OdooAccessDenied(OdooError):
    """Bad or revoked API key: stop talking to Odoo until a human fixes it."""


class OdooRemoteError(OdooError):
    """Odoo refused the call (ValidationError, UserError, AccessError, ...): retrying won't help."""


class OdooConfigurationError(OdooError):
    """ODOO_URL / ODOO_DB / ODOO_USER / ODOO_API_KEY missing or malformed."""


def classify_exception(exc: BaseException, *, model: str = "", method: str = "") -> OdooError:
    """Map whatever odoorpc/urllib raised onto the bridge's error classes."""
    if isinstance(exc, OdooError):
        return exc
    if isinstance(exc, odoorpc.error.RPCError):
        info = exc.info if isinstance(exc.info, dict) else {}
        data = info.get("data") or {}
        name = data.get("name") or ""
        message = data.get("message") or str(exc)
        if name in ACCESS_DENIED_NAMES or (not info and "Wrong login" in str(exc)):
            return OdooAccessDenied(message, name=name or "odoo.exceptions.AccessDenied", model=model, method=method)
        if name in CONCURRENCY_ERROR_NAMES or name.startswith("psycopg2.errors.") and (
                "serialize" in message or "deadlock" in message or "lock" in message):
            return OdooRetryableError(message, name=name, model=model, method=method)
        return OdooRemoteError(message, name=name, model=model, method=method)
    if isinstance(exc, urllib.error.HTTPError):
        message = f"HTTP {exc.code} {exc.reason}"
        if exc.code >= 500 or exc.code in (408, 429):
            return OdooRetryableError(message, name=f"http.{exc.code}", model=model, method=method)
        return OdooRemoteError(message, name=f"http.{exc.code}", model=model, method=method)
    if isinstance(exc, urllib.error.URLError):
        return OdooRetryableError(f"connection error: {exc.reason}", name="connection", model=model, method=method)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return OdooRetryableError("timed out", name="timeout", model=model, method=method)
    if isinstance(exc, (ConnectionError, http.client.HTTPException, OSError)):
        return OdooRetryableError(f"connection error: {exc!r}", name="connection", model=model, method=method)
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        # a proxy's HTML maintenance page answered instead of Odoo
        return OdooRetryableError("response is not JSON", name="bad_response", model=model, method=method)
    if isinstance(exc, KeyError):
        # odoorpc raises KeyError on an error envelope without data.message (§1.5)
        return OdooRemoteError(f"malformed error envelope: {exc!r}", name="bad_response", model=model, method=method)
    return OdooRemoteError(f"{type(exc).__name__}: {exc}", name=type(exc).__name__, model=model, method=method)


# ---------------------------------------------------------------- settings
@dataclass(frozen=True)
class OdooSettings:
    url: str
    db: str
    user: str
    api_key: str = field(repr=False)
    timeout_seconds: float = 30.0  # ok-float: a timeout, not money
    transport: str = "jsonrpc"

    @property
    def configured(self) -> bool:
        return bool(self.url and self.db and self.user and self.api_key)

    def key_fingerprint(self) -> str:
        """Identifies the credentials without revealing them (to notice a rotated key)."""
        raw = f"{self.url}|{self.db}|{self.user}|{self.api_key}|{self.timeout_seconds}|{self.transport}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- log redaction
class SecretRedactingFilter(logging.Filter):
    """Masks API keys in odoorpc's DEBUG records.

    odoorpc logs the JSON payload dict; on `/jsonrpc` the secret is `params.args[2]`
    (only a top-level `params.password` is masked by odoorpc itself). The filter masks
    that slot structurally and, as a second net, every known secret in the text.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add_secret(self, secret: str) -> None:
        if secret:
            with self._lock:
                self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, dict):
            record.args = {k: _mask_payload(v) for k, v in args.items()}
        elif isinstance(args, tuple):
            record.args = tuple(_mask_payload(v) for v in args)
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        if secrets:
            text = record.getMessage()
            for secret in secrets:
                text = text.replace(secret, REDACTED)
            record.msg, record.args = text, None
        return True


def _mask_payload(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    params = value.get("params")
    if isinstance(params, dict) and isinstance(params.get("args"), list) and len(params["args"]) >= 3:
        masked = copy.deepcopy(value)
        masked["params"]["args"][2] = REDACTED
        return masked
    return value


redacting_filter = SecretRedactingFilter()


def install_log_redaction(secret: str = "") -> None:
    redacting_filter.add_secret(secret)
    for name in ODOORPC_LOGGERS:
        log = logging.getLogger(name)
        if redacting_filter not in log.filters:
            log.addFilter(redacting_filter)


install_log_redaction()


# ---------------------------------------------------------------- transports
class Transport(Protocol):
    def connect(self) -> dict:
        """Authenticate; return the server's version dict."""

    def call(self, model: str, method: str, args: list, kwargs: dict) -> Any:
        """One RPC round trip; raises `OdooError`."""

    def close(self) -> None: ...

    @property
    def round_trips(self) -> int: ...


def _checked_url(settings: OdooSettings) -> SplitResult:
    """The parts of ODOO_URL, once every setting a transport needs is known to be there."""
    if not settings.configured:
        raise OdooConfigurationError("ODOO_URL, ODOO_DB, ODOO_USER and ODOO_API_KEY must all be set")
    parts = urlsplit(settings.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OdooConfigurationError(f"ODOO_URL must be an http(s) base URL, got {settings.url!r}")
    return parts


class JsonRpcTransport:
    """`/jsonrpc` through unmodified odoorpc (stateless: credentials resent on each call)."""

    def __init__(self, settings: OdooSettings) -> None:
        parts = _checked_url(settings)
        self.settings = settings
        self._host = parts.hostname
        self._protocol = "jsonrpc+ssl" if parts.scheme == "https" else "jsonrpc"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._odoo: Any = None
        self._round_trips = 0
        install_log_redaction(settings.api_key)

    @property
    def round_trips(self) -> int:
        return self._round_trips

    def connect(self) -> dict:
        try:
            self._round_trips += 1  # version_info
            odoo = odoorpc.ODOO(self._host, protocol=self._protocol, port=self._port,
                                timeout=self.settings.timeout_seconds)
            self._round_trips += 2  # common.login + res.users.context_get
            odoo.login(self.settings.db, self.settings.user, self.settings.api_key)
        except Exception as exc:  # classify: refused/timeout -> retryable, bad key -> AccessDenied
            raise classify_exception(exc, model="common", method="login") from exc
        self._odoo = odoo
        return {"server_version": odoo.version}

    def call(self, model: str, method: str, args: list, kwargs: dict) -> Any:
        if self._odoo is None:
            self.connect()
        self._round_trips += 1
        try:
            return self._odoo.execute_kw(model, method, list(args), dict(kwargs or {}))
        except Exception as exc:
            raise classify_exception(exc, model=model, method=method) from exc

    def close(self) -> None:
        self._odoo = None


# Positional arguments of the calls the bridge makes -> JSON-2 parameter names (ORM signatures).
JSON2_POSITIONAL = {
    "search": ["domain"], "search_read": ["domain"], "search_count": ["domain"], "read": ["ids", "fields"],
    "create": ["vals_list"], "write": ["ids", "vals"], "unlink": ["ids"], "fields_get": ["allfields"],
    "check_object_reference": ["module", "xml_id"], "context_get": [], "name_search": ["name"],
    "load": ["fields", "data"],
}


class Json2Transport:
    """Odoo 19+ `POST /json/2/<model>/<method>` with `Authorization: bearer <key>` (Odoo reference notes §2).

    Named arguments only (record ids go in `ids`); the response is the bare result and
    errors are real HTTP statuses with a JSON body `{name, message, ...}`.
    """

    def __init__(self, settings: OdooSettings) -> None:
        _checked_url(settings)
        self.settings = settings
        self._base = settings.url.rstrip("/")
        self._round_trips = 0
        install_log_redaction(settings.api_key)

    @property
    def round_trips(self) -> int:
        return self._round_trips

    def _request(self, path: str, body: dict | None, *, model: str, method: str, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json", "User-Agent": "fusion-billing-odoo-bridge/1.0"}
        if auth:
            headers["Authorization"] = f"bearer {self.settings.api_key}"
            headers["X-Odoo-Database"] = self.settings.db
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self._base + path, data=data, headers=headers,
                                         method="POST" if data is not None else "GET")
        self._round_trips += 1
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_seconds) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise self._classify_http(exc, model=model, method=method) from exc
        except Exception as exc:
            raise classify_exception(exc, model=model, method=method) from exc

    @staticmethod
    def _classify_http(exc: urllib.error.HTTPError, *, model: str, method: str) -> OdooError:
        try:
            payload = json.loads(exc.read() or b"{}")
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):  # a pre-release answered a bare JSON string
            payload = {"message": str(payload)}
        name = payload.get("name") or f"http.{exc.code}"
        message = payload.get("message") or f"HTTP {exc.code}"
        if exc.code == 401 or name in ACCESS_DENIED_NAMES:
            return OdooAccessDenied(message, name=name, model=model, method=method)
        if exc.code in (408, 409, 429) or exc.code >= 500 or name in CONCURRENCY_ERROR_NAMES:
            return OdooRetryableError(message, name=name, model=model, method=method)
        return OdooRemoteError(message, name=name, model=model, method=method)

    def connect(self) -> dict:
        version = self._request("/web/version", None, model="web", method="version", auth=False)
        self.call("res.users", "context_get", [], {})  # proves the key; 401 -> AccessDenied
        return {"server_version": version.get("version", "") if isinstance(version, dict) else ""}

    def call(self, model: str, method: str, args: list, kwargs: dict) -> Any:
        names = JSON2_POSITIONAL.get(method, ["ids"])  # action_* methods take the record ids
        body = dict(kwargs or {})
        for name, value in zip(names, args):
            body[name] = value
        if len(args) > len(names):
            raise OdooConfigurationError(f"JSON-2 needs named arguments for {model}.{method}")
        return self._request(f"/json/2/{model}/{method}", body, model=model, method=method)

    def close(self) -> None:
        return None


# ---------------------------------------------------------------- client
@dataclass
class FieldNames:
    """Names and precisions that differ between Odoo versions, read from fields_get."""

    line_uom: str = "product_uom"
    line_taxes: str = "tax_id"
    price_digits: int = 2
    quantity_digits: int = 3
    has_subscriptions: bool = True
    server_version: str = ""


class OdooClient:
    """Thin helpers over a transport, plus what we learnt from fields_get."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.fields = FieldNames()

    @property
    def round_trips(self) -> int:
        return self.transport.round_trips

    def connect(self) -> "OdooClient":
        version = self.transport.connect()
        line_fields = self.call("sale.order.line", "fields_get", [], {"attributes": ["type", "digits", "relation"]})
        order_fields = self.call("sale.order", "fields_get", [], {"attributes": ["type"]})
        self.fields = FieldNames(
            line_uom="product_uom_id" if "product_uom_id" in line_fields else "product_uom",
            line_taxes="tax_ids" if "tax_ids" in line_fields else "tax_id",
            price_digits=_digits(line_fields.get("price_unit"), default=2),
            quantity_digits=_digits(line_fields.get("product_uom_qty"), default=3),
            has_subscriptions="plan_id" in order_fields and "subscription_state" in order_fields,
            server_version=str(version.get("server_version", "")),
        )
        if not self.fields.has_subscriptions:
            raise OdooConfigurationError("sale.order has no plan_id: the Odoo database lacks sale_subscription")
        return self

    def call(self, model: str, method: str, args: list | None = None, kwargs: dict | None = None) -> Any:
        return self.transport.call(model, method, list(args or []), dict(kwargs or {}))

    # ORM helpers (each is exactly one round trip)
    def search_read(self, model: str, domain: list, fields: list[str], *, order: str = "id",
                    limit: int | None = None) -> list[dict]:
        kwargs: dict = {"fields": fields, "order": order}
        if limit:
            kwargs["limit"] = limit
        return self.call(model, "search_read", [domain], kwargs)

    def create(self, model: str, vals_list: list[dict]) -> list[int]:
        """Multi-record create: one round trip for the whole list."""
        if not vals_list:
            return []
        result = self.call(model, "create", [vals_list])
        return [result] if isinstance(result, int) else list(result)

    def write(self, model: str, ids: list[int], vals: dict) -> bool:
        return self.call(model, "write", [list(ids), vals])

    def load(self, model: str, fields: list[str], rows: list[list[str]]) -> dict:
        """``load`` (the import): many records created or updated (``.id``) with different values, in one
        round trip; all or nothing (``ids`` False and ``messages`` when a row is refused)."""
        return self.call(model, "load", [fields, rows])

    def xmlid(self, module: str, name: str) -> int:
        return self.call("ir.model.data", "check_object_reference", [module, name])[1]

    def close(self) -> None:
        self.transport.close()


def _digits(meta: dict | None, *, default: int) -> int:
    digits = (meta or {}).get("digits")
    if isinstance(digits, (list, tuple)) and len(digits) == 2 and digits[1] is not None:
        return int(digits[1])
    return default


# ---------------------------------------------------------------- per process
# One client per worker process (a forked Celery child builds its own) and per thread:
# an odoorpc ODOO instance holds one urllib opener and is not safe to share.
_local = threading.local()


TRANSPORTS: dict[str, Callable[[OdooSettings], Transport]] = {
    "jsonrpc": JsonRpcTransport, "json2": Json2Transport}


def build_client(settings: OdooSettings) -> OdooClient:
    try:
        transport_class = TRANSPORTS[settings.transport]
    except KeyError:
        raise OdooConfigurationError(f"ODOO_TRANSPORT must be one of {sorted(TRANSPORTS)}") from None
    return OdooClient(transport_class(settings)).connect()


def get_client(settings: OdooSettings) -> OdooClient:
    """The connected client of this process/thread, created lazily on first use.

    A change of URL/DB/user/key/timeout (e.g. a rotated key) builds a new one.
    """
    fingerprint = settings.key_fingerprint()
    cached = getattr(_local, "entry", None)
    if cached is not None and cached[0] == os.getpid() and cached[1] == fingerprint:
        return cached[2]
    client = build_client(settings)
    _local.entry = (os.getpid(), fingerprint, client)
    return client


def reset_client() -> None:
    """Forget this thread's client (after AccessDenied, or in tests)."""
    cached = getattr(_local, "entry", None)
    if cached is not None:
        cached[2].close()
    _local.entry = None
