"""Calling a WSGI application in process, as an HTTP server would, without a server.

The Docker plugin's protocol app is plain WSGI; its unit tests call it through
:class:`WsgiClient` with the same environ a server builds (method, path, body, length),
so they need no web framework.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.util import setup_testing_defaults

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class WsgiResponse:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


class WsgiClient:
    """``post(path, data=...)`` and ``get(path)`` against one WSGI app."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def request(self, method: str, path: str, data: bytes | str | None = None) -> WsgiResponse:
        body = data.encode() if isinstance(data, str) else (data or b"")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path.encode().decode("latin-1"),
            "wsgi.input": io.BytesIO(body),
        }
        if data is not None:
            environ["CONTENT_LENGTH"] = str(len(body))
        setup_testing_defaults(environ)
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answer["status"] = int(status.split(" ", 1)[0])
            answer["headers"] = {name.lower(): value for name, value in headers}

        chunks = self.app(environ, start_response)
        payload = b"".join(chunks)
        return WsgiResponse(answer["status"], answer["headers"], payload)

    def post(self, path: str, data: bytes | str | None = None) -> WsgiResponse:
        return self.request("POST", path, data)

    def get(self, path: str) -> WsgiResponse:
        return self.request("GET", path)
