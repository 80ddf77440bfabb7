"""The work NodeStage and NodePublish do on the host, counted: commands, mount-table reads, REST calls.

The node path is the latency a pod waits for, so it does each piece of work once: the
device is probed once (the guard of ``blkid -p``, run in-process, also decides whether an existing ext4 is
checked), the mount table is read once per request, LINSTOR is asked only what the request
needs (the volume's device on this node; its record too where the request needs stored
options or IO limits), and a filesystem the stage has just made is neither checked nor grown.
These tests pin that down with real mounts, and check that skipping the work never skips
a safety check: an existing ext4 is still checked before it is mounted, a staging path
holding another volume is still refused. How long it takes is the benchmark's business
(``benchmarks/csi_bench.py``), never asserted here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests

from csi import keys
from csi.generated import csi_pb2
from csi.testing import block_cap, mount_cap
from plugin.node.commands import CommandResult, run
from plugin.node.mounttable import MountEntry
from plugin.node.native import ProbeAnswer
from plugin.volume_records import CREATING
from tests.integration.csi_stack import LOCAL, Stack, csi_stack, rest_calls, stage_paths

MIB = 1024**2
Mode = csi_pb2.VolumeCapability.AccessMode.Mode
DEVICE_KEY = "linstor.csi.linbit.com/device-path"


class Counts:
    """What the driver's node operations did since the last :meth:`take`.

    ``commands`` holds the tools run and, by name, the in-process calls that replace
    ``blkid``, ``mount`` and ``mount --bind`` (``probe(libblkid)``, ``mount(2)``, ``bind(2)``).
    """

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.table_reads = 0

    def take(self) -> tuple[list[str], int]:
        done = (self.commands, self.table_reads)
        self.commands, self.table_reads = [], 0
        return done


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with csi_stack(tmp_path_factory.mktemp("csi-node-path"), "csi-node-path-") as made:
        yield made


@pytest.fixture
def counts(stack: Stack) -> Iterator[Counts]:
    """Count the commands and mount-table reads of the driver's own NodeOps."""
    host = stack.nodeops.host
    counted = Counts()
    original_run, original_mounts = host._run, host.mounts

    def counting_run(args: Sequence[str], **kwargs: Any) -> CommandResult:
        counted.commands.append(" ".join(args[:2]) if args[0] == "mount" and args[1] == "--bind" else args[0])
        return run(args, **kwargs)

    def counting_mounts() -> list[MountEntry]:
        counted.table_reads += 1
        return original_mounts()

    native = host.native
    assert native is not None  # the driver probes and mounts in-process
    original_probe, original_mount, original_bind = native.probe, native.mount, native.bind

    def counting_probe(device: str) -> ProbeAnswer:
        counted.commands.append("probe(libblkid)")
        return original_probe(device)

    def counting_mount(
        source: str, target: str, fs_type: str, options: Sequence[str], readonly: bool
    ) -> None:
        counted.commands.append("mount(2)")
        original_mount(source, target, fs_type, options, readonly)

    def counting_bind(source: str, target: str) -> None:
        counted.commands.append("bind(2)")
        original_bind(source, target)

    host._run = counting_run
    host.mounts = counting_mounts  # type: ignore[method-assign]
    native.probe, native.mount, native.bind = counting_probe, counting_mount, counting_bind  # type: ignore[method-assign]
    try:
        yield counted
    finally:
        host._run = original_run
        host.mounts = original_mounts  # type: ignore[method-assign]
        native.probe, native.mount, native.bind = original_probe, original_mount, original_bind  # type: ignore[method-assign]


@pytest.fixture
def paths(stack: Stack) -> Iterator[tuple[str, str]]:
    with stage_paths(stack) as made:
        yield made


def attached_volume(stack: Stack, cap: csi_pb2.VolumeCapability) -> tuple[str, dict[str, str], str]:
    """A new volume attached to this node: (id, publish context, device)."""
    volume = stack.csi.controller.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=f"pvc-{uuid.uuid4()}",
            capacity_range=csi_pb2.CapacityRange(required_bytes=64 * MIB),
            volume_capabilities=[cap],
        )
    ).volume
    ctx = dict(
        stack.csi.controller.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=volume.volume_id, node_id=LOCAL, volume_capability=cap
            )
        ).publish_context
    )
    return volume.volume_id, ctx, ctx[DEVICE_KEY]


