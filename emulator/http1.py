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

    :meth:`parse_request` is this module's own, with the standard handler's outcome for
    every request line and header block.
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
        """Take the request line and the header block apart; False once an error has been answered.

        What it accepts and refuses is what ``BaseHTTPRequestHandler`` accepts and refuses
        (a unit test sends both the same raw requests): an HTTP/1.x version of two decimal
        numbers, a bare ``GET path`` as HTTP/0.9, 505 for version 2 and above, 431 for a
        header block past the limits; keep-alive by version and ``Connection``; the interim
        100 answer to ``Expect: 100-continue``.
        """
        self.command = None  # type: ignore[assignment]  # the error page is written for an unknown method
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:
            return False
        if len(words) >= 3 and not self._take_version(words[-1]):
            return False
        if len(words) > 3 or len(words) < 2:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({self.requestline!r})")
            return False
        if len(words) == 2:  # HTTP/0.9 knows GET alone, and no persistent connections
            self.close_connection = True
            if words[0] != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({words[0]!r})")
                return False
        self.command = words[0]
        # A target starting with two slashes would read as a host to a client following it.
        self.path = "/" + words[1].lstrip("/") if words[1].startswith("//") else words[1]
        try:
            self.headers = read_headers(self.rfile)
        except http.client.LineTooLong as exc:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(exc))
            return False
        except http.client.HTTPException as exc:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(exc))
            return False
        persistent = self.protocol_version >= "HTTP/1.1"
        connection = (self.headers.get("Connection") or "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive" and persistent:
            self.close_connection = False
        wants_continue = (self.headers.get("Expect") or "").lower() == "100-continue"
        if wants_continue and persistent and self.request_version >= "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def _take_version(self, word: str) -> bool:
        """Accept ``HTTP/<major>.<minor>`` as the request's version; answer 400 or 505 otherwise."""
        number = word[5:] if word.startswith("HTTP/") else ""
        major, dot, minor = number.partition(".")
        numbers = (major, minor)
        if not dot or not all(n.isdigit() and len(n) <= 10 for n in numbers) or "." in minor:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({word!r})")
            return False
        version = (int(major), int(minor))
        if version >= (1, 1) and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        if version >= (2, 0):
            self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({number})")
            return False
        self.request_version = word
        return True
