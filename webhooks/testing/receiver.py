"""A real local HTTP(S) webhook receiver with injectable faults.

Used by the test suite and ``bench/webhooks.py``. It binds 127.0.0.1 on an ephemeral
port, records every request (path, headers, raw body, arrival time) and answers with
the next queued ``Fault`` for that path, or 200 when none is queued.

    with WebhookReceiver() as receiver:
        receiver.add_faults("/hook", Fault.error(500), Fault.rate_limited(retry_after=7))
        ...post to receiver.url("/hook")...
        receiver.wait_for(3)
"""

from __future__ import annotations

import collections
import socket
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
    # Answer normally, then close the kept-alive connection without announcing it
    # (as servers do when an idle connection times out).
    close_after: bool = False
    # Send the response one byte at a time, this many seconds apart.
    drip_seconds: float = 0.0  # ok-float
    # Hostile receivers: these exact bytes are the whole response (status line,
    # headers and body, however malformed), then the connection is closed.
    raw: bytes | None = None

    @classmethod
    def ok(cls, status: int = 200) -> Fault:
        return cls(status=status)

    @classmethod
    def error(cls, status: int, body: bytes = b"error") -> Fault:
        return cls(status=status, body=body)

    @classmethod
    def timeout(cls, seconds: float = 3600.0) -> Fault:  # ok-float
        """Hold the request without answering (the sender's timeout must fire)."""
        return cls(delay_seconds=seconds, drop=True)

    @classmethod
    def slow(cls, seconds: float, status: int = 200) -> Fault:  # ok-float
        return cls(status=status, delay_seconds=seconds)

    @classmethod
    def drip(cls, seconds_per_byte: float = 0.5) -> Fault:  # ok-float
        """Answer 200, but so slowly that only an overall deadline stops the sender."""
        return cls(drip_seconds=seconds_per_byte, body=b"dripping slowly")

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

    # Hostile receivers -------------------------------------------------------------
    @classmethod
    def raw_response(cls, data: bytes, *, drip_seconds: float = 0.0) -> Fault:  # ok-float
        """Answer exactly ``data`` (e.g. an odd status line), optionally one byte at a time."""
        return cls(raw=data, drip_seconds=drip_seconds)

    @classmethod
    def huge_header(cls, size: int = 70_000, status: int = 200) -> Fault:
        """One header line longer than any client accepts (http.client: 64 KiB)."""
        return cls.raw_response(
            f"HTTP/1.1 {status} OK\r\nX-Huge: ".encode() + b"h" * size + b"\r\nContent-Length: 2\r\n\r\nok")

    @classmethod
    def many_headers(cls, count: int = 500, status: int = 200) -> Fault:
        lines = b"".join(b"X-H%d: v\r\n" % i for i in range(count))
        return cls.raw_response(f"HTTP/1.1 {status} OK\r\n".encode() + lines + b"Content-Length: 2\r\n\r\nok")

    @classmethod
    def slow_loris(cls, seconds_per_byte: float = 0.3) -> Fault:  # ok-float
        """Status line and headers dripped a byte at a time, never finishing in time."""
        return cls.raw_response(b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"s" * 10_000 + b"\r\n\r\n",
                                drip_seconds=seconds_per_byte)


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.time() on arrival  # ok-float
    answered_status: int | None = None
    client_port: int = 0  # same port = same kept-alive connection
    extra: dict = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, like real receivers

    def setup(self) -> None:
        super().setup()
        # Headers and body are separate writes: without this, Nagle's algorithm and
        # the client's delayed ACK stall every kept-alive response by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.receiver._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.receiver._untrack(self.connection)

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
            client_port=self.client_address[1],
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
        if fault.raw is not None:
            self._raw(fault)
            return
        if fault.drip_seconds:
            self._drip(fault)
            return
        try:
            self.send_response(fault.status)
            for name, value in fault.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(fault.body)))
            self.end_headers()
            self.wfile.write(fault.body)
            if fault.close_after:
                self.close_connection = True
        except OSError:
            pass  # the sender gave up (timeout) or closed early (size cap)

    def _raw(self, fault: Fault) -> None:
        assert fault.raw is not None
        self.close_connection = True
        if fault.drip_seconds:
            self._drip(fault, fault.raw)
            return
        try:
            self.wfile.write(fault.raw)
            self.wfile.flush()
        except OSError:
            pass

    def _drip(self, fault: Fault, response: bytes | None = None) -> None:
        if response is None:
            response = (f"HTTP/1.1 {fault.status} OK\r\nContent-Length: {len(fault.body)}\r\n\r\n").encode() + fault.body
        self.close_connection = True
        for i in range(len(response)):
            if self.server.receiver._stopping.wait(fault.drip_seconds):
                return
            try:
                self.wfile.write(response[i:i + 1])
                self.wfile.flush()
            except OSError:
                return  # the sender gave up

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
        self._connections: set = set()

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
        # Kept-alive connections must not outlive the receiver: a later receiver on
        # the same port would otherwise never see requests sent on them.
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _track(self, conn) -> None:  # noqa: ANN001
        with self._lock:
            self._connections.add(conn)

    def _untrack(self, conn) -> None:  # noqa: ANN001
        with self._lock:
            self._connections.discard(conn)

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
