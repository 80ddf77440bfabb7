"""Conformance of the capabilities added for issue 12, against the emulator with real mounts.

GET_SNAPSHOT, the node's SINGLE_NODE_MULTI_WRITER (with both single-node writer modes),
one filesystem list shared by capabilities and node, PUBLISH_READONLY, publication
tracking, the attach limit, the ext4 check before mount and LINBIT's legacy volumes.
Each is exercised for success, idempotency and the spec's error codes, for mount and
block access where it applies. Needs root and loop devices (skips, or fails under CI).
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from csi.generated import csi_pb2
from csi.testing import block_cap, mount_cap
from tests import csi_requests as rq
from tests.integration.csi_stack import LOCAL, Stack, csi_stack, scratch_dir

Mode = csi_pb2.VolumeCapability.AccessMode.Mode
MIB = 1024**2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with csi_stack(tmp_path_factory.mktemp("csi-caps"), "csi-caps-") as made:
        yield made


@pytest.fixture
def base(stack: Stack) -> Iterator[Path]:
    """A fresh directory below the driver's root; whatever is mounted there is undone after."""
    with scratch_dir(stack) as made:
        yield made


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.details(), "every error carries a message"
    return info.value.code()


def details_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details() or ""


def create(stack: Stack, cap: csi_pb2.VolumeCapability | None = None, size: int = 32 * MIB, **kw) -> str:
    request = csi_pb2.CreateVolumeRequest(
        name=f"pvc-{uuid.uuid4()}",
        capacity_range=csi_pb2.CapacityRange(required_bytes=size),
        volume_capabilities=[cap or mount_cap()],
        **kw,
    )
    return stack.csi.controller.CreateVolume(request).volume.volume_id


def publish(
    stack: Stack,
    vid: str,
    cap: csi_pb2.VolumeCapability | None = None,
    node: str = LOCAL,
    readonly: bool = False,
) -> dict[str, str]:
    answer = stack.csi.controller.ControllerPublishVolume(
        rq.controller_publish(vid, node, cap, readonly=readonly)
    )
    return dict(answer.publish_context)


def unpublish(stack: Stack, vid: str, node: str = LOCAL) -> None:
    stack.csi.controller.ControllerUnpublishVolume(rq.controller_unpublish(vid, node))


def stage(stack: Stack, vid: str, staging: Path, ctx: dict[str, str], cap: csi_pb2.VolumeCapability) -> None:
    stack.csi.node.NodeStageVolume(rq.stage(vid, staging, ctx, cap))


def node_publish(
    stack: Stack,
    vid: str,
    staging: Path,
    target: Path,
    ctx: dict[str, str],
    cap: csi_pb2.VolumeCapability,
    readonly: bool = False,
) -> None:
    stack.csi.node.NodePublishVolume(rq.publish(vid, staging, target, ctx, cap, readonly=readonly))


def node_unpublish(stack: Stack, vid: str, target: Path) -> None:
    stack.csi.node.NodeUnpublishVolume(rq.unpublish(vid, target))


def unstage(stack: Stack, vid: str, staging: Path) -> None:
    stack.csi.node.NodeUnstageVolume(rq.unstage(vid, staging))


def delete(stack: Stack, vid: str) -> None:
    stack.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid))


def volume_ids(stack: Stack) -> set[str]:
    entries = stack.csi.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries
    return {e.volume.volume_id for e in entries}


def write_and_read(path: Path, text: str) -> None:
    path.write_text(text)
    assert path.read_text() == text


# ---------------------------------------------------------------- GET_SNAPSHOT


def test_get_snapshot_is_advertised_and_answers_per_spec(stack: Stack) -> None:
    ctl = stack.csi.controller
    caps = ctl.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest()).capabilities
    assert csi_pb2.ControllerServiceCapability.RPC.GET_SNAPSHOT in {c.rpc.type for c in caps}
    assert code_of(lambda: ctl.GetSnapshot(csi_pb2.GetSnapshotRequest())) == grpc.StatusCode.INVALID_ARGUMENT
    for unknown in ("non-existing-snapshot-id", "InCluster:///pvc-nothing/snap-nothing", "S3://remote/a/b"):
        request = csi_pb2.GetSnapshotRequest(snapshot_id=unknown)
        assert code_of(lambda r=request: ctl.GetSnapshot(r)) == grpc.StatusCode.NOT_FOUND

    vid = create(stack)
    made = ctl.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(source_volume_id=vid, name=f"snap-{uuid.uuid4()}")
    ).snapshot
    got = ctl.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=made.snapshot_id)).snapshot
    assert got == ctl.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=made.snapshot_id)).snapshot
    listed = ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id=made.snapshot_id)).entries
    assert [got] == [e.snapshot for e in listed]
    assert got.source_volume_id == vid and got.ready_to_use and got.size_bytes == 32 * MIB
    assert got.HasField("creation_time")

    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=made.snapshot_id))
    gone = csi_pb2.GetSnapshotRequest(snapshot_id=made.snapshot_id)
    assert code_of(lambda: ctl.GetSnapshot(gone)) == grpc.StatusCode.NOT_FOUND
    delete(stack, vid)


