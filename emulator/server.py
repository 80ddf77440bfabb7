"""The HTTP(S) front of the emulator: threaded server, dispatch, logging, outages, shutdown.

Every ``/v1`` request runs under the emulator's one lock (mutations serialised, reads
consistent), answers JSON with ``Content-Type: application/json``, and is logged as one
line. Nothing a client sends can produce an HTML page or a traceback: parse errors are
400 ``API_CALL_PARSE_ERROR`` and anything unexpected is a 500 with a 999 entry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import ssl
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from emulator import body as bodymod
from emulator import collector, l2l, names
from emulator import retcodes as rc
from emulator.control import Control
from emulator.core import Emulator
from emulator.faults import Faults
from emulator.http1 import RequestHandler
from emulator.metrics import MALFORMED, UNMATCHED, EmulatorMetrics, Exposition
from emulator.routes import ROUTES
from emulator.routing import Request, Route, failure, finish

log = logging.getLogger("emulator")
access_log = logging.getLogger("emulator.access")

MAX_BODY = 16 * 1024 * 1024
#: ``json.dumps(payload, separators=(",", ":"))`` without building an encoder per answer.
_COMPACT = json.JSONEncoder(separators=(",", ":"))
#: Prometheus scrape path on the API listener; no LINSTOR REST path starts with it.
METRICS_PATH = "/metrics"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: EmulatorServer) -> None:
        self.app = app
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.app.tls is not None:
            sock = self.app.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        self.app.track(request, True)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.app.track(request, False)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Expected network failures are one line (or none: a refused handshake is logged by the
        handler already); only a real bug in the emulator carries a traceback."""
        exc = sys.exc_info()[1]
        client = client_address[0] if client_address else "?"
        if isinstance(exc, ConnectionAbortedError):
            return
        if isinstance(exc, OSError):  # resets, broken pipes, timeouts, TLS errors
            log.info("connection from %s ended: %s", client, exc)
            return
        log.warning("connection from %s failed", client, exc_info=True)


class _Handler(RequestHandler):
    protocol_version = "HTTP/1.1"
    # Answers go out in one write, but refusals and 100 Continue in two; without TCP_NODELAY,
    # delayed ACKs would add ~40 ms to those.
    disable_nagle_algorithm = True
    # Idle keep-alive connections are closed after this long, so abandoned clients free their thread.
    timeout = 300
    server_version = "LINSTOR-emulator"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                log.warning("TLS handshake with %s failed: %s", self.client_address[0], exc)
                self.close_connection = True
                raise ConnectionAbortedError from exc

    def log_message(self, format: str, *args: Any) -> None:
        """Access lines are written by :meth:`_respond`; silence the stdlib's own."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed HTTP (bad request line, oversized headers) gets JSON, not the stdlib's HTML page."""
        entry = rc.error(rc.FAIL_INVLD_REQUEST, message or "Malformed HTTP request.")
        data = json.dumps([entry.to_json()]).encode()
        self.close_connection = True
        self._count_unparsed(code)
        with contextlib.suppress(OSError):
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(data)

    def _count_unparsed(self, code: int) -> None:
        """A request the stdlib refused before :meth:`_handle`: counted, but not timed."""
        app: EmulatorServer = self.server.app  # type: ignore[attr-defined]
        if app.metrics is None:
            return
        path = getattr(self, "path", "") or ""
        endpoint = (
            app.endpoint(self.command or "", urlsplit(path).path) if path.startswith("/") else MALFORMED
        )
        app.metrics.observe(self.command, endpoint, code, None)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length:
            n = int(length)
            if n > MAX_BODY:
                raise bodymod.ParseError("request body too large")
            return self.rfile.read(n)
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _handle(self, method: str) -> None:
        app: EmulatorServer = self.server.app  # type: ignore[attr-defined]
        started = time.monotonic()
        url = urlsplit(self.path)
        path = url.path
        try:
            raw = self._read_body()
        except (ValueError, bodymod.ParseError) as exc:
            self.close_connection = True  # the body's extent is unknown; the stream cannot be reused
            self._respond(400, [bodymod.parse_error_entry(str(exc)).to_json()], method, path, started)
            return
        # REST reads build their whole answer at once: see emulator.collector
        with collector.paused() if method == "GET" and path.startswith("/v1/") else contextlib.nullcontext():
            status, payload = app.dispatch(method, path, url.query, raw, self.headers.get("Accept") or "")
            self._respond(status, payload, method, path, started)

    def _respond(self, status: int, payload: Any, method: str, path: str, started: float) -> None:
        if isinstance(payload, Exposition):
            data, ctype = payload.body, payload.content_type
        elif isinstance(payload, bytes | str):
            data = payload.encode() if isinstance(payload, str) else payload
            ctype = "text/plain; charset=utf-8"
        else:
            data = _COMPACT.encode(payload).encode()
            ctype = "application/json"
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers_with_body(data if method != "HEAD" else b"")
        except OSError:
            self.close_connection = True
        app: EmulatorServer = self.server.app  # type: ignore[attr-defined]
        if app.metrics is not None:
            app.metrics.observe(method, app.endpoint(method, path), status, time.monotonic() - started)
        if not access_log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round((time.monotonic() - started) * 1000, 2),
            "client": self.client_address[0] if self.client_address else "",
        }
        if status >= 400:
            fields["error"] = error_message(payload)
        access_log.info("%s %s %d", method, path, status, extra={"fields": fields})


