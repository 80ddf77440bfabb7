"""LINSTOR's answers as typed records, converted from the wire in exactly one place.

The controller serialises with Jackson ``NON_EMPTY``: empty lists, maps and strings and
nulls are left out, so every key may be missing. Each ``from_wire`` below is the only code
that reads a key of LINSTOR's JSON, tolerates a missing or oddly typed value (a number sent
as a string, a list where a map was expected) and gives the core a record with plain
Python defaults instead. The rest of the plugin reads attributes, never keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from plugin.linstor import retcodes as rc

DISKLESS = "DISKLESS"
#: Resource flags that mean "no local data" (a tie-breaker is diskless too).
DISKLESS_FLAGS = frozenset({"DISKLESS", "DRBD_DISKLESS", "NVME_INITIATOR"})

Props = Mapping[str, str]
R = TypeVar("R")


# Parsed JSON is made of exact dicts, lists and strs: each helper checks for those first,
# because a list of 10,000 volumes calls them hundreds of thousands of times and the
# general checks (``isinstance`` against an ABC) cost several times as much.


def _map(value: Any) -> Mapping[str, Any]:
    if type(value) is dict:
        return value
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    if type(value) is list:
        return value
    return value if isinstance(value, list | tuple) else ()


def _objects(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in _list(value) if type(item) is dict or isinstance(item, Mapping)]


def _str(value: Any) -> str:
    if type(value) is str:
        return value
    return "" if value is None else str(value)


def _int(value: Any, default: int = 0) -> int:
    """An integer as Jackson may send it: a number, a float or a numeric string."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _opt_int(value: Any) -> int | None:
    return None if value is None or value == "" else _int(value)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _props(value: Any) -> Props:
    """Properties as strings; parsed JSON's own dict when it holds only strings already.

    Its keys are strings (JSON's are), so only the values are looked at; the dict was
    parsed for this record alone, and records hand it out read-only.
    """
    if type(value) is dict:
        for v in value.values():
            if type(v) is not str:
                break
        else:
            return value
    return {k if type(k) is str else str(k): v if type(v) is str else _str(v) for k, v in _map(value).items()}


_NO_FLAGS: frozenset[str] = frozenset()


def _flags(value: Any) -> frozenset[str]:
    if not value:
        return _NO_FLAGS
    return frozenset(str(f).upper() for f in _list(value))


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """``GET /v1/controller/version``."""

    version: str = ""
    rest_api_version: str = ""

    @classmethod
    def from_wire(cls, wire: Any) -> VersionInfo:
        w = _map(wire)
        return cls(version=_str(w.get("version")), rest_api_version=_str(w.get("rest_api_version")))


@dataclass(frozen=True, slots=True)
class Node:
    """A LINSTOR node (satellite, controller or combined)."""

    name: str
    type: str = ""
    connection_status: str = ""
    props: Props = field(default_factory=dict)

    @property
    def online(self) -> bool:
        return self.connection_status.upper() == "ONLINE"

    @classmethod
    def from_wire(cls, wire: Any) -> Node:
        w = _map(wire)
        return cls(
            name=_str(w.get("name")),
            type=_str(w.get("type")),
            connection_status=_str(w.get("connection_status")),
            props=_props(w.get("props")),
        )


@dataclass(frozen=True, slots=True)
class StoragePool:
    """One storage pool on one node. Capacities in KiB; None when LINSTOR does not know them."""

    node: str
    name: str
    provider_kind: str = ""
    free_kib: int | None = None
    total_kib: int | None = None
    #: The messages of the pool's reports (e.g. "node not connected").
    report_messages: tuple[str, ...] = ()
    #: The satellite is not connected: LINSTOR reports it and knows no free space.
    offline: bool = False

    @property
    def diskless(self) -> bool:
        return self.provider_kind.upper() == DISKLESS

    @classmethod
    def from_wire(cls, wire: Any) -> StoragePool:
        w = _map(wire)
        reports = _objects(w.get("reports"))
        return cls(
            node=_str(w.get("node_name")),
            name=_str(w.get("storage_pool_name")),
            provider_kind=_str(w.get("provider_kind")),
            free_kib=_opt_int(w.get("free_capacity")),
            total_kib=_opt_int(w.get("total_capacity")),
            report_messages=tuple(_str(r.get("message")) for r in reports if r.get("message")),
            offline=any(rc.bare_code(rc.ret_code(r)) == rc.WARN_NOT_CONNECTED for r in reports),
        )


