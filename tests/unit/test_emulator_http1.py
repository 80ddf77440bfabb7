"""The emulator's own request-head reading agrees with the standard library's.

``read_headers`` is compared with ``http.client.parse_headers`` on the same raw blocks
(well-formed and not): same fields in the same order, same lookups, same bytes left
for the body, same refusals. The server is then driven over raw sockets, and the same
raw requests are answered byte for byte as with the standard library's
``parse_request`` (the Date header and error entries' times aside).
"""

from __future__ import annotations

import http.client
import io
import random
import re
import socket
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from emulator.config import Config
from emulator.core import Emulator
from emulator.http1 import MAX_HEADERS, MAX_LINE, Headers, read_headers
from emulator.server import EmulatorServer, _Handler
from tests.unit.test_emulator_core import FakeStorage

CRLF = b"\r\n"
BODY = b"{after the head}"

BLOCKS: list[bytes] = [
    b"",
    b"\r\n",
    b"\n",
    b"Host: x\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n",
    b"Host: x\nAccept: */*\n\n",
    b"Content-Length: 12\r\nContent-Type: application/json\r\n\r\n",
    # duplicates and case: the first one wins a lookup, all are kept
    b"X-A: 1\r\nx-a: 2\r\nX-a: 3\r\n\r\n",
    b"Content-Length: 5\r\ncontent-length: 7\r\n\r\n",
    # values: empty, blanks around, obs-text, control characters
    b"X-Empty:\r\nX-Blank: \r\n\r\n",
    b"X: \t value with  spaces \t \r\n\r\n",
    b"X: caf\xe9 \xff \x85 \x0b\x0c\x1c\x1d\x1e \x00\x7f\r\n\r\n",
    b"Connection: close \r\n\r\n",
    b"Connection: Keep-Alive\r\nExpect: 100-Continue\r\n\r\n",
    # obs-fold: continuation lines, and a block that starts with one
    b"X-Fold: a\r\n b\r\n\tc\r\nY: d\r\n\r\n",
    b" X: a\r\nY: b\r\n\r\n",
    b"\tX: a\r\n\r\n",
    # names outside token, a space before the colon, no name, no colon
    b"X Y: 1\r\nZ: 2\r\n\r\n",
    b"X(Y): 1\r\nZ: 2\r\n\r\n",
    b'X"Y: 1\r\n\r\n',
    b"X\x7fY: 1\r\nZ: 2\r\n\r\n",
    b"X\xe9: 1\r\nZ: 2\r\n\r\n",
    b"Content-Length : 5\r\nZ: 2\r\n\r\n",
    b": no name\r\nZ: 2\r\n\r\n",
    b"A: 1\r\ngarbage line\r\nB: 2\r\n\r\n",
    b"garbage\r\n\r\n",
    # stray carriage returns
    b"X: a\rb\r\nY: c\r\n\r\n",
    b"X: a\r\r\nY: c\r\n\r\n",
    b"X: a\r\n\rY: c\r\n\r\n",
    b"\r\r\n",
    # envelope lines the email parser knows
    b"From someone\r\nX: 1\r\n\r\n",
    b"X: 1\r\nFrom someone\r\nY: 2\r\n\r\n",
    b"X: 1\r\nFrom someone\r\n\r\n",
    b"From: someone\r\n\r\n",
    # the stream ends without a blank line, or in the middle of a line
    b"X: 1\r\nY: 2\r\n",
    b"X: 1\r\nY: 2",
    b"X: 1\r\nY: 2\r",
    # Content-Type the email parser would read a body for
    b"Content-Type: multipart/form-data; boundary=zz\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=zz\r\nA: 1\r\nnot a header\r\n--zz\r\n\r\n",
    b"Content-Type: message/rfc822\r\nX: 1\r\n\r\n",
]


def stdlib(raw: bytes) -> tuple[Message | Exception, bytes]:
    stream = io.BytesIO(raw)
    try:
        message: Message | Exception = http.client.parse_headers(stream)
    except http.client.HTTPException as exc:
        message = exc
    return message, stream.read()


