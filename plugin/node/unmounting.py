"""Unmounting: only a volume's own mounts, and removal of mount points that hold no data."""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass

from plugin.errors import (
    FailedPrecondition,
    InUse,
    OperationFailed,
    VolumeError,
)
from plugin.node import blockdev
from plugin.node.host import Host
from plugin.node.mounttable import (
    MountEntry,
    normalize,
    top_mount,
)
from plugin.params.filesystems import FILESYSTEMS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MountOwner:
    """Whose mounts an unmount may undo, and whose mount a lookup may report on.

    ``device`` is the volume's device on this node as LINSTOR reports it. A mount belongs
    to the volume when it shows that device's filesystem (the staging mount, or a bind of
    it) or binds the device node itself. Without a device (LINSTOR no longer knows the
    volume, or it is not attached here), only a mount whose device has vanished from this
    node counts: a stale mount of a deleted volume can be undone, a live foreign one never.
    """

    volume: str
    device: str | None


class Unmounter:
    """Unmount what belongs to a volume; remove its empty mount point."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def mount_owned_by(
        self, target: str, owner: MountOwner, entries: list[MountEntry] | None = None
    ) -> bool | None:
        """Whether the visible mount at ``target`` belongs to ``owner``; None when nothing is mounted.

        ``entries`` is a mount table the caller has just read; without it, it is read now.
        """
        path = normalize(target)
        entry = top_mount(self.host.mounts() if entries is None else entries, path)
        if entry is None:
            return None
        return self._owned(entry, path, owner)

    def _owned(self, entry: MountEntry, path: str, owner: MountOwner) -> bool:
        number = blockdev.device_number(owner.device) if owner.device else None
        bound = blockdev.device_number(path)
        if bound is not None:  # a raw block volume: the file is the bound device node
            return bound == number or not blockdev.present(bound)
        if number is not None and self.host.entry_is_device(entry, number):
            return True
        return self._device_gone(entry)

    @staticmethod
    def _device_gone(entry: MountEntry) -> bool:
        """A filesystem mount whose block device no longer exists on this node (tmpfs and the like never)."""
        if entry.fs_type not in FILESYSTEMS or blockdev.present(entry.device_number):
            return False
        source = blockdev.device_number(entry.source) if entry.source.startswith("/") else None
        return source is None or not blockdev.present(source)

    def _refuse_foreign(self, entry: MountEntry, path: str, target: str, owner: MountOwner) -> None:
        if self._owned(entry, path, owner):
            return
        device = f"its device here is {owner.device}" if owner.device else "it has no device on this node"
        raise FailedPrecondition(
            f"{target} holds a {entry.fs_type} mount of {entry.source}, which is not volume {owner.volume}'s "
            f"({device}); not unmounted",
            mount_source=entry.source,
        )

    def unmount(
        self, target: str, remove_target: bool = True, lazy: bool = False, owner: MountOwner | None = None
    ) -> None:
        """Unmount everything stacked on ``target``; a target that is missing or not mounted is fine.

        A busy mount is an error unless ``lazy`` is asked, and a lazy unmount is logged as a
        warning: detaching a busy filesystem silently would hide a process that still holds it.
        With an ``owner``, a mount that is not the owner's is refused and left in place.
        """
        path = normalize(target)
        if not os.path.lexists(path) and not self.host.is_mounted(path):
            return
        read_only_devices: set[tuple[int, int]] = set()
        for _ in range(32):
            entry = top_mount(self.host.mounts(), path)
            if entry is None:
                break
            if owner is not None:
                self._refuse_foreign(entry, path, target, owner)
            number = self._block_device_of(entry, path)
            if entry.read_only and number is not None:
                read_only_devices.add(number)
            try:
                self.host.cmd(["umount", path])
            except VolumeError as exc:
                if not self.host.is_mounted(path):
                    break  # somebody else unmounted it meanwhile
                if "busy" not in str(exc).lower():
                    raise
                if not lazy:
                    raise InUse(f"{target} is busy (a process still uses it); not unmounted") from exc
                log.warning("%s is busy; detaching it lazily, it stays in use until released", target)
                self.host.cmd(["umount", "-l", path])
        else:
            raise OperationFailed(f"{target} is still mounted after repeated unmounts")
        for number in read_only_devices:
            self._release_read_only(number)
        if remove_target:
            self._remove_target(path, target)

    @staticmethod
    def _block_device_of(entry: MountEntry, path: str) -> tuple[int, int] | None:
        """The block device behind a mount: the bound node itself, or the filesystem's device."""
        bound = blockdev.device_number(path)
        if bound is not None:
            return bound
        if blockdev.present(entry.device_number):
            return entry.device_number
        return blockdev.device_number(entry.source)  # btrfs shows an anonymous number

    def _release_read_only(self, number: tuple[int, int]) -> None:
        """Lift the read-only flag a read-only use set, once nothing on this node uses the device.

        The kernel keeps the flag on the device even after a loop device is detached and
        reused, so leaving it would surprise whoever uses the device next.
        """
        if not blockdev.read_only(number) or self.host.device_mounts(number):
            return
        device = blockdev.dev_path(number)
        if device is None or blockdev.device_number(device) != number:
            log.warning("cannot find the device node of %d:%d to make it writable again", *number)
            return
        try:
            self.host.cmd(["blockdev", "--setrw", device])
        except OperationFailed as exc:
            log.warning("could not make %s writable again: %s", device, exc)

    @staticmethod
    def _remove_target(path: str, shown: str) -> None:
        """Remove the mount point; never anything that holds data."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        try:
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(path)
            elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                os.unlink(path)
            else:
                raise FailedPrecondition(f"{shown} is not an empty file or directory; left in place")
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise FailedPrecondition(f"{shown} is not empty after unmount; left in place") from exc
            raise OperationFailed(f"cannot remove {shown}: {exc.strerror}") from exc
