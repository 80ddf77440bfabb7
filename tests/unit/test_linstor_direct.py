"""Calls sent straight to the adapter's urllib3 pool (plugin.linstor.direct) are the adapter's calls.

Every check runs the same call twice: through the pool directly, as the transport does for
a controller without a proxy, and through ``HTTPAdapter.send``, as it did before (and still
does behind a proxy). The bytes on the wire, the answer and, for every way a call can
fail, the exception and the transport's reason, "was it sent" and "timed out" must match.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from urllib3 import exceptions as u3
from urllib3._collections import HTTPHeaderDict

from plugin.config import Config
from plugin.linstor.direct import Answer, Direct, target
from plugin.linstor.prepared import Route
from plugin.linstor.transport import POOL_SIZE, Transport, _Unreachable
from testkit.waiting import wait_until
from tests.unit.test_linstor_client import (
    FakeController,
    Pki,
    clear_proxy_environment,
    closed_port,
    pki,  # noqa: F401 - the module-scoped fixture, shared
    server_tls,
    serving_fake,
)

Serve = Callable[[socket.socket], None]
ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n[{"name":"n"}]'


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_environment(monkeypatch)


# ----------------------------------------------------------------------------- helpers


def read_request(conn: socket.socket) -> bytes:
    """One whole request as it arrived (head and body), or b"" when the client hung up."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class RawServer:
    """A TCP server that hands each connection to ``serve``; it counts the connections made."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.connections = 0
        self.hang_ups = 0  # connections the client closed
        self.requests: list[bytes] = []
        self._open: list[socket.socket] = []
        self.release = threading.Event()  # what hanging servers wait for
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn, contextlib.suppress(OSError):
            self.serve(conn)

    def close(self) -> None:
        self.release.set()
        self._stop.set()
        self._accepting.join()
        self._sock.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join()


@contextmanager
def raw_server(serve: Callable[[RawServer, socket.socket], None]) -> Iterator[RawServer]:
    server = RawServer(lambda conn: serve(server, conn))
    try:
        yield server
    finally:
        server.close()


def keep_answering(server: RawServer, conn: socket.socket) -> None:
    """Record each request and answer it, on one kept-alive connection."""
    while request := read_request(conn):
        server.requests.append(request)
        conn.sendall(ANSWER)
    server.hang_ups += 1


def transport_for(url: str, read_timeout: float = 5.0, **settings: Any) -> Transport:
    config = Config(
        controllers=(url,), connect_timeout=2.0, read_timeout=read_timeout, config_file=None, **settings
    )
    return Transport(config, retries=0, backoff=0.01)


def through_adapter(transport: Transport) -> Transport:
    """The same transport with every call sent through ``HTTPAdapter.send``, as before."""
    transport.routes = {base: dataclasses.replace(r, direct=None) for base, r in transport.routes.items()}
    return transport


def both(url: str, read_timeout: float = 5.0, **settings: Any) -> tuple[Transport, Transport]:
    """A transport that sends straight to the pool, and one that sends through the adapter."""
    direct = transport_for(url, read_timeout, **settings)
    assert direct.routes[url].direct is not None
    return direct, through_adapter(transport_for(url, read_timeout, **settings))


Outcome = tuple[Any, ...]


def outcome(transport: Transport, method: str = "GET", body: Any = None) -> Outcome:
    """What one call to the transport's only controller comes to, as the transport sees it."""
    base = transport.controllers[0]
    try:
        status, payload = transport._send_once(method, base, "/v1/nodes", "/v1/nodes", None, body)
    except _Unreachable as exc:
        return ("unreachable", exc.reason, exc.sent, exc.timed_out)
    return ("answer", status, payload)


