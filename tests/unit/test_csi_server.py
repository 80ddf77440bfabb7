"""The gRPC layer over a recording core: validation order, error codes, single flight, logs.

The core here is a test double that records every call and fails on any call a test
did not script, so "validated before any lookup" is checked by the absence of calls.
The real core against the emulator is exercised by the integration suite.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from csi.generated import csi_pb2, csi_pb2_grpc
from csi.server import CsiDriver, DriverOptions
from plugin import errors
from plugin.config import Config
from plugin.models import Attachment, Replica, Snapshot, Volume
from plugin.volume_records import PUBLISHED
from plugin.volumes.publications import NodeRecord, Publishing
from testkit.waiting import wait_until
from tests import csi_requests as rq

Mode = csi_pb2.VolumeCapability.AccessMode.Mode
MOUNT_CAP = csi_pb2.VolumeCapability(mount={}, access_mode={"mode": Mode.SINGLE_NODE_WRITER})


class RecordingCore:
    """Stands in for VolumeService and NodeOps: scripted answers, every call recorded."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.script: dict[str, Callable[..., Any]] = {}
        self.health = True
        self.config = Config(config_file=None)  # the settings servicers read, as on VolumeService

    def healthy(self) -> bool:
        return self.health

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if name not in self.script:
                raise AssertionError(f"unexpected call {name}{args}")
            return self.script[name](*args, **kwargs)

        return call


class Client:
    def __init__(self, channel: grpc.Channel) -> None:
        self.identity = csi_pb2_grpc.IdentityStub(channel)
        self.controller = csi_pb2_grpc.ControllerStub(channel)
        self.node = csi_pb2_grpc.NodeStub(channel)
        self.group = csi_pb2_grpc.GroupControllerStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)


@pytest.fixture
def socket_dir() -> Iterator[str]:
    # unix socket paths are limited to ~108 bytes; pytest's tmp_path can be longer
    path = tempfile.mkdtemp(prefix="csi-unit-")
    yield path
    for name in os.listdir(path):
        os.unlink(os.path.join(path, name))
    os.rmdir(path)


@pytest.fixture
def core() -> RecordingCore:
    return RecordingCore()


@pytest.fixture
def driver(core: RecordingCore, socket_dir: str) -> Iterator[CsiDriver]:
    options = DriverOptions(
        endpoint=f"unix://{socket_dir}/csi.sock", mode="all", node_name="node-a", workers=8
    )
    drv = CsiDriver(core, core, options)  # type: ignore[arg-type]
    drv.start()
    yield drv
    drv.stop(grace=1)


@pytest.fixture
def client(driver: CsiDriver) -> Iterator[Client]:
    with grpc.insecure_channel(driver.endpoint.address) as channel:
        yield Client(channel)