# ---------------------------------------------------------------- one filesystem list


@pytest.mark.parametrize("fs", ["ext2", "ext3"])
def test_filesystems_the_node_refuses_are_refused_at_create(stack: Stack, fs: str) -> None:
    ctl = stack.csi.controller
    before = volume_ids(stack)
    code, message = details_of(lambda: create(stack, mount_cap(fs_type=fs)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fs in message
    assert volume_ids(stack) == before  # nothing made that could never be staged
    vid = create(stack)
    answer = ctl.ValidateVolumeCapabilities(
        csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id=vid, volume_capabilities=[mount_cap(fs_type=fs)])
    )
    assert not answer.HasField("confirmed") and fs in answer.message
    delete(stack, vid)


def test_btrfs_is_accepted_and_stages(stack: Stack, base: Path) -> None:
    cap = mount_cap(fs_type="btrfs")
    vid = create(stack, cap, size=128 * MIB)
    ctx = publish(stack, vid, cap)
    staging = base / "staging"
    staging.mkdir()
    stage(stack, vid, staging, ctx, cap)
    node_publish(stack, vid, staging, base / "target", ctx, cap)
    write_and_read(base / "target" / "f", "btrfs")
    node_unpublish(stack, vid, base / "target")
    unstage(stack, vid, staging)
    unpublish(stack, vid)
    delete(stack, vid)


# ---------------------------------------------------------------- single-node writer modes


def test_single_node_multi_writer_publishes_read_write_at_several_targets(stack: Stack, base: Path) -> None:
    caps = stack.csi.node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest()).capabilities
    assert csi_pb2.NodeServiceCapability.RPC.SINGLE_NODE_MULTI_WRITER in {c.rpc.type for c in caps}
    cap = mount_cap(Mode.SINGLE_NODE_MULTI_WRITER)
    vid = create(stack, cap)
    ctx = publish(stack, vid, cap)
    assert publish(stack, vid, cap) == ctx  # idempotent
    staging = base / "staging"
    staging.mkdir()
    stage(stack, vid, staging, ctx, cap)
    targets = [base / "one", base / "two"]
    for target in targets:
        node_publish(stack, vid, staging, target, ctx, cap)
        node_publish(stack, vid, staging, target, ctx, cap)  # idempotent
    write_and_read(targets[0] / "a", "from one")
    write_and_read(targets[1] / "b", "from two")
    assert (targets[1] / "a").read_text() == "from one"
    for target in targets:
        node_unpublish(stack, vid, target)
    unstage(stack, vid, staging)
    unpublish(stack, vid)
    delete(stack, vid)


def test_single_node_single_writer_allows_one_read_write_target(stack: Stack, base: Path) -> None:
    cap = mount_cap(Mode.SINGLE_NODE_SINGLE_WRITER)
    vid = create(stack, cap)
    ctx = publish(stack, vid, cap)
    staging = base / "staging"
    staging.mkdir()
    stage(stack, vid, staging, ctx, cap)
    first, second, reader = base / "first", base / "second", base / "reader"
    node_publish(stack, vid, staging, first, ctx, cap)
    node_publish(stack, vid, staging, first, ctx, cap)  # the same target again: OK
    code, message = details_of(lambda: node_publish(stack, vid, staging, second, ctx, cap))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and str(first) in message
    assert not os.path.ismount(second)
    node_publish(stack, vid, staging, reader, ctx, cap, readonly=True)  # a reader beside it: fine
    with pytest.raises(OSError) as info:
        (reader / "x").write_text("x")
    assert info.value.errno == errno.EROFS
    node_unpublish(stack, vid, first)
    node_publish(stack, vid, staging, second, ctx, cap)  # the writer moved: now it may
    write_and_read(second / "moved", "yes")
    for target in (second, reader):
        node_unpublish(stack, vid, target)
    unstage(stack, vid, staging)
    unpublish(stack, vid)
    delete(stack, vid)


