"""The plugin against an emulator that behaves like the real controller where it is strict.

Controller versions: a feature the controller lacks is refused with a sentence naming the
minimum version, before anything is made, through the core and through the CSI front end.
In-use reports lag the node: a delete right after the last close still succeeds, because the
plugin gives the report a bounded moment to clear.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests

from csi.generated import csi_pb2
from csi.testing import Mode, block_cap, mount_cap
from plugin.errors import FailedPrecondition, InUse
from plugin.params.model import VolumeParams
from plugin.volumes.service import VolumeService
from plugin.volumes.shared_writers import TWO_PRIMARIES
from testkit.waiting import wait_until
from tests import csi_requests as rq
from tests.conftest import EmulatorProcess
from tests.dockerd import PluginProcess
from tests.integration.csi_stack import LOCAL, Stack, csi_stack
from tests.integration.test_volume_service import service_for

pytestmark = pytest.mark.root

MIB = 1024 * 1024
RAW = VolumeParams(place_count=1, fs_type=None, nodes=(LOCAL,))


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def old_svc(root_loop: None, emulator_factory) -> VolumeService:  # type: ignore[no-untyped-def]
    """A 1.29.1 controller: REST API 1.23, no snapshot-definition props, no clone props."""
    return service_for(emulator_factory(nodes=("node-b",), extra_args=("--linstor-version", "1.29.1")))


def test_an_older_controller_creates_but_refuses_what_it_lacks(old_svc: VolumeService) -> None:
    volume = old_svc.create_volume(_unique("old"), 8 * MIB, RAW)
    with pytest.raises(FailedPrecondition) as exc:
        old_svc.create_snapshot(volume.id, "nightly")
    assert "REST API 1.24.0 or newer" in exc.value.message and "REST API 1.23.0" in exc.value.message
    assert old_svc.client.list_snapshots(volume.id) == []
    clone_name = _unique("clone")
    with pytest.raises(FailedPrecondition) as exc:
        old_svc.create_volume(clone_name, 8 * MIB, RAW, source=f"volume:{volume.id}")
    assert "needs LINSTOR 1.32.0 or newer" in exc.value.message and "1.29.1" in exc.value.message
    assert old_svc.find_volume(clone_name) is None
    # The version was read once for all of it.
    assert old_svc.client.features.version().text == "1.29.1"


@pytest.fixture(scope="module")
def old_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with csi_stack(
        tmp_path_factory.mktemp("csi-old"), "csi-old-", emulator_args=("--linstor-version", "1.29.1")
    ) as made:
        yield made


def test_csi_names_the_minimum_version(old_stack: Stack) -> None:
    ctl = old_stack.csi.controller
    params = {"linstor.csi.linbit.com/placementCount": "1"}
    vol = ctl.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=f"pvc-{uuid.uuid4()}",
            capacity_range={"required_bytes": 16 * MIB},
            volume_capabilities=[mount_cap(fs_type="ext4")],
            parameters=params,
        )
    ).volume
    with pytest.raises(grpc.RpcError) as exc:
        ctl.CreateSnapshot(csi_pb2.CreateSnapshotRequest(source_volume_id=vol.volume_id, name="snap-old"))
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "REST API 1.24.0 or newer" in exc.value.details()
    with pytest.raises(grpc.RpcError) as exc:
        ctl.CreateVolume(
            csi_pb2.CreateVolumeRequest(
                name=f"pvc-{uuid.uuid4()}",
                capacity_range={"required_bytes": 16 * MIB},
                volume_capabilities=[mount_cap(fs_type="ext4")],
                parameters=params,
                volume_content_source=csi_pb2.VolumeContentSource(volume={"volume_id": vol.volume_id}),
            )
        )
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "LINSTOR 1.32.0 or newer" in exc.value.details()


# ---------------------------------------------------------------------- in-use reports lag


@pytest.fixture
def lagging(root_loop: None, emulator_factory) -> EmulatorProcess:  # type: ignore[no-untyped-def]
    return emulator_factory(extra_args=("--in-use-report-seconds", "2"))


def _reported_in_use(svc: VolumeService, volume_id: str) -> bool:
    return any(r.in_use for r in svc.client.view_resources([volume_id]))


def test_delete_right_after_the_last_close_waits_for_the_report(lagging: EmulatorProcess) -> None:
    svc = service_for(lagging)
    volume = svc.create_volume(_unique("lag"), 8 * MIB, RAW)
    device = svc.attach(volume.id, LOCAL).device_path
    fd = os.open(device, os.O_RDWR | os.O_EXCL)
    try:
        wait_until(
            lambda: _reported_in_use(svc, volume.id), timeout=30, interval=0.1, what="the report of the open"
        )
    finally:
        os.close(fd)
    # The controller still reports the device open; the plugin waits for the report to clear.
    assert _reported_in_use(svc, volume.id)
    svc.delete_volume(volume.id)
    assert svc.find_volume(volume.id) is None


def test_a_volume_really_in_use_is_still_refused(lagging: EmulatorProcess) -> None:
    svc = service_for(lagging)
    volume = svc.create_volume(_unique("busy"), 8 * MIB, RAW)
    device = svc.attach(volume.id, LOCAL).device_path
    fd = os.open(device, os.O_RDWR | os.O_EXCL)
    try:
        wait_until(
            lambda: _reported_in_use(svc, volume.id), timeout=30, interval=0.1, what="the report of the open"
        )
        with pytest.raises(InUse) as exc:
            svc.delete_volume(volume.id)
        assert LOCAL in exc.value.message
        assert svc.find_volume(volume.id) is not None
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- RWX block (two primaries)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with csi_stack(tmp_path_factory.mktemp("csi-rwx"), "csi-rwx-") as made:
        yield made


def _role(stack: Stack, rd: str, node: str, role: str) -> int:
    url = f"{stack.emulator.url}/_emu/resources/{rd}/{node}/role"
    return requests.post(url, json={"role": role}, timeout=30).status_code


def _two_primaries(stack: Stack, rd: str) -> str | None:
    props = (
        requests.get(f"{stack.emulator.url}/v1/resource-definitions/{rd}", timeout=30).json().get("props", {})
    )
    return props.get(TWO_PRIMARIES)  # type: ignore[no-any-return]


def test_rwx_block_live_migration_allows_two_primaries_while_two_nodes_write(stack: Stack) -> None:
    ctl = stack.csi.controller
    cap = block_cap(Mode.MULTI_NODE_MULTI_WRITER)
    vid = ctl.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=f"pvc-{uuid.uuid4()}",
            capacity_range={"required_bytes": 16 * MIB},
            volume_capabilities=[cap],
            parameters={"linstor.csi.linbit.com/placementCount": "2"},
        )
    ).volume.volume_id

    def publish(node: str) -> None:
        ctl.ControllerPublishVolume(rq.controller_publish(vid, node, cap))

    def unpublish(node: str) -> None:
        ctl.ControllerUnpublishVolume(rq.controller_unpublish(vid, node))

    # The VM runs on node-b; one writer needs no option.
    publish("node-b")
    assert _role(stack, vid, "node-b", "Primary") == 200
    assert _two_primaries(stack, vid) is None
    # Live migration to node-c: the second publication allows the second primary.
    publish("node-c")
    assert _two_primaries(stack, vid) == "yes"
    assert _role(stack, vid, "node-c", "Primary") == 200
    # A third writer is refused before anything changes there.
    with pytest.raises(grpc.RpcError) as exc:
        publish(LOCAL)
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not a third" in exc.value.details()
    # Migration done: node-b lets go, and with one writer left the option goes away.
    assert _role(stack, vid, "node-b", "Secondary") == 200
    unpublish("node-b")
    assert _two_primaries(stack, vid) is None
    # DRBD now refuses a second primary again (where node-b still holds a replica or its attachment).
    rscs = requests.get(f"{stack.emulator.url}/v1/resource-definitions/{vid}/resources", timeout=30).json()
    others = [r["node_name"] for r in rscs if r["node_name"] != "node-c"]
    assert others and all(_role(stack, vid, n, "Primary") == 409 for n in others)
    assert _role(stack, vid, "node-c", "Secondary") == 200
    unpublish("node-c")
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid))


def test_a_single_writer_mode_never_touches_the_option(stack: Stack) -> None:
    ctl = stack.csi.controller
    cap = block_cap(Mode.MULTI_NODE_READER_ONLY)
    vid = ctl.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=f"pvc-{uuid.uuid4()}",
            capacity_range={"required_bytes": 16 * MIB},
            volume_capabilities=[cap],
            parameters={"linstor.csi.linbit.com/placementCount": "1"},
        )
    ).volume.volume_id
    for node in ("node-b", "node-c"):
        ctl.ControllerPublishVolume(rq.controller_publish(vid, node, cap, readonly=True))
    assert _two_primaries(stack, vid) is None
    for node in ("node-b", "node-c"):
        ctl.ControllerUnpublishVolume(rq.controller_unpublish(vid, node))
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid))


# ---------------------------------------------------------------------- Docker front end


def test_docker_create_on_a_controller_without_spawn_props_names_the_version(
    root_loop: None,
    emulator_factory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    emu = emulator_factory(extra_args=("--linstor-version", "1.27.0"))  # REST API 1.21
    proc = PluginProcess(tmp_path / "p", emu.url, LOCAL, extra_args=("--release-delay", "0"))
    proc.start()
    try:
        answer = proc.client().call("VolumeDriver.Create", {"Name": "old", "Opts": {"size": "64M"}})
        assert answer["_status"] == 200 and "Traceback" not in answer["Err"]
        assert "REST API 1.22.0 or newer" in answer["Err"] and "REST API 1.21.0" in answer["Err"]
        # Refused before anything was made, the resource group included.
        assert requests.get(f"{emu.url}/v1/resource-definitions", timeout=30).json() == []
        groups = requests.get(f"{emu.url}/v1/resource-groups", timeout=30).json()
        assert [g["name"] for g in groups] == ["DfltRscGrp"]
    finally:
        proc.stop()
