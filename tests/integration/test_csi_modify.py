"""MODIFY_VOLUME and VolumeAttributesClass, against the emulator with real mounts.

ControllerModifyVolume and the ``mutable_parameters`` of CreateVolume and
ValidateVolumeCapabilities, per the CSI v1.12 spec: success, idempotency and every error
code the spec names (INVALID_ARGUMENT with nothing applied, NOT_FOUND), plus the codes a
replica change can meet (FAILED_PRECONDITION, RESOURCE_EXHAUSTED). The replica count goes
up and down under a mounted filesystem whose data must survive; a VolumeAttributesClass
flow creates with mutable parameters, modifies and reads back; IO limits reach the
publish context. Needs root and loop devices (skips on a developer machine, fails in CI).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests

from csi.generated import csi_pb2
from csi.testing import block_cap, mount_cap
from plugin import node_qos
from testkit.waiting import wait_until
from tests import csi_requests as rq
from tests.conftest import require
from tests.integration.csi_stack import LOCAL, Stack, csi_stack, stage_paths

MIB = 1024**2
NS = "linstor.csi.linbit.com/"
RATE = "DrbdOptions/PeerDevice/c-max-rate"
DISKLESS = {"DISKLESS", "DRBD_DISKLESS"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with csi_stack(tmp_path_factory.mktemp("csi-modify"), "csi-mod-") as made:
        yield made


@pytest.fixture
def paths(stack: Stack) -> Iterator[tuple[str, str]]:
    with stage_paths(stack) as made:
        yield made


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.details(), "every error carries a message"
    return info.value.code(), info.value.details()


def create(
    stack: Stack,
    parameters: dict[str, str] | None = None,
    mutable: dict[str, str] | None = None,
    name: str | None = None,
    cap: csi_pb2.VolumeCapability | None = None,
) -> csi_pb2.Volume:
    request = csi_pb2.CreateVolumeRequest(
        name=name or f"pvc-{uuid.uuid4()}",
        capacity_range=csi_pb2.CapacityRange(required_bytes=64 * MIB),
        volume_capabilities=[cap or mount_cap()],
        parameters=parameters or {},
        mutable_parameters=mutable or {},
    )
    return stack.csi.controller.CreateVolume(request).volume


def modify(stack: Stack, volume_id: str, mutable: dict[str, str]) -> None:
    stack.csi.controller.ControllerModifyVolume(
        csi_pb2.ControllerModifyVolumeRequest(volume_id=volume_id, mutable_parameters=mutable)
    )


def delete(stack: Stack, volume_id: str) -> None:
    """DeleteVolume; right after an unmount LINSTOR may report the device in use a moment longer."""

    def deleted() -> bool:
        try:
            stack.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "in use" in (exc.details() or ""):
                return False
            raise
        return True

    wait_until(deleted, what=f"deleting volume {volume_id} once it is unmounted")


def linstor(stack: Stack, path: str) -> Any:
    answer = requests.get(f"{stack.emulator.url}{path}", timeout=10)
    answer.raise_for_status()
    return answer.json()


def resources(stack: Stack, volume_id: str) -> list[dict[str, Any]]:
    return linstor(stack, f"/v1/resource-definitions/{volume_id}/resources")


def diskful(stack: Stack, volume_id: str) -> list[str]:
    return sorted(
        r["node_name"] for r in resources(stack, volume_id) if not DISKLESS & set(r.get("flags") or ())
    )


def rd_props(stack: Stack, volume_id: str) -> dict[str, str]:
    return linstor(stack, f"/v1/resource-definitions/{volume_id}").get("props") or {}


def set_in_use(stack: Stack, volume_id: str, node: str, value: bool | None) -> None:
    answer = requests.post(
        f"{stack.emulator.url}/_emu/resources/{volume_id}/{node}/in_use", json={"in_use": value}, timeout=10
    )
    answer.raise_for_status()


def publish(stack: Stack, volume_id: str, node: str = LOCAL) -> dict[str, str]:
    answer = stack.csi.controller.ControllerPublishVolume(rq.controller_publish(volume_id, node, mount_cap()))
    return dict(answer.publish_context)


def unpublish(stack: Stack, volume_id: str, node: str = LOCAL) -> None:
    stack.csi.controller.ControllerUnpublishVolume(rq.controller_unpublish(volume_id, node))


def mount(
    stack: Stack,
    volume_id: str,
    staging: str,
    target: str,
    context: dict[str, str],
    volume_context: dict[str, str] | None = None,
) -> None:
    stack.csi.node.NodeStageVolume(rq.stage(volume_id, staging, context, mount_cap()))
    stack.csi.node.NodePublishVolume(
        rq.publish(volume_id, staging, target, context, mount_cap(), volume_context=volume_context or {})
    )


def unmount(stack: Stack, volume_id: str, staging: str, target: str) -> None:
    stack.csi.node.NodeUnpublishVolume(rq.unpublish(volume_id, target))
    stack.csi.node.NodeUnstageVolume(rq.unstage(volume_id, staging))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- capability


def test_modify_volume_is_advertised(stack: Stack) -> None:
    caps = stack.csi.controller.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest())
    types = {c.rpc.type for c in caps.capabilities}
    assert csi_pb2.ControllerServiceCapability.RPC.MODIFY_VOLUME in types


# ---------------------------------------------------------------- replica count, data intact


def test_replica_count_up_and_down_keeps_the_data(stack: Stack, paths: tuple[str, str]) -> None:
    staging, target = paths
    volume = create(stack, {NS + "placementCount": "3"})
    vid = volume.volume_id
    assert diskful(stack, vid) == sorted([LOCAL, "node-b", "node-c"])
    context = publish(stack, vid)
    mount(stack, vid, staging, target, context)
    data = Path(target, "payload.bin")
    data.write_bytes(os.urandom(3 * MIB))
    os.sync()
    before = digest(data)

    modify(stack, vid, {NS + "placementCount": "1"})
    assert diskful(stack, vid) == [LOCAL]  # the published replica stays, the others go
    assert digest(data) == before

    modify(stack, vid, {NS + "placementCount": "1"})  # a repeat changes nothing
    assert diskful(stack, vid) == [LOCAL]

    modify(stack, vid, {"placementCount": "3"})  # bare spelling, as in a StorageClass
    assert diskful(stack, vid) == sorted([LOCAL, "node-b", "node-c"])
    unchanged = resources(stack, vid)
    modify(stack, vid, {NS + "autoPlace": "3"})  # the alias; still a no-op
    assert resources(stack, vid) == unchanged

    modify(stack, vid, {NS + "placementCount": "2"})
    assert diskful(stack, vid) == sorted([LOCAL, "node-b"])  # the last in name order went

    # the data is on the remaining replicas: mount it afresh and read it back
    unmount(stack, vid, staging, target)
    mount(stack, vid, staging, target, context)
    assert digest(Path(target, "payload.bin")) == before
    unmount(stack, vid, staging, target)
    unpublish(stack, vid)
    delete(stack, vid)


def test_a_diskless_attachment_gets_a_disk_when_replicas_are_added(
    stack: Stack, paths: tuple[str, str]
) -> None:
    """As LINSTOR's autoplace does: a node with a diskless resource may get the new replica."""
    staging, target = paths
    volume = create(stack, {NS + "nodeList": "node-b"})
    vid = volume.volume_id
    context = publish(stack, vid)  # LOCAL has no replica: attached diskless
    assert diskful(stack, vid) == ["node-b"]
    mount(stack, vid, staging, target, context)
    Path(target, "note").write_text("kept")
    modify(stack, vid, {NS + "placementCount": "3"})
    assert diskful(stack, vid) == sorted([LOCAL, "node-b", "node-c"])
    modify(stack, vid, {NS + "placementCount": "1"})
    assert diskful(stack, vid) == [LOCAL]  # the published one stays
    assert Path(target, "note").read_text() == "kept"
    unmount(stack, vid, staging, target)
    unpublish(stack, vid)
    assert diskful(stack, vid) == [LOCAL]  # unpublishing never removes a replica with data
    delete(stack, vid)


