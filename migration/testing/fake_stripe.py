"""A local fake of the few Stripe endpoints the go-live preflight reads.

Threaded HTTP server on 127.0.0.1, port 0 (the OS picks a free port). It
speaks what the ``stripe`` library sends and expects back:

- ``GET /v1/customers/{id}``: a customer object with
  ``invoice_settings.default_payment_method`` (or ``{"deleted": true}``);
- ``GET /v1/payment_methods/{id}``: a card payment method;
- unknown ids: HTTP 404 with Stripe's error shape
  (``{"error": {"type": "invalid_request_error", "code": "resource_missing", ...}}``),
  which the library raises as ``stripe.InvalidRequestError``;
- a wrong or missing bearer key: HTTP 401 (``stripe.AuthenticationError``).

Point the library at it with ``stripe.StripeClient(key, base_addresses={"api": fake.url})``
or ``stripe.api_base = fake.url`` (``STRIPE_API_BASE`` setting in Fusion Billing).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class FakeStripeState:
    api_key: str
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: When set, every request answers HTTP 500 (Stripe outage).
    fail_with_500: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def _send(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Request-Id", "req_fake")
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
               error_type: str = "invalid_request_error") -> None:
        error: dict[str, Any] = {"type": error_type, "message": message}
        if code:
            error["code"] = code
        if param:
            error["param"] = param
        self._send(status, {"error": error})

    def do_GET(self) -> None:
        state = self.server.state
        path = urlsplit(self.path).path
        with state.lock:
            state.requests.append(("GET", path))
        if state.fail_with_500:
            self._error(500, "An unknown error occurred", error_type="api_error")
            return
        auth = self.headers.get("Authorization", "")
        if auth != f"Bearer {state.api_key}":
            self._error(401, "Invalid API Key provided: " + auth[-4:].rjust(8, "*"))
            return
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if len(parts) == 3 and parts[:2] == ["v1", "customers"]:
            customer = state.customers.get(parts[2])
            if customer is None:
                self._error(404, f"No such customer: '{parts[2]}'", code="resource_missing", param="id")
            else:
                self._send(200, customer)
            return
        if len(parts) == 3 and parts[:2] == ["v1", "payment_methods"]:
            method = state.payment_methods.get(parts[2])
            if method is None:
                self._error(404, f"No such PaymentMethod: '{parts[2]}'", code="resource_missing", param="id")
            else:
                self._send(200, method)
            return
        self._error(404, f"Unrecognized request URL (GET: {path}).")

    def do_POST(self) -> None:  # the preflight never writes to Stripe
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._error(405, "The fake Stripe server is read-only.")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: FakeStripeState):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class FakeStripe:
    """Start with ``start()`` (or as a context manager); read ``url``."""

    def __init__(self, api_key: str = "sk_test_fake"):
        self.state = FakeStripeState(api_key=api_key)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def api_key(self) -> str:
        return self.state.api_key

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeStripe not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        return list(self.state.requests)

    def start(self) -> "FakeStripe":
        self._server = _Server(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-stripe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeStripe":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- fixtures ------------------------------------------------------------------
    def add_customer(self, customer_id: str, *, default_payment_method: str | None = None,
                     email: str | None = None, deleted: bool = False) -> dict[str, Any]:
        if deleted:
            body: dict[str, Any] = {"id": customer_id, "object": "customer", "deleted": True}
        else:
            body = {
                "id": customer_id,
                "object": "customer",
                "email": email,
                "livemode": False,
                "default_source": None,
                "invoice_settings": {
                    "default_payment_method": default_payment_method,
                    "custom_fields": None,
                    "footer": None,
                    "rendering_options": None,
                },
            }
        self.state.customers[customer_id] = body
        return body

    def add_card(self, payment_method_id: str, *, customer: str | None, brand: str = "visa",
                 last4: str = "4242", exp_month: int = 12, exp_year: int = 2099) -> dict[str, Any]:
        body = {
            "id": payment_method_id,
            "object": "payment_method",
            "type": "card",
            "customer": customer,
            "livemode": False,
            "card": {"brand": brand, "last4": last4, "exp_month": exp_month, "exp_year": exp_year,
                     "country": "CA", "funding": "credit"},
            "billing_details": {"email": None, "name": None},
        }
        self.state.payment_methods[payment_method_id] = body
        return body

    def add_ready_customer(self, customer_id: str, payment_method_id: str | None = None) -> None:
        """A customer with a usable (attached, unexpired) default card."""
        pm = payment_method_id or "pm_" + customer_id.removeprefix("cus_")
        self.add_card(pm, customer=customer_id)
        self.add_customer(customer_id, default_payment_method=pm)
