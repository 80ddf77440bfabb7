"""Volume sizes as LINSTOR takes them: KiB, a filesystem's minimum, a 1 PiB ceiling, grow only.

Plain volumes and consistency-group members are created and grown by different collaborators;
both check a requested size here, so a refusal reads the same whichever kind of volume it is.
"""

from __future__ import annotations

import math

from plugin.errors import InvalidArgument
from plugin.params.filesystems import minimum_size_bytes
from plugin.params.values import human_size

MAX_SIZE_KIB = 1 << 40  # LINSTOR's largest volume definition


def kib(size_bytes: int) -> int:
    """Bytes as LINSTOR's KiB, rounded up, at least 1."""
    return max(1, math.ceil(size_bytes / 1024))


def within_limit(size_bytes: int) -> int:
    """``size_bytes`` in KiB, refused when it is past LINSTOR's largest volume definition."""
    size_kib = kib(size_bytes)
    if size_kib > MAX_SIZE_KIB:
        raise InvalidArgument(
            f"volume size {human_size(size_bytes, exact=True)} is larger than LINSTOR's limit of 1 PiB"
        )
    return size_kib


def create_kib(name: str, size_bytes: int, fs_type: str | None) -> int:
    """The KiB a new volume gets: at least its filesystem's minimum; no name or a negative size is refused."""
    if not name:
        raise InvalidArgument("a volume needs a name")
    if size_bytes < 0:
        raise InvalidArgument(f"volume size must not be negative, got {size_bytes}")
    size_kib = within_limit(size_bytes)
    return max(size_kib, kib(minimum_size_bytes(fs_type)))


def grow_kib(volume_id: str, current_bytes: int, size_bytes: int) -> int:
    """The KiB ``volume_id`` grows to; a size below its current one is refused (volumes only grow)."""
    new_kib = within_limit(size_bytes)
    if new_kib * 1024 < current_bytes:
        raise InvalidArgument(
            f"volume {volume_id} is {human_size(current_bytes, exact=True)}; it can only grow, "
            f"not shrink to {human_size(size_bytes, exact=True)}"
        )
    return new_kib
