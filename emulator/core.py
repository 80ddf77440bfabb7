"""The emulator's shared machinery: state, lock, storage, lookups, devices, capacity.

Endpoint handlers (the ``api_*`` modules) hold the rules of each LINSTOR object; they
all go through this class for what every rule needs: finding objects the LINSTOR way
(case-insensitive, with the right not-found code), knowing how much room a pool has,
and keeping each volume's one shared device attached exactly while some resource needs it.

Nothing is replicated: every replica of a volume shares one backing file, as DRBD would
keep them equal, and only this host has block devices.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Protocol, TypeVar

from emulator import names, recovery
from emulator import retcodes as rc
from emulator import state as st
from emulator.config import DEFAULT_RG, DISKLESS_POOL, Config
from emulator.disk_states import DiskStates
from emulator.in_use_reports import InUseReports
from emulator.reservations import Reservations
from emulator.tallies import Tallies

log = logging.getLogger("emulator")

#: How long an in-use answer is reused by list calls (mutations always look again).
IN_USE_TTL_S = 0.5
KNOWN_LAYERS = ("DRBD", "LUKS", "STORAGE", "NVME", "WRITECACHE", "CACHE", "BCACHE", "OPENFLEX")

T = TypeVar("T")


class StorageLike(Protocol):
    """The host side (``emulator.storage.Storage``); a protocol so pure tests can fake it."""

    def pool_path(self, node: str, pool: str) -> Path: ...
    def volume_path(self, node: str, pool: str, rd: str, vlm_nr: int) -> Path: ...
    def snapshot_path(self, node: str, pool: str, rd: str, vlm_nr: int, snap: str) -> Path: ...
    def pool_capacity_kib(self, node: str, pool: str) -> tuple[int, int]: ...
    def create_volume(self, node: str, pool: str, rd: str, vlm_nr: int, size_kib: int) -> Path: ...
    def allocated_kib(self, backing: Path) -> int: ...
    def attach(self, backing: Path, minor: int | None) -> str: ...
    def detach(self, backing: Path, minor: int | None) -> None: ...
    def device_for(self, backing: Path, minor: int | None) -> str | None: ...
    def loop_for(self, backing: Path) -> str | None: ...
    def resize(self, backing: Path, size_kib: int) -> None: ...
    def delete(self, backing: Path, minor: int | None) -> None: ...
    def mkfs_if_blank(self, device: str, fs_type: str, mkfs_params: str = "") -> bool: ...
    def in_use(self, backing: Path, minor: int | None) -> bool: ...
    def snapshot(self, backing: Path, dest: Path) -> None: ...
    def copy_volume(self, src: Path, dest: Path) -> None: ...
    def release_all(self, backings: Iterable[tuple[Path, int | None]]) -> None: ...
    def sweep(self, keep_files: set[str], keep_minors: set[int]) -> list[str]: ...


class Emulator:
    """One emulated controller: its objects, its single mutation lock and its host storage."""

    def __init__(self, config: Config, storage: StorageLike) -> None:
        self.config = config
        self.storage = storage
        self.lock = threading.RLock()
        self.reservations = Reservations(self.lock)
        self.state = st.State()
        #: backing path -> (device path reported, loop device) while attached
        self.devices: dict[str, tuple[str, str | None]] = {}
        self._in_use_cache: dict[str, tuple[float, bool]] = {}
        #: What the satellites last reported (the controller's view of in-use lags the host).
        self.in_use_reports = InUseReports(config.in_use_report_seconds)
        self._allocated_cache: dict[str, tuple[float, int]] = {}
        self._dev_prefix = str(config.dev_dir) + "/drbd"
        self.started = time.time()
        self.saver = st.Saver(config.state_dir)
        self.tallies = Tallies(config.minor_range, config.tcp_port_range)
        self.disks = DiskStates(config.sync_seconds)
        #: Seconds a background clone copy waits before it starts (``/_emu/clone-delay``).
        self.clone_delay = 0.0

    # ------------------------------------------------------------------ lifecycle

    @property
    def drbd(self) -> bool:
        return self.config.drbd_shaped

    @property
    def local_key(self) -> str:
        return names.key(self.config.local_node)

    def bootstrap(self) -> None:
        """Load the saved state (or make a fresh one) and bring every needed device back."""
        with self.lock:
            for tmp in st.remove_temp_files(self.config.state_dir):
                log.warning("removed %s, left by an interrupted save", tmp)
            loaded = st.load(self.config.state_dir)
            self.state = loaded if loaded is not None else st.State()
            self._ensure_topology()
            for rd in self.state.resource_definitions.values():
                if "CLONING" in rd.flags:
                    # The copy thread died with the previous process: the clone is incomplete.
                    rd.flags = [f for f in rd.flags if f != "CLONING"] + ["FAILED"]
                    rd.clone_status = "FAILED"
            recovery.sweep(self)
            for rd in self.state.resource_definitions.values():
                try:
                    self.sync_devices(rd)
                    recovery.release_stale(self, rd)
                except Exception as exc:
                    log.error("could not re-attach devices of %s: %s", rd.name, exc)
            self.persist()

    def _ensure_topology(self) -> None:
        """The nodes and pools of the command line exist (added ones survive restarts)."""
        s = self.state
        wanted = [(self.config.local_node, True), *((n, False) for n in self.config.virtual_nodes)]
        for name, local in wanted:
            nk = names.key(name)
            node = s.nodes.get(nk)
            if node is None:
                node = st.Node(
                    name=name,
                    type="COMBINED" if local else "SATELLITE",
                    props={"CurStltConnName": "default", "NodeUname": name},
                    local=local,
                )
                s.nodes[nk] = node
            node.local = local
            pools = s.pools.setdefault(nk, {})
            dk = names.key(DISKLESS_POOL)
            if dk not in pools:
                pools[dk] = st.Pool(node=name, name=DISKLESS_POOL, kind="DISKLESS")
            wanted_pools = [(self.config.pool_name, "FILE_THIN")]
            if self.config.thick_pool:
                wanted_pools.append((self.config.thick_pool, "FILE"))
            for pool_name, kind in wanted_pools:
                pk = names.key(pool_name)
                if pk not in pools:
                    path = self.storage.pool_path(name, pool_name)
                    pools[pk] = st.Pool(
                        node=name, name=pool_name, kind=kind, props={"StorDriver/StorPoolName": str(path)}
                    )
        if names.key(DEFAULT_RG) not in s.resource_groups:
            s.resource_groups[names.key(DEFAULT_RG)] = st.ResourceGroup(
                name=DEFAULT_RG, select_filter={"place_count": 2}
            )

    def persist(self, dirty: set[str] | None = None) -> None:
        """Save after a mutation; ``dirty`` names the changed definitions (None: any may have).

        Definitions another request is still changing are saved as they were.
        """
        self.tallies.settle(self.state, dirty)
        self.saver.save(self.state, dirty, self.reservations.held())

    def host(self, fn: Callable[..., T], *args: object) -> T:
        """Run a host command of a reserved definition without holding the state lock."""
        return self.reservations.outside_lock(fn, *args)

    def all_backings(self) -> Iterator[tuple[Path, int | None]]:
        for rd in self.state.resource_definitions.values():
            for vd in rd.volume_definitions.values():
                if vd.backing:
                    yield Path(vd.backing), self.minor_arg(vd)

    def reset(self) -> None:
        """Forget everything and release every device and file the emulator made."""
        with self.lock:
            self.reservations.wait_idle()
            backings = list(self.all_backings())
            try:
                self.storage.release_all(backings)
            except Exception as exc:
                log.error("reset: %s", exc)
            for backing, minor in backings:
                with suppress(Exception):
                    self.storage.delete(backing, minor)
            for rd in self.state.resource_definitions.values():
                for snap in rd.snapshots.values():
                    for sv in snap.volumes.values():
                        if sv.file:
                            Path(sv.file).unlink(missing_ok=True)
            self.devices.clear()
            self._in_use_cache.clear()
            self.in_use_reports.clear()
            self.disks = DiskStates(self.config.sync_seconds)
            self.state = st.State()
            self._ensure_topology()
            self.persist()

    # ------------------------------------------------------------------ lookups

    def node(self, name: str, op: int = 0, obj: int = 0) -> st.Node:
        rc.refuse_invalid(names.node_name_problem(name), rc.FAIL_INVLD_NODE_NAME, op, obj)
        node = self.state.nodes.get(names.key(name))
        if node is None:
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_NOT_FOUND_NODE, f"Node '{name}' not found.", op, obj, obj_refs={"Node": name}
                )
            )
        return node

    def rd(self, name: str, op: int = 0, obj: int = 0) -> st.ResourceDefinition:
        rc.refuse_invalid(names.resource_name_problem(name), rc.FAIL_INVLD_RSC_NAME, op, obj)
        rd = self.state.resource_definitions.get(names.key(name))
        if rd is None:
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_NOT_FOUND_RSC_DFN,
                    f"Resource definition '{name}' not found.",
                    op,
                    obj,
                    obj_refs={"RscDfn": name},
                )
            )
        return rd

    def rg(self, name: str, op: int = 0, obj: int = 0) -> st.ResourceGroup:
        rc.refuse_invalid(names.resource_group_name_problem(name), rc.FAIL_INVLD_RSC_GRP_NAME, op, obj)
        rg = self.state.resource_groups.get(names.key(name))
        if rg is None:
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_NOT_FOUND_RSC_GRP,
                    f"Resource group '{name}' not found.",
                    op,
                    obj,
                    obj_refs={"RscGrp": name},
                )
            )
        return rg

    def pool(self, node: st.Node, name: str, op: int = 0, obj: int = 0, code: int = 0) -> st.Pool:
        rc.refuse_invalid(names.storage_pool_name_problem(name), rc.FAIL_INVLD_STOR_POOL_NAME, op, obj)
        pool = self.state.pools.get(names.key(node.name), {}).get(names.key(name))
        if pool is None:
            raise rc.ApiFailure(
                rc.error(
                    code or rc.FAIL_NOT_FOUND_STOR_POOL,
                    f"Storage pool '{name}' not found on node '{node.name}'.",
                    op,
                    obj,
                    obj_refs={"Node": node.name, "StorPool": name},
                )
            )
        return pool

    def pools_of(self, node_key: str) -> list[st.Pool]:
        return sorted(self.state.pools.get(node_key, {}).values(), key=lambda p: names.key(p.name))

    def rg_of(self, rd: st.ResourceDefinition) -> st.ResourceGroup | None:
        return self.state.resource_groups.get(names.key(rd.resource_group))

    # ------------------------------------------------------------------ numbers

    def _live(self) -> set[str] | None:
        """Definitions that may differ from the tallies: those reserved by requests in flight.

        Outside a reserved request (start-up, reset, handlers called directly) any may: None.
        """
        return self.reservations.held() if self.reservations.mine() else None

    def next_minor(self, wanted: int | None = None) -> int:
        """DRBD minors are one pool per cluster (default 1000-49999): the lowest free one."""
        if wanted is not None:
            if not 0 <= wanted <= 1048575 or self.tallies.used_minor(self.state, self._live(), wanted):
                raise rc.ApiFailure(
                    rc.error(rc.FAIL_INVLD_MINOR_NR, f"Minor number {wanted} is not available.")
                )
            return wanted
        minor = self.tallies.free_minor(self.state, self._live())
        if minor is None:
            raise rc.ApiFailure(rc.error(rc.FAIL_POOL_EXHAUSTED_MINOR_NR, "No free DRBD minor number left."))
        return minor

    def next_port(self, node_key: str) -> int:
        """DRBD TCP ports are a per-node pool (default 7000-7999), like the controller's."""
        port = self.tallies.free_port(self.state, self._live(), node_key)
        if port is None:
            raise rc.ApiFailure(
                rc.error(rc.FAIL_POOL_EXHAUSTED_TCP_PORT, f"No free DRBD TCP port left on node '{node_key}'.")
            )
        return port

    def minor_arg(self, vd: st.VolumeDefinition) -> int | None:
        """Storage gets the minor only in DRBD-shaped mode (it then makes ``drbd<minor>``)."""
        return vd.minor if self.drbd else None

    # ------------------------------------------------------------------ capacity

    def capacity(self, pool: st.Pool) -> tuple[int, int] | None:
        """(total, free) KiB of a diskful pool; None when the node is offline (unknown)."""
        node = self.state.nodes.get(names.key(pool.node))
        if node is None or not node.online:
            return None
        if pool.capacity_override is not None:
            total, free = pool.capacity_override
            return int(total), int(free)
        return self.storage.pool_capacity_kib(pool.node, pool.name)

    def reserved_all(self) -> dict[tuple[str, str], int]:
        """``reserved_kib`` of every pool (the autoplacer needs all of them)."""
        return self.tallies.reserved(self.state, self._live())

    def reserved_kib(self, node_key: str, pool_key: str) -> int:
        """Usable sizes of volumes in the pool plus allocated sizes of its snapshots."""
        return self.reserved_all().get((node_key, pool_key), 0)

    def resources_on_nodes(self) -> dict[str, frozenset[str]]:
        """Node key -> keys of the definitions with a resource on it."""
        return self.tallies.on_nodes(self.state, self._live())

    # ------------------------------------------------------------------ devices

    def needs_device(self, rd: st.ResourceDefinition, vd: st.VolumeDefinition) -> bool:
        """A volume's device exists while a resource on this host, or a diskless one, uses it."""
        if not vd.backing or "CLONING" in rd.flags:
            return False
        for rsc in rd.resources.values():
            if str(vd.number) not in rsc.volumes or {"DELETE", "TIE_BREAKER"} & set(rsc.flags):
                continue
            if names.key(rsc.node) == self.local_key or rsc.diskless:
                return True
        return False

    def attach(self, vd: st.VolumeDefinition) -> str:
        assert vd.backing
        backing = vd.backing
        path, loop = self.host(self._attach, Path(backing), self.minor_arg(vd))
        self.devices[backing] = (path, loop)
        self.in_use_reports.seed(backing)
        return path

    def _attach(self, backing: Path, minor: int | None) -> tuple[str, str | None]:
        return self.storage.attach(backing, minor), self.storage.loop_for(backing)

    def detach(self, vd: st.VolumeDefinition) -> None:
        if vd.backing and vd.backing in self.devices:
            backing = vd.backing
            self.host(self.storage.detach, Path(backing), self.minor_arg(vd))
            self.devices.pop(backing, None)
            self._in_use_cache.pop(vd.backing, None)
            self.in_use_reports.forget(backing)

    def sync_devices(self, rd: st.ResourceDefinition) -> None:
        for vd in rd.volume_definitions.values():
            if self.needs_device(rd, vd):
                if vd.backing not in self.devices:
                    self.attach(vd)
            elif vd.backing in self.devices:
                try:
                    self.detach(vd)
                except Exception as exc:
                    # Still open somewhere (a late probe): keep it, the next sync tries again.
                    log.warning("could not release the device of %s yet: %s", vd.backing, exc)

    def device_path(self, vd: st.VolumeDefinition) -> str | None:
        """The top device every replica reports: ``drbd<minor>`` (DRBD-shaped) or the loop device."""
        if self.drbd:
            return f"{self._dev_prefix}{vd.minor}"
        attached = self.devices.get(vd.backing or "")
        return attached[0] if attached else None

    def backing_device(self, vd: st.VolumeDefinition) -> str | None:
        attached = self.devices.get(vd.backing or "")
        return attached[1] if attached else None

    def allocated_kib(self, vd: st.VolumeDefinition) -> int:
        """Blocks the thin file really uses; one ``stat`` per volume per half second at most."""
        if not vd.backing:
            return 0
        now = time.monotonic()
        cached = self._allocated_cache.get(vd.backing)
        if cached is not None and now - cached[0] < IN_USE_TTL_S:
            return cached[1]
        try:
            value = self.storage.allocated_kib(Path(vd.backing))
        except Exception:
            value = 0
        self._allocated_cache[vd.backing] = (now, value)
        return value

    # ------------------------------------------------------------------ in use

    def device_in_use(self, vd: st.VolumeDefinition, fresh: bool = False) -> bool:
        """The state the satellite last reported: a live look, passed through the report lag."""
        if not vd.backing or vd.backing not in self.devices:
            return False
        now = time.monotonic()
        cached = self._in_use_cache.get(vd.backing)
        if not fresh and cached is not None and now - cached[0] < IN_USE_TTL_S:
            return self.in_use_reports.report(vd.backing, cached[1])
        try:
            value = self.storage.in_use(Path(vd.backing), self.minor_arg(vd))
        except Exception as exc:
            log.warning("in-use detection failed for %s: %s", vd.backing, exc)
            value = False
        self._in_use_cache[vd.backing] = (now, value)
        return self.in_use_reports.report(vd.backing, value)

    def in_use_reported(
        self, rd: st.ResourceDefinition, rsc: st.Resource, fresh: bool = False
    ) -> bool | None:
        """``state.in_use`` of a resource; None when the controller would not know it."""
        if rsc.in_use_override is not None:
            return rsc.in_use_override
        if not self.drbd and self.config.strict_in_use:
            return None
        if "TIE_BREAKER" in rsc.flags:
            return False  # a tie-breaker has no device a host could open
        # The host's opener is the local node's resource; without one, a diskless
        # replica stands for the attaching node.
        if names.key(rsc.node) != self.local_key and (not rsc.diskless or self.local_key in rd.resources):
            return False
        return any(self.device_in_use(vd, fresh) for vd in rd.volume_definitions.values())

    def invalidate_in_use(self) -> None:
        """After a mutation: devices, mounts and file sizes may have changed."""
        self._in_use_cache.clear()
        self._allocated_cache.clear()

    # ------------------------------------------------------------------ layers

    def layer_stack(
        self, rd: st.ResourceDefinition, requested: list[str] | None, op: int, obj: int
    ) -> tuple[list[str], list[rc.Entry]]:
        """Effective layer stack: request, RD, resource group, then ``[DRBD, STORAGE]``."""
        warnings: list[rc.Entry] = []
        stack = requested or rd.layer_stack
        if not stack:
            rg = self.rg_of(rd)
            stack = (rg.select_filter.get("layer_stack") if rg else None) or ["DRBD", "STORAGE"]
        stack = [s.upper() for s in stack]
        for layer in stack:
            if layer not in KNOWN_LAYERS:
                raise rc.ApiFailure(
                    rc.error(rc.FAIL_INVLD_LAYER_KIND, f"Unknown layer kind '{layer}'", op, obj)
                )
        if stack[-1] != "STORAGE":
            stack = [*stack, "STORAGE"]
            warnings.append(rc.warn(0, "Layer stack did not end with STORAGE; STORAGE appended.", op, obj))
        supported = {"DRBD", "STORAGE"} if self.drbd else {"STORAGE"}
        for layer in stack:
            if layer not in supported:
                raise rc.ApiFailure(
                    rc.error(
                        rc.FAIL_STLT_DOES_NOT_SUPPORT_LAYER,
                        f"The satellite does not support the device layer '{layer}'",
                        op,
                        obj,
                        cause=(
                            "The emulator runs in storage-only mode (no DRBD)."
                            if layer == "DRBD"
                            else f"The emulator does not provide the {layer} layer."
                        ),
                        correction="Use layer_list ['STORAGE'] or start the emulator without --storage-only."
                        if layer == "DRBD"
                        else "",
                    )
                )
        return stack, warnings

    def effective_prop(
        self, rd: st.ResourceDefinition, vd: st.VolumeDefinition | None, key: str
    ) -> str | None:
        """FileSystem/* lookup order of a satellite: VD, volume group, RD, resource group."""
        if vd is not None and key in vd.props:
            return vd.props[key]
        rg = self.rg_of(rd)
        if vd is not None and rg is not None:
            vg = rg.volume_groups.get(str(vd.number))
            if vg is not None and key in vg.props:
                return vg.props[key]
        if key in rd.props:
            return rd.props[key]
        if rg is not None and key in rg.props:
            return rg.props[key]
        return None