def _code(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def _volume(vid: str = "pvc-1", size: int = 64 * 1024**2) -> Volume:
    return Volume(
        id=vid,
        name=vid,
        size_bytes=size,
        resource_group="rg",
        fs_type="ext4",
        replicas=(Replica(node="node-a", diskless=False, in_use=False, device_path="/dev/drbd1000"),),
    )


# Each case: (service, method, request) with a required field missing; the fake id
# makes sure a lookup would have happened if validation came second.
MISSING_FIELD_CASES = [
    ("controller", "CreateVolume", csi_pb2.CreateVolumeRequest(volume_capabilities=[MOUNT_CAP])),
    ("controller", "CreateVolume", csi_pb2.CreateVolumeRequest(name="v")),
    ("controller", "DeleteVolume", csi_pb2.DeleteVolumeRequest()),
    (
        "controller",
        "ControllerPublishVolume",
        csi_pb2.ControllerPublishVolumeRequest(node_id="n", volume_capability=MOUNT_CAP),
    ),
    (
        "controller",
        "ControllerPublishVolume",
        csi_pb2.ControllerPublishVolumeRequest(volume_id="fake-vol", volume_capability=MOUNT_CAP),
    ),
    (
        "controller",
        "ControllerPublishVolume",
        csi_pb2.ControllerPublishVolumeRequest(volume_id="fake-vol", node_id="n"),
    ),
    ("controller", "ControllerUnpublishVolume", csi_pb2.ControllerUnpublishVolumeRequest(node_id="n")),
    (
        "controller",
        "ValidateVolumeCapabilities",
        csi_pb2.ValidateVolumeCapabilitiesRequest(volume_capabilities=[MOUNT_CAP]),
    ),
    (
        "controller",
        "ValidateVolumeCapabilities",
        csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id="fake-vol"),
    ),
    ("controller", "ControllerExpandVolume", csi_pb2.ControllerExpandVolumeRequest(volume_id="fake-vol")),
    (
        "controller",
        "ControllerExpandVolume",
        csi_pb2.ControllerExpandVolumeRequest(capacity_range={"required_bytes": 1}),
    ),
    ("controller", "ControllerGetVolume", csi_pb2.ControllerGetVolumeRequest()),
    ("controller", "CreateSnapshot", csi_pb2.CreateSnapshotRequest(name="s")),
    ("controller", "CreateSnapshot", csi_pb2.CreateSnapshotRequest(source_volume_id="fake-vol")),
    ("controller", "DeleteSnapshot", csi_pb2.DeleteSnapshotRequest()),
    ("controller", "GetSnapshot", csi_pb2.GetSnapshotRequest()),
    (
        "node",
        "NodeStageVolume",
        csi_pb2.NodeStageVolumeRequest(staging_target_path="/tmp/s", volume_capability=MOUNT_CAP),
    ),
    (
        "node",
        "NodeStageVolume",
        csi_pb2.NodeStageVolumeRequest(volume_id="fake-vol", volume_capability=MOUNT_CAP),
    ),
    (
        "node",
        "NodeStageVolume",
        csi_pb2.NodeStageVolumeRequest(volume_id="fake-vol", staging_target_path="/tmp/s"),
    ),
    ("node", "NodeUnstageVolume", csi_pb2.NodeUnstageVolumeRequest(staging_target_path="/tmp/s")),
    ("node", "NodeUnstageVolume", csi_pb2.NodeUnstageVolumeRequest(volume_id="fake-vol")),
    (
        "node",
        "NodePublishVolume",
        csi_pb2.NodePublishVolumeRequest(
            volume_id="fake-vol", staging_target_path="/tmp/s", volume_capability=MOUNT_CAP
        ),
    ),
    (
        "node",
        "NodePublishVolume",
        csi_pb2.NodePublishVolumeRequest(
            target_path="/tmp/t", staging_target_path="/tmp/s", volume_capability=MOUNT_CAP
        ),
    ),
    (
        "node",
        "NodePublishVolume",
        csi_pb2.NodePublishVolumeRequest(
            volume_id="fake-vol", target_path="/tmp/t", staging_target_path="/tmp/s"
        ),
    ),
    ("node", "NodeUnpublishVolume", csi_pb2.NodeUnpublishVolumeRequest(target_path="/tmp/t")),
    ("node", "NodeUnpublishVolume", csi_pb2.NodeUnpublishVolumeRequest(volume_id="fake-vol")),
    ("node", "NodeGetVolumeStats", csi_pb2.NodeGetVolumeStatsRequest(volume_path="/tmp/t")),
    ("node", "NodeGetVolumeStats", csi_pb2.NodeGetVolumeStatsRequest(volume_id="fake-vol")),
    ("node", "NodeExpandVolume", csi_pb2.NodeExpandVolumeRequest(volume_path="/tmp/t")),
    ("node", "NodeExpandVolume", csi_pb2.NodeExpandVolumeRequest(volume_id="fake-vol")),
    ("group", "CreateVolumeGroupSnapshot", csi_pb2.CreateVolumeGroupSnapshotRequest(name="g")),
    (
        "group",
        "CreateVolumeGroupSnapshot",
        csi_pb2.CreateVolumeGroupSnapshotRequest(source_volume_ids=["fake-vol"]),
    ),
    (
        "group",
        "DeleteVolumeGroupSnapshot",
        csi_pb2.DeleteVolumeGroupSnapshotRequest(snapshot_ids=["InCluster:///fake-vol/g"]),
    ),
    ("group", "DeleteVolumeGroupSnapshot", csi_pb2.DeleteVolumeGroupSnapshotRequest(group_snapshot_id="g")),
    (
        "group",
        "GetVolumeGroupSnapshot",
        csi_pb2.GetVolumeGroupSnapshotRequest(snapshot_ids=["InCluster:///fake-vol/g"]),
    ),
    ("group", "GetVolumeGroupSnapshot", csi_pb2.GetVolumeGroupSnapshotRequest(group_snapshot_id="g")),
]


