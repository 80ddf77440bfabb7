"""REST requests built the way ``requests.Session`` builds them, minus its per-call merging.

``Session.request`` spends about half a millisecond of CPU on every call before a byte is
sent: it merges cookies, hooks, headers, parameters and settings, re-reads the environment
unless told not to, and runs runtime ``Protocol`` checks on its arguments. The plugin's
calls to LINSTOR differ only in method, path, query and JSON body; everything else
(headers, ``.netrc`` credentials, proxies, CA bundle, adapter) is fixed per controller.
So a :class:`Route` decides those once, with the session's own code, when the transport is
made, and each call only fills in the method, URL, headers and body the session would have
produced (a unit test compares the two).

The mounted adapter's ``send`` repeats per-call work of its own (picking the pool from
the URL, checking the CA bundle on disk, building a response with a cookie jar); for a
controller reached without a proxy the route therefore also asks the adapter once which
urllib3 pool it would use and sends there itself (:mod:`plugin.linstor.direct`), with the
adapter's timeouts, retries and TLS settings and the same bytes on the wire (a unit test
compares them). Through a proxy, or with an adapter of another kind, calls go to the
adapter, which pools, proxies, verifies TLS and applies the timeouts exactly as before.

Deliberately not carried over: cookies (LINSTOR sets none; a session would merely replay
what a proxy set) and response hooks (none are registered). Redirects were never followed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_netrc_auth
from urllib3.exceptions import ClosedPoolError

from plugin.linstor.direct import Direct, Reply

JSON_TYPE = "application/json"
BODYLESS_METHODS = frozenset({"GET", "HEAD"})


def query_string(params: Mapping[str, Any] | None) -> str:
    """``params`` encoded as requests encodes them: lists repeat the key, ``None`` is left out."""
    if not params:
        return ""
    pairs: list[tuple[str, Any]] = []
    for key, values in params.items():
        if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
            values = [values]
        pairs.extend((key, value) for value in values if value is not None)
    return urlencode(pairs)


def json_body(body: Any) -> bytes:
    """``body`` as requests sends a ``json=`` argument (UTF-8; NaN and infinities refused)."""
    return json.dumps(body, allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class Route:
    """Everything about reaching one controller that does not change from call to call."""

    base: str
    prefix: str  # the base as requests prepares it, without the trailing slash
    headers: tuple[tuple[str, str], ...]
    authorization: str | None  # from .netrc, sent last as requests adds it
    adapter: BaseAdapter
    send_options: Mapping[str, Any]  # timeout, proxies, verify, cert, stream for adapter.send
    direct: Direct | None = None  # the adapter's pool for this controller, when calls may go straight to it

    @classmethod
    def of(cls, session: requests.Session, base: str, timeout: tuple[float, float]) -> Route:
        """What ``session`` (still trusting the environment) would use for calls to ``base``."""
        settings = session.merge_environment_settings(base, {}, None, None, None)
        auth = get_netrc_auth(base) if session.trust_env else None
        probe = session.prepare_request(requests.Request("GET", base + "/", auth=auth))
        url = str(probe.url)
        adapter = session.get_adapter(base)
        send_options = {
            "stream": False,
            "timeout": timeout,
            "verify": settings["verify"],
            "cert": settings["cert"],
            "proxies": settings["proxies"],
        }
        return cls(
            base=base,
            prefix=url[:-1] if url.endswith("/") else url,
            headers=tuple(
                (name, str(value)) for name, value in probe.headers.items() if name.lower() != "authorization"
            ),
            authorization=probe.headers.get("Authorization"),
            adapter=adapter,
            send_options=send_options,
            direct=Direct.of(adapter, probe, send_options),
        )

    def parts(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> tuple[str, dict[str, str], bytes | None]:
        """URL, headers (in order) and body of the request :meth:`prepare` describes."""
        url = self.prefix + path
        query = query_string(params)
        if query:
            url += ("&" if "?" in path else "?") + query
        headers = dict(self.headers)
        data: bytes | None = None
        if body is not None:
            data = json_body(body)
            if data:
                headers["Content-Length"] = str(len(data))
            headers["Content-Type"] = JSON_TYPE
        elif method not in BODYLESS_METHODS:
            headers["Content-Length"] = "0"
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        return url, headers, data

    def prepare(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> requests.PreparedRequest:
        """The request ``Session.request(method, base + path, params=..., json=body)`` would send."""
        return _prepared(method, *self.parts(method, path, params, body))

    def call(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> Reply:
        """Send one request and read its whole answer, straight to the pool where that is the same."""
        url, headers, data = self.parts(method, path, params, body)
        if self.direct is not None:
            try:
                return self.direct.send(method, url, headers, data)
            except ClosedPoolError:
                pass  # nothing was sent; the adapter makes a new pool, as it always did
        return self.send(_prepared(method, url, headers, data))

    def close(self) -> None:
        """Close the pool held for direct calls, and its connections.

        Closing the session closes the adapter, whose pool manager may merely forget its
        pools (urllib3 2.8 leaves their connections to the garbage collector); the route
        still holds this one, so it closes it here. A call made after that goes to the
        adapter, which makes a new pool, as it always did.
        """
        if self.direct is not None:
            self.direct.pool.close()

    def send(self, prepared: requests.PreparedRequest) -> requests.Response:
        """Send through the mounted adapter and read the whole answer, as a non-streaming session does."""
        response = self.adapter.send(prepared, **self.send_options)
        response.content  # noqa: B018 - reading it releases the connection to the pool
        return response


def _prepared(method: str, url: str, headers: dict[str, str], data: bytes | None) -> requests.PreparedRequest:
    prepared = requests.PreparedRequest()
    prepared.method = method
    prepared.url = url
    prepared.headers = CaseInsensitiveDict(headers)
    prepared.body = data
    return prepared