def stage(
    stack: Stack, vid: str, staging: str, ctx: dict[str, str], volume_context: dict[str, str] | None = None
) -> None:
    """NodeStageVolume; without ``volume_context`` as for a static PV, with it as for a provisioned one."""
    stack.csi.node.NodeStageVolume(
        csi_pb2.NodeStageVolumeRequest(
            volume_id=vid,
            staging_target_path=staging,
            volume_capability=mount_cap(fs_type="ext4"),
            publish_context=ctx,
            volume_context=volume_context,
        )
    )


def publish(
    stack: Stack,
    vid: str,
    staging: str,
    target: str,
    ctx: dict[str, str],
    cap: csi_pb2.VolumeCapability | None = None,
    volume_context: dict[str, str] | None = None,
) -> None:
    stack.csi.node.NodePublishVolume(
        csi_pb2.NodePublishVolumeRequest(
            volume_id=vid,
            staging_target_path=staging,
            target_path=target,
            volume_capability=cap or mount_cap(fs_type="ext4"),
            publish_context=ctx,
            volume_context=volume_context,
        )
    )


def remove(stack: Stack, vid: str) -> None:
    stack.csi.controller.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=vid, node_id=LOCAL)
    )
    stack.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid))


def test_fresh_volume_is_probed_once_formatted_mounted_and_bound(
    stack: Stack, counts: Counts, paths: tuple[str, str]
) -> None:
    staging, target = paths
    vid, ctx, device = attached_volume(stack, block_cap())  # block-provisioned: nothing formatted it
    counts.take()

    before = rest_calls()
    stage(stack, vid, staging, ctx)
    commands, reads = counts.take()
    # The one probe guards mkfs and tells that the new ext4 needs no check; its size is known.
    # Only mkfs is a command: the probe and the mount are done in-process.
    assert commands == ["probe(libblkid)", "mkfs.ext4", "mount(2)"]
    assert reads == 1
    assert rest_calls() - before == 2  # no volume context: the stored record and the device here

    before = rest_calls()
    publish(stack, vid, staging, target, ctx)
    assert rest_calls() - before == 0  # the stage has just read both
    commands, reads = counts.take()
    assert commands == ["bind(2)"]
    assert reads == 1  # the staging mount's owner and the target checked against one reading
    assert stack.nodeops.mounts_of(device) == [staging, target]
    assert stack.nodeops.filesystem_signature(device) == "ext4"
    counts.take()

    stage(stack, vid, staging, ctx)  # a repeat: mounted already, so neither probed nor checked
    commands, _ = counts.take()
    assert commands == []  # neither probed, checked, formatted nor mounted again
    stack.nodeops.unmount(target)
    stack.nodeops.unmount(staging, remove_target=False)
    remove(stack, vid)


def test_existing_ext4_is_checked_from_the_same_probe(
    stack: Stack, counts: Counts, paths: tuple[str, str], tmp_path: Path
) -> None:
    staging, target = paths
    vid, ctx, device = attached_volume(stack, mount_cap(fs_type="ext4"))  # formatted by LINSTOR
    counts.take()

    stage(stack, vid, staging, ctx)
    commands, reads = counts.take()
    # Never formatted; checked before its first mount here, its size read from its superblock.
    assert commands == ["probe(libblkid)", "e2fsck", "mount(2)"]
    assert reads == 1
    publish(stack, vid, staging, target, ctx)
    assert stack.nodeops.mounts_of(device) == [staging, target]
    stack.nodeops.unmount(target)
    stack.nodeops.unmount(staging, remove_target=False)
    remove(stack, vid)


def test_staging_path_of_another_volume_is_still_refused_without_a_probe(
    stack: Stack, counts: Counts, paths: tuple[str, str]
) -> None:
    staging, _ = paths
    one, ctx_one, _ = attached_volume(stack, block_cap())
    two, ctx_two, device_two = attached_volume(stack, block_cap())
    stage(stack, one, staging, ctx_one)
    counts.take()
    with pytest.raises(grpc.RpcError) as info:
        stage(stack, two, staging, ctx_two)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "already has another device mounted" in (info.value.details() or "")
    commands, reads = counts.take()
    assert commands == [] and reads == 1
    assert stack.nodeops.filesystem_signature(device_two) is None  # the other device untouched
    stack.nodeops.unmount(staging, remove_target=False)
    remove(stack, one)
    remove(stack, two)