@pytest.mark.parametrize(
    ("service", "method", "request_"),
    MISSING_FIELD_CASES,
    ids=[f"{c[1]}-{i}" for i, c in enumerate(MISSING_FIELD_CASES)],
)
def test_missing_field_is_invalid_argument_before_any_lookup(
    client: Client, core: RecordingCore, service: str, method: str, request_: Any
) -> None:
    stub = getattr(client, service)
    err = _code(lambda: getattr(stub, method)(request_))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert err.details()
    assert core.calls == []


def test_identity(client: Client, core: RecordingCore) -> None:
    info = client.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
    assert info.name == "linstor.csi.linbit.com" and info.vendor_version
    caps = client.identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest()).capabilities
    services = {c.service.type for c in caps if c.HasField("service")}
    assert services == {
        csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE,
        csi_pb2.PluginCapability.Service.VOLUME_ACCESSIBILITY_CONSTRAINTS,
        csi_pb2.PluginCapability.Service.GROUP_CONTROLLER_SERVICE,
    }
    assert any(c.volume_expansion.type == csi_pb2.PluginCapability.VolumeExpansion.ONLINE for c in caps)
    assert client.identity.Probe(csi_pb2.ProbeRequest()).ready.value is True
    core.health = False  # the answer is refreshed in the background within a few seconds
    wait_until(
        lambda: not client.identity.Probe(csi_pb2.ProbeRequest()).ready.value,
        timeout=10,
        interval=0.1,
        what="Probe answering not ready",
    )
    assert client.identity.Probe(csi_pb2.ProbeRequest()).ready.value is False


def test_health_service_serves(client: Client) -> None:
    for name in ("", "csi.v1.Controller", "csi.v1.GroupController", "csi.v1.Node"):
        answer = client.health.Check(health_pb2.HealthCheckRequest(service=name))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_core_errors_reach_the_client_as_codes(client: Client, core: RecordingCore) -> None:
    core.script["get_volume"] = lambda vid: (_ for _ in ()).throw(
        errors.NotFound(f"volume {vid} does not exist")
    )
    err = _code(
        lambda: client.controller.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id="x"))
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND and "volume x does not exist" in err.details()

    core.script["get_volume"] = lambda vid: (_ for _ in ()).throw(ZeroDivisionError("boom"))
    err = _code(
        lambda: client.controller.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id="x"))
    )
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "Traceback" not in err.details() and "boom" not in err.details()


def test_deletes_of_missing_things_succeed(client: Client, core: RecordingCore) -> None:
    core.script["delete_volume"] = lambda vid: (_ for _ in ()).throw(errors.NotFound("gone"))
    core.script["delete_snapshot"] = lambda sid: (_ for _ in ()).throw(errors.InvalidArgument("malformed id"))
    client.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id="fake-vol"))
    client.controller.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id="non-existing-snapshot-id"))
    assert core.calls == ["delete_volume", "delete_snapshot"]


