"""The volume service against a controller that behaves like a real one.

Every case is produced by the emulator's real-controller behaviour (tie-breakers, offline
nodes, thick pools syncing) or an ``/_emu/`` fault (failed satellite deployments).
"""

from __future__ import annotations

import pytest

from plugin.errors import Busy, FailedPrecondition, NodeOffline, OperationFailed
from plugin.params.model import VolumeParams
from plugin.volumes import replica_states, sync_wait
from plugin.volumes.service import VolumeService
from tests.conftest import EmulatorProcess
from tests.integration.test_volume_service import MIB, service_for, unique

pytestmark = pytest.mark.root


@pytest.fixture
def svc(emulator: EmulatorProcess) -> VolumeService:
    return service_for(emulator)


def test_snapshot_skips_an_offline_replica(svc: VolumeService, emulator: EmulatorProcess) -> None:
    volume = svc.create_volume(
        unique(), 8 * MIB, VolumeParams(place_count=2, fs_type=None, nodes=("node-b", "node-c"))
    )
    assert emulator.control("nodes/node-c/offline").ok
    try:
        snap = svc.create_snapshot(volume.id, unique("snap"))
        assert snap.ready and snap.volume_id == volume.id
        assert emulator.control("nodes/node-b/offline").ok
        with pytest.raises(NodeOffline, match="every node with its data is offline") as caught:
            svc.create_snapshot(volume.id, unique("snap"))
        assert "node-b" in str(caught.value) and "node-c" in str(caught.value)
    finally:
        emulator.control("nodes/node-b/online")
        emulator.control("nodes/node-c/online")


@pytest.mark.parametrize("remaining", [True, False])
def test_restore_and_clone_state_diskless_on_remaining(svc: VolumeService, remaining: bool) -> None:
    params = VolumeParams(place_count=1, fs_type=None, diskless_on_remaining=remaining)
    source = svc.create_volume(unique(), 8 * MIB, params)
    snap = svc.create_snapshot(source.id, unique("snap"))
    restored = svc.create_volume(unique(), 8 * MIB, params, source=f"snapshot:{snap.id}")
    cloned = svc.create_volume(unique(), 8 * MIB, params, source=f"volume:{source.id}")
    for volume in (restored, cloned):
        replicas = svc.get_volume(volume.id).replicas
        assert len([r for r in replicas if not r.diskless]) == 1
        # Three nodes: with diskless_on_remaining the other two get a diskless resource.
        assert len([r for r in replicas if r.diskless]) == (2 if remaining else 0)
    for volume in (cloned, restored):
        svc.delete_volume(volume.id)
    svc.delete_snapshot(snap.id)
    svc.delete_volume(source.id)


# ---------------------------------------------------------------------- replicas still syncing

THICK = "ThickPool"


@pytest.fixture
def thick_svc(root_loop, emulator_factory) -> tuple[VolumeService, EmulatorProcess]:  # type: ignore[no-untyped-def]
    emu = emulator_factory(
        nodes=("node-b", "node-c"), extra_args=("--thick-pool", THICK, "--sync-seconds", "2")
    )
    return service_for(emu), emu


def test_expand_snapshot_and_clone_right_after_a_thick_create(
    thick_svc: tuple[VolumeService, EmulatorProcess],
) -> None:
    svc, _emu = thick_svc
    params = VolumeParams(place_count=2, fs_type=None, storage_pools=(THICK,))
    volume = svc.create_volume(unique(), 8 * MIB, params)
    assert replica_states.not_up_to_date(svc.client.view_resources([volume.id]))  # still syncing
    # LINSTOR refuses all three with 974/979 while the replicas sync; the plugin waits it out.
    grown = svc.expand_volume(volume.id, 16 * MIB)
    assert grown.size_bytes == 16 * MIB
    other = svc.create_volume(unique(), 8 * MIB, params)
    snap = svc.create_snapshot(other.id, unique("snap"))
    assert snap.volume_id == other.id
    third = svc.create_volume(unique(), 8 * MIB, params)
    clone = svc.create_volume(unique(), 8 * MIB, params, source=f"volume:{third.id}")
    assert svc.get_volume(clone.id).size_bytes == 8 * MIB


