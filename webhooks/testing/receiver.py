"""A real local HTTP(S) webhook receiver with injectable faults.

Used by the test suite and ``bench/webhooks.py``. It binds 127.0.0.1 on an ephemeral
port, records every request (path, headers, raw body, arrival time) and answers with
the next queued ``Fault`` for that path, or 200 when none is queued.

    with WebhookReceiver() as receiver:
        receiver.add_faults("/hook", Fault.status(500), Fault.rate_limited(retry_after=7))
        ...post to receiver.url("/hook")...
        receiver.wait_for(3)
"""

from __future__ import annotations

import collections
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Fault:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok"
    delay_seconds: float = 0.0  # ok-float
    # Close the connection without any response after the delay.
    drop: bool = False

    @classmethod
    def ok(cls, status: int = 200) -> Fault:
        return cls(status=status)

    @classmethod
    def status(cls, status: int, body: bytes = b"error") -> Fault:
        return cls(status=status, body=body)

    @classmethod
    def timeout(cls, seconds: float = 3600.0) -> Fault:  # ok-float
        """Hold the request without answering (the sender's timeout must fire)."""
        return cls(delay_seconds=seconds, drop=True)

    @classmethod
    def slow(cls, seconds: float, status: int = 200) -> Fault:  # ok-float
        return cls(status=status, delay_seconds=seconds)

    @classmethod
    def gone(cls) -> Fault:
        return cls(status=410, body=b"gone")

    @classmethod
    def rate_limited(cls, retry_after: int | str, status: int = 429) -> Fault:
        return cls(status=status, headers=(("Retry-After", str(retry_after)),), body=b"slow down")

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Fault:
        return cls(status=status, headers=(("Location", location),), body=b"")

    @classmethod
    def large_body(cls, size: int, status: int = 200) -> Fault:
        return cls(status=status, body=b"x" * size)


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.time() on arrival  # ok-float
    answered_status: int | None = None
    extra: dict = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _handle(self) -> None:
        received_at = time.time()  # ok-float
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path
        request = ReceivedRequest(
            method=self.command,
            path=path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            received_at=received_at,
        )
        receiver = self.server.receiver
        fault = receiver._next_fault(path)
        request.answered_status = None if fault.drop else fault.status
        receiver._record(request)
        if fault.delay_seconds:
            receiver._stopping.wait(fault.delay_seconds)
        if fault.drop:
            self.close_connection = True
            return
        try:
            self.send_response(fault.status)
            for name, value in fault.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(fault.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(fault.body)
        except OSError:
            pass  # the sender gave up (timeout) or closed early (size cap)

    do_POST = _handle
    do_GET = _handle
    do_PUT = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    receiver: WebhookReceiver


class WebhookReceiver:
    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
        self._ssl_context = ssl_context
        self._host = host
        self._lock = threading.Condition()
        self._faults: dict[str, collections.deque[Fault]] = collections.defaultdict(collections.deque)
        self._default_fault = Fault.ok()
        self._stopping = threading.Event()
        self.requests: list[ReceivedRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -----------------------------------------------------------------
    def start(self) -> WebhookReceiver:
        server = _Server((self._host, 0), _Handler)
        server.receiver = self
        if self._ssl_context is not None:
            server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def url(self, path: str = "/hook", *, host: str | None = None) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{host or self._host}:{self.port}{path}"

    # faults --------------------------------------------------------------------
    def add_faults(self, path: str, *faults: Fault) -> None:
        with self._lock:
            self._faults[path].extend(faults)

    def set_default(self, fault: Fault) -> None:
        with self._lock:
            self._default_fault = fault

    def _next_fault(self, path: str) -> Fault:
        with self._lock:
            queue = self._faults.get(path)
            if queue:
                return queue.popleft()
            return self._default_fault

    # observations --------------------------------------------------------------
    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()

    def received(self, path: str | None = None) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def wait_for(self, count: int, *, path: str | None = None, timeout: float = 30.0) -> list[ReceivedRequest]:  # ok-float
        """Block until ``count`` requests (for ``path``) arrived; raise on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                matching = [r for r in self.requests if path is None or r.path == path]
                if len(matching) >= count:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"expected {count} webhook requests, got {len(matching)}")
                self._lock.wait(remaining)