def test_block_volume_replica_count_keeps_the_data(stack: Stack, paths: tuple[str, str]) -> None:
    staging, target = paths
    cap = block_cap()
    volume = create(stack, {NS + "placementCount": "2", NS + "nodeList": f"{LOCAL} node-b"}, cap=cap)
    vid = volume.volume_id
    answer = stack.csi.controller.ControllerPublishVolume(rq.controller_publish(vid, LOCAL, cap))
    context = dict(answer.publish_context)
    stack.csi.node.NodeStageVolume(rq.stage(vid, staging, context, cap))
    request = rq.publish(vid, staging, target, context, cap)
    stack.csi.node.NodePublishVolume(request)
    payload = os.urandom(MIB)
    with open(target, "r+b") as device:
        device.write(payload)
        device.flush()
        os.fsync(device.fileno())
    modify(stack, vid, {NS + "placementCount": "3"})
    assert diskful(stack, vid) == sorted([LOCAL, "node-b", "node-c"])
    modify(stack, vid, {NS + "placementCount": "1"})
    assert diskful(stack, vid) == [LOCAL]
    with open(target, "rb") as device:
        assert device.read(MIB) == payload
    stack.csi.node.NodeUnpublishVolume(rq.unpublish(vid, target))
    stack.csi.node.NodeUnstageVolume(rq.unstage(vid, staging))
    unpublish(stack, vid)
    delete(stack, vid)


