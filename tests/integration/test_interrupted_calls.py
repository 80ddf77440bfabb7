"""Calls interrupted half-way, against a real emulator: what LINSTOR made is found again.

An attach is several LINSTOR calls (note the intent, make-available, mark the resource,
clear the intent) and a create reads the volume back after spawning it. A LINSTOR error,
a lost answer or a killed process between those calls must neither leak a resource nor
report a failure for a volume that exists: a retry or a detach converges. Faults come
from the emulator's ``/_emu/`` control API (an injected error is answered before the
emulator does any work) and from kill -9 of a real process.

Volumes live on the emulator's virtual nodes without a filesystem, so neither loop
devices nor root are needed.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import pytest
import requests

from plugin import volume_records as rec
from plugin.config import Config
from plugin.errors import NotFound, OperationFailed, Unavailable
from plugin.linstor.client import LinstorClient
from plugin.linstor.records import Resource
from plugin.params.model import VolumeParams
from plugin.volumes.publications import Publishing
from plugin.volumes.service import VolumeService
from testkit.waiting import wait_until
from tests.conftest import REPO_ROOT, EmulatorProcess
from tests.processes import terminate

MIB = 1024 * 1024
ON_B = VolumeParams(place_count=1, fs_type=None, nodes=("node-b",))


def unique(prefix: str = "ic") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def service(emu: EmulatorProcess, read_timeout: float = 30.0) -> VolumeService:
    config = Config(controllers=(emu.url,), node_name="node-b", read_timeout=read_timeout, config_file=None)
    return VolumeService(LinstorClient(config, retries=1, backoff=0.05), config)


@pytest.fixture
def emu(emulator_factory) -> EmulatorProcess:  # type: ignore[no-untyped-def]
    return emulator_factory(nodes=("node-b", "node-c"))


def inject(emu: EmulatorProcess, method: str, path_regex: str, count: int = 1, ret_code: int = 999) -> None:
    rule = {"method": method, "path_regex": path_regex, "status": 500, "ret_code": ret_code, "count": count}
    assert emu.control("errors", rule).ok


def pending_faults(emu: EmulatorProcess) -> list[Any]:
    answer = requests.get(f"{emu.url}/_emu/faults", timeout=10)
    answer.raise_for_status()
    return list(answer.json()["errors"])


def resource_on(svc: VolumeService, volume_id: str, node: str) -> Resource | None:
    try:
        return svc.client.get_resource(volume_id, node)
    except NotFound:
        return None


def intents(svc: VolumeService, volume_id: str) -> list[str]:
    props = svc.client.get_resource_definition(volume_id).props
    return sorted(k for k in props if k.startswith(rec.ATTACH_PENDING))


# ----------------------------------------------------------------------------- attach


@pytest.mark.parametrize("retried", [True, False], ids=["attach retried", "detached at once"])
def test_an_attach_whose_mark_failed_is_undone_by_detach(emu: EmulatorProcess, retried: bool) -> None:
    """One injected 500 on the modify after make-available: the diskless resource is the plugin's."""
    svc = service(emu)
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    inject(emu, "PUT", f"^/v1/resource-definitions/{volume.id}/resources/node-c$")
    with pytest.raises(OperationFailed, match="Injected"):
        svc.attach(volume.id, "node-c")
    assert pending_faults(emu) == []  # the fault hit exactly the mark
    made = resource_on(svc, volume.id, "node-c")
    assert made is not None and "DRBD_DISKLESS" in made.flags
    assert rec.ATTACHED_BY_PLUGIN not in made.props
    if retried:
        attachment = svc.attach(volume.id, "node-c")
        assert attachment.diskless and attachment.created_by_attach
        assert intents(svc, volume.id) == []  # marked now, the intent is done
        marked = resource_on(svc, volume.id, "node-c")
        assert marked is not None and marked.props[rec.ATTACHED_BY_PLUGIN] == "true"
    service(emu).detach(volume.id, "node-c")  # another process (a restarted driver) detaches
    assert resource_on(svc, volume.id, "node-c") is None
    assert intents(svc, volume.id) == []
    assert {r.node for r in svc.get_volume(volume.id).replicas} == {"node-b"}
    svc.delete_volume(volume.id)


def publish(svc: VolumeService, volume_id: str, node: str, token: str) -> None:
    """Attach with the publication recorded by the attach, as ControllerPublishVolume does."""
    _, record = svc.publish_target(volume_id, node)
    svc.attach(volume_id, node, publish=Publishing(record, token))


