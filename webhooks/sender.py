"""One SSRF-safe HTTP POST of a webhook body.

* The URL is checked and resolved once by ``webhooks.ssrf.check_url``; the TCP
  connection goes to that exact address (no second DNS lookup). For https the TLS
  handshake still sends SNI and verifies the certificate against the *hostname*.
* Redirects are never followed: a 3xx is returned as a failed attempt.
* One overall deadline (default 15 s) covers connect, TLS, sending and reading; a
  server that drips bytes cannot hold the worker longer than that.
* At most ``max_response_bytes`` of the response body are read.
* Connections are kept alive and reused, but only for the address that this
  delivery's own SSRF check returned (the pool is keyed by the pinned IP).

* Whatever the receiver sends (NUL bytes, invalid UTF-8, odd status lines, huge
  headers, a ``Retry-After`` that is not RFC 9110) ends as an ``AttemptOutcome`` whose
  texts are safe to store (``storable_text``).

Pure module: no Django, no database. Returns an ``AttemptOutcome``; never raises for
network or HTTP problems.
"""

from __future__ import annotations

import email.utils
import heapq
import http.client
import itertools
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from webhooks.ssrf import CheckedTarget, Resolver, UnsafeWebhookUrl, check_url

DEFAULT_TIMEOUT_SECONDS = 15.0  # ok-float
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024
RESPONSE_EXCERPT_CHARS = 1024
USER_AGENT = "FusionBilling-Webhooks/1.0"

# Error kinds stored on every attempt.
KIND_NONE = ""
KIND_HTTP_STATUS = "http_status"
KIND_REDIRECT = "redirect"
KIND_TIMEOUT = "timeout"
KIND_CONNECTION = "connection"
KIND_TLS = "tls"
KIND_SSRF = "ssrf"
KIND_PROTOCOL = "protocol"
# Anything else that went wrong while sending (a bug, an unexpected library error).
KIND_INTERNAL = "internal"

# Upper bound of a parsed Retry-After; the retry policy applies its own, smaller one.
MAX_RETRY_AFTER_SECONDS = 366 * 24 * 3600
_DELTA_SECONDS = re.compile(r"[0-9]+")  # RFC 9110 delta-seconds: ASCII digits only


@dataclass(frozen=True)
class AttemptOutcome:
    status_code: int | None
    duration_ms: int
    response_excerpt: str
    error_kind: str
    error: str
    retry_after_seconds: int | None = None
    connected_ip: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


_default_context: ssl.SSLContext | None = None
_default_context_lock = threading.Lock()


def default_ssl_context() -> ssl.SSLContext:
    global _default_context
    with _default_context_lock:
        if _default_context is None:
            ctx = ssl.create_default_context()
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            _default_context = ctx
        return _default_context