def test_single_writer_publish_reads_the_mount_table_once_and_still_refuses_a_second_writer(
    stack: Stack, counts: Counts, paths: tuple[str, str]
) -> None:
    staging, target = paths
    second = str(Path(target).with_name("second"))
    vid, ctx, device = attached_volume(stack, block_cap())
    stage(stack, vid, staging, ctx)
    cap = mount_cap(mode=Mode.SINGLE_NODE_SINGLE_WRITER, fs_type="ext4")
    counts.take()
    publish(stack, vid, staging, target, ctx, cap)
    commands, reads = counts.take()
    assert commands == ["bind(2)"] and reads == 1
    with pytest.raises(grpc.RpcError) as info:
        publish(stack, vid, staging, second, ctx, cap)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert target in (info.value.details() or "")
    assert stack.nodeops.mounts_of(device) == [staging, target]
    stack.nodeops.unmount(target)
    stack.nodeops.unmount(staging, remove_target=False)
    remove(stack, vid)


def provisioned(stack: Stack, node: str = LOCAL) -> tuple[str, dict[str, str], dict[str, str] | None]:
    """A new blank volume with one replica on ``node``: (id, volume context, publish context here).

    The publish context is None when ``node`` is not this one (the volume is not attached here).
    """
    volume = stack.csi.controller.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=f"pvc-{uuid.uuid4()}",
            capacity_range=csi_pb2.CapacityRange(required_bytes=64 * MIB),
            volume_capabilities=[block_cap()],
            accessibility_requirements=csi_pb2.TopologyRequirement(
                requisite=[csi_pb2.Topology(segments={"linbit.com/hostname": node})]
            ),
        )
    ).volume
    if node != LOCAL:
        return volume.volume_id, dict(volume.volume_context), None
    ctx = stack.csi.controller.ControllerPublishVolume(
        csi_pb2.ControllerPublishVolumeRequest(
            volume_id=volume.volume_id, node_id=LOCAL, volume_capability=block_cap()
        )
    ).publish_context
    return volume.volume_id, dict(volume.volume_context), dict(ctx)


def test_with_the_volume_context_a_pod_start_reads_linstor_twice_at_once(
    stack: Stack, counts: Counts, paths: tuple[str, str]
) -> None:
    """The stage reads the record and the device here at once; the publish that follows uses both."""
    staging, target = paths
    vid, volume_context, ctx = provisioned(stack)
    assert ctx is not None
    before = rest_calls()
    stage(stack, vid, staging, ctx, volume_context)
    assert rest_calls() - before == 2
    assert counts.take()[0] == ["probe(libblkid)", "mkfs.ext4", "mount(2)"]  # the same guard
    before = rest_calls()
    publish(stack, vid, staging, target, ctx, volume_context=volume_context)
    assert rest_calls() - before == 0  # the record for its IO limits and the device: the stage's
    second = str(Path(target).with_name("second"))
    before = rest_calls()
    publish(stack, vid, staging, second, ctx, volume_context=volume_context)
    assert rest_calls() - before == 0  # a second pod within the stage's window
    stack.nodeops.unmount(second)
    device = ctx[DEVICE_KEY]
    assert stack.nodeops.mounts_of(device) == [staging, target]
    before = rest_calls()
    stack.csi.node.NodeUnpublishVolume(csi_pb2.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target))
    stack.csi.node.NodeUnstageVolume(
        csi_pb2.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging)
    )
    assert rest_calls() - before == 2  # the device here, once per request
    assert stack.nodeops.mounts_of(device) == []
    remove(stack, vid)


def test_an_unknown_volume_is_still_not_found_with_the_volume_context(
    stack: Stack, counts: Counts, paths: tuple[str, str]
) -> None:
    staging, target = paths
    volume_context = {keys.USES_VOLUME_CONTEXT: "true"}  # as CreateVolume writes it
    missing = f"pvc-{uuid.uuid4()}"
    for call in (
        lambda: stage(stack, missing, staging, {}, volume_context),
        lambda: publish(stack, missing, staging, target, {}, volume_context=volume_context),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert missing in (info.value.details() or "")
    assert counts.take()[0] == []  # nothing probed or mounted


def test_a_volume_not_attached_here_is_still_a_failed_precondition_with_the_volume_context(
    stack: Stack, counts: Counts, paths: tuple[str, str]
) -> None:
    staging, target = paths
    vid, volume_context, _ = provisioned(stack, "node-b")  # its one replica elsewhere, never published here
    with pytest.raises(grpc.RpcError) as info:
        stage(stack, vid, staging, {}, volume_context)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"volume {vid} is not attached to node {LOCAL}" in (info.value.details() or "")
    with pytest.raises(grpc.RpcError) as info:
        publish(stack, vid, staging, target, {}, volume_context=volume_context)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert counts.take()[0] == []
    stack.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid))


