"""The emulator's object model and its atomic JSON persistence.

Maps are keyed by the upper-cased name (LINSTOR identity) and each object keeps its
display name. Everything here is plain data: the controller module owns the rules and
the storage module owns the host; this module only remembers and reloads.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.ordered import SortedKeyDict

STATE_FILE = "emulator-state.json"
FORMAT_VERSION = 1
#: Journal files beside the state file (see :class:`Saver`); the state file names the current one.
JOURNAL_PREFIX = "emulator-journal-"
#: A journal smaller than this is never folded into a new snapshot, however small the state.
JOURNAL_MIN_BYTES = 1 << 20


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Node:
    name: str
    type: str = "SATELLITE"
    props: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    online: bool = True
    local: bool = False
    uuid: str = field(default_factory=new_uuid)
    #: The satellite's address and port as ``node create`` gave them ("" = the emulator's default).
    address: str = ""
    port: int = 3366
    encryption: str = "PLAIN"


@dataclass
class Pool:
    node: str
    name: str
    kind: str
    props: dict[str, str] = field(default_factory=dict)
    uuid: str = field(default_factory=new_uuid)
    #: (total_kib, free_kib) set through the control API to fake a full pool.
    capacity_override: list[int] | None = None


@dataclass
class VolumeGroup:
    number: int
    props: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    uuid: str = field(default_factory=new_uuid)


@dataclass
class ResourceGroup:
    name: str
    description: str = ""
    props: dict[str, str] = field(default_factory=dict)
    select_filter: dict[str, Any] = field(default_factory=dict)
    peer_slots: int | None = None
    volume_groups: dict[str, VolumeGroup] = field(default_factory=dict)
    uuid: str = field(default_factory=new_uuid)


@dataclass
class VolumeDefinition:
    number: int
    size_kib: int
    props: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    minor: int = 1000
    uuid: str = field(default_factory=new_uuid)
    #: The one backing file shared by every replica (replicas share data, as DRBD keeps them equal).
    backing: str | None = None


@dataclass
class Volume:
    number: int
    pool: str
    uuid: str = field(default_factory=new_uuid)


@dataclass
class Resource:
    node: str
    props: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    volumes: dict[str, Volume] = field(default_factory=dict)
    node_id: int = 0
    tcp_port: int = 7000
    create_ts: int = field(default_factory=now_ms)
    uuid: str = field(default_factory=new_uuid)
    #: None = detect; True/False = forced through the control API.
    in_use_override: bool | None = None

    @property
    def diskless(self) -> bool:
        return "DISKLESS" in self.flags or "DRBD_DISKLESS" in self.flags


@dataclass
class SnapshotVolume:
    number: int
    size_kib: int
    props: dict[str, str] = field(default_factory=dict)
    file: str | None = None
    allocated_kib: int = 0
    uuid: str = field(default_factory=new_uuid)


@dataclass
class Snapshot:
    name: str
    nodes: list[str] = field(default_factory=list)
    props: dict[str, str] = field(default_factory=dict)
    rd_props: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    volumes: dict[str, SnapshotVolume] = field(default_factory=dict)
    #: node key -> storage pool name the snapshot lives in on that node
    pools: dict[str, str] = field(default_factory=dict)
    node_uuids: dict[str, str] = field(default_factory=dict)
    create_ts: int = field(default_factory=now_ms)
    uuid: str = field(default_factory=new_uuid)


@dataclass
class ResourceDefinition:
    name: str
    external_name: str = ""
    props: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    resource_group: str = "DfltRscGrp"
    layer_stack: list[str] = field(default_factory=list)
    #: -1: ports are allocated per node (per resource), as current LINSTOR does.
    port: int = -1
    secret: str = field(default_factory=lambda: uuidlib.uuid4().hex[:20])
    peer_slots: int = 7
    volume_definitions: dict[str, VolumeDefinition] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    clone_status: str = ""
    uuid: str = field(default_factory=new_uuid)


@dataclass
class KeyValueStore:
    name: str
    props: dict[str, str] = field(default_factory=dict)


@dataclass
class State:
    nodes: dict[str, Node] = field(default_factory=dict)
    pools: dict[str, dict[str, Pool]] = field(default_factory=dict)  # node key -> pool key -> Pool
    resource_groups: dict[str, ResourceGroup] = field(default_factory=dict)
    #: kept in key order between list calls, as the controller's TreeMap (see :mod:`emulator.ordered`)
    resource_definitions: SortedKeyDict[str, ResourceDefinition] = field(default_factory=SortedKeyDict)
    kvs: dict[str, KeyValueStore] = field(default_factory=dict)
    #: remote key -> plain record (see :mod:`emulator.api_remotes`)
    remotes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: this emulated cluster's ``Cluster/LocalID`` (made on first use)
    cluster_id: str = ""
    #: ``/v1/controller/properties``: set by clients, on top of the defaults a controller starts with.
    controller_props: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, **_plain(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        state = cls()
        state.nodes = {k: Node(**v) for k, v in data.get("nodes", {}).items()}
        state.pools = {
            nk: {pk: Pool(**p) for pk, p in pools.items()} for nk, pools in data.get("pools", {}).items()
        }
        for k, v in data.get("resource_groups", {}).items():
            vgs = {vk: VolumeGroup(**vg) for vk, vg in v.pop("volume_groups", {}).items()}
            state.resource_groups[k] = ResourceGroup(**v, volume_groups=vgs)
        for k, v in data.get("resource_definitions", {}).items():
            vds = {vk: VolumeDefinition(**vd) for vk, vd in v.pop("volume_definitions", {}).items()}
            rscs = {}
            for rk, r in v.pop("resources", {}).items():
                vols = {vk: Volume(**vol) for vk, vol in r.pop("volumes", {}).items()}
                rscs[rk] = Resource(**r, volumes=vols)
            snaps = {}
            for sk, s in v.pop("snapshots", {}).items():
                svols = {vk: SnapshotVolume(**sv) for vk, sv in s.pop("volumes", {}).items()}
                snaps[sk] = Snapshot(**s, volumes=svols)
            state.resource_definitions[k] = ResourceDefinition(
                **v, volume_definitions=vds, resources=rscs, snapshots=snaps
            )
        state.kvs = {k: KeyValueStore(**v) for k, v in data.get("kvs", {}).items()}
        state.remotes = dict(data.get("remotes", {}))
        state.cluster_id = data.get("cluster_id", "")
        state.controller_props = dict(data.get("controller_props", {}))
        return state


def changed_keys(current: Mapping[str, Any], known: Mapping[str, Any], named: Iterable[str]) -> set[str]:
    """Keys that may differ between ``current`` and ``known``: the named ones, and any made or
    removed without being named.

    New keys sit at the end of an insertion-ordered dict, so they are found from its end; only
    when that does not account for the difference in size does it take a full comparison.
    """
    keys = set(named)
    size = len(known)
    size += sum(1 for k in keys if k in current and k not in known)
    size -= sum(1 for k in keys if k not in current and k in known)
    if size == len(current):
        return keys
    for key in reversed(current):
        if key not in known:
            if key not in keys:
                keys.add(key)
                size += 1
        elif key not in keys:
            break
    if size == len(current):
        return keys
    return keys | (current.keys() ^ known.keys())


def _plain(value: Any) -> Any:
    """A JSON-ready copy; much faster than ``dataclasses.asdict``, which deep-copies every leaf."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in vars(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class Saver:
    """Saves after each mutation what it changed, so a save does not grow with the state.

    The state is a snapshot file plus a journal: a save appends one line holding the
    definitions that changed (as JSON fragments), those removed, and the top-level parts
    when they changed, then fsyncs it. One line is one mutation, written with one write:
    a crash leaves it whole or torn, and a torn last line is ignored on load, so the
    state read back is the old or the new one, never a mix. When the journal has grown to
    the size of the snapshot (and at the first save of a process, or when the snapshot
    is missing) the whole state is written afresh (temp + fsync + rename) and names a
    new, empty journal. With thousands of definitions, rewriting the whole file per
    request would dominate every mutation (and make seeding grow with its square).
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._fragments: dict[str, str] = {}
        self._head = ""
        self._journal: Path | None = None
        self._journal_bytes = 0
        self._snapshot_bytes = 0

    def save(self, state: State, dirty: set[str] | None = None, held: set[str] | None = None) -> None:
        """``dirty``: keys of changed resource definitions; None = all may have changed.

        ``held``: definitions a request is still changing; they are written as last saved
        (or left out when they were never saved), so the file only ever holds finished changes.
        """
        held = held or set()
        if dirty is not None and self._journal is not None:
            self._save_changes(state, dirty, held)
            return
        fragments: dict[str, str] = {}
        for key, rd in state.resource_definitions.items():
            cached = self._fragments.get(key)
            if key in held:
                if cached is not None:
                    fragments[key] = cached
                continue
            if cached is None or dirty is None or key in dirty:
                cached = json.dumps(_plain(rd), separators=(",", ":"))
            fragments[key] = cached
        for key in held:
            # Removed from memory by a request that has not finished yet: still saved as it was.
            if key not in fragments and key in self._fragments:
                fragments[key] = self._fragments[key]
        head = self._head_of(state)
        previous = self._fragments
        self._fragments = fragments
        if self._snapshot_due():
            self._write_snapshot(head, fragments)
            return
        changed = {k: f for k, f in fragments.items() if previous.get(k) != f}
        removed = [k for k in previous if k not in fragments]
        self._append(head, changed, removed)

    def _save_changes(self, state: State, dirty: set[str], held: set[str]) -> None:
        """The save of a mutation that named what it changed: only those definitions (and any
        made or removed without being named) are looked at, so its cost does not grow with the
        state. The outcome is the full save's: held definitions stay as they were saved."""
        fragments = self._fragments
        changed: dict[str, str] = {}
        removed: list[str] = []
        rds = state.resource_definitions
        for key in changed_keys(rds, fragments, dirty):
            if key in held:
                continue
            rd = rds.get(key)
            if rd is None:
                if fragments.pop(key, None) is not None:
                    removed.append(key)
                continue
            fragment = json.dumps(_plain(rd), separators=(",", ":"))
            if fragments.get(key) != fragment:
                fragments[key] = changed[key] = fragment
        head = self._head_of(state)
        if self._snapshot_due():
            self._write_snapshot(head, fragments)
            return
        self._append(head, changed, removed)

    @staticmethod
    def _head_of(state: State) -> str:
        """Everything but the definitions, as one JSON object."""
        return json.dumps(
            {
                "format": FORMAT_VERSION,
                "nodes": _plain(state.nodes),
                "pools": _plain(state.pools),
                "resource_groups": _plain(state.resource_groups),
                "kvs": _plain(state.kvs),
                "remotes": _plain(state.remotes),
                "cluster_id": state.cluster_id,
                "controller_props": dict(state.controller_props),
            },
            separators=(",", ":"),
        )

    def _snapshot_due(self) -> bool:
        return (
            self._journal is None
            or self._journal_bytes > max(self._snapshot_bytes, JOURNAL_MIN_BYTES)
            or not (self.state_dir / STATE_FILE).exists()
        )

    def _append(self, head: str, changed: dict[str, str], removed: list[str]) -> None:
        """One journal line: the definitions changed and removed, and the top level when it changed."""
        if not changed and not removed and head == self._head:
            return
        line = (
            '{"head":'
            + (head if head != self._head else "null")
            + ',"set":{'
            + ",".join(f"{json.dumps(k)}:{f}" for k, f in changed.items())
            + '},"del":'
            + json.dumps(removed)
            + "}\n"
        )
        self._head = head
        data = line.encode()
        fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._journal_bytes += len(data)

    def _write_snapshot(self, head: str, fragments: dict[str, str]) -> None:
        journal = f"{JOURNAL_PREFIX}{uuidlib.uuid4().hex}.jsonl"
        body = ",".join(f"{json.dumps(k)}:{frag}" for k, frag in fragments.items())
        text = head[:-1] + f',"journal":{json.dumps(journal)},"resource_definitions":{{' + body + "}}"
        _write_atomic(self.state_dir, text)
        # Journals of earlier snapshots are no longer read; the snapshot just written names its own.
        for old in self.state_dir.glob(f"{JOURNAL_PREFIX}*.jsonl"):
            if old.name != journal:
                old.unlink(missing_ok=True)
        self._journal = self.state_dir / journal
        self._journal_bytes = 0
        self._snapshot_bytes = len(text)
        self._head = head