def test_single_node_single_writer_block(stack: Stack, base: Path) -> None:
    cap = block_cap(Mode.SINGLE_NODE_SINGLE_WRITER)
    vid = create(stack, cap, size=16 * MIB)
    ctx = publish(stack, vid, cap)
    staging = base / "staging"
    staging.mkdir()
    stage(stack, vid, staging, ctx, cap)
    node_publish(stack, vid, staging, base / "first", ctx, cap)
    code = code_of(lambda: node_publish(stack, vid, staging, base / "second", ctx, cap))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    node_unpublish(stack, vid, base / "first")
    node_publish(stack, vid, staging, base / "second", ctx, cap)
    node_unpublish(stack, vid, base / "second")
    multi = block_cap(Mode.SINGLE_NODE_MULTI_WRITER)
    for name in ("m1", "m2"):
        node_publish(stack, vid, staging, base / name, ctx, multi)
    for name in ("m1", "m2"):
        node_unpublish(stack, vid, base / name)
    unstage(stack, vid, staging)
    unpublish(stack, vid)
    delete(stack, vid)


# ---------------------------------------------------------------- PUBLISH_READONLY


def published(stack: Stack, vid: str) -> list[str]:
    status = stack.csi.controller.ControllerGetVolume(
        csi_pb2.ControllerGetVolumeRequest(volume_id=vid)
    ).status
    listed = {
        e.volume.volume_id: list(e.status.published_node_ids)
        for e in stack.csi.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries
    }
    assert listed[vid] == list(status.published_node_ids)  # both answers agree
    return list(status.published_node_ids)


def test_publish_readonly_reaches_the_node_which_mounts_read_only(stack: Stack, base: Path) -> None:
    caps = stack.csi.controller.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest())
    assert csi_pb2.ControllerServiceCapability.RPC.PUBLISH_READONLY in {c.rpc.type for c in caps.capabilities}
    cap = mount_cap()
    vid = create(stack, cap)
    ctx = publish(stack, vid, cap, readonly=True)
    assert ctx["linstor.csi.linbit.com/read-only"] == "true"
    assert publish(stack, vid, cap, readonly=True) == ctx  # idempotent
    code, message = details_of(lambda: publish(stack, vid, cap, readonly=False))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "read-only" in message
    assert published(stack, vid) == [LOCAL]

    staging, target = base / "staging", base / "target"
    staging.mkdir()
    stage(stack, vid, staging, ctx, cap)  # the capability asks read-write; the publication says no
    stage(stack, vid, staging, ctx, cap)  # idempotent
    node_publish(stack, vid, staging, target, ctx, cap)
    assert (target / "lost+found").is_dir()
    for path in (staging, target):
        with pytest.raises(OSError) as info:
            (path / "x").write_text("x")
        assert info.value.errno == errno.EROFS
    node_unpublish(stack, vid, target)
    unstage(stack, vid, staging)
    unpublish(stack, vid)
    assert published(stack, vid) == []

    rw = publish(stack, vid, cap)  # after unpublish the other way is fine
    assert "linstor.csi.linbit.com/read-only" not in rw
    code = code_of(lambda: publish(stack, vid, cap, readonly=True))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    stage(stack, vid, staging, rw, cap)
    write_and_read(staging / "rw", "writable")
    unstage(stack, vid, staging)
    unpublish(stack, vid)
    delete(stack, vid)


def test_publish_readonly_block(stack: Stack, base: Path) -> None:
    cap = block_cap()
    vid = create(stack, cap, size=16 * MIB)
    ctx = publish(stack, vid, cap, readonly=True)
    staging, target = base / "staging", base / "target"
    staging.mkdir()
    stage(stack, vid, staging, ctx, cap)
    node_publish(stack, vid, staging, target, ctx, cap)
    with pytest.raises(OSError) as info:
        fd = os.open(target, os.O_WRONLY)
        try:
            os.write(fd, b"x" * 512)
        finally:
            os.close(fd)
    assert info.value.errno in (errno.EROFS, errno.EPERM, errno.EACCES)
    node_unpublish(stack, vid, target)
    unstage(stack, vid, staging)
    unpublish(stack, vid)
    rw = publish(stack, vid, cap)  # the device is writable again for a read-write publication
    node_publish(stack, vid, staging, target, rw, cap)
    fd = os.open(target, os.O_WRONLY)
    try:
        assert os.write(fd, b"y" * 512) == 512
    finally:
        os.close(fd)
    node_unpublish(stack, vid, target)
    unpublish(stack, vid)
    delete(stack, vid)


