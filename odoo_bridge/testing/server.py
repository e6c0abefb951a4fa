"""A protocol-faithful fake Odoo: a real threaded HTTP server on 127.0.0.1:<port 0>.

Speaks JSON-RPC exactly as reference/odoo.md §1 describes, so that unmodified
odoorpc 0.10.1 talks to it: `POST /web/webclient/version_info`, `GET /web/version`,
`POST /jsonrpc` with services `common` (login, version, authenticate) and `object`
(`execute`, `execute_kw`). Errors are HTTP 200 envelopes with `error.data.name`
and `error.data.message`.

Usage::

    with FakeOdoo(version="17.0") as odoo:
        odoo.url, odoo.db, odoo.login, odoo.api_key
        odoo.faults.add(model="sale.order", method="create", kind="lost_response")
        odoo.run_invoicing_cron(today=date(2026, 12, 1))   # or ir.cron.method_direct_trigger over RPC
        odoo.invoiced_quantity(order_id, product_id)      # Decimal, posted invoices minus refunds

How it invoices (cron, wizard, postpaid lines): see invoicing.py; the books: ledger.py.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from . import business, ledger
from .store import AccessDenied, ConcurrencyError, OdooException, Store

FAULT_KINDS = {"latency", "error", "access_denied", "concurrency", "lost_response", "http_status", "drop"}


@dataclass
class Fault:
    """One injected failure. Matches calls by service/model/method (None = any).

    kinds:
    - ``latency``: sleep ``seconds`` then serve normally;
    - ``error``: Odoo error envelope with ``name``/``message``, nothing is executed;
    - ``access_denied``: `odoo.exceptions.AccessDenied` envelope, nothing executed;
    - ``concurrency``: `psycopg2.errors.SerializationFailure` envelope, nothing executed;
    - ``lost_response``: the call IS executed and committed, then the connection is
      closed without a response (the client cannot tell whether it happened);
    - ``http_status``: a proxy-style HTTP ``status`` (e.g. 502) with an HTML body, nothing executed;
    - ``drop``: the connection is closed without executing anything.
    """

    kind: str
    service: str | None = "object"
    model: str | None = None
    method: str | None = None
    times: int | None = 1
    skip: int = 0
    seconds: float = 0.0  # ok-float: latency, not money
    name: str = "odoo.exceptions.UserError"
    message: str = "Injected failure"
    status: int = 502
    predicate: Callable[[list, dict], bool] | None = None
    fired: int = 0

    def matches(self, service: str, model: str | None, method: str | None, args: list, kwargs: dict) -> bool:
        if self.service is not None and self.service != service:
            return False
        if self.model is not None and self.model != model:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.predicate is not None and not self.predicate(args, kwargs):
            return False
        return True


class FaultPlan:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, kind: str, **kwargs: Any) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        fault = Fault(kind=kind, **kwargs)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, service: str, model: str | None, method: str | None, args: list, kwargs: dict) -> list[Fault]:
        """Faults that fire for this call (a latency fault does not stop others from firing)."""
        fired = []
        with self._lock:
            for fault in self._faults:
                if fault.times is not None and fault.fired >= fault.times:
                    continue
                if not fault.matches(service, model, method, args, kwargs):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.fired += 1
                fired.append(fault)
                if fault.kind != "latency":
                    break
        return fired


@dataclass
class RpcCall:
    path: str
    service: str | None
    method: str | None
    model: str | None
    model_method: str | None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that hung up mid-request is not a test failure


class FakeOdoo:
    def __init__(self, *, version: str = "17.0", db: str = "fusion", login: str = "bot@fusion.test",
                 api_key: str = "fake-odoo-api-key-0123456789abcdef", price_digits: int = 2,
                 quantity_digits: int = 3, currency_digits: int = 2,
                 clock: Callable[[], dt.datetime] | None = None, installed_modules: tuple[str, ...] = ()) -> None:
        self.version = version
        self.major_version = int(version.split(".")[0].split("~")[-1])
        self.db = db
        self.login = login
        self.api_key = api_key
        self.store = Store(major_version=self.major_version, price_digits=price_digits,
                           quantity_digits=quantity_digits, currency_digits=currency_digits, clock=clock,
                           installed_modules=installed_modules)
        self.uid = self.store.xmlid_id("base", "user_admin")
        self.methods = business.Methods(self.store, uid=self.uid)
        self.faults = FaultPlan()
        self.calls: list[RpcCall] = []
        self.failed_logins = 0
        self.access_denied_count = 0
        self._calls_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int = 0

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "FakeOdoo":
        self._listen(self.port)
        return self

    def _listen(self, port: int) -> None:
        handler = _make_handler(self)
        httpd = _QuietServer(("127.0.0.1", port), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-odoo-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def go_down(self) -> None:
        """Stop listening: new connections are refused until `come_up()`."""
        self.stop()

    def come_up(self) -> None:
        """Listen again on the same port (the URL the client knows stays valid)."""
        if self._httpd is None:
            self._listen(self.port)

    @property
    def is_up(self) -> bool:
        return self._httpd is not None

    def __enter__(self) -> "FakeOdoo":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ----------------------------------------------------------------- version
    @property
    def version_info(self) -> dict:
        major, minor = (self.version.split(".") + ["0"])[:2]
        return {"server_version": f"{self.version}+e", "server_version_info": [int(major), int(minor), 0, "final", 0, "e"],
                "server_serie": self.version, "protocol_version": 1}

    # ---------------------------------------------------------------- counters
    def record_call(self, call: RpcCall) -> None:
        with self._calls_lock:
            self.calls.append(call)

    def call_count(self, *, model: str | None = None, method: str | None = None, service: str | None = None) -> int:
        with self._calls_lock:
            return sum(1 for c in self.calls
                       if (model is None or c.model == model) and (method is None or c.model_method == method)
                       and (service is None or c.service == service))

    def call_summary(self) -> Counter:
        with self._calls_lock:
            return Counter(f"{c.model or c.service}.{c.model_method or c.method}" for c in self.calls)

    def reset_counters(self) -> None:
        with self._calls_lock:
            self.calls.clear()

    # ------------------------------------------------------------ Odoo itself
    def revoke_api_key(self) -> None:
        """Like an expired or revoked key: every later call answers AccessDenied."""
        self.api_key = "revoked-" + self.api_key

    def run_invoicing_cron(self, *, today: dt.date) -> list[int]:
        """One pass of the daily recurring-invoice cron; the ids of the invoices it posted."""
        return business.run_invoicing_cron(self.store, today=today)

    def run_expiration_cron(self, *, today: dt.date) -> list[int]:
        """One pass of the weekly expiration cron; the ids of the orders it closed."""
        return business.run_expiration_cron(self.store, today=today)

    def invoiced_quantity(self, order_id: int, product_id: int) -> Decimal:
        return ledger.invoiced_quantity(self.store, order_id, product_id)

    def invoiced_totals(self, order_id: int) -> ledger.Totals:
        return ledger.invoiced_totals(self.store, order_id)

    def invoices(self, order_id: int | None = None) -> list[ledger.InvoiceView]:
        return ledger.invoices(self.store, order_id)

    def register_payment(self, move_id: int, amount: Decimal | None = None) -> None:
        business.register_payment(self.store, move_id=move_id, amount=amount)

    def fail_payment(self, move_id: int, message: str = "Your card was declined.") -> int:
        return business.fail_payment(self.store, move_id=move_id, message=message)

    def reverse_invoice(self, move_id: int) -> int:
        return business.reverse_invoice(self.store, move_id=move_id)

    def records(self, model: str, domain: list | None = None, fields: list[str] | None = None) -> list[dict]:
        """Direct read for test assertions (not counted as an RPC)."""
        with self.store.lock:
            ids = self.store.search(model, domain or [], 0, None, "id")
            return self.store.read(model, ids, fields)

    # ------------------------------------------------------------ dispatching
    def dispatch_jsonrpc(self, params: dict) -> Any:
        service = params.get("service")
        method = params.get("method")
        args = params.get("args") or []
        if service == "common":
            return self._common(method, args)
        if service == "object":
            return self._object(method, args)
        if service == "db":
            if method == "list":
                return [self.db]
            if method == "server_version":
                return self.version_info["server_version"]
            raise OdooException(f"Method not available {method}")
        raise OdooException(f"No such service {service!r}")

    def dispatch_json2(self, model: str, method: str, ids: list, named: dict, context: dict | None = None) -> Any:
        """Named arguments only; record methods get `ids`, @api.model methods must not."""
        from .business import ACTIONS
        from .store import AccessError, PythonValueError

        if method.startswith("_"):  # get_public_method refuses it before anything else
            raise AccessError(f"Private methods (such as '{model}.{method}') cannot be called remotely.")
        record_method = method in JSON2_RECORD_METHODS or (model, method) in ACTIONS
        if ids and not record_method:
            raise PythonValueError(f"cannot call {model}.{method} with ids")
        if model == "ir.model.data" and method == "check_object_reference":
            return self.methods.orm_check_object_reference(model, named.get("module"), named.get("xml_id"))
        if model == "res.users" and method == "context_get":
            return self.methods.orm_context_get(model)
        args = [ids] if record_method else []
        with self.store.lock:
            result = self.methods.call(model, method, args, {**named, "context": context or {}})
        if method == "create" and isinstance(result, int):
            return [result]  # a returned recordset becomes its ids
        return result

    def _common(self, method: str, args: list) -> Any:
        if method == "version":
            return self.version_info
        if method in ("login", "authenticate"):
            db, login, password = args[0], args[1], args[2]
            if self.failed_logins >= 10:
                raise AccessDenied("Too many login failures, please wait a bit before trying again.")
            if db == self.db and login == self.login and password == self.api_key:
                return self.uid
            self.failed_logins += 1
            return False
        if method == "about":
            return "See http://openerp.com"
        raise OdooException(f"Method not found: {method}")

    def _object(self, method: str, args: list) -> Any:
        if method not in ("execute", "execute_kw"):
            raise OdooException(f"Method not found: {method}")
        db, uid, password, model, model_method = args[:5]
        if db != self.db or uid != self.uid or password != self.api_key:
            self.access_denied_count += 1
            raise AccessDenied()
        if method == "execute_kw":
            call_args = args[5] if len(args) > 5 else []
            call_kwargs = args[6] if len(args) > 6 else {}
        else:
            call_args, call_kwargs = list(args[5:]), {}
        if model == "ir.model.data" and model_method == "check_object_reference":
            return self.methods.orm_check_object_reference(model, *call_args)
        with self.store.lock:
            return self.methods.call(model, model_method, list(call_args), dict(call_kwargs or {}))


_JSON2_STATUS = {
    "odoo.exceptions.AccessError": 403, "odoo.exceptions.AccessDenied": 403, "odoo.exceptions.MissingError": 404,
    "builtins.AttributeError": 404, "builtins.KeyError": 404, "odoo.exceptions.UserError": 422,
    "odoo.exceptions.ValidationError": 422, "builtins.ValueError": 422, "builtins.TypeError": 422,
    "odoo.exceptions.LockError": 409,
}
JSON2_RECORD_METHODS = {"read", "write", "unlink"}


def _error_payload(fake: FakeOdoo, name: str, message: str, exc: BaseException | None = None) -> dict:
    debug = "".join(traceback.format_exception(exc)) if exc else "Traceback (most recent call last):\n"
    return {"code": 0 if fake.major_version >= 19 else 200, "message": "Odoo Server Error",
            "data": {"name": name, "debug": debug, "message": message, "arguments": [message], "context": {}}}


def _make_handler(fake: FakeOdoo) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Werkzeug/3.0.1"

        def log_message(self, format: str, *args: Any) -> None:  # silence stderr
            return

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (its timeout): Odoo would just log it

        def _drop(self) -> None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def do_GET(self) -> None:
            if self.path == "/web/version":
                info = fake.version_info
                body = {"version_info": info["server_version_info"], "version": info["server_serie"]}
                self._send(200, json.dumps(body).encode())
                return
            self._not_found()

        def _not_found(self) -> None:
            self._send(404, b"<!doctype html><title>404 Not Found</title><h1>Not Found</h1>", "text/html")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path.startswith("/json/2/"):
                self._json2(raw)
                return
            if self.path not in ("/jsonrpc", "/web/webclient/version_info"):
                self._not_found()
                return
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype not in ("application/json", "application/json-rpc"):
                self._send(400, b"<!doctype html><title>400 Bad Request</title>", "text/html")
                return
            try:
                request = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, b"<!doctype html><title>400 Bad Request</title>", "text/html")
                return
            request_id = request.get("id")
            params = request.get("params") or {}
            call = _describe(self.path, params)
            fake.record_call(call)
            args = params.get("args") or []
            call_args = (args[5] if len(args) > 5 else []) if call.method == "execute_kw" else args[5:]
            call_kwargs = (args[6] if len(args) > 6 else {}) if call.method == "execute_kw" else {}
            faults = fake.faults.take(call.service or "", call.model, call.model_method,
                                      call_args if isinstance(call_args, list) else [], call_kwargs or {})
            lost_after_commit = False
            for fault in faults:
                if fault.kind == "latency":
                    time.sleep(fault.seconds)
                elif fault.kind == "drop":
                    self._drop()
                    return
                elif fault.kind == "http_status":
                    self._send(fault.status, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
                    return
                elif fault.kind in ("error", "access_denied", "concurrency"):
                    if fault.kind == "access_denied":
                        name, message = AccessDenied.odoo_name, "Access Denied"
                    elif fault.kind == "concurrency":
                        name, message = ConcurrencyError.odoo_name, ConcurrencyError().message
                    else:
                        name, message = fault.name, fault.message
                    self._reply(request_id, error=_error_payload(fake, name, message))
                    return
                elif fault.kind == "lost_response":
                    lost_after_commit = True
            if self.path == "/web/webclient/version_info":
                self._reply(request_id, result=fake.version_info)
                return
            try:
                result = fake.dispatch_jsonrpc(params)
            except OdooException as exc:
                self._reply(request_id, error=_error_payload(fake, exc.odoo_name, exc.message, exc))
                return
            except Exception as exc:  # an unexpected bug in the fake still answers like Odoo would
                name = f"builtins.{type(exc).__name__}"
                self._reply(request_id, error=_error_payload(fake, name, str(exc), exc))
                return
            if lost_after_commit:
                self._drop()
                return
            self._reply(request_id, result=result)

        def _json2(self, raw: bytes) -> None:
            """Odoo 19 JSON-2: bearer key, named arguments, bare JSON result, real HTTP statuses (§2)."""
            parts = self.path.split("?")[0].split("/")
            if len(parts) != 5 or not parts[3] or not parts[4]:
                self._not_found()
                return
            model, method = parts[3], parts[4]
            fake.record_call(RpcCall(path="/json/2", service="json2", method=method, model=model,
                                     model_method=method))
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype != "application/json":
                self._json2_error(415, "werkzeug.exceptions.UnsupportedMediaType", "Unsupported Media Type")
                return
            auth = self.headers.get("Authorization") or ""
            scheme, _, key = auth.partition(" ")
            if scheme.lower() != "bearer" or key.strip() != fake.api_key:
                fake.access_denied_count += 1
                self._json2_error(401, "werkzeug.exceptions.Unauthorized", "Invalid apikey")
                return
            try:
                body = json.loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise ValueError
            except ValueError:
                self._json2_error(400, "werkzeug.exceptions.BadRequest", "Invalid JSON data")
                return
            ids = body.pop("ids", None) or []
            context = body.pop("context", None) or {}
            lost = False
            for fault in fake.faults.take("object", model, method, [ids], body):
                if fault.kind == "lost_response":
                    lost = True
                elif fault.kind == "latency":
                    time.sleep(fault.seconds)
                elif fault.kind == "drop":
                    self._drop()
                    return
                elif fault.kind == "http_status":
                    self._send(fault.status, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
                    return
                elif fault.kind == "access_denied":
                    self._json2_error(403, AccessDenied.odoo_name, "Access Denied")
                    return
                elif fault.kind == "concurrency":
                    self._json2_error(409, "odoo.exceptions.LockError", ConcurrencyError().message)
                    return
                elif fault.kind == "error":
                    self._json2_error(_JSON2_STATUS.get(fault.name, 500), fault.name, fault.message)
                    return
            try:
                result = fake.dispatch_json2(model, method, ids, body, context)
            except OdooException as exc:
                self._json2_error(_JSON2_STATUS.get(exc.odoo_name, 500), exc.odoo_name, exc.message)
                return
            except Exception as exc:
                self._json2_error(500, f"builtins.{type(exc).__name__}", str(exc))
                return
            if lost:
                self._drop()
                return
            self._send(200, json.dumps(result).encode())

        def _json2_error(self, status: int, name: str, message: str) -> None:
            body = {"name": name, "message": message, "arguments": [message, status], "context": {}, "debug": ""}
            self._send(status, json.dumps(body).encode())

        def _reply(self, request_id: Any, *, result: Any = None, error: dict | None = None) -> None:
            body: dict = {"jsonrpc": "2.0", "id": request_id}
            if error is not None:
                body["error"] = error
            elif result is not None:  # Odoo omits `result` when the method returns None
                body["result"] = result
            self._send(200, json.dumps(body).encode())

    return Handler


def _describe(path: str, params: dict) -> RpcCall:
    service, method = params.get("service"), params.get("method")
    model = model_method = None
    if path == "/jsonrpc" and service == "object":
        args = params.get("args") or []
        if len(args) >= 5:
            model, model_method = args[3], args[4]
    return RpcCall(path=path, service=service if path == "/jsonrpc" else None,
                   method=method if path == "/jsonrpc" else "version_info", model=model, model_method=model_method)
