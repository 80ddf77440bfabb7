"""VolumeService against the emulator: every operation and every typed error.

The emulator runs the local node (named after this host) plus the virtual nodes node-b
and node-c, in its default DRBD-shaped mode, with real loop devices behind the device
paths of resources on the local node.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
import requests

from plugin.config import Config
from plugin.errors import (
    AlreadyExists,
    Busy,
    FailedPrecondition,
    InUse,
    InvalidArgument,
    NodeOffline,
    NoSpace,
    NotFound,
    OperationFailed,
    Unavailable,
)
from plugin.linstor.client import LinstorClient
from plugin.models import TopologyRequirement, Volume
from plugin.params.groups import resource_group_name
from plugin.params.model import VolumeParams
from plugin.volume_records import ATTACHED_BY_PLUGIN, NAME, attach_pending_key
from plugin.volumes.service import HEALTH_CACHE_SECONDS, VolumeService
from testkit.waiting import wait_until
from tests.blockio import read_at, write_at
from tests.conftest import EmulatorProcess

pytestmark = pytest.mark.root

MIB = 1024 * 1024
LOCAL = socket.gethostname().split(".")[0]
HOST = "linbit.com/hostname"


def service_for(emu: EmulatorProcess) -> VolumeService:
    config = Config(controllers=(emu.url,), node_name=LOCAL, read_timeout=60.0, config_file=None)
    return VolumeService(LinstorClient(config), config)


@pytest.fixture
def svc(emulator: EmulatorProcess) -> VolumeService:
    return service_for(emulator)


def unique(prefix: str = "vol") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def calls(svc: VolumeService, action: Callable[[], Any]) -> tuple[Any, int]:
    before = svc.client.request_count
    result = action()
    return result, svc.client.request_count - before


ON_LOCAL = VolumeParams(place_count=1, fs_type=None, nodes=(LOCAL,))
# The emulator formats volumes of virtual nodes through a short-lived loop device; tests
# where the filesystem matters place on the local node, the others use raw volumes.
EXT4 = VolumeParams(place_count=1, fs_type="ext4", nodes=(LOCAL,))
ANY = VolumeParams(place_count=1, fs_type=None)


# ----------------------------------------------------------------------------- create


def test_create_with_known_group_is_at_most_two_calls_and_idempotent(svc: VolumeService) -> None:
    svc.create_volume(unique(), 16 * MIB, EXT4)  # makes and remembers the resource group
    name = unique()
    volume, used = calls(svc, lambda: svc.create_volume(name, 16 * MIB, EXT4))
    assert used <= 2
    assert volume.name == name and volume.size_bytes == 16 * MIB
    assert volume.fs_type == "ext4"
    assert volume.resource_group == resource_group_name(EXT4)
    assert len(volume.diskful_nodes) == 1
    assert volume.properties[NAME] == name
    again = svc.create_volume(name, 16 * MIB, EXT4)
    assert again.id == volume.id and again.size_bytes == volume.size_bytes


def test_create_with_other_size_fs_or_parameters_is_already_exists(svc: VolumeService) -> None:
    name = unique()
    svc.create_volume(name, 16 * MIB, EXT4)
    with pytest.raises(AlreadyExists, match="size"):
        svc.create_volume(name, 32 * MIB, EXT4)
    with pytest.raises(AlreadyExists, match="filesystem"):
        svc.create_volume(name, 16 * MIB, VolumeParams(place_count=1, fs_type=None, nodes=(LOCAL,)))
    other = VolumeParams(place_count=1, fs_type="ext4", nodes=(LOCAL,), replicas_on_same=("Aux/zone",))
    with pytest.raises(AlreadyExists, match="parameters"):
        svc.create_volume(name, 16 * MIB, other)
    with pytest.raises(NotFound):  # refused before anything was made for the other parameters
        svc.client.get_resource_group(resource_group_name(other))


def test_a_foreign_definition_without_a_volume_is_already_exists_at_once(svc: VolumeService) -> None:
    name = unique("foreign")
    svc.client.create_resource_definition(name, "DfltRscGrp")  # someone else's, holds no volume
    started = time.monotonic()
    with pytest.raises(AlreadyExists, match="holds no volume"):
        svc.create_volume(name, 8 * MIB, ANY)
    assert time.monotonic() - started < 5  # nothing to wait for: it is not being created
    assert svc.client.list_resource_definitions([name])[0].volume_definitions == ()


def test_size_is_rounded_up_to_kib_and_to_the_filesystem_minimum(svc: VolumeService) -> None:
    odd = svc.create_volume(unique(), 5 * MIB + 1, EXT4)
    assert odd.size_bytes == 5 * MIB + 1024
    tiny = svc.create_volume(unique(), 1, EXT4)
    assert tiny.size_bytes == 2 * MIB  # ext4's minimum


def test_names_that_are_not_linstor_names_are_mapped(svc: VolumeService) -> None:
    name = f"My Volume/{uuid.uuid4().hex[:6]} with spaces"
    volume = svc.create_volume(name, 8 * MIB, ANY)
    assert volume.id != name and volume.name == name
    found = svc.find_volume(name)
    assert found is not None and found.id == volume.id
    assert svc.find_volume(name + "x") is None


def test_failed_placement_leaves_nothing(svc: VolumeService) -> None:
    name = unique()
    params = VolumeParams(place_count=5, fs_type="ext4")
    with pytest.raises(NoSpace, match=name):
        svc.create_volume(name, 8 * MIB, params)
    assert svc.find_volume(name) is None
    assert svc.client.list_resource_definitions([name]) == []


def test_a_failed_placement_says_what_was_asked(svc: VolumeService) -> None:
    """LINSTOR's "Not enough available nodes" alone hides a mistyped pool or node name."""
    name = unique()
    with pytest.raises(InvalidArgument) as caught:
        svc.create_volume(
            name, 8 * MIB, VolumeParams(place_count=2, fs_type=None, storage_pools=("no-such-pool",))
        )
    assert "8 MiB, 2 replicas in storage pool no-such-pool" in caught.value.message
    assert "storage pool no-such-pool does not exist on any node (storage pools: DfltStorPool)" in str(
        caught.value
    )
    with pytest.raises(InvalidArgument) as other:
        svc.create_volume(name, 8 * MIB, VolumeParams(fs_type=None, nodes=("node-b", "no-such-node")))
    assert "2 replicas on node-b, no-such-node" in other.value.message
    assert "node no-such-node is not a LINSTOR node (LINSTOR nodes: " in other.value.message
    assert svc.client.list_resource_definitions([name]) == []


