"""The plugin's only way to talk to LINSTOR: a thin, typed client over ``requests``.

Every LINSTOR REST call of the project is a method of :class:`LinstorClient`, so one file
shows everything the plugin asks of the controller. The client is shared by all request
threads of a daemon: one pooled ``requests.Session`` (sized for ~32 concurrent callers),
connect and read timeouts, failover across several controllers (the last one that
answered is tried first), and retries with backoff only where a repeat cannot do harm:
requests that never reached a server (connection refused, connect timeout) and
idempotent methods (GET, PUT, DELETE: LINSTOR's prop/size PUTs and deletes give the same
result when repeated). A POST that may have reached the controller is never re-sent;
the caller re-reads and compares instead.

A failed answer raises exactly one typed error from :mod:`plugin.errors`, decided from
the ret code of its first error entry (see :mod:`plugin.linstor.retcodes`). The error
keeps the LINSTOR code in ``details["code"]`` and all entries in ``details["entries"]``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
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
from plugin.linstor import features as features
from plugin.linstor import paging
from plugin.linstor import retcodes as rc
from plugin.linstor.tls import ContextAdapter, client_tls
from plugin.observability import log_fields, record_linstor_call

log = logging.getLogger(__name__)

USER_AGENT = "linstor-volume-plugin/0.1"
POOL_SIZE = 32
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})

Entries = list[dict[str, Any]]
Overrides = Mapping[int, type[VolumeError]]

# Creating or restoring a resource reports "no room in the pool" as 206.
_SPACE_206: Overrides = {rc.FAIL_INVLD_VLM_SIZE: NoSpace}


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


class LinstorClient:
    """Typed access to the LINSTOR controller REST API (v1). Safe for concurrent use."""

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
        #: The controller's version, read once, for the request fields older controllers lack.
        self.features = features.ControllerFeatures(self.controller_version)

    def close(self) -> None:
        self.session.close()

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
    ) -> Any:
        """Send one REST call and return its parsed JSON, or raise a typed error.

        ``template`` is the endpoint with ``{}`` placeholders (it labels the metrics);
        ``args`` fill them, URL-quoted. ``overrides`` re-map bare LINSTOR codes to error
        classes where an endpoint gives a code a more specific meaning.
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
                    status, payload = self._send_once(method, base, path, template, params, body)
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

    def _send_once(
        self,
        method: str,
        base: str,
        path: str,
        template: str,
        params: Mapping[str, Any] | None,
        body: Any,
    ) -> tuple[int, Any]:
        started = time.perf_counter()
        self._count()
        try:
            response = self.session.request(
                method,
                base + path,
                params=params,
                json=body,
                timeout=self.timeout,
                allow_redirects=False,
            )
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
        payload: Any = None
        if response.content:
            try:
                payload = response.json()
            except ValueError:
                payload = None
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

    # ------------------------------------------------------------------ controller, nodes, pools

    def controller_version(self) -> dict[str, Any]:
        return self.request("GET", "/v1/controller/version") or {}

    def list_nodes(self, nodes: Sequence[str] = (), props: Sequence[str] = ()) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if nodes:
            params["nodes"] = list(nodes)
        if props:
            params["props"] = list(props)
        return self.request("GET", "/v1/nodes", params=params or None) or []

    def get_node(self, node: str) -> dict[str, Any]:
        return self.request("GET", "/v1/nodes/{}", node)

    def list_storage_pools(
        self, nodes: Sequence[str] = (), storage_pools: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if nodes:
            params["nodes"] = list(nodes)
        if storage_pools:
            params["storage_pools"] = list(storage_pools)
        return self.request("GET", "/v1/view/storage-pools", params=params or None) or []

    def node_storage_pools(self, node: str) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/nodes/{}/storage-pools", node) or []

    # ------------------------------------------------------------------ resource groups

    def get_resource_group(self, name: str) -> dict[str, Any]:
        return self.request("GET", "/v1/resource-groups/{}", name)

    def create_resource_group(
        self, name: str, select_filter: Mapping[str, Any], props: Mapping[str, str] | None = None
    ) -> Entries:
        body: dict[str, Any] = {"name": name, "select_filter": dict(select_filter)}
        if props:
            body["props"] = dict(props)
        return rc.entries_of(self.request("POST", "/v1/resource-groups", body=body))

    def modify_resource_group(
        self,
        name: str,
        *,
        select_filter: Mapping[str, Any] | None = None,
        override_props: Mapping[str, str] | None = None,
    ) -> Entries:
        body: dict[str, Any] = {"override_props": dict(override_props or {})}
        if select_filter is not None:
            body["select_filter"] = dict(select_filter)
        return rc.entries_of(self.request("PUT", "/v1/resource-groups/{}", name, body=body))

    def spawn(
        self,
        resource_group: str,
        name: str,
        size_kib: int,
        *,
        definition_props: Mapping[str, str] | None = None,
        select_filter: Mapping[str, Any] | None = None,
        definitions_only: bool = False,
    ) -> Entries:
        body: dict[str, Any] = {"resource_definition_name": name, "volume_sizes": [size_kib]}
        if definition_props:
            self.features.require(features.SPAWN_PROPS)
            body["resource_definition_props"] = dict(definition_props)
        if select_filter:
            body["select_filter"] = dict(select_filter)
        if definitions_only:
            body["definitions_only"] = True
        return rc.entries_of(
            self.request(
                "POST", "/v1/resource-groups/{}/spawn", resource_group, body=body, overrides=_SPACE_206
            )
        )

    # ------------------------------------------------------------------ resource and volume definitions

    def list_resource_definitions(
        self, names: Sequence[str] = (), with_volume_definitions: bool = True
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if with_volume_definitions:
            params["with_volume_definitions"] = "true"
        if names:
            params["resource_definitions"] = list(names)
        return self.request("GET", "/v1/resource-definitions", params=params or None) or []

    def iter_resource_definitions(
        self, with_volume_definitions: bool = True, props: Sequence[str] = ()
    ) -> Iterator[dict[str, Any]]:
        """Every resource definition in name order (only those with ``props``, LINSTOR's
        ``key`` or ``key=value`` filters, AND-ed), read a page at a time (see :mod:`.paging`)."""
        params: dict[str, Any] = {"with_volume_definitions": "true"} if with_volume_definitions else {}
        if props:
            params["props"] = list(props)
        return paging.paged(
            self.request, "/v1/resource-definitions", params, self.config.list_page_size, paging.by_name
        )

    def get_resource_definition(self, name: str) -> dict[str, Any]:
        return self.request("GET", "/v1/resource-definitions/{}", name)

    def create_resource_definition(
        self, name: str, resource_group: str, props: Mapping[str, str] | None = None
    ) -> Entries:
        rd: dict[str, Any] = {"name": name, "resource_group_name": resource_group}
        if props:
            rd["props"] = dict(props)
        return rc.entries_of(
            self.request("POST", "/v1/resource-definitions", body={"resource_definition": rd})
        )

    def modify_resource_definition(
        self,
        name: str,
        override_props: Mapping[str, str] | None = None,
        delete_props: Sequence[str] = (),
        delete_namespaces: Sequence[str] = (),
    ) -> Entries:
        body: dict[str, Any] = {
            "override_props": dict(override_props or {}),
            "delete_props": list(delete_props),
        }
        if delete_namespaces:
            body["delete_namespaces"] = list(delete_namespaces)
        return rc.entries_of(self.request("PUT", "/v1/resource-definitions/{}", name, body=body))

    def delete_resource_definition(self, name: str) -> Entries:
        return rc.entries_of(self.request("DELETE", "/v1/resource-definitions/{}", name))

    def get_volume_definition(self, name: str, volume_number: int = 0) -> dict[str, Any]:
        return self.request("GET", "/v1/resource-definitions/{}/volume-definitions/{}", name, volume_number)

    def resize_volume_definition(self, name: str, size_kib: int, volume_number: int = 0) -> Entries:
        return rc.entries_of(
            self.request(
                "PUT",
                "/v1/resource-definitions/{}/volume-definitions/{}",
                name,
                volume_number,
                body={"size_kib": size_kib},
            )
        )

    def create_volume_definition(
        self, name: str, size_kib: int, props: Mapping[str, str] | None = None
    ) -> Entries:
        """A new volume of the resource, numbered by LINSTOR (the lowest free number)."""
        vd: dict[str, Any] = {"size_kib": size_kib}
        if props:
            vd["props"] = dict(props)
        return rc.entries_of(
            self.request(
                "POST",
                "/v1/resource-definitions/{}/volume-definitions",
                name,
                body={"volume_definition": vd},
                overrides=_SPACE_206,
            )
        )

    def list_volume_definitions(self, name: str) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/resource-definitions/{}/volume-definitions", name) or []

    def modify_volume_definition(
        self,
        name: str,
        volume_number: int,
        override_props: Mapping[str, str] | None = None,
        delete_props: Sequence[str] = (),
    ) -> Entries:
        body = {"override_props": dict(override_props or {}), "delete_props": list(delete_props)}
        return rc.entries_of(
            self.request(
                "PUT", "/v1/resource-definitions/{}/volume-definitions/{}", name, volume_number, body=body
            )
        )

    def delete_volume_definition(self, name: str, volume_number: int) -> Entries:
        return rc.entries_of(
            self.request("DELETE", "/v1/resource-definitions/{}/volume-definitions/{}", name, volume_number)
        )

    # ------------------------------------------------------------------ resources

    def list_resources(self, name: str) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/resource-definitions/{}/resources", name) or []

    def get_resource(self, name: str, node: str) -> dict[str, Any]:
        return self.request("GET", "/v1/resource-definitions/{}/resources/{}", name, node)

    def create_resource(
        self,
        name: str,
        node: str,
        *,
        diskless: bool = False,
        storage_pool: str | None = None,
        props: Mapping[str, str] | None = None,
    ) -> Entries:
        resource: dict[str, Any] = {"node_name": node}
        merged = dict(props or {})
        if storage_pool:
            merged["StorPoolName"] = storage_pool
        if merged:
            resource["props"] = merged
        if diskless:
            resource["flags"] = ["DRBD_DISKLESS"]
        return rc.entries_of(
            self.request(
                "POST",
                "/v1/resource-definitions/{}/resources/{}",
                name,
                node,
                body={"resource": resource},
                overrides=_SPACE_206,
            )
        )

    def modify_resource(
        self,
        name: str,
        node: str,
        override_props: Mapping[str, str] | None = None,
        delete_props: Sequence[str] = (),
    ) -> Entries:
        body = {"override_props": dict(override_props or {}), "delete_props": list(delete_props)}
        return rc.entries_of(
            self.request("PUT", "/v1/resource-definitions/{}/resources/{}", name, node, body=body)
        )

    def delete_resource(self, name: str, node: str, keep_tiebreaker: bool = False) -> Entries:
        params = {"keep_tiebreaker": "true"} if keep_tiebreaker else None
        return rc.entries_of(
            self.request("DELETE", "/v1/resource-definitions/{}/resources/{}", name, node, params=params)
        )

    def make_available(self, name: str, node: str, diskful: bool = False) -> Entries:
        return rc.entries_of(
            self.request(
                "POST",
                "/v1/resource-definitions/{}/resources/{}/make-available",
                name,
                node,
                body={"diskful": diskful},
                overrides=_SPACE_206,
            )
        )

    def autoplace(
        self,
        name: str,
        select_filter: Mapping[str, Any] | None = None,
        *,
        diskless_on_remaining: bool,
    ) -> Entries:
        """Autoplace; ``diskless_on_remaining`` is always stated, because the controller reads a
        missing one as false and lets it overwrite the resource group's setting."""
        body: dict[str, Any] = {"diskless_on_remaining": diskless_on_remaining}
        if select_filter:
            body["select_filter"] = dict(select_filter)
        return rc.entries_of(
            self.request(
                "POST", "/v1/resource-definitions/{}/autoplace", name, body=body, overrides=_SPACE_206
            )
        )

    def get_volume(self, name: str, node: str, volume_number: int = 0) -> dict[str, Any]:
        return self.request(
            "GET", "/v1/resource-definitions/{}/resources/{}/volumes/{}", name, node, volume_number
        )

    def view_resources(
        self, resources: Sequence[str] = (), nodes: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if resources:
            params["resources"] = list(resources)
        if nodes:
            params["nodes"] = list(nodes)
        return self.request("GET", "/v1/view/resources", params=params or None) or []

    def iter_resources(self, nodes: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        """Every resource with its volumes (on ``nodes`` if given), in (definition, node) order,
        a page at a time."""
        params = {"nodes": list(nodes)} if nodes else {}
        return paging.paged(
            self.request, "/v1/view/resources", params, self.config.list_page_size, paging.by_name_and_node
        )

    # ------------------------------------------------------------------ snapshots

    def create_snapshot(self, name: str, snapshot: str, props: Mapping[str, str] | None = None) -> Entries:
        body: dict[str, Any] = {"name": snapshot}
        if props:
            self.features.require(features.SNAPSHOT_PROPS)
            body["snapshot_definition_props"] = dict(props)
        return rc.entries_of(self.request("POST", "/v1/resource-definitions/{}/snapshots", name, body=body))

    def create_snapshots(
        self,
        pairs: Sequence[tuple[str, str]],
        props: Mapping[str, str] | None = None,
        per_resource: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Entries:
        """Crash-consistent snapshots of several volumes at once: (resource, snapshot) pairs.

        LINSTOR makes them in one transaction and suspends I/O on all before taking any.
        ``props`` go on every snapshot definition, ``per_resource[resource]`` on that one's.
        """
        specs = []
        for resource, snapshot in pairs:
            merged = {**(props or {}), **((per_resource or {}).get(resource) or {})}
            spec: dict[str, Any] = {"resource_name": resource, "name": snapshot}
            if merged:
                spec["snapshot_definition_props"] = merged
            specs.append(spec)
        return rc.entries_of(self.request("POST", "/v1/actions/snapshot/multi", body={"snapshots": specs}))

    def get_snapshot(self, name: str, snapshot: str) -> dict[str, Any]:
        return self.request("GET", "/v1/resource-definitions/{}/snapshots/{}", name, snapshot)

    def list_snapshots(self, name: str) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/resource-definitions/{}/snapshots", name) or []

    def view_snapshots(self, resources: Sequence[str] = ()) -> list[dict[str, Any]]:
        params = {"resources": list(resources)} if resources else None
        return self.request("GET", "/v1/view/snapshots", params=params) or []

    def delete_snapshot(self, name: str, snapshot: str) -> Entries:
        return rc.entries_of(
            self.request("DELETE", "/v1/resource-definitions/{}/snapshots/{}", name, snapshot)
        )

    def restore_volume_definition(self, source: str, snapshot: str, target: str) -> Entries:
        return rc.entries_of(
            self.request(
                "POST",
                "/v1/resource-definitions/{}/snapshot-restore-volume-definition/{}",
                source,
                snapshot,
                body={"to_resource": target},
            )
        )

    def restore_resource(self, source: str, snapshot: str, target: str, nodes: Sequence[str] = ()) -> Entries:
        body: dict[str, Any] = {"to_resource": target}
        if nodes:
            body["nodes"] = list(nodes)
        return rc.entries_of(
            self.request(
                "POST",
                "/v1/resource-definitions/{}/snapshot-restore-resource/{}",
                source,
                snapshot,
                body=body,
                overrides=_SPACE_206,
            )
        )

    # ------------------------------------------------------------------ clone

    def clone(
        self,
        source: str,
        target: str,
        *,
        resource_group: str | None = None,
        override_props: Mapping[str, str] | None = None,
        delete_props: Sequence[str] = (),
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": target}
        if override_props or delete_props:
            self.features.require(features.CLONE_PROPS)
        if resource_group:
            body["resource_group"] = resource_group
        if override_props:
            body["override_props"] = dict(override_props)
        if delete_props:
            body["delete_props"] = list(delete_props)
        return self.request("POST", "/v1/resource-definitions/{}/clone", source, body=body) or {}

    def clone_status(self, source: str, target: str) -> str:
        answer = self.request("GET", "/v1/resource-definitions/{}/clone/{}", source, target) or {}
        return str(answer.get("status", ""))

    # ------------------------------------------------------------------ remotes (backup targets)

    def list_remotes(self) -> dict[str, Any]:
        """``{"s3_remotes": [...], "linstor_remotes": [...], ...}``; secrets are never returned."""
        answer = self.request("GET", "/v1/remotes")
        if isinstance(answer, list):  # the spec words it as an array of one RemoteList
            answer = answer[0] if answer else {}
        return answer or {}

    def create_s3_remote(self, remote: Mapping[str, Any]) -> Entries:
        return rc.entries_of(self.request("POST", "/v1/remotes/s3", body=dict(remote)))

    def modify_s3_remote(self, name: str, remote: Mapping[str, Any]) -> Entries:
        return rc.entries_of(self.request("PUT", "/v1/remotes/s3/{}", name, body=dict(remote)))

    def create_linstor_remote(self, remote: Mapping[str, Any]) -> Entries:
        return rc.entries_of(self.request("POST", "/v1/remotes/linstor", body=dict(remote)))

    def modify_linstor_remote(self, name: str, remote: Mapping[str, Any]) -> Entries:
        return rc.entries_of(self.request("PUT", "/v1/remotes/linstor/{}", name, body=dict(remote)))

    def delete_remote(self, name: str) -> Entries:
        return rc.entries_of(self.request("DELETE", "/v1/remotes", params={"remote_name": name}))

    # ------------------------------------------------------------------ backups

    def create_backup(self, remote: str, resource: str, snapshot: str, incremental: bool) -> Entries:
        """Snapshot ``resource`` as ``snapshot`` and ship it to an S3 remote (in the background)."""
        body = {"rsc_name": resource, "snap_name": snapshot, "incremental": incremental}
        return rc.entries_of(self.request("POST", "/v1/remotes/{}/backups", remote, body=body))

    def ship_backup(self, remote: str, ship: Mapping[str, Any]) -> Entries:
        """Snapshot and ship a resource to another LINSTOR cluster (in the background)."""
        return rc.entries_of(self.request("POST", "/v1/remotes/{}/backups/ship", remote, body=dict(ship)))

    def list_backups(self, remote: str, resource: str = "", snapshot: str = "") -> dict[str, Any]:
        params = {k: v for k, v in (("rsc_name", resource), ("snap_name", snapshot)) if v}
        return self.request("GET", "/v1/remotes/{}/backups", remote, params=params or None) or {}

    def backup_info(self, remote: str, resource: str, snapshot: str) -> dict[str, Any]:
        body = {"src_rsc_name": resource, "src_snap_name": snapshot}
        return self.request("POST", "/v1/remotes/{}/backups/info", remote, body=body) or {}

    def restore_backup(self, remote: str, restore: Mapping[str, Any]) -> Entries:
        return rc.entries_of(
            self.request(
                "POST", "/v1/remotes/{}/backups/restore", remote, body=dict(restore), overrides=_SPACE_206
            )
        )

    def delete_backup(self, remote: str, backup_id: str, cascading: bool = False) -> Entries:
        params: dict[str, Any] = {"id": backup_id}
        if cascading:
            params["cascading"] = "true"
        return rc.entries_of(self.request("DELETE", "/v1/remotes/{}/backups", remote, params=params))

    def abort_backup(
        self, remote: str, resource: str, *, create: bool = True, restore: bool = False
    ) -> Entries:
        body = {"rsc_name": resource, "create": create, "restore": restore}
        return rc.entries_of(self.request("POST", "/v1/remotes/{}/backups/abort", remote, body=body))

    # ------------------------------------------------------------------ key-value store

    def get_key_value_store(self, instance: str) -> dict[str, str]:
        """The props of one KV instance; a missing instance is empty."""
        try:
            answer = self.request("GET", "/v1/key-value-store/{}", instance)
        except NotFound:
            return {}
        if isinstance(answer, list):
            answer = answer[0] if answer else {}
        return {str(k): str(v) for k, v in ((answer or {}).get("props") or {}).items()}

    def modify_key_value_store(
        self, instance: str, override_props: Mapping[str, str] | None = None, delete_props: Sequence[str] = ()
    ) -> Entries:
        body = {"override_props": dict(override_props or {}), "delete_props": list(delete_props)}
        return rc.entries_of(self.request("PUT", "/v1/key-value-store/{}", instance, body=body))