def test_a_publish_whose_mark_and_record_failed_is_claimed_with_its_record_on_retry(
    emu: EmulatorProcess,
) -> None:
    """The mark and the publication go in one write: when it fails, neither is there, the intent
    stays, and the retried publish claims the resource and records the publication together."""
    svc = service(emu)
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    inject(emu, "PUT", f"^/v1/resource-definitions/{volume.id}/resources/node-c$")
    with pytest.raises(OperationFailed, match="Injected"):
        publish(svc, volume.id, "node-c", "SINGLE_NODE_WRITER:rw")
    assert pending_faults(emu) == []  # the fault hit exactly the mark with the record
    made = resource_on(svc, volume.id, "node-c")
    assert made is not None and rec.ATTACHED_BY_PLUGIN not in made.props and rec.PUBLISHED not in made.props
    assert intents(svc, volume.id) == [rec.attach_pending_key("node-c")]
    publish(svc, volume.id, "node-c", "SINGLE_NODE_WRITER:rw")
    marked = resource_on(svc, volume.id, "node-c")
    assert marked is not None and marked.props[rec.ATTACHED_BY_PLUGIN] == "true"
    assert marked.props[rec.PUBLISHED] == "SINGLE_NODE_WRITER:rw"
    assert intents(svc, volume.id) == []
    service(emu).detach(volume.id, "node-c", unpublish=True)
    assert resource_on(svc, volume.id, "node-c") is None
    replica = resource_on(svc, volume.id, "node-b")
    assert replica is not None and rec.PUBLISHED not in replica.props
    svc.delete_volume(volume.id)


def test_an_unpublish_from_a_replica_drops_only_the_record(emu: EmulatorProcess) -> None:
    svc = service(emu)
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    publish(svc, volume.id, "node-b", "SINGLE_NODE_WRITER:rw")
    recorded = resource_on(svc, volume.id, "node-b")
    assert recorded is not None and recorded.props[rec.PUBLISHED] == "SINGLE_NODE_WRITER:rw"
    assert rec.ATTACHED_BY_PLUGIN not in recorded.props  # a replica is never the plugin's to remove
    svc.detach(volume.id, "node-b", unpublish=True)
    kept = resource_on(svc, volume.id, "node-b")
    assert kept is not None and rec.PUBLISHED not in kept.props
    svc.delete_volume(volume.id)


def test_a_failed_make_available_leaves_no_intent_behind(emu: EmulatorProcess) -> None:
    """LINSTOR answered the make-available with an error and made nothing: the intent goes,
    so a diskless resource an operator adds later is not taken for the plugin's."""
    svc = service(emu)
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    inject(emu, "POST", "/make-available$")
    with pytest.raises(OperationFailed, match="Injected"):
        svc.attach(volume.id, "node-c")
    assert resource_on(svc, volume.id, "node-c") is None
    assert intents(svc, volume.id) == []
    svc.client.create_resource(volume.id, "node-c", diskless=True)  # an operator's resource
    svc.detach(volume.id, "node-c")
    assert resource_on(svc, volume.id, "node-c") is not None
    svc.client.delete_resource(volume.id, "node-c")
    svc.delete_volume(volume.id)


def test_a_left_over_intent_never_removes_what_the_plugin_did_not_make(emu: EmulatorProcess) -> None:
    """An intent (from an attach that died before make-available) next to a replica with data:
    detach keeps the replica and drops the intent."""
    svc = service(emu)
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    svc.client.modify_resource_definition(volume.id, {rec.attach_pending_key("node-b"): "true"})
    svc.detach(volume.id, "node-b")
    assert svc.get_volume(volume.id).diskful_nodes == ("node-b",)
    assert intents(svc, volume.id) == []
    # the same for a node without any resource: the stale intent is dropped, nothing else happens
    svc.client.modify_resource_definition(volume.id, {rec.attach_pending_key("node-c"): "true"})
    svc.detach(volume.id, "node-c")
    assert intents(svc, volume.id) == []
    assert {r.node for r in svc.get_volume(volume.id).replicas} == {"node-b"}
    svc.delete_volume(volume.id)


_ATTACH_SCRIPT = """
import sys
from plugin.config import Config
from plugin.linstor.client import LinstorClient
from plugin.volumes.publications import Publishing
from plugin.volumes.service import VolumeService
config = Config(controllers=(sys.argv[1],), node_name="node-c", read_timeout=60.0, config_file=None)
VolumeService(LinstorClient(config), config).attach(sys.argv[2], "node-c")
"""