def test_too_many_replicas_is_named_with_one_extra_read(svc: VolumeService) -> None:
    name = unique()
    params = VolumeParams(place_count=4, fs_type=None)
    svc.groups.ensure(
        params, resource_group_name(params)
    )  # a known group: the create is one spawn, then one read of the pools
    with pytest.raises(NoSpace) as caught:
        svc.create_volume(name, 8 * MIB, params)
    assert "4 replicas asked for, but only 3 nodes have a storage pool" in caught.value.message
    before = svc.client.request_count
    with pytest.raises(NoSpace):
        svc.create_volume(name, 8 * MIB, params)
    assert svc.client.request_count - before == 2  # spawn, then GET /v1/view/storage-pools
    assert svc.client.list_resource_definitions([name]) == []


def test_a_size_no_pool_holds_is_named_in_human_units(svc: VolumeService, emulator: EmulatorProcess) -> None:
    for node in (LOCAL, "node-b", "node-c"):
        answer = emulator.control(
            f"pools/{node}/DfltStorPool/capacity",
            {"total_kib": 200 * 1024 * 1024, "free_kib": 100 * 1024 * 1024},
        )
        assert answer.ok, answer.text
    name = unique()
    with pytest.raises(NoSpace) as caught:
        svc.create_volume(name, 10 * 1024**4, VolumeParams(place_count=1, fs_type=None))
    message = caught.value.message
    assert "(10 TiB, 1 replica)" in message
    assert (
        "no storage pool has 10 TiB free; the most free space is 100 GiB in storage pool DfltStorPool"
        in message
    )
    assert "10995116277760" not in message
    assert svc.client.list_resource_definitions([name]) == []


def test_bad_requests_change_nothing(svc: VolumeService) -> None:
    before = len(svc.list_volumes())
    with pytest.raises(InvalidArgument, match="negative"):
        svc.create_volume(unique(), -1, ANY)
    with pytest.raises(InvalidArgument, match="content source"):
        svc.create_volume(unique(), MIB, ANY, source="tape:1")
    with pytest.raises(InvalidArgument, match="name"):
        svc.create_volume("", MIB, ANY)
    with pytest.raises(InvalidArgument, match="limit"):
        svc.create_volume(unique(), 1 << 62, ANY)
    assert len(svc.list_volumes()) == before


def test_ids_that_cannot_exist(svc: VolumeService) -> None:
    for bad in ("9-starts-with-digit", "has space", "x" * 60, ""):
        with pytest.raises(NotFound):
            svc.get_volume(bad)
        with pytest.raises(NotFound):
            svc.attach(bad, LOCAL)
        with pytest.raises(NotFound):
            svc.expand_volume(bad, MIB)
        with pytest.raises(NotFound):
            svc.create_snapshot(bad, "s")
        svc.delete_volume(bad)
        svc.detach(bad, LOCAL)
        assert svc.list_snapshots(bad) == []
        with pytest.raises(NotFound):
            svc.get_snapshot(f"InCluster:///{bad}/snap")
        svc.delete_snapshot(f"InCluster:///{bad}/snap")
    volume = svc.create_volume(unique(), 8 * MIB, ANY)
    with pytest.raises(NotFound):
        svc.attach(volume.id, "bad node!")
    svc.detach(volume.id, "bad node!")


