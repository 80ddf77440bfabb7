"""The LINSTOR client against a small local fake controller.

The fake is a real HTTP server on a free port, so these tests exercise the real transport:
connection pooling, refused connections, dropped connections, TLS with a generated CA.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from plugin.config import DEFAULT_LIST_PAGE_SIZE, Config, load_config
from plugin.errors import (
    AlreadyExists,
    InUse,
    InvalidArgument,
    NodeOffline,
    NoSpace,
    NotFound,
    OperationFailed,
    Unavailable,
)
from plugin.linstor import retcodes as rc
from plugin.linstor.client import LinstorClient
from testkit.waiting import wait_until
from tests.conftest import require

ERR = rc.MASK_ERROR
Reply = tuple[int, Any] | Callable[["FakeHandler"], None]


@dataclass
class FakeController:
    """Scripted answers per (method, path); every request is recorded."""

    replies: dict[tuple[str, str], list[Reply]] = field(default_factory=dict)
    seen: list[tuple[str, str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def on(self, method: str, path: str, *replies: Reply) -> None:
        self.replies[(method, path)] = list(replies)

    def next_reply(self, method: str, path: str) -> Reply:
        with self.lock:
            queue = self.replies.get((method, path))
            if not queue:
                return 404, "no such path"
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def count(self, method: str, path: str) -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.seen if (m, p) == (method, path))

    @property
    def url(self) -> str:
        assert self.server is not None
        scheme = "https" if isinstance(self.server.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://localhost:{self.server.server_address[1]}"


def send_bytes(
    handler: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str = "application/json"
) -> None:
    """One whole HTTP answer: status, type and length, then ``data``."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeController

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def handle_any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with self.fake.lock:
            self.fake.seen.append((self.command, self.path, body))
        reply = self.fake.next_reply(self.command, self.path)
        if callable(reply):
            reply(self)
            return
        status, payload = reply
        if isinstance(payload, str):
            send_bytes(self, status, payload.encode(), "text/plain")
        else:
            send_bytes(self, status, json.dumps(payload).encode())

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


def drop_connection(handler: FakeHandler) -> None:
    """Read the request, then hang up without answering (the request reached the server)."""
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)