def storable_text(text: str) -> str:
    """``text`` as PostgreSQL and UTF-8 accept it: NUL and lone surrogates replaced."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> int | None:
    """Seconds to wait from a ``Retry-After`` header, per RFC 9110 section 10.2.3.

    ``delta-seconds`` (ASCII digits only: ``²`` is not a number here) or an HTTP-date
    (IMF-fixdate, or the obsolete RFC 850 and asctime forms). Anything else is None.
    The result is bounded by ``MAX_RETRY_AFTER_SECONDS``; a date in the past is 0.
    """
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        # Compare the length first: int() of thousands of digits is refused (and slow).
        if len(value) > len(str(MAX_RETRY_AFTER_SECONDS)):
            return MAX_RETRY_AFTER_SECONDS
        return min(int(value), MAX_RETRY_AFTER_SECONDS)
    if not value.isascii() or len(value) > 64:
        return None
    when = _parse_http_date(value)
    if when is None:
        return None
    current = now or datetime.now(timezone.utc)
    seconds = (when - current).total_seconds()
    return int(min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS))  # ok-float


def _parse_http_date(value: str) -> datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(value)  # IMF-fixdate and asctime
    except (TypeError, ValueError, IndexError, OverflowError):
        when = None
    if when is None:
        try:  # RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
            when = datetime.strptime(value, "%A, %d-%b-%y %H:%M:%S GMT")
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when


class _PinnedMixin:
    """Connect to the vetted address instead of resolving ``self.host`` again."""

    pinned_ip: str

    def _pinned_create_connection(self, address, timeout=None, source_address=None):  # noqa: ANN001
        _host, port = address
        return socket.create_connection((self.pinned_ip, port), timeout, source_address)


class _PinnedHTTPConnection(_PinnedMixin, http.client.HTTPConnection):
    def __init__(self, *, host: str, port: int, pinned_ip: str, timeout: float):  # ok-float
        super().__init__(host, port, timeout=timeout)
        self.pinned_ip = pinned_ip
        self._create_connection = self._pinned_create_connection


class _PinnedHTTPSConnection(_PinnedMixin, http.client.HTTPSConnection):
    def __init__(self, *, host: str, port: int, pinned_ip: str, timeout: float, context: ssl.SSLContext):  # ok-float
        # HTTPSConnection.connect wraps with server_hostname=self.host: SNI and
        # certificate verification use the hostname, not the pinned address.
        super().__init__(host, port, timeout=timeout, context=context)
        self.pinned_ip = pinned_ip
        self._create_connection = self._pinned_create_connection


class _Watchdog:
    """One thread per process enforcing every request's overall deadline.

    A request registers its connection; if the deadline passes first, the socket is
    shut down, which unblocks whatever read or write the sender is waiting in.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []  # ok-float
        self._counter = itertools.count()
        self._pid: int | None = None

    def watch(self, conn: http.client.HTTPConnection, seconds: float) -> _Watch:  # ok-float
        watch = _Watch(conn)
        with self._cond:
            if self._pid != os.getpid():  # first use, or inherited through fork(): no thread here
                self._heap.clear()
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="webhook-deadlines", daemon=True).start()
            heapq.heappush(self._heap, (time.monotonic() + seconds, next(self._counter), watch))
            self._cond.notify()
        return watch

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, _, watch = self._heap[0]
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                heapq.heappop(self._heap)
            watch.fire()


class _Watch:
    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.done = False
        self.expired = False

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            sock = self._conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def finish(self) -> None:
        with self._lock:
            self.done = True


_watchdog = _Watchdog()