def test_pvc_metadata_is_kept_and_names_the_volume_when_asked(svc: VolumeService) -> None:
    pvc = unique("data")
    extra = {
        "csi.storage.k8s.io/pvc/name": pvc,
        "csi.storage.k8s.io/pvc/namespace": "team-a",
        "csi.storage.k8s.io/provisioner-secret-name": "creds",
    }
    plain = svc.create_volume(unique("pvc"), 8 * MIB, VolumeParams(place_count=1, fs_type=None, extra=extra))
    assert plain.properties["Aux/csi.storage.k8s.io/pvc/name"] == pvc
    assert not [k for k in plain.properties if "secret" in k]
    named = VolumeParams(place_count=1, fs_type=None, use_pvc_name=True, extra=extra)
    volume = svc.create_volume(unique("pvc"), 8 * MIB, named)
    assert volume.id == f"team-a-{pvc}"


def test_manual_placement_with_client_nodes(svc: VolumeService) -> None:
    params = VolumeParams(place_count=1, fs_type=None, nodes=("node-b",), client_nodes=("node-c",))
    volume = svc.create_volume(unique(), 8 * MIB, params)
    assert volume.diskful_nodes == ("node-b",)
    assert {(r.node, r.diskless) for r in volume.replicas} == {("node-b", False), ("node-c", True)}


def test_manual_placement_on_unknown_node_is_refused_and_leaves_nothing(svc: VolumeService) -> None:
    name = unique()
    with pytest.raises(InvalidArgument, match="node no-such-node is not a LINSTOR node"):
        svc.create_volume(name, 8 * MIB, VolumeParams(place_count=1, fs_type=None, nodes=("no-such-node",)))
    assert svc.find_volume(name) is None


def test_topology_requisite_and_preferred(svc: VolumeService) -> None:
    top = TopologyRequirement(requisite=({HOST: "node-c"},), preferred=({HOST: "node-c"},))
    assert svc.create_volume(unique(), 8 * MIB, ANY, topology=top).diskful_nodes == ("node-c",)
    top = TopologyRequirement(
        requisite=({HOST: "node-b"}, {HOST: "node-c"}), preferred=({HOST: "node-b"}, {HOST: "node-c"})
    )
    assert svc.create_volume(unique(), 8 * MIB, ANY, topology=top).diskful_nodes == ("node-b",)
    two = VolumeParams(place_count=2, fs_type=None)
    top = TopologyRequirement(requisite=({HOST: "node-c"},))
    volume = svc.create_volume(unique(), 8 * MIB, two, topology=top)
    assert "node-c" in volume.diskful_nodes and len(volume.diskful_nodes) == 2
    # a host that is no LINSTOR node (a client-only machine) can still reach a volume placed elsewhere
    top = TopologyRequirement(
        requisite=({HOST: "client-only-host"},), preferred=({HOST: "client-only-host"},)
    )
    assert len(svc.create_volume(unique(), 8 * MIB, ANY, topology=top).diskful_nodes) == 1
    local_only = VolumeParams(place_count=1, fs_type=None, allow_remote_volume_access=False)
    name = unique()
    with pytest.raises((NotFound, NoSpace)):
        svc.create_volume(name, 8 * MIB, local_only, topology=top)
    assert svc.find_volume(name) is None
    # an empty requirement (Nomad) means anywhere
    assert len(svc.create_volume(unique(), 8 * MIB, ANY, topology=TopologyRequirement()).diskful_nodes) == 1


def test_topology_by_node_property_and_pool(svc: VolumeService, emulator: EmulatorProcess) -> None:
    answer = requests.put(
        f"{emulator.url}/v1/nodes/node-b", json={"override_props": {"Aux/zone": "z1"}}, timeout=10
    )
    assert answer.ok
    top = TopologyRequirement(requisite=({"zone": "z1", "linbit.com/sp-DfltStorPool": "true"},))
    assert svc.create_volume(unique(), 8 * MIB, ANY, topology=top).diskful_nodes == ("node-b",)
    segments = svc.node_topology("node-b")
    assert segments[HOST] == "node-b"
    assert segments["linbit.com/sp-DfltStorPool"] == "true"
    assert segments["zone"] == "z1"
    with pytest.raises(NotFound):
        svc.node_topology("no-such-node")


def test_concurrent_creates_of_one_name_converge(emulator: EmulatorProcess) -> None:
    services = [service_for(emulator) for _ in range(4)]  # separate processes' worth of clients
    name = unique()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: services[i % 4].create_volume(name, 8 * MIB, ANY), range(8)))
    assert {v.id for v in results} == {results[0].id}
    assert len(services[0].client.list_resource_definitions([results[0].id])) == 1


# ----------------------------------------------------------------------------- read


def test_get_list_and_find(svc: VolumeService) -> None:
    volume = svc.create_volume(unique(), 8 * MIB, ANY)
    got = svc.get_volume(volume.id)
    assert got.id == volume.id and got.replicas and got.created_at is not None
    listed, used = calls(svc, lambda: svc.list_volumes())
    assert used == 1
    assert volume.id in {v.id for v in listed}
    assert all(v.replicas == () for v in listed)
    listed, used = calls(svc, lambda: svc.list_volumes(with_replicas=True))
    assert used == 2
    assert next(v for v in listed if v.id == volume.id).replicas
    with pytest.raises(NotFound):
        svc.get_volume(unique("missing"))
    assert svc.find_volume(unique("missing")) is None


