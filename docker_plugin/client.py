"""A minimal client for the plugin's unix socket, speaking exactly as Docker does.

Docker POSTs a JSON body with a trailing newline and no Content-Type to ``/<Method>``;
this client does the same, so tests, the benchmark and operators (checking a running
plugin by hand) exercise the real wire path rather than calling the WSGI app in-process.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from plugin.unix_http import UnixHTTPConnection

DOCKER_HOST = "plugin.moby.localhost"  # the Host header Docker's plugin client sends


class PluginClient:
    """One request per connection, like Docker's plugin client after an idle period."""

    def __init__(self, socket_path: str, timeout: float = 130.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def raw(
        self, path: str, body: bytes | None, method: str = "POST", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = UnixHTTPConnection(self.socket_path, self.timeout, host=DOCKER_HOST)
        try:
            hdrs = {"Accept": "application/vnd.docker.plugins.v1.2+json", **(headers or {})}
            # The plugin may answer and stop reading before the whole body is sent (a body
            # over its bound); that answer is read below, as Docker's Go client does.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def call(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST ``/<method>``; an empty body when ``body`` is None (as for Plugin.Activate)."""
        data = None if body is None else (json.dumps(body) + "\n").encode()
        status, _, payload = self.raw(f"/{method}", data)
        answer = json.loads(payload)
        if not isinstance(answer, dict):
            raise ValueError(f"{method} answered with {type(answer).__name__}, not an object")
        answer["_status"] = status
        return answer

    def health(self) -> dict[str, Any]:
        status, _, payload = self.raw("/health", None, method="GET")
        answer = json.loads(payload)
        answer["_status"] = status
        return answer
