"""CSI conformance, written from the CSI v1.12 spec, against the emulator with real mounts.

One emulator (local node plus two virtual nodes) and one in-process driver on a unix
socket serve the whole module. Every RPC is exercised for its success path, its
mandated error codes and its idempotency, with mount and block access types. Node
tests mount real filesystems on loop devices, so the module needs root (``require``:
skip on a developer machine, fail under CI).
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests

from csi.generated import csi_pb2
from csi.testing import block_cap, mount_cap
from testkit.waiting import wait_until
from tests import csi_requests as rq
from tests.integration.csi_stack import LOCAL, Stack, csi_stack, stage_paths

Mode = csi_pb2.VolumeCapability.AccessMode.Mode
MIB = 1024**2
DEVICE_KEY = "linstor.csi.linbit.com/device-path"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with csi_stack(tmp_path_factory.mktemp("csi-conformance"), "csi-conf-") as made:
        yield made


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.details(), "every error carries a message"
    return info.value.code()


def unique(prefix: str = "pvc") -> str:
    return f"{prefix}-{uuid.uuid4()}"


def create(
    stack: Stack,
    name: str | None = None,
    size: int = 64 * MIB,
    cap: csi_pb2.VolumeCapability | None = None,
    **kw,
) -> csi_pb2.Volume:
    request = csi_pb2.CreateVolumeRequest(
        name=name or unique(),
        capacity_range=csi_pb2.CapacityRange(required_bytes=size),
        volume_capabilities=[cap or mount_cap()],
        **kw,
    )
    return stack.csi.controller.CreateVolume(request).volume


def delete(stack: Stack, volume_id: str) -> None:
    stack.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id))


def publish(
    stack: Stack, volume_id: str, node: str = LOCAL, cap: csi_pb2.VolumeCapability | None = None
) -> dict:
    answer = stack.csi.controller.ControllerPublishVolume(rq.controller_publish(volume_id, node, cap))
    return dict(answer.publish_context)


def unpublish(stack: Stack, volume_id: str, node: str = LOCAL) -> None:
    stack.csi.controller.ControllerUnpublishVolume(rq.controller_unpublish(volume_id, node))


@pytest.fixture
def paths(stack: Stack) -> Iterator[tuple[str, str]]:
    """A staging dir (created, as the CO does) and a target path (left to the driver)."""
    with stage_paths(stack) as made:
        yield made


# ---------------------------------------------------------------- refusals the spec mandates


@dataclass(frozen=True)
class Refusal:
    """One request the driver must refuse, and the code the CSI spec mandates for it.

    ``request`` gets the id of a real volume and a staging and target path, for the cases
    that need a volume that exists or a path that is allowed.
    """

    service: str
    method: str
    request: Callable[[str, str, str], Any]
    code: grpc.StatusCode


def _grow_to(mib: int, **fields: Any) -> csi_pb2.ControllerExpandVolumeRequest:
    return csi_pb2.ControllerExpandVolumeRequest(
        capacity_range=csi_pb2.CapacityRange(required_bytes=mib * MIB), **fields
    )


def _from_source(source: csi_pb2.VolumeContentSource) -> csi_pb2.CreateVolumeRequest:
    return csi_pb2.CreateVolumeRequest(
        name=unique(),
        capacity_range=csi_pb2.CapacityRange(required_bytes=64 * MIB),
        volume_capabilities=[mount_cap()],
        volume_content_source=source,
    )


INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
REFUSALS: dict[str, Refusal] = {
    # CreateVolume
    "create without a name": Refusal(
        "controller",
        "CreateVolume",
        lambda vid, s, t: csi_pb2.CreateVolumeRequest(volume_capabilities=[mount_cap()]),
        INVALID,
    ),
    "create without capabilities": Refusal(
        "controller", "CreateVolume", lambda vid, s, t: csi_pb2.CreateVolumeRequest(name=unique()), INVALID
    ),
    "create smaller than xfs needs": Refusal(
        "controller",
        "CreateVolume",
        lambda vid, s, t: csi_pb2.CreateVolumeRequest(
            name=unique(),
            capacity_range=csi_pb2.CapacityRange(limit_bytes=10 * MIB),
            volume_capabilities=[mount_cap(fs_type="xfs")],  # xfs needs 300 MiB
        ),
        grpc.StatusCode.OUT_OF_RANGE,
    ),
    "create a multi-writer filesystem": Refusal(
        "controller",
        "CreateVolume",
        lambda vid, s, t: csi_pb2.CreateVolumeRequest(
            name=unique(),
            capacity_range=csi_pb2.CapacityRange(required_bytes=64 * MIB),
            volume_capabilities=[mount_cap(Mode.MULTI_NODE_MULTI_WRITER)],
        ),
        INVALID,
    ),
    "create as mount and block at once": Refusal(
        "controller",
        "CreateVolume",
        lambda vid, s, t: csi_pb2.CreateVolumeRequest(
            name=unique(), volume_capabilities=[mount_cap(), block_cap()]
        ),
        INVALID,
    ),
    "create with a bad parameter": Refusal(
        "controller",
        "CreateVolume",
        lambda vid, s, t: csi_pb2.CreateVolumeRequest(
            name=unique(),
            volume_capabilities=[mount_cap()],
            parameters={"linstor.csi.linbit.com/placementCount": "x"},
        ),
        INVALID,
    ),
    "create from a missing snapshot": Refusal(
        "controller",
        "CreateVolume",
        lambda vid, s, t: _from_source(
            csi_pb2.VolumeContentSource(
                snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id="InCluster:///no-vol/no-snap")
            )
        ),
        NOT_FOUND,
    ),
    "create from a missing volume": Refusal(
        "controller",
        "CreateVolume",
        lambda vid, s, t: _from_source(
            csi_pb2.VolumeContentSource(
                volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id="fake-vol-id-1")
            )
        ),
        NOT_FOUND,
    ),
    # DeleteVolume, ControllerPublishVolume
    "delete without a volume id": Refusal(
        "controller", "DeleteVolume", lambda vid, s, t: csi_pb2.DeleteVolumeRequest(), INVALID
    ),
    "publish without a volume id": Refusal(
        "controller",
        "ControllerPublishVolume",
        lambda vid, s, t: csi_pb2.ControllerPublishVolumeRequest(
            node_id=LOCAL, volume_capability=mount_cap()
        ),
        INVALID,
    ),
    "publish without a node id": Refusal(
        "controller",
        "ControllerPublishVolume",
        lambda vid, s, t: csi_pb2.ControllerPublishVolumeRequest(
            volume_id=vid, volume_capability=mount_cap()
        ),
        INVALID,
    ),
    "publish without a capability": Refusal(
        "controller",
        "ControllerPublishVolume",
        lambda vid, s, t: csi_pb2.ControllerPublishVolumeRequest(volume_id=vid, node_id=LOCAL),
        INVALID,
    ),
    "publish a missing volume": Refusal(
        "controller",
        "ControllerPublishVolume",
        lambda vid, s, t: rq.controller_publish("fake-vol-id-0123456789", LOCAL),
        NOT_FOUND,
    ),
    "publish to a missing node": Refusal(
        "controller",
        "ControllerPublishVolume",
        lambda vid, s, t: rq.controller_publish(vid, "fake-node-id-1"),
        NOT_FOUND,
    ),
    # validate / list / get / capacity
    "validate a missing volume": Refusal(
        "controller",
        "ValidateVolumeCapabilities",
        lambda vid, s, t: csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id="fake-vol-id-1", volume_capabilities=[mount_cap()]
        ),
        NOT_FOUND,
    ),
    "list volumes from a bogus token": Refusal(
        "controller",
        "ListVolumes",
        lambda vid, s, t: csi_pb2.ListVolumesRequest(starting_token="bogus"),
        grpc.StatusCode.ABORTED,
    ),
    "get a missing volume": Refusal(
        "controller",
        "ControllerGetVolume",
        lambda vid, s, t: csi_pb2.ControllerGetVolumeRequest(volume_id="fake-vol"),
        NOT_FOUND,
    ),
    "capacity with an unknown parameter": Refusal(
        "controller",
        "GetCapacity",
        lambda vid, s, t: csi_pb2.GetCapacityRequest(parameters={"linstor.csi.linbit.com/unknownKey": "1"}),
        INVALID,
    ),
    # ControllerExpandVolume
    "expand without a volume id": Refusal(
        "controller", "ControllerExpandVolume", lambda vid, s, t: _grow_to(64), INVALID
    ),
    "expand without a size": Refusal(
        "controller",
        "ControllerExpandVolume",
        lambda vid, s, t: csi_pb2.ControllerExpandVolumeRequest(volume_id=vid),
        INVALID,
    ),
    "expand a missing volume": Refusal(
        "controller",
        "ControllerExpandVolume",
        lambda vid, s, t: _grow_to(64, volume_id="fake-vol-id-1"),
        NOT_FOUND,
    ),
    # snapshots
    "snapshot without a source": Refusal(
        "controller",
        "CreateSnapshot",
        lambda vid, s, t: csi_pb2.CreateSnapshotRequest(name=unique("snap")),
        INVALID,
    ),
    "snapshot without a name": Refusal(
        "controller",
        "CreateSnapshot",
        lambda vid, s, t: csi_pb2.CreateSnapshotRequest(source_volume_id=vid),
        INVALID,
    ),
    "snapshot a missing volume": Refusal(
        "controller",
        "CreateSnapshot",
        lambda vid, s, t: csi_pb2.CreateSnapshotRequest(
            source_volume_id="fake-vol-id-1", name=unique("snap")
        ),
        NOT_FOUND,
    ),
    "get a missing snapshot": Refusal(
        "controller",
        "GetSnapshot",
        lambda vid, s, t: csi_pb2.GetSnapshotRequest(snapshot_id="non-existing-snapshot-id"),
        NOT_FOUND,
    ),
    "list snapshots from a bogus token": Refusal(
        "controller",
        "ListSnapshots",
        lambda vid, s, t: csi_pb2.ListSnapshotsRequest(starting_token="x"),
        grpc.StatusCode.ABORTED,
    ),
    "delete a snapshot without an id": Refusal(
        "controller", "DeleteSnapshot", lambda vid, s, t: csi_pb2.DeleteSnapshotRequest(), INVALID
    ),
    # node
    "node publish of a missing volume": Refusal(
        "node", "NodePublishVolume", lambda vid, s, t: rq.publish("fake-vol-id-1", s, t), NOT_FOUND
    ),
    "node stage of a missing volume": Refusal(
        "node", "NodeStageVolume", lambda vid, s, t: rq.stage("fake-vol-id-1", s), NOT_FOUND
    ),
    "stats of a path that is not there": Refusal(
        "node",
        "NodeGetVolumeStats",
        lambda vid, s, t: csi_pb2.NodeGetVolumeStatsRequest(volume_id=vid, volume_path=t + "-nowhere"),
        NOT_FOUND,
    ),
    "node expand of a path that is not there": Refusal(
        "node",
        "NodeExpandVolume",
        lambda vid, s, t: csi_pb2.NodeExpandVolumeRequest(volume_id=vid, volume_path=t + "-nowhere"),
        NOT_FOUND,
    ),
}


@pytest.fixture(scope="module")
def existing(stack: Stack) -> Iterator[str]:
    """One volume that exists, for refusals that must get past "which volume?"."""
    volume = create(stack)
    yield volume.volume_id
    delete(stack, volume.volume_id)


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_refused_requests(stack: Stack, existing: str, paths: tuple[str, str], case: Refusal) -> None:
    staging, target = paths
    rpc = getattr(getattr(stack.csi, case.service), case.method)
    request = case.request(existing, staging, target)
    assert code_of(lambda: rpc(request)) == case.code


# ---------------------------------------------------------------- identity


def test_identity(stack: Stack) -> None:
    info = stack.csi.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
    assert info.name == "linstor.csi.linbit.com"
    assert info.vendor_version
    caps = stack.csi.identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest()).capabilities
    assert {c.service.type for c in caps if c.HasField("service")} >= {
        csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE
    }
    probe = stack.csi.identity.Probe(csi_pb2.ProbeRequest())
    assert not probe.HasField("ready") or probe.ready.value


# ---------------------------------------------------------------- CreateVolume / DeleteVolume


def test_create_volume_is_idempotent_and_detects_conflicts(stack: Stack) -> None:
    name = unique()
    first = create(stack, name, 64 * MIB)
    again = create(stack, name, 64 * MIB)
    assert again.volume_id == first.volume_id
    assert again.capacity_bytes == first.capacity_bytes == 64 * MIB
    assert dict(again.volume_context) == dict(first.volume_context)
    assert code_of(lambda: create(stack, name, 128 * MIB)) == grpc.StatusCode.ALREADY_EXISTS
    delete(stack, first.volume_id)


def test_create_volume_honours_exact_size_and_limits(stack: Stack) -> None:
    ctl = stack.csi.controller
    exact = ctl.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=unique(),
            capacity_range=csi_pb2.CapacityRange(required_bytes=20 * MIB, limit_bytes=20 * MIB),
            volume_capabilities=[mount_cap()],
        )
    ).volume
    assert exact.capacity_bytes == 20 * MIB
    delete(stack, exact.volume_id)


def test_create_volume_block_and_long_unicode_name(stack: Stack) -> None:
    name = "ü" + "x" * 126  # 128 bytes, not a valid LINSTOR name
    volume = create(stack, name, cap=block_cap(Mode.MULTI_NODE_MULTI_WRITER))
    assert volume.volume_id and volume.volume_id != name
    assert create(stack, name, cap=block_cap(Mode.MULTI_NODE_MULTI_WRITER)).volume_id == volume.volume_id
    delete(stack, volume.volume_id)


def test_create_volume_with_empty_and_requisite_topology(stack: Stack) -> None:
    nomad_style = create(stack, accessibility_requirements=csi_pb2.TopologyRequirement())
    delete(stack, nomad_style.volume_id)
    requisite = csi_pb2.TopologyRequirement(
        requisite=[csi_pb2.Topology(segments={"linbit.com/hostname": "node-c"})],
        preferred=[csi_pb2.Topology(segments={"linbit.com/hostname": "node-c"})],
    )
    placed = create(stack, accessibility_requirements=requisite)
    status = stack.csi.controller.ControllerGetVolume(
        csi_pb2.ControllerGetVolumeRequest(volume_id=placed.volume_id)
    ).status
    assert list(status.published_node_ids) == []  # placed there, not published
    delete(stack, placed.volume_id)


def test_delete_volume(stack: Stack) -> None:
    ctl = stack.csi.controller
    delete(stack, "fake-vol-id-0123456789")  # unknown: OK
    delete(stack, "not a valid linstor name/!")  # malformed: OK
    volume = create(stack)
    delete(stack, volume.volume_id)
    delete(stack, volume.volume_id)  # again: OK
    code = code_of(
        lambda: ctl.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=volume.volume_id))
    )
    assert code == grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------- publish / unpublish


def _published(stack: Stack, volume_id: str) -> set[str]:
    status = stack.csi.controller.ControllerGetVolume(
        csi_pb2.ControllerGetVolumeRequest(volume_id=volume_id)
    ).status
    return set(status.published_node_ids)


def test_controller_publish_is_idempotent_and_unpublish_detaches(stack: Stack) -> None:
    volume = create(stack)
    before = _published(stack, volume.volume_id)
    target = next(n for n in ("node-b", "node-c", LOCAL) if n not in before)  # a node without a replica
    first = publish(stack, volume.volume_id, node=target)
    assert first[DEVICE_KEY]
    assert first["linstor.csi.linbit.com/fs-type"] == "ext4"
    assert publish(stack, volume.volume_id, node=target) == first
    listed = {
        e.volume.volume_id: list(e.status.published_node_ids)
        for e in stack.csi.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries
    }
    assert target in listed[volume.volume_id]
    unpublish(stack, volume.volume_id, node=target)
    assert _published(stack, volume.volume_id) == before  # the diskless resource is gone, replicas stay
    unpublish(stack, volume.volume_id, node=target)  # again: OK
    unpublish(stack, "fake-vol-id-0123456789", node=target)  # unknown volume: OK
    unpublish(stack, volume.volume_id, node="fake-node-id-1")  # unknown node: OK
    delete(stack, volume.volume_id)


# ---------------------------------------------------------------- validate / list / get / capacity


def test_validate_volume_capabilities(stack: Stack) -> None:
    ctl = stack.csi.controller
    volume = create(stack)
    asked = [mount_cap(fs_type="", flags=("noatime",))]
    answer = ctl.ValidateVolumeCapabilities(
        csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id=volume.volume_id,
            volume_capabilities=asked,
            volume_context=dict(volume.volume_context),
            parameters={"linstor.csi.linbit.com/placementCount": "1"},
        )
    )
    assert list(answer.confirmed.volume_capabilities) == asked  # verbatim: fs_type stays ""
    assert dict(answer.confirmed.volume_context) == dict(volume.volume_context)
    refused = ctl.ValidateVolumeCapabilities(
        csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id=volume.volume_id, volume_capabilities=[mount_cap(Mode.MULTI_NODE_MULTI_WRITER)]
        )
    )
    assert not refused.HasField("confirmed") and refused.message
    other_fs = ctl.ValidateVolumeCapabilities(
        csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id=volume.volume_id, volume_capabilities=[mount_cap(fs_type="xfs")]
        )
    )
    assert not other_fs.HasField("confirmed") and "ext4" in other_fs.message
    delete(stack, volume.volume_id)


def test_list_volumes_pages_and_counts(stack: Stack) -> None:
    ctl = stack.csi.controller
    made = [create(stack).volume_id for _ in range(3)]
    everything = ctl.ListVolumes(csi_pb2.ListVolumesRequest())
    ids = [e.volume.volume_id for e in everything.entries]
    assert set(made) <= set(ids) and everything.next_token == ""
    paged: list[str] = []
    token = ""
    while True:
        page = ctl.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=2, starting_token=token))
        assert len(page.entries) <= 2
        paged += [e.volume.volume_id for e in page.entries]
        token = page.next_token
        if not token:
            break
    assert paged == ids
    for vid in made:
        delete(stack, vid)
    after = {e.volume.volume_id for e in ctl.ListVolumes(csi_pb2.ListVolumesRequest()).entries}
    assert not set(made) & after


def test_controller_get_volume(stack: Stack) -> None:
    ctl = stack.csi.controller
    volume = create(stack, parameters={"linstor.csi.linbit.com/mountOpts": "noatime,discard"})
    assert volume.volume_context["linstor.csi.linbit.com/mount-options"] == "noatime,discard"
    got = ctl.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=volume.volume_id))
    assert got.volume.volume_id == volume.volume_id and got.volume.capacity_bytes == 64 * MIB
    assert dict(got.volume.volume_context) == dict(volume.volume_context)  # stable per volume
    assert not got.status.published_node_ids  # replicas are no publications
    assert not got.status.volume_condition.abnormal
    delete(stack, volume.volume_id)


def test_get_capacity(stack: Stack) -> None:
    ctl = stack.csi.controller
    total = ctl.GetCapacity(csi_pb2.GetCapacityRequest(volume_capabilities=[mount_cap()]))
    assert total.available_capacity > 0
    assert total.minimum_volume_size.value > 0
    local = ctl.GetCapacity(
        csi_pb2.GetCapacityRequest(
            accessible_topology=csi_pb2.Topology(segments={"linbit.com/hostname": LOCAL})
        )
    )
    assert 0 < local.available_capacity <= total.available_capacity


def test_controller_capabilities(stack: Stack) -> None:
    caps = stack.csi.controller.ControllerGetCapabilities(
        csi_pb2.ControllerGetCapabilitiesRequest()
    ).capabilities
    rpc = csi_pb2.ControllerServiceCapability.RPC
    assert {c.rpc.type for c in caps} >= {
        rpc.CREATE_DELETE_VOLUME,
        rpc.PUBLISH_UNPUBLISH_VOLUME,
        rpc.CREATE_DELETE_SNAPSHOT,
        rpc.EXPAND_VOLUME,
        rpc.LIST_VOLUMES,
    }


# ---------------------------------------------------------------- expand


def test_controller_expand_volume(stack: Stack) -> None:
    ctl = stack.csi.controller
    volume = create(stack, size=32 * MIB)
    grow = csi_pb2.ControllerExpandVolumeRequest(
        volume_id=volume.volume_id, capacity_range=csi_pb2.CapacityRange(required_bytes=64 * MIB)
    )
    answer = ctl.ControllerExpandVolume(grow)
    assert answer.capacity_bytes == 64 * MIB and answer.node_expansion_required
    assert ctl.ControllerExpandVolume(grow).capacity_bytes == 64 * MIB  # repeat: OK
    smaller = csi_pb2.ControllerExpandVolumeRequest(
        volume_id=volume.volume_id, capacity_range=csi_pb2.CapacityRange(required_bytes=16 * MIB)
    )
    assert ctl.ControllerExpandVolume(smaller).capacity_bytes == 64 * MIB  # already bigger: OK
    delete(stack, volume.volume_id)
    raw = create(stack, size=32 * MIB, cap=block_cap())
    block_grow = csi_pb2.ControllerExpandVolumeRequest(
        volume_id=raw.volume_id,
        capacity_range=csi_pb2.CapacityRange(required_bytes=48 * MIB),
        volume_capability=block_cap(),
    )
    assert not ctl.ControllerExpandVolume(block_grow).node_expansion_required
    delete(stack, raw.volume_id)


# ---------------------------------------------------------------- snapshots


def test_snapshot_lifecycle_and_errors(stack: Stack) -> None:
    ctl = stack.csi.controller
    volume = create(stack)
    other = create(stack)
    name = unique("snap")
    snap = ctl.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(source_volume_id=volume.volume_id, name=name)
    ).snapshot
    assert snap.snapshot_id.startswith("InCluster:///")
    assert snap.source_volume_id == volume.volume_id and snap.ready_to_use and snap.size_bytes > 0
    assert snap.HasField("creation_time")
    again = ctl.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(source_volume_id=volume.volume_id, name=name)
    ).snapshot
    assert again.snapshot_id == snap.snapshot_id
    clash = csi_pb2.CreateSnapshotRequest(source_volume_id=other.volume_id, name=name)
    assert code_of(lambda: ctl.CreateSnapshot(clash)) == grpc.StatusCode.ALREADY_EXISTS

    got = ctl.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=snap.snapshot_id)).snapshot
    assert got.snapshot_id == snap.snapshot_id

    by_id = ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id=snap.snapshot_id)).entries
    assert [e.snapshot.snapshot_id for e in by_id] == [snap.snapshot_id]
    by_source = ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(source_volume_id=volume.volume_id)).entries
    assert [e.snapshot.snapshot_id for e in by_source] == [snap.snapshot_id]
    assert not ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id="non-existing-snapshot-id")).entries
    assert not ctl.ListSnapshots(
        csi_pb2.ListSnapshotsRequest(source_volume_id="non-existing-volume-id")
    ).entries

    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id))
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id))  # again: OK
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id="non-existing-snapshot-id"))
    assert not ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id=snap.snapshot_id)).entries
    delete(stack, volume.volume_id)
    delete(stack, other.volume_id)


def test_list_snapshots_pages(stack: Stack) -> None:
    ctl = stack.csi.controller
    volume = create(stack)
    made = [
        ctl.CreateSnapshot(
            csi_pb2.CreateSnapshotRequest(source_volume_id=volume.volume_id, name=unique("snap"))
        ).snapshot.snapshot_id
        for _ in range(3)
    ]
    first = ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(source_volume_id=volume.volume_id, max_entries=2))
    assert len(first.entries) == 2 and first.next_token
    rest = ctl.ListSnapshots(
        csi_pb2.ListSnapshotsRequest(source_volume_id=volume.volume_id, starting_token=first.next_token)
    )
    assert sorted(e.snapshot.snapshot_id for e in [*first.entries, *rest.entries]) == sorted(made)
    for sid in made:
        ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=sid))
    delete(stack, volume.volume_id)


# ---------------------------------------------------------------- node: mount access


def _stage(
    stack: Stack, vid: str, staging: str, ctx: dict, cap: csi_pb2.VolumeCapability | None = None
) -> None:
    stack.csi.node.NodeStageVolume(rq.stage(vid, staging, ctx, cap))


def _publish(
    stack: Stack,
    vid: str,
    staging: str,
    target: str,
    ctx: dict,
    cap: csi_pb2.VolumeCapability | None = None,
    readonly: bool = False,
) -> None:
    stack.csi.node.NodePublishVolume(rq.publish(vid, staging, target, ctx, cap, readonly=readonly))


def _unpublish(stack: Stack, vid: str, target: str) -> None:
    stack.csi.node.NodeUnpublishVolume(rq.unpublish(vid, target))


def _unstage(stack: Stack, vid: str, staging: str) -> None:
    stack.csi.node.NodeUnstageVolume(rq.unstage(vid, staging))


def _is_mount(path: str) -> bool:
    return os.path.ismount(path)


def test_node_mount_lifecycle(stack: Stack, paths: tuple[str, str]) -> None:
    staging, target = paths
    volume = create(stack)
    vid = volume.volume_id
    ctx = publish(stack, vid)
    _stage(stack, vid, staging, ctx)
    assert _is_mount(staging)
    _stage(stack, vid, staging, ctx)  # idempotent
    _publish(stack, vid, staging, target, ctx)
    _publish(stack, vid, staging, target, ctx)  # idempotent
    assert os.path.isdir(target) and _is_mount(target)
    Path(target, "hello").write_text("world")
    assert Path(staging, "hello").read_text() == "world"

    ro_target = target + "-ro"
    _publish(stack, vid, staging, ro_target, ctx, readonly=True)
    assert Path(ro_target, "hello").read_text() == "world"
    with pytest.raises(OSError) as info:
        Path(ro_target, "nope").write_text("x")
    assert info.value.errno == errno.EROFS

    stats = stack.csi.node.NodeGetVolumeStats(
        csi_pb2.NodeGetVolumeStatsRequest(volume_id=vid, volume_path=target)
    )
    units = {u.unit: u for u in stats.usage}
    assert units[csi_pb2.VolumeUsage.BYTES].total > 0 and units[csi_pb2.VolumeUsage.BYTES].used > 0
    assert units[csi_pb2.VolumeUsage.INODES].total > 0
    assert not stats.volume_condition.abnormal

    for t in (ro_target, target):
        _unpublish(stack, vid, t)
        assert not os.path.exists(t)
        _unpublish(stack, vid, t)  # idempotent
    _unstage(stack, vid, staging)
    assert not _is_mount(staging) and os.path.isdir(staging) and os.listdir(staging) == []
    _unstage(stack, vid, staging)  # idempotent
    unpublish(stack, vid)
    delete(stack, vid)


def test_node_errors(stack: Stack, paths: tuple[str, str]) -> None:
    staging, target = paths
    node = stack.csi.node
    volume = create(stack)
    vid = volume.volume_id
    ctx = publish(stack, vid)
    not_staged = rq.publish(vid, staging, target, ctx)
    assert code_of(lambda: node.NodePublishVolume(not_staged)) == grpc.StatusCode.FAILED_PRECONDITION
    _unpublish(stack, "fake-vol-id-1", target + "-never")  # missing: OK
    _unstage(stack, "fake-vol-id-1", staging)  # never staged: OK
    unpublish(stack, vid)
    delete(stack, vid)


def test_node_expand_online(stack: Stack, paths: tuple[str, str]) -> None:
    staging, target = paths
    # xfs grows online with CAP_SYS_ADMIN alone; ext4 also needs CAP_SYS_RESOURCE, which
    # containers often lack (the node then grows ext4 offline at the next stage).
    cap = mount_cap(fs_type="xfs")
    volume = create(stack, size=320 * MIB, cap=cap)
    vid = volume.volume_id
    ctx = publish(stack, vid)
    _stage(stack, vid, staging, ctx, cap=cap)
    _publish(stack, vid, staging, target, ctx, cap=cap)
    before = os.statvfs(target)
    stack.csi.controller.ControllerExpandVolume(
        csi_pb2.ControllerExpandVolumeRequest(
            volume_id=vid, capacity_range=csi_pb2.CapacityRange(required_bytes=640 * MIB)
        )
    )
    answer = stack.csi.node.NodeExpandVolume(
        csi_pb2.NodeExpandVolumeRequest(
            volume_id=vid,
            volume_path=target,
            staging_target_path=staging,
            capacity_range=csi_pb2.CapacityRange(required_bytes=640 * MIB),
        )
    )
    assert answer.capacity_bytes >= 640 * MIB
    after = os.statvfs(target)
    assert after.f_blocks * after.f_frsize > 1.8 * before.f_blocks * before.f_frsize
    _unpublish(stack, vid, target)
    _unstage(stack, vid, staging)
    unpublish(stack, vid)
    delete(stack, vid)


# ---------------------------------------------------------------- node: block access


def test_node_block_lifecycle(stack: Stack, paths: tuple[str, str]) -> None:
    staging, target = paths
    volume = create(stack, size=16 * MIB, cap=block_cap())
    vid = volume.volume_id
    ctx = publish(stack, vid, cap=block_cap())
    _stage(stack, vid, staging, ctx, cap=block_cap())
    _publish(stack, vid, staging, target, ctx, cap=block_cap())
    _publish(stack, vid, staging, target, ctx, cap=block_cap())  # idempotent
    assert stat.S_ISBLK(os.stat(target).st_mode)
    payload = os.urandom(4096)
    fd = os.open(target, os.O_RDWR)
    try:
        os.pwrite(fd, payload, 1 * MIB)
        os.fsync(fd)
        assert os.pread(fd, 4096, 1 * MIB) == payload
    finally:
        os.close(fd)
    stats = stack.csi.node.NodeGetVolumeStats(
        csi_pb2.NodeGetVolumeStatsRequest(volume_id=vid, volume_path=target)
    )
    assert stats.usage[0].total == 16 * MIB
    _unpublish(stack, vid, target)
    assert not os.path.exists(target)
    _unstage(stack, vid, staging)
    unpublish(stack, vid)
    delete(stack, vid)


def test_node_info_and_capabilities(stack: Stack) -> None:
    info = stack.csi.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
    assert info.node_id == LOCAL
    assert info.accessible_topology.segments["linbit.com/hostname"] == LOCAL
    assert any(k.startswith("linbit.com/sp-") for k in info.accessible_topology.segments)
    caps = stack.csi.node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest()).capabilities
    rpc = csi_pb2.NodeServiceCapability.RPC
    assert {c.rpc.type for c in caps} == {
        rpc.STAGE_UNSTAGE_VOLUME,
        rpc.GET_VOLUME_STATS,
        rpc.EXPAND_VOLUME,
        rpc.VOLUME_CONDITION,
        rpc.SINGLE_NODE_MULTI_WRITER,
    }


# ---------------------------------------------------------------- more spec corners


def test_clone_echoes_its_source_and_keeps_data(stack: Stack, paths: tuple[str, str]) -> None:
    staging, target = paths
    source = create(stack, size=32 * MIB)
    ctx = publish(stack, source.volume_id)
    _stage(stack, source.volume_id, staging, ctx)
    _publish(stack, source.volume_id, staging, target, ctx)
    Path(target, "origin").write_text("cloned")
    _unpublish(stack, source.volume_id, target)
    _unstage(stack, source.volume_id, staging)
    content = csi_pb2.VolumeContentSource(
        volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=source.volume_id)
    )
    clone = create(stack, size=32 * MIB, volume_content_source=content)
    assert clone.content_source.volume.volume_id == source.volume_id
    assert create(
        stack, unique(), size=32 * MIB, volume_content_source=content
    ).content_source.volume.volume_id
    cctx = publish(stack, clone.volume_id)
    _stage(stack, clone.volume_id, staging, cctx)
    _publish(stack, clone.volume_id, staging, target, cctx)
    assert Path(target, "origin").read_text() == "cloned"
    _unpublish(stack, clone.volume_id, target)
    _unstage(stack, clone.volume_id, staging)
    for vid in (clone.volume_id, source.volume_id):
        unpublish(stack, vid)
        delete(stack, vid)


def test_unpublish_without_node_detaches_everywhere(stack: Stack) -> None:
    volume = create(stack)
    before = _published(stack, volume.volume_id)
    extra = [n for n in ("node-b", "node-c", LOCAL) if n not in before]
    for node in extra:
        publish(stack, volume.volume_id, node=node)
    assert _published(stack, volume.volume_id) >= set(extra)
    stack.csi.controller.ControllerUnpublishVolume(rq.controller_unpublish(volume.volume_id))
    assert _published(stack, volume.volume_id) == before
    delete(stack, volume.volume_id)


def test_block_volume_published_on_two_nodes(stack: Stack) -> None:
    cap = block_cap(Mode.MULTI_NODE_MULTI_WRITER)
    volume = create(stack, cap=cap)
    first = publish(stack, volume.volume_id, node="node-b", cap=cap)
    second = publish(stack, volume.volume_id, node="node-c", cap=cap)
    assert first[DEVICE_KEY] and second[DEVICE_KEY]
    assert {"node-b", "node-c"} <= _published(stack, volume.volume_id)
    for node in ("node-b", "node-c"):
        unpublish(stack, volume.volume_id, node=node)
    delete(stack, volume.volume_id)


def test_stage_refuses_a_path_holding_another_volume(stack: Stack, paths: tuple[str, str]) -> None:
    staging, _target = paths
    one, two = create(stack), create(stack)
    ctx_one, ctx_two = publish(stack, one.volume_id), publish(stack, two.volume_id)
    _stage(stack, one.volume_id, staging, ctx_one)
    assert code_of(lambda: _stage(stack, two.volume_id, staging, ctx_two)) == grpc.StatusCode.ALREADY_EXISTS
    _unstage(stack, one.volume_id, staging)
    for vid in (one.volume_id, two.volume_id):
        unpublish(stack, vid)
        delete(stack, vid)


def test_delete_of_a_mounted_volume_is_refused_and_changes_nothing(
    stack: Stack, paths: tuple[str, str]
) -> None:
    staging, target = paths
    volume = create(stack)
    vid = volume.volume_id
    ctx = publish(stack, vid)
    _stage(stack, vid, staging, ctx)
    _publish(stack, vid, staging, target, ctx)
    Path(target, "keep").write_text("me")
    # LINSTOR answers from the satellite's report of the mount, which follows it a moment later.
    view = f"{stack.emulator.url}/v1/view/resources"
    wait_until(
        lambda: any(
            (r.get("state") or {}).get("in_use")
            for r in requests.get(view, params={"resources": vid}, timeout=10).json()
        ),
        timeout=30,
        interval=0.1,
        what="the satellite's report of the mount",
    )
    assert code_of(lambda: delete(stack, vid)) == grpc.StatusCode.FAILED_PRECONDITION
    assert Path(target, "keep").read_text() == "me"
    _unpublish(stack, vid, target)
    _unstage(stack, vid, staging)
    unpublish(stack, vid)
    delete(stack, vid)


def test_controller_unavailable_is_unavailable(stack: Stack) -> None:
    stack.emulator.outage(3)  # returns once the listener is down
    try:
        code = code_of(lambda: stack.csi.controller.ListVolumes(csi_pb2.ListVolumesRequest()))
        assert code == grpc.StatusCode.UNAVAILABLE
    finally:
        stack.emulator.wait_back(timeout=30)
    stack.csi.controller.ListVolumes(csi_pb2.ListVolumesRequest())  # and back to normal


def test_concurrent_retry_of_a_slow_create_is_aborted_then_converges(stack: Stack) -> None:
    ctl = stack.csi.controller
    name = unique()
    request = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=16 * MIB),
        volume_capabilities=[mount_cap()],
    )
    stack.emulator.control("latency", {"ms": 300}).raise_for_status()
    try:
        held = stack.emulator.injected_faults("latency")
        first = ctl.CreateVolume.future(request)
        wait_until(  # the first call is now waiting on LINSTOR
            lambda: stack.emulator.injected_faults("latency") > held, what="the first call held up in LINSTOR"
        )
        assert code_of(lambda: ctl.CreateVolume(request)) == grpc.StatusCode.ABORTED
        volume = first.result(timeout=60).volume
    finally:
        stack.emulator.control("latency", {"ms": 0}).raise_for_status()
    assert ctl.CreateVolume(request).volume.volume_id == volume.volume_id  # the CO's retry converges
    assert [e.volume.volume_id for e in ctl.ListVolumes(csi_pb2.ListVolumesRequest()).entries].count(
        volume.volume_id
    ) == 1
    delete(stack, volume.volume_id)


def test_no_space_is_resource_exhausted_and_leaves_nothing(stack: Stack) -> None:
    name = unique()
    huge = 1024**5  # 1 PiB: more than any pool of the emulator
    assert code_of(lambda: create(stack, name, size=huge)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    listed = stack.csi.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries
    assert all(e.volume.capacity_bytes != huge for e in listed)
    small = create(stack, name, size=16 * MIB)  # the name is free again: nothing half-made remains
    delete(stack, small.volume_id)


def test_restore_without_a_size_takes_the_snapshot_size(stack: Stack) -> None:
    ctl = stack.csi.controller
    volume = create(stack, size=48 * MIB)
    snap = ctl.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(source_volume_id=volume.volume_id, name=unique("snap"))
    ).snapshot
    source = csi_pb2.VolumeContentSource(
        snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snap.snapshot_id)
    )
    request = csi_pb2.CreateVolumeRequest(
        name=unique(), volume_capabilities=[mount_cap()], volume_content_source=source
    )
    restored = ctl.CreateVolume(request).volume
    assert restored.capacity_bytes == 48 * MIB
    assert ctl.CreateVolume(request).volume.volume_id == restored.volume_id  # idempotent without a size too
    smaller = csi_pb2.CreateVolumeRequest(
        name=unique(),
        volume_capabilities=[mount_cap()],
        volume_content_source=source,
        capacity_range=csi_pb2.CapacityRange(required_bytes=16 * MIB),
    )
    assert code_of(lambda: ctl.CreateVolume(smaller)) in (
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    delete(stack, restored.volume_id)
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id))
    delete(stack, volume.volume_id)
