"""Mounting: filesystems, binds of directories and of block devices, read-only rules.

Mounts are idempotent by reading the kernel's mount table: a repeat with the same source
is a no-op, a different source is an error. Read-only use of a device sets the kernel's
read-only flag, since a read-only bind of a device node does not stop writes through it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence

from plugin.errors import (
    FailedPrecondition,
    NotFound,
    VolumeError,
)
from plugin.node import blockdev
from plugin.node.commandlines import (
    NOT_MOUNTABLE,
    bind_remount_command,
    mount_command,
    mount_options,
)
from plugin.node.host import Host
from plugin.node.mounttable import (
    MountEntry,
    location_in_filesystem,
    normalize,
    top_mount,
)
from plugin.params.mount_rules import split_mount_options

log = logging.getLogger(__name__)


class Mounter:
    """Mount and bind; refuse what would flip a device between read-only and read-write."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def mount(
        self,
        source: str,
        target: str,
        fs_type: str | None = None,
        options: Sequence[str] = (),
        readonly: bool = False,
    ) -> None:
        """Mount a filesystem; a repeat with the same device is a no-op."""
        self.mount_checked(source, target, fs_type, options, readonly, None)

    def mount_checked(
        self,
        source: str,
        target: str,
        fs_type: str | None,
        options: Sequence[str],
        readonly: bool,
        entries: list[MountEntry] | None,
    ) -> None:
        """:meth:`mount`, checked against ``entries`` when the caller has just read the table."""
        opts = split_mount_options(options, fs_type)
        readonly = readonly or "ro" in opts
        number = self.host.require_block_device(source)
        path = normalize(target)
        entries = self.host.mounts() if entries is None else entries
        existing = top_mount(entries, path)
        if existing is not None:
            if not self.host.entry_is_device(existing, number):
                raise FailedPrecondition(
                    f"{target} is already mounted from {existing.source}; not mounting {source} there"
                )
            if existing.read_only != readonly:
                have, want = (
                    ("read-only", "read-write") if existing.read_only else ("read-write", "read-only")
                )
                raise FailedPrecondition(f"{source} is already mounted {have} at {target}; {want} was asked")
            return
        fs = fs_type.lower() if fs_type else None
        if fs is None:
            fs = self.host.filesystem_signature(source)
            if fs is None:
                raise FailedPrecondition(f"{source} holds no filesystem; nothing to mount")
            if fs in NOT_MOUNTABLE or not re.fullmatch(r"[A-Za-z0-9_.]+", fs):
                raise FailedPrecondition(f"{source} holds {fs}, not a filesystem this plugin can mount")
        # The kernel keeps one superblock per device and refuses a second mount that would
        # flip it between read-only and read-write (Nomad stages one volume ro and rw on
        # the same node). A read-only view beside a read-write mount is a read-only bind.
        writable = self.host.filesystem_mounts(number, writable=True, entries=entries)
        if readonly and writable:
            created = self.host.ensure_dir(path)
            self.bind(writable[0], path, True, [o for o in opts if o not in ("ro", "rw")], created)
            return
        if readonly:
            # Like the official driver: a read-only device cannot be written by a journal
            # replay or promoted by DRBD. Left alone while something here writes to it.
            if not any(not e.read_only for e in self.host.device_mounts(number, entries)):
                self.set_device_access(source, number, readonly=True, entries=entries)
        else:
            self.refuse_read_write_beside_read_only(source, number, entries)
            self.set_device_access(source, number, readonly=False, entries=entries)
        final = mount_options(fs, opts, readonly, blockdev.read_only(number))
        created = self.host.ensure_dir(path)
        try:
            self.host.mount(
                mount_command(source, path, fs, final, readonly), source, path, fs, final, readonly
            )
        except VolumeError:
            self.host.remove_created(path, created)
            raise

    def bind_mount(
        self,
        source: str,
        target: str,
        readonly: bool = False,
        options: Sequence[str] = (),
        entries: list[MountEntry] | None = None,
    ) -> None:
        """Bind a directory (or file) elsewhere; a repeat with the same source is a no-op.

        ``entries`` is a mount table the caller has just read; without it, it is read now.
        """
        if blockdev.is_block_device(source):
            self.bind_block_device(source, target, readonly)
            return
        if not os.path.exists(source):
            raise NotFound(f"{source} does not exist; nothing to bind")
        opts = split_mount_options(options)
        readonly = readonly or "ro" in opts
        opts = [o for o in opts if o not in ("ro", "rw")]
        src, path = normalize(source), normalize(target)
        entries = self.host.mounts() if entries is None else entries
        existing = top_mount(entries, path)
        if existing is not None:
            if (existing.device_number, existing.root) != location_in_filesystem(entries, src):
                raise FailedPrecondition(f"{target} is already mounted from something other than {source}")
            if existing.read_only != readonly:
                have = "read-only" if existing.read_only else "read-write"
                raise FailedPrecondition(f"{source} is already bound {have} at {target}")
            return
        created = self.host.ensure_dir(path) if os.path.isdir(src) else self.host.ensure_file(path)
        self.bind(src, path, readonly, opts, created)

    def bind(self, source: str, target: str, readonly: bool, options: Sequence[str], created: bool) -> None:
        try:
            self.host.bind(source, target)
        except VolumeError:
            self.host.remove_created(target, created)
            raise
        if not readonly and not options:
            return
        try:
            self.host.cmd(bind_remount_command(target, readonly, options))
        except VolumeError:
            # Never leave a read-write bind behind when read-only was asked.
            try:
                self.host.cmd(["umount", target])
            except VolumeError as exc:
                log.error("could not undo bind mount at %s: %s", target, exc)
            else:
                self.host.remove_created(target, created)
            raise

    def bind_block_device(self, device: str, target_file: str, readonly: bool = False) -> None:
        """Make a raw block volume appear at a file path, as CSI block volumes do."""
        number = self.host.require_block_device(device)
        path = normalize(target_file)
        existing = top_mount(self.host.mounts(), path)
        if existing is not None:
            if blockdev.device_number(path) != number:
                raise FailedPrecondition(
                    f"{target_file} is already mounted from something other than {device}"
                )
            if existing.read_only != readonly:
                have = "read-only" if existing.read_only else "read-write"
                raise FailedPrecondition(f"{device} is already bound {have} at {target_file}")
            return
        self.set_device_access(device, number, readonly)
        # Open the device once: a bind mount never does, so a device that cannot be opened
        # (e.g. DRBD cannot become primary) would only fail later inside the workload.
        try:
            fd = os.open(device, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC)
            os.close(fd)
        except OSError as exc:
            mode = "reading" if readonly else "writing"
            raise FailedPrecondition(f"cannot open {device} for {mode}: {exc.strerror}") from exc
        created = self.host.ensure_file(path)
        self.bind(device, path, readonly, (), created)

    def refuse_read_write_beside_read_only(
        self, device: str, number: tuple[int, int], entries: list[MountEntry] | None = None
    ) -> None:
        entries = self.host.mounts() if entries is None else entries
        if self.host.filesystem_mounts(number, writable=True, entries=entries):
            return
        read_only = self.host.filesystem_mounts(number, writable=False, entries=entries)
        if read_only:
            raise FailedPrecondition(
                f"{device} is mounted read-only at {read_only[0]} on this node; "
                "it cannot be mounted read-write at the same time"
            )

    def set_device_access(
        self,
        device: str,
        number: tuple[int, int],
        readonly: bool,
        entries: list[MountEntry] | None = None,
    ) -> None:
        """Set the kernel's read-only flag of the whole device.

        A read-only bind of a device node does not stop writes through it, so read-only
        raw block access has to be enforced on the device (``blockdev --setro``), and a
        later read-write use has to lift it again. Both refuse while another user on this
        node depends on the opposite setting.
        """
        current = blockdev.read_only(number)
        if current is readonly:
            return
        if readonly:
            writers = [e.mount_point for e in self.host.device_mounts(number, entries) if not e.read_only]
            if writers:
                raise FailedPrecondition(
                    f"{device} is in use read-write at {', '.join(writers)}; it cannot also be "
                    "used read-only as a raw block device on this node"
                )
            self.host.cmd(["blockdev", "--setro", device])
            return
        if current is None:
            return
        readers = [
            e.mount_point
            for e in self.host.device_mounts(number, entries)
            if e.read_only and blockdev.device_number(e.mount_point) == number
        ]
        if readers:
            raise FailedPrecondition(
                f"{device} is in use as a read-only raw block device at {', '.join(readers)}; "
                "it cannot be used read-write on this node at the same time"
            )
        self.host.cmd(["blockdev", "--setrw", device])