def test_an_attach_killed_before_its_mark_is_undone_by_detach(emu: EmulatorProcess) -> None:
    """kill -9 of the attaching process after make-available, while its mark is on the way."""
    svc = service(emu)
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    # The read of the new device, between make-available and the mark, is held back long
    # enough for the kill to land first.
    assert emu.control("latency", {"ms": 30000, "paths": "/resources/node-c/volumes/"}).ok
    proc = subprocess.Popen(
        [sys.executable, "-c", _ATTACH_SCRIPT, emu.url, volume.id],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def made() -> bool:
            assert proc.poll() is None, "the attach ended before it made the resource"
            return "node-c" in {r.node for r in svc.get_volume(volume.id).replicas}

        wait_until(made, timeout=30, what="make-available")
        proc.kill()
        proc.wait()
    finally:
        terminate(proc, timeout=5)
        emu.control("latency", {"ms": 0})
    made = resource_on(svc, volume.id, "node-c")
    assert made is not None and rec.ATTACHED_BY_PLUGIN not in made.props
    svc.detach(volume.id, "node-c")
    assert resource_on(svc, volume.id, "node-c") is None
    assert intents(svc, volume.id) == []
    svc.delete_volume(volume.id)


# ----------------------------------------------------------------------------- create


def test_a_create_whose_read_back_failed_once_converges(emu: EmulatorProcess) -> None:
    """An error on the read that follows spawn: the service looks again and returns the volume."""
    svc = service(emu)
    name = unique()
    inject(emu, "GET", "^/v1/view/resources")
    volume = svc.create_volume(name, 8 * MIB, ON_B)
    assert pending_faults(emu) == []  # the injected error was met, and looked past
    assert volume.name == name and volume.diskful_nodes == ("node-b",)
    again = svc.create_volume(name, 8 * MIB, ON_B)
    assert again.id == volume.id and again.diskful_nodes == ("node-b",)
    assert [v.id for v in svc.list_volumes() if v.name == name] == [volume.id]
    svc.delete_volume(volume.id)


def test_a_create_whose_read_back_keeps_failing_says_so_and_the_retry_returns_it(
    emu: EmulatorProcess,
) -> None:
    svc = service(emu)
    name = unique()
    inject(emu, "GET", "^/v1/view/resources", count=-1)
    try:
        with pytest.raises(OperationFailed) as failed:
            svc.create_volume(name, 8 * MIB, ON_B)
    finally:
        requests.delete(f"{emu.url}/_emu/errors", timeout=10).raise_for_status()
    message = str(failed.value)
    assert "Injected" in message  # LINSTOR's reason ...
    assert "was created" in message and "retry" in message  # ... and what it means for the caller
    again = svc.create_volume(name, 8 * MIB, ON_B)
    assert again.name == name and again.diskful_nodes == ("node-b",)
    svc.delete_volume(again.id)


def test_a_create_whose_read_back_goes_unanswered_is_unavailable(emu: EmulatorProcess) -> None:
    """The controller stops answering right after the spawn: a retryable error that says the
    volume exists, and the retry converges."""
    svc = service(emu, read_timeout=0.5)
    svc.create_volume(unique(), 8 * MIB, ON_B)  # the resource group exists from here on
    name = unique()
    assert emu.control("latency", {"ms": 2000, "paths": "^/v1/view/resources"}).ok
    try:
        with pytest.raises(Unavailable, match="was created"):
            svc.create_volume(name, 8 * MIB, ON_B)
    finally:
        emu.control("latency", {"ms": 0})
    again = svc.create_volume(name, 8 * MIB, ON_B)
    assert again.name == name and again.diskful_nodes == ("node-b",)
    svc.delete_volume(again.id)


@pytest.mark.parametrize("kind", ["snapshot", "volume"])
def test_a_restore_or_clone_whose_read_back_failed_once_is_kept(emu: EmulatorProcess, kind: str) -> None:
    """The copy is complete when its read back fails: it is read again, not rolled back."""
    svc = service(emu)
    source = svc.create_volume(unique("src"), 8 * MIB, ON_B)
    ref = svc.create_snapshot(source.id, unique("snap")).id if kind == "snapshot" else source.id
    name = unique("copy")
    inject(emu, "GET", "^/v1/view/resources")
    copy = svc.create_volume(name, 8 * MIB, ON_B, source=f"{kind}:{ref}")
    assert pending_faults(emu) == []
    assert copy.name == name and copy.diskful_nodes == ("node-b",)
    assert svc.create_volume(name, 8 * MIB, ON_B, source=f"{kind}:{ref}").id == copy.id
    svc.delete_volume(copy.id)
    if kind == "snapshot":
        svc.delete_snapshot(ref)
    svc.delete_volume(source.id)