def error_message(payload: Any) -> str:
    """The sentence of a refusal for the access log: the first error entry's message."""
    if isinstance(payload, list):
        for entry in payload:
            if isinstance(entry, dict) and entry.get("message"):
                return str(entry["message"])
    if isinstance(payload, bytes | str):
        text = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
        return text[:200]
    return ""


class EmulatorServer:
    """Owns the listening socket (which an injected outage closes and reopens) and dispatch."""

    def __init__(
        self,
        emu: Emulator,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        *,
        metrics: bool = True,
    ) -> None:
        self.emu = emu
        self.metrics = EmulatorMetrics(emu) if metrics else None
        self.host = host
        self.port = port
        self.tls = tls
        self.faults = Faults()
        self.control = Control(emu, self.faults, self.begin_outage)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[Any] = set()
        self._conns_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._stopping = threading.Event()
        self._outage_until = 0.0

    # ------------------------------------------------------------------ listener

    def start(self) -> None:
        self._listen()

    def _listen(self) -> None:
        server = _Server((self.host, self.port), self)
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        with self._state_lock:
            self._server, self._thread = server, thread
        thread.start()

    def _close_listener(self) -> None:
        with self._state_lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def track(self, conn: Any, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def begin_outage(self, seconds: float) -> None:
        """Drop the listener (clients get connection refused) and bring it back after ``seconds``."""
        self._outage_until = time.monotonic() + seconds
        self._count_fault("outage")

        def run() -> None:
            time.sleep(0.05)  # let the control answer leave first
            log.warning("outage: listener closed for %.1fs", seconds)
            self._close_listener()
            while not self._stopping.is_set() and time.monotonic() < self._outage_until:
                time.sleep(0.05)
            if self._stopping.is_set():
                return
            for _ in range(100):
                try:
                    self._listen()
                    log.warning("outage over: listening again on port %d", self.port)
                    return
                except OSError:
                    time.sleep(0.1)
            log.error("could not reopen the listener after the outage")

        threading.Thread(target=run, name="outage", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        self._close_listener()

    # ------------------------------------------------------------------ dispatch

    def endpoint(self, method: str, path: str) -> str:
        """The metrics label for a path: its route's template, never the raw path."""
        if path.startswith("/_emu/"):
            template = self.control.template(path)
        elif path.rstrip("/") == METRICS_PATH:
            template = METRICS_PATH
        else:
            template = ROUTES.template_of(method, path)
        return template or UNMATCHED

    def _count_fault(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.fault(kind)

    def _scrape(self, method: str, accept: str) -> tuple[int, Any]:
        if self.metrics is None:
            return 404, "Not Found"
        if method != "GET":
            return 405, [
                rc.error(rc.FAIL_INVLD_REQUEST, f"Method {method} is not allowed on {METRICS_PATH}").to_json()
            ]
        return 200, self.metrics.exposition(accept)

    def dispatch(self, method: str, path: str, query: str, raw: bytes, accept: str = "") -> tuple[int, Any]:
        if path.startswith("/_emu/l2l/"):
            # LINSTOR-to-LINSTOR data between emulators (see emulator.l2l); injected latency applies,
            # so a test can hold a transfer in the middle.
            delay = self.faults.latency_for(path)
            if delay:
                self._count_fault("latency")
                time.sleep(delay)
            return l2l.handle(self.emu, method, path, query, raw)
        if path.startswith("/_emu/"):
            return self._control(method, path, raw)
        if path.rstrip("/") == METRICS_PATH:
            # Like the control API, the scrape path is outside fault injection.
            return self._scrape(method, accept)
        delay = self.faults.latency_for(path)
        if delay:
            self._count_fault("latency")
            time.sleep(delay)
        injected = self.faults.take_error(method, path)
        if injected is not None:
            self._count_fault("error")
            return injected
        found = ROUTES.match(method, path)
        if found is None:
            return 404, "Not Found"
        if found is False:
            return 405, [
                rc.error(rc.FAIL_INVLD_REQUEST, f"Method {method} is not allowed on {path}").to_json()
            ]
        route, params = found
        req = Request(method, path, params, parse_qs(query, keep_blank_values=True), raw)
        touched = touched_definitions(path, params, req) if route.mutates else set()
        result = self._run(route, req, touched)
        delay = self.faults.latency_for(path, "answer") if route.mutates else 0.0
        if delay:
            self._count_fault("latency")
            time.sleep(delay)
        return result

    def _run(self, route: Route, req: Request, touched: set[str] | None) -> tuple[int, Any]:
        """Run a handler under the state lock; a mutation first reserves the definitions it touches,
        so its host commands can run without the lock (see :mod:`emulator.reservations`)."""
        method, path = req.method, req.path
        reservations = self.emu.reservations
        with self.emu.lock:
            if route.mutates:
                reservations.acquire(touched, self.emu.state.resource_definitions.keys)
                host_delay = self.faults.latency_for(path, "host")
                if host_delay:
                    self._count_fault("latency")
                    reservations.set_delay(host_delay)
            try:
                status, payload = finish(route, route.handler(self.emu, req))
            except bodymod.ParseError as exc:
                return 400, [bodymod.parse_error_entry(str(exc)).to_json()]
            except rc.ApiFailure as exc:
                status, payload = failure(route, exc.entries)
            except Exception as exc:
                report = rc.new_error_report_id()
                log.exception("unexpected error handling %s %s (report %s)", method, path, report)
                status, payload = failure(
                    route,
                    [
                        rc.error(
                            rc.FAIL_IMPL_ERROR,
                            "An unexpected error occurred in the emulator.",
                            cause=type(exc).__name__,
                            details=str(exc),
                            error_report_ids=[report],
                        )
                    ],
                )
            finally:
                if route.mutates:
                    reservations.release()
            if route.mutates:
                # Also after errors: a PUT can change a group and then fail its autoplace.
                self.emu.invalidate_in_use()
                try:
                    self.emu.persist(touched)
                except OSError as exc:
                    log.error("could not save the state: %s", exc)
            return status, payload

    def _control(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
        try:
            body = bodymod.loads(raw)
        except bodymod.ParseError as exc:
            return 400, {"error": str(exc)}
        try:
            return self.control.handle(method, path, body)
        except Exception as exc:
            log.exception("control request %s %s failed", method, path)
            return 500, {"error": f"{type(exc).__name__}: {exc}"}


#: Mutations outside ``/v1/resource-definitions/{rd}`` that may change any definition.
_BROAD = re.compile(r"^/v1/resource-groups/[^/]+(/adjust)?/?$")
#: Deleting backups may delete the local snapshots they came from, in any definition.
_BACKUPS = re.compile(r"^/v1/remotes/[^/]+/backups/?$")


def touched_definitions(path: str, params: dict[str, str], req: Request) -> set[str] | None:
    """Keys of the resource definitions a successful mutation can have changed; None = any.

    New definitions are always saved (they have no cached copy), so only changes to
    existing ones need naming: the ones in the path and the ones a body refers to.
    """
    if _BROAD.match(path) or (req.method == "DELETE" and _BACKUPS.match(path)):
        return None
    keys = {names.key(params[p]) for p in ("rd", "clone") if p in params}
    try:
        data = req.json()
    except bodymod.ParseError:
        data = None  # the handler answers the parse error
    if isinstance(data, dict):
        for field in (
            "to_resource",
            "name",
            "resource_definition_name",
            "rsc_name",
            "src_rsc_name",
            "target_rsc_name",
        ):
            if isinstance(data.get(field), str):
                keys.add(names.key(data[field]))
        for snap in data.get("snapshots") or []:
            if isinstance(snap, dict) and isinstance(snap.get("resource_name"), str):
                keys.add(names.key(snap["resource_name"]))
    return keys


def tls_context(cert: str, key: str, client_ca: str | None) -> ssl.SSLContext:
    """HTTPS; with a client CA, only clients presenting a certificate it signed get in (mTLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