def shape(volume: Volume) -> tuple[str, int, list[tuple[str, bool]]]:
    return volume.id, volume.size_bytes, sorted((r.node, r.diskless) for r in volume.replicas)


def test_list_read_in_small_pages_is_the_same_list(emulator: EmulatorProcess) -> None:
    svc = service_for(emulator)
    for _ in range(3):
        svc.create_volume(unique(), 8 * MIB, ANY)
    whole = svc.list_volumes(with_replicas=True)
    definitions = len(svc.client.list_resource_definitions())
    resources = len(svc.client.view_resources())
    config = replace(svc.config, list_page_size=8)  # resources: 4 per call
    small = VolumeService(LinstorClient(config), config)
    listed, used = calls(small, lambda: small.list_volumes(with_replicas=True))
    assert [shape(v) for v in listed] == [shape(v) for v in whole]
    assert [v.id for v in listed] == sorted(v.id for v in whole) and all(v.replicas for v in listed)
    assert used == paged_reads(definitions, 8) + paged_reads(resources, 4)
    listed, used = calls(small, lambda: small.list_volumes())
    assert [v.id for v in listed] == [v.id for v in whole] and used == paged_reads(definitions, 8)


def paged_reads(items: int, size: int) -> int:
    """Reads of a list in pages of ``size``: one per page, the last one short (maybe empty),
    and a guess at the next page when a partly filled last page came after full ones."""
    return items // size + 1 + (1 if items > size and items % size else 0)


# ----------------------------------------------------------------------------- expand


def test_expand_grows_only(svc: VolumeService) -> None:
    volume = svc.create_volume(unique(), 8 * MIB, ON_LOCAL)
    grown = svc.expand_volume(volume.id, 12 * MIB + 1)
    assert grown.size_bytes == 12 * MIB + 1024
    assert svc.get_volume(volume.id).size_bytes == 12 * MIB + 1024
    device = svc.attach(volume.id, LOCAL).device_path
    with open(device, "rb") as handle:
        assert handle.seek(0, os.SEEK_END) >= 12 * MIB
    assert svc.expand_volume(volume.id, 12 * MIB + 1).size_bytes == grown.size_bytes  # same size: no-op
    with pytest.raises(InvalidArgument, match="shrink"):
        svc.expand_volume(volume.id, 4 * MIB)
    with pytest.raises(NotFound):
        svc.expand_volume(unique("missing"), 16 * MIB)


def test_full_pool_is_no_space_and_shows_in_capacity(svc: VolumeService, emulator: EmulatorProcess) -> None:
    answer = emulator.control(
        "pools/node-b/DfltStorPool/capacity", {"total_kib": 1024 * 1024, "free_kib": 1024}
    )
    assert answer.ok, answer.text
    assert svc.capacity_bytes(ANY, {HOST: "node-b"}) == 1024 * 1024
    name = unique()
    with pytest.raises(NoSpace):
        svc.create_volume(name, 64 * MIB, VolumeParams(place_count=1, fs_type=None, nodes=("node-b",)))
    assert svc.find_volume(name) is None


# ----------------------------------------------------------------------------- attach, detach


def test_attach_diskless_where_no_replica_and_detach_removes_it(svc: VolumeService) -> None:
    volume = svc.create_volume(
        unique(), 8 * MIB, VolumeParams(place_count=1, fs_type=None, nodes=("node-b",))
    )
    attached = svc.attach(volume.id, LOCAL)
    assert attached.diskless and attached.created_by_attach
    assert os.path.exists(attached.device_path)
    again = svc.attach(volume.id, LOCAL)  # idempotent
    assert again.device_path == attached.device_path and again.created_by_attach
    resource = svc.client.get_resource(volume.id, LOCAL)
    assert resource.props[ATTACHED_BY_PLUGIN] == "true"
    svc.detach(volume.id, LOCAL)
    with pytest.raises(NotFound):
        svc.client.get_resource(volume.id, LOCAL)
    svc.detach(volume.id, LOCAL)  # already gone: fine
    assert svc.get_volume(volume.id).diskful_nodes == ("node-b",)


def test_attach_where_a_replica_is_keeps_it_on_detach(svc: VolumeService) -> None:
    volume = svc.create_volume(unique(), 8 * MIB, ON_LOCAL)
    attached = svc.attach(volume.id, LOCAL)
    assert not attached.diskless and not attached.created_by_attach
    svc.detach(volume.id, LOCAL)
    assert svc.get_volume(volume.id).diskful_nodes == (LOCAL,)


def test_detach_never_removes_diskless_replicas_it_did_not_make(svc: VolumeService) -> None:
    params = VolumeParams(place_count=1, fs_type=None, nodes=("node-b",), client_nodes=("node-c",))
    volume = svc.create_volume(unique(), 8 * MIB, params)
    svc.detach(volume.id, "node-c")
    assert any(r.node == "node-c" for r in svc.get_volume(volume.id).replicas)


