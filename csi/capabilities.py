"""What this driver supports, as data: plugin/controller/node capabilities and access modes.

The lists are built once and used both to answer the *GetCapabilities RPCs and to
check requests, so an advertised capability and the behaviour behind it cannot drift.
Deliberately not advertised: SNAPSHOT_METADATA. MODIFY_VOLUME is advertised: the
mutable parameters are listed in :mod:`plugin.volumes.modify`. GET_SNAPSHOT is
advertised (spec v1.12; csi-sanity before v5.4 does not know it). PUBLISH_READONLY is
advertised; how it coexists with Nomad's per-claim ``readonly`` is told in
:mod:`csi.publications`. LIST_VOLUMES_PUBLISHED_NODES reports the nodes the volume was
published to, as recorded in LINSTOR, never mere replicas.

The filesystems a capability may ask for are the node's own list
(:data:`plugin.params.filesystems.FILESYSTEMS`): a volume the node could never stage
is refused when it is created.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from csi.generated import csi_pb2
from plugin.errors import InvalidArgument
from plugin.params.filesystems import FILESYSTEMS

Mode = csi_pb2.VolumeCapability.AccessMode.Mode
CtrlRpc = csi_pb2.ControllerServiceCapability.RPC.Type
NodeRpc = csi_pb2.NodeServiceCapability.RPC.Type

PLUGIN_CAPABILITIES = (
    csi_pb2.PluginCapability(
        service=csi_pb2.PluginCapability.Service(type=csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE)
    ),
    csi_pb2.PluginCapability(
        service=csi_pb2.PluginCapability.Service(
            type=csi_pb2.PluginCapability.Service.VOLUME_ACCESSIBILITY_CONSTRAINTS
        )
    ),
    csi_pb2.PluginCapability(
        volume_expansion=csi_pb2.PluginCapability.VolumeExpansion(
            type=csi_pb2.PluginCapability.VolumeExpansion.ONLINE
        )
    ),
    csi_pb2.PluginCapability(
        service=csi_pb2.PluginCapability.Service(
            type=csi_pb2.PluginCapability.Service.GROUP_CONTROLLER_SERVICE
        )
    ),
)

GroupRpc = csi_pb2.GroupControllerServiceCapability.RPC.Type
GROUP_CONTROLLER_RPCS = (GroupRpc.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT,)

CONTROLLER_RPCS = (
    CtrlRpc.CREATE_DELETE_VOLUME,
    CtrlRpc.PUBLISH_UNPUBLISH_VOLUME,
    CtrlRpc.PUBLISH_READONLY,
    CtrlRpc.LIST_VOLUMES,
    CtrlRpc.LIST_VOLUMES_PUBLISHED_NODES,
    CtrlRpc.GET_CAPACITY,
    CtrlRpc.CREATE_DELETE_SNAPSHOT,
    CtrlRpc.LIST_SNAPSHOTS,
    CtrlRpc.CLONE_VOLUME,
    CtrlRpc.EXPAND_VOLUME,
    CtrlRpc.GET_VOLUME,
    CtrlRpc.VOLUME_CONDITION,
    CtrlRpc.SINGLE_NODE_MULTI_WRITER,
    CtrlRpc.GET_SNAPSHOT,
    CtrlRpc.MODIFY_VOLUME,
)

NODE_RPCS = (
    NodeRpc.STAGE_UNSTAGE_VOLUME,
    NodeRpc.GET_VOLUME_STATS,
    NodeRpc.EXPAND_VOLUME,
    NodeRpc.VOLUME_CONDITION,
    NodeRpc.SINGLE_NODE_MULTI_WRITER,
)

# Filesystem volumes can be written from one node at a time (no RWX export); raw block
# volumes may be opened on several nodes (DRBD allows two primaries for live migration).
_SINGLE_NODE = {
    Mode.SINGLE_NODE_WRITER,
    Mode.SINGLE_NODE_READER_ONLY,
    Mode.SINGLE_NODE_SINGLE_WRITER,
    Mode.SINGLE_NODE_MULTI_WRITER,
}
MOUNT_MODES = frozenset(_SINGLE_NODE | {Mode.MULTI_NODE_READER_ONLY})
BLOCK_MODES = frozenset(
    _SINGLE_NODE | {Mode.MULTI_NODE_READER_ONLY, Mode.MULTI_NODE_SINGLE_WRITER, Mode.MULTI_NODE_MULTI_WRITER}
)
READ_ONLY_MODES = frozenset({Mode.SINGLE_NODE_READER_ONLY, Mode.MULTI_NODE_READER_ONLY})


def controller_capabilities() -> list[csi_pb2.ControllerServiceCapability]:
    return [
        csi_pb2.ControllerServiceCapability(rpc=csi_pb2.ControllerServiceCapability.RPC(type=t))
        for t in CONTROLLER_RPCS
    ]


def group_controller_capabilities() -> list[csi_pb2.GroupControllerServiceCapability]:
    return [
        csi_pb2.GroupControllerServiceCapability(rpc=csi_pb2.GroupControllerServiceCapability.RPC(type=t))
        for t in GROUP_CONTROLLER_RPCS
    ]


def node_capabilities() -> list[csi_pb2.NodeServiceCapability]:
    return [csi_pb2.NodeServiceCapability(rpc=csi_pb2.NodeServiceCapability.RPC(type=t)) for t in NODE_RPCS]


@dataclass(frozen=True)
class Access:
    """One requested capability, reduced to what the driver acts on."""

    block: bool
    mode: int
    fs_type: str  # "" when the CO left it to the driver
    mount_flags: tuple[str, ...]

    @property
    def read_only(self) -> bool:
        return self.mode in READ_ONLY_MODES


def _mode_name(mode: int) -> str:
    try:
        return Mode.Name(mode)
    except ValueError:
        return str(mode)


def parse(capability: csi_pb2.VolumeCapability, field: str = "volume_capability") -> Access:
    """Check one capability's required parts; unsupported combinations are InvalidArgument."""
    kind = capability.WhichOneof("access_type")
    if kind is None:
        raise InvalidArgument(f"{field}: access_type is required (mount or block)")
    if not capability.HasField("access_mode") or capability.access_mode.mode == Mode.UNKNOWN:
        raise InvalidArgument(f"{field}: access_mode is required")
    mode = capability.access_mode.mode
    if mode not in Mode.values():
        raise InvalidArgument(f"{field}: unknown access mode {mode}")
    if kind == "block":
        return Access(block=True, mode=mode, fs_type="", mount_flags=())
    return Access(
        block=False,
        mode=mode,
        fs_type=capability.mount.fs_type,
        mount_flags=tuple(capability.mount.mount_flags),
    )


