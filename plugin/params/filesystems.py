"""The filesystems a volume can carry: defined here once, imported everywhere else.

The CSI capability check, the parameter parsers, the option allow-lists, the node's mkfs
and grow commands and the Docker plugin's adoption check all read this tuple, so a volume
is never created with a filesystem the node would refuse to stage.
"""

from __future__ import annotations

from plugin.params.values import MIB

FILESYSTEMS: tuple[str, ...] = ("ext4", "xfs", "btrfs")
DEFAULT_FILESYSTEM = "ext4"

_MINIMUM_SIZE = {"ext4": 2 * MIB, "xfs": 300 * MIB, "btrfs": 114294784}
_SMALLEST_VOLUME = 4096  # LINSTOR's smallest volume: 4 KiB


def minimum_size_bytes(fs_type: str | None) -> int:
    """The smallest volume the filesystem can be made on (mkfs refuses smaller ones)."""
    return _MINIMUM_SIZE.get((fs_type or "").lower(), _SMALLEST_VOLUME)