def test_attach_errors(svc: VolumeService, emulator: EmulatorProcess) -> None:
    volume = svc.create_volume(
        unique(), 8 * MIB, VolumeParams(place_count=1, fs_type=None, nodes=("node-b",))
    )
    with pytest.raises(NotFound, match="no-such-node"):
        svc.attach(volume.id, "no-such-node")
    with pytest.raises(NotFound):
        svc.attach(unique("missing"), LOCAL)
    assert emulator.control("nodes/node-c/offline").ok
    try:
        # LINSTOR refuses with "no stor pool" (404); the plugin says what that means here.
        with pytest.raises(NodeOffline, match="node-c: the node is offline in LINSTOR") as caught:
            svc.attach(volume.id, "node-c")
        assert "bring its satellite back online" in str(caught.value)
        assert "not found" not in str(caught.value)
    finally:
        emulator.control("nodes/node-c/online")
    # No leftover: neither a resource nor the pending-attach note.
    assert all(r.node != "node-c" for r in svc.get_volume(volume.id).replicas)


def test_detach_of_a_busy_attachment_is_in_use(svc: VolumeService, emulator: EmulatorProcess) -> None:
    volume = svc.create_volume(
        unique(), 8 * MIB, VolumeParams(place_count=1, fs_type=None, nodes=("node-b",))
    )
    svc.attach(volume.id, "node-c")
    assert emulator.control(f"resources/{volume.id}/node-c/in_use", {"in_use": True}).ok
    with pytest.raises(InUse, match="node-c"):
        svc.detach(volume.id, "node-c")
    assert emulator.control(f"resources/{volume.id}/node-c/in_use", {"in_use": False}).ok
    svc.detach(volume.id, "node-c")


def test_an_attach_whose_answer_was_lost_is_undone_by_detach(emulator: EmulatorProcess) -> None:
    config = Config(controllers=(emulator.url,), node_name=LOCAL, read_timeout=0.5, config_file=None)
    svc = VolumeService(LinstorClient(config), config)
    volume = svc.create_volume(
        unique(), 8 * MIB, VolumeParams(place_count=1, fs_type=None, nodes=("node-b",))
    )
    assert emulator.control("latency", {"ms": 1200, "paths": "/make-available$"}).ok
    try:
        with pytest.raises(Unavailable, match="may or may not"):
            svc.attach(volume.id, "node-c")
    finally:
        emulator.control("latency", {"ms": 0})
    wait_until(
        lambda: "node-c" in {r.node for r in svc.get_volume(volume.id).replicas},
        timeout=10,
        interval=0.1,
        what="the delayed make-available",
    )
    svc.detach(volume.id, "node-c")  # the CO gave up on the publish and unpublishes
    assert "node-c" not in {r.node for r in svc.get_volume(volume.id).replicas}
    assert not [k for k in svc.get_volume(volume.id).properties if "attach-pending" in k]


# ----------------------------------------------------------------------------- delete


def test_delete_removes_everything_and_missing_is_fine(svc: VolumeService) -> None:
    volume = svc.create_volume(
        unique(), 8 * MIB, VolumeParams(place_count=1, fs_type=None, nodes=("node-b",))
    )
    svc.attach(volume.id, LOCAL)  # a diskless resource, removed first
    svc.delete_volume(volume.id)
    assert svc.client.list_resource_definitions([volume.id]) == []
    assert svc.client.view_resources([volume.id]) == []
    with pytest.raises(NotFound):
        svc.get_volume(volume.id)
    assert calls(svc, lambda: svc.delete_volume(volume.id))[1] == 2  # WARN_NOT_FOUND: done
    svc.delete_volume(unique("never-existed"))


def test_delete_in_the_steady_state_is_two_rest_calls(svc: VolumeService) -> None:
    volume = svc.create_volume(unique(), 8 * MIB, VolumeParams(place_count=1, fs_type=None))
    _, rest_calls = calls(svc, lambda: svc.delete_volume(volume.id))
    assert rest_calls == 2  # the resources view (in use?) and the DELETE, which refuses snapshots itself
    assert svc.client.list_resource_definitions([volume.id]) == []


def test_delete_in_use_is_refused_naming_the_node(svc: VolumeService, emulator: EmulatorProcess) -> None:
    volume = svc.create_volume(
        unique(), 8 * MIB, VolumeParams(place_count=1, fs_type=None, nodes=("node-b",))
    )
    assert emulator.control(f"resources/{volume.id}/node-b/in_use", {"in_use": True}).ok
    with pytest.raises(InUse, match="node-b") as info:
        svc.delete_volume(volume.id)
    assert info.value.details["nodes"] == ["node-b"]
    assert svc.get_volume(volume.id).diskful_nodes == ("node-b",)  # nothing changed
    assert emulator.control(f"resources/{volume.id}/node-b/in_use", {"in_use": False}).ok
    svc.delete_volume(volume.id)


def test_delete_with_snapshots_is_refused_naming_them(svc: VolumeService) -> None:
    volume = svc.create_volume(unique(), 8 * MIB, ON_LOCAL)
    svc.attach(volume.id, "node-b")
    snap = svc.create_snapshot(volume.id, unique("snap"))
    with pytest.raises(FailedPrecondition, match=snap.name) as info:
        svc.delete_volume(volume.id)
    assert info.value.details["snapshots"] == [snap.name]
    assert len(svc.get_volume(volume.id).replicas) == 2  # nothing changed, not even the diskless one
    svc.delete_snapshot(snap.id)
    svc.delete_volume(volume.id)


