"""The filesystems a volume can carry: defined here once, imported everywhere else.

The CSI capability check, the parameter parsers, the option allow-lists, the node's mkfs
and grow commands and the Docker plugin's adoption check all read this tuple, so a volume
is never created with a filesystem the node would refuse to stage.
"""

from __future__ import annotations

FILESYSTEMS: tuple[str, ...] = ("ext4", "xfs", "btrfs")
DEFAULT_FILESYSTEM = "ext4"
