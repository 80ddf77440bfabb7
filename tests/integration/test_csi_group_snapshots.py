"""Group snapshots (GroupController, CSI v1.12), conformance style, against the emulator.

Success with a filesystem and a raw block volume in one group, data taken together and
restored from the members like any snapshot, idempotency by name, and every error code
the spec lists for CreateVolumeGroupSnapshot, GetVolumeGroupSnapshot and
DeleteVolumeGroupSnapshot. Real mounts, so the module needs root.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import requests

from csi.generated import csi_pb2
from csi.testing import block_cap, mount_cap
from plugin.config import load_config
from plugin.errors import NotFound
from plugin.linstor.client import LinstorClient
from testkit.waiting import wait_until
from tests import csi_requests as rq
from tests.blockio import read_at, write_at
from tests.integration.csi_stack import LOCAL, Stack, csi_stack, scratch_dir

MIB = 1024**2
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with csi_stack(tmp_path_factory.mktemp("csi-group"), "csi-group-") as made:
        yield made


@pytest.fixture
def workdir(stack: Stack) -> Iterator[Path]:
    with scratch_dir(stack) as made:
        yield made


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.details(), "every error carries a message"
    return info.value.code()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def create(
    stack: Stack, cap: csi_pb2.VolumeCapability | None = None, source: str = "", size: int = 32 * MIB
) -> csi_pb2.Volume:
    request = csi_pb2.CreateVolumeRequest(
        name=unique("pvc"),
        capacity_range=csi_pb2.CapacityRange(required_bytes=size),
        volume_capabilities=[cap or mount_cap()],
    )
    if source:
        request.volume_content_source.snapshot.snapshot_id = source
    return stack.csi.controller.CreateVolume(request).volume


class Attached:
    """A volume published, staged and published on this node; a path for files, or a device."""

    def __init__(self, stack: Stack, base: Path, volume_id: str, cap: csi_pb2.VolumeCapability) -> None:
        self.stack, self.volume_id, self.cap = stack, volume_id, cap
        slug = volume_id.replace("/", "-")  # a consistency-group member's id carries its number
        self.staging = base / f"{slug}-staging"
        self.staging.mkdir()
        self.target = base / f"{slug}-target"
        ctx = stack.csi.controller.ControllerPublishVolume(
            rq.controller_publish(volume_id, LOCAL, cap)
        ).publish_context
        stack.csi.node.NodeStageVolume(rq.stage(volume_id, self.staging, ctx, cap))
        stack.csi.node.NodePublishVolume(rq.publish(volume_id, self.staging, self.target, ctx, cap))

    def detach(self) -> None:
        node, ctl = self.stack.csi.node, self.stack.csi.controller
        node.NodeUnpublishVolume(rq.unpublish(self.volume_id, self.target))
        node.NodeUnstageVolume(rq.unstage(self.volume_id, self.staging))
        ctl.ControllerUnpublishVolume(rq.controller_unpublish(self.volume_id, LOCAL))


def group_create(stack: Stack, name: str, *volume_ids: str, **kw) -> csi_pb2.VolumeGroupSnapshot:
    request = csi_pb2.CreateVolumeGroupSnapshotRequest(name=name, source_volume_ids=list(volume_ids), **kw)
    return stack.csi.group.CreateVolumeGroupSnapshot(request).group_snapshot


def member_ids(group: csi_pb2.VolumeGroupSnapshot) -> list[str]:
    return [s.snapshot_id for s in group.snapshots]


def group_get(stack: Stack, group_id: str, snapshot_ids: list[str]) -> csi_pb2.VolumeGroupSnapshot:
    request = csi_pb2.GetVolumeGroupSnapshotRequest(group_snapshot_id=group_id, snapshot_ids=snapshot_ids)
    return stack.csi.group.GetVolumeGroupSnapshot(request).group_snapshot


def group_delete(stack: Stack, group_id: str, snapshot_ids: list[str]) -> None:
    request = csi_pb2.DeleteVolumeGroupSnapshotRequest(group_snapshot_id=group_id, snapshot_ids=snapshot_ids)
    stack.csi.group.DeleteVolumeGroupSnapshot(request)


def delete_volumes(stack: Stack, *volume_ids: str) -> None:
    for vid in volume_ids:
        stack.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid))


def linstor_snapshots(stack: Stack, volume_id: str) -> set[str]:
    config = load_config({"controllers": stack.emulator.url, "node_name": LOCAL}, env={}, config_file=None)
    client = LinstorClient(config)
    try:
        return {s.name for s in client.view_snapshots([volume_id])}
    finally:
        client.close()


# ---------------------------------------------------------------- capabilities


def test_group_controller_is_advertised(stack: Stack) -> None:
    plugin = stack.csi.identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest()).capabilities
    services = {c.service.type for c in plugin if c.HasField("service")}
    assert csi_pb2.PluginCapability.Service.GROUP_CONTROLLER_SERVICE in services
    caps = stack.csi.group.GroupControllerGetCapabilities(
        csi_pb2.GroupControllerGetCapabilitiesRequest()
    ).capabilities
    assert [c.rpc.type for c in caps] == [
        csi_pb2.GroupControllerServiceCapability.RPC.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT
    ]


# ---------------------------------------------------------------- success, mount and block


def test_group_snapshot_of_a_filesystem_and_a_block_volume_restores_both(stack: Stack, workdir: Path) -> None:
    fs_volume = create(stack)
    raw_volume = create(stack, cap=block_cap())
    fs = Attached(stack, workdir, fs_volume.volume_id, mount_cap())
    raw = Attached(stack, workdir, raw_volume.volume_id, block_cap())
    (fs.target / "state").write_text("before")
    write_at(raw.target, MIB, b"block-before")

    name = unique("groupsnapshot")
    group = group_create(stack, name, fs_volume.volume_id, raw_volume.volume_id)
    (fs.target / "state").write_text("after")
    write_at(raw.target, MIB, b"block-after!")
    fs.detach()
    raw.detach()

    assert group.group_snapshot_id and group.ready_to_use and group.HasField("creation_time")
    assert {s.source_volume_id for s in group.snapshots} == {fs_volume.volume_id, raw_volume.volume_id}
    for snap in group.snapshots:
        assert snap.group_snapshot_id == group.group_snapshot_id
        assert snap.snapshot_id.startswith("InCluster:///") and snap.ready_to_use and snap.size_bytes > 0
    by_source = {s.source_volume_id: s.snapshot_id for s in group.snapshots}

    # Members are snapshots like any other: listed, read and restored, carrying their group.
    ctl = stack.csi.controller
    listed = ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id=by_source[fs_volume.volume_id]))
    assert [e.snapshot.group_snapshot_id for e in listed.entries] == [group.group_snapshot_id]
    got = ctl.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=by_source[raw_volume.volume_id])).snapshot
    assert got.group_snapshot_id == group.group_snapshot_id

    fs_copy = create(stack, source=by_source[fs_volume.volume_id])
    raw_copy = create(stack, cap=block_cap(), source=by_source[raw_volume.volume_id])
    assert fs_copy.content_source.snapshot.snapshot_id == by_source[fs_volume.volume_id]
    fs2 = Attached(stack, workdir, fs_copy.volume_id, mount_cap())
    raw2 = Attached(stack, workdir, raw_copy.volume_id, block_cap())
    try:
        assert (fs2.target / "state").read_text() == "before"
        assert read_at(raw2.target, MIB, 12) == b"block-before"
    finally:
        fs2.detach()
        raw2.detach()

    # A member goes with its group only; its source keeps it, so the source stays too.
    member = csi_pb2.DeleteSnapshotRequest(snapshot_id=by_source[fs_volume.volume_id])
    assert code_of(lambda: ctl.DeleteSnapshot(member)) == Code.FAILED_PRECONDITION
    source_delete = csi_pb2.DeleteVolumeRequest(volume_id=fs_volume.volume_id)
    assert code_of(lambda: ctl.DeleteVolume(source_delete)) == Code.FAILED_PRECONDITION

    group_delete(stack, group.group_snapshot_id, member_ids(group))
    assert not linstor_snapshots(stack, fs_volume.volume_id)
    assert not linstor_snapshots(stack, raw_volume.volume_id)
    delete_volumes(stack, fs_copy.volume_id, raw_copy.volume_id, fs_volume.volume_id, raw_volume.volume_id)


# ---------------------------------------------------------------- idempotency


def test_create_is_idempotent_by_name_and_refuses_other_volumes(stack: Stack) -> None:
    a, b, c = create(stack), create(stack, cap=block_cap()), create(stack)
    name = unique("groupsnapshot")
    first = group_create(stack, name, a.volume_id, b.volume_id)
    again = group_create(stack, name, b.volume_id, a.volume_id)  # order does not matter
    assert again.group_snapshot_id == first.group_snapshot_id
    assert sorted(member_ids(again)) == sorted(member_ids(first))
    assert again.creation_time == first.creation_time

    assert code_of(lambda: group_create(stack, name, a.volume_id, c.volume_id)) == Code.ALREADY_EXISTS
    assert code_of(lambda: group_create(stack, name, a.volume_id)) == Code.ALREADY_EXISTS
    assert linstor_snapshots(stack, c.volume_id) == set(), "a refused create takes nothing"

    # A plain snapshot's name is taken too.
    plain = unique("snapshot")
    stack.csi.controller.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(source_volume_id=c.volume_id, name=plain)
    )
    assert code_of(lambda: group_create(stack, plain, a.volume_id)) == Code.ALREADY_EXISTS

    got = group_get(stack, first.group_snapshot_id, member_ids(first))
    assert got.group_snapshot_id == first.group_snapshot_id and sorted(member_ids(got)) == sorted(
        member_ids(first)
    )
    group_delete(stack, first.group_snapshot_id, member_ids(first))
    group_delete(stack, first.group_snapshot_id, member_ids(first))  # again: OK
    assert code_of(lambda: group_get(stack, first.group_snapshot_id, member_ids(first))) == Code.NOT_FOUND
    for snap in stack.csi.controller.ListSnapshots(
        csi_pb2.ListSnapshotsRequest(source_volume_id=c.volume_id)
    ).entries:
        stack.csi.controller.DeleteSnapshot(
            csi_pb2.DeleteSnapshotRequest(snapshot_id=snap.snapshot.snapshot_id)
        )
    delete_volumes(stack, a.volume_id, b.volume_id, c.volume_id)


# ---------------------------------------------------------------- errors


def test_create_errors(stack: Stack) -> None:
    volume = create(stack)
    group = stack.csi.group
    for request in (
        csi_pb2.CreateVolumeGroupSnapshotRequest(source_volume_ids=[volume.volume_id]),
        csi_pb2.CreateVolumeGroupSnapshotRequest(name=unique("g")),
        csi_pb2.CreateVolumeGroupSnapshotRequest(name=unique("g"), source_volume_ids=[volume.volume_id, ""]),
        csi_pb2.CreateVolumeGroupSnapshotRequest(
            name=unique("g"), source_volume_ids=[volume.volume_id, volume.volume_id]
        ),
        csi_pb2.CreateVolumeGroupSnapshotRequest(name="x" * 129, source_volume_ids=[volume.volume_id]),
        csi_pb2.CreateVolumeGroupSnapshotRequest(
            name=unique("g"),
            source_volume_ids=[volume.volume_id],
            parameters={"snap.linstor.csi.linbit.com/type": "S3"},
        ),
    ):
        assert code_of(lambda r=request: group.CreateVolumeGroupSnapshot(r)) == Code.INVALID_ARGUMENT
    missing = csi_pb2.CreateVolumeGroupSnapshotRequest(
        name=unique("g"), source_volume_ids=[volume.volume_id, "fake-vol-id-1"]
    )
    assert code_of(lambda: group.CreateVolumeGroupSnapshot(missing)) == Code.NOT_FOUND
    assert linstor_snapshots(stack, volume.volume_id) == set(), "nothing taken when one volume is missing"
    # The snapshotter's own parameters are accepted and ignored.
    made = group_create(
        stack,
        unique("g"),
        volume.volume_id,
        parameters={
            "csi.storage.k8s.io/volumegroupsnapshot/name": "gs",
            "snap.linstor.csi.linbit.com/type": "",
        },
    )
    group_delete(stack, made.group_snapshot_id, member_ids(made))
    delete_volumes(stack, volume.volume_id)


def test_create_on_a_volume_without_data_is_failed_precondition(stack: Stack) -> None:
    volume = create(stack)
    # An operator removed the only replica with data: there is nothing to snapshot.
    config = load_config({"controllers": stack.emulator.url, "node_name": LOCAL}, env={}, config_file=None)
    client = LinstorClient(config)
    try:
        for resource in client.view_resources([volume.volume_id]):
            client.delete_resource(volume.volume_id, resource.node)
    finally:
        client.close()
    request = csi_pb2.CreateVolumeGroupSnapshotRequest(name=unique("g"), source_volume_ids=[volume.volume_id])
    assert code_of(lambda: stack.csi.group.CreateVolumeGroupSnapshot(request)) == Code.FAILED_PRECONDITION
    delete_volumes(stack, volume.volume_id)


def test_get_and_delete_check_snapshot_ids(stack: Stack) -> None:
    a, b = create(stack), create(stack)
    made = group_create(stack, unique("g"), a.volume_id, b.volume_id)
    gid, members = made.group_snapshot_id, member_ids(made)
    group = stack.csi.group
    for request in (
        csi_pb2.GetVolumeGroupSnapshotRequest(snapshot_ids=members),
        csi_pb2.GetVolumeGroupSnapshotRequest(group_snapshot_id=gid),
        csi_pb2.GetVolumeGroupSnapshotRequest(group_snapshot_id=gid, snapshot_ids=members[:1]),
        csi_pb2.GetVolumeGroupSnapshotRequest(
            group_snapshot_id=gid, snapshot_ids=[*members, f"InCluster:///{a.volume_id}/other"]
        ),
        csi_pb2.GetVolumeGroupSnapshotRequest(group_snapshot_id=gid, snapshot_ids=["not/a/snapshot/id"]),
    ):
        assert code_of(lambda r=request: group.GetVolumeGroupSnapshot(r)) == Code.INVALID_ARGUMENT
    unknown = csi_pb2.GetVolumeGroupSnapshotRequest(group_snapshot_id="no-such-group", snapshot_ids=members)
    assert code_of(lambda: group.GetVolumeGroupSnapshot(unknown)) == Code.NOT_FOUND

    for request in (
        csi_pb2.DeleteVolumeGroupSnapshotRequest(snapshot_ids=members),
        csi_pb2.DeleteVolumeGroupSnapshotRequest(group_snapshot_id=gid),
        csi_pb2.DeleteVolumeGroupSnapshotRequest(group_snapshot_id=gid, snapshot_ids=members[:1]),
        csi_pb2.DeleteVolumeGroupSnapshotRequest(
            group_snapshot_id=gid, snapshot_ids=[*members, f"InCluster:///{a.volume_id}/other"]
        ),
    ):
        assert code_of(lambda r=request: group.DeleteVolumeGroupSnapshot(r)) == Code.INVALID_ARGUMENT
    assert len(member_ids(group_get(stack, gid, members))) == 2, "a refused delete deletes nothing"

    group_delete(stack, "no-such-group", members)  # missing: OK
    group_delete(stack, "Not A Snapshot Name!", members)  # cannot exist: OK
    group_delete(stack, gid, members)
    delete_volumes(stack, a.volume_id, b.volume_id)


def test_emulator_multi_snapshot_is_all_or_nothing(stack: Stack) -> None:
    """The controller takes a multi-snapshot in one transaction; the emulator must too."""
    volume = create(stack)
    config = load_config({"controllers": stack.emulator.url, "node_name": LOCAL}, env={}, config_file=None)
    client = LinstorClient(config)
    try:
        with pytest.raises(NotFound):
            client.create_snapshots([(volume.volume_id, "together"), ("no-such-volume", "together")])
        assert not client.view_snapshots([volume.volume_id])
        client.create_snapshots([(volume.volume_id, "together")], {"Aux/mark": "x"})
        (snap,) = client.view_snapshots([volume.volume_id])
        assert snap.props["Aux/mark"] == "x"
        client.delete_snapshot(volume.volume_id, "together")
    finally:
        client.close()
    delete_volumes(stack, volume.volume_id)


def test_many_volumes_in_one_group(stack: Stack) -> None:
    volumes = [create(stack, size=16 * MIB) for _ in range(5)]
    made = group_create(stack, unique("g"), *(v.volume_id for v in volumes))
    assert len(made.snapshots) == 5 and made.ready_to_use
    stamps = {s.creation_time.ToNanoseconds() for s in made.snapshots}
    assert made.creation_time.ToNanoseconds() == min(stamps)
    group_delete(stack, made.group_snapshot_id, member_ids(made))
    delete_volumes(stack, *(v.volume_id for v in volumes))


def test_no_space_is_resource_exhausted_and_takes_nothing(stack: Stack) -> None:
    """LINSTOR refusing the multi-snapshot for space (ret code 980) is the spec's RESOURCE_EXHAUSTED."""
    a, b = create(stack), create(stack)
    rule = {
        "method": "POST",
        "path_regex": "^/v1/actions/snapshot/multi",
        "status": 500,
        "ret_code": 980,
        "message": "Not enough free space available for snapshot",
        "count": 1,
    }
    assert stack.emulator.control("errors", rule).ok
    try:
        with pytest.raises(grpc.RpcError) as full:
            group_create(stack, unique("g"), a.volume_id, b.volume_id)
    finally:
        requests.delete(f"{stack.emulator.url}/_emu/errors", timeout=10).raise_for_status()
    assert full.value.code() == Code.RESOURCE_EXHAUSTED and "space" in full.value.details()
    assert not linstor_snapshots(stack, a.volume_id) and not linstor_snapshots(stack, b.volume_id)
    delete_volumes(stack, a.volume_id, b.volume_id)