def test_delete_with_snapshots_and_no_attachment_is_refused_by_linstor_naming_them(
    svc: VolumeService,
) -> None:
    volume = svc.create_volume(unique(), 8 * MIB, ON_LOCAL)
    snap = svc.create_snapshot(volume.id, unique("snap"))
    with pytest.raises(FailedPrecondition, match=snap.name) as info:
        svc.delete_volume(volume.id)
    assert info.value.details["snapshots"] == [snap.name]
    assert svc.get_volume(volume.id).diskful_nodes == (LOCAL,)  # nothing changed
    svc.delete_snapshot(snap.id)
    svc.delete_volume(volume.id)


# ----------------------------------------------------------------------------- snapshots


def test_snapshot_lifecycle(svc: VolumeService) -> None:
    volume = svc.create_volume(unique(), 8 * MIB, ON_LOCAL)
    name = unique("snap")
    snap = svc.create_snapshot(volume.id, name)
    assert snap.id == f"InCluster:///{volume.id}/{snap.name}"
    assert snap.ready and snap.size_bytes == 8 * MIB and snap.volume_id == volume.id
    assert snap.created_at is not None
    assert svc.create_snapshot(volume.id, name).id == snap.id  # idempotent
    other = svc.create_volume(unique(), 8 * MIB, ON_LOCAL)
    with pytest.raises(AlreadyExists, match=volume.id):
        svc.create_snapshot(other.id, name)
    assert svc.get_snapshot(snap.id) == snap
    assert svc.get_snapshot(f"{volume.id}/{snap.name}").id == snap.id
    assert [s.id for s in svc.list_snapshots(volume.id)] == [snap.id]
    assert snap.id in {s.id for s in svc.list_snapshots()}
    assert svc.list_snapshots(unique("missing")) == []
    svc.delete_snapshot(snap.id)
    svc.delete_snapshot(snap.id)  # missing: fine
    with pytest.raises(NotFound):
        svc.get_snapshot(snap.id)
    with pytest.raises(InvalidArgument, match="S3"):
        svc.get_snapshot("S3://remote/vol/snap")


def test_snapshot_errors(svc: VolumeService, emulator: EmulatorProcess) -> None:
    with pytest.raises(NotFound):
        svc.create_snapshot(unique("missing"), "s")
    volume = svc.create_volume(
        unique(), 8 * MIB, VolumeParams(place_count=1, fs_type=None, nodes=("node-b",))
    )
    assert emulator.control("nodes/node-b/offline").ok
    try:
        with pytest.raises(NodeOffline):
            svc.create_snapshot(volume.id, unique("snap"))
    finally:
        emulator.control("nodes/node-b/online")


def test_restore_from_snapshot_keeps_data_and_grows(svc: VolumeService) -> None:
    volume = svc.create_volume(unique(), 8 * MIB, ON_LOCAL)
    device = svc.attach(volume.id, LOCAL).device_path
    write_at(device, 4096, b"restore me")
    snap = svc.create_snapshot(volume.id, unique("snap"))
    write_at(device, 4096, b"after snap")
    name = unique("restored")
    source = f"snapshot:{snap.id}"
    restored = svc.create_volume(name, 12 * MIB, ON_LOCAL, source=source)
    assert restored.name == name and restored.size_bytes == 12 * MIB and restored.source == source
    assert restored.diskful_nodes
    restored_device = svc.attach(restored.id, LOCAL).device_path
    assert read_at(restored_device, 4096, 10) == b"restore me"
    assert svc.create_volume(name, 12 * MIB, ON_LOCAL, source=source).id == restored.id  # idempotent
    with pytest.raises(AlreadyExists, match="source"):
        svc.create_volume(name, 12 * MIB, ON_LOCAL)
    with pytest.raises(InvalidArgument, match="smaller"):
        svc.create_volume(unique(), 4 * MIB, ON_LOCAL, source=source)
    with pytest.raises(NotFound):
        svc.create_volume(unique(), 8 * MIB, ON_LOCAL, source=f"snapshot:{volume.id}/no-such-snap")
    # restored volumes are independent: the snapshot can go, then the source
    svc.delete_snapshot(snap.id)
    svc.delete_volume(volume.id)
    assert svc.get_volume(restored.id).size_bytes == 12 * MIB