def start_fake(ssl_context: ssl.SSLContext | None = None) -> FakeController:
    fake = FakeController()
    handler = type("Handler", (FakeHandler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
    fake.server = server
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return fake


@contextmanager
def serving_fake(ssl_context: ssl.SSLContext | None = None) -> Iterator[FakeController]:
    """A fake controller answering on a local port (over TLS with ``ssl_context``) until the block ends."""
    controller = start_fake(ssl_context)
    try:
        yield controller
    finally:
        assert controller.server is not None
        controller.server.shutdown()
        controller.server.server_close()


def server_tls(pki: Pki) -> ssl.SSLContext:
    """The server side of TLS with the test CA's server certificate; no client certificate asked."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    return context


PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def clear_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy and no exception to one in the environment, whatever the machine has set."""
    for name in (*PROXY_VARIABLES, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeController]:
    with serving_fake() as controller:
        yield controller


def closed_port() -> int:
    """A port nobody listens on: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_for(*urls: str, **kwargs: Any) -> LinstorClient:
    config = Config(controllers=tuple(urls), connect_timeout=2.0, read_timeout=5.0, config_file=None)
    return LinstorClient(config, backoff=0.01, **kwargs)


def entry(code: int, message: str = "msg", severity: int = ERR, **extra: Any) -> dict[str, Any]:
    value = severity | 0x01000000 | 0x380000 | code  # operation and object bits as the controller adds them
    if value >= 1 << 63:
        value -= 1 << 64  # JSON carries the signed 64-bit value
    return {"ret_code": value, "message": message, **extra}


# ----------------------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        (rc.FAIL_NOT_FOUND_RSC_DFN, 404, NotFound),
        (rc.FAIL_NOT_FOUND_NODE, 404, NotFound),
        (rc.FAIL_EXISTS_RSC_DFN, 500, AlreadyExists),
        (rc.FAIL_EXISTS_RSC_GRP, 500, AlreadyExists),
        (rc.FAIL_NOT_ENOUGH_NODES, 500, NoSpace),
        (rc.FAIL_NOT_ENOUGH_FREE_SPACE, 500, NoSpace),
        (rc.FAIL_IN_USE, 500, InUse),
        (rc.FAIL_NOT_CONNECTED, 500, NodeOffline),
        (rc.FAIL_INVLD_VLM_SIZE, 500, InvalidArgument),
        (202, 500, InvalidArgument),
        (213, 500, InvalidArgument),
        (412, 403, OperationFailed),
        (998, 500, OperationFailed),
        (rc.FAIL_INVLD_PROVIDER, 500, InvalidArgument),
    ],
)
def test_ret_codes_map_to_typed_errors(fake: FakeController, code: int, status: int, error: type) -> None:
    entries = [entry(code, "LINSTOR says no", cause="because")]
    fake.on("DELETE", "/v1/resource-definitions/rd1", (status, entries))
    client = client_for(fake.url)
    with pytest.raises(error) as info:
        client.delete_resource_definition("rd1")
    assert type(info.value) is error
    assert info.value.details["code"] == code
    assert info.value.details["entries"] == entries
    assert "LINSTOR says no" in str(info.value) and "because" in str(info.value)
    assert fake.count("DELETE", "/v1/resource-definitions/rd1") == 1  # a LINSTOR answer is never retried


def test_codes_are_compared_by_masked_bits_not_subsets(fake: FakeController) -> None:
    # 997 (in use) contains all bits of 996 (not enough nodes); a subset test would confuse them.
    fake.on("POST", "/v1/resource-definitions/rd1/autoplace", (500, [entry(rc.FAIL_IN_USE)]))
    with pytest.raises(InUse):
        client_for(fake.url).autoplace("rd1", diskless_on_remaining=False)


def test_206_means_no_space_when_creating_a_resource(fake: FakeController) -> None:
    fake.on("POST", "/v1/resource-definitions/rd1/resources/n1", (500, [entry(rc.FAIL_INVLD_VLM_SIZE)]))
    fake.on(
        "PUT", "/v1/resource-definitions/rd1/volume-definitions/0", (500, [entry(rc.FAIL_INVLD_VLM_SIZE)])
    )
    client = client_for(fake.url)
    with pytest.raises(NoSpace):
        client.create_resource("rd1", "n1")
    with pytest.raises(InvalidArgument):
        client.resize_volume_definition("rd1", 1024)


def test_warnings_and_infos_do_not_raise_and_are_returned(fake: FakeController) -> None:
    entries = [
        entry(3, "modified", severity=0),
        entry(rc.WARN_NOT_CONNECTED, "offline", severity=rc.MASK_WARN),
    ]
    fake.on("POST", "/v1/resource-definitions/rd1/resources/n1/make-available", (200, entries))
    answer = client_for(fake.url).make_available("rd1", "n1")
    assert answer == entries
    assert rc.has_warning(answer, rc.WARN_NOT_CONNECTED)
    assert not rc.has_error(answer, rc.WARN_NOT_CONNECTED)


def test_error_entry_in_a_2xx_answer_still_raises(fake: FakeController) -> None:
    fake.on(
        "POST", "/v1/resource-groups/rg/spawn", (201, [entry(1, severity=0), entry(rc.FAIL_NOT_ENOUGH_NODES)])
    )
    with pytest.raises(NoSpace):
        client_for(fake.url).spawn("rg", "rd1", 1024)


def test_clone_answer_shape_with_messages(fake: FakeController) -> None:
    body = {
        "location": "x",
        "source_name": "a",
        "clone_name": "b",
        "messages": [entry(rc.FAIL_INVLD_PROVIDER)],
    }
    fake.on("POST", "/v1/resource-definitions/a/clone", (500, body))
    with pytest.raises(InvalidArgument) as info:
        client_for(fake.url).clone("a", "b")
    assert info.value.details["code"] == rc.FAIL_INVLD_PROVIDER


def test_plain_404_is_not_found(fake: FakeController) -> None:
    with pytest.raises(NotFound, match="HTTP 404"):
        client_for(fake.url).get_resource_definition("missing")


def test_names_are_url_quoted(fake: FakeController) -> None:
    fake.on("GET", "/v1/resource-definitions/a%2Fb%20c", (200, {"name": "x"}))
    assert client_for(fake.url).get_resource_definition("a/b c").name == "x"


def test_list_parameters_are_repeated(fake: FakeController) -> None:
    fake.on("GET", "/v1/view/resources?resources=a&resources=b&nodes=n1", (200, []))
    assert client_for(fake.url).view_resources(["a", "b"], ["n1"]) == []


def test_redirect_is_explained(fake: FakeController) -> None:
    def redirect(h: FakeHandler) -> None:
        h.send_response(302)
        h.send_header("Location", "https://ctrl:3371/v1/controller/version")
        h.send_header("Content-Length", "0")
        h.end_headers()

    fake.on("GET", "/v1/controller/version", redirect)
    with pytest.raises(OperationFailed, match="LS_CONTROLLERS"):
        client_for(fake.url).controller_version()


# ----------------------------------------------------------------------------- failover and retries


def test_failover_first_controller_down(fake: FakeController) -> None:
    fake.on("GET", "/v1/controller/version", (200, {"version": "1.34.0"}))
    down = f"http://127.0.0.1:{closed_port()}"
    client = client_for(down, fake.url)
    assert client.controller_version().version == "1.34.0"
    assert client.current_controller == fake.url
    before = client.request_count
    client.controller_version()
    assert client.request_count == before + 1  # the good controller is remembered
    assert fake.count("GET", "/v1/controller/version") == 2


def test_post_is_failed_over_when_the_connection_is_refused(fake: FakeController) -> None:
    fake.on("POST", "/v1/resource-groups/rg/spawn", (201, [entry(1, severity=0)]))
    client = client_for(f"http://127.0.0.1:{closed_port()}", fake.url)
    client.spawn("rg", "rd1", 4096)
    assert fake.seen[-1][2] == {"resource_definition_name": "rd1", "volume_sizes": [4096]}


def test_all_controllers_down_is_unavailable_and_fast() -> None:
    client = client_for(f"http://127.0.0.1:{closed_port()}", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(Unavailable) as info:
        client.controller_version()
    assert "no LINSTOR controller reachable" in str(info.value)
    assert len(info.value.details["reasons"]) == 2
    assert client.request_count == 2 * 3  # two controllers, one try plus two retries each


def test_get_is_retried_after_a_dropped_connection(fake: FakeController) -> None:
    fake.on("GET", "/v1/nodes", drop_connection, (200, [{"name": "n1"}]))
    assert [n.name for n in client_for(fake.url).list_nodes()] == ["n1"]
    assert fake.count("GET", "/v1/nodes") == 2


def test_post_is_not_resent_after_it_reached_the_server(fake: FakeController) -> None:
    fake.on("POST", "/v1/resource-groups/rg/spawn", drop_connection, (201, []))
    with pytest.raises(Unavailable, match="may or may not"):
        client_for(fake.url).spawn("rg", "rd1", 4096)
    assert fake.count("POST", "/v1/resource-groups/rg/spawn") == 1


def test_gateway_error_without_linstor_body_is_retried_then_unavailable(fake: FakeController) -> None:
    fake.on("GET", "/v1/nodes", (503, "upstream down"), (200, []))
    assert client_for(fake.url).list_nodes() == []
    fake.on("GET", "/v1/nodes", (502, "bad gateway"))
    with pytest.raises(Unavailable, match="HTTP 502"):
        client_for(fake.url).list_nodes()


def test_read_timeout_on_post_is_unavailable_without_resend(fake: FakeController) -> None:
    release = threading.Event()

    def slow(h: FakeHandler) -> None:
        release.wait(5)
        drop_connection(h)

    fake.on("POST", "/v1/resource-definitions", slow)
    config = Config(controllers=(fake.url,), connect_timeout=1.0, read_timeout=0.3, config_file=None)
    client = LinstorClient(config, backoff=0.01)
    try:
        with pytest.raises(Unavailable, match="no answer within"):
            client.create_resource_definition("rd1", "rg")
    finally:
        release.set()
    assert fake.count("POST", "/v1/resource-definitions") == 1


def test_read_timeout_on_get_is_not_waited_for_again(fake: FakeController) -> None:
    release = threading.Event()

    def hang(h: FakeHandler) -> None:
        release.wait(5)
        drop_connection(h)

    fake.on("GET", "/v1/nodes", hang)
    config = Config(controllers=(fake.url,), connect_timeout=1.0, read_timeout=0.3, config_file=None)
    client = LinstorClient(config, backoff=0.01)
    try:
        with pytest.raises(Unavailable, match="no answer within"):
            client.list_nodes()
    finally:
        release.set()
    assert fake.count("GET", "/v1/nodes") == 1  # one full timeout, not three


def metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_calls_are_counted_and_recorded_as_metrics(fake: FakeController) -> None:
    fake.on("GET", "/v1/resource-definitions/rd1/resources/n1", (200, {"name": "rd1"}))
    fake.on("GET", "/v1/resource-definitions/rd2/resources/n1", (404, [entry(rc.FAIL_NOT_FOUND_RSC)]))
    labels = {"method": "GET", "endpoint": "/v1/resource-definitions/{}/resources/{}"}
    ok_before = metric("linstor_plugin_linstor_requests_total", {**labels, "outcome": "ok"})
    err_before = metric("linstor_plugin_linstor_requests_total", {**labels, "outcome": "error"})
    client = client_for(fake.url)
    client.get_resource("rd1", "n1")
    with pytest.raises(NotFound):
        client.get_resource("rd2", "n1")
    assert client.request_count == 2
    assert metric("linstor_plugin_linstor_requests_total", {**labels, "outcome": "ok"}) == ok_before + 1
    assert metric("linstor_plugin_linstor_requests_total", {**labels, "outcome": "error"}) == err_before + 1


def test_concurrent_use_from_many_threads(fake: FakeController) -> None:
    fake.on("GET", "/v1/nodes", (200, [{"name": "n1"}]))
    client = client_for(fake.url)
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda _: client.list_nodes(), range(200)))
    assert all([n.name for n in r] == ["n1"] for r in results)
    assert client.request_count == 200
    assert fake.count("GET", "/v1/nodes") == 200


# ----------------------------------------------------------------------------- TLS


@dataclass
class Pki:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    require(shutil.which("openssl") is not None, "needs the openssl command to generate test certificates")
    d: Path = tmp_path_factory.mktemp("pki")

    def key_and_csr(name: str, cn: str) -> None:
        openssl(
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
            "-subj",
            f"/CN={cn}",
        )

    for ca in ("ca", "other-ca"):
        openssl(
            "req",
            "-x509",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN=test {ca}",
            "-keyout",
            str(d / f"{ca}.key"),
            "-out",
            str(d / f"{ca}.pem"),
        )
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    key_and_csr("server", "localhost")
    key_and_csr("client", "plugin")
    for name, ext in (("server", ["-extfile", str(d / "server.ext")]), ("client", [])):
        openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.pem"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            str(d / f"{name}.pem"),
            *ext,
        )
    return Pki(
        ca=str(d / "ca.pem"),
        server_cert=str(d / "server.pem"),
        server_key=str(d / "server.key"),
        client_cert=str(d / "client.pem"),
        client_key=str(d / "client.key"),
        other_ca=str(d / "other-ca.pem"),
    )


@pytest.fixture
def tls_fake(pki: Pki) -> Iterator[FakeController]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED  # the controller demands a client certificate
    controller = start_fake(context)
    controller.on("GET", "/v1/controller/version", (200, {"version": "1.34.0"}))
    yield controller
    assert controller.server is not None
    controller.server.shutdown()
    controller.server.server_close()


def tls_client(url: str, ca: str | None, cert: str | None = None, key: str | None = None) -> LinstorClient:
    config = Config(
        controllers=(url,),
        root_ca=ca,
        user_certificate=cert,
        user_key=key,
        connect_timeout=2.0,
        read_timeout=5.0,
        config_file=None,
    )
    return LinstorClient(config, retries=0)


def test_tls_with_ca_and_client_certificate(tls_fake: FakeController, pki: Pki) -> None:
    client = tls_client(tls_fake.url, pki.ca, pki.client_cert, pki.client_key)
    assert client.controller_version().version == "1.34.0"


def test_tls_server_is_verified_by_default(tls_fake: FakeController, pki: Pki) -> None:
    with pytest.raises(Unavailable, match="TLS") as untrusted:
        tls_client(tls_fake.url, None, pki.client_cert, pki.client_key).controller_version()
    assert "set LS_ROOT_CA" in str(untrusted.value)
    with pytest.raises(Unavailable, match="TLS"):
        tls_client(tls_fake.url, pki.other_ca, pki.client_cert, pki.client_key).controller_version()
    assert tls_fake.count("GET", "/v1/controller/version") == 0


def test_tls_without_client_certificate_is_refused(tls_fake: FakeController, pki: Pki) -> None:
    with pytest.raises(Unavailable) as refused:
        tls_client(tls_fake.url, pki.ca).controller_version()
    assert "LS_USER_CERTIFICATE" in str(refused.value)
    assert tls_fake.count("GET", "/v1/controller/version") == 0


def test_tls_key_of_another_certificate_names_both_settings(tls_fake: FakeController, pki: Pki) -> None:
    with pytest.raises(Unavailable) as mismatch:
        tls_client(tls_fake.url, pki.ca, pki.client_cert, pki.server_key).controller_version()
    assert "LS_USER_KEY is not the private key of LS_USER_CERTIFICATE" in str(mismatch.value)


@pytest.mark.parametrize("value", [True, False])
def test_autoplace_always_states_diskless_on_remaining(
    fake: FakeController, monkeypatch: pytest.MonkeyPatch, value: bool
) -> None:
    # The controller reads a missing diskless_on_remaining as false and lets it overwrite the
    # resource group's setting, so the plugin never leaves it out.
    client = client_for(fake.url)
    sent: list[dict[str, object]] = []
    monkeypatch.setattr(client, "request", lambda *args, **kw: sent.append(kw["body"]) or [])
    client.autoplace("rd1", diskless_on_remaining=value)
    client.autoplace("rd1", {"place_count": 2}, diskless_on_remaining=value)
    assert sent == [
        {"diskless_on_remaining": value},
        {"diskless_on_remaining": value, "select_filter": {"place_count": 2}},
    ]


# ----------------------------------------------------------------------------- paged lists


def paged_client(url: str, size: int) -> LinstorClient:
    config = Config(controllers=(url,), read_timeout=5.0, config_file=None, list_page_size=size)
    return LinstorClient(config, backoff=0.01)


def rds(*names: str) -> list[dict[str, Any]]:
    return [{"name": n} for n in names]


RD_PAGE = "/v1/resource-definitions?with_volume_definitions=true&limit=2&offset={}"


def test_lists_are_read_a_page_at_a_time_until_a_short_page(fake: FakeController) -> None:
    fake.on("GET", RD_PAGE.format(0), (200, rds("a", "B")))
    fake.on("GET", RD_PAGE.format(2), (200, rds("c", "D")))
    fake.on("GET", RD_PAGE.format(4), (200, rds("e")))
    fake.on("GET", RD_PAGE.format(6), (200, []))
    got = paged_client(fake.url, 2).iter_resource_definitions()
    assert next(got).name == "a"
    assert [p for _, p, _ in fake.seen] == [RD_PAGE.format(0)]  # nothing read before it is needed
    assert [r.name for r in got] == ["B", "c", "D", "e"]
    # the partly filled last page came after a full one, so the page after it was guessed
    # at, and that read ended with the list
    assert [p for _, p, _ in fake.seen] == [RD_PAGE.format(n) for n in (0, 2, 4, 6)]
    assert not reading_ahead()


def reading_ahead() -> bool:
    return any(t.name == "linstor-read-ahead" for t in threading.enumerate())


def test_the_next_page_is_read_while_a_page_after_a_full_one_is_handed_out(fake: FakeController) -> None:
    fake.on("GET", RD_PAGE.format(0), (200, rds("a", "b")))
    fake.on("GET", RD_PAGE.format(2), (200, rds("c", "d")))
    fake.on("GET", RD_PAGE.format(4), (200, rds("e", "f")))
    fake.on("GET", RD_PAGE.format(6), (200, []))
    got = paged_client(fake.url, 2).iter_resource_definitions()
    assert [next(got).name for _ in range(3)] == ["a", "b", "c"]  # the first item of the second page
    wait_until(lambda: fake.count("GET", RD_PAGE.format(4)), 5, 0.005, "the third page read ahead")
    assert fake.count("GET", RD_PAGE.format(6)) == 0  # no further than one page ahead
    assert [r.name for r in got] == ["d", "e", "f"]
    assert len(fake.seen) == 4  # whole pages: no read beyond the empty one a full page costs
    assert not reading_ahead()


def test_a_listing_stopped_early_waits_for_its_read_ahead(fake: FakeController) -> None:
    fake.on("GET", RD_PAGE.format(0), (200, rds("a", "b")))
    fake.on("GET", RD_PAGE.format(2), (200, rds("c", "d")))
    fake.on("GET", RD_PAGE.format(4), (200, rds("e", "f")))
    got = paged_client(fake.url, 2).iter_resource_definitions()
    assert [next(got).name for _ in range(3)] == ["a", "b", "c"]  # the third page is read ahead
    got.close()  # the caller found what it wanted
    assert not reading_ahead() and fake.count("GET", RD_PAGE.format(4)) == 1


def test_a_read_ahead_pages_error_is_raised_where_that_page_is_reached(fake: FakeController) -> None:
    fake.on("GET", RD_PAGE.format(0), (200, rds("a", "b")))
    fake.on("GET", RD_PAGE.format(2), (200, rds("c", "d")))
    fake.on("GET", RD_PAGE.format(4), drop_connection)
    got = paged_client(fake.url, 2).iter_resource_definitions()
    assert [next(got).name for _ in range(4)] == ["a", "b", "c", "d"]  # the second page, whole
    with pytest.raises(Unavailable):
        next(got)


def test_a_full_last_page_costs_one_empty_read_and_a_short_list_one_call(fake: FakeController) -> None:
    fake.on("GET", RD_PAGE.format(0), (200, rds("a", "b")))
    fake.on("GET", RD_PAGE.format(2), (200, []))
    assert [r.name for r in paged_client(fake.url, 2).iter_resource_definitions()] == ["a", "b"]
    assert len(fake.seen) == 2
    fake.seen.clear()
    fake.on("GET", "/v1/resource-definitions?limit=5&offset=0", (200, rds("a", "b")))
    listed = paged_client(fake.url, 5).iter_resource_definitions(with_volume_definitions=False)
    assert [r.name for r in listed] == ["a", "b"]
    assert len(fake.seen) == 1


def test_an_item_repeated_by_a_shifted_page_is_handed_out_once(fake: FakeController) -> None:
    # "a0" was made between the two reads: the second page starts with "b" again
    fake.on("GET", RD_PAGE.format(0), (200, rds("a", "b")))
    fake.on("GET", RD_PAGE.format(2), (200, rds("B", "c")))
    fake.on("GET", RD_PAGE.format(4), (200, rds("d")))
    assert [r.name for r in paged_client(fake.url, 2).iter_resource_definitions()] == ["a", "b", "c", "d"]


def test_resources_are_paged_in_definition_then_node_order(fake: FakeController) -> None:
    page = "/v1/view/resources?limit=2&offset={}"
    fake.on(
        "GET", page.format(0), (200, [{"name": "a", "node_name": "n1"}, {"name": "a", "node_name": "n2"}])
    )
    fake.on(
        "GET", page.format(2), (200, [{"name": "a", "node_name": "n2"}, {"name": "b", "node_name": "n1"}])
    )
    fake.on("GET", page.format(4), (200, []))
    got = [(r.name, r.node) for r in paged_client(fake.url, 4).iter_resources()]  # resources: half
    assert got == [("a", "n1"), ("a", "n2"), ("b", "n1")]


def test_page_size_setting_is_checked() -> None:
    assert load_config({"list_page_size": "500"}, env={}).list_page_size == 500
    assert load_config(env={"LS_LIST_PAGE_SIZE": "7"}).list_page_size == 7
    assert load_config(env={}).list_page_size == DEFAULT_LIST_PAGE_SIZE > 1000
    for bad in ("0", "-3", "many"):
        with pytest.raises(InvalidArgument, match="LS_LIST_PAGE_SIZE"):
            load_config(env={"LS_LIST_PAGE_SIZE": bad})


def test_resources_of_some_nodes_are_filtered_by_linstor_then_paged(fake: FakeController) -> None:
    fake.on(
        "GET",
        "/v1/view/resources?nodes=n1&nodes=n2&limit=3&offset=0",
        (200, [{"name": "a", "node_name": "n1"}]),
    )
    assert [r.name for r in paged_client(fake.url, 6).iter_resources(nodes=["n1", "n2"])] == ["a"]


def test_a_page_that_breaks_off_inside_is_an_error_after_its_good_items(fake: FakeController) -> None:
    def broken_page(handler: FakeHandler) -> None:
        send_bytes(handler, 200, b'[{"name": "a"}, {"name": "b"}, {"name": ')

    fake.on("GET", "/v1/resource-definitions?limit=5&offset=0", broken_page)
    listed = paged_client(fake.url, 5).iter_resource_definitions(with_volume_definitions=False)
    assert [next(listed).name, next(listed).name] == ["a", "b"]
    with pytest.raises(OperationFailed, match="malformed JSON"):
        next(listed)


def test_a_failed_page_is_parsed_whole_into_its_typed_error(fake: FakeController) -> None:
    entries = [entry(rc.FAIL_NOT_FOUND_NODE, "no such node")]
    fake.on("GET", RD_PAGE.format(0), (404, entries))
    with pytest.raises(NotFound, match="no such node") as info:
        list(paged_client(fake.url, 2).iter_resource_definitions())
    assert info.value.details["entries"] == entries
