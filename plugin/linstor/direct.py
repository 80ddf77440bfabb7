"""Calls handed straight to the urllib3 pool that requests' adapter would hand them to.

``HTTPAdapter.send`` costs about 0.1 ms of CPU per call (a quarter of what a small GET
costs the client) on work whose outcome is the same for every call to one controller: it
parses the URL to pick the connection pool, checks the CA bundle path on disk
(``cert_verify``), builds a ``Response`` with a cookie jar, and reads the body through
``iter_content``'s generators. For a controller reached directly (``http://`` or
``https://`` with no proxy: almost every deployment) a :class:`Direct` asks the adapter
once, with the adapter's own code, which pool it would use (so the same TLS context, CA
and client certificate, pool size and keep-alive connections; calls through the adapter
share them), and each call is one ``urlopen`` with the arguments the adapter passes. The
whole answer is read before it is returned, which releases the connection to the pool, and
failures are raised as the ``requests`` exceptions that ``HTTPAdapter.send`` and
``Response.content`` raise for them: the transport's messages, hints and retry decisions
rest on those (a unit test feeds every urllib3 failure through both ways).

Everything else (a proxy, an adapter of another kind, a TLS setup that fails every call,
settings requests refuses) keeps going through ``adapter.send``; see
:meth:`plugin.linstor.prepared.Route.call`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol
from urllib.parse import urlsplit

import requests
from requests import exceptions as rex
from requests.adapters import HTTPAdapter
from requests.models import CONTENT_CHUNK_SIZE
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, select_proxy
from urllib3 import exceptions as u3
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.util import Retry, Timeout

from plugin.linstor.tls import ContextAdapter

#: Adapters whose ``send`` is known to do no more than :class:`Direct` repeats.
_KNOWN_ADAPTERS = (HTTPAdapter, ContextAdapter)


class Reply(Protocol):
    """What the transport reads of an answer: a ``requests.Response`` or an :class:`Answer`."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...

    def json(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer read from the pool: the parts of a ``requests.Response`` the transport uses."""

    status_code: int
    headers: Mapping[str, str]  # urllib3's case-insensitive header dict
    content: bytes

    def json(self) -> Any:
        """The body parsed as ``requests.Response.json`` parses it; raises ``ValueError`` if it is no JSON."""
        encoding = get_encoding_from_headers(self.headers)  # type: ignore[arg-type]
        if not encoding:
            # No charset and a type that implies none: requests guesses; let it, exactly.
            response = requests.Response()
            response.status_code = self.status_code
            response.headers = CaseInsensitiveDict(self.headers)
            response._content = self.content  # what a read Response holds its body in
            return response.json()
        # LINSTOR's answers are application/json, which requests reads as UTF-8 text.
        try:
            text = str(self.content, encoding, errors="replace")
        except (LookupError, TypeError):
            text = str(self.content, errors="replace")
        return json.loads(text)


def target(url: str) -> str:
    """The request target (path and query) ``requests`` sends for ``url`` when no proxy is used."""
    parts = urlsplit(url)
    return (parts.path or "/") + ("?" + parts.query if parts.query else "")


@dataclass(frozen=True)
class Direct:
    """One controller's pool, and the arguments the adapter passes to it on every call."""

    pool: HTTPConnectionPool
    timeout: Timeout
    retries: Retry | int | bool | None

    @classmethod
    def of(cls, adapter: Any, probe: requests.PreparedRequest, options: Mapping[str, Any]) -> Direct | None:
        """The pool ``adapter.send(probe, **options)`` would use, or None when calls must go through it.

        ``options`` are the keyword arguments for ``adapter.send`` (timeout, verify, cert, proxies).
        """
        url = str(probe.url)
        if type(adapter) not in _KNOWN_ADAPTERS or urlsplit(url).scheme.lower() not in ("http", "https"):
            return None
        if select_proxy(url, options["proxies"]):
            return None
        if isinstance(adapter, ContextAdapter) and adapter.fails_every_call(url):
            return None
        verify, cert, proxies = options["verify"], options["cert"], options["proxies"]
        try:
            pool = adapter.get_connection_with_tls_context(probe, verify, proxies=proxies, cert=cert)
            # What the adapter sets on the pool before every call; the same every time.
            adapter.cert_verify(pool, url, verify, cert)
        except (ValueError, OSError, u3.HTTPError, rex.RequestException):
            return None  # requests refuses these settings; it says so on every call, as before
        connect, read = options["timeout"]
        return cls(pool=pool, timeout=Timeout(connect=connect, read=read), retries=adapter.max_retries)

    def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> Answer:
        """Send and read the whole answer; raises requests' errors, or ``ClosedPoolError`` before sending.

        A closed pool (the adapter was closed, or dropped the pool) means nothing was sent;
        the caller sends through the adapter instead, which makes a new pool as it always did.
        """
        try:
            response = self.pool.urlopen(
                method,
                target(url),
                body=body,
                headers=headers,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                retries=self.retries,
                timeout=self.timeout,
                chunked=not (body is None or "Content-Length" in headers),
            )
        except u3.ClosedPoolError:
            raise
        except Exception as exc:
            _raise_as(sending_error(exc), exc)
        try:
            content = b"".join(response.stream(CONTENT_CHUNK_SIZE, decode_content=True))
        except Exception as exc:
            _raise_as(reading_error(exc), exc)
        return Answer(response.status, response.headers, content)


def _raise_as(translated: Exception, exc: Exception) -> NoReturn:
    if translated is exc:
        raise exc
    raise translated from exc


#: (urllib3's exception, the requests exception raised for it), first match wins: what
#: ``HTTPAdapter.send`` raises for a failed ``urlopen`` (a MaxRetryError by its reason, below).
_SENDING: tuple[tuple[type[Exception] | tuple[type[Exception], ...], type[Exception]], ...] = (
    ((u3.ProtocolError, OSError), rex.ConnectionError),
    (u3.ClosedPoolError, rex.ConnectionError),
    (u3.ProxyError, rex.ProxyError),
    (u3.SSLError, rex.SSLError),
    (u3.ReadTimeoutError, rex.ReadTimeout),
    (u3.InvalidHeader, rex.InvalidHeader),
)
#: The same for a MaxRetryError's reason; anything else is a ConnectionError.
_RETRIES_GAVE_UP: tuple[tuple[type[Exception], type[Exception]], ...] = (
    (u3.ResponseError, rex.RetryError),
    (u3.ProxyError, rex.ProxyError),
    (u3.SSLError, rex.SSLError),
)
#: And what ``Response.content`` raises when reading the body fails.
_READING: tuple[tuple[type[Exception], type[Exception]], ...] = (
    (u3.ProtocolError, rex.ChunkedEncodingError),
    (u3.DecodeError, rex.ContentDecodingError),
    (u3.ReadTimeoutError, rex.ConnectionError),
    (u3.SSLError, rex.SSLError),
)


def _mapped(
    match: object,
    table: tuple[tuple[type[Exception] | tuple[type[Exception], ...], type[Exception]], ...],
    exc: Exception,
) -> Exception | None:
    """The requests exception for ``exc``, chosen by the first row whose class ``match`` is."""
    return next((raised(exc) for caught, raised in table if isinstance(match, caught)), None)


def sending_error(exc: Exception) -> Exception:
    """The exception ``HTTPAdapter.send`` raises when ``urlopen`` raises ``exc``.

    As requests 2.34 maps them; a unit test holds this to the installed version's adapter.
    """
    if isinstance(exc, u3.MaxRetryError):
        reason = exc.reason
        if isinstance(reason, u3.ConnectTimeoutError) and not isinstance(reason, u3.NewConnectionError):
            return rex.ConnectTimeout(exc)
        return _mapped(reason, _RETRIES_GAVE_UP, exc) or rex.ConnectionError(exc)
    return _mapped(exc, _SENDING, exc) or exc  # the adapter lets anything else through as it is


def reading_error(exc: Exception) -> Exception:
    """The exception ``Response.content`` raises when reading the body raises ``exc``."""
    return _mapped(exc, _READING, exc) or exc
