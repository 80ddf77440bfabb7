"""The emulator-only ``/_emu/`` control API: faults, node state, pool capacity, in-use, reset.

It lives under a prefix no LINSTOR path uses, answers plain JSON (not ApiCallRc), and
exists only so tests can provoke what a real cluster does on its own: slow answers,
errors, outages, nodes going away, full pools and busy devices.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from emulator import drbd_roles, names, ops
from emulator import retcodes as rc
from emulator.core import Emulator
from emulator.disk_states import HOLDABLE
from emulator.faults import PHASES, Faults, error_ret_code


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _obj(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ControlError(400, "the body must be a JSON object")
    return body


def _num(body: dict[str, Any], key: str, default: float | None = None) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ControlError(400, f"'{key}' must be a non-negative number")
    return float(value)


class Control:
    """Dispatches one control request; ``outage`` is the server's hook to drop its listener."""

    def __init__(self, emu: Emulator, faults: Faults, outage: Callable[[float], None]) -> None:
        self.emu = emu
        self.faults = faults
        self.outage = outage
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Any]]] = [
            ("GET", re.compile(r"^/_emu/health/?$"), self.health),
            ("GET", re.compile(r"^/_emu/state/?$"), self.dump_state),
            ("POST", re.compile(r"^/_emu/reset/?$"), self.reset),
            ("POST", re.compile(r"^/_emu/latency/?$"), self.latency),
            ("POST", re.compile(r"^/_emu/errors/?$"), self.add_error),
            ("DELETE", re.compile(r"^/_emu/errors/?$"), self.clear_faults),
            ("GET", re.compile(r"^/_emu/faults/?$"), self.describe_faults),
            ("POST", re.compile(r"^/_emu/outage/?$"), self.start_outage),
            (
                "POST",
                re.compile(r"^/_emu/nodes/(?P<node>[^/]+)/(?P<what>offline|online)/?$"),
                self.node_state,
            ),
            ("POST", re.compile(r"^/_emu/pools/(?P<node>[^/]+)/(?P<pool>[^/]+)/capacity/?$"), self.capacity),
            ("POST", re.compile(r"^/_emu/pools/(?P<pool>[^/]+)/capacity/?$"), self.capacity),
            ("POST", re.compile(r"^/_emu/resources/(?P<rd>[^/]+)/(?P<node>[^/]+)/in_use/?$"), self.in_use),
            ("POST", re.compile(r"^/_emu/resources/(?P<rd>[^/]+)/(?P<node>[^/]+)/role/?$"), self.role),
            (
                "POST",
                re.compile(r"^/_emu/resources/(?P<rd>[^/]+)/(?P<node>[^/]+)/disk_state/?$"),
                self.disk_state,
            ),
            ("POST", re.compile(r"^/_emu/deploy-failures/?$"), self.deploy_failures),
            ("POST", re.compile(r"^/_emu/clone-delay/?$"), self.clone_delay),
            ("DELETE", re.compile(r"^/_emu/deploy-failures/?$"), self.clear_deploy_failures),
        ]

    def template(self, path: str) -> str | None:
        """The control path with its parameters as ``{name}`` (a bounded metrics label), None if unknown."""
        for _method, pattern, _fn in self._routes:
            if pattern.match(path) is not None:
                text = pattern.pattern.removeprefix("^").removesuffix("/?$")
                return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", text)
        return None

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        known = False
        for m, pattern, fn in self._routes:
            match = pattern.match(path)
            if match is None:
                continue
            known = True
            if m == method:
                try:
                    return 200, fn(body, **match.groupdict())
                except ControlError as exc:
                    return exc.status, {"error": str(exc)}
        if known:
            return 405, {"error": f"{method} is not allowed on {path}"}
        return 404, {"error": f"unknown control path {path}"}

    def health(self, body: Any) -> dict[str, Any]:
        with self.emu.lock:
            return {
                "status": "ok",
                "local_node": self.emu.config.local_node,
                "nodes": [n.name for _, n in sorted(self.emu.state.nodes.items())],
                "mode": "drbd" if self.emu.drbd else "storage-only",
                "resource_definitions": len(self.emu.state.resource_definitions),
            }

    def dump_state(self, body: Any) -> dict[str, Any]:
        with self.emu.lock:
            data = self.emu.state.to_json()
            # Remote secrets stay in the state file; the control API does not show them either.
            for remote in data.get("remotes", {}).values():
                for secret in ("access_key", "secret_key", "passphrase"):
                    if remote.get(secret):
                        remote[secret] = "***"
            data["devices"] = {k: {"device": v[0], "loop": v[1]} for k, v in self.emu.devices.items()}
            data["faults"] = self.faults.describe()
            return data

    def reset(self, body: Any) -> dict[str, Any]:
        self.faults.clear()
        self.emu.reset()
        return {"status": "reset"}

    def latency(self, body: Any) -> dict[str, Any]:
        data = _obj(body)
        ms = _num(data, "ms", 0)
        paths = data.get("paths")
        if paths is not None and not isinstance(paths, str):
            raise ControlError(400, "'paths' must be a regular expression string")
        phase = data.get("phase", "request")
        if phase not in PHASES:
            raise ControlError(400, f"'phase' must be one of: {', '.join(PHASES)}")
        try:
            self.faults.set_latency(ms, paths, phase)
        except re.error as exc:
            raise ControlError(400, f"invalid regular expression: {exc}") from exc
        return self.faults.describe()

    def add_error(self, body: Any) -> dict[str, Any]:
        data = _obj(body)
        status = data.get("status", 500)
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ControlError(400, "'status' must be an HTTP error status (400-599)")
        code = data.get("ret_code", rc.FAIL_UNKNOWN_ERROR)
        if isinstance(code, bool) or not isinstance(code, int):
            raise ControlError(400, "'ret_code' must be an integer")
        count = data.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count == 0:
            raise ControlError(400, "'count' must be a positive integer, or -1 for every request")
        method = data.get("method")
        if method is not None and not isinstance(method, str):
            raise ControlError(400, "'method' must be a string")
        regex = data.get("path_regex", ".*")
        message = data.get("message", "")
        if not isinstance(regex, str) or not isinstance(message, str):
            raise ControlError(400, "'path_regex' and 'message' must be strings")
        try:
            rule = self.faults.add_error(method, regex, status, error_ret_code(code), count, message)
        except re.error as exc:
            raise ControlError(400, f"invalid regular expression: {exc}") from exc
        return rule.to_json()

    def clear_faults(self, body: Any) -> dict[str, Any]:
        self.emu.disks.clear_faults()
        self.faults.clear()
        return self.faults.describe()

    def describe_faults(self, body: Any) -> dict[str, Any]:
        return self.faults.describe()

    def start_outage(self, body: Any) -> dict[str, Any]:
        seconds = _num(_obj(body), "seconds")
        if seconds > 3600:
            raise ControlError(400, "'seconds' must be at most 3600")
        if seconds > 0:
            self.outage(seconds)
        return {"outage_seconds": seconds}

    def node_state(self, body: Any, node: str, what: str) -> dict[str, Any]:
        with self.emu.lock:
            # Finishing pending deletes may touch any definition: wait for requests in flight.
            self.emu.reservations.wait_idle()
            obj = self.emu.state.nodes.get(names.key(node))
            if obj is None:
                raise ControlError(404, f"node '{node}' not found")
            if obj.local and what == "offline":
                raise ControlError(400, "the local node cannot go offline (it is the host itself)")
            finished = ops.reconnect(self.emu, obj) if what == "online" else []
            obj.online = what == "online"
            self.emu.persist()
            return {"node": obj.name, "online": obj.online, "completed_deletes": finished}

    def capacity(self, body: Any, pool: str, node: str | None = None) -> dict[str, Any]:
        data = _obj(body)
        with self.emu.lock:
            targets = []
            for nk, pools in self.emu.state.pools.items():
                if node is not None and nk != names.key(node):
                    continue
                p = pools.get(names.key(pool))
                if p is not None and p.kind != "DISKLESS":
                    targets.append(p)
            if not targets:
                raise ControlError(404, f"storage pool '{pool}' not found")
            if data.get("clear") or ("total_kib" not in data and "free_kib" not in data):
                for p in targets:
                    p.capacity_override = None
            else:
                total = int(_num(data, "total_kib"))
                free = int(_num(data, "free_kib"))
                if free > total:
                    raise ControlError(400, "'free_kib' cannot exceed 'total_kib'")
                for p in targets:
                    p.capacity_override = [total, free]
            self.emu.persist(set())
            return {"pools": [dataclasses.asdict(p) for p in targets]}

    def in_use(self, body: Any, rd: str, node: str) -> dict[str, Any]:
        data = _obj(body)
        value = data.get("in_use", True)
        if value is not None and not isinstance(value, bool):
            raise ControlError(400, "'in_use' must be true, false or null (detect)")
        with self.emu.lock:
            self.emu.reservations.acquire({names.key(rd)}, self.emu.state.resource_definitions.keys)
            try:
                rdo = self.emu.state.resource_definitions.get(names.key(rd))
                rsc = rdo.resources.get(names.key(node)) if rdo else None
                if rsc is None:
                    raise ControlError(404, f"resource '{rd}' on node '{node}' not found")
                rsc.in_use_override = value
            finally:
                self.emu.reservations.release()
            self.emu.persist({names.key(rd)})
            return {"resource": rd, "node": rsc.node, "in_use_override": value}

    def role(self, body: Any, rd: str, node: str) -> dict[str, Any]:
        """Play a writer on a node: ``{"role": "Primary"}`` (refused as DRBD refuses) or ``Secondary``."""
        role = _obj(body).get("role")
        if role not in ("Primary", "Secondary"):
            raise ControlError(400, '\'role\' must be "Primary" or "Secondary"')
        with self.emu.lock:
            self.emu.reservations.acquire({names.key(rd)}, self.emu.state.resource_definitions.keys)
            try:
                rdo = self.emu.state.resource_definitions.get(names.key(rd))
                rsc = rdo.resources.get(names.key(node)) if rdo else None
                if rdo is None or rsc is None:
                    raise ControlError(404, f"resource '{rd}' on node '{node}' not found")
                try:
                    drbd_roles.set_role(self.emu, rdo, rsc, role)
                except drbd_roles.RoleRefused as exc:
                    raise ControlError(409, str(exc)) from None
            finally:
                self.emu.reservations.release()
            self.emu.persist({names.key(rd)})
            return {"resource": rdo.name, "node": rsc.node, "role": role}

    def disk_state(self, body: Any, rd: str, node: str) -> dict[str, Any]:
        """Hold a diskful replica Inconsistent or Outdated (``null``: back to what it really is)."""
        value = _obj(body).get("state")
        if value is not None and value not in HOLDABLE:
            raise ControlError(400, f"'state' must be one of {', '.join(HOLDABLE)} or null")
        with self.emu.lock:
            rdo = self.emu.state.resource_definitions.get(names.key(rd))
            rsc = rdo.resources.get(names.key(node)) if rdo else None
            if rdo is None or rsc is None:
                raise ControlError(404, f"resource '{rd}' on node '{node}' not found")
            if rsc.diskless:
                raise ControlError(
                    400, f"resource '{rd}' on node '{node}' is diskless; it has no disk state to hold"
                )
            self.emu.disks.hold(rdo.name, rsc.node, value)
            return {"resource": rdo.name, "node": rsc.node, "held_state": value}

    def deploy_failures(self, body: Any) -> dict[str, Any]:
        """The next ``count`` deployments (on ``node``, or anywhere) fail on their satellite."""
        data = _obj(body)
        count = data.get("count", 1)
        node = data.get("node")
        if isinstance(count, bool) or not isinstance(count, int) or count == 0 or count < -1:
            raise ControlError(400, "'count' must be a positive number or -1 (every deployment)")
        if node is not None and not isinstance(node, str):
            raise ControlError(400, "'node' must be a node name")
        self.emu.disks.fail_deployments(count, node)
        return {"deploy_failures": self.emu.disks.describe()}

    def clear_deploy_failures(self, body: Any) -> dict[str, Any]:
        self.emu.disks.clear_faults()
        return {"deploy_failures": []}

    def clone_delay(self, body: Any) -> dict[str, Any]:
        """Background clone copies wait this long before they start (0: no delay)."""
        seconds = _num(_obj(body), "seconds")
        if seconds > 3600:
            raise ControlError(400, "'seconds' must be at most 3600")
        self.emu.clone_delay = seconds
        return {"clone_delay_seconds": seconds}
