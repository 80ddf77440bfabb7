"""One set of node-operation scenarios for the real NodeOps and for FakeNodeOps.

A :class:`Scene` gives the scenarios devices and paths; the unit tests run them on
:class:`~plugin.node.fake.FakeNodeOps` (no root), the end-to-end tests on the real
:class:`~plugin.node.ops.NodeOps` over loop devices. Both must pass the same assertions,
so a test that uses the fake tests what the real node does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

import pytest

from plugin.errors import FailedPrecondition
from plugin.node.unmounting import MountOwner

MiB = 1 << 20


class Scene(Protocol):
    ops: Any  # NodeOps or FakeNodeOps: the same methods

    def blank(self, size: int = ...) -> str: ...
    def holding(self, fs: str, size: int = ...) -> str: ...
    def grow(self, device: str, size: int) -> None: ...
    def path(self, name: str) -> str: ...


def stage_formats_a_blank_device_once(scene: Scene) -> None:
    dev, staging = scene.blank(), scene.path("staging")
    scene.ops.stage(dev, staging, "ext4")
    assert scene.ops.filesystem_signature(dev) == "ext4"
    assert scene.ops.mounts_of(dev) == [staging]
    scene.ops.stage(dev, staging, "ext4")  # a repeat is a no-op
    assert scene.ops.mounts_of(dev) == [staging]
    assert scene.ops.format_if_blank(dev, "ext4") is False


def stage_never_reformats_another_filesystem(scene: Scene) -> None:
    dev, staging = scene.holding("xfs"), scene.path("staging")
    with pytest.raises(FailedPrecondition, match="holds xfs, not ext4"):
        scene.ops.stage(dev, staging, "ext4")
    assert scene.ops.filesystem_signature(dev) == "xfs"
    assert not scene.ops.is_mounted(staging)


def read_only_stage_never_formats(scene: Scene) -> None:
    dev = scene.blank()
    with pytest.raises(FailedPrecondition, match="never formatted"):
        scene.ops.stage(dev, scene.path("staging"), "ext4", readonly=True)
    assert scene.ops.filesystem_signature(dev) is None


def unmount_leaves_another_volumes_mount(scene: Scene) -> None:
    mine, other, staging = scene.blank(), scene.blank(), scene.path("staging")
    scene.ops.stage(mine, staging, "ext4")
    with pytest.raises(FailedPrecondition, match="not volume v-other's"):
        scene.ops.unmount(staging, owner=MountOwner("v-other", other))
    assert scene.ops.mount_owned_by(staging, MountOwner("v-other", other)) is False
    assert scene.ops.is_mounted(staging)
    scene.ops.unmount(staging, owner=MountOwner("v-mine", mine))
    assert not scene.ops.is_mounted(staging)
    scene.ops.unmount(staging)  # nothing mounted: fine


def mount_over_another_device_is_refused(scene: Scene) -> None:
    first, second, staging = scene.blank(), scene.holding("ext4"), scene.path("staging")
    scene.ops.stage(first, staging, "ext4")
    with pytest.raises(FailedPrecondition, match="already mounted from"):
        scene.ops.mount(second, staging, "ext4")
    assert scene.ops.mounts_of(second) == []


def stage_over_another_device_names_what_is_mounted(scene: Scene) -> None:
    first, second, staging = scene.blank(), scene.blank(), scene.path("staging")
    scene.ops.stage(first, staging, "ext4")
    with pytest.raises(FailedPrecondition, match="already mounted from") as info:
        scene.ops.stage(second, staging, "ext4", check_ext4=True)
    assert info.value.details["mounted_from"] == first  # what CSI answers ALREADY_EXISTS with
    assert scene.ops.filesystem_signature(second) is None  # neither probed for mkfs nor formatted
    assert scene.ops.mounts_of(first) == [staging]


def bind_and_unbind_leave_the_staging_mount(scene: Scene) -> None:
    dev, staging, target = scene.blank(), scene.path("staging"), scene.path("target")
    scene.ops.stage(dev, staging, "ext4")
    scene.ops.bind_mount(staging, target)
    scene.ops.bind_mount(staging, target)  # a repeat is a no-op
    assert sorted(scene.ops.mounts_of(dev)) == sorted([staging, target])
    assert scene.ops.writable_mounts_of(dev)
    scene.ops.unmount(target)
    assert not scene.ops.is_mounted(target)
    assert scene.ops.mounts_of(dev) == [staging]


def restage_fills_a_grown_device(scene: Scene) -> None:
    dev, staging = scene.blank(64 * MiB), scene.path("staging")
    scene.ops.stage(dev, staging, "ext4")
    before = scene.ops.stats(staging).total_bytes
    scene.ops.unmount(staging, remove_target=False)
    scene.grow(dev, 128 * MiB)
    scene.ops.stage(dev, staging, "ext4")  # grown before it is mounted again
    after = scene.ops.stats(staging).total_bytes
    assert after > before + 32 * MiB
    assert scene.ops.condition(staging).abnormal is False


def directories_are_made_once_and_seen(scene: Scene) -> None:
    data = scene.path("data")
    assert not scene.ops.path_exists(data) and not scene.ops.is_directory(data)
    scene.ops.make_directory(data, 0o755)
    scene.ops.make_directory(data, 0o755)  # a repeat keeps it
    assert scene.ops.path_exists(data) and scene.ops.is_directory(data)


def staged_directories_are_found_below_their_root(scene: Scene) -> None:
    root = os.path.dirname(scene.path("x"))
    one, two = scene.blank(), scene.blank()
    scene.ops.stage(one, scene.path("vol-b"), "ext4")
    scene.ops.stage(two, scene.path("vol-a"), "ext4")
    scene.ops.make_directory(scene.path("idle"), 0o755)  # a directory, nothing mounted on it
    scene.ops.bind_block_device(one, scene.path("raw"))  # a file, not a directory
    assert scene.ops.mounted_directories(root) == ["vol-a", "vol-b"]
    scene.ops.unmount(scene.path("vol-b"))
    assert scene.ops.mounted_directories(root) == ["vol-a"]
    assert scene.ops.mounted_directories(scene.path("absent")) == []


def a_block_bind_is_the_same_device_and_a_file(scene: Scene) -> None:
    dev, other, target = scene.blank(), scene.blank(), scene.path("raw")
    assert scene.ops.same_device(dev, dev) and not scene.ops.same_device(dev, other)
    scene.ops.bind_block_device(dev, target)
    assert scene.ops.same_device(target, dev) and not scene.ops.same_device(target, other)
    assert scene.ops.path_exists(target) and not scene.ops.is_directory(target)
    scene.ops.unmount(target)
    assert not scene.ops.path_exists(target)
    assert scene.ops.real_path(scene.path("raw/../data")) == scene.ops.real_path(scene.path("data"))


SCENARIOS: list[Callable[[Scene], None]] = [
    stage_formats_a_blank_device_once,
    stage_never_reformats_another_filesystem,
    read_only_stage_never_formats,
    unmount_leaves_another_volumes_mount,
    mount_over_another_device_is_refused,
    stage_over_another_device_names_what_is_mounted,
    bind_and_unbind_leave_the_staging_mount,
    restage_fills_a_grown_device,
    directories_are_made_once_and_seen,
    staged_directories_are_found_below_their_root,
    a_block_bind_is_the_same_device_and_a_file,
]