def test_nomad_mixed_claims_on_one_node_are_not_a_conflict(stack: Stack) -> None:
    writer = mount_cap(Mode.SINGLE_NODE_WRITER)
    reader = mount_cap(Mode.MULTI_NODE_READER_ONLY)
    vid = stack.csi.controller.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=f"nomad-{uuid.uuid4()}",
            capacity_range=csi_pb2.CapacityRange(required_bytes=32 * MIB),
            volume_capabilities=[writer, reader],
        )
    ).volume.volume_id
    rw = publish(stack, vid, writer)
    ro = publish(stack, vid, reader, readonly=True)  # a read claim beside the write claim
    assert "linstor.csi.linbit.com/read-only" not in rw and ro["linstor.csi.linbit.com/read-only"] == "true"
    assert publish(stack, vid, writer) == rw and published(stack, vid) == [LOCAL]
    unpublish(stack, vid)
    assert published(stack, vid) == []
    delete(stack, vid)


# ---------------------------------------------------------------- published nodes


def test_published_nodes_are_publications_not_replicas(stack: Stack) -> None:
    on_local = csi_pb2.TopologyRequirement(
        requisite=[csi_pb2.Topology(segments={"linbit.com/hostname": LOCAL})],
        preferred=[csi_pb2.Topology(segments={"linbit.com/hostname": LOCAL})],
    )
    vid = create(
        stack,
        parameters={"linstor.csi.linbit.com/placementCount": "2"},
        accessibility_requirements=on_local,
    )
    assert published(stack, vid) == []  # two replicas, nothing published
    publish(stack, vid)  # onto the local replica that holds data
    assert published(stack, vid) == [LOCAL]
    publish(stack, vid, node="node-b")  # a second replica or a diskless attachment: either way
    assert published(stack, vid) == sorted([LOCAL, "node-b"])
    unpublish(stack, vid)  # the replica with data stays, only the publication goes
    assert published(stack, vid) == ["node-b"]
    assert stack.csi.controller.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=vid))
    stack.csi.controller.ControllerUnpublishVolume(rq.controller_unpublish(vid))
    assert published(stack, vid) == []
    unpublish(stack, vid)  # again: OK
    delete(stack, vid)


# ---------------------------------------------------------------- attach limit, DRBD number pools


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A driver started with --max-volumes-per-node=2."""
    with csi_stack(tmp_path_factory.mktemp("csi-limit"), "csi-limit-", max_volumes_per_node=2) as made:
        yield made


@pytest.fixture(scope="module")
def scarce(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A controller with 3 DRBD minors and 2 DRBD TCP ports per node to hand out."""
    with csi_stack(
        tmp_path_factory.mktemp("csi-scarce"),
        "csi-scarce-",
        emulator_args=("--minor-range", "1000-1002", "--tcp-port-range", "7000-7001"),
    ) as made:
        yield made


