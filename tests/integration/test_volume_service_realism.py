"""The volume service against a controller that behaves like a real one.

Every case is produced by the emulator's real-controller behaviour (tie-breakers, offline
nodes, thick pools syncing) or an ``/_emu/`` fault (failed satellite deployments).
"""

from __future__ import annotations

import pytest

from plugin.errors import NodeOffline
from plugin.params import VolumeParams
from plugin.volume_service import VolumeService
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