def ours(raw: bytes) -> tuple[Headers | Exception, bytes]:
    stream = io.BytesIO(raw)
    try:
        headers: Headers | Exception = read_headers(stream)
    except http.client.HTTPException as exc:
        headers = exc
    return headers, stream.read()


def assert_same(raw: bytes) -> None:
    expected, expected_rest = stdlib(raw)
    got, rest = ours(raw)
    assert rest == expected_rest, raw
    if isinstance(expected, Exception):
        assert type(got) is type(expected), raw
        assert str(got) == str(expected), raw
        return
    assert isinstance(got, Headers), (raw, got)
    assert got.items() == expected.items(), raw
    assert got.keys() == expected.keys()
    assert got.values() == expected.values()
    assert list(got) == list(expected)
    assert len(got) == len(expected)
    names = set(expected) | {"Host", "connection", "CONTENT-LENGTH", "Missing", "expect"}
    for name in names | {n.upper() for n in names} | {n.lower() for n in names}:
        assert got.get(name) == expected.get(name), (raw, name)
        assert got.get(name, "dflt") == expected.get(name, "dflt"), (raw, name)
        assert got[name] == expected[name], (raw, name)
        assert (name in got) == (name in expected), (raw, name)
        assert got.get_all(name) == expected.get_all(name), (raw, name)


@pytest.mark.parametrize("block", BLOCKS, ids=[repr(b)[:40] for b in BLOCKS])
def test_a_header_block_reads_as_the_standard_library_reads_it(block: bytes) -> None:
    assert_same(block + BODY)


def test_the_limits_are_the_standard_librarys() -> None:
    longest = b"X: " + b"a" * (MAX_LINE - 5) + CRLF
    assert len(longest) == MAX_LINE
    for raw in (
        longest + CRLF,
        b"X: " + b"a" * (MAX_LINE - 4) + CRLF + CRLF,
        b"X" * (MAX_LINE + 10),
        b"".join(b"H%d: v\r\n" % i for i in range(MAX_HEADERS - 1)) + CRLF,
        b"".join(b"H%d: v\r\n" % i for i in range(MAX_HEADERS)) + CRLF,
        b"".join(b"H%d: v\r\n" % i for i in range(MAX_HEADERS + 5)) + CRLF,
        b"".join(b" fold %d\r\n" % i for i in range(MAX_HEADERS)) + CRLF,
    ):
        assert_same(raw + BODY)
    assert isinstance(ours(longest + CRLF)[0], Headers)
    assert isinstance(ours(b"X: " + b"a" * (MAX_LINE - 4) + CRLF + CRLF)[0], http.client.LineTooLong)
    too_many = ours(b"".join(b"H%d: v\r\n" % i for i in range(MAX_HEADERS)) + CRLF)[0]
    assert type(too_many) is http.client.HTTPException


def test_random_header_blocks_read_as_the_standard_library_reads_them() -> None:
    pieces = [
        b"Host: x\r\n",
        b"Content-Length: 3\r\n",
        b"content-length: 4\n",
        b"X-A:1\r\n",
        b" folded\r\n",
        b"\tfolded\r\n",
        b"Bad Name: v\r\n",
        b"no colon\r\n",
        b": v\r\n",
        b"X: a\rb\r\n",
        b"X: \x85\x0c\r\n",
        b"From x\r\n",
        b"Connection: close\r\n",
        b"\r",
        b"\n",
        b"\r\n",
    ]
    rng = random.Random(20240611)
    for _ in range(3000):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        assert_same(raw + rng.choice([b"", CRLF, b"\n"]) + BODY)


# ---------------------------------------------------------------------------- the server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmulatorServer]:
    cfg = Config(state_dir=tmp_path / "state", dev_dir=tmp_path / "dev", local_node="here")
    emu = Emulator(cfg, FakeStorage(tmp_path / "pools"))
    emu.bootstrap()
    srv = EmulatorServer(emu, "127.0.0.1", 0, metrics=False)
    srv.start()
    yield srv
    srv.stop()


