"""How the plugin reaches LINSTOR: one pooled session, failover, safe retries, typed errors.

The transport is shared by all request threads of a daemon: one pooled ``requests`` adapter
(sized for ~32 concurrent callers) sent requests whose fixed parts are made once per controller
(:mod:`plugin.linstor.prepared`), handed straight to that adapter's urllib3 pool where no proxy
is in the way (:mod:`plugin.linstor.direct`), connect and read timeouts, failover across several
controllers (the last one that answered is tried first), and retries with backoff only where
a repeat cannot do harm: requests that never reached a server (connection refused, connect
timeout) and idempotent methods (GET, PUT, DELETE: LINSTOR's prop/size PUTs and deletes give
the same result when repeated). A POST that may have reached the controller is never
re-sent; the caller re-reads and compares instead. An HTTPS failure that a setting explains
says which setting (see :mod:`plugin.linstor.tls`).

A failed answer raises exactly one typed error from :mod:`plugin.errors`, decided from
the ret code of its first error entry (see :mod:`plugin.linstor.retcodes`). The error
keeps the LINSTOR code in ``details["code"]`` and all entries in ``details["entries"]``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from plugin.config import Config
from plugin.errors import (
    InvalidArgument,
    NoSpace,
    NotFound,
    OperationFailed,
    Unavailable,
    VolumeError,
)
from plugin.linstor import retcodes as rc
from plugin.linstor.direct import Reply
from plugin.linstor.json_items import array_items, decode_text
from plugin.linstor.prepared import Route
from plugin.linstor.tls import ContextAdapter, client_tls
from plugin.observability import log_fields, record_linstor_call

log = logging.getLogger(__name__)

USER_AGENT = "linstor-volume-plugin/0.1"
POOL_SIZE = 32
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})

Entries = list[dict[str, Any]]
Overrides = Mapping[int, type[VolumeError]]

# Creating or restoring a resource reports "no room in the pool" as 206.
SPACE_206: Overrides = {rc.FAIL_INVLD_VLM_SIZE: NoSpace}


class _Unreachable(Exception):
    """A controller did not answer; ``sent`` says whether the request may have arrived."""

    def __init__(self, reason: str, sent: bool, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent
        self.timed_out = timed_out


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the server (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.SSLError):
        return True  # the handshake failed before any HTTP was sent
    cause: Any = exc.args[0] if exc.args else None
    reason = getattr(cause, "reason", cause)
    return isinstance(reason, NewConnectionError | ConnectionRefusedError)


def _short(exc: BaseException) -> str:
    cause: Any = exc.args[0] if exc.args else exc
    reason = getattr(cause, "reason", None)
    text = str(reason if reason is not None else cause)
    # urllib3 wraps the interesting part: "...: Failed to establish a new connection: [Errno 111] ..."
    if "Failed to establish a new connection:" in text:
        text = text.split("Failed to establish a new connection:", 1)[1].strip()
    return text[:300]


def _payload(response: Reply, items: bool) -> Any:
    """The answer's JSON (``None`` if it has none), or an iterator over a successful list's items."""
    if not response.content:
        return None
    if items and 200 <= response.status_code < 300:
        return array_items(decode_text(response.content))
    try:
        return response.json()
    except ValueError:
        return None


class Transport:
    """Sends one REST call to whichever controller answers and returns its JSON or a typed error."""

    def __init__(
        self,
        config: Config,
        *,
        retries: int = 2,
        backoff: float = 0.1,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self.config = config
        self.controllers: tuple[str, ...] = tuple(config.controllers)
        self.retries = max(0, retries)
        self.backoff = backoff
        self.timeout = (config.connect_timeout, config.read_timeout)
        self.request_count = 0
        self._count_lock = threading.Lock()
        self._preferred = 0
        self.session = requests.Session()
        # TLS settings are loaded once, here (daemons make their client at start-up), into one
        # SSLContext that alone decides what HTTPS trusts and presents; PEM contents stay in memory.
        self._tls = client_tls(config.root_ca, config.user_certificate, config.user_key)
        pools = {"pool_connections": max(4, len(self.controllers)), "pool_maxsize": pool_size}
        adapter = ContextAdapter(self._tls, **pools) if self._tls else HTTPAdapter(**pools)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        # What the environment says of proxies, CA bundles and .netrc is read once per
        # controller, here, together with everything else that is the same on every call
        # (see :mod:`plugin.linstor.prepared`): left to requests, every call would merge
        # settings and scan the whole environment again, a large share of a call's CPU.
        self.routes = {base: Route.of(self.session, base, self.timeout) for base in self.controllers}
        self.session.trust_env = False

    def close(self) -> None:
        self.session.close()
        for route in self.routes.values():
            route.close()

    @property
    def current_controller(self) -> str:
        return self.controllers[self._preferred]

    # ------------------------------------------------------------------ transport

    def _count(self) -> None:
        with self._count_lock:
            self.request_count += 1

    def request(
        self,
        method: str,
        template: str,
        *args: str | int,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        overrides: Overrides | None = None,
        items: bool = False,
    ) -> Any:
        """Send one REST call and return its parsed JSON, or raise a typed error.

        ``template`` is the endpoint with ``{}`` placeholders (it labels the metrics);
        ``args`` fill them, URL-quoted. ``overrides`` re-map bare LINSTOR codes to error
        classes where an endpoint gives a code a more specific meaning. With ``items``
        (for long lists) a successful answer is an iterator over the array's items, each
        parsed when reached (see :mod:`plugin.linstor.json_items`); failures are parsed whole.
        """
        path = template.format(*(quote(str(a), safe="") for a in args))
        idempotent = method in IDEMPOTENT_METHODS
        failures: dict[str, str] = {}
        hung: set[str] = set()
        start_index = self._preferred
        order = [
            self.controllers[(start_index + i) % len(self.controllers)] for i in range(len(self.controllers))
        ]
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            for base in order:
                if base in hung:
                    continue
                try:
                    status, payload = self._send_once(method, base, path, template, params, body, items)
                except _Unreachable as exc:
                    failures[base] = exc.reason
                    if exc.timed_out:
                        hung.add(base)  # it already had the full read timeout; do not wait again
                    if exc.sent and not idempotent:
                        raise Unavailable(
                            f"LINSTOR controller {base} did not answer {method} {path} ({exc.reason}); "
                            "the request may or may not have been applied",
                            controllers=list(self.controllers),
                            reasons=dict(failures),
                        ) from None
                    continue
                self._preferred = self.controllers.index(base)
                return self._result(method, path, template, status, payload, overrides)
        tried = "; ".join(f"{url}: {why}" for url, why in failures.items())
        raise Unavailable(
            f"no LINSTOR controller reachable ({tried}). "
            "Check LS_CONTROLLERS and that the controller is running.",
            controllers=list(self.controllers),
            reasons=dict(failures),
        )

    def exchange(
        self, method: str, base: str, path: str, params: Mapping[str, Any] | None, body: Any
    ) -> Reply:
        """Send one request to one controller and read its whole answer; raises requests' errors.

        The only place a request leaves the process (the benchmarks record calls here). The
        answer is a ``requests.Response`` or, sent straight to the pool, an equivalent
        :class:`~plugin.linstor.direct.Answer` (status, headers, body, ``json()``).
        """
        return self.routes[base].call(method, path, params, body)

    def _send_once(
        self,
        method: str,
        base: str,
        path: str,
        template: str,
        params: Mapping[str, Any] | None,
        body: Any,
        items: bool = False,
    ) -> tuple[int, Any]:
        started = time.perf_counter()
        self._count()
        try:
            response = self.exchange(method, base, path, params, body)
        except requests.RequestException as exc:
            seconds = time.perf_counter() - started
            record_linstor_call(method, template, "unreachable", seconds)
            sent = not _never_sent(exc)
            if isinstance(exc, requests.exceptions.ReadTimeout):
                reason = f"no answer within {self.timeout[1]:g}s"
            elif isinstance(exc, requests.exceptions.SSLError):
                reason = f"TLS handshake failed: {_short(exc)}"
            else:
                reason = _short(exc)
            reason += self._tls_hint(base, exc)
            log_fields(
                log, logging.DEBUG, "linstor call unreachable", method=method, url=base + path, error=reason
            )
            raise _Unreachable(reason, sent, isinstance(exc, requests.exceptions.ReadTimeout)) from None
        seconds = time.perf_counter() - started
        payload = _payload(response, items)
        status = response.status_code
        if status >= 500 and not rc.entries_of(payload):
            # A 5xx without LINSTOR entries comes from a proxy (502-504: nothing was passed
            # on) or from a controller that is starting, stopping or broken (500: unknown).
            record_linstor_call(method, template, "unavailable", seconds)
            raise _Unreachable(f"HTTP {status} without a LINSTOR answer", sent=status not in (502, 503, 504))
        if 300 <= status < 400:
            record_linstor_call(method, template, "redirect", seconds)
            where = response.headers.get("Location", "elsewhere")
            raise OperationFailed(
                f"LINSTOR controller {base} redirects to {where}; configure that address "
                "(e.g. https://host:3371) in LS_CONTROLLERS",
                status=status,
            )
        outcome = "ok" if status < 400 and rc.first_error(rc.entries_of(payload)) is None else "error"
        record_linstor_call(method, template, outcome, seconds)
        if log.isEnabledFor(logging.DEBUG):  # the fields cost more than the check, on every call
            log_fields(
                log,
                logging.DEBUG,
                "linstor call",
                method=method,
                endpoint=template,
                status=status,
                duration_ms=round(seconds * 1000, 2),
            )
        return status, payload

    def _tls_hint(self, base: str, exc: requests.RequestException) -> str:
        """What to configure when an HTTPS connection fails in a way a setting explains."""
        if not base.startswith("https://") or isinstance(exc, requests.exceptions.ConnectTimeout):
            return ""
        text = _short(exc).lower()
        if "key values mismatch" in text:
            return " (LS_USER_KEY is not the private key of LS_USER_CERTIFICATE)"
        if "certificate verify failed" in text:
            return self._verify_hint(text)
        refused = isinstance(getattr(exc.args[0] if exc.args else None, "reason", None), NewConnectionError)
        if not self.config.user_certificate and not refused:
            # A controller that demands client certificates just drops the handshake.
            return (
                " (if the controller requires client certificates, set LS_USER_CERTIFICATE and LS_USER_KEY)"
            )
        return ""

    def _verify_hint(self, text: str) -> str:
        """OpenSSL names the verification problem; the hint says which setting fixes it."""
        if "mismatch" in text:
            return " (the certificate was issued for another name: use that name in LS_CONTROLLERS)"
        if "expired" in text or "not yet valid" in text:
            return " (the controller's certificate is outside its validity period: renew it)"
        if "issuer" in text or "self-signed" in text or "self signed" in text:
            return (
                " (the controller's certificate is not trusted: set LS_ROOT_CA to the CA that signed it)"
                if not self.config.root_ca
                else " (the controller's certificate is not signed by the CA in LS_ROOT_CA)"
            )
        return ""

    def _result(
        self,
        method: str,
        path: str,
        template: str,
        status: int,
        payload: Any,
        overrides: Overrides | None,
    ) -> Any:
        entries = rc.entries_of(payload)
        error = rc.first_error(entries)
        if error is not None:
            code = rc.bare_code(rc.ret_code(error))
            cls = (overrides or {}).get(code) or rc.error_class(code)
            exhausted = rc.exhausted_pool(code)  # say which number pool ran out
            raise cls(
                f"{exhausted + '. ' if exhausted else ''}LINSTOR: {rc.describe(error)}",
                code=code,
                ret_code=rc.ret_code(error),
                entries=entries,
                status=status,
                endpoint=f"{method} {template}",
            )
        if status >= 400:
            raise self._non_linstor_error(method, path, template, status, payload)
        return payload

    @staticmethod
    def _non_linstor_error(method: str, path: str, template: str, status: int, payload: Any) -> VolumeError:
        details = {"status": status, "endpoint": f"{method} {template}", "entries": [], "code": None}
        if status == 404:
            return NotFound(f"LINSTOR has no {path} (HTTP 404)", **details)
        if status in (401, 403):
            return OperationFailed(
                f"LINSTOR refused {method} {path}: access denied (HTTP {status}); check the client "
                "certificate or credentials",
                **details,
            )
        if status == 400:
            return InvalidArgument(f"LINSTOR rejected {method} {path} as malformed (HTTP 400)", **details)
        return OperationFailed(f"LINSTOR answered {method} {path} with HTTP {status}", **details)