class _ConnectionPool:
    """Idle keep-alive connections, keyed by the *vetted* address.

    The key includes the pinned IP from this delivery's own SSRF check, so a
    connection is only ever reused for an address that was just checked again.
    """

    def __init__(self, *, per_key: int = 16, max_idle_seconds: float = 30.0) -> None:  # ok-float
        self._lock = threading.Lock()
        self._idle: dict[tuple, list[tuple[float, http.client.HTTPConnection]]] = {}  # ok-float
        self._per_key = per_key
        self._max_idle = max_idle_seconds
        self._pid = os.getpid()

    def take(self, key: tuple) -> http.client.HTTPConnection | None:
        with self._lock:
            if self._pid != os.getpid():
                self._idle = {}  # sockets inherited through fork() belong to the parent
                self._pid = os.getpid()
            idle = self._idle.get(key)
            now = time.monotonic()
            while idle:
                released, conn = idle.pop()
                if now - released < self._max_idle:
                    return conn
                conn.close()
        return None

    def give_back(self, key: tuple, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._per_key and self._pid == os.getpid():
                idle.append((time.monotonic(), conn))
                return
        conn.close()


_pool = _ConnectionPool()

# A reused connection that the server already closed fails like this before any response.
_STALE_ERRORS = (
    http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
    ssl.SSLEOFError, ssl.SSLZeroReturnError,
)


def _excerpt(data: bytes) -> str:
    text = data[: RESPONSE_EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:RESPONSE_EXCERPT_CHARS]
    return storable_text(text)


def _describe(exc: BaseException) -> str:
    return storable_text(f"{type(exc).__name__}: {exc}"[:500])


def _new_connection(target: CheckedTarget, timeout: float, ssl_context: ssl.SSLContext | None):  # noqa: ANN202  # ok-float
    parsed = target.parsed
    if parsed.scheme == "https":
        return _PinnedHTTPSConnection(
            host=parsed.host, port=parsed.port, pinned_ip=target.pinned_ip, timeout=timeout,
            context=ssl_context or default_ssl_context(),
        )
    return _PinnedHTTPConnection(host=parsed.host, port=parsed.port, pinned_ip=target.pinned_ip, timeout=timeout)


def post_checked(
    *,
    target: CheckedTarget,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float = DEFAULT_TIMEOUT_SECONDS,  # ok-float
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ssl_context: ssl.SSLContext | None = None,
) -> AttemptOutcome:
    parsed = target.parsed
    started = time.monotonic()
    ip = target.pinned_ip

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    def timed_out() -> AttemptOutcome:
        return AttemptOutcome(None, elapsed_ms(), "", KIND_TIMEOUT, f"no response within {timeout:g} s", connected_ip=ip)

    key = (parsed.scheme, parsed.host, parsed.port, ip, id(ssl_context) if ssl_context else None)
    request_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **dict(headers)}
    conn = _pool.take(key)
    reused = conn is not None
    if conn is None:
        conn = _new_connection(target, timeout, ssl_context)
    reusable = False
    while True:
        watch = _watchdog.watch(conn, timeout - (time.monotonic() - started))
        try:
            conn.request("POST", parsed.target, body=body, headers=request_headers)
            response = conn.getresponse()
            data = response.read(max_response_bytes)
            status = response.status
            retry_after = parse_retry_after(response.getheader("Retry-After"))
            location = response.getheader("Location") or ""
            reusable = response.isclosed() and not response.will_close
            break
        except _STALE_ERRORS as exc:
            watch.finish()
            conn.close()
            if reused and not watch.expired:
                reused = False  # the server dropped an idle connection: one fresh try
                conn = _new_connection(target, timeout, ssl_context)
                continue
            if watch.expired:
                return timed_out()
            return AttemptOutcome(None, elapsed_ms(), "", KIND_CONNECTION, _describe(exc), connected_ip=ip)
        except ssl.SSLError as exc:
            conn.close()
            if watch.expired:
                return timed_out()
            return AttemptOutcome(None, elapsed_ms(), "", KIND_TLS, storable_text(f"TLS error: {exc.reason or exc}"),
                                  connected_ip=ip)
        except (TimeoutError, socket.timeout):
            conn.close()
            return timed_out()
        except (http.client.HTTPException, OSError) as exc:
            conn.close()
            if watch.expired:
                return timed_out()
            kind = KIND_PROTOCOL if isinstance(exc, http.client.HTTPException) else KIND_CONNECTION
            return AttemptOutcome(None, elapsed_ms(), "", kind, _describe(exc), connected_ip=ip)
        finally:
            watch.finish()
    if reusable and not watch.expired:
        _pool.give_back(key, conn)
    else:
        conn.close()

    excerpt = _excerpt(data)
    if 200 <= status < 300:
        return AttemptOutcome(status, elapsed_ms(), excerpt, KIND_NONE, "", connected_ip=ip)
    if 300 <= status < 400:
        return AttemptOutcome(
            status, elapsed_ms(), excerpt, KIND_REDIRECT,
            storable_text(f"redirects are not followed (HTTP {status}, Location: {location[:300]})"), connected_ip=ip,
        )
    return AttemptOutcome(
        status, elapsed_ms(), excerpt, KIND_HTTP_STATUS, f"HTTP {status}",
        retry_after_seconds=retry_after if status in (429, 503) else None, connected_ip=ip,
    )


def post_webhook(
    *,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    allow_http_hosts=None,  # noqa: ANN001 - iterable or comma-separated string
    resolver: Resolver | None = None,
    allowed_ports=None,  # noqa: ANN001 - iterable or comma-separated string of host:port
    timeout: float = DEFAULT_TIMEOUT_SECONDS,  # ok-float
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ssl_context: ssl.SSLContext | None = None,
) -> AttemptOutcome:
    """Check ``url`` (resolving it once) and POST ``body`` to the vetted address."""
    started = time.monotonic()
    try:
        target = check_url(url, allow_http_hosts=allow_http_hosts, resolver=resolver, allowed_ports=allowed_ports)
    except UnsafeWebhookUrl as exc:
        return AttemptOutcome(None, int((time.monotonic() - started) * 1000), "", KIND_SSRF,
                              storable_text(f"{exc.code}: {exc}"))
    return post_checked(
        target=target, body=body, headers=headers, timeout=timeout,
        max_response_bytes=max_response_bytes, ssl_context=ssl_context,
    )
