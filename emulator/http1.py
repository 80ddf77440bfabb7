"""The head of an HTTP/1.x request (request line and header fields), read without the email package.

The standard library's ``BaseHTTPRequestHandler`` hands every request's header block to
``email.parser``, which costs about as much as answering a simple read. Well-formed fields
(``token ":" OWS value CRLF``, the only kind HTTP clients send) are split here with one
regular expression; any other block (folded lines, a stray carriage return, a name with
characters outside ``token``, a line with no colon, a block cut short by the end of the
stream) goes to ``http.client.parse_headers`` itself, so odd input gets exactly the
answer the standard library gives. The limits are the standard library's: lines of at
most 65536 bytes and fewer than 101 lines before the blank one, both refused with 431.
"""

from __future__ import annotations

import http.client
import io
import re
import time
from collections.abc import Iterator
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import IO, ClassVar

#: ``http.client``'s limits: bytes in one header line, and lines in one header block.
MAX_LINE = 65536
MAX_HEADERS = 100

#: A field as HTTP/1.1 writes it: a token, a colon, optional blanks, a value free of CR and LF.
_FIELD = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\r\n]*)\r?\n\Z")
_BLANK = (b"\r\n", b"\n", b"")


class Headers:
    """Header fields in arrival order, looked up by name in any case, the first one winning.

    It answers what ``email.message.Message`` answers for the same fields: ``get``,
    ``h[name]`` (None when absent), ``in``, ``get_all``, ``items``, ``keys``, ``values``.
    """

    __slots__ = ("_fields", "_first")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        first: dict[str, str] = {}
        for name, value in fields:
            first.setdefault(name.lower(), value)
        self._first = first

    def get(self, name: str, failobj: str | None = None) -> str | None:
        return self._first.get(name.lower(), failobj)

    def __getitem__(self, name: str) -> str | None:
        return self._first.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def get_all(self, name: str, failobj: list[str] | None = None) -> list[str] | None:
        key = name.lower()
        values = [v for n, v in self._fields if n.lower() == key]
        return values or failobj

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def keys(self) -> list[str]:
        return [n for n, _ in self._fields]

    def values(self) -> list[str]:
        return [v for _, v in self._fields]

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


def read_headers(rfile: IO[bytes]) -> Headers:
    """Read a header block up to and including its blank line (or the end of the stream).

    Raises ``http.client.LineTooLong`` and ``http.client.HTTPException`` as
    ``http.client.parse_headers`` does, after reading exactly the same bytes.
    """
    lines: list[bytes] = []
    fields: list[tuple[str, str]] | None = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        if line in _BLANK:
            break
        if fields is not None:
            m = _FIELD.match(line.decode("iso-8859-1"))
            if m is None:
                fields = None  # not a plain field: the standard parser decides the whole block
            else:
                fields.append((m[1], m[2]))
    if fields is None:
        message = http.client.parse_headers(io.BytesIO(b"".join(lines)))
        fields = [(str(n), str(v)) for n, v in message.items()]
    return Headers(fields)


class RequestHandler(BaseHTTPRequestHandler):
    """``BaseHTTPRequestHandler`` with :func:`read_headers` and a Date header formatted once a second.

    :meth:`parse_request` is the standard library's (Python 3.11) step for step; only the
    header block is read differently, with the same outcome.
    """

    headers: Headers  # type: ignore[assignment]
    #: (second, its Date header), shared by all handlers; a tuple is swapped whole.
    _date: ClassVar[tuple[int, str]] = (-1, "")

    def date_time_string(self, timestamp: float | None = None) -> str:
        if timestamp is not None:
            return super().date_time_string(timestamp)
        second = int(time.time())
        cached = RequestHandler._date
        if cached[0] != second:
            cached = RequestHandler._date = (second, formatdate(second, usegmt=True))
        return cached[1]

    def end_headers_with_body(self, body: bytes) -> None:
        """``end_headers()`` then ``wfile.write(body)``, as one write: one system call, one segment."""
        if self.request_version != "HTTP/0.9":
            buffer = self._headers_buffer  # type: ignore[attr-defined]
            buffer.append(b"\r\n")
            buffer.append(body)
            body = b"".join(buffer)
            self._headers_buffer = []
        if body:
            self.wfile.write(body)

    def parse_request(self) -> bool:
        self.command = None  # type: ignore[assignment]  # set in case of error on the first line
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if len(words) == 0:
            return False

        if len(words) >= 3:  # enough to determine the protocol version
            version = words[-1]
            try:
                if not version.startswith("HTTP/"):
                    raise ValueError
                base_version_number = version.split("/", 1)[1]
                parts = base_version_number.split(".")
                # RFC 2145 3.1: one dot, two integers compared separately, leading zeros ignored.
                if len(parts) != 2:
                    raise ValueError
                if any(not component.isdigit() for component in parts):
                    raise ValueError("non digit in http version")
                if any(len(component) > 10 for component in parts):
                    raise ValueError("unreasonable length http version")
                version_number = int(parts[0]), int(parts[1])
            except (ValueError, IndexError):
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if version_number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
                self.close_connection = False
            if version_number >= (2, 0):
                self.send_error(
                    HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({base_version_number})"
                )
                return False
            self.request_version = version

        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        # gh-87389: a path starting with '//' reads as a scheme-less absolute URI to clients.
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")

        try:
            self.headers = read_headers(self.rfile)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err))
            return False

        conntype = (self.headers.get("Connection") or "").lower()
        if conntype == "close":
            self.close_connection = True
        elif conntype == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        expect = self.headers.get("Expect") or ""
        if (
            expect.lower() == "100-continue"
            and self.protocol_version >= "HTTP/1.1"
            and self.request_version >= "HTTP/1.1"
        ):
            return self.handle_expect_100()
        return True
