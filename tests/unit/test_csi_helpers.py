"""Pure helpers of the CSI front end: error mapping, validation, capabilities, paging, secrets."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from csi import capabilities, convert, errors, validation
from csi.generated import csi_pb2
from csi.sanitize import loggable, strip_secrets
from csi.server import parse_endpoint
from plugin import errors as core
from plugin.params.filesystems import FILESYSTEMS
from testkit.waiting import wait_until

Mode = csi_pb2.VolumeCapability.AccessMode.Mode


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (core.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (core.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (core.AlreadyExists("x"), grpc.StatusCode.ALREADY_EXISTS),
        (core.NoSpace("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (core.InUse("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (core.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (core.Busy("x"), grpc.StatusCode.ABORTED),
        (core.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (core.NodeOffline("x"), grpc.StatusCode.UNAVAILABLE),
        (core.OperationFailed("x"), grpc.StatusCode.INTERNAL),
        (errors.OutOfRange("x"), grpc.StatusCode.OUT_OF_RANGE),
        (errors.Aborted("x"), grpc.StatusCode.ABORTED),
        (NotImplementedError(), grpc.StatusCode.UNIMPLEMENTED),
    ],
)
def test_status_for_maps_every_core_error(exc: BaseException, code: grpc.StatusCode) -> None:
    assert errors.status_for(exc)[0] == code


def test_unexpected_exception_becomes_internal_without_internals() -> None:
    code, message = errors.status_for(KeyError("secret-internal-detail"))
    assert code == grpc.StatusCode.INTERNAL
    assert "secret-internal-detail" not in message
    assert "Traceback" not in message
    assert not errors.is_expected(KeyError("x"))
    assert errors.is_expected(core.NotFound("x"))


def test_size_from_range() -> None:
    rng = csi_pb2.CapacityRange
    mib = 1024**2
    assert validation.size_from_range(None, 2 * mib) == validation.DEFAULT_SIZE_BYTES
    assert validation.size_from_range(rng(required_bytes=8 * mib), 2 * mib) == 8 * mib
    assert validation.size_from_range(rng(required_bytes=1 * mib), 2 * mib) == 2 * mib  # fs minimum
    assert validation.size_from_range(rng(limit_bytes=64 * mib), 2 * mib) == 64 * mib  # default capped
    with pytest.raises(errors.OutOfRange):
        validation.size_from_range(rng(limit_bytes=100 * mib), 300 * mib)
    with pytest.raises(core.InvalidArgument):
        validation.size_from_range(rng(required_bytes=10 * mib, limit_bytes=5 * mib), 0)
    with pytest.raises(core.InvalidArgument):
        validation.size_from_range(rng(required_bytes=-1), 0)


def test_check_name_rules() -> None:
    validation.check_name("pvc-" + "a" * 124)  # exactly 128 bytes
    validation.check_name("Ünïcode name with spaces\tand tab")
    with pytest.raises(core.InvalidArgument):
        validation.check_name("")
    with pytest.raises(core.InvalidArgument):
        validation.check_name("a" * 129)
    with pytest.raises(core.InvalidArgument):
        validation.check_name("bad\x01name")


def test_require_treats_empty_as_missing() -> None:
    request = csi_pb2.ControllerPublishVolumeRequest(volume_id="v", node_id="")
    with pytest.raises(core.InvalidArgument, match="node_id"):
        validation.require(request, "volume_id", "node_id")
    with pytest.raises(core.InvalidArgument, match="volume_capability"):
        validation.require(
            csi_pb2.ControllerPublishVolumeRequest(volume_id="v", node_id="n"), "volume_capability"
        )
    request.node_id = "n"
    request.volume_capability.CopyFrom(csi_pb2.VolumeCapability())  # explicitly set, even if empty
    validation.require(request, "volume_id", "node_id", "volume_capability")


def _cap(mode: int, block: bool = False, fs: str = "") -> csi_pb2.VolumeCapability:
    cap = csi_pb2.VolumeCapability(access_mode=csi_pb2.VolumeCapability.AccessMode(mode=mode))
    if block:
        cap.block.SetInParent()
    else:
        cap.mount.fs_type = fs
    return cap


def test_capabilities_accept_and_refuse() -> None:
    parsed = capabilities.parse_all([_cap(Mode.SINGLE_NODE_WRITER, fs="xfs")])
    assert parsed[0].fs_type == "xfs" and not parsed[0].block
    assert capabilities.parse_all([_cap(Mode.MULTI_NODE_MULTI_WRITER, block=True)])[0].block
    assert capabilities.parse(_cap(Mode.MULTI_NODE_READER_ONLY)).read_only
    with pytest.raises(core.InvalidArgument, match="MULTI_NODE_MULTI_WRITER"):
        capabilities.parse_all([_cap(Mode.MULTI_NODE_MULTI_WRITER)])
    with pytest.raises(core.InvalidArgument, match="mixed"):
        capabilities.parse_all([_cap(Mode.SINGLE_NODE_WRITER), _cap(Mode.SINGLE_NODE_WRITER, block=True)])
    with pytest.raises(core.InvalidArgument, match="access_type"):
        capabilities.parse(csi_pb2.VolumeCapability(access_mode={"mode": Mode.SINGLE_NODE_WRITER}))
    with pytest.raises(core.InvalidArgument, match="access_mode"):
        capabilities.parse(csi_pb2.VolumeCapability(mount={}))
    with pytest.raises(core.InvalidArgument, match="at least one"):
        capabilities.parse_all([])
    with pytest.raises(core.InvalidArgument, match="conflicting"):
        capabilities.parse_all(
            [_cap(Mode.SINGLE_NODE_WRITER, fs="xfs"), _cap(Mode.SINGLE_NODE_WRITER, fs="ext4")]
        )


def test_advertised_capabilities() -> None:
    types = {c.rpc.type for c in capabilities.controller_capabilities()}
    rpc = csi_pb2.ControllerServiceCapability.RPC
    assert {
        rpc.MODIFY_VOLUME,
        rpc.PUBLISH_READONLY,
        rpc.CREATE_DELETE_VOLUME,
        rpc.PUBLISH_UNPUBLISH_VOLUME,
        rpc.LIST_VOLUMES_PUBLISHED_NODES,
        rpc.GET_SNAPSHOT,
    } <= types
    node_types = {c.rpc.type for c in capabilities.node_capabilities()}
    node_rpc = csi_pb2.NodeServiceCapability.RPC
    assert {node_rpc.STAGE_UNSTAGE_VOLUME, node_rpc.SINGLE_NODE_MULTI_WRITER} <= node_types


def test_capability_filesystems_are_the_nodes() -> None:
    assert frozenset(FILESYSTEMS) == capabilities.SUPPORTED_FS
    for fs in ("ext2", "ext3", "vfat"):
        with pytest.raises(core.InvalidArgument, match=fs):
            capabilities.parse_all([_cap(Mode.SINGLE_NODE_WRITER, fs=fs)])
    for fs in FILESYSTEMS:
        assert capabilities.parse_all([_cap(Mode.SINGLE_NODE_WRITER, fs=fs)])[0].fs_type == fs


def test_paginate() -> None:
    items = list(range(5))
    page, token = convert.paginate(items, 2, "", "volume")
    assert page == [0, 1] and token == "2"
    page, token = convert.paginate(items, 0, token, "volume")
    assert page == [2, 3, 4] and token == ""
    assert convert.paginate([], 0, "", "volume") == ([], "")
    with pytest.raises(errors.Aborted):
        convert.paginate(items, 1, "not-a-token", "volume")
    with pytest.raises(errors.Aborted):
        convert.paginate(items, 1, "99", "volume")
    with pytest.raises(core.InvalidArgument):
        convert.paginate(items, -1, "", "volume")


def test_topology_requirement_empty_means_none() -> None:
    assert convert.topology_requirement(csi_pb2.TopologyRequirement()) is None
    req = convert.topology_requirement(
        csi_pb2.TopologyRequirement(requisite=[csi_pb2.Topology(segments={"linbit.com/hostname": "n1"})])
    )
    assert req is not None and req.requisite == ({"linbit.com/hostname": "n1"},)


def test_snapshot_ids_use_the_official_form() -> None:
    assert convert.snapshot_id_for_csi("pvc-1/snap-1") == "InCluster:///pvc-1/snap-1"
    assert convert.snapshot_id_for_csi("InCluster:///pvc-1/snap-1") == "InCluster:///pvc-1/snap-1"


def test_strip_secrets_recurses_and_leaves_the_original() -> None:
    request = csi_pb2.NodeStageVolumeRequest(
        volume_id="v1",
        secrets={"password": "hunter2"},
        volume_capability=_cap(Mode.SINGLE_NODE_WRITER),
    )
    request.volume_capability.mount.mount_flags.append("context=secret-label")
    stripped = strip_secrets(request)
    assert stripped.secrets["password"] != "hunter2"
    assert "context=secret-label" not in stripped.volume_capability.mount.mount_flags
    assert stripped.volume_id == "v1"
    assert request.secrets["password"] == "hunter2"
    assert "hunter2" not in str(loggable(request))


def test_parse_endpoint() -> None:
    assert parse_endpoint("unix:///run/csi/csi.sock").socket_path == "/run/csi/csi.sock"
    assert parse_endpoint("unix:///run/csi/csi.sock").address == "unix:///run/csi/csi.sock"
    assert parse_endpoint("/run/x.sock").address == "unix:///run/x.sock"
    assert parse_endpoint("tcp://127.0.0.1:5000").socket_path is None
    with pytest.raises(core.InvalidArgument):
        parse_endpoint("http://x")
    with pytest.raises(core.InvalidArgument):
        parse_endpoint("unix://")


def test_background_health_answers_fast_while_the_check_hangs() -> None:
    from csi.identity import BackgroundHealth

    release = threading.Event()
    answers = iter([True])

    def check() -> bool:
        value = next(answers, None)
        if value is None:  # every check after the first hangs, like an unreachable controller
            release.wait(10)
            return False
        return value

    health = BackgroundHealth(check, max_age=0.0, first_wait=2.0)
    assert health.ready() is True  # the first answer is awaited
    start = time.monotonic()
    for _ in range(5):
        assert health.ready() is True  # last known answer, while a refresh hangs
    assert time.monotonic() - start < 1.0
    release.set()


def test_background_health_asks_again_after_not_ready_instead_of_waiting_out_max_age() -> None:
    from csi.identity import BackgroundHealth

    answers = iter([False, True])
    health = BackgroundHealth(lambda: next(answers, True), max_age=3600, first_wait=30)
    assert health.ready() is False  # the controller is not there yet
    # it answers now: a Probe after the "no" starts a new check, the one after it sees "yes"
    wait_until(health.ready, timeout=30, interval=0.01, what="ready after the controller answered")


def test_background_health_reports_not_ready_when_the_check_fails() -> None:
    from csi.identity import BackgroundHealth

    def check() -> bool:
        raise RuntimeError("controller exploded")

    assert BackgroundHealth(check, first_wait=2.0).ready() is False