def test_a_staging_mount_changed_since_the_stage_is_judged_on_a_fresh_read(
    stack: Stack, counts: Counts, paths: tuple[str, str]
) -> None:
    """The stage's reads stand in for a publish only of that volume, while the mount is what they describe."""
    staging, target = paths
    one, ctx_one, device_one = attached_volume(stack, block_cap())
    two, ctx_two, device_two = attached_volume(stack, block_cap())
    stage(stack, one, staging, ctx_one)
    # Another volume's id may not publish from the staging path the stage read for the first.
    before = rest_calls()
    with pytest.raises(grpc.RpcError) as info:
        publish(stack, two, staging, target, ctx_two)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"holds a mount that is not volume {two}'s" in (info.value.details() or "")
    assert rest_calls() - before == 2  # the second volume's own record and device
    # Behind the driver's back, the staging path comes to show the other volume's filesystem.
    stack.nodeops.unmount(staging, remove_target=False)
    stack.nodeops.stage(device_two, staging, "ext4")
    before = rest_calls()
    with pytest.raises(grpc.RpcError) as info:
        publish(stack, one, staging, target, ctx_one)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"holds a mount that is not volume {one}'s" in (info.value.details() or "")
    assert rest_calls() - before == 2  # LINSTOR asked again: the record and the device here
    assert stack.nodeops.mounts_of(device_two) == [staging]  # nothing bound anywhere
    assert stack.nodeops.mounts_of(device_one) == []
    stack.nodeops.unmount(staging, remove_target=False)
    remove(stack, one)
    remove(stack, two)


def test_after_an_unstage_a_publish_reads_linstor_again(
    stack: Stack, counts: Counts, paths: tuple[str, str]
) -> None:
    staging, target = paths
    vid, ctx, _ = attached_volume(stack, block_cap())
    stage(stack, vid, staging, ctx)
    stack.csi.node.NodeUnstageVolume(
        csi_pb2.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging)
    )
    before = rest_calls()
    with pytest.raises(grpc.RpcError) as info:
        publish(stack, vid, staging, target, ctx)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "NodeStageVolume must run first" in (info.value.details() or "")
    assert rest_calls() - before == 2
    remove(stack, vid)


def test_nothing_is_changed_before_the_definition_says_the_volume_is_whole(
    stack: Stack, counts: Counts, paths: tuple[str, str]
) -> None:
    """The stage probes while the definition is read, but formats and mounts only after it."""
    staging, _ = paths
    vid, volume_context, ctx = provisioned(stack)
    assert ctx is not None
    device = ctx[DEVICE_KEY]
    # Marked half-made, as an interrupted restore leaves a definition: not a volume to use.
    answer = requests.put(
        f"{stack.emulator.url}/v1/resource-definitions/{vid}",
        json={"override_props": {CREATING: vid}},
        timeout=10,
    )
    assert answer.ok, answer.text
    counts.take()
    with pytest.raises(grpc.RpcError) as info:
        stage(stack, vid, staging, ctx, volume_context)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert vid in (info.value.details() or "")
    commands, _ = counts.take()
    assert not any(c.startswith("mkfs") or c.startswith("mount") for c in commands)
    assert stack.nodeops.filesystem_signature(device) is None  # still blank
    assert stack.nodeops.mounts_of(device) == []
    answer = requests.put(
        f"{stack.emulator.url}/v1/resource-definitions/{vid}", json={"delete_props": [CREATING]}, timeout=10
    )
    assert answer.ok, answer.text
    stage(stack, vid, staging, ctx, volume_context)  # whole again: staged as any other
    assert stack.nodeops.mounts_of(device) == [staging]
    stack.nodeops.unmount(staging, remove_target=False)
    remove(stack, vid)
