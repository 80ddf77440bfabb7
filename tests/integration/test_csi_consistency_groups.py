"""Consistency groups (``--enable-consistency-groups``) against the emulator and a fake Kubernetes API.

The driver reads each PVC's label through the official Kubernetes client from a stand-in
API server (tests/kube_api.py: HTTPS, a service account token, the PVC GET), so the
in-cluster configuration path is the real one. Members become volume numbers of one LINSTOR
resource; their ids, snapshot ids and restores carry the number; data written through
each member comes back from a group snapshot, member by member. Needs root (real mounts).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from csi.generated import csi_pb2
from csi.kube import PvcGroups, in_cluster_configuration
from csi.testing import block_cap, mount_cap
from plugin.config import load_config
from plugin.linstor.client import LinstorClient
from plugin.volumes.consistency_group_service import ConsistencyGroupService
from plugin.volumes.consistency_groups import GROUP_LABEL, group_resource_name
from plugin.volumes.members import MEMBER_NAME
from tests.blockio import read_at, write_at
from tests.integration.csi_stack import LOCAL, Stack, csi_stack, rest_calls, scratch_dir
from tests.integration.test_csi_group_snapshots import Attached
from tests.kube_api import KubeApi, kube_api

MIB = 1024**2
Code = grpc.StatusCode
NAMESPACE = "apps"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApi]:
    with kube_api(tmp_path_factory.mktemp("kube")) as made:
        yield made


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, api: KubeApi) -> Iterator[Stack]:
    groups = PvcGroups(in_cluster_configuration(str(api.service_account_dir), api.environ))
    with csi_stack(tmp_path_factory.mktemp("csi-cg"), "csi-cg-", group_of=groups) as made:
        yield made


@pytest.fixture
def workdir(stack: Stack) -> Iterator[Path]:
    with scratch_dir(stack) as made:
        yield made


@pytest.fixture
def linstor(stack: Stack) -> Iterator[LinstorClient]:
    config = load_config({"controllers": stack.emulator.url, "node_name": LOCAL}, env={}, config_file=None)
    client = LinstorClient(config)
    yield client
    client.close()


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.details(), "every error carries a message"
    return info.value.code()


def claim(
    stack: Stack,
    api: KubeApi,
    group: str | None,
    cap: csi_pb2.VolumeCapability | None = None,
    size: int = 32 * MIB,
    snapshot: str = "",
    parameters: dict[str, str] | None = None,
    pvc: str = "",
) -> csi_pb2.Volume:
    """CreateVolume as the provisioner sends it for a PVC (``--extra-create-metadata``)."""
    pvc = pvc or f"data-{uuid.uuid4().hex[:8]}"
    api.add_pvc(NAMESPACE, pvc, {GROUP_LABEL: group} if group else {})
    request = csi_pb2.CreateVolumeRequest(
        name=f"pvc-{uuid.uuid4()}",
        capacity_range=csi_pb2.CapacityRange(required_bytes=size),
        volume_capabilities=[cap or mount_cap()],
        parameters={
            "csi.storage.k8s.io/pvc/name": pvc,
            "csi.storage.k8s.io/pvc/namespace": NAMESPACE,
            "csi.storage.k8s.io/pv/name": "pv",
            **(parameters or {}),
        },
    )
    if snapshot:
        request.volume_content_source.snapshot.snapshot_id = snapshot
    return stack.csi.controller.CreateVolume(request).volume


def delete(stack: Stack, *volume_ids: str) -> None:
    for vid in volume_ids:
        stack.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid))


def test_members_are_volume_numbers_of_one_resource(
    stack: Stack, api: KubeApi, linstor: LinstorClient
) -> None:
    group = f"db-{uuid.uuid4().hex[:6]}"
    resource = group_resource_name(NAMESPACE, group)
    first = claim(stack, api, group)
    second = claim(stack, api, group, cap=block_cap())
    plain = claim(stack, api, None)
    assert first.volume_id == resource and second.volume_id == f"{resource}/1"
    assert not plain.volume_id.startswith("cg-")
    vds = linstor.list_volume_definitions(resource)
    assert sorted(vd.number for vd in vds) == [0, 1]
    assert all(vd.props[MEMBER_NAME].startswith("pvc-") for vd in vds)
    assert api.requests[-1].startswith(f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/data-")

    ctl = stack.csi.controller
    got = ctl.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=second.volume_id)).volume
    assert got.volume_id == second.volume_id and got.capacity_bytes == 32 * MIB
    listed = {e.volume.volume_id for e in ctl.ListVolumes(csi_pb2.ListVolumesRequest()).entries}
    assert {first.volume_id, second.volume_id, plain.volume_id} <= listed
    assert resource + "/0" not in listed
    # read one definition and one resource per REST call: the same members, with their replicas
    settings = {"controllers": stack.emulator.url, "node_name": LOCAL, "list_page_size": 1}
    config = load_config(settings, env={}, config_file=None)
    one_by_one = ConsistencyGroupService(LinstorClient(config), config).list_volumes(with_replicas=True)
    assert {v.id for v in one_by_one} == listed and len(one_by_one) == len(listed)
    assert all(v.replicas for v in one_by_one if v.id in (first.volume_id, second.volume_id))

    grown = ctl.ControllerExpandVolume(
        csi_pb2.ControllerExpandVolumeRequest(
            volume_id=second.volume_id, capacity_range=csi_pb2.CapacityRange(required_bytes=48 * MIB)
        )
    )
    assert grown.capacity_bytes == 48 * MIB
    assert linstor.get_volume_definition(resource, 1).size_kib == 48 * 1024
    assert linstor.get_volume_definition(resource, 0).size_kib == 32 * 1024

    # One member goes as its volume number; the last takes the resource with it.
    delete(stack, second.volume_id)
    assert [vd.number for vd in linstor.list_volume_definitions(resource)] == [0]
    delete(stack, second.volume_id)  # again: OK
    delete(stack, first.volume_id, plain.volume_id)
    assert not linstor.list_resource_definitions([resource])


def counted_delete(stack: Stack, volume_id: str) -> float:
    """DeleteVolume through the driver; the LINSTOR REST calls it made."""
    before = rest_calls()
    delete(stack, volume_id)
    return rest_calls() - before


def test_delete_costs_two_rest_calls_and_a_first_member_still_goes_alone(
    stack: Stack, api: KubeApi, linstor: LinstorClient
) -> None:
    group = f"dl-{uuid.uuid4().hex[:6]}"
    resource = group_resource_name(NAMESPACE, group)
    first = claim(stack, api, group, cap=block_cap())
    second = claim(stack, api, group, cap=block_cap())
    plain = claim(stack, api, None, cap=block_cap())
    assert first.volume_id == resource  # number 0: an id without a '/'

    # A plain volume: the view of its resources and the DELETE, no read of its definition.
    assert counted_delete(stack, plain.volume_id) == 2
    assert not linstor.list_resource_definitions([plain.volume_id])
    # Unknown ids are success (CSI), plain-shaped or a group's.
    assert counted_delete(stack, plain.volume_id) <= 2
    delete(stack, group_resource_name(NAMESPACE, f"none-{uuid.uuid4().hex[:6]}"), "no/such/id")

    # The group's first member goes as volume number 0 only: its sibling keeps the resource.
    assert counted_delete(stack, first.volume_id) == 2
    assert [vd.number for vd in linstor.list_volume_definitions(resource)] == [1]
    got = stack.csi.controller.ControllerGetVolume(
        csi_pb2.ControllerGetVolumeRequest(volume_id=second.volume_id)
    ).volume
    assert got.volume_id == second.volume_id
    delete(stack, first.volume_id)  # again: OK, and the sibling is untouched
    assert [vd.number for vd in linstor.list_volume_definitions(resource)] == [1]
    delete(stack, second.volume_id)  # the last member takes the resource with it
    assert not linstor.list_resource_definitions([resource])


def test_create_is_idempotent_and_refuses_what_a_group_cannot_hold(stack: Stack, api: KubeApi) -> None:
    group = f"web-{uuid.uuid4().hex[:6]}"
    pvc = f"data-{uuid.uuid4().hex[:8]}"
    request_name = f"pvc-{uuid.uuid4()}"

    def create(size: int, **parameters: str) -> csi_pb2.Volume:
        api.add_pvc(NAMESPACE, pvc, {GROUP_LABEL: group})
        request = csi_pb2.CreateVolumeRequest(
            name=request_name,
            capacity_range=csi_pb2.CapacityRange(required_bytes=size),
            volume_capabilities=[mount_cap()],
            parameters={"csi.storage.k8s.io/pvc/name": pvc, "csi.storage.k8s.io/pvc/namespace": NAMESPACE,
                        **parameters},
        )  # fmt: skip
        return stack.csi.controller.CreateVolume(request).volume

    made = create(32 * MIB)
    assert create(32 * MIB).volume_id == made.volume_id
    assert code_of(lambda: create(64 * MIB)) == Code.ALREADY_EXISTS
    other_class = {"linstor.csi.linbit.com/placementCount": "2"}
    assert code_of(lambda: claim(stack, api, group, parameters=other_class)) == Code.INVALID_ARGUMENT
    clone = csi_pb2.CreateVolumeRequest(
        name=f"pvc-{uuid.uuid4()}",
        volume_capabilities=[mount_cap()],
        parameters={"csi.storage.k8s.io/pvc/name": pvc, "csi.storage.k8s.io/pvc/namespace": NAMESPACE},
    )
    clone.volume_content_source.volume.volume_id = made.volume_id
    assert code_of(lambda: stack.csi.controller.CreateVolume(clone)) == Code.INVALID_ARGUMENT
    ids = {e.volume.volume_id for e in stack.csi.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries}
    assert not any(i.startswith(made.volume_id + "/") for i in ids), "refused members leave nothing"
    delete(stack, made.volume_id)


def test_kubernetes_api_errors_are_clear_and_make_nothing(
    stack: Stack, api: KubeApi, linstor: LinstorClient
) -> None:
    before = {rd.name for rd in linstor.list_resource_definitions()}
    request = csi_pb2.CreateVolumeRequest(
        name=f"pvc-{uuid.uuid4()}",
        volume_capabilities=[mount_cap()],
        parameters={
            "csi.storage.k8s.io/pvc/name": "never-made",
            "csi.storage.k8s.io/pvc/namespace": NAMESPACE,
        },
    )
    assert code_of(lambda: stack.csi.controller.CreateVolume(request)) == Code.FAILED_PRECONDITION
    api.refuse = 403
    try:
        with pytest.raises(grpc.RpcError) as refused:
            claim(stack, api, "any")
        assert refused.value.code() == Code.FAILED_PRECONDITION
        assert "persistentvolumeclaims" in refused.value.details()
    finally:
        api.refuse = None
    assert {rd.name for rd in linstor.list_resource_definitions()} == before


def test_group_snapshot_of_members_restores_each_into_a_new_group(
    stack: Stack, api: KubeApi, linstor: LinstorClient, workdir: Path
) -> None:
    group = f"vm-{uuid.uuid4().hex[:6]}"
    root = claim(stack, api, group)
    disk = claim(stack, api, group, cap=block_cap())
    logs = claim(stack, api, group)
    attached = [
        Attached(stack, workdir, root.volume_id, mount_cap()),
        Attached(stack, workdir, disk.volume_id, block_cap()),
        Attached(stack, workdir, logs.volume_id, mount_cap()),
    ]
    (attached[0].target / "os").write_text("root-before")
    write_at(attached[1].target, MIB, b"disk-before!")
    (attached[2].target / "log").write_text("logs-before")

    taken = stack.csi.group.CreateVolumeGroupSnapshot(
        csi_pb2.CreateVolumeGroupSnapshotRequest(
            name=f"groupsnapshot-{uuid.uuid4()}", source_volume_ids=[root.volume_id, disk.volume_id]
        )
    ).group_snapshot
    (attached[0].target / "os").write_text("root-after")
    write_at(attached[1].target, MIB, b"disk-after!!")
    for a in attached:
        a.detach()

    resource = root.volume_id
    assert [s.name for s in linstor.view_snapshots([resource])] == [taken.group_snapshot_id], "one snapshot"
    by_source = {s.source_volume_id: s.snapshot_id for s in taken.snapshots}
    assert set(by_source) == {root.volume_id, disk.volume_id}
    assert by_source[disk.volume_id] == f"InCluster:///{resource}/1/{taken.group_snapshot_id}"

    # Restore both members into a new group: the numbers are kept, the data is the snapshot's.
    restored_group = f"{group}-restore"
    root2 = claim(stack, api, restored_group, snapshot=by_source[root.volume_id])
    disk2 = claim(stack, api, restored_group, cap=block_cap(), snapshot=by_source[disk.volume_id])
    new_resource = group_resource_name(NAMESPACE, restored_group)
    assert (root2.volume_id, disk2.volume_id) == (new_resource, f"{new_resource}/1")
    assert disk2.content_source.snapshot.snapshot_id == by_source[disk.volume_id]
    # A member restored into a plain PVC is its own volume, keeping its number in the id.
    lone = claim(stack, api, None, cap=block_cap(), snapshot=by_source[disk.volume_id])
    assert lone.volume_id.endswith("/1") and not lone.volume_id.startswith("cg-")

    checks = [
        Attached(stack, workdir, root2.volume_id, mount_cap()),
        Attached(stack, workdir, disk2.volume_id, block_cap()),
        Attached(stack, workdir, lone.volume_id, block_cap()),
    ]
    try:
        assert (checks[0].target / "os").read_text() == "root-before"
        assert read_at(checks[1].target, MIB, 12) == b"disk-before!"
        assert read_at(checks[2].target, MIB, 12) == b"disk-before!"
    finally:
        for c in checks:
            c.detach()

    # The number is claimed: another PVC cannot restore the same member into the same group.
    again = by_source[root.volume_id]
    assert code_of(lambda: claim(stack, api, restored_group, snapshot=again)) == Code.ALREADY_EXISTS
    stack.csi.group.DeleteVolumeGroupSnapshot(
        csi_pb2.DeleteVolumeGroupSnapshotRequest(
            group_snapshot_id=taken.group_snapshot_id, snapshot_ids=list(by_source.values())
        )
    )
    delete(
        stack,
        root2.volume_id,
        disk2.volume_id,
        lone.volume_id,
        root.volume_id,
        disk.volume_id,
        logs.volume_id,
    )
    assert not linstor.list_resource_definitions([resource, new_resource])


def test_snapshot_of_one_member_keeps_its_number(
    stack: Stack, api: KubeApi, linstor: LinstorClient, workdir: Path
) -> None:
    group = f"one-{uuid.uuid4().hex[:6]}"
    first = claim(stack, api, group, cap=block_cap())
    second = claim(stack, api, group, cap=block_cap())
    a, b = (
        Attached(stack, workdir, first.volume_id, block_cap()),
        Attached(stack, workdir, second.volume_id, block_cap()),
    )
    write_at(a.target, 0, b"first-member")
    write_at(b.target, 0, b"second-membr")
    a.detach()
    b.detach()
    ctl = stack.csi.controller
    name = f"snapshot-{uuid.uuid4()}"
    snap = ctl.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(source_volume_id=second.volume_id, name=name)
    ).snapshot
    assert snap.source_volume_id == second.volume_id and "/1/" in snap.snapshot_id
    again = ctl.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(source_volume_id=second.volume_id, name=name)
    ).snapshot
    assert again.snapshot_id == snap.snapshot_id
    clash = csi_pb2.CreateSnapshotRequest(source_volume_id=first.volume_id, name=name)
    assert code_of(lambda: ctl.CreateSnapshot(clash)) == Code.ALREADY_EXISTS
    got = ctl.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=snap.snapshot_id)).snapshot
    assert got.source_volume_id == second.volume_id
    listed = ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(source_volume_id=second.volume_id)).entries
    assert [e.snapshot.snapshot_id for e in listed] == [snap.snapshot_id]
    assert not ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(source_volume_id=first.volume_id)).entries

    copy = claim(stack, api, None, cap=block_cap(), snapshot=snap.snapshot_id)
    c = Attached(stack, workdir, copy.volume_id, block_cap())
    try:
        assert read_at(c.target, 0, 12) == b"second-membr", "the restore took volume 1, not volume 0"
    finally:
        c.detach()
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id))
    delete(stack, copy.volume_id, first.volume_id, second.volume_id)
    assert not linstor.list_resource_definitions([first.volume_id])