def test_a_replica_that_stays_outdated_is_refused_by_name_within_the_deadline(
    thick_svc: tuple[VolumeService, EmulatorProcess],
) -> None:
    svc, emu = thick_svc
    volume = svc.create_volume(
        unique(), 8 * MIB, VolumeParams(place_count=2, fs_type=None, nodes=("node-b", "node-c"))
    )
    assert emu.control(f"resources/{volume.id}/node-c/disk_state", {"state": "Outdated"}).ok
    with sync_wait.caller_deadline(2.5):
        with pytest.raises(FailedPrecondition, match="the replica on node-c is Outdated") as caught:
            svc.expand_volume(volume.id, 16 * MIB)
        assert "retry when every replica is UpToDate" in str(caught.value)
        with pytest.raises(FailedPrecondition, match=r"snapshot volume .* node-c is Outdated"):
            svc.create_snapshot(volume.id, unique("snap"))
    assert svc.get_volume(volume.id).size_bytes == 8 * MIB  # nothing changed
    assert svc.list_snapshots(volume.id) == []
    assert emu.control(f"resources/{volume.id}/node-c/disk_state", {"state": None}).ok
    assert svc.expand_volume(volume.id, 16 * MIB).size_bytes == 16 * MIB


# ---------------------------------------------------------------------- long clones


def test_a_long_clone_is_never_removed_and_a_retry_resumes_waiting(
    svc: VolumeService, emulator: EmulatorProcess
) -> None:
    params = VolumeParams(place_count=1, fs_type=None)
    source = svc.create_volume(unique(), 8 * MIB, params)
    assert emulator.control("clone-delay", {"seconds": 4}).ok
    name = unique("clone")
    try:
        with sync_wait.caller_deadline(2.0), pytest.raises(Busy, match="still being copied"):
            svc.create_volume(name, 8 * MIB, params, source=f"volume:{source.id}")
        # The copy goes on: the clone was not deleted when the caller's time ran out.
        clone_id = svc.volume_id_for(name, params)
        rd = svc.client.get_resource_definition(clone_id)
        assert "CLONING" in rd.flags
        volume = svc.create_volume(name, 8 * MIB, params, source=f"volume:{source.id}")
    finally:
        emulator.control("clone-delay", {"seconds": 0})
    assert volume.id == clone_id and svc.get_volume(volume.id).size_bytes == 8 * MIB
    assert svc.create_volume(name, 8 * MIB, params, source=f"volume:{source.id}").id == clone_id


# ---------------------------------------------------------------------- half-made volumes


def test_a_half_made_volume_is_never_reported_as_created(
    svc: VolumeService, emulator: EmulatorProcess
) -> None:
    params = VolumeParams(place_count=2, fs_type=None, nodes=("node-b", "node-c"))
    name = unique()
    volume_id = svc.volume_id_for(name, params)
    assert emulator.control("deploy-failures", {"count": 1, "node": "node-c"}).ok
    # The removal of the half-made definition fails too, as if the plugin died right after the spawn.
    rule = {
        "method": "DELETE",
        "path_regex": f"^/v1/resource-definitions/{volume_id}$",
        "status": 500,
        "ret_code": 999,
        "count": 1,
    }
    assert emulator.control("errors", rule).ok
    with pytest.raises(OperationFailed, match="node-c"):
        svc.create_volume(name, 8 * MIB, params)
    assert svc.client.get_resource_definition(volume_id)  # left behind
    # The retry converges on it, finds node-c's replica never deployed, and removes it.
    with pytest.raises(Busy, match=r"half-made .* could not deploy it on node-c"):
        svc.create_volume(name, 8 * MIB, params)
    assert not svc.client.list_resource_definitions([volume_id])
    volume = svc.create_volume(name, 8 * MIB, params)
    assert sorted(r.node for r in volume.replicas if not r.diskless) == ["node-b", "node-c"]