def test_a_group_snapshot_in_progress_is_aborted_for_a_second_caller(stack: Stack) -> None:
    """While one CreateVolumeGroupSnapshot works on a name, a second call for it is ABORTED (retry)."""
    volume = create(stack)
    request = csi_pb2.CreateVolumeGroupSnapshotRequest(name=unique("g"), source_volume_ids=[volume.volume_id])
    stack.emulator.control("latency", {"ms": 300}).raise_for_status()
    try:
        held = stack.emulator.injected_faults("latency")
        first = stack.csi.group.CreateVolumeGroupSnapshot.future(request)
        wait_until(  # the first call is now waiting on LINSTOR
            lambda: stack.emulator.injected_faults("latency") > held, what="the first call held up in LINSTOR"
        )
        assert code_of(lambda: stack.csi.group.CreateVolumeGroupSnapshot(request)) == Code.ABORTED
        made = first.result(timeout=60).group_snapshot
    finally:
        stack.emulator.control("latency", {"ms": 0}).raise_for_status()
    again = stack.csi.group.CreateVolumeGroupSnapshot(request).group_snapshot  # the CO's retry converges
    assert again.group_snapshot_id == made.group_snapshot_id and member_ids(again) == member_ids(made)
    group_delete(stack, made.group_snapshot_id, member_ids(made))
    delete_volumes(stack, volume.volume_id)
