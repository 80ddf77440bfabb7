"""One CSI volume's whole life, step by step, as kubelet and the sidecars drive it.

The volume's replica lives on a virtual node, so publishing it here makes a diskless
resource (the case where an interrupted attach can leak one); staging formats and mounts
the real loop device the emulator gives this host, and data written after publishing
must read back after every crash. Every step is idempotent by the CSI spec, so the crash
suite can repeat any of them after a kill.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import requests

from csi import keys
from csi.generated import csi_pb2
from csi.testing import mount_cap
from tests import csi_requests as rq
from tests.conftest import EmulatorProcess, reset_and_stop
from tests.fault.harness import (
    FaultLog,
    Lifecycle,
    StepDurations,
    digest_of,
    leaks,
    run_lifecycle,
    write_blob,
)
from tests.fault.processes import LOCAL, CsiDriverProcess, new_emulator, scratch_dir

MIB = 1024 * 1024
FS = "xfs"
SIZE = 304 * MIB  # xfs: it grows online without CAP_SYS_RESOURCE, and wants 300 MiB
EXPANDED = 352 * MIB
PLACEMENT = {"linstor.csi.linbit.com/nodeList": "node-b"}

STEPS = (
    "CreateVolume",
    "ControllerPublishVolume",
    "NodeStageVolume",
    "NodePublishVolume",
    "CreateSnapshot",
    "Expand",
    "NodeUnpublishVolume",
    "NodeUnstageVolume",
    "ControllerUnpublishVolume",
    "DeleteSnapshot",
    "DeleteVolume",
)
# After these the data is reachable on this node: mounted, or on the attached device.
DATA_STEPS = STEPS[STEPS.index("NodePublishVolume") : STEPS.index("ControllerUnpublishVolume")]

TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED}


def transient(exc: Exception) -> bool:
    """What a CO retries after a driver restart: the socket was gone, or a call was in flight."""
    return isinstance(exc, grpc.RpcError) and exc.code() in TRANSIENT  # type: ignore[attr-defined]


def node_resource(emu: EmulatorProcess, volume_id: str, node: str) -> str | None:
    """What LINSTOR still has of the volume on a node ("diskless resource", "resource"), or None."""
    answer = requests.get(
        f"{emu.url}/v1/resource-definitions/{volume_id}/resources/{node}",
        timeout=30,
        **emu.request_kwargs(),  # type: ignore[arg-type]
    )
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    flags = set(answer.json().get("flags") or ())
    return "diskless resource" if flags & {"DISKLESS", "DRBD_DISKLESS"} else "resource"


def _fs_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


@dataclass
class CsiLifecycle(Lifecycle):
    driver: CsiDriverProcess
    base: Path
    rng: random.Random
    name: str = ""
    volume_id: str = ""
    snapshot_id: str = ""
    publish_context: dict[str, str] = field(default_factory=dict)
    digest: str = ""
    fs_bytes: int = 0
    findings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = f"pvc-{self.rng.getrandbits(48):012x}"
        self.staging = self.base / "plugins" / self.name / "globalmount"
        self.target = self.base / "pods" / self.name / "mount"
        self.check = self.base / "check"
        self.staging.mkdir(parents=True, exist_ok=True)  # kubelet makes the staging directory

    @property
    def _c(self):  # type: ignore[no-untyped-def]
        assert self.driver.client is not None
        return self.driver.client

    def step(self, name: str) -> Callable[[], None]:
        return getattr(self, f"_{name}")  # type: ignore[no-any-return]

    def _CreateVolume(self) -> None:
        volume = self._c.controller.CreateVolume(
            csi_pb2.CreateVolumeRequest(
                name=self.name,
                capacity_range=csi_pb2.CapacityRange(required_bytes=SIZE),
                volume_capabilities=[mount_cap(fs_type=FS)],
                parameters=PLACEMENT,
            ),
            timeout=60,
        ).volume
        self.volume_id = volume.volume_id

    def _ControllerPublishVolume(self) -> None:
        answer = self._c.controller.ControllerPublishVolume(
            rq.controller_publish(self.volume_id, LOCAL, mount_cap(fs_type=FS)),
            timeout=60,
        )
        self.publish_context = dict(answer.publish_context)

    def _NodeStageVolume(self) -> None:
        self._c.node.NodeStageVolume(
            rq.stage(self.volume_id, self.staging, self.publish_context, mount_cap(fs_type=FS)),
            timeout=60,
        )

    def _NodePublishVolume(self) -> None:
        self._c.node.NodePublishVolume(
            rq.publish(
                self.volume_id, self.staging, self.target, self.publish_context, mount_cap(fs_type=FS)
            ),
            timeout=60,
        )

    def _CreateSnapshot(self) -> None:
        snap = self._c.controller.CreateSnapshot(
            csi_pb2.CreateSnapshotRequest(source_volume_id=self.volume_id, name=f"snap-{self.name}"),
            timeout=60,
        ).snapshot
        self.snapshot_id = snap.snapshot_id

    def _Expand(self) -> None:
        """ControllerExpandVolume, then NodeExpandVolume online, as the resizer and kubelet do."""
        self._c.controller.ControllerExpandVolume(
            csi_pb2.ControllerExpandVolumeRequest(
                volume_id=self.volume_id,
                capacity_range=csi_pb2.CapacityRange(required_bytes=EXPANDED),
                volume_capability=mount_cap(fs_type=FS),
            ),
            timeout=60,
        )
        self._c.node.NodeExpandVolume(
            csi_pb2.NodeExpandVolumeRequest(
                volume_id=self.volume_id,
                volume_path=str(self.target),
                staging_target_path=str(self.staging),
                capacity_range=csi_pb2.CapacityRange(required_bytes=EXPANDED),
                volume_capability=mount_cap(fs_type=FS),
            ),
            timeout=60,
        )

    def _NodeUnpublishVolume(self) -> None:
        self._c.node.NodeUnpublishVolume(
            rq.unpublish(self.volume_id, self.target),
            timeout=60,
        )

    def _NodeUnstageVolume(self) -> None:
        self._c.node.NodeUnstageVolume(
            rq.unstage(self.volume_id, self.staging),
            timeout=60,
        )

    def _ControllerUnpublishVolume(self) -> None:
        self._c.controller.ControllerUnpublishVolume(
            rq.controller_unpublish(self.volume_id, LOCAL), timeout=60
        )

    def _DeleteSnapshot(self) -> None:
        self._c.controller.DeleteSnapshot(
            csi_pb2.DeleteSnapshotRequest(snapshot_id=self.snapshot_id), timeout=60
        )

    def _DeleteVolume(self) -> None:
        self._c.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=self.volume_id), timeout=60)

    # ------------------------------------------------------------------ data

    def after(self, step: str) -> None:
        """What the test itself does between steps: write the data once it is published."""
        if step == "NodePublishVolume" and not self.digest:
            _, self.digest = write_blob(self.target, self.rng)
            self.fs_bytes = _fs_bytes(self.target)
        if step == "ControllerUnpublishVolume":
            left = node_resource(self.driver.emu, self.volume_id, LOCAL)
            if left is not None:
                self.findings.append(f"{left} on {LOCAL} after ControllerUnpublishVolume of {self.volume_id}")
        if step == "Expand":
            grown = _fs_bytes(self.target)
            assert grown > self.fs_bytes, f"the filesystem did not grow: {self.fs_bytes} -> {grown} bytes"

    def data_problem(self, step: str) -> str | None:
        """After a kill in ``step`` and its retry: does the data written before read back intact?"""
        if not self.digest or step not in DATA_STEPS:
            return None
        if os.path.ismount(self.target):
            found = digest_of(self.target / "fault-data.bin")
        elif os.path.ismount(self.staging):
            found = digest_of(self.staging / "fault-data.bin")
        else:
            found = self._digest_from_device()
        return None if found == self.digest else f"after a kill in {step}: data digest {found}"

    def _digest_from_device(self) -> str | None:
        device = self.publish_context.get(keys.DEVICE_PATH, "")
        self.check.mkdir(exist_ok=True)
        mounted = subprocess.run(
            ["mount", "-o", "ro,norecovery", device, str(self.check)], capture_output=True, text=True
        )
        if mounted.returncode != 0:
            return f"unmountable ({mounted.stderr.strip()})"
        try:
            return digest_of(self.check / "fault-data.bin")
        finally:
            subprocess.run(["umount", str(self.check)], check=False, capture_output=True)


def calibrate(base: Path, rng: random.Random, log: FaultLog) -> StepDurations:
    """One uninterrupted life under latency: each step's duration, and proof the checks see no leak."""
    measured = StepDurations()
    emu = new_emulator(base)
    try:
        with scratch_dir("fault-csi-") as work:
            driver = CsiDriverProcess(work, emu)
            driver.start()
            try:
                run_lifecycle(CsiLifecycle(driver, work, rng), STEPS, [], None, emu, measured, log)
            finally:
                driver.stop()
            left = leaks(emu, [work], driver.tmpdir)
            assert left == [], f"an uninterrupted life left {left}"
    finally:
        reset_and_stop([emu])
    return measured