class Conn:
    """One raw client connection; answers are read by their Content-Length."""

    def __init__(self, server: EmulatorServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.file = self.sock.makefile("rb")

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        status_line = self.file.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers: dict[str, str] = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.lower()] = value.strip()
        body = self.file.read(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, body

    def closed_by_server(self) -> bool:
        return self.file.read(1) == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def conn(server: EmulatorServer) -> Iterator[Conn]:
    c = Conn(server)
    yield c
    c.close()


VERSION = b"GET /v1/controller/version HTTP/1.1\r\nHost: x\r\n\r\n"
GET_HEAD = b"GET /v1/controller/version HTTP/1.1\r\n"
PUT_HEAD = b"PUT /v1/resource-definitions/Nope HTTP/1.1\r\n"


def test_keep_alive_answers_many_requests_on_one_connection(conn: Conn) -> None:
    for _ in range(3):
        conn.send(VERSION)
        status, headers, body = conn.answer()
        assert status == 200 and b"version" in body
        assert "connection" not in headers
    conn.send(VERSION + VERSION)  # pipelined
    assert conn.answer()[0] == 200
    assert conn.answer()[0] == 200
    conn.send(b"GET /v1/controller/version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert conn.answer()[0] == 200
    conn.send(VERSION)
    assert conn.answer()[0] == 200


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /v1/controller/version HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /v1/controller/version HTTP/1.1\r\nconnection: CLOSE\r\n\r\n",
        b"GET /v1/controller/version HTTP/1.0\r\n\r\n",
        b"GET /v1/controller/version HTTP/1.0\r\nHost: x\r\n\r\n",
    ],
)
def test_close_and_http_1_0_end_the_connection_after_the_answer(conn: Conn, raw: bytes) -> None:
    conn.send(raw)
    assert conn.answer()[0] == 200
    assert conn.closed_by_server()


def test_a_body_is_read_by_its_content_length(conn: Conn) -> None:
    body = b'{"resource_definition": {"name": "Http1_Rd"}}'
    conn.send(
        b"POST /v1/resource-definitions HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s"
        % (len(body), body)
        + b"GET /v1/resource-definitions/Http1_Rd HTTP/1.1\r\n\r\n"
    )
    assert conn.answer()[0] == 201
    status, _, got = conn.answer()
    assert status == 200 and b'"name":"Http1_Rd"' in got


def test_expect_100_continue_is_answered_before_the_body(conn: Conn) -> None:
    body = b'{"resource_definition": {"name": "Http1_Expect"}}'
    conn.send(
        b"POST /v1/resource-definitions HTTP/1.1\r\nExpect: 100-continue\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    assert conn.file.readline() == b"HTTP/1.1 100 Continue\r\n"
    assert conn.file.readline() == b"\r\n"
    conn.send(body)
    assert conn.answer()[0] == 201


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"X: " + b"a" * MAX_LINE + CRLF, 431),
        (b"".join(b"H%d: v\r\n" % i for i in range(MAX_HEADERS)), 431),
    ],
    ids=["line too long", "too many headers"],
)
def test_an_oversized_head_is_refused_with_json_and_a_close(conn: Conn, head: bytes, status: int) -> None:
    conn.send(b"GET /v1/controller/version HTTP/1.1\r\n" + head + CRLF)
    got, headers, body = conn.answer()
    assert got == status
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert b'"ret_code"' in body
    assert conn.closed_by_server()