def test_second_operation_on_a_busy_volume_is_aborted(client: Client, core: RecordingCore) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_delete(vid: str) -> None:
        entered.set()
        release.wait(10)

    core.script["delete_volume"] = slow_delete
    first = client.controller.DeleteVolume.future(csi_pb2.DeleteVolumeRequest(volume_id="pvc-1"))
    assert entered.wait(10)
    err = _code(
        lambda: client.controller.ControllerExpandVolume(
            csi_pb2.ControllerExpandVolumeRequest(
                volume_id="pvc-1", capacity_range={"required_bytes": 1 << 30}
            )
        )
    )
    assert err.code() == grpc.StatusCode.ABORTED and "DeleteVolume" in err.details()
    release.set()
    first.result(timeout=10)


def test_create_volume_shapes_the_answer(client: Client, core: RecordingCore) -> None:
    seen: dict[str, Any] = {}

    def create(name: str, size: int, params: Any, *, source: Any = None, topology: Any = None) -> Volume:
        seen.update(name=name, size=size, params=params, source=source, topology=topology)
        return _volume("pvc-1", size)

    core.script["create_volume"] = create
    core.script["get_snapshot"] = lambda sid: Snapshot(
        id=sid, name="snap", volume_id="pvc-0", size_bytes=32 * 1024**2, ready=True
    )
    answer = client.controller.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name="pvc-1",
            capacity_range={"required_bytes": 64 * 1024**2},
            volume_capabilities=[csi_pb2.VolumeCapability(mount={"fs_type": "xfs"}, access_mode={"mode": 1})],
            parameters={"linstor.csi.linbit.com/mountOpts": "noatime", "csi.storage.k8s.io/pvc/name": "data"},
            accessibility_requirements=csi_pb2.TopologyRequirement(),  # Nomad's empty requirement
            volume_content_source={"snapshot": {"snapshot_id": "InCluster:///pvc-0/snap"}},
        )
    ).volume
    assert seen["size"] == 300 * 1024**2  # raised to the xfs minimum
    assert seen["params"].fs_type == "xfs"
    assert seen["topology"] is None
    assert seen["source"] == "snapshot:InCluster:///pvc-0/snap"
    assert answer.volume_id == "pvc-1" and answer.capacity_bytes == 300 * 1024**2
    assert core.calls == ["get_snapshot", "create_volume"]  # the source is checked to fit first
    assert answer.volume_context["linstor.csi.linbit.com/mount-options"] == "noatime"
    assert answer.content_source.snapshot.snapshot_id == "InCluster:///pvc-0/snap"
    assert list(answer.accessible_topology) == []  # diskless access from anywhere


def test_unknown_parameter_is_invalid_argument(client: Client, core: RecordingCore) -> None:
    err = _code(
        lambda: client.controller.CreateVolume(
            csi_pb2.CreateVolumeRequest(
                name="v",
                volume_capabilities=[MOUNT_CAP],
                parameters={"linstor.csi.linbit.com/noSuchKey": "1"},
            )
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "noSuchKey" in err.details()
    assert core.calls == []


def test_publish_context_carries_device_and_fs(client: Client, core: RecordingCore) -> None:
    core.script["publish_target"] = lambda vid, node: (_volume(vid), NodeRecord(PUBLISHED, None))
    recorded: list[tuple[str, str, str]] = []

    def attach(vid: str, node: str, *, publish: Publishing) -> Attachment:
        recorded.append((vid, node, publish.token))
        return Attachment(vid, node, "/dev/drbd1000", diskless=True, created_by_attach=True)

    core.script["attach"] = attach
    context = client.controller.ControllerPublishVolume(
        rq.controller_publish("pvc-1", "node-b", MOUNT_CAP, readonly=True)
    ).publish_context
    assert context["linstor.csi.linbit.com/device-path"] == "/dev/drbd1000"
    assert context["linstor.csi.linbit.com/fs-type"] == "ext4"
    assert context["linstor.csi.linbit.com/read-only"] == "true"
    assert recorded == [("pvc-1", "node-b", "SINGLE_NODE_WRITER:ro")]  # the attach records it


def test_list_volumes_bad_token_is_aborted(client: Client, core: RecordingCore) -> None:
    core.script["iter_volumes"] = lambda with_replicas=False: iter([_volume("a"), _volume("b")])
    err = _code(lambda: client.controller.ListVolumes(csi_pb2.ListVolumesRequest(starting_token="garbage")))
    assert err.code() == grpc.StatusCode.ABORTED
    page = client.controller.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=1))
    assert [e.volume.volume_id for e in page.entries] == ["a"] and page.next_token
    rest = client.controller.ListVolumes(csi_pb2.ListVolumesRequest(starting_token=page.next_token))
    assert [e.volume.volume_id for e in rest.entries] == ["b"] and rest.next_token == ""
    assert list(rest.entries[0].status.published_node_ids) == []  # a replica, never published