def test_copies_keep_the_source_content_kind(svc: VolumeService) -> None:
    raw = svc.create_volume(unique(), 8 * MIB, ON_LOCAL)
    raw_snap = svc.create_snapshot(raw.id, unique("snap"))
    formatted = svc.create_volume(unique(), 16 * MIB, EXT4)
    name = unique("copy")
    with pytest.raises(InvalidArgument, match="raw block"):
        svc.create_volume(name, 8 * MIB, EXT4, source=f"snapshot:{raw_snap.id}")
    with pytest.raises(InvalidArgument, match="ext4 filesystem"):
        svc.create_volume(name, 16 * MIB, ON_LOCAL, source=f"volume:{formatted.id}")
    xfs = VolumeParams(place_count=1, fs_type="xfs", nodes=(LOCAL,))
    with pytest.raises(InvalidArgument, match="ext4 filesystem"):
        svc.create_volume(name, 300 * MIB, xfs, source=f"volume:{formatted.id}")
    assert svc.client.list_resource_definitions([name]) == []
    # the same kind works, and the filesystem LINSTOR made on the source comes along
    snap = svc.create_snapshot(formatted.id, unique("snap"))
    restored = svc.create_volume(name, 16 * MIB, EXT4, source=f"snapshot:{snap.id}")
    assert restored.fs_type == "ext4"
    device = svc.attach(restored.id, LOCAL).device_path
    probe = subprocess.run(
        ["blkid", "-p", "-o", "value", "-s", "TYPE", device], capture_output=True, text=True
    )
    assert probe.stdout.strip() == "ext4"


def _clone_and_check(svc: VolumeService) -> None:
    volume = svc.create_volume(unique(), 8 * MIB, ON_LOCAL)
    write_at(svc.attach(volume.id, LOCAL).device_path, 8192, b"clone me")
    svc.client.modify_resource_definition(volume.id, {attach_pending_key("node-c"): "true"})
    name = unique("clone")
    clone = svc.create_volume(name, 8 * MIB, ON_LOCAL, source=f"volume:{volume.id}")
    assert clone.name == name and clone.source == f"volume:{volume.id}"
    assert attach_pending_key("node-c") not in clone.properties  # a note about the source's resources
    assert read_at(svc.attach(clone.id, LOCAL).device_path, 8192, 8) == b"clone me"
    assert svc.find_volume(name) is not None
    # the source keeps its own identity, and no temporary snapshot is left behind
    assert svc.get_volume(volume.id).name != name
    assert svc.list_snapshots(volume.id) == []
    with pytest.raises(NotFound):
        svc.create_volume(unique(), 8 * MIB, ON_LOCAL, source="volume:no-such-volume")


def test_clone(svc: VolumeService) -> None:
    _clone_and_check(svc)


def test_clone_falls_back_to_snapshot_when_the_pool_cannot_clone(
    emulator_factory: Any, root_loop: None
) -> None:
    emu = emulator_factory(nodes=("node-b",), extra_args=("--strict-clone",), name="strict")
    _clone_and_check(service_for(emu))


# ----------------------------------------------------------------------------- capacity, health, outages


def test_capacity(svc: VolumeService) -> None:
    everywhere = svc.capacity_bytes(ANY)
    on_b = svc.capacity_bytes(ANY, {HOST: "node-b"})
    assert 0 < on_b < everywhere
    assert svc.capacity_bytes(VolumeParams(storage_pools=("NoSuchPool",))) == 0
    assert svc.capacity_bytes(ANY, {HOST: "no-such-node"}) == 0
    over = VolumeParams(overprovision=2.0)
    overprovisioned = svc.capacity_bytes(over, {HOST: "node-b"})
    assert overprovisioned > on_b
    svc.create_volume(unique(), 64 * MIB, VolumeParams(place_count=1, fs_type=None, nodes=("node-b",)))
    assert svc.capacity_bytes(over, {HOST: "node-b"}) == overprovisioned - 64 * MIB  # reserved by the volume


def test_outage_unavailable_then_back(emulator: EmulatorProcess) -> None:
    now = [0.0]
    config = Config(controllers=(emulator.url,), node_name=LOCAL, config_file=None)
    svc = VolumeService(LinstorClient(config), config, clock=lambda: now[0])
    assert svc.healthy()
    svc.create_volume(unique(), 8 * MIB, ANY)
    emulator.outage(5)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        svc.create_volume(unique(), 8 * MIB, ANY)
    with pytest.raises(Unavailable):
        svc.list_volumes()
    assert time.monotonic() - started < 2.0  # fast, not a hang until some timeout
    assert svc.healthy()  # still the cached answer from before the outage
    now[0] += HEALTH_CACHE_SECONDS  # the cached health answer expires
    assert not svc.healthy()

    def healthy_again() -> bool:
        now[0] += HEALTH_CACHE_SECONDS
        return svc.healthy()

    wait_until(healthy_again, interval=0.5, what="the emulator's return")
    assert svc.create_volume(unique(), 8 * MIB, ANY).size_bytes == 8 * MIB


def test_explicit_group_and_property_pass_through(svc: VolumeService) -> None:
    group = unique("rg")
    params = VolumeParams(
        resource_group=group,
        place_count=1,
        fs_type=None,
        properties=(("DrbdOptions/PeerDevice/c-max-rate", "4096"), ("Aux/team", "a")),
    )
    volume = svc.create_volume(unique(), 8 * MIB, params)
    assert volume.resource_group == group
    props = svc.client.get_resource_group(group).props
    assert props["DrbdOptions/PeerDevice/c-max-rate"] == "4096" and props["Aux/team"] == "a"
    fresh = service_for_client(svc)
    conflicting = VolumeParams(resource_group=group, place_count=1, properties=(("Aux/team", "b"),))
    with pytest.raises(FailedPrecondition, match="Aux/team"):
        fresh.create_volume(unique(), 8 * MIB, conflicting)