def test_replicas_in_use_or_published_are_never_removed(stack: Stack) -> None:
    volume = create(stack, {NS + "placementCount": "2", NS + "nodeList": f"{LOCAL} node-b"})
    vid = volume.volume_id
    publish(stack, vid, LOCAL)
    set_in_use(stack, vid, "node-b", True)
    try:
        code, message = code_of(lambda: modify(stack, vid, {NS + "placementCount": "1", RATE: "102400"}))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert LOCAL in message and "node-b" in message
        assert diskful(stack, vid) == sorted([LOCAL, "node-b"])
        assert RATE not in rd_props(stack, vid)  # refused before anything changed
    finally:
        set_in_use(stack, vid, "node-b", None)
    modify(stack, vid, {NS + "placementCount": "1"})
    assert diskful(stack, vid) == [LOCAL]
    unpublish(stack, vid)
    delete(stack, vid)


def test_more_replicas_than_nodes_is_resource_exhausted_and_puts_properties_back(stack: Stack) -> None:
    volume = create(stack, {NS + "placementCount": "1"})
    vid = volume.volume_id
    before = diskful(stack, vid)
    code, message = code_of(lambda: modify(stack, vid, {NS + "placementCount": "4", RATE: "102400"}))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "replica" in message
    assert diskful(stack, vid) == before
    assert RATE not in rd_props(stack, vid)
    delete(stack, vid)


# ---------------------------------------------------------------- properties and IO limits


def test_properties_and_io_limits_are_set_changed_and_removed(stack: Stack) -> None:
    volume = create(stack)
    vid = volume.volume_id
    prop = "property.linstor.csi.linbit.com/DrbdOptions/Net/max-buffers"
    modify(
        stack,
        vid,
        {RATE: "256000", prop: "8000", "qos.linbit.com/rbps": "100Mi", "qos.linbit.com/wiops": "500"},
    )
    props = rd_props(stack, vid)
    assert props[RATE] == "256000"
    assert props["DrbdOptions/Net/max-buffers"] == "8000"
    assert props["Aux/qos.linbit.com/rbps"] == str(100 * MIB)
    assert props["Aux/qos.linbit.com/wiops"] == "500"
    modify(stack, vid, {RATE: "256000", "qos.linbit.com/rbps": "104857600"})  # the same again: a no-op
    assert rd_props(stack, vid) == props
    modify(stack, vid, {RATE: "", "qos.linbit.com/rbps": "0"})  # empty / zero: removed, unlimited
    after = rd_props(stack, vid)
    assert RATE not in after and "Aux/qos.linbit.com/rbps" not in after
    assert after["Aux/qos.linbit.com/wiops"] == "500"  # keys not named stay as they are
    delete(stack, vid)


def test_io_limits_reach_the_publish_context(stack: Stack) -> None:
    volume = create(stack, {"qos.linbit.com/rbps": "40Mi", "qos.linbit.com/riops": "400"})
    vid = volume.volume_id
    context = publish(stack, vid)
    assert context["qos.linbit.com/device"] == context[NS + "device-path"]
    assert context["qos.linbit.com/rbps"] == str(40 * MIB)
    assert context["qos.linbit.com/riops"] == "400"
    assert "qos.linbit.com/wbps" not in context
    unpublish(stack, vid)
    modify(stack, vid, {"qos.linbit.com/rbps": "0", "qos.linbit.com/riops": "0"})
    plain = publish(stack, vid)
    assert not any(key.startswith("qos.linbit.com/") for key in plain)  # no limits: no device key either
    unpublish(stack, vid)
    delete(stack, vid)