def save(state: State, state_dir: Path) -> None:
    """A one-off full save (tests, tools); the server keeps a :class:`Saver`."""
    Saver(state_dir).save(state)


def _write_atomic(state_dir: Path, text: str) -> None:
    """Write temp + fsync + rename, so a crash leaves either the old or the new state."""
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_dir / STATE_FILE
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=state_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        dir_fd = os.open(state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_temp_files(state_dir: Path) -> list[Path]:
    """Temp files of saves that a crash interrupted (the state file itself is always whole)."""
    removed = []
    for tmp in state_dir.glob(".state-*"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def load(state_dir: Path) -> State | None:
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    with path.open(encoding="utf-8") as fh:
        data = json.load(fh)
    journal = data.pop("journal", None)
    if journal:
        _replay(data, state_dir / str(journal))
    return State.from_json(data)


def _replay(data: dict[str, Any], journal: Path) -> None:
    """Apply the journal's whole lines in order; a torn last line (a crash mid-write) is not."""
    try:
        lines = journal.read_bytes().split(b"\n")
    except FileNotFoundError:
        return
    rds = data.setdefault("resource_definitions", {})
    for raw in lines:
        if not raw:
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            break
        if entry.get("head"):
            data.update(entry["head"])
        rds.update(entry.get("set") or {})
        for key in entry.get("del") or ():
            rds.pop(key, None)