def unsupported_reason(access: Access) -> str | None:
    """Why the driver cannot serve this capability, or None when it can."""
    allowed = BLOCK_MODES if access.block else MOUNT_MODES
    if access.mode not in allowed:
        kind = "block" if access.block else "filesystem"
        return f"access mode {_mode_name(access.mode)} is not supported for {kind} volumes"
    if access.fs_type and access.fs_type not in SUPPORTED_FS:
        return (
            f"filesystem {access.fs_type!r} is not supported (use one of {', '.join(sorted(SUPPORTED_FS))})"
        )
    return None


SUPPORTED_FS = frozenset(FILESYSTEMS)


def parse_supported(capability: csi_pb2.VolumeCapability, field: str = "volume_capability") -> Access:
    """Parse one capability the driver must serve: malformed or unsupported is InvalidArgument.

    The single-capability RPCs (ControllerPublish, NodeStage, NodePublish, and
    ControllerExpand when it carries one) all refuse the same way through this.
    """
    access = parse(capability, field)
    if reason := unsupported_reason(access):
        raise InvalidArgument(reason)
    return access


def parse_all(
    capabilities: Iterable[csi_pb2.VolumeCapability], field: str = "volume_capabilities"
) -> list[Access]:
    """Parse a CreateVolume-style list: at least one, all supported, not block and mount mixed."""
    parsed = [parse(c, f"{field}[{i}]") for i, c in enumerate(capabilities)]
    if not parsed:
        raise InvalidArgument(f"{field} is required (at least one capability)")
    for access in parsed:
        reason = unsupported_reason(access)
        if reason:
            raise InvalidArgument(reason)
    if len({a.block for a in parsed}) > 1:
        raise InvalidArgument(f"{field}: block and mount access cannot be mixed in one volume")
    fs_types = {a.fs_type for a in parsed if a.fs_type}
    if len(fs_types) > 1:
        raise InvalidArgument(f"{field}: conflicting filesystem types {sorted(fs_types)}")
    return parsed


def shared_block_writer(access: Access, readonly: bool) -> bool:
    """A read-write MULTI_NODE_MULTI_WRITER block publication (RWX block: a second primary may follow)."""
    return access.block and access.mode == Mode.MULTI_NODE_MULTI_WRITER and not readonly
