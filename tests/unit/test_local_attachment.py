"""The local-attachment use case over FakeNodeOps: every failure point undoes what was done.

The service here is a small stand-in that makes an attach put a device on the fake node
(as a real attach makes LINSTOR create the resource and its device appear), so the node
side runs the same rules as the real NodeOps (tests/node_contract.py holds both to them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from plugin import errors
from plugin.local_attachment import SETTLE_POLL_SECONDS, LocalAttachment
from plugin.models import Attachment, Volume
from plugin.node.fake import FakeNodeOps
from plugin.params.filesystems import FILESYSTEMS

MiB = 1 << 20
NODE = "n1"
DEVICE = "/dev/drbd1000"
STAGING = "/mnt/linstor/vol1"


@dataclass
class Service:
    """attach/detach as the volume service answers them, with failures on demand."""

    node: FakeNodeOps
    device_fs: str | None = None  # what the device of a fresh attach holds
    replica_here: bool = False  # the volume has a replica on this node: attach makes nothing
    attach_error: errors.VolumeError | None = None
    detach_errors: list[errors.VolumeError] = field(default_factory=list)  # raised in turn, then success
    calls: list[str] = field(default_factory=list)

    def attach(self, volume_id: str, node: str) -> Attachment:
        self.calls.append(f"attach {volume_id} {node}")
        if self.attach_error is not None:
            raise self.attach_error
        if DEVICE not in self.node.devices:
            self.node.add_device(DEVICE, 64 * MiB, self.device_fs)
        return Attachment(volume_id, node, DEVICE, diskless=True, created_by_attach=not self.replica_here)

    def detach(self, volume_id: str, node: str) -> None:
        self.calls.append(f"detach {volume_id} {node}")
        if self.detach_errors:
            raise self.detach_errors.pop(0)


class Clock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class World:
    node: FakeNodeOps
    service: Service
    clock: Clock
    local: LocalAttachment


@pytest.fixture
def world() -> Iterator[World]:
    node = FakeNodeOps()
    service = Service(node)
    clock = Clock()
    local = LocalAttachment(
        service,
        node,
        NODE,
        settle_seconds=1.0,
        volumes_label="Docker volumes",
        clock=clock,
        sleep=clock.sleep,
    )
    yield World(node, service, clock, local)


def volume(fs_type: str | None = "ext4") -> Volume:
    return Volume(id="vol1", name="Vol 1", size_bytes=64 * MiB, resource_group="rg", fs_type=fs_type)


class StepFailed(Exception):
    """The caller's own step failed (Docker: the data directory or the mount count)."""


# -- attach and stage --------------------------------------------------------------------


def test_a_blank_volume_is_attached_formatted_and_mounted(world: World) -> None:
    with world.local.staged(volume(), STAGING, name="Vol 1") as attachment:
        assert attachment.device_path == DEVICE
        assert world.node.mounts_of(DEVICE) == [STAGING]
    assert world.node.filesystem_signature(DEVICE) == "ext4"
    assert world.node.commands == [f"mkfs.ext4 {DEVICE}", f"mount {DEVICE} {STAGING}"]
    assert world.service.calls == ["attach vol1 n1"]


def test_a_failed_attach_leaves_nothing_to_undo(world: World) -> None:
    world.service.attach_error = errors.NodeOffline("node n1 is offline")
    with pytest.raises(errors.NodeOffline), world.local.staged(volume(), STAGING, name="Vol 1"):
        pytest.fail("the body runs only after a successful stage")
    assert world.service.calls == ["attach vol1 n1"]
    assert world.node.commands == []


def test_a_failed_stage_detaches_what_the_attach_made(world: World) -> None:
    world.service.device_fs = "xfs"  # holds another filesystem: never reformatted
    staged = world.local.staged(volume("ext4"), STAGING, name="Vol 1")
    with pytest.raises(errors.FailedPrecondition, match="holds xfs, not ext4"), staged:
        pytest.fail("the body runs only after a successful stage")
    assert world.service.calls == ["attach vol1 n1", "detach vol1 n1"]
    assert not world.node.is_mounted(STAGING)
    assert world.node.filesystem_signature(DEVICE) == "xfs"


def test_a_failed_step_of_the_caller_unmounts_and_detaches(world: World) -> None:
    with pytest.raises(StepFailed), world.local.staged(volume(), STAGING, name="Vol 1"):
        raise StepFailed
    assert not world.node.is_mounted(STAGING)
    assert world.service.calls == ["attach vol1 n1", "detach vol1 n1"]
    assert world.node.commands[-1] == f"umount {STAGING}"


def test_an_undo_keeps_a_replica_and_a_mount_that_were_there_before(world: World) -> None:
    world.service.replica_here = True
    world.node.add_device(DEVICE, 64 * MiB, "ext4")
    world.node.mount(DEVICE, STAGING, "ext4")
    with pytest.raises(StepFailed), world.local.staged(volume(), STAGING, name="Vol 1"):
        raise StepFailed
    assert world.node.mounts_of(DEVICE) == [STAGING]  # not this call's mount
    assert world.service.calls == ["attach vol1 n1"]  # not this call's resource


