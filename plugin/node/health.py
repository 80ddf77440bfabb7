"""Health and usage of a mounted volume: NodeGetVolumeStats' numbers and condition."""

from __future__ import annotations

import logging
import os

from plugin.errors import (
    NotFound,
    OperationFailed,
)
from plugin.models import VolumeCondition, VolumeStats
from plugin.node import blockdev
from plugin.node.host import Host
from plugin.node.mounttable import (
    normalize,
    top_mount,
)
from plugin.params.filesystems import FILESYSTEMS

log = logging.getLogger(__name__)


class Health:
    """Usage and condition of a volume's mount."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def stats(self, path: str) -> VolumeStats:
        """Usage of a mounted volume; a raw block volume only has a size."""
        try:
            os.stat(path)
        except FileNotFoundError as exc:
            raise NotFound(f"{path} does not exist") from exc
        except OSError as exc:
            raise OperationFailed(f"cannot read usage of {path}: {exc.strerror}") from exc
        if blockdev.device_number(path) is not None:
            return VolumeStats(total_bytes=self.host.device_size_bytes(path), used_bytes=0, available_bytes=0)
        if not self.host.is_mounted(path):
            raise NotFound(f"nothing is mounted at {path}")
        try:
            st = os.statvfs(path)
        except OSError as exc:
            raise OperationFailed(f"cannot read usage of {path}: {exc.strerror}") from exc
        has_inodes = st.f_files > 0  # btrfs allocates inodes dynamically and reports 0
        return VolumeStats(
            total_bytes=st.f_blocks * st.f_frsize,
            used_bytes=(st.f_blocks - st.f_bfree) * st.f_frsize,
            available_bytes=st.f_bavail * st.f_frsize,
            total_inodes=st.f_files if has_inodes else None,
            used_inodes=st.f_files - st.f_ffree if has_inodes else None,
            available_inodes=st.f_favail if has_inodes else None,
        )

    def condition(self, path: str) -> VolumeCondition:
        """Whether the volume at ``path`` is healthy, and if not, what is wrong, in words."""
        try:
            os.lstat(path)
        except FileNotFoundError:
            return VolumeCondition(True, f"{path} does not exist")
        except OSError as exc:
            return VolumeCondition(
                True, f"the filesystem at {path} does not answer ({exc.strerror}); check the kernel log"
            )
        real = normalize(path)
        entry = top_mount(self.host.mounts(), real)
        if entry is None:
            return VolumeCondition(True, f"{path} is not mounted")
        bound = blockdev.device_number(real)
        if bound is not None:
            if not blockdev.present(bound):
                return VolumeCondition(True, f"the block device bound at {path} is gone from this node")
            return VolumeCondition(False, "block device present")
        number = blockdev.device_number(entry.source) or entry.device_number
        if (
            entry.source.startswith("/dev")
            and not os.path.exists(entry.source)
            and not blockdev.present(number)
        ):
            return VolumeCondition(True, f"device {entry.source} behind {path} is gone from this node")
        if not blockdev.present(number) and entry.fs_type in FILESYSTEMS:
            return VolumeCondition(True, f"device {entry.source} behind {path} is gone from this node")
        if entry.superblock_read_only and not entry.read_only:
            return VolumeCondition(
                True,
                f"the filesystem at {path} was mounted read-write but the kernel made it read-only "
                "(usually after an I/O or filesystem error); check the kernel log and run fsck",
            )
        if entry.fs_type == "ext4":
            name = blockdev.kernel_name(number)
            errors = blockdev.ext4_errors_count(name) if name else 0
            if errors > 0:
                return VolumeCondition(
                    True,
                    f"the kernel recorded {errors} ext4 error(s) on {entry.source}; unmount it and run fsck",
                )
        try:
            os.statvfs(real)
            os.stat(real)  # a shut-down xfs still answers statvfs, but not stat
        except OSError as exc:
            return VolumeCondition(
                True, f"the filesystem at {path} does not answer ({exc.strerror}); check the kernel log"
            )
        return VolumeCondition(False, "mounted, device present, no filesystem errors recorded")
