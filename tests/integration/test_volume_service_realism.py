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
