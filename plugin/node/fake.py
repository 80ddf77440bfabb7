"""NodeOps in memory: devices and mounts as data, for tests that need no root and no host.

:class:`FakeNodeOps` has the methods of :class:`~plugin.node.ops.NodeOps` and keeps their
rules (a device with a signature is never formatted; a mount is idempotent for the same
device and refused for another; an unmount with an owner leaves a foreign mount in place;
a read-only stage never formats; a filesystem smaller than its device is grown), and the
same error types. ``tests/node_contract.py`` runs one set of scenarios against both, so
the fake cannot drift from the real thing unnoticed. What it does not model: the kernel's
read-only device flag, btrfs and xfs specifics, mount options, timeouts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from plugin.errors import FailedPrecondition, InUse, NotFound, Unavailable
from plugin.models import VolumeCondition, VolumeStats
from plugin.node.commandlines import filesystem_type, mkfs_arguments
from plugin.node.unmounting import MountOwner
from plugin.params.filesystems import FILESYSTEMS
from plugin.params.mount_rules import split_mount_options


@dataclass
class FakeDevice:
    size: int
    fs: str | None = None  # what a probe finds
    fs_size: int = 0


@dataclass
class FakeMount:
    target: str
    device: str | None  # None: a bind of a plain directory
    fs: str | None
    readonly: bool
    kind: str  # "fs", "bind" (of a mount or directory) or "block" (a bound device node)


@dataclass
class FakeNodeOps:
    """The node operations' interface over in-memory devices and mounts."""

    devices: dict[str, FakeDevice] = field(default_factory=dict)
    mounts: list[FakeMount] = field(default_factory=list)  # in mount order; the last one is on top
    commands: list[str] = field(default_factory=list)  # what the real one would have run, in words
    directories: set[str] = field(default_factory=set)  # made here, or mount targets (made by mounting)
    files: set[str] = field(default_factory=set)  # targets a block device is bound onto

    # -- setting the scene ---------------------------------------------------------------

    def add_device(self, path: str, size: int, fs: str | None = None) -> None:
        self.devices[path] = FakeDevice(size, fs, size if fs else 0)

    def resize_device(self, path: str, size: int) -> None:
        self.devices[path].size = size

    def remove_device(self, path: str) -> None:
        del self.devices[path]

    def add_directory(self, path: str) -> None:
        self.directories.add(os.path.normpath(path))

    # -- devices and the mount table -----------------------------------------------------

    def _device(self, path: str) -> FakeDevice:
        device = self.devices.get(path)
        if device is None:
            raise NotFound(f"device {path} does not exist on this node")
        return device

    def _top(self, target: str) -> FakeMount | None:
        path = os.path.normpath(target)
        found = [m for m in self.mounts if m.target == path]
        return found[-1] if found else None

    def wait_for_device(self, path: str, timeout: float | None = None) -> None:
        if path not in self.devices:
            raise Unavailable(f"device {path} did not appear; is the volume attached to this node?")

    def device_size_bytes(self, device: str) -> int:
        return self._device(device).size

    def filesystem_signature(self, device: str) -> str | None:
        return self._device(device).fs

    def is_mounted(self, target: str) -> bool:
        return self._top(target) is not None

    def mount_source(self, target: str) -> str | None:
        top = self._top(target)
        return None if top is None else top.device or top.target

    def mounts_of(self, source: str) -> list[str]:
        if source in self.devices:
            return [m.target for m in self.mounts if m.device == source]
        top = self._top(source)
        if top is None or top.device is None:
            return []
        return [m.target for m in self.mounts if m.device == top.device and m.kind != "block"]

    def mount_table(self) -> list[FakeMount]:
        return list(self.mounts)

    def writable_mounts_of(self, device: str, table: object = None) -> list[str]:
        self._device(device)
        return [m.target for m in self.mounts if m.device == device and not m.readonly]

    # -- host paths ----------------------------------------------------------------------

    def path_exists(self, path: str) -> bool:
        p = os.path.normpath(path)
        return p in self.directories or p in self.files or p in self.devices or self._top(p) is not None

    def is_directory(self, path: str) -> bool:
        top = self._top(path)
        return os.path.normpath(path) in self.directories or (top is not None and top.kind != "block")

    def real_path(self, path: str) -> str:
        return os.path.normpath(os.path.abspath(path))

    def _device_at(self, path: str) -> str | None:
        if path in self.devices:
            return path
        top = self._top(path)
        return top.device if top is not None and top.kind == "block" else None

    def same_device(self, a: str, b: str) -> bool:
        if os.path.normpath(a) == os.path.normpath(b):
            return True
        found = self._device_at(a)
        return found is not None and found == self._device_at(b)

    def make_directory(self, path: str, mode: int) -> None:
        p = os.path.normpath(path)
        if p in self.files or p in self.devices:
            raise FailedPrecondition(f"{path} exists and is not a directory")
        self.directories.add(p)

    def mounted_directories(self, root: str) -> list[str]:
        base = os.path.normpath(root)
        below = [m for m in self.mounts if os.path.dirname(m.target) == base and m.kind != "block"]
        return sorted({os.path.basename(m.target) for m in below})

    # -- formatting ----------------------------------------------------------------------

    def format_if_blank(self, device: str, fs_type: str, mkfs_opts: str = "") -> bool:
        fs = filesystem_type(fs_type)
        mkfs_arguments(mkfs_opts, fs)
        found = self._device(device)
        if found.fs is not None:
            return False
        users = self.mounts_of(device)
        if users:
            raise InUse(f"{device} is in use at {', '.join(users)}; not formatting it", mounts=users)
        found.fs, found.fs_size = fs, found.size
        self.commands.append(f"mkfs.{fs} {device}")
        return True

    def preen_ext4(self, device: str) -> str:
        if self.mounts_of(device):
            return "not checked: mounted on this node"
        if self._device(device).fs != "ext4":
            return "not checked: no ext4 on the device"
        self.commands.append(f"e2fsck -p {device}")
        return "clean"

    # -- mounting and unmounting -----------------------------------------------------------

    def mount(
        self,
        source: str,
        target: str,
        fs_type: str | None = None,
        options: Sequence[str] = (),
        readonly: bool = False,
    ) -> None:
        readonly = readonly or "ro" in split_mount_options(options, fs_type)
        device = self._device(source)
        existing = self._top(target)
        if existing is not None:
            if existing.device != source:
                raise FailedPrecondition(
                    f"{target} is already mounted from {existing.device}; not mounting {source} there"
                )
            if existing.readonly != readonly:
                raise FailedPrecondition(f"{source} is already mounted at {target} with other access")
            return
        fs = fs_type.lower() if fs_type else device.fs
        if fs is None:
            raise FailedPrecondition(f"{source} holds no filesystem; nothing to mount")
        if device.fs != fs:
            raise FailedPrecondition(f"{source} holds {device.fs}, not {fs}")
        self.mounts.append(FakeMount(os.path.normpath(target), source, fs, readonly, "fs"))
        self.directories.add(os.path.normpath(target))
        self.commands.append(f"mount {source} {target}")

    def bind_mount(
        self,
        source: str,
        target: str,
        readonly: bool = False,
        options: Sequence[str] = (),
        table: object = None,
    ) -> None:
        if source in self.devices:
            self.bind_block_device(source, target, readonly)
            return
        readonly = readonly or "ro" in split_mount_options(options)
        origin = self._top(source)
        device = origin.device if origin is not None else None
        existing = self._top(target)
        if existing is not None:
            if existing.device != device or existing.kind != "bind":
                raise FailedPrecondition(f"{target} is already mounted from something other than {source}")
            if existing.readonly != readonly:
                raise FailedPrecondition(f"{source} is already bound at {target} with other access")
            return
        fs = origin.fs if origin is not None else None
        self.mounts.append(FakeMount(os.path.normpath(target), device, fs, readonly, "bind"))
        self.directories.add(os.path.normpath(target))
        self.commands.append(f"mount --bind {source} {target}")

    def bind_block_device(self, device: str, target_file: str, readonly: bool = False) -> None:
        self._device(device)
        existing = self._top(target_file)
        if existing is not None:
            if existing.device != device or existing.kind != "block":
                raise FailedPrecondition(
                    f"{target_file} is already mounted from something other than {device}"
                )
            if existing.readonly != readonly:
                raise FailedPrecondition(f"{device} is already bound at {target_file} with other access")
            return
        self.mounts.append(FakeMount(os.path.normpath(target_file), device, None, readonly, "block"))
        self.files.add(os.path.normpath(target_file))
        self.commands.append(f"mount --bind {device} {target_file}")

    def _owned(self, mount: FakeMount, owner: MountOwner) -> bool:
        if owner.device is not None and mount.device == owner.device:
            return True
        return mount.device is not None and mount.device not in self.devices  # its device is gone

    def mount_owned_by(self, target: str, owner: MountOwner, table: object = None) -> bool | None:
        top = self._top(target)
        return None if top is None else self._owned(top, owner)

    def unmount(
        self, target: str, remove_target: bool = True, lazy: bool = False, owner: MountOwner | None = None
    ) -> None:
        while (top := self._top(target)) is not None:
            if owner is not None and not self._owned(top, owner):
                raise FailedPrecondition(
                    f"{target} holds a mount of {top.device}, which is not volume {owner.volume}'s; "
                    "not unmounted",
                    mount_source=top.device,
                )
            self.mounts.remove(top)
            self.commands.append(f"umount {target}")
        if remove_target:
            self.directories.discard(os.path.normpath(target))
            self.files.discard(os.path.normpath(target))

    # -- growing and health ----------------------------------------------------------------

    def filesystem_size_bytes(self, device: str, mount_path: str, fs_type: str) -> int:
        return self._device(device).fs_size

    def grow_filesystem(self, mount_path: str) -> None:
        top = self._top(mount_path)
        if top is None:
            raise FailedPrecondition(f"{mount_path} is not mounted; cannot grow its filesystem")
        if top.kind == "block" or top.device is None:
            return
        if top.readonly:
            raise FailedPrecondition(f"{mount_path} is mounted read-only; cannot grow its filesystem")
        device = self._device(top.device)
        if device.fs_size < device.size:
            device.fs_size = device.size
            self.commands.append(f"grow {top.fs} at {mount_path}")

    def stats(self, path: str) -> VolumeStats:
        top = self._top(path)
        if top is None or top.device is None:
            raise NotFound(f"nothing is mounted at {path}")
        device = self._device(top.device)
        if top.kind == "block":
            return VolumeStats(total_bytes=device.size, used_bytes=0, available_bytes=0)
        return VolumeStats(total_bytes=device.fs_size, used_bytes=0, available_bytes=device.fs_size)

    def condition(self, path: str) -> VolumeCondition:
        top = self._top(path)
        if top is None:
            return VolumeCondition(True, f"{path} is not mounted")
        if top.device is not None and top.device not in self.devices:
            return VolumeCondition(True, f"device {top.device} behind {path} is gone from this node")
        return VolumeCondition(False, "mounted, device present")

    # -- staging ---------------------------------------------------------------------------

    def stage(
        self,
        device: str,
        staging_path: str,
        fs_type: str,
        mkfs_opts: str = "",
        mount_opts: Sequence[str] = (),
        readonly: bool = False,
        post_mount_xfs_opts: str = "",
        check_ext4: bool = False,
    ) -> None:
        fs = filesystem_type(fs_type)
        mkfs_arguments(mkfs_opts, fs)
        readonly = readonly or "ro" in split_mount_options(mount_opts, fs)
        self.wait_for_device(device)
        existing = self._top(staging_path)
        if existing is not None and existing.device != device:
            raise FailedPrecondition(
                f"{staging_path} is already mounted from {existing.device}, not {device}",
                mounted_from=existing.device,
            )
        if existing is None:
            found = self._device(device).fs
            if readonly and found is None:
                raise FailedPrecondition(
                    f"{device} holds no filesystem; a read-only volume is never formatted"
                )
            formatted = not readonly and self.format_if_blank(device, fs, mkfs_opts)
            if formatted:
                found = fs
            if found != fs:
                raise FailedPrecondition(
                    f"{device} holds {found}, not {fs}; it is neither formatted nor mounted as {fs}"
                )
            if check_ext4 and fs == "ext4" and not readonly and not formatted and not self.mounts_of(device):
                self.commands.append(f"e2fsck -p {device}")
        self.mount(device, staging_path, fs, mount_opts, readonly)
        if not readonly and fs in FILESYSTEMS:
            self.grow_filesystem(staging_path)