def test_paging_through_list_volumes_lists_the_core_once(client: Client, core: RecordingCore) -> None:
    core.script["iter_volumes"] = lambda with_replicas=False: iter([_volume(v) for v in "dcbae"])
    token, seen = "", []
    while True:
        page = client.controller.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=2, starting_token=token))
        seen += [e.volume.volume_id for e in page.entries]
        token = page.next_token
        if not token:
            break
    assert seen == ["a", "b", "c", "d", "e"]
    assert core.calls.count("iter_volumes") == 1


def test_node_info_reports_topology_once(client: Client, core: RecordingCore) -> None:
    core.script["node_topology"] = lambda node: {"linbit.com/hostname": node, "linbit.com/sp-pool1": "true"}
    for _ in range(2):
        info = client.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
        assert info.node_id == "node-a"
        assert dict(info.accessible_topology.segments) == {
            "linbit.com/hostname": "node-a",
            "linbit.com/sp-pool1": "true",
        }
        assert info.max_volumes_per_node > 0
    assert core.calls == ["node_topology"]


def test_secrets_never_reach_the_log(
    client: Client, core: RecordingCore, caplog: pytest.LogCaptureFixture
) -> None:
    core.script["create_snapshot"] = lambda vid, name: (_ for _ in ()).throw(errors.NotFound("no volume"))
    with caplog.at_level(logging.DEBUG, logger="csi"):
        _code(
            lambda: client.controller.CreateSnapshot(
                csi_pb2.CreateSnapshotRequest(
                    source_volume_id="pvc-1", name="s1", secrets={"access-key": "hunter2-SECRET"}
                )
            )
        )
    text = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "CreateSnapshot" in text  # the request was logged ...
    assert "hunter2-SECRET" not in text  # ... without its secrets


def test_stale_socket_is_replaced_and_removed_on_stop(core: RecordingCore, socket_dir: str) -> None:
    path = os.path.join(socket_dir, "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # a socket file without a listener, as a killed driver leaves it
    drv = CsiDriver(core, core, DriverOptions(endpoint=f"unix://{path}", mode="controller", workers=2))  # type: ignore[arg-type]
    drv.start()
    with grpc.insecure_channel(drv.endpoint.address) as channel:
        assert csi_pb2_grpc.IdentityStub(channel).GetPluginInfo(csi_pb2.GetPluginInfoRequest()).name
        err = _code(lambda: csi_pb2_grpc.NodeStub(channel).NodeGetInfo(csi_pb2.NodeGetInfoRequest()))
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED  # controller mode serves no Node service
    drv.stop(grace=1)
    assert not os.path.exists(path)


def test_refuses_to_replace_a_regular_file(core: RecordingCore, socket_dir: str) -> None:
    path = os.path.join(socket_dir, "data")
    with open(path, "w") as fh:
        fh.write("keep me")
    drv = CsiDriver(core, None, DriverOptions(endpoint=f"unix://{path}", mode="controller", workers=2))  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument, match="not a socket"):
        drv.start()
    with open(path) as fh:
        assert fh.read() == "keep me"