def raised(call: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as info:
        call()
    return info.value


# ----------------------------------------------------------------------------- on the wire


CALLS: list[tuple[str, str, Any, Any]] = [
    ("GET", "/v1/nodes", None, None),
    ("GET", "/v1/resource-definitions/pvc%2F1%20x", {"nodes": ["a", "b"], "limit": 2, "skip": None}, None),
    ("GET", "/v1/view/resources?nodes=a", {"resources": "r ü"}, None),
    (
        "POST",
        "/v1/resource-groups/rg/spawn",
        None,
        {"resource_definition_name": "rd", "volume_sizes": [4096]},
    ),
    ("POST", "/v1/resource-definitions/rd/autoplace", None, None),
    ("PUT", "/v1/resource-definitions/rd", None, {"override_props": {"Aux/name": 'ü "x"'}}),
    ("DELETE", "/v1/resource-definitions/rd", {"force": True}, None),
]


def test_the_pool_gets_the_bytes_the_adapter_sends(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with raw_server(keep_answering) as server:
        direct, adapter = both(server.url)
        for method, path, params, body in CALLS:
            answers = [t.exchange(method, server.url, path, params, body) for t in (direct, adapter)]
            assert isinstance(answers[0], Answer)
            assert isinstance(answers[1], requests.Response)
            assert [(a.status_code, a.content, a.json()) for a in answers] == [
                (200, b'[{"name":"n"}]', [{"name": "n"}])
            ] * 2
            assert dict(answers[0].headers) == dict(answers[1].headers)
        sent = server.requests
        assert len(sent) == 2 * len(CALLS)
        assert sent[0::2] == sent[1::2]  # each call, byte for byte, both ways
        assert b"Authorization: Basic " in sent[0]
        assert sent[6].startswith(b"POST /v1/resource-groups/rg/spawn HTTP/1.1\r\n")


def test_connections_are_kept_alive_and_shared_with_the_adapter() -> None:
    with raw_server(keep_answering) as server:
        transport = transport_for(server.url)
        route = transport.routes[server.url]
        assert route.direct is not None
        for _ in range(5):
            assert transport.request("GET", "/v1/nodes") == [{"name": "n"}]
        route.send(route.prepare("GET", "/v1/nodes"))  # the adapter takes the same connection
        assert len(server.requests) == 6
        assert server.connections == 1
        assert route.direct.pool.num_connections == 1
        assert route.direct.pool.pool is not None
        assert route.direct.pool.pool.qsize() == POOL_SIZE  # everything is back in the pool


def test_the_pool_is_the_adapters_own_with_its_size_timeouts_and_retries() -> None:
    transport = transport_for(f"http://127.0.0.1:{closed_port()}", read_timeout=7.0)
    route = transport.routes[transport.controllers[0]]
    assert route.direct is not None
    adapter: Any = route.adapter
    probe = route.prepare("GET", "/v1/nodes")
    options = route.send_options
    pool = adapter.get_connection_with_tls_context(
        probe, options["verify"], options["proxies"], options["cert"]
    )
    assert route.direct.pool is pool
    assert pool.pool is not None and pool.pool.maxsize == POOL_SIZE
    assert (route.direct.timeout.connect_timeout, route.direct.timeout.read_timeout) == (2.0, 7.0)
    assert route.direct.retries is adapter.max_retries


def test_a_closed_transport_still_answers_through_a_new_pool() -> None:
    with raw_server(keep_answering) as server:
        transport = transport_for(server.url)
        transport.request("GET", "/v1/nodes")
        transport.close()
        wait_until(lambda: server.hang_ups == 1, what="the kept-alive connection to be closed")
        assert transport.request("GET", "/v1/nodes") == [{"name": "n"}]
        assert server.connections == 2


def test_a_proxy_keeps_calls_on_the_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "http://controller.invalid:3370"
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert transport_for(url).routes[url].direct is None
    monkeypatch.setenv("NO_PROXY", "controller.invalid")
    assert transport_for(url).routes[url].direct is not None


def test_an_unknown_adapter_keeps_calls_on_it() -> None:
    class Custom(requests.adapters.HTTPAdapter):
        pass

    session = requests.Session()
    session.mount("http://", Custom())
    assert Route.of(session, "http://controller.invalid:3370", (1.0, 1.0)).direct is None


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("http://h:1/v1/nodes", "/v1/nodes"),
        ("http://h:1/v1/nodes?a=1&b=2", "/v1/nodes?a=1&b=2"),
        ("http://h:1", "/"),
        ("http://h:1/base/v1/x?y", "/base/v1/x?y"),
    ],
)
def test_the_request_target_is_requests_path_url(url: str, path: str) -> None:
    prepared = requests.PreparedRequest()
    prepared.url = url
    assert target(url) == prepared.path_url == path