def test_attach_limit_is_resource_exhausted(limited: Stack) -> None:
    info = limited.csi.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
    assert info.max_volumes_per_node == 2
    vids = [create(limited) for _ in range(3)]
    for vid in vids[:2]:
        publish(limited, vid, node="node-b")
    assert publish(limited, vids[0], node="node-b")  # again: no second slot taken
    code, message = details_of(lambda: publish(limited, vids[2], node="node-b"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max-volumes-per-node" in message
    assert published(limited, vids[2]) == []  # refused before anything was attached
    publish(limited, vids[2], node="node-c")  # another node has room
    unpublish(limited, vids[0], node="node-b")
    publish(limited, vids[2], node="node-b")  # a slot came free
    for vid in vids:
        limited.csi.controller.ControllerUnpublishVolume(rq.controller_unpublish(vid))
        delete(limited, vid)


def test_running_out_of_drbd_minors_is_resource_exhausted(scarce: Stack) -> None:
    made = [create(scarce) for _ in range(3)]
    before = volume_ids(scarce)
    code, message = details_of(lambda: create(scarce))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "DRBD minor numbers" in message
    assert volume_ids(scarce) == before
    delete(scarce, made.pop())
    made.append(create(scarce))  # a freed minor is used again
    for vid in made:
        delete(scarce, vid)


def test_running_out_of_drbd_tcp_ports_is_resource_exhausted(scarce: Stack) -> None:
    def on(node: str) -> csi_pb2.TopologyRequirement:
        return csi_pb2.TopologyRequirement(
            requisite=[csi_pb2.Topology(segments={"linbit.com/hostname": node})]
        )

    # two ports per node: two volumes with data here, one on node-c, none on node-b yet
    vids = [create(scarce, accessibility_requirements=on(n)) for n in (LOCAL, LOCAL, "node-c")]
    for vid in vids[:2]:
        publish(scarce, vid, node="node-b")  # each diskless resource takes a port on node-b
    code, message = details_of(lambda: publish(scarce, vids[2], node="node-b"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "DRBD TCP ports" in message
    assert published(scarce, vids[2]) == []
    unpublish(scarce, vids[0], node="node-b")
    publish(scarce, vids[2], node="node-b")
    for vid in vids:
        scarce.csi.controller.ControllerUnpublishVolume(rq.controller_unpublish(vid))
        delete(scarce, vid)


# ---------------------------------------------------------------- ext4 check before mount


def debugfs(device: str, command: str) -> None:
    import subprocess

    subprocess.run(["debugfs", "-w", "-R", command, device], check=True, capture_output=True)


def test_ext4_is_preened_before_it_is_mounted(
    stack: Stack, base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cap = mount_cap(fs_type="ext4")
    vid = create(stack, cap)
    ctx = publish(stack, vid, cap)
    device = ctx["linstor.csi.linbit.com/device-path"]
    staging = base / "staging"
    staging.mkdir()
    stage(stack, vid, staging, ctx, cap)
    write_and_read(staging / "kept", "data")
    unstage(stack, vid, staging)

    debugfs(device, "ssv state 0")  # not cleanly unmounted, so the check is not skipped
    debugfs(device, "ssv free_blocks_count 1")  # a wrong summary: preen fixes that alone
    caplog.clear()
    with caplog.at_level("INFO"):
        stage(stack, vid, staging, ctx, cap)
    assert "ext4 check of" in caplog.text and "repaired" in caplog.text
    assert (staging / "kept").read_text() == "data"
    stage(stack, vid, staging, ctx, cap)  # already mounted: not checked again, still OK
    unstage(stack, vid, staging)

    debugfs(device, "ssv state 0")
    debugfs(device, "clri <2>")  # the root directory is gone: that needs a person
    code, message = details_of(lambda: stage(stack, vid, staging, ctx, cap))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "e2fsck" in message and device in message
    assert not os.path.ismount(staging)  # nothing was mounted
    unpublish(stack, vid)
    delete(stack, vid)


# ---------------------------------------------------------------- volumes made by LINBIT's driver


def test_volumes_made_by_linbits_driver_are_adopted(stack: Stack, base: Path) -> None:
    import json

    import requests

    api = stack.emulator.url + "/v1"
    rd = f"csi-{uuid.uuid4()}"
    pv_name = f"pvc-{uuid.uuid4()}"
    annotations = {
        "name": pv_name,
        "id": rd,
        "createdBy": "linstor.csi.linbit.com",
        "creationTime": "2020-12-10T08:07:44.79360651Z",
        "sizeBytes": 32 * MIB,
        "readonly": False,
        "parameters": {"autoPlace": "1", "mountOpts": "noatime,nodiratime", "storagePool": "DfltStorPool"},
        "snapshots": [],
    }
    for path, body in (
        (
            "/resource-definitions",
            {
                "resource_definition": {
                    "name": rd,
                    "props": {"Aux/csi-volume-annotations": json.dumps(annotations)},
                }
            },
        ),
        (
            f"/resource-definitions/{rd}/volume-definitions",
            {
                "volume_definition": {
                    "volume_number": 0,
                    "size_kib": 32 * 1024,
                    "props": {"FileSystem/Type": "ext4"},
                }
            },
        ),
        (
            f"/resource-definitions/{rd}/resources/{LOCAL}",
            {"resource": {"node_name": LOCAL, "props": {"StorPoolName": "DfltStorPool"}}},
        ),
    ):
        answer = requests.post(api + path, json=body, timeout=30)
        assert answer.status_code < 300, answer.text

    got = stack.csi.controller.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=rd))
    assert got.volume.capacity_bytes == 32 * MIB
    assert rd in volume_ids(stack)
    cap = mount_cap()
    ctx = publish(stack, vid := rd, cap)
    assert ctx["linstor.csi.linbit.com/fs-type"] == "ext4"
    staging, target = base / "staging", base / "target"
    staging.mkdir()
    stage(stack, vid, staging, ctx, cap)  # a static PV: no volume context at all
    options = next(
        line.split()[3]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1] == str(staging)
    )
    assert "noatime" in options.split(",") and "nodiratime" in options.split(",")
    node_publish(stack, vid, staging, target, ctx, cap)
    write_and_read(target / "adopted", "yes")
    node_unpublish(stack, vid, target)
    unstage(stack, vid, staging)
    unpublish(stack, vid)
    delete(stack, vid)
    assert rd not in volume_ids(stack)
