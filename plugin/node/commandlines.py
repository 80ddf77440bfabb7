"""Command lines for node operations, and reading what the tools answer.

Pure functions, kept apart from :mod:`plugin.node.ops` (which runs the commands) so the
rules can be read and unit-tested on their own: which filesystems are supported, which
user options are accepted (the allow-lists of :mod:`plugin.params.fs_options` and
:mod:`plugin.params.mount_rules`, the same ones volume creation checks), the exact argument lists
for mkfs and mount, how a command is shown in logs and errors, and the parsing of blkid,
dumpe2fs, xfs_info and btrfs output. Nothing here touches the host.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence

from plugin.errors import InvalidArgument, OperationFailed
from plugin.params.filesystems import FILESYSTEMS
from plugin.params.fs_options import OptionError, check_mkfs_options, shown, split_mkfs_options
from plugin.params.mount_rules import split_mount_options

# Signatures blkid reports as TYPE that are containers or metadata, not filesystems.
NOT_MOUNTABLE = frozenset(
    {"swap", "LVM2_member", "linux_raid_member", "crypto_LUKS", "drbd", "zfs_member", "bcache", "ceph"}
)


def filesystem_type(fs_type: str) -> str:
    """Validate a filesystem name against what this plugin can create and grow."""
    fs = (fs_type or "").strip().lower()
    if fs not in FILESYSTEMS:
        raise InvalidArgument(f"unsupported filesystem type {fs_type!r}: use one of {', '.join(FILESYSTEMS)}")
    return fs


def mkfs_arguments(mkfs_opts: str, fs_type: str | None = None) -> list[str]:
    """Split the user's mkfs options like a shell would and check them against the allow-list.

    mkfs takes positional arguments, so a stray word could point mkfs at a device other
    than the volume's; options such as ``mke2fs -d`` read host files. Only the options
    :mod:`plugin.params.fs_options` allows for ``fs_type`` pass (for any supported filesystem
    when ``fs_type`` is None).
    """
    try:
        words = split_mkfs_options(mkfs_opts or "")
        check_mkfs_options(words, fs_type.lower() if fs_type else None)
    except OptionError as exc:
        raise InvalidArgument(f"invalid mkfs options {shown(mkfs_opts or '')}: {exc}") from None
    return words


def mkfs_command(device: str, fs_type: str, mkfs_opts: str = "") -> list[str]:
    fs = filesystem_type(fs_type)
    return [f"mkfs.{fs}", *mkfs_arguments(mkfs_opts, fs), device]


def mount_options(
    fs_type: str | None, options: Sequence[str], readonly: bool, device_read_only: bool | None = False
) -> list[str]:
    """The ``-o`` list for a filesystem mount.

    xfs always gets ``nouuid`` so a restored snapshot can be mounted beside its origin.
    A read-only mount of a read-only device cannot replay a journal, so it skips replay
    (xfs ``norecovery``, ext4 ``noload``); on a writable device the replay runs, which
    gives a consistent view of a volume that was not cleanly unmounted.
    """
    opts = [o for o in split_mount_options(options, fs_type) if o not in ("ro", "rw")]
    if readonly:
        opts.insert(0, "ro")
    fs = (fs_type or "").lower()
    if fs == "xfs" and "nouuid" not in opts:
        opts.append("nouuid")
    if readonly and device_read_only:
        skip_replay = {"xfs": "norecovery", "ext4": "noload"}.get(fs)
        if skip_replay and skip_replay not in opts:
            opts.append(skip_replay)
    return opts


def mount_command(
    source: str, target: str, fs_type: str | None, options: Sequence[str], readonly: bool
) -> list[str]:
    """``mount``; a read-write mount gets ``-w`` so it fails rather than silently falling back to ro."""
    args = ["mount"]
    if not readonly:
        args.append("-w")
    if fs_type:
        args += ["-t", fs_type]
    if options:
        args += ["-o", ",".join(options)]
    return [*args, source, target]


def bind_remount_command(target: str, readonly: bool, options: Sequence[str]) -> list[str]:
    """A bind mount ignores most options; they only take effect on a remount of the bind."""
    opts = ["remount", "bind", "ro" if readonly else "rw", *[o for o in options if o not in ("ro", "rw")]]
    return ["mount", "-o", ",".join(opts), target]


def loggable_command(args: Sequence[str]) -> str:
    """A command line for logs and error messages, with the user's options left out.

    Mount options, mkfs options and xfs_io commands come from users and may carry
    secrets (an SELinux context, a label), so only their number is shown: ``mount -w -t
    ext4 -o <3 options> /dev/drbd1000 /mnt``. The command, device and paths stay.
    """
    argv = [str(a) for a in args]
    if not argv:
        return ""
    tool = os.path.basename(argv[0])
    words = [shlex.quote(a) for a in argv]
    if tool.startswith("mkfs.") and len(argv) > 2:
        words[1:-1] = [_count(len(argv) - 2, "argument")]
    flag = {"mount": "-o", "xfs_io": "-c"}.get(tool)
    for i in range(1, len(argv) - 1):
        if argv[i] == flag:
            words[i + 1] = _count(len(argv[i + 1].split(",")), "option") if tool == "mount" else "<command>"
    return " ".join(words)


def _count(n: int, word: str) -> str:
    return f"<{n} {word}{'' if n == 1 else 's'}>"


def parse_blkid_export(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            values[key] = value
    return values


def describe_signature(values: dict[str, str]) -> str | None:
    """What a low-level probe found, in words; None when it found nothing."""
    if values.get("TYPE"):
        return values["TYPE"]
    if values.get("PTTYPE"):
        return f"{values['PTTYPE']} partition table"
    other = sorted(k for k in values if k != "DEVNAME")
    if other:
        return f"unrecognised signature ({', '.join(other)})"
    return None


_XFS_DATA = re.compile(r"^data\s*=.*?bsize=(\d+)\s+blocks=(\d+)", re.MULTILINE)
_BTRFS_DEVID = re.compile(r"^\s*devid\s+\d+\s+size\s+(\d+)\s+used\s+\d+\s+path\s+(\S+)", re.MULTILINE)


def parse_dumpe2fs_size(text: str) -> int:
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in text.splitlines()) if v
    )
    try:
        return int(fields["Block count"]) * int(fields["Block size"])
    except (KeyError, ValueError) as exc:
        raise OperationFailed("could not read the ext4 size from dumpe2fs output") from exc


def parse_xfs_info_size(text: str) -> int:
    m = _XFS_DATA.search(text)
    if not m:
        raise OperationFailed("could not read the xfs size from xfs_info output")
    return int(m.group(1)) * int(m.group(2))


def parse_btrfs_show_sizes(text: str) -> list[tuple[int, str]]:
    return [(int(m.group(1)), m.group(2)) for m in _BTRFS_DEVID.finditer(text)]
