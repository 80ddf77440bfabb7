"""One round of the node path: a fresh blank volume, staged and published by a driver or by a shell script.

``csi_bench`` times the working tree's driver against the script, ``node_ab`` two revisions
of the driver against it; both must give each side the same fresh volume and the same
clean-up, or their ratios to the script would not compare.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from benchmarks.common import LOCAL, MIB
from csi.generated import csi_pb2
from csi.testing import CsiClient, block_cap, mount_cap, unmount_under
from plugin.node.ops import NodeOps

VOLUME_BYTES = 256 * MIB
FS = "ext4"
DEVICE_KEY = "linstor.csi.linbit.com/device-path"

SHELL_STAGE_PUBLISH = """#!/bin/sh
# The node work of NodeStage+NodePublish, by hand: format, mount, bind.
set -e
dev=$1 staging=$2 target=$3
mkfs.ext4 -q "$dev"
mount -t ext4 "$dev" "$staging"
mkdir -p "$target"
mount --bind "$staging" "$target"
"""


#: The same script with the guard the driver keeps: ``blkid -p`` must find no signature
#: (exit code 2) before mkfs runs. A second reference, to show what that check costs; the
#: target is held against the plain script above.
SHELL_GUARDED_STAGE_PUBLISH = SHELL_STAGE_PUBLISH.replace(
    'mkfs.ext4 -q "$dev"\n',
    'found=0; blkid -p "$dev" >/dev/null || found=$?\n'
    '[ "$found" -eq 2 ] || { echo "$dev is not blank (blkid -p exit $found)" >&2; exit 1; }\n'
    'mkfs.ext4 -q "$dev"\n',
)


def write_script(directory: Path, guarded: bool = False) -> Path:
    """The shell side's script (with the blkid guard if ``guarded``), written below ``directory``."""
    script = directory / ("stage-publish-guarded.sh" if guarded else "stage-publish.sh")
    script.write_text(SHELL_GUARDED_STAGE_PUBLISH if guarded else SHELL_STAGE_PUBLISH)
    return script


@dataclass(frozen=True)
class Fresh:
    """A new blank volume attached to this node, with what kubelet would send for it."""

    volume_id: str
    #: The PV's ``volumeAttributes``: CreateVolume's volume context, which kubelet passes on.
    volume_context: dict[str, str]
    #: ControllerPublishVolume's answer, which kubelet passes on too.
    publish_context: dict[str, str]
    device: str


def fresh_device(client: CsiClient, name: str) -> Fresh:
    """A new blank volume attached to this node."""
    volume = client.controller.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=name,
            capacity_range=csi_pb2.CapacityRange(required_bytes=VOLUME_BYTES),
            volume_capabilities=[block_cap()],  # block-provisioned: nothing formats it
        )
    ).volume
    ctx = dict(
        client.controller.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=volume.volume_id, node_id=LOCAL, volume_capability=block_cap()
            )
        ).publish_context
    )
    return Fresh(volume.volume_id, dict(volume.volume_context), ctx, ctx[DEVICE_KEY])


def stage_and_publish(client: CsiClient, fresh: Fresh, staging: Path, target: Path) -> None:
    """NodeStageVolume then NodePublishVolume of an ext4 mount, as kubelet sends them."""
    cap = mount_cap(fs_type=FS)
    client.node.NodeStageVolume(
        csi_pb2.NodeStageVolumeRequest(
            volume_id=fresh.volume_id,
            staging_target_path=str(staging),
            volume_capability=cap,
            publish_context=fresh.publish_context,
            volume_context=fresh.volume_context,
        )
    )
    client.node.NodePublishVolume(
        csi_pb2.NodePublishVolumeRequest(
            volume_id=fresh.volume_id,
            staging_target_path=str(staging),
            target_path=str(target),
            volume_capability=cap,
            publish_context=fresh.publish_context,
            volume_context=fresh.volume_context,
        )
    )


def shell_stage_publish(script: Path, device: str, staging: Path, target: Path) -> None:
    """The same mkfs, mount and bind by the shell script: the floor the driver is held against."""
    subprocess.run(["sh", str(script), device, str(staging), str(target)], check=True)


def release(client: CsiClient, nodeops: NodeOps, vid: str, work: Path, side: str) -> None:
    """Check the round's target is mounted, then unmount everything below ``work`` and delete the volume."""
    target = work / "target"
    if not os.path.ismount(target):
        raise RuntimeError(f"{side}: {target} is not mounted after stage and publish")
    unmount_under(str(work), nodeops)
    client.controller.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=vid, node_id=LOCAL)
    )
    delete_when_released(client, vid)


def delete_when_released(client: CsiClient, vid: str, tries: int = 10) -> None:
    """DeleteVolume, tried again while the emulator still sees the just-unmounted device in use.

    On a shared machine another process may hold the device open for a moment (a scan of
    block devices); the emulator then refuses to detach it, as DRBD would. That says
    nothing about the node path measured here, so the round is not lost to it.
    """
    for attempt in range(tries):
        try:
            client.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid))
            return
        except grpc.RpcError as exc:
            if attempt == tries - 1 or "in use" not in (exc.details() or ""):
                raise
            time.sleep(0.2 * (attempt + 1))


def timed_round(
    control: CsiClient,
    nodeops: NodeOps,
    work: Path,
    name: str,
    side: str,
    driver: CsiClient | None,
    script: Path,
) -> float:
    """Seconds one side takes to stage and publish a fresh blank volume below ``work``.

    ``control`` makes, attaches and deletes the volume; ``driver`` (None for the shell
    script) does the timed stage and publish. ``work`` must lie below that driver's path root.
    """
    fresh = fresh_device(control, name)
    nodeops.wait_for_device(fresh.device)
    staging, target = work / "staging", work / "target"
    staging.mkdir(parents=True)
    start = time.perf_counter()
    if driver is None:
        shell_stage_publish(script, fresh.device, staging, target)
    else:
        stage_and_publish(driver, fresh, staging, target)
    seconds = time.perf_counter() - start
    release(control, nodeops, fresh.volume_id, work, side)
    return seconds