@contextmanager
def pod_cgroup(pod_uid: str) -> Iterator[tuple[str, Path]]:
    """A private cgroup shaped like kubelet's pod cgroup: (root for node_qos, pod directory).

    cgroup v1 blkio (this host) or cgroup v2 with the io controller; removed afterwards.
    """
    tag = f"csi-qos-test-{uuid.uuid4().hex[:8]}"
    blkio = Path("/sys/fs/cgroup/blkio")
    unified = Path("/sys/fs/cgroup")
    made: list[Path] = []
    with tempfile.TemporaryDirectory() as fake_root:
        if (blkio / "blkio.throttle.read_bps_device").exists():
            private = blkio / tag
            Path(fake_root, "blkio").symlink_to(private)
            root = fake_root
        else:
            controllers = (
                (unified / "cgroup.controllers").read_text().split()
                if (unified / "cgroup.controllers").exists()
                else []
            )
            require(
                "io" in controllers, "the host has neither cgroup v1 blkio nor the cgroup v2 io controller"
            )
            private = unified / tag
            root = str(private)
        try:
            for part in (private, private / "kubepods", private / "kubepods" / "besteffort"):
                part.mkdir()
                made.append(part)
                if root == str(private):
                    (part / "cgroup.subtree_control").write_text("+io\n")
            pod = private / "kubepods" / "besteffort" / f"pod{pod_uid}"
            pod.mkdir()
            made.append(pod)
            yield root, pod
        finally:
            for part in reversed(made):
                part.rmdir()