@dataclass(frozen=True, slots=True)
class ResourceGroup:
    """A resource group; ``select_filter`` stays a mapping, as the core compares it key by key."""

    name: str
    select_filter: Mapping[str, Any] = field(default_factory=dict)
    props: Props = field(default_factory=dict)

    @classmethod
    def from_wire(cls, wire: Any) -> ResourceGroup:
        w = _map(wire)
        return cls(
            name=_str(w.get("name")),
            select_filter=dict(_map(w.get("select_filter"))),
            props=_props(w.get("props")),
        )


@dataclass(frozen=True, slots=True)
class VolumeDefinition:
    """A volume definition, of a resource definition or of a snapshot definition."""

    number: int = 0
    size_kib: int = 0
    props: Props = field(default_factory=dict)

    @classmethod
    def from_wire(cls, wire: Any) -> VolumeDefinition:
        w = _map(wire)
        # a snapshot's volume definitions carry their props as ``volume_definition_props``
        props = w.get("props") or w.get("volume_definition_props")
        return cls(
            number=_int(w.get("volume_number")),
            size_kib=_int(w.get("size_kib")),
            props=_props(props),
        )


def _pick(vds: Sequence[VolumeDefinition], number: int) -> VolumeDefinition | None:
    return next((vd for vd in vds if vd.number == number), None)


@dataclass(frozen=True, slots=True)
class ResourceDefinition:
    """A resource definition; ``volume_definitions`` only when listed with them."""

    name: str
    resource_group: str = ""
    props: Props = field(default_factory=dict)
    flags: frozenset[str] = frozenset()
    volume_definitions: tuple[VolumeDefinition, ...] = ()

    def volume_definition(self, number: int = 0) -> VolumeDefinition | None:
        return _pick(self.volume_definitions, number)

    @classmethod
    def from_wire(cls, wire: Any) -> ResourceDefinition:
        w = _map(wire)
        return cls(
            name=_str(w.get("name")),
            resource_group=_str(w.get("resource_group_name")),
            props=_props(w.get("props")),
            flags=_flags(w.get("flags")),
            volume_definitions=tuple(
                VolumeDefinition.from_wire(v) for v in _objects(w.get("volume_definitions"))
            ),
        )


class DefinitionHead(NamedTuple):
    """What a list of volume names reads of a resource definition (listed with its volume
    definitions): a fraction of :class:`ResourceDefinition`'s conversion, which a list of
    thousands repeats for every definition."""

    name: str
    props: Props
    flags: frozenset[str]
    #: whether it has volume 0 (a definition kept only for its snapshots has none)
    has_volume_0: bool

    @classmethod
    def from_wire(cls, wire: Any) -> DefinitionHead:
        w = _map(wire)
        return cls(
            _str(w.get("name")),
            _props(w.get("props")),
            _flags(w.get("flags")),
            any(_int(v.get("volume_number")) == 0 for v in _objects(w.get("volume_definitions"))),
        )


