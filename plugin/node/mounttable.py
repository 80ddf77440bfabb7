"""The kernel's mount table, read from ``/proc/self/mountinfo``.

``mount`` output and ``/proc/mounts`` lose information we need: mountinfo carries the
device number (so a ``/dev/drbdX`` node and the loop node behind it compare equal), the
root of a bind mount inside its filesystem (so a bind mount can be traced back to its
source directory), and the per-mount options apart from the superblock options (so a
kernel ``errors=remount-ro`` shows up as ``rw`` per mount but ``ro`` on the superblock).
This module only parses and looks things up; it never runs a command.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

MOUNTINFO = "/proc/self/mountinfo"

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    """Undo the kernel's octal escapes (space, tab, newline and backslash are escaped).

    Most fields have none; skipping the regular expression for them makes a whole table
    (read on every mount check, hundreds of lines on a busy node) markedly cheaper.
    """
    if "\\" not in field:
        return field
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


class MountEntry(NamedTuple):
    """One line of mountinfo (see proc(5)).

    A named tuple rather than a frozen dataclass: a busy node's table has a thousand lines
    and is read on every mount check, and a tuple is made in half the time.
    """

    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mount_point: str
    mount_options: tuple[str, ...]
    fs_type: str
    source: str
    super_options: tuple[str, ...]

    @property
    def device_number(self) -> tuple[int, int]:
        return (self.major, self.minor)

    @property
    def read_only(self) -> bool:
        """Whether this mount point itself is read-only."""
        return "ro" in self.mount_options

    @property
    def superblock_read_only(self) -> bool:
        """Whether the filesystem as a whole is read-only (e.g. after errors=remount-ro).

        Newer kernels mark an ext4 that went read-only after an error with
        ``emergency_ro`` instead of ``ro``.
        """
        return "ro" in self.super_options or "emergency_ro" in self.super_options


def parse_line(line: str) -> MountEntry:
    """Parse one mountinfo line; raises ValueError on a malformed one."""
    fields = line.split()
    try:
        sep = fields.index("-", 6)
    except ValueError as exc:
        raise ValueError(f"malformed mountinfo line (no separator): {line!r}") from exc
    if len(fields) < sep + 3:
        raise ValueError(f"malformed mountinfo line (too short): {line!r}")
    major, _, minor = fields[2].partition(":")
    return MountEntry(  # positional, in the fields' order: markedly faster than by keyword
        int(fields[0]),  # mount_id
        int(fields[1]),  # parent_id
        int(major),
        int(minor),
        unescape(fields[3]),  # root
        unescape(fields[4]),  # mount_point
        tuple(fields[5].split(",")),  # mount_options
        unescape(fields[sep + 1]),  # fs_type
        unescape(fields[sep + 2]),  # source
        tuple(fields[sep + 3].split(",")) if len(fields) > sep + 3 else (),  # super_options
    )


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse a whole mountinfo file, in the kernel's order (parents before children)."""
    return [parse_line(line) for line in text.splitlines() if line.strip()]


def read_mountinfo(path: str = MOUNTINFO) -> list[MountEntry]:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


def normalize(path: str) -> str:
    """The path as the kernel writes it in mountinfo: absolute, symlinks resolved."""
    return os.path.realpath(path)


def top_mount(entries: list[MountEntry], mount_point: str) -> MountEntry | None:
    """The visible mount at ``mount_point`` (the last of a stack of mounts on the same path)."""
    stack = [e for e in entries if e.mount_point == mount_point]
    if not stack:
        return None
    ids_with_child_here = {e.parent_id for e in stack}
    tops = [e for e in stack if e.mount_id not in ids_with_child_here]
    return (tops or stack)[-1]


def containing_mount(entries: list[MountEntry], path: str) -> MountEntry | None:
    """The mount whose subtree holds ``path`` (longest mount point prefix wins)."""
    best: MountEntry | None = None
    for entry in entries:
        mp = entry.mount_point
        inside = path == mp or mp == "/" or path.startswith(mp.rstrip("/") + "/")
        if inside and (best is None or len(mp) >= len(best.mount_point)):
            best = entry
    return best


def location_in_filesystem(entries: list[MountEntry], path: str) -> tuple[tuple[int, int], str] | None:
    """Where ``path`` lives as (device number, path inside that filesystem).

    Two mount points showing the same location are bind mounts of each other; this is how
    a bind mount is matched to its source directory without trusting the source field.
    """
    entry = containing_mount(entries, path)
    if entry is None:
        return None
    rel = os.path.relpath(path, entry.mount_point)
    inner = entry.root if rel == "." else os.path.join(entry.root, rel)
    return entry.device_number, os.path.normpath(inner)