# ----------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"a": "\xc3\xbc"}', "application/json"),
        (b'{"a": "\xff"}', "application/json"),  # not UTF-8: requests replaces the byte
        (b'{"a": "\xc3\xbc"}', "application/json; charset=latin-1"),
        (b'{"a": 1}', "application/json; charset=no-such-codec"),
        (b"[]", None),
        (b'\xef\xbb\xbf{"a": 1}', None),
        ('{"a": "ü"}'.encode("utf-16"), None),
        ("[1, 2]".encode("utf-32-le"), "application/octet-stream"),
        (b"upstream down", "text/plain"),
        (b"<html></html>", "text/html"),
    ],
)
def test_answers_are_parsed_as_requests_parses_them(content: bytes, content_type: str | None) -> None:
    headers = HTTPHeaderDict({"Content-Type": content_type} if content_type else {})
    response = requests.Response()
    response.status_code = 200
    response.headers = requests.structures.CaseInsensitiveDict(headers)
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    response._content = content
    answer = Answer(200, headers, content)
    try:
        expected: Any = response.json()
    except ValueError:
        assert isinstance(raised(answer.json), ValueError)
    else:
        assert answer.json() == expected


# ----------------------------------------------------------------------------- failures, scripted


POOL_URL = "http://127.0.0.1:9"


def sending_failures() -> list[Exception]:
    pool: Any = None
    conn: Any = None
    return [
        u3.ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer")),
        ConnectionRefusedError(111, "Connection refused"),
        u3.MaxRetryError(
            pool,
            "/v1/nodes",
            u3.NewConnectionError(
                conn, "Failed to establish a new connection: [Errno 111] Connection refused"
            ),
        ),
        u3.MaxRetryError(
            pool, "/v1/nodes", u3.ConnectTimeoutError(conn, "Connection to 127.0.0.1 timed out.")
        ),
        u3.MaxRetryError(pool, "/v1/nodes", u3.SSLError("certificate verify failed")),
        u3.MaxRetryError(pool, "/v1/nodes", u3.ProxyError("Unable to connect to proxy", OSError("x"))),
        u3.MaxRetryError(pool, "/v1/nodes", u3.ResponseError("too many error responses")),
        u3.MaxRetryError(pool, "/v1/nodes", u3.ProtocolError("Connection aborted.")),
        u3.ReadTimeoutError(pool, "/v1/nodes", "Read timed out. (read timeout=5.0)"),
        u3.SSLError("[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] decryption failed"),
        u3.ProxyError("Unable to connect to proxy", OSError("x")),
        u3.InvalidHeader("bad header"),
        u3.LocationParseError("no such place"),  # requests lets it through as it is
        u3.HeaderParsingError([], b"x"),
    ]


def scripted(monkeypatch: pytest.MonkeyPatch, urlopen: Callable[..., Any]) -> tuple[Transport, Transport]:
    """Both kinds of transport, their pool's ``urlopen`` replaced by ``urlopen``."""
    direct, adapter = transport_for(POOL_URL), transport_for(POOL_URL)
    for transport in (direct, adapter):
        route = transport.routes[POOL_URL].direct
        assert route is not None
        monkeypatch.setattr(route.pool, "urlopen", urlopen)  # the pool the adapter picks, too
    return direct, through_adapter(adapter)


def assert_same_failure(direct: Transport, adapter: Transport) -> None:
    ours = raised(lambda: direct.exchange("GET", POOL_URL, "/v1/nodes", None, None))
    theirs = raised(lambda: adapter.exchange("GET", POOL_URL, "/v1/nodes", None, None))
    assert type(ours) is type(theirs)
    assert ours.args == theirs.args
    if isinstance(theirs, requests.RequestException):
        assert outcome(direct) == outcome(adapter)