def test_io_limits_reach_the_pods_cgroup_on_the_node(
    stack: Stack, paths: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    staging, target = paths
    volume = create(stack, {"qos.linbit.com/rbps": "40Mi", "qos.linbit.com/wiops": "300"})
    vid = volume.volume_id
    context = publish(stack, vid)
    info = os.stat(context[NS + "device-path"])
    numbers = f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"
    pod_uid = str(uuid.uuid4())
    with pod_cgroup(pod_uid) as (root, pod):
        monkeypatch.setattr(node_qos, "CGROUP_ROOT", root)
        mount(stack, vid, staging, target, context, {node_qos.POD_UID_KEY: pod_uid})
        if (pod / "io.max").exists():
            line = next(x for x in (pod / "io.max").read_text().splitlines() if x.startswith(numbers + " "))
            assert f"rbps={40 * MIB}" in line and "wiops=300" in line
        else:  # the kernel read the rules back: they are in force for the pod's processes
            assert (pod / "blkio.throttle.read_bps_device").read_text().split() == [numbers, str(40 * MIB)]
            assert (pod / "blkio.throttle.write_iops_device").read_text().split() == [numbers, "300"]
            assert (pod / "blkio.throttle.write_bps_device").read_text().strip() == ""  # no limit, no rule
        unmount(stack, vid, staging, target)

    # A class change while attached: the next pod gets the new limits, the attachment stays as it was
    modify(stack, vid, {"qos.linbit.com/rbps": "80Mi", "qos.linbit.com/wiops": "0"})
    next_pod = str(uuid.uuid4())
    with pod_cgroup(next_pod) as (root, pod):
        monkeypatch.setattr(node_qos, "CGROUP_ROOT", root)
        mount(stack, vid, staging, target, context, {node_qos.POD_UID_KEY: next_pod})  # the old context
        if (pod / "io.max").exists():
            line = next(x for x in (pod / "io.max").read_text().splitlines() if x.startswith(numbers + " "))
            assert f"rbps={80 * MIB}" in line and "wiops=max" in line
        else:
            assert (pod / "blkio.throttle.read_bps_device").read_text().split() == [numbers, str(80 * MIB)]
            assert (pod / "blkio.throttle.write_iops_device").read_text().strip() == ""
        unmount(stack, vid, staging, target)
    unpublish(stack, vid)
    delete(stack, vid)


# ---------------------------------------------------------------- errors the spec names


@pytest.mark.parametrize(
    "mutable",
    [
        {"iops": "100"},
        {NS + "storagePool": "pool-a"},
        {NS + "placementCount": "zero"},
        {NS + "placementCount": "17"},
        {"qos.linbit.com/rbps": "-5"},
        {"qos.linbit.com/device": "/dev/sda"},
        {"csi.storage.k8s.io/fstype": "xfs"},
        {"property.linstor.csi.linbit.com/Aux/volume-plugin/name": "x"},
        {NS + "placementCount": "2", NS + "autoPlace": "3"},
    ],
)
def test_bad_mutable_parameters_are_invalid_argument_and_change_nothing(
    stack: Stack, mutable: dict[str, str]
) -> None:
    volume = create(stack)
    vid = volume.volume_id
    before_props, before_replicas = rd_props(stack, vid), diskful(stack, vid)
    code, message = code_of(lambda: modify(stack, vid, {**mutable, RATE: "10240"}))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert any(key in message for key in mutable), message  # the sentence names the key
    assert rd_props(stack, vid) == before_props and diskful(stack, vid) == before_replicas
    delete(stack, vid)


def test_a_property_linstor_refuses_is_invalid_argument_and_changes_nothing(stack: Stack) -> None:
    volume = create(stack)
    vid = volume.volume_id
    before = rd_props(stack, vid)
    bad = {"property.linstor.csi.linbit.com/NoSuchLinstorKey": "1", "qos.linbit.com/wbps": "1M"}
    code, _ = code_of(lambda: modify(stack, vid, bad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert rd_props(stack, vid) == before
    delete(stack, vid)


def test_missing_fields_and_unknown_volume(stack: Stack) -> None:
    ctl = stack.csi.controller
    no_id = csi_pb2.ControllerModifyVolumeRequest(mutable_parameters={RATE: "1024"})
    assert code_of(lambda: ctl.ControllerModifyVolume(no_id))[0] == grpc.StatusCode.INVALID_ARGUMENT
    volume = create(stack)
    no_params = csi_pb2.ControllerModifyVolumeRequest(volume_id=volume.volume_id)
    assert code_of(lambda: ctl.ControllerModifyVolume(no_params))[0] == grpc.StatusCode.INVALID_ARGUMENT
    delete(stack, volume.volume_id)
    for missing in ("pvc-does-not-exist", "not a valid id!"):
        request = csi_pb2.ControllerModifyVolumeRequest(volume_id=missing, mutable_parameters={RATE: "1024"})
        assert code_of(lambda r=request: ctl.ControllerModifyVolume(r))[0] == grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------- VolumeAttributesClass flow


def test_volume_attributes_class_flow(stack: Stack) -> None:
    """A PVC with a VAC: created with its parameters, moved to another class, read back."""
    silver = {NS + "placementCount": "2", RATE: "102400", "qos.linbit.com/wbps": "20Mi"}
    gold = {NS + "placementCount": "3", RATE: "409600", "qos.linbit.com/wbps": "80Mi"}
    name = f"pvc-{uuid.uuid4()}"
    volume = create(stack, {NS + "placementCount": "1"}, mutable=silver, name=name)
    vid = volume.volume_id
    assert len(diskful(stack, vid)) == 2  # the class wins over the StorageClass
    props = rd_props(stack, vid)
    assert props[RATE] == "102400" and props["Aux/qos.linbit.com/wbps"] == str(20 * MIB)

    # the provisioner retries CreateVolume with the same class: the same volume, nothing new
    again = create(stack, {NS + "placementCount": "1"}, mutable=silver, name=name)
    assert again.volume_id == vid and again.capacity_bytes == volume.capacity_bytes
    assert len(diskful(stack, vid)) == 2

    confirm = stack.csi.controller.ValidateVolumeCapabilities(
        csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id=vid, volume_capabilities=[mount_cap()], mutable_parameters=gold
        )
    )
    assert dict(confirm.confirmed.mutable_parameters) == gold

    modify(stack, vid, gold)
    got = stack.csi.controller.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=vid))
    assert got.volume.volume_id == vid and got.volume.capacity_bytes == volume.capacity_bytes
    assert len(diskful(stack, vid)) == 3
    props = rd_props(stack, vid)
    assert props[RATE] == "409600" and props["Aux/qos.linbit.com/wbps"] == str(80 * MIB)
    context = publish(stack, vid)
    assert context["qos.linbit.com/wbps"] == str(80 * MIB)
    unpublish(stack, vid)
    delete(stack, vid)


def test_create_with_bad_mutable_parameters_makes_nothing(stack: Stack) -> None:
    name = f"pvc-{uuid.uuid4()}"
    code, message = code_of(lambda: create(stack, mutable={NS + "layerList": "drbd storage"}, name=name))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "layerList" in message
    code, _ = code_of(lambda: create(stack, mutable={NS + "placementCount": "4"}, name=name))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED  # only three nodes: made, refused, removed
    names = {rd["name"].lower() for rd in linstor(stack, "/v1/resource-definitions")}
    assert name.lower() not in names


def test_validate_reports_bad_mutable_parameters(stack: Stack) -> None:
    volume = create(stack, cap=block_cap())
    answer = stack.csi.controller.ValidateVolumeCapabilities(
        csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id=volume.volume_id, volume_capabilities=[block_cap()], mutable_parameters={"iops": "1"}
        )
    )
    assert not answer.HasField("confirmed")
    assert '"iops"' in answer.message
    delete(stack, volume.volume_id)