RAW_REQUESTS: list[bytes] = [
    VERSION,
    VERSION + VERSION,
    b"GET /v1/controller/version HTTP/1.0\r\n\r\n",
    b"GET /v1/controller/version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + VERSION,
    b"GET /v1/controller/version HTTP/1.1\r\nConnection: close\r\n\r\n" + VERSION,
    b"GET /v1/controller/version HTTP/1.1\r\nConnection: close \r\n\r\n" + VERSION,
    b"GET /v1/controller/version HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n" + VERSION,
    b"GET /v1/controller/version HTTP/1.1\r\nConnection:\r\n close\r\n\r\n" + VERSION,
    b"GET /v1/controller/version HTTP/01.1\r\nExpect: 100-continue\r\n\r\n",
    b"GET /v1/controller/version HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
    b"GET /v1/controller/version HTTP/1.0\r\nExpect: 100-continue\r\n\r\n",
    b"GET /v1/controller/version\r\n\r\n",
    b"POST /v1/controller/version\r\n\r\n",
    b"HEAD /v1/controller/version\r\n\r\n",
    b"GET /v1/controller/version HTTP/1.1 extra\r\n\r\n",
    b"GET /v1/controller/version HTTP/1.00000000001\r\n\r\n",
    b"GET /v1/controller/version HTTP/0000000001.1\r\n\r\n",
    b"GET /v1/controller/version HTTP/1.\r\n\r\n",
    b"GET /v1/controller/version HTTP/.1\r\n\r\n",
    b"GET /v1/controller/version HTTP/1.-1\r\n\r\n",
    b"GET /v1/controller/version HTTP/\xd9\xa1.1\r\n\r\n",
    b"GET /v1/controller/version http/1.1\r\n\r\n",
    b"GET /v1/controller/version HTTP/3.0\r\nExpect: 100-continue\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /v1/controller/version HTTP/2.0\r\n\r\n",
    b"GET /v1/controller/version HTTP/1.1.1\r\n\r\n",
    b"GET /v1/controller/version HTTP/1.x\r\n\r\n",
    b"GET /v1/controller/version FTP/1.1\r\n\r\n",
    b"GET / v1/controller/version HTTP/1.1\r\n\r\n",
    b"\r\n",
    b"GET //v1//controller/version HTTP/1.1\r\n\r\n",
    b"BREW /v1/controller/version HTTP/1.1\r\n\r\n",
    b"GET /v1/nope HTTP/1.1\r\n\r\n",
    b"GET /v1/controller/version HTTP/1.1\r\nX: " + b"a" * MAX_LINE + b"\r\n\r\n",
    GET_HEAD + b"".join(b"H%d: v\r\n" % i for i in range(MAX_HEADERS)) + CRLF,
    b"GET /v1/controller/version HTTP/1.1\r\nbad header\r\nConnection: close\r\n\r\n" + VERSION,
    b"GET /v1/controller/version HTTP/1.1\r\nX: 1\r\n",
    PUT_HEAD + b"Content-Length: 2\r\n\r\n{}" + VERSION,
    PUT_HEAD + b"Content-Length: 2\r\ncontent-length: 9\r\n\r\n{}" + VERSION,
    PUT_HEAD + b"Content-Length: x\r\n\r\n{}" + VERSION,
    PUT_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" + VERSION,
    PUT_HEAD + b"Content-Length:\r\n 2\r\n\r\n{}" + VERSION,
]

_DATE = re.compile(rb"\r\nDate: [^\r\n]*\r\n")
#: An error entry's time or the version's build time (ISO 8601, UTC: each emulator of the
#: two runs has its own start second); its length does not vary, so Content-Length still holds.
_WHEN = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")


def exchange(server: EmulatorServer, raw: bytes) -> bytes:
    """All the server answers to ``raw`` sent at once, until it closes (it sees the end of the stream)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return _WHEN.sub(b"<when>", _DATE.sub(b"\r\nDate: -\r\n", reply))


def test_raw_requests_are_answered_byte_for_byte_as_with_the_standard_parser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[list[bytes]] = []
    for run in ("ours", "stdlib"):
        if run == "stdlib":
            monkeypatch.setattr(_Handler, "parse_request", BaseHTTPRequestHandler.parse_request)
        cfg = Config(state_dir=tmp_path / run / "state", dev_dir=tmp_path / run / "dev", local_node="here")
        emu = Emulator(cfg, FakeStorage(tmp_path / run / "pools"))
        emu.bootstrap()
        srv = EmulatorServer(emu, "127.0.0.1", 0, metrics=False)
        srv.start()
        try:
            answers.append([exchange(srv, raw) for raw in RAW_REQUESTS])
        finally:
            srv.stop()
    for raw, mine, theirs in zip(RAW_REQUESTS, *answers, strict=True):
        assert mine == theirs, raw
    assert answers[0][0].startswith(b"HTTP/1.1 200 OK\r\n")
