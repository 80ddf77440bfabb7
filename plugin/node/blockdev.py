"""Facts about block devices that the kernel answers directly (stat, ioctl, sysfs).

Kept apart from :mod:`plugin.node.ops` because none of this runs a command: it is cheap,
cannot hang on a tool, and is what the command-running code consults before acting.
Devices are identified by their device number, never by name, because the same device
is often reachable through several nodes (``/dev/loop3``, a DRBD-shaped node made with
mknod, a ``/dev/disk/by-id`` link).
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct

BLKGETSIZE64 = 0x80081272  # _IOR(0x12, 114, size_t) on 64-bit Linux
SYS_DEV_BLOCK = "/sys/dev/block"


def is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def device_number(path: str) -> tuple[int, int] | None:
    """(major, minor) of the block device node at ``path``; None if it is not one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    return (os.major(st.st_rdev), os.minor(st.st_rdev))


def size_bytes(path: str) -> int:
    """Size of a block device in bytes, asked of the kernel (raises OSError)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        buf = fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8)
    finally:
        os.close(fd)
    return int(struct.unpack("Q", buf)[0])


def sysfs_dir(number: tuple[int, int]) -> str:
    return os.path.join(SYS_DEV_BLOCK, f"{number[0]}:{number[1]}")


def present(number: tuple[int, int]) -> bool:
    """Whether the kernel still has a block device with this number."""
    return os.path.exists(sysfs_dir(number))


def kernel_name(number: tuple[int, int]) -> str | None:
    """The kernel's name for the device (``loop3``), as used under /sys/fs/<fs>/."""
    try:
        return os.path.basename(os.path.realpath(sysfs_dir(number)))
    except OSError:
        return None


def read_only(number: tuple[int, int]) -> bool | None:
    """Whether the kernel marks the device read-only; None when sysfs cannot say."""
    try:
        with open(os.path.join(sysfs_dir(number), "ro"), encoding="ascii") as f:
            return f.read().strip() == "1"
    except OSError:
        return None


def ext4_errors_count(name: str) -> int:
    """Errors the ext4 driver recorded for the filesystem on device ``name`` (0 when unknown)."""
    try:
        with open(f"/sys/fs/ext4/{name}/errors_count", encoding="ascii") as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def dev_path(number: tuple[int, int]) -> str | None:
    """The /dev path the kernel names for this device (from its uevent)."""
    try:
        with open(os.path.join(sysfs_dir(number), "uevent"), encoding="ascii") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "DEVNAME" and value:
                    return "/dev/" + value
    except OSError:
        return None
    return None


# The ext4 superblock: 1024 bytes at byte 1024 of the device (see ext4's on-disk layout).
EXT4_SUPERBLOCK = 1024
EXT4_MAGIC = 0xEF53
EXT4_FEATURE_INCOMPAT_64BIT = 0x80


def ext4_size_bytes(path: str) -> int | None:
    """The size an ext4 filesystem records for itself: block count times block size.

    Read straight from the superblock (what ``dumpe2fs -h`` prints as "Block count" and
    "Block size"), so a stage that only needs to know whether to grow runs no command.
    None when there is no ext4 superblock to trust (the caller then asks dumpe2fs);
    OSError when the device cannot be read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        sb = os.pread(fd, EXT4_SUPERBLOCK, EXT4_SUPERBLOCK)
    finally:
        os.close(fd)
    if len(sb) < EXT4_SUPERBLOCK or struct.unpack_from("<H", sb, 0x38)[0] != EXT4_MAGIC:
        return None
    (blocks_lo, log_block_size, incompat) = (
        struct.unpack_from("<I", sb, 0x04)[0],
        struct.unpack_from("<I", sb, 0x18)[0],
        struct.unpack_from("<I", sb, 0x60)[0],
    )
    if log_block_size > 6:  # ext4 blocks are 1 KiB to 64 KiB
        return None
    blocks_hi = struct.unpack_from("<I", sb, 0x150)[0] if incompat & EXT4_FEATURE_INCOMPAT_64BIT else 0
    return ((blocks_hi << 32) | blocks_lo) * (1024 << log_block_size)