def test_a_failing_undo_does_not_hide_the_failure(world: World) -> None:
    world.service.detach_errors = [errors.Unavailable("the LINSTOR controller is unreachable")]
    with pytest.raises(StepFailed), world.local.staged(volume(), STAGING, name="Vol 1"):
        raise StepFailed
    assert world.service.calls == ["attach vol1 n1", "detach vol1 n1"]
    assert not world.node.is_mounted(STAGING)


def test_a_volume_without_a_recorded_filesystem_is_mounted_with_the_one_it_holds(world: World) -> None:
    world.service.device_fs = "xfs"
    with world.local.staged(volume(fs_type=None), STAGING, name="Vol 1"):
        pass
    assert world.node.commands == [f"mount {DEVICE} {STAGING}"]  # adopted, not formatted


def test_a_blank_volume_without_a_recorded_filesystem_is_refused_and_detached(world: World) -> None:
    staged = world.local.staged(volume(fs_type=None), STAGING, name="Vol 1")
    with pytest.raises(errors.FailedPrecondition) as refused, staged:
        pytest.fail("the body runs only after a successful stage")
    assert str(refused.value) == (
        "volume Vol 1 records no filesystem and its device holds nothing; Docker volumes need "
        f"{', '.join(FILESYSTEMS)}, and a volume is never formatted on mount"
    )
    assert world.node.filesystem_signature(DEVICE) is None
    assert world.service.calls == ["attach vol1 n1", "detach vol1 n1"]


# -- the settle retry ----------------------------------------------------------------------


def test_in_use_only_here_is_retried_until_it_settles(world: World) -> None:
    answers = [errors.InUse("in use", nodes=[NODE]), errors.InUse("in use", nodes=[NODE])]

    def action() -> str:
        if answers:
            raise answers.pop(0)
        return "done"

    assert world.local.settling(action) == "done"
    assert world.clock.slept == [SETTLE_POLL_SECONDS, SETTLE_POLL_SECONDS]


def test_in_use_elsewhere_is_an_answer_at_once(world: World) -> None:
    def action() -> None:
        raise errors.InUse("in use", nodes=["n2"])

    with pytest.raises(errors.InUse):
        world.local.settling(action)
    assert world.clock.slept == []


def test_in_use_here_past_the_settle_time_is_an_answer(world: World) -> None:
    def action() -> None:
        raise errors.InUse("in use", nodes=[NODE])

    with pytest.raises(errors.InUse):
        world.local.settling(action)
    # it retried, and gave up once the settle time was over, not later
    assert set(world.clock.slept) == {SETTLE_POLL_SECONDS}
    assert world.local.settle_seconds <= world.clock.now < world.local.settle_seconds + SETTLE_POLL_SECONDS


# -- release and detach ----------------------------------------------------------------------


def _staged(world: World) -> None:
    with world.local.staged(volume(), STAGING, name="Vol 1"):
        pass
    world.service.calls.clear()


def test_release_unmounts_and_detaches_what_the_attach_made(world: World) -> None:
    _staged(world)
    assert world.local.release("vol1", "Vol 1", STAGING, attached=True) is True
    assert not world.node.is_mounted(STAGING)
    assert world.service.calls == ["detach vol1 n1"]


def test_release_of_a_replica_only_unmounts(world: World) -> None:
    _staged(world)
    assert world.local.release("vol1", "Vol 1", STAGING, attached=False) is True
    assert world.service.calls == []


def test_a_detach_that_lags_behind_the_unmount_settles(world: World) -> None:
    _staged(world)
    world.service.detach_errors = [errors.InUse("in use", nodes=[NODE])]
    assert world.local.release("vol1", "Vol 1", STAGING, attached=True) is True
    assert world.service.calls == ["detach vol1 n1", "detach vol1 n1"]


@pytest.mark.parametrize(
    "failure",
    [
        errors.Unavailable("the LINSTOR controller is unreachable"),
        errors.NodeOffline("node n1 is offline"),
        errors.Busy("retry"),
        errors.InUse("in use", nodes=["n2"]),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_detach_that_can_work_later_is_left_to_retry(world: World, failure: errors.VolumeError) -> None:
    _staged(world)
    world.service.detach_errors = [failure]
    assert world.local.release("vol1", "Vol 1", STAGING, attached=True) is False
    assert not world.node.is_mounted(STAGING)  # released on the node all the same
    assert world.local.detach("vol1", "Vol 1") is True  # the retry, once it can work


def test_a_detach_that_failed_for_good_is_not_retried(world: World) -> None:
    world.service.detach_errors = [errors.FailedPrecondition("cannot remove it")]
    assert world.local.detach("vol1", "Vol 1") is True


def test_an_unmount_refused_while_files_are_open_reports_in_use(world: World) -> None:
    _staged(world)

    class Busy(FakeNodeOps):
        def unmount(self, target: str, *args: object, **kwargs: object) -> None:
            raise errors.InUse(f"{target} is busy")

    busy = LocalAttachment(world.service, Busy(), NODE)
    assert busy.unmount_unless_in_use(STAGING) is False
    assert world.local.unmount_unless_in_use(STAGING) is True
    assert not world.node.is_mounted(STAGING)