@dataclass(frozen=True, slots=True)
class Volume:
    """One volume of a resource on one node (the LINSTOR ``Volume``, not the core's)."""

    number: int = 0
    provider_kind: str = ""
    device_path: str = ""
    storage_pool: str = ""
    disk_state: str = ""
    allocated_kib: int = 0
    #: The storage layer's (the last layer's) usable size; 0 when not reported.
    usable_kib: int = 0
    #: Layer kinds top down, e.g. ("DRBD", "STORAGE").
    layers: tuple[str, ...] = ()

    @property
    def diskless(self) -> bool:
        return self.provider_kind.upper() == DISKLESS

    @property
    def uses_drbd(self) -> bool:
        return bool(self.layers) and self.layers[0] == "DRBD"

    @classmethod
    def from_wire(cls, wire: Any) -> Volume:
        w = _map(wire)
        layers = _objects(w.get("layer_data_list"))
        storage = _map(layers[-1].get("data")) if layers else {}
        return cls(
            number=_int(w.get("volume_number")),
            provider_kind=_str(w.get("provider_kind")),
            device_path=_str(w.get("device_path")),
            storage_pool=_str(w.get("storage_pool_name")),
            disk_state=_str(_map(w.get("state")).get("disk_state")),
            allocated_kib=_int(w.get("allocated_size_kib")),
            usable_kib=_int(storage.get("usable_size_kib")),
            layers=tuple(_str(layer.get("type")).upper() for layer in layers),
        )


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource (one replica or diskless attachment of a resource definition on a node)."""

    name: str
    node: str
    props: Props = field(default_factory=dict)
    flags: frozenset[str] = frozenset()
    #: The node reports a state (it is connected); without it nothing is known of the replica.
    state_known: bool = False
    in_use: bool = False
    volumes: tuple[Volume, ...] = ()

    @property
    def diskless(self) -> bool:
        """No local data: a diskless flag, or volume 0 provided by no pool."""
        vol = self.volume()
        return bool(self.flags & DISKLESS_FLAGS) or (vol is not None and vol.diskless)

    @property
    def tie_breaker(self) -> bool:
        return "TIE_BREAKER" in self.flags

    def volume(self, number: int = 0) -> Volume | None:
        """Volume ``number``, else the first one (as LINSTOR lists a lone volume), else None."""
        found = next((v for v in self.volumes if v.number == number), None)
        return found or (self.volumes[0] if self.volumes else None)

    def exact_volume(self, number: int) -> Volume | None:
        return next((v for v in self.volumes if v.number == number), None)

    @classmethod
    def from_wire(cls, wire: Any) -> Resource:
        w = _map(wire)
        state = w.get("state")
        return cls(
            name=_str(w.get("name")),
            node=_str(w.get("node_name")),
            props=_props(w.get("props")),
            flags=_flags(w.get("flags")),
            state_known="state" in w,
            in_use=_bool(_map(state).get("in_use", False)),
            volumes=tuple(Volume.from_wire(v) for v in _objects(w.get("volumes"))),
        )


@dataclass(frozen=True, slots=True)
class SnapshotDefinition:
    """A snapshot definition with its per-node snapshots.

    ``props`` are the snapshot definition's own properties (older controllers send the
    merged view as ``props`` only); ``merged_props`` the merged view overlaid with them.
    """

    name: str
    resource_name: str
    flags: frozenset[str] = frozenset()
    props: Props = field(default_factory=dict)
    merged_props: Props = field(default_factory=dict)
    resource_definition_props: Props = field(default_factory=dict)
    volume_definitions: tuple[VolumeDefinition, ...] = ()
    nodes: tuple[str, ...] = ()
    #: Creation times of the per-node snapshots, in milliseconds since the epoch.
    create_timestamps: tuple[int, ...] = ()

    @property
    def successful(self) -> bool:
        return "SUCCESSFUL" in self.flags

    def volume_definition(self, number: int = 0) -> VolumeDefinition | None:
        return _pick(self.volume_definitions, number)

    @classmethod
    def from_wire(cls, wire: Any) -> SnapshotDefinition:
        w = _map(wire)
        own = w.get("snapshot_definition_props")
        legacy = _props(w.get("props"))
        props = _props(own) if isinstance(own, Mapping) else legacy
        stamps = tuple(
            _int(s.get("create_timestamp")) for s in _objects(w.get("snapshots")) if s.get("create_timestamp")
        )
        return cls(
            name=_str(w.get("name")),
            resource_name=_str(w.get("resource_name")),
            flags=_flags(w.get("flags")),
            props=props,
            merged_props={**legacy, **_props(own)},
            resource_definition_props=_props(w.get("resource_definition_props") or w.get("props")),
            volume_definitions=tuple(
                VolumeDefinition.from_wire(v) for v in _objects(w.get("volume_definitions"))
            ),
            nodes=tuple(_str(n) for n in _list(w.get("nodes"))),
            create_timestamps=stamps,
        )


#: The lists of ``GET /v1/remotes`` and the kind of remote each holds.
REMOTE_LISTS = (("S3", "s3_remotes"), ("Linstor", "linstor_remotes"), ("EBS", "ebs_remotes"))


@dataclass(frozen=True, slots=True)
class Remote:
    """A backup target: an S3 bucket or another LINSTOR cluster. LINSTOR never returns its keys."""

    name: str
    kind: str  # "S3", "Linstor" or "EBS"
    endpoint: str = ""
    bucket: str = ""
    region: str = ""
    use_path_style: bool = False
    url: str = ""
    cluster_id: str = ""

    @classmethod
    def from_wire(cls, wire: Any, kind: str = "") -> Remote:
        w = _map(wire)
        return cls(
            name=_str(w.get("remote_name")),
            kind=kind,
            endpoint=_str(w.get("endpoint")),
            bucket=_str(w.get("bucket")),
            region=_str(w.get("region")),
            use_path_style=_bool(w.get("use_path_style", False)),
            url=_str(w.get("url")),
            cluster_id=_str(w.get("cluster_id")),
        )


def remotes_from_wire(wire: Any) -> list[Remote]:
    """Every remote of ``GET /v1/remotes`` (the spec words the answer as a list of one RemoteList)."""
    if isinstance(wire, list):
        wire = wire[0] if wire else {}
    w = _map(wire)
    return [Remote.from_wire(r, kind) for kind, key in REMOTE_LISTS for r in _objects(w.get(key))]


@dataclass(frozen=True, slots=True)
class Backup:
    """One backup in an S3 remote. Times in milliseconds since the epoch, 0 when not reported."""

    id: str
    origin_resource: str = ""
    origin_snapshot: str = ""
    #: The backup an incremental one builds on ("" for a full backup).
    based_on: str = ""
    started_ms: int = 0
    finished_ms: int = 0
    success: bool = False
    restorable: bool = True
    shipping: bool = False
    #: The shipment ended (a finish time or failure messages are reported).
    ended: bool = False

    @property
    def done(self) -> bool:
        """Finished and restorable."""
        return self.success and self.restorable

    @property
    def failed(self) -> bool:
        return not self.shipping and not self.success and self.ended

    @classmethod
    def from_wire(cls, wire: Any, key: str = "") -> Backup:
        w = _map(wire)
        return cls(
            id=_str(w.get("id", key)),
            origin_resource=_str(w.get("origin_rsc")),
            origin_snapshot=_str(w.get("origin_snap")),
            based_on=_str(w.get("based_on_id")),
            started_ms=_int(w.get("start_timestamp")),
            finished_ms=_int(w.get("finished_timestamp")),
            success=_bool(w.get("success")),
            restorable=w.get("restorable", True) is not False,
            shipping=_bool(w.get("shipping")),
            ended=bool(w.get("finished_timestamp") or w.get("finished_time") or w.get("fail_messages")),
        )


def backups_from_wire(wire: Any) -> list[Backup]:
    """The LINSTOR backups of ``GET /v1/remotes/{remote}/backups`` (a map keyed by backup id)."""
    listed = _map(_map(wire).get("linstor"))
    return [Backup.from_wire(b, str(key)) for key, b in listed.items() if isinstance(b, Mapping)]


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """``POST /v1/remotes/{remote}/backups/info``: what a restore of a backup needs."""

    #: The newest backup of the chain, when the remote names one.
    latest: str = ""
    #: The storage pools the backup's data came from.
    storage_pools: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, wire: Any) -> BackupInfo:
        w = _map(wire)
        return cls(
            latest=_str(w.get("latest")),
            storage_pools=tuple(_str(p.get("name")) for p in _objects(w.get("storpools"))),
        )


def many(convert: Callable[[Any], R], wire: Any) -> list[R]:
    """Every object of a wire list converted; anything that is not a list holds no objects."""
    return [convert(item) for item in _objects(wire)]