def service_for_client(svc: VolumeService) -> VolumeService:
    """A second service (another process): it does not know the groups the first one made."""
    return VolumeService(LinstorClient(svc.config), svc.config)


def test_a_volume_cloned_by_someone_else_is_not_taken_over(svc: VolumeService) -> None:
    source = svc.create_volume(unique(), 8 * MIB, ON_LOCAL)
    target = unique("clone")
    svc.client.clone(source.id, target)  # started by someone else, still copying
    try:
        svc.create_volume(target, 8 * MIB, ON_LOCAL, source=f"volume:{source.id}")
    except Busy:
        pass  # caught while LINSTOR was still copying
    except AlreadyExists:
        pass  # the copy finished first: it is someone else's volume with other properties
    else:
        pytest.fail("a volume made by someone else's clone must not be taken over")


def test_many_threads_share_one_service(svc: VolumeService) -> None:
    names = [unique() for _ in range(12)]
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            volume = svc.create_volume(name, 8 * MIB, ANY)
            svc.expand_volume(volume.id, 12 * MIB)
            svc.delete_volume(volume.id)
        except BaseException as exc:  # collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert not {n for n in names} & {v.name for v in svc.list_volumes()}


# ----------------------------------------------------------------------------- failures mid-way


def inject(emu: EmulatorProcess, method: str, path_regex: str, ret_code: int, status: int = 500) -> None:
    answer = emu.control(
        "errors", {"method": method, "path_regex": path_regex, "ret_code": ret_code, "status": status}
    )
    assert answer.ok, answer.text


def test_unexpected_linstor_failure_is_operation_failed_and_leaves_nothing(
    svc: VolumeService, emulator: EmulatorProcess
) -> None:
    svc.create_volume(unique(), 8 * MIB, ANY)  # the group exists
    inject(emulator, "POST", r"/spawn$", 998)
    name = unique()
    with pytest.raises(OperationFailed):
        svc.create_volume(name, 8 * MIB, ANY)
    assert svc.find_volume(name) is None
    assert svc.create_volume(name, 8 * MIB, ANY).name == name  # the injected failure was one-off


def test_failed_restore_step_rolls_back(svc: VolumeService, emulator: EmulatorProcess) -> None:
    volume = svc.create_volume(unique(), 8 * MIB, ON_LOCAL)
    snap = svc.create_snapshot(volume.id, unique("snap"))
    inject(emulator, "POST", r"/snapshot-restore-resource/", 206)
    name = unique("restored")
    with pytest.raises(NoSpace):
        svc.create_volume(name, 8 * MIB, ON_LOCAL, source=f"snapshot:{snap.id}")
    assert svc.client.list_resource_definitions([name]) == []
    inject(emulator, "POST", r"/autoplace$", 996)
    with pytest.raises(NoSpace):
        svc.create_volume(name, 8 * MIB, ON_LOCAL, source=f"volume:{volume.id}")
    assert svc.client.list_resource_definitions([name]) == []
    restored = svc.create_volume(name, 8 * MIB, ON_LOCAL, source=f"snapshot:{snap.id}")
    assert restored.name == name


def test_a_concurrent_multi_step_create_elsewhere_is_busy(
    svc: VolumeService, emulator: EmulatorProcess
) -> None:
    volume = svc.create_volume(unique(), 8 * MIB, ON_LOCAL)
    snap = svc.create_snapshot(volume.id, unique("snap"))
    inject(emulator, "POST", r"^/v1/resource-definitions$", 501)  # someone else just made it
    name = unique("restored")
    with pytest.raises(Busy, match="retry"):
        svc.create_volume(name, 8 * MIB, ON_LOCAL, source=f"snapshot:{snap.id}")
    assert svc.create_volume(name, 8 * MIB, ON_LOCAL, source=f"snapshot:{snap.id}").name == name


def test_group_deleted_behind_our_back_is_made_again(svc: VolumeService, emulator: EmulatorProcess) -> None:
    first = svc.create_volume(unique(), 8 * MIB, ANY)
    svc.delete_volume(first.id)
    answer = requests.delete(f"{emulator.url}/v1/resource-groups/{first.resource_group}", timeout=10)
    assert answer.ok, answer.text
    second = svc.create_volume(unique(), 8 * MIB, ANY)
    assert second.resource_group == first.resource_group
    assert svc.client.get_resource_group(first.resource_group).select_filter["place_count"] == 1


def test_linstor_makes_the_filesystem_with_the_users_options(svc: VolumeService) -> None:
    params = VolumeParams(place_count=1, fs_type="ext4", mkfs_opts="-L core-test", nodes=(LOCAL,))
    volume = svc.create_volume(unique(), 16 * MIB, params)
    assert volume.mkfs_opts == "-L core-test"
    device = svc.attach(volume.id, LOCAL).device_path
    probe = subprocess.run(
        ["blkid", "-p", "-o", "export", device], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "TYPE=ext4" in probe and "LABEL=core-test" in probe
