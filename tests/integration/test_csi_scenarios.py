"""Whole-lifecycle scenarios in the call order of real COs, against the emulator with real mounts.

Kubernetes: the sidecars and kubelet drive provision, attach, stage, publish, expand,
snapshot, restore, then the reverse. Nomad (monolith plugin): one node, several
allocations claiming the same volume read-write and read-only, each usage mode with
its own staging path, and the same secrets on every call.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from csi.generated import csi_pb2
from csi.testing import mount_cap
from tests import csi_requests as rq
from tests.integration.csi_stack import LOCAL, Stack, csi_stack

Mode = csi_pb2.VolumeCapability.AccessMode.Mode
MIB = 1024**2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with csi_stack(tmp_path_factory.mktemp("csi-scenarios"), "csi-scn-") as made:
        yield made


def test_kubernetes_sidecar_order(stack: Stack) -> None:
    ctl, node, ident = stack.csi.controller, stack.csi.node, stack.csi.identity
    kubelet = stack.workdir / "kubelet"

    # provisioner, attacher, resizer, snapshotter start-up; registrar and kubelet
    assert ident.GetPluginInfo(csi_pb2.GetPluginInfoRequest()).name == "linstor.csi.linbit.com"
    ident.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest())
    assert ident.Probe(csi_pb2.ProbeRequest()).ready.value
    ctl.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest())
    info = node.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
    segments = dict(info.accessible_topology.segments)

    # provision (WaitForFirstConsumer: the selected node is preferred)
    pv = f"pvc-{uuid.uuid4()}"
    params = {
        "linstor.csi.linbit.com/placementCount": "2",
        "linstor.csi.linbit.com/mountOpts": "noatime",
        "csi.storage.k8s.io/pvc/name": "data",
        "csi.storage.k8s.io/pvc/namespace": "default",
        "csi.storage.k8s.io/pv/name": pv,
    }
    topology = csi_pb2.TopologyRequirement(
        requisite=[
            csi_pb2.Topology(segments={"linbit.com/hostname": n}) for n in (LOCAL, "node-b", "node-c")
        ],
        preferred=[csi_pb2.Topology(segments=segments)],
    )
    cap = mount_cap(fs_type="xfs")  # xfs grows online without CAP_SYS_RESOURCE
    volume = ctl.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=pv,
            capacity_range={"required_bytes": 320 * MIB},
            volume_capabilities=[cap],
            parameters=params,
            accessibility_requirements=topology,
        )
    ).volume
    vid = volume.volume_id
    assert volume.capacity_bytes == 320 * MIB

    # attach (VolumeAttachment), then kubelet: stage to globalmount, publish to the pod dir
    ctx = dict(
        ctl.ControllerPublishVolume(
            rq.controller_publish(vid, info.node_id, cap, volume_context=volume.volume_context)
        ).publish_context
    )
    globalmount = (
        kubelet / "plugins/kubernetes.io/csi/linstor.csi.linbit.com" / uuid.uuid4().hex / "globalmount"
    )
    globalmount.mkdir(parents=True)
    pod_dir = kubelet / "pods" / str(uuid.uuid4()) / "volumes/kubernetes.io~csi" / pv
    pod_dir.mkdir(parents=True)
    pod_mount = pod_dir / "mount"
    pod_context = {
        **volume.volume_context,
        "csi.storage.k8s.io/pod.name": "app-0",
        "storage.kubernetes.io/csiProvisionerIdentity": "1700000000000-1234-linstor.csi.linbit.com",
    }
    node.NodeStageVolume(rq.stage(vid, globalmount, ctx, cap, volume_context=volume.volume_context))
    node.NodePublishVolume(rq.publish(vid, globalmount, pod_mount, ctx, cap, volume_context=pod_context))
    (pod_mount / "db.txt").write_text("rows")
    assert "noatime" in _mount_options(str(globalmount))

    # online expansion: resizer, then kubelet on the pod path
    grown = ctl.ControllerExpandVolume(
        csi_pb2.ControllerExpandVolumeRequest(volume_id=vid, capacity_range={"required_bytes": 448 * MIB})
    )
    assert grown.capacity_bytes == 448 * MIB and grown.node_expansion_required
    node.NodeExpandVolume(
        csi_pb2.NodeExpandVolumeRequest(
            volume_id=vid,
            volume_path=str(pod_mount),
            staging_target_path=str(globalmount),
            capacity_range={"required_bytes": 448 * MIB},
            volume_capability=cap,
        )
    )
    assert _fs_bytes(str(pod_mount)) > 380 * MIB  # was ~270 MiB usable at 320 MiB

    # snapshot, then the snapshotter polls readiness by id
    os.sync()
    snap = ctl.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(
            source_volume_id=vid,
            name=f"snapshot-{uuid.uuid4()}",
            parameters={"csi.storage.k8s.io/volumesnapshot/name": "nightly"},
        )
    ).snapshot
    listed = ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id=snap.snapshot_id)).entries
    assert listed and listed[0].snapshot.ready_to_use

    # restore into a bigger PVC and read the data back on the same node
    restored_name = f"pvc-{uuid.uuid4()}"
    source = csi_pb2.VolumeContentSource(snapshot={"snapshot_id": snap.snapshot_id})
    restored = ctl.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=restored_name,
            capacity_range={"required_bytes": 512 * MIB},
            volume_capabilities=[cap],
            parameters=params,
            volume_content_source=source,
        )
    ).volume
    assert restored.content_source.snapshot.snapshot_id == snap.snapshot_id
    assert restored.capacity_bytes == 512 * MIB
    rctx = dict(
        ctl.ControllerPublishVolume(rq.controller_publish(restored.volume_id, LOCAL, cap)).publish_context
    )
    rstage = kubelet / "restored-globalmount"
    rstage.mkdir()
    rtarget = kubelet / "restored-pod-mount"
    node.NodeStageVolume(rq.stage(restored.volume_id, rstage, rctx, cap))
    node.NodePublishVolume(rq.publish(restored.volume_id, rstage, rtarget, rctx, cap))
    assert (rtarget / "db.txt").read_text() == "rows"
    assert _fs_bytes(str(rtarget)) > 440 * MIB  # staging grew the restored filesystem

    # pods go away: unpublish, unstage, detach, delete
    for volume_id, target, staging in ((restored.volume_id, rtarget, rstage), (vid, pod_mount, globalmount)):
        node.NodeUnpublishVolume(rq.unpublish(volume_id, target))
        assert not target.exists()
        node.NodeUnstageVolume(rq.unstage(volume_id, staging))
        assert not os.path.ismount(staging)
        ctl.ControllerUnpublishVolume(rq.controller_unpublish(volume_id, LOCAL))
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=restored.volume_id))
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id))
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid))
    remaining = {e.volume.volume_id for e in ctl.ListVolumes(csi_pb2.ListVolumesRequest()).entries}
    assert vid not in remaining and restored.volume_id not in remaining


def test_nomad_monolith_mixed_claims_on_one_node(stack: Stack) -> None:
    ctl, node, ident = stack.csi.controller, stack.csi.node, stack.csi.identity
    secrets = {"token": "nomad-shared-secret"}  # Nomad sends the same map on every call
    base = stack.workdir / "nomad" / "local/csi"

    # fingerprinting
    assert ident.Probe(csi_pb2.ProbeRequest()).ready.value
    assert ident.GetPluginInfo(csi_pb2.GetPluginInfoRequest()).name
    ident.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest())
    node_id = node.NodeGetInfo(csi_pb2.NodeGetInfoRequest()).node_id
    node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest())
    ctl.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest())

    # nomad volume create: the user's name, raw parameters, an empty topology request
    rw_cap = mount_cap(Mode.SINGLE_NODE_WRITER, fs_type="xfs", flags=("noatime",))
    ro_cap = mount_cap(Mode.MULTI_NODE_READER_ONLY, fs_type="xfs", flags=("noatime",))
    volume = ctl.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name="shared data",
            capacity_range={"required_bytes": 320 * MIB, "limit_bytes": 384 * MIB},
            volume_capabilities=[rw_cap, ro_cap],
            parameters={"linstor.csi.linbit.com/placementCount": "1"},
            secrets=secrets,
            accessibility_requirements=csi_pb2.TopologyRequirement(),
        )
    ).volume
    vid = volume.volume_id
    assert 320 * MIB <= volume.capacity_bytes <= 384 * MIB
    # nomad volume register of the same volume validates strictly against what it asks
    validated = ctl.ValidateVolumeCapabilities(
        csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id=vid,
            volume_capabilities=[rw_cap, ro_cap],
            secrets=secrets,
            volume_context=volume.volume_context,
            parameters={"linstor.csi.linbit.com/placementCount": "1"},
        )
    )
    assert list(validated.confirmed.volume_capabilities) == [rw_cap, ro_cap]

    def usage(readonly: bool, cap: csi_pb2.VolumeCapability) -> str:
        mode = Mode.Name(cap.access_mode.mode).lower().replace("_", "-")
        return f"{'ro' if readonly else 'rw'}-file-system-{mode}"

    def claim(alloc: str, cap: csi_pb2.VolumeCapability, readonly: bool) -> tuple[Path, Path]:
        ctx = ctl.ControllerPublishVolume(
            rq.controller_publish(
                vid, node_id, cap, readonly=readonly, volume_context=volume.volume_context, secrets=secrets
            )
        ).publish_context
        staging = base / "staging/default" / vid / usage(readonly, cap)
        staging.mkdir(parents=True, exist_ok=True, mode=0o700)
        target_parent = base / "per-alloc" / alloc / vid
        target_parent.mkdir(parents=True)
        target = target_parent / usage(readonly, cap)
        node.NodeStageVolume(
            rq.stage(vid, staging, ctx, cap, secrets=secrets, volume_context=volume.volume_context)
        )
        node.NodePublishVolume(
            rq.publish(
                vid,
                staging,
                target,
                ctx,
                cap,
                readonly=readonly,
                secrets=secrets,
                volume_context=volume.volume_context,
            )
        )
        return staging, target

    def release(staging: Path, target: Path, unstage: bool) -> None:
        node.NodeUnpublishVolume(rq.unpublish(vid, target))
        if target.exists():
            target.rmdir()  # Nomad removes what is left itself
        if unstage:
            node.NodeUnstageVolume(rq.unstage(vid, staging))

    rw_staging, writer_a = claim("alloc-a", rw_cap, readonly=False)
    ro_staging, reader_b = claim("alloc-b", ro_cap, readonly=True)
    same_staging, writer_c = claim("alloc-c", rw_cap, readonly=False)  # re-stages the rw path: idempotent
    assert same_staging == rw_staging and rw_staging != ro_staging
    assert os.path.ismount(rw_staging) and os.path.ismount(ro_staging)

    (writer_a / "from-a").write_text("a")
    (writer_c / "from-c").write_text("c")
    os.sync()
    assert (writer_c / "from-a").read_text() == "a"
    with pytest.raises(OSError) as info:
        (reader_b / "from-b").write_text("b")
    assert info.value.errno == errno.EROFS

    # the reader stops: its staging path goes, the writers keep working
    release(ro_staging, reader_b, unstage=True)
    assert not os.path.ismount(ro_staging) and os.path.ismount(rw_staging)
    (writer_a / "after-b").write_text("still writable")

    # nomad volume create again with a bigger capacity_min: controller, then each claim's node expand
    grown = ctl.ControllerExpandVolume(
        csi_pb2.ControllerExpandVolumeRequest(
            volume_id=vid,
            capacity_range={"required_bytes": 512 * MIB},
            volume_capability=rw_cap,
            secrets=secrets,
        )
    )
    assert grown.node_expansion_required
    for target in (writer_a, writer_c):
        node.NodeExpandVolume(
            csi_pb2.NodeExpandVolumeRequest(
                volume_id=vid,
                volume_path=str(target),
                staging_target_path=str(rw_staging),
                capacity_range={"required_bytes": 512 * MIB},
                volume_capability=rw_cap,
                secrets=secrets,
            )
        )
    assert _fs_bytes(str(writer_a)) > 400 * MIB

    # nomad volume snapshot create / list / delete
    snap = ctl.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(source_volume_id=vid, name="before-upgrade", secrets=secrets)
    ).snapshot
    page = ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(max_entries=30, secrets=secrets))
    assert snap.snapshot_id in {e.snapshot.snapshot_id for e in page.entries}
    statuses = ctl.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=30)).entries
    assert node_id in next(e.status.published_node_ids for e in statuses if e.volume.volume_id == vid)
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id, secrets=secrets))

    # the writers stop; the last claim on the node unstages and the server detaches
    release(rw_staging, writer_a, unstage=False)
    assert (writer_c / "from-a").read_text() == "a"
    release(rw_staging, writer_c, unstage=True)
    assert not os.path.ismount(rw_staging)
    ctl.ControllerUnpublishVolume(rq.controller_unpublish(vid, node_id, secrets=secrets))
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid, secrets=secrets))
    assert vid not in {e.volume.volume_id for e in ctl.ListVolumes(csi_pb2.ListVolumesRequest()).entries}


def _mount_options(path: str) -> set[str]:
    real = os.path.realpath(path)
    options: set[str] = set()
    with open("/proc/self/mounts") as fh:
        for line in fh:
            fields = line.split()
            if fields[1] == real:
                options = set(fields[3].split(","))
        return options


def _fs_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize
