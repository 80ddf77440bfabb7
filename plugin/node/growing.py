"""Growing: a filesystem to fill its device, online, or offline for ext4 before it is mounted."""

from __future__ import annotations

import logging

from plugin.errors import (
    FailedPrecondition,
    InvalidArgument,
    OperationFailed,
)
from plugin.node import blockdev
from plugin.node.commandlines import (
    parse_btrfs_show_sizes,
    parse_dumpe2fs_size,
    parse_xfs_info_size,
)
from plugin.node.commands import one_line
from plugin.node.host import Host
from plugin.node.mounttable import (
    MountEntry,
    normalize,
    top_mount,
)
from plugin.params.filesystems import FILESYSTEMS

# A grow is worth doing when the device exceeds the filesystem by at least this much.
GROW_THRESHOLD = 1 << 20

log = logging.getLogger(__name__)


class Grower:
    """Grow filesystems to their device's size."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def grow_ext4_offline(self, device: str) -> None:
        """Grow an ext4 that is mounted nowhere on this node before mounting it.

        Online ext4 resize needs CAP_SYS_RESOURCE, which containers often lack; offline
        resize only needs the device. resize2fs insists on a fresh check first, so e2fsck
        runs in its safe automatic mode (it opens the device exclusively and refuses a
        filesystem mounted elsewhere), and anything it cannot fix stops the stage.
        """
        size = self.host.device_size_bytes(device)
        if size - self.ext4_size_bytes(device) < GROW_THRESHOLD:
            return
        check = self.host.cmd(
            ["e2fsck", "-f", "-p", device], timeout=self.host.long_timeout, ok_codes=range(256)
        )
        if check.returncode not in (0, 1, 2):
            detail = one_line(check.stderr) or one_line(check.stdout)
            raise FailedPrecondition(
                f"the ext4 filesystem on {device} has errors that e2fsck -p cannot fix; "
                f"run e2fsck on it by hand (exit {check.returncode}: {detail})"
            )
        self.host.cmd(["resize2fs", device], timeout=self.host.long_timeout)
        log.info("grew the ext4 filesystem on %s offline to %d bytes", device, size)

    def filesystem_size_bytes(self, device: str, mount_path: str, fs_type: str) -> int:
        """The size the filesystem itself believes it has (not statvfs, which hides metadata)."""
        if fs_type == "ext4":
            return self.ext4_size_bytes(device)
        if fs_type == "xfs":
            return parse_xfs_info_size(self.host.cmd(["xfs_info", mount_path]).stdout)
        if fs_type == "btrfs":
            sizes = parse_btrfs_show_sizes(
                self.host.cmd(["btrfs", "filesystem", "show", "--raw", mount_path]).stdout
            )
            number = blockdev.device_number(device)
            for size, dev in sizes:
                if blockdev.device_number(dev) == number:
                    return size
            if len(sizes) == 1:
                return sizes[0][0]
            raise OperationFailed(f"btrfs at {mount_path} does not list {device}")
        raise InvalidArgument(f"unsupported filesystem type {fs_type!r}")

    def ext4_size_bytes(self, device: str) -> int:
        """The ext4's own size from its superblock; ``dumpe2fs -h`` only when that cannot tell."""
        try:
            size = blockdev.ext4_size_bytes(device)
        except OSError:
            size = None
        if size is not None:
            return size
        return parse_dumpe2fs_size(self.host.cmd(["dumpe2fs", "-h", device]).stdout)

    def needs_grow(self, device: str, mount_path: str, fs_type: str) -> bool:
        return self.host.device_size_bytes(device) - self.filesystem_size_bytes(
            device, mount_path, fs_type
        ) >= (GROW_THRESHOLD)

    def grow_filesystem(self, mount_path: str) -> None:
        """Grow the filesystem mounted at ``mount_path`` to fill its device (online)."""
        path = normalize(mount_path)
        entry = top_mount(self.host.mounts(), path)
        if entry is None:
            raise FailedPrecondition(f"{mount_path} is not mounted; cannot grow its filesystem")
        if blockdev.device_number(path) is not None:
            return  # a raw block volume: the workload owns what is on it
        if entry.read_only or entry.superblock_read_only:
            raise FailedPrecondition(f"{mount_path} is mounted read-only; cannot grow its filesystem")
        fs = entry.fs_type
        if fs == "ext4":
            try:
                self.host.cmd(["resize2fs", self.entry_device(entry)], timeout=self.host.long_timeout)
            except OperationFailed as exc:
                if "permission denied" not in str(exc).lower():
                    raise
                raise FailedPrecondition(
                    f"this node cannot grow a mounted ext4 filesystem (resize2fs needs CAP_SYS_RESOURCE); "
                    f"it is grown offline the next time the volume is staged. {exc}",
                    missing_capability="CAP_SYS_RESOURCE",
                ) from exc
        elif fs == "xfs":
            self.host.cmd(["xfs_growfs", path], timeout=self.host.long_timeout)
        elif fs == "btrfs":
            self.host.cmd(["btrfs", "filesystem", "resize", "max", path], timeout=self.host.long_timeout)
        else:
            raise InvalidArgument(
                f"growing {fs} filesystems is not supported (only {', '.join(FILESYSTEMS)})"
            )
        log.info("grew the %s filesystem at %s", fs, mount_path)

    @staticmethod
    def entry_device(entry: MountEntry) -> str:
        if blockdev.device_number(entry.source) == entry.device_number:
            return entry.source
        return blockdev.dev_path(entry.device_number) or entry.source
