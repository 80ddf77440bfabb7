"""Both front ends against a controller that behaves like a real one.

Failed satellite deployments (an ``/_emu/`` fault), offline nodes refused by make-available,
and tie-breakers that attach reuses and detach gives back: each through CSI and Docker.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests

from csi.generated import csi_pb2
from csi.testing import mount_cap
from plugin.volume_records import ATTACHED_BY_PLUGIN, NAME
from tests import csi_requests as rq
from tests.dockerd import PluginProcess
from tests.integration.csi_stack import LOCAL, Stack, csi_stack
from tests.integration.test_docker_plugin import failed, names, ok, plugin_releasing_at_once

MIB = 1024**2
TWO_REMOTE = {"linstor.csi.linbit.com/nodeList": "node-b node-c"}


def unique(prefix: str = "pvc") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with csi_stack(tmp_path_factory.mktemp("csi-realism"), "csi-real-") as made:
        yield made


def _resources(url: str, rd: str) -> dict[str, dict[str, Any]]:
    body = requests.get(f"{url}/v1/resource-definitions/{rd}/resources", timeout=10).json()
    return {r["node_name"]: r for r in body} if isinstance(body, list) else {}


def _rd_names(url: str) -> list[str]:
    return [d["name"] for d in requests.get(f"{url}/v1/resource-definitions", timeout=10).json()]


def _create(stack: Stack, name: str, params: dict[str, str] | None = None) -> csi_pb2.Volume:
    return stack.csi.controller.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=name,
            capacity_range=csi_pb2.CapacityRange(required_bytes=16 * MIB),
            volume_capabilities=[mount_cap()],
            parameters=params or {},
        )
    ).volume


# ---------------------------------------------------------------------- CSI


def test_csi_failed_deployment_is_no_created_volume(stack: Stack) -> None:
    url = stack.emulator.url
    assert stack.emulator.control("deploy-failures", {"count": 1, "node": "node-c"}).ok
    name = unique()
    with pytest.raises(grpc.RpcError) as caught:
        _create(stack, name, TWO_REMOTE)
    assert caught.value.code() != grpc.StatusCode.OK
    assert "node-c" in (caught.value.details() or "")
    # Nothing half-made is left for a retry to take as created.
    assert not [n for n in _rd_names(url) if n.lower() == name.lower()]
    volume = _create(stack, name, TWO_REMOTE)
    states = {
        n: r["layer_object"]["drbd"]["drbd_volumes"][0].get("disk_state")
        for n, r in _resources(url, volume.volume_id).items()
    }
    assert states["node-b"] == states["node-c"] == "UpToDate"
    stack.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))


def test_csi_publish_to_an_offline_node_says_so(stack: Stack) -> None:
    volume = _create(stack, unique(), {"linstor.csi.linbit.com/nodeList": "node-b"})
    assert stack.emulator.control("nodes/node-c/offline").ok
    try:
        with pytest.raises(grpc.RpcError) as caught:
            stack.csi.controller.ControllerPublishVolume(
                rq.controller_publish(volume.volume_id, "node-c", mount_cap())
            )
        assert caught.value.code() != grpc.StatusCode.NOT_FOUND
        assert "node-c" in caught.value.details() and "offline" in caught.value.details()
    finally:
        stack.emulator.control("nodes/node-c/online")
    stack.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))


def test_csi_attach_reuses_the_tie_breaker_and_detach_gives_it_back(stack: Stack) -> None:
    url = stack.emulator.url
    volume = _create(stack, unique(), TWO_REMOTE)
    assert "TIE_BREAKER" in _resources(url, volume.volume_id)[LOCAL]["flags"]
    stack.csi.controller.ControllerPublishVolume(rq.controller_publish(volume.volume_id, LOCAL, mount_cap()))
    attached = _resources(url, volume.volume_id)
    assert sorted(attached) == sorted([LOCAL, "node-b", "node-c"])  # reused, nothing added
    assert "TIE_BREAKER" not in attached[LOCAL]["flags"]
    stack.csi.controller.ControllerUnpublishVolume(rq.controller_unpublish(volume.volume_id, LOCAL))
    after = _resources(url, volume.volume_id)
    assert after[LOCAL]["flags"] == ["DISKLESS", "DRBD_DISKLESS", "TIE_BREAKER"]
    assert ATTACHED_BY_PLUGIN not in after[LOCAL].get("props", {})
    # A second unpublish leaves LINSTOR's tie-breaker alone.
    stack.csi.controller.ControllerUnpublishVolume(rq.controller_unpublish(volume.volume_id, LOCAL))
    assert "TIE_BREAKER" in _resources(url, volume.volume_id)[LOCAL]["flags"]
    stack.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))
    assert volume.volume_id not in _rd_names(url)


def test_csi_expand_and_snapshot_wait_for_an_outdated_replica_within_the_deadline(stack: Stack) -> None:
    volume = _create(stack, unique(), TWO_REMOTE)
    assert stack.emulator.control(f"resources/{volume.volume_id}/node-b/disk_state", {"state": "Outdated"}).ok
    expand = csi_pb2.ControllerExpandVolumeRequest(
        volume_id=volume.volume_id,
        capacity_range=csi_pb2.CapacityRange(required_bytes=32 * MIB),
        volume_capability=mount_cap(),
    )
    try:
        with pytest.raises(grpc.RpcError) as caught:
            stack.csi.controller.ControllerExpandVolume(expand, timeout=4)
        # Refused before the caller's deadline, with a sentence, not DEADLINE_EXCEEDED.
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "the replica on node-b is Outdated" in caught.value.details()
        with pytest.raises(grpc.RpcError) as caught:
            stack.csi.controller.CreateSnapshot(
                csi_pb2.CreateSnapshotRequest(source_volume_id=volume.volume_id, name=unique("snap")),
                timeout=4,
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        stack.emulator.control(f"resources/{volume.volume_id}/node-b/disk_state", {"state": None})
    assert stack.csi.controller.ControllerExpandVolume(expand, timeout=30).capacity_bytes == 32 * MIB
    stack.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))


def test_csi_long_clone_is_aborted_not_deleted_and_the_retry_resumes(stack: Stack) -> None:
    source = _create(stack, unique())
    name = unique()
    request = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=16 * MIB),
        volume_capabilities=[mount_cap()],
        volume_content_source=csi_pb2.VolumeContentSource(
            volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=source.volume_id)
        ),
    )
    assert stack.emulator.control("clone-delay", {"seconds": 5}).ok
    try:
        with pytest.raises(grpc.RpcError) as caught:
            stack.csi.controller.CreateVolume(request, timeout=3)
        assert caught.value.code() == grpc.StatusCode.ABORTED, caught.value.details()
        assert "still being copied" in caught.value.details()
        clone = stack.csi.controller.CreateVolume(request, timeout=60).volume
    finally:
        stack.emulator.control("clone-delay", {"seconds": 0})
    assert clone.content_source.volume.volume_id == source.volume_id
    for volume_id in (clone.volume_id, source.volume_id):
        stack.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id))


# ---------------------------------------------------------------------- Docker


@pytest.fixture
def plugin(emulator, tmp_path: Path) -> Iterator[PluginProcess]:  # type: ignore[no-untyped-def]
    with plugin_releasing_at_once(emulator.url, tmp_path / "p") as proc:
        yield proc


def test_docker_failed_deployment_is_no_created_volume(plugin: PluginProcess, emulator) -> None:  # type: ignore[no-untyped-def]
    c = plugin.client()
    assert emulator.control("deploy-failures", {"count": 1, "node": "node-b"}).ok
    body = {"Name": "halfmade", "Opts": {"size": "16M", "nodes": "node-b,node-c"}}
    err = failed(c.call("VolumeDriver.Create", body))
    assert "node-b" in err, err
    assert "halfmade" not in names(c)
    ok(c.call("VolumeDriver.Create", body))
    assert names(c).count("halfmade") == 1
    ok(c.call("VolumeDriver.Remove", {"Name": "halfmade"}))


def test_docker_mount_reuses_the_tie_breaker_and_unmount_gives_it_back(
    plugin: PluginProcess, emulator
) -> None:  # type: ignore[no-untyped-def]
    c = plugin.client()
    ok(
        c.call(
            "VolumeDriver.Create",
            {"Name": "tb", "Opts": {"size": "16M", "nodes": "node-b,node-c", "fs": "ext4"}},
        )
    )
    rd = next(
        d["name"]
        for d in requests.get(f"{emulator.url}/v1/resource-definitions", timeout=10).json()
        if d.get("props", {}).get(NAME) == "tb"
    )
    assert "TIE_BREAKER" in _resources(emulator.url, rd)[LOCAL]["flags"]
    mounted = ok(c.call("VolumeDriver.Mount", {"Name": "tb", "ID": "c1"}))["Mountpoint"]
    assert Path(mounted).is_dir()
    assert "TIE_BREAKER" not in _resources(emulator.url, rd)[LOCAL]["flags"]
    ok(c.call("VolumeDriver.Unmount", {"Name": "tb", "ID": "c1"}))
    assert _resources(emulator.url, rd)[LOCAL]["flags"] == ["DISKLESS", "DRBD_DISKLESS", "TIE_BREAKER"]
    ok(c.call("VolumeDriver.Remove", {"Name": "tb"}))
    assert rd not in _rd_names(emulator.url)
