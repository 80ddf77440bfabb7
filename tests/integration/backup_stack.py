"""Two emulated clusters, an S3 server and a CSI driver on each cluster, for the backup tests.

Cluster A is the usual CSI stack (:mod:`tests.integration.csi_stack`); cluster B is a second
emulator with its own driver, the target of LINSTOR-to-LINSTOR backups. The S3 server is
moto in server mode, a separate process. Data is written and read through the CSI front end:
publish, stage, publish to a path, a file, and the reverse.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import grpc
import requests

from csi.generated import csi_pb2
from csi.testing import mount_cap
from testkit.csi_cluster import SNAPSHOT_PREFIX, Cluster, cluster_with_driver, s3_class_parameters
from testkit.emulator import EmulatorProcess
from testkit.s3server import ACCESS_KEY, SECRET_KEY, S3Server
from testkit.waiting import wait_until
from tests import csi_requests as rq
from tests.integration.csi_stack import LOCAL

MIB = 1024**2
SECRETS = {"access-key": ACCESS_KEY, "secret-key": SECRET_KEY}
CAP = mount_cap(fs_type="ext4")


#: One cluster of a backup test: cluster A (the CSI stack) or cluster B.
Side = Cluster


@contextmanager
def second_cluster(base: Path) -> Iterator[Side]:
    """Cluster B: an emulator with the local node only, and a driver on it."""
    with cluster_with_driver(base, LOCAL) as cluster:
        yield cluster


def cluster_id(emulator: EmulatorProcess) -> str:
    answer = requests.get(f"{emulator.url}/v1/controller/properties", timeout=10)
    answer.raise_for_status()
    return str(answer.json()["Cluster/LocalID"])


def s3_class(endpoint: str, remote: str, bucket: str, **extra: str) -> dict[str, str]:
    # what the snapshotter adds with --extra-create-metadata
    metadata = {
        "csi.storage.k8s.io/volumesnapshot/name": "snap",
        "csi.storage.k8s.io/volumesnapshot/namespace": "default",
    }
    return {**s3_class_parameters(endpoint, remote, bucket, **extra), **metadata}


def linstor_class(target: EmulatorProcess, remote: str, **extra: str) -> dict[str, str]:
    params = {
        f"{SNAPSHOT_PREFIX}type": "Linstor",
        f"{SNAPSHOT_PREFIX}remote-name": remote,
        f"{SNAPSHOT_PREFIX}linstor-target-url": target.url,
        f"{SNAPSHOT_PREFIX}linstor-target-cluster-id": cluster_id(target),
        f"{SNAPSHOT_PREFIX}linstor-target-storage-pool": "DfltStorPool",
    }
    params.update({f"{SNAPSHOT_PREFIX}{k}": v for k, v in extra.items()})
    return params


def create(side: Side, size: int = 64 * MIB, snapshot_id: str = "", name: str = "") -> csi_pb2.Volume:
    request = csi_pb2.CreateVolumeRequest(
        name=name or f"pvc-{uuid.uuid4()}",
        volume_capabilities=[CAP],
        parameters={"linstor.csi.linbit.com/placementCount": "1"},
    )
    if size:
        request.capacity_range.required_bytes = size
    if snapshot_id:
        request.volume_content_source.snapshot.snapshot_id = snapshot_id
    return side.ctl.CreateVolume(request).volume


def delete(side: Side, volume_id: str) -> None:
    side.ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id))


@contextmanager
def mounted(side: Side, volume_id: str) -> Iterator[Path]:
    """The volume mounted as kubelet would: attach, stage, publish; undone afterwards."""
    node_id = side.csi.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest()).node_id
    ctx = side.ctl.ControllerPublishVolume(rq.controller_publish(volume_id, node_id, CAP)).publish_context
    stage = side.workdir / "stage" / volume_id
    target = side.workdir / "pods" / volume_id / "mount"
    stage.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    node = side.csi.node
    node.NodeStageVolume(rq.stage(volume_id, stage, ctx, CAP))
    node.NodePublishVolume(rq.publish(volume_id, stage, target, ctx, CAP))
    try:
        yield target
    finally:
        node.NodeUnpublishVolume(rq.unpublish(volume_id, target))
        node.NodeUnstageVolume(rq.unstage(volume_id, stage))
        side.ctl.ControllerUnpublishVolume(rq.controller_unpublish(volume_id, node_id))


def append(side: Side, volume_id: str, data: bytes) -> None:
    with mounted(side, volume_id) as path, open(path / "data.bin", "ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def read(side: Side, volume_id: str) -> bytes:
    with mounted(side, volume_id) as path:
        return (path / "data.bin").read_bytes()


def snapshot(
    side: Side, volume_id: str, name: str, params: dict[str, str], secrets: dict[str, str] | None = None
) -> csi_pb2.Snapshot:
    request = csi_pb2.CreateSnapshotRequest(
        source_volume_id=volume_id,
        name=name,
        parameters=params,
        secrets=SECRETS if secrets is None else secrets,
    )
    return side.ctl.CreateSnapshot(request).snapshot


def until_ready(
    side: Side,
    volume_id: str,
    name: str,
    params: dict[str, str],
    timeout: float = 120.0,
    between: Callable[[], object] | None = None,
) -> csi_pb2.Snapshot:
    """Call CreateSnapshot again and again, as the snapshotter does, until it is ready to use."""

    def ready() -> csi_pb2.Snapshot | None:
        made = snapshot(side, volume_id, name, params)
        if made.ready_to_use:
            return made
        if between is not None:
            between()
        return None

    return wait_until(ready, timeout=timeout, interval=0.2, what=f"snapshot {name} ready to use")


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded")


def backups_in(emulator: EmulatorProcess, remote: str, resource: str = "") -> dict[str, dict]:
    """The remote's backup list as the controller reports it (``linstor`` part)."""
    params = {"rsc_name": resource} if resource else None
    answer = requests.get(f"{emulator.url}/v1/remotes/{remote}/backups", params=params, timeout=30)
    answer.raise_for_status()
    return answer.json().get("linstor") or {}


def s3_server(base: Path) -> AbstractContextManager[S3Server]:
    return S3Server(log_dir=base)
