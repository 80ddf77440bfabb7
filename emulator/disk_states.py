"""DRBD disk states of diskful replicas, and satellite deployments made to fail.

Kept in memory, as the controller keeps what satellites report: a restart finds every
replica synced. Diskful replicas on thick pools (``FILE``) start ``Inconsistent`` and
become ``UpToDate`` after the configured sync time; thin pools skip the initial sync, as
LINSTOR's satellites do (``--clear-bitmap``). A replica on an offline node has no known
state; one whose deployment failed on its satellite reports none either. The control API
can hold a replica ``Inconsistent`` or ``Outdated``.

While a diskful replica is not ``UpToDate``, the controller refuses a volume resize and a
clone with 974 (``FAIL_NOT_ALL_UPTODATE``) and a snapshot with 979
(``FAIL_SNAPSHOT_NOT_UPTODATE``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from emulator import names
from emulator import retcodes as rc
from emulator import state as st

FAIL_NOT_ALL_UPTODATE = 974
FAIL_SNAPSHOT_NOT_UPTODATE = 979
HOLDABLE = ("Inconsistent", "Outdated")
THICK_KINDS = frozenset({"FILE", "LVM", "ZFS", "SPDK", "EXOS"})


@dataclass
class _DeployFault:
    remaining: int
    node: str | None


class DiskStates:
    """Per (definition, node) key: syncing deadlines, held states, failed deployments."""

    def __init__(self, sync_seconds: float) -> None:
        self.sync_seconds = sync_seconds
        self._lock = threading.Lock()
        self._syncing: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], str] = {}
        self._failed: set[tuple[str, str]] = set()
        self._faults: list[_DeployFault] = []

    # ---------------------------------------------------------------- replicas

    def created(self, rd_name: str, node_name: str, pool_kind: str) -> None:
        """A diskful replica was deployed: a thick one syncs first."""
        key = (names.key(rd_name), names.key(node_name))
        with self._lock:
            self._failed.discard(key)
            if pool_kind.upper() in THICK_KINDS and self.sync_seconds > 0:
                self._syncing[key] = time.monotonic() + self.sync_seconds
            else:
                self._syncing.pop(key, None)

    def failed(self, rd_name: str, node_name: str) -> None:
        with self._lock:
            self._failed.add((names.key(rd_name), names.key(node_name)))

    def is_failed(self, rd_name: str, node_name: str) -> bool:
        with self._lock:
            return (names.key(rd_name), names.key(node_name)) in self._failed

    def forget(self, rd_name: str, node_name: str | None = None) -> None:
        rk = names.key(rd_name)
        with self._lock:
            for table in (self._syncing, self._held):
                for key in [
                    k for k in table if k[0] == rk and (node_name is None or k[1] == names.key(node_name))
                ]:
                    del table[key]
            self._failed = {
                k
                for k in self._failed
                if not (k[0] == rk and (node_name is None or k[1] == names.key(node_name)))
            }

    def hold(self, rd_name: str, node_name: str, state: str | None) -> None:
        key = (names.key(rd_name), names.key(node_name))
        with self._lock:
            if state is None:
                self._held.pop(key, None)
            else:
                self._held[key] = state

    def state(self, rd_name: str, node_name: str, online: bool) -> str | None:
        """The disk state of a diskful replica; None when the controller does not know it."""
        key = (names.key(rd_name), names.key(node_name))
        if not online:
            return None
        with self._lock:
            if key in self._failed:
                return None
            held = self._held.get(key)
            if held is not None:
                return held
            until = self._syncing.get(key)
            if until is not None:
                if time.monotonic() < until:
                    return "Inconsistent"
                del self._syncing[key]
        return "UpToDate"

    def not_up_to_date(
        self, emu_nodes: dict[str, st.Node], rd: st.ResourceDefinition
    ) -> list[tuple[str, str]]:
        """(node, state) of every diskful replica on a connected node that is not UpToDate."""
        out = []
        for rsc in rd.resources.values():
            if rsc.diskless or "DELETE" in rsc.flags:
                continue
            node = emu_nodes.get(names.key(rsc.node))
            online = node is not None and node.online
            if not online:
                continue
            state = self.state(rd.name, rsc.node, online)
            if state != "UpToDate":
                out.append((rsc.node, state or "Unknown"))
        return out

    def require_up_to_date(
        self,
        emu_nodes: dict[str, st.Node],
        rd: st.ResourceDefinition,
        code: int,
        what: str,
        op: int,
        obj: int,
    ) -> None:
        lagging = self.not_up_to_date(emu_nodes, rd)
        if not lagging:
            return
        where = ", ".join(f"'{node}' ({state})" for node, state in sorted(lagging))
        raise rc.ApiFailure(
            rc.error(
                code,
                f"{what} of resource '{rd.name}' is not possible: not all diskful volumes are UpToDate.",
                op,
                obj,
                details=f"Not UpToDate on: {where}",
                correction="Wait until the initial or a running resync is finished.",
                obj_refs={"RscDfn": rd.name},
            )
        )

    # ---------------------------------------------------------------- deployment faults

    def fail_deployments(self, count: int, node: str | None) -> None:
        with self._lock:
            self._faults.append(_DeployFault(count, names.key(node) if node else None))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, node_name: str) -> bool:
        """Whether the deployment on this node is to fail (consumes one use of the rule)."""
        with self._lock:
            for fault in self._faults:
                if fault.remaining != 0 and fault.node in (None, names.key(node_name)):
                    if fault.remaining > 0:
                        fault.remaining -= 1
                    self._faults = [f for f in self._faults if f.remaining != 0]
                    return True
        return False

    def describe(self) -> list[dict[str, object]]:
        with self._lock:
            return [{"remaining": f.remaining, "node": f.node} for f in self._faults]