@pytest.mark.parametrize("failure", sending_failures(), ids=lambda e: type(e).__name__)
def test_a_failed_send_raises_what_the_adapter_raises(
    failure: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise failure

    assert_same_failure(*scripted(monkeypatch, fail))


class BrokenBody:
    """A urllib3 answer whose body cannot be read to its end."""

    status = 200
    reason = "OK"
    headers = HTTPHeaderDict({"Content-Type": "application/json", "Content-Length": "100"})

    def __init__(self, failure: Exception) -> None:
        self.failure = failure

    def stream(self, amt: int, decode_content: bool) -> Iterator[bytes]:
        yield b'[{"name": '
        raise self.failure


@pytest.mark.parametrize(
    "failure",
    [
        u3.ProtocolError("Connection broken: IncompleteRead(10 bytes read, 90 more expected)"),
        u3.DecodeError("Received response with content-encoding: gzip, but failed to decode it."),
        u3.ReadTimeoutError(None, None, "Read timed out."),  # type: ignore[arg-type]
        u3.SSLError("[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] decryption failed"),
        ValueError("something else"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_body_that_breaks_off_raises_what_reading_a_response_raises(
    failure: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_same_failure(*scripted(monkeypatch, lambda *args, **kwargs: BrokenBody(failure)))


# ----------------------------------------------------------------------------- failures, on real sockets


def hang_up(server: RawServer, conn: socket.socket) -> None:
    """Read the request, then close without a word: it reached the server."""
    server.requests.append(read_request(conn))


def never_answer(server: RawServer, conn: socket.socket) -> None:
    server.requests.append(read_request(conn))
    server.release.wait(10)


def stall_in_the_body(server: RawServer, conn: socket.socket) -> None:
    server.requests.append(read_request(conn))
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{")
    server.release.wait(10)


def cut_the_body_short(server: RawServer, conn: socket.socket) -> None:
    server.requests.append(read_request(conn))
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{")


def garble_the_status_line(server: RawServer, conn: socket.socket) -> None:
    server.requests.append(read_request(conn))
    conn.sendall(b"SPDY/3 what\r\n\r\n")


HUNG_UP = "('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))"
CUT_SHORT = "IncompleteRead(2 bytes read, 98 more expected)"


@pytest.mark.parametrize(
    ("serve", "method", "reason", "timed_out"),
    [
        (hang_up, "POST", HUNG_UP, False),
        (never_answer, "GET", "no answer within 0.3s", True),
        (
            stall_in_the_body,
            "GET",
            "HTTPConnectionPool(host='127.0.0.1', port={port}): Read timed out.",
            False,
        ),
        (cut_the_body_short, "PUT", f"('Connection broken: {CUT_SHORT}', {CUT_SHORT})", False),
        (garble_the_status_line, "GET", "('Connection aborted.', BadStatusLine('SPDY/3 what\\r\\n'))", False),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_a_controller_that_fails_mid_call_is_reported_as_before(
    serve: Callable[[RawServer, socket.socket], None], method: str, reason: str, timed_out: bool
) -> None:
    with raw_server(serve) as server:
        direct, adapter = both(server.url, read_timeout=0.3)
        body = {"a": 1} if method != "GET" else None
        ours, theirs = outcome(direct, method, body), outcome(adapter, method, body)
        port = server.url.rsplit(":", 1)[1]
        assert ours == theirs == ("unreachable", reason.format(port=port), True, timed_out)
        assert len(server.requests) == 2  # each reached the server once


def test_a_refused_connection_is_reported_as_never_sent() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    direct, adapter = both(url)
    ours, theirs = outcome(direct, "POST", {"a": 1}), outcome(adapter, "POST", {"a": 1})
    assert ours == theirs == ("unreachable", "[Errno 111] Connection refused", False, False)


# ----------------------------------------------------------------------------- TLS


@pytest.fixture
def https_fake(pki: Pki) -> Iterator[FakeController]:  # noqa: F811 - the imported fixture
    with serving_fake(server_tls(pki)) as controller:
        controller.on("GET", "/v1/nodes", (200, [{"name": "n"}]))
        yield controller


def test_https_goes_straight_to_the_pool_with_the_configured_ca(
    https_fake: FakeController,
    pki: Pki,  # noqa: F811 - the imported fixture
) -> None:
    direct, adapter = both(https_fake.url, root_ca=pki.ca)
    assert outcome(direct) == outcome(adapter) == ("answer", 200, [{"name": "n"}])
    untrusted = both(https_fake.url, root_ca=pki.other_ca)
    failures = [outcome(t) for t in untrusted]
    assert failures[0] == failures[1]
    assert failures[0][0] == "unreachable" and failures[0][2] is False
    assert "certificate verify failed" in failures[0][1] and "LS_ROOT_CA" in failures[0][1]


def test_a_key_that_fails_every_handshake_keeps_calls_on_the_adapter(
    https_fake: FakeController,
    pki: Pki,  # noqa: F811 - the imported fixture
) -> None:
    transport = transport_for(
        https_fake.url, root_ca=pki.ca, user_certificate=pki.client_cert, user_key=pki.server_key
    )
    assert transport.routes[https_fake.url].direct is None
    assert "LS_USER_KEY is not the private key" in outcome(transport)[1]


def test_a_plain_http_controller_needs_no_tls_settings() -> None:
    with serving_fake() as fake:
        fake.on("GET", "/v1/nodes", (200, []))
        direct, adapter = both(fake.url)
        assert outcome(direct) == outcome(adapter) == ("answer", 200, [])
        assert isinstance(direct.routes[fake.url].direct, Direct)
