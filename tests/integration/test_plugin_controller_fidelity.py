"""The plugin against an emulator that behaves like the real controller where it is strict.

Controller versions: a feature the controller lacks is refused with a sentence naming the
minimum version, before anything is made, through the core and through the CSI front end.
In-use reports lag the node: a delete right after the last close still succeeds, because the
plugin gives the report a bounded moment to clear.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest

from csi.generated import csi_pb2
from csi.testing import mount_cap
from plugin.errors import FailedPrecondition, InUse
from plugin.params import VolumeParams
from plugin.volume_service import VolumeService
from tests.conftest import EmulatorProcess
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


def _until(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _reported_in_use(svc: VolumeService, volume_id: str) -> bool:
    return any((r.get("state") or {}).get("in_use") for r in svc.client.view_resources([volume_id]))


def test_delete_right_after_the_last_close_waits_for_the_report(lagging: EmulatorProcess) -> None:
    svc = service_for(lagging)
    volume = svc.create_volume(_unique("lag"), 8 * MIB, RAW)
    device = svc.attach(volume.id, LOCAL).device_path
    fd = os.open(device, os.O_RDWR | os.O_EXCL)
    try:
        assert _until(lambda: _reported_in_use(svc, volume.id))
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
        assert _until(lambda: _reported_in_use(svc, volume.id))
        with pytest.raises(InUse) as exc:
            svc.delete_volume(volume.id)
        assert LOCAL in exc.value.message
        assert svc.find_volume(volume.id) is not None
    finally:
        os.close(fd)
