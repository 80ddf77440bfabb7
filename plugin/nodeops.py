"""Everything the core does to the host: devices, filesystems, mounts.

This is the only module of the project that runs commands for block devices and mounts,
and it runs every one through :func:`run` with an argument list and a timeout, so a
reader can audit every command in one place and no user input ever meets a shell.

The rule that matters most: a device that carries any signature (filesystem, partition
table, LVM, RAID, swap...) is never formatted, and when in doubt (unreadable device,
ambiguous probe, missing tool) it counts as not blank. Mounts are idempotent by reading
the kernel's mount table, and every error says which command failed and why.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import subprocess
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from plugin import blockdev
from plugin.errors import (
    FailedPrecondition,
    InUse,
    InvalidArgument,
    NotFound,
    OperationFailed,
    Unavailable,
    VolumeError,
)
from plugin.filesystems import FILESYSTEMS
from plugin.keyed_locks import KeyedLocks
from plugin.models import VolumeCondition, VolumeStats
from plugin.mounts import (
    MOUNTINFO,
    MountEntry,
    location_in_filesystem,
    normalize,
    read_mountinfo,
    top_mount,
)
from plugin.nodecommands import (
    NOT_MOUNTABLE,
    bind_remount_command,
    describe_signature,
    filesystem_type,
    loggable_command,
    mkfs_arguments,
    mkfs_command,
    mount_command,
    mount_options,
    parse_blkid_export,
    parse_btrfs_show_sizes,
    parse_dumpe2fs_size,
    parse_xfs_info_size,
    split_mount_options,
)
from plugin.param_values import format_size
from plugin.progress import long_operation

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 120.0
# fsck and resize of a whole filesystem
MKFS_TIMEOUT = 1800.0
# mkfs gets a time limit that grows with the device: a floor plus seconds per GiB
MKFS_TIMEOUT_FLOOR = 60.0
MKFS_SECONDS_PER_GIB = 2.0
# A grow is worth doing when the device exceeds the filesystem by at least this much.
GROW_THRESHOLD = 1 << 20


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


@dataclass(frozen=True)
class CommandResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[..., CommandResult]


def format_command(args: Sequence[str]) -> str:
    """The command as logs and errors show it: user options redacted, see ``loggable_command``."""
    return loggable_command(args)


def mkfs_timeout(
    size_bytes: int, floor: float = MKFS_TIMEOUT_FLOOR, per_gib: float = MKFS_SECONDS_PER_GIB
) -> float:
    """How long mkfs may take on a device of ``size_bytes``: ``floor`` plus ``per_gib`` per GiB."""
    return floor + per_gib * max(size_bytes, 0) / (1 << 30)


def run(
    args: Sequence[str], *, timeout: float = COMMAND_TIMEOUT, ok_codes: Collection[int] = (0,)
) -> CommandResult:
    """Run one command without a shell; any other exit code raises OperationFailed.

    The C locale keeps messages stable for the few places that read them, and stdin is
    closed so a tool that wants to ask a question fails instead of hanging.
    """
    argv = tuple(args)
    cmd = format_command(argv)
    log.debug("running %s", cmd)
    env = dict(os.environ, LC_ALL="C", LANG="C")
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=env,
            check=False,
        )
    except FileNotFoundError as exc:
        raise OperationFailed(f"{cmd} failed: {argv[0]} is not installed on this node", command=cmd) from exc
    except subprocess.TimeoutExpired as exc:
        raise OperationFailed(
            f"{cmd} did not finish within {timeout:g}s", command=cmd, timed_out=True
        ) from exc
    except OSError as exc:
        raise OperationFailed(f"{cmd} could not be started: {exc.strerror}", command=cmd) from exc
    return checked(CommandResult(argv, proc.returncode, proc.stdout, proc.stderr), ok_codes)


def one_line(text: str) -> str:
    """A tool's multi-line message as one line for an error sentence."""
    return "; ".join(line.strip().rstrip(".") for line in text.splitlines() if line.strip())


def checked(result: CommandResult, ok_codes: Collection[int] = (0,)) -> CommandResult:
    """Turn an unexpected exit code into OperationFailed naming the command and its stderr."""
    if result.returncode in ok_codes:
        return result
    cmd = format_command(result.args)
    detail = one_line(result.stderr) or one_line(result.stdout) or "no output"
    raise OperationFailed(
        f"{cmd} failed (exit {result.returncode}): {detail}",
        command=cmd,
        returncode=result.returncode,
        stderr=result.stderr,
    )


class NodeOps:
    """Host-side operations for one node; safe to share between request threads."""

    def __init__(
        self,
        device_timeout: float = 30.0,
        *,
        run: Runner = run,
        mountinfo_path: str = MOUNTINFO,
        command_timeout: float = COMMAND_TIMEOUT,
        mkfs_timeout: float = MKFS_TIMEOUT,
        mkfs_timeout_floor: float = MKFS_TIMEOUT_FLOOR,
        mkfs_seconds_per_gib: float = MKFS_SECONDS_PER_GIB,
    ) -> None:
        self.device_timeout = device_timeout
        self._run = run
        self._mountinfo_path = mountinfo_path
        self._command_timeout = command_timeout
        self._mkfs_timeout = mkfs_timeout
        self._mkfs_floor = mkfs_timeout_floor
        self._mkfs_per_gib = mkfs_seconds_per_gib
        # Check-then-mkfs must not interleave between two requests for the same device.
        self._format_locks = KeyedLocks("device")

    # -- helpers ------------------------------------------------------------------------

    def _cmd(
        self, args: Sequence[str], *, timeout: float | None = None, ok_codes: Collection[int] = (0,)
    ) -> CommandResult:
        return self._run(args, timeout=timeout or self._command_timeout, ok_codes=ok_codes)

    def _mounts(self) -> list[MountEntry]:
        try:
            return read_mountinfo(self._mountinfo_path)
        except (OSError, ValueError) as exc:
            raise OperationFailed(f"cannot read the mount table {self._mountinfo_path}: {exc}") from exc

    @staticmethod
    def _require_block_device(path: str) -> tuple[int, int]:
        number = blockdev.device_number(path)
        if number is None:
            if not os.path.exists(path):
                raise NotFound(f"device {path} does not exist on this node")
            raise FailedPrecondition(f"{path} is not a block device")
        return number

    @staticmethod
    def _entry_is_device(
        entry: MountEntry, number: tuple[int, int], cache: dict[str, object] | None = None
    ) -> bool:
        """Whether a mount shows a filesystem on device ``number``.

        The device number in mountinfo is the device for ext4/xfs but an anonymous one for
        btrfs, whose source field names the device instead; either match counts.
        """
        if entry.device_number == number:
            return True
        if not entry.source.startswith("/"):
            return False
        if cache is not None and entry.source in cache:
            return cache[entry.source] == number
        found = blockdev.device_number(entry.source)
        if cache is not None:
            cache[entry.source] = found
        return found == number

    @staticmethod
    def _ensure_dir(path: str) -> bool:
        """Create a mount target directory; True when this call created it."""
        if os.path.lexists(path):
            if not os.path.isdir(path):
                raise FailedPrecondition(f"{path} exists and is not a directory")
            return False
        try:
            os.makedirs(path, mode=0o755)
        except FileExistsError:
            return False
        except OSError as exc:
            raise OperationFailed(f"cannot create mount point {path}: {exc.strerror}") from exc
        return True

    @staticmethod
    def _ensure_file(path: str) -> bool:
        """Create an empty file to bind something onto; True when this call created it."""
        if os.path.lexists(path):
            if os.path.isdir(path):
                raise FailedPrecondition(f"{path} exists and is a directory; a file is needed here")
            return False
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o640)
            os.close(fd)
        except FileExistsError:
            return False
        except OSError as exc:
            raise OperationFailed(f"cannot create {path}: {exc.strerror}") from exc
        return True

    @staticmethod
    def _remove_created(path: str, created: bool) -> None:
        if not created:
            return
        try:
            if os.path.isdir(path):
                os.rmdir(path)
            else:
                os.unlink(path)
        except OSError as exc:
            log.warning("could not remove %s after a failed mount: %s", path, exc.strerror)

    def _format_lock(self, device: str) -> AbstractContextManager[None]:
        """One lock per device (by number, so two names of one device share it)."""
        key: object = blockdev.device_number(device) or normalize(device)
        return self._format_locks.lock(key)  # type: ignore[arg-type]

    # -- devices ------------------------------------------------------------------------

    def wait_for_device(self, path: str, timeout: float | None = None) -> None:
        """Poll for the device node: LINSTOR reports a device path before udev may have made it."""
        limit = self.device_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        delay = 0.02
        while True:
            if os.path.exists(path):
                if blockdev.is_block_device(path):
                    return
                raise FailedPrecondition(f"{path} exists but is not a block device")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(
                    f"device {path} did not appear within {limit:g}s; is the volume attached to this node?"
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.5)

    def device_size_bytes(self, device: str) -> int:
        self._require_block_device(device)
        try:
            return blockdev.size_bytes(device)
        except OSError as exc:
            raise OperationFailed(f"cannot read the size of {device}: {exc.strerror}") from exc

    def filesystem_signature(self, device: str) -> str | None:
        """What is on the device, or None only when it is certainly blank.

        ``blkid -p`` probes the device itself (no cache) for every kind of signature. A
        device we cannot read, or a probe that is ambiguous or fails, is reported as
        carrying something, so nothing is ever formatted on a guess.
        """
        if not os.path.exists(device):
            raise NotFound(f"device {device} does not exist on this node")
        try:
            fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.read(fd, 4096)
            finally:
                os.close(fd)
        except OSError as exc:
            return f"unknown (device cannot be read: {exc.strerror})"
        result = self._cmd(["blkid", "-p", "-o", "export", device], ok_codes=range(256))
        if result.returncode == 2:
            return None
        if result.returncode == 8:
            return "several signatures (ambivalent probe)"
        if result.returncode != 0:
            detail = result.stderr.strip() or f"exit {result.returncode}"
            return f"unknown (blkid could not probe: {detail})"
        return describe_signature(parse_blkid_export(result.stdout)) or "unrecognised signature"

    def format_if_blank(self, device: str, fs_type: str, mkfs_opts: str = "") -> bool:
        """mkfs only a blank device; True when it formatted. A device in use is never formatted."""
        command = mkfs_command(device, fs_type, mkfs_opts)
        with self._format_lock(device):
            found = self.filesystem_signature(device)
            if found is not None:
                log.info("not formatting %s: it holds %s", device, found)
                return False
            users = self.mounts_of(device)
            if users:
                raise InUse(f"{device} is in use at {', '.join(users)}; not formatting it", mounts=users)
            # The last look right before mkfs: someone may have written since the first.
            found = self.filesystem_signature(device)
            if found is not None:
                log.info("not formatting %s: it holds %s", device, found)
                return False
            log.info("formatting %s", format_command(command))
            self._mkfs(command, device)
        return True

    def _mkfs(self, command: Sequence[str], device: str) -> None:
        """Run mkfs with a time limit that grows with the device, and say why it ran out."""
        size = self._size_for_timeout(device)
        limit = mkfs_timeout(size, self._mkfs_floor, self._mkfs_per_gib)
        try:
            with long_operation(device, f"formatting {device} ({command[0]}, {format_size(size)})"):
                self._cmd(command, timeout=limit)
        except OperationFailed as exc:
            if not exc.details.get("timed_out"):
                raise
            raise OperationFailed(
                f"{format_command(command)} did not finish within {limit:g}s, the time allowed for "
                f"formatting {format_size(size)} ({self._mkfs_floor:g}s plus {self._mkfs_per_gib:g}s "
                "per GiB): "
                "the device is unusually slow, or an mkfs option made mkfs do far more work than "
                "formatting needs",
                command=format_command(command),
                timed_out=True,
            ) from exc

    @staticmethod
    def _size_for_timeout(device: str) -> int:
        try:
            return blockdev.size_bytes(device)
        except OSError:
            try:
                return os.stat(device).st_size  # an image file rather than a device
            except OSError:
                return 0

    # -- mount table queries ------------------------------------------------------------

    def is_mounted(self, target: str) -> bool:
        return top_mount(self._mounts(), normalize(target)) is not None

    def mount_source(self, target: str) -> str | None:
        """The device (or source) mounted at ``target``; for a bound block device, its /dev path."""
        path = normalize(target)
        entry = top_mount(self._mounts(), path)
        if entry is None:
            return None
        number = blockdev.device_number(path)
        if number is not None:
            return blockdev.dev_path(number) or entry.source
        return entry.source

    def mounts_of(self, source: str) -> list[str]:
        """Every mount point showing ``source``: a device (by device number) or a directory."""
        number = blockdev.device_number(source)
        if number is not None:
            return [e.mount_point for e in self._device_mounts(number)]
        entries = self._mounts()
        location = location_in_filesystem(entries, normalize(source)) if os.path.exists(source) else None
        if location is None:
            return []
        return [e.mount_point for e in entries if (e.device_number, e.root) == location]

    def writable_mounts_of(self, device: str) -> list[str]:
        """Mount points where the device's data is writable: rw filesystem mounts, binds and device binds.

        What SINGLE_NODE_SINGLE_WRITER needs to know: where else the volume is open for writing.
        """
        number = self._require_block_device(device)
        return [e.mount_point for e in self._device_mounts(number) if not e.read_only]

    def _device_mounts(
        self, number: tuple[int, int], entries: list[MountEntry] | None = None
    ) -> list[MountEntry]:
        """Mounts of a filesystem on the device, and binds of the device node itself.

        ``entries`` is a mount table the caller already read; without it, it is read now.
        """
        cache: dict[str, object] = {}
        found: list[MountEntry] = []
        for entry in self._mounts() if entries is None else entries:
            if self._entry_is_device(entry, number, cache) or (
                entry.root != "/" and blockdev.device_number(entry.mount_point) == number
            ):
                found.append(entry)
        return found

    def _filesystem_mounts(
        self, number: tuple[int, int], *, writable: bool, entries: list[MountEntry] | None = None
    ) -> list[str]:
        """Mount points of the device's filesystem (not raw binds) with a rw or ro superblock."""
        return [
            e.mount_point
            for e in self._device_mounts(number, entries)
            if e.root == "/"
            and blockdev.device_number(e.mount_point) is None
            and e.superblock_read_only is not writable
        ]

    def _refuse_read_write_beside_read_only(
        self, device: str, number: tuple[int, int], entries: list[MountEntry] | None = None
    ) -> None:
        entries = self._mounts() if entries is None else entries
        if self._filesystem_mounts(number, writable=True, entries=entries):
            return
        read_only = self._filesystem_mounts(number, writable=False, entries=entries)
        if read_only:
            raise FailedPrecondition(
                f"{device} is mounted read-only at {read_only[0]} on this node; "
                "it cannot be mounted read-write at the same time"
            )

    def _set_device_access(
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
            writers = [e.mount_point for e in self._device_mounts(number, entries) if not e.read_only]
            if writers:
                raise FailedPrecondition(
                    f"{device} is in use read-write at {', '.join(writers)}; it cannot also be "
                    "used read-only as a raw block device on this node"
                )
            self._cmd(["blockdev", "--setro", device])
            return
        if current is None:
            return
        readers = [
            e.mount_point
            for e in self._device_mounts(number, entries)
            if e.read_only and blockdev.device_number(e.mount_point) == number
        ]
        if readers:
            raise FailedPrecondition(
                f"{device} is in use as a read-only raw block device at {', '.join(readers)}; "
                "it cannot be used read-write on this node at the same time"
            )
        self._cmd(["blockdev", "--setrw", device])

    # -- mounting -----------------------------------------------------------------------

    def mount(
        self,
        source: str,
        target: str,
        fs_type: str | None = None,
        options: Sequence[str] = (),
        readonly: bool = False,
    ) -> None:
        """Mount a filesystem; a repeat with the same device is a no-op."""
        self._mount(source, target, fs_type, options, readonly, None)

    def _mount(
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
        number = self._require_block_device(source)
        path = normalize(target)
        entries = self._mounts() if entries is None else entries
        existing = top_mount(entries, path)
        if existing is not None:
            if not self._entry_is_device(existing, number):
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
            fs = self.filesystem_signature(source)
            if fs is None:
                raise FailedPrecondition(f"{source} holds no filesystem; nothing to mount")
            if fs in NOT_MOUNTABLE or not re.fullmatch(r"[A-Za-z0-9_.]+", fs):
                raise FailedPrecondition(f"{source} holds {fs}, not a filesystem this plugin can mount")
        # The kernel keeps one superblock per device and refuses a second mount that would
        # flip it between read-only and read-write (Nomad stages one volume ro and rw on
        # the same node). A read-only view beside a read-write mount is a read-only bind.
        writable = self._filesystem_mounts(number, writable=True, entries=entries)
        if readonly and writable:
            created = self._ensure_dir(path)
            self._bind(writable[0], path, True, [o for o in opts if o not in ("ro", "rw")], created)
            return
        if readonly:
            # Like the official driver: a read-only device cannot be written by a journal
            # replay or promoted by DRBD. Left alone while something here writes to it.
            if not any(not e.read_only for e in self._device_mounts(number, entries)):
                self._set_device_access(source, number, readonly=True, entries=entries)
        else:
            self._refuse_read_write_beside_read_only(source, number, entries)
            self._set_device_access(source, number, readonly=False, entries=entries)
        final = mount_options(fs, opts, readonly, blockdev.read_only(number))
        created = self._ensure_dir(path)
        try:
            self._cmd(mount_command(source, path, fs, final, readonly))
        except VolumeError:
            self._remove_created(path, created)
            raise

    def bind_mount(
        self, source: str, target: str, readonly: bool = False, options: Sequence[str] = ()
    ) -> None:
        """Bind a directory (or file) elsewhere; a repeat with the same source is a no-op."""
        if blockdev.is_block_device(source):
            self.bind_block_device(source, target, readonly)
            return
        if not os.path.exists(source):
            raise NotFound(f"{source} does not exist; nothing to bind")
        opts = split_mount_options(options)
        readonly = readonly or "ro" in opts
        opts = [o for o in opts if o not in ("ro", "rw")]
        src, path = normalize(source), normalize(target)
        entries = self._mounts()
        existing = top_mount(entries, path)
        if existing is not None:
            if (existing.device_number, existing.root) != location_in_filesystem(entries, src):
                raise FailedPrecondition(f"{target} is already mounted from something other than {source}")
            if existing.read_only != readonly:
                have = "read-only" if existing.read_only else "read-write"
                raise FailedPrecondition(f"{source} is already bound {have} at {target}")
            return
        created = self._ensure_dir(path) if os.path.isdir(src) else self._ensure_file(path)
        self._bind(src, path, readonly, opts, created)

    def _bind(self, source: str, target: str, readonly: bool, options: Sequence[str], created: bool) -> None:
        try:
            self._cmd(["mount", "--bind", source, target])
        except VolumeError:
            self._remove_created(target, created)
            raise
        if not readonly and not options:
            return
        try:
            self._cmd(bind_remount_command(target, readonly, options))
        except VolumeError:
            # Never leave a read-write bind behind when read-only was asked.
            try:
                self._cmd(["umount", target])
            except VolumeError as exc:
                log.error("could not undo bind mount at %s: %s", target, exc)
            else:
                self._remove_created(target, created)
            raise

    def bind_block_device(self, device: str, target_file: str, readonly: bool = False) -> None:
        """Make a raw block volume appear at a file path, as CSI block volumes do."""
        number = self._require_block_device(device)
        path = normalize(target_file)
        existing = top_mount(self._mounts(), path)
        if existing is not None:
            if blockdev.device_number(path) != number:
                raise FailedPrecondition(
                    f"{target_file} is already mounted from something other than {device}"
                )
            if existing.read_only != readonly:
                have = "read-only" if existing.read_only else "read-write"
                raise FailedPrecondition(f"{device} is already bound {have} at {target_file}")
            return
        self._set_device_access(device, number, readonly)
        # Open the device once: a bind mount never does, so a device that cannot be opened
        # (e.g. DRBD cannot become primary) would only fail later inside the workload.
        try:
            fd = os.open(device, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC)
            os.close(fd)
        except OSError as exc:
            mode = "reading" if readonly else "writing"
            raise FailedPrecondition(f"cannot open {device} for {mode}: {exc.strerror}") from exc
        created = self._ensure_file(path)
        self._bind(device, path, readonly, (), created)

    # -- whose mount is it ---------------------------------------------------------------

    def mount_owned_by(self, target: str, owner: MountOwner) -> bool | None:
        """Whether the visible mount at ``target`` belongs to ``owner``; None when nothing is mounted."""
        path = normalize(target)
        entry = top_mount(self._mounts(), path)
        if entry is None:
            return None
        return self._owned(entry, path, owner)

    def _owned(self, entry: MountEntry, path: str, owner: MountOwner) -> bool:
        number = blockdev.device_number(owner.device) if owner.device else None
        bound = blockdev.device_number(path)
        if bound is not None:  # a raw block volume: the file is the bound device node
            return bound == number or not blockdev.present(bound)
        if number is not None and self._entry_is_device(entry, number):
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
        if not os.path.lexists(path) and not self.is_mounted(path):
            return
        read_only_devices: set[tuple[int, int]] = set()
        for _ in range(32):
            entry = top_mount(self._mounts(), path)
            if entry is None:
                break
            if owner is not None:
                self._refuse_foreign(entry, path, target, owner)
            number = self._block_device_of(entry, path)
            if entry.read_only and number is not None:
                read_only_devices.add(number)
            try:
                self._cmd(["umount", path])
            except VolumeError as exc:
                if not self.is_mounted(path):
                    break  # somebody else unmounted it meanwhile
                if "busy" not in str(exc).lower():
                    raise
                if not lazy:
                    raise InUse(f"{target} is busy (a process still uses it); not unmounted") from exc
                log.warning("%s is busy; detaching it lazily, it stays in use until released", target)
                self._cmd(["umount", "-l", path])
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
        if not blockdev.read_only(number) or self._device_mounts(number):
            return
        device = blockdev.dev_path(number)
        if device is None or blockdev.device_number(device) != number:
            log.warning("cannot find the device node of %d:%d to make it writable again", *number)
            return
        try:
            self._cmd(["blockdev", "--setrw", device])
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

    # -- staging and growing ------------------------------------------------------------

    def stage(
        self,
        device: str,
        staging_path: str,
        fs_type: str,
        mkfs_opts: str = "",
        mount_opts: Sequence[str] = (),
        readonly: bool = False,
        post_mount_xfs_opts: str = "",
    ) -> None:
        """Make the volume's filesystem available at ``staging_path``; safe to repeat.

        Order matters: nothing is formatted unless the device is blank, a filesystem of
        another type is an error (never a reformat), and a filesystem smaller than its
        device (the volume was expanded, or restored into a bigger one) is grown.
        ``post_mount_xfs_opts`` is the StorageClass ``postMountXfsOpts`` of the official
        driver: an ``xfs_io -c`` command run on every fresh read-write xfs mount.

        The mount table is read once, before anything here changes it (formatting, growing
        offline and setting the device's read-only flag do not), and every check uses that
        reading. The device is probed once. A filesystem this call made, or grew offline,
        fills its device, so its size is not asked again after mounting.
        """
        fs = filesystem_type(fs_type)
        mkfs_arguments(mkfs_opts, fs)
        readonly = readonly or "ro" in split_mount_options(mount_opts, fs)
        self.wait_for_device(device)
        number = self._require_block_device(device)
        path = normalize(staging_path)
        entries = self._mounts()
        existing = top_mount(entries, path)
        already = existing is not None and self._entry_is_device(existing, number)
        if existing is not None and not already:
            raise FailedPrecondition(
                f"{staging_path} is already mounted from {existing.source}, not {device}"
            )
        fills_device = False
        if not already:
            if readonly:
                found = self.filesystem_signature(device)
                if found is None:
                    raise FailedPrecondition(
                        f"{device} holds no filesystem; a read-only volume is never formatted"
                    )
            else:
                self._refuse_read_write_beside_read_only(device, number, entries)
                self._set_device_access(device, number, readonly=False, entries=entries)
                found, fills_device = self._probe_then_format(device, number, fs, mkfs_opts, entries)
            if found != fs:
                raise FailedPrecondition(
                    f"{device} holds {found}, not {fs}; it is neither formatted nor mounted as {fs}"
                )
            if (
                not fills_device
                and not readonly
                and fs == "ext4"
                and not self._device_mounts(number, entries)
            ):
                self._grow_ext4_offline(device)
                fills_device = True
        self._mount(device, path, fs, mount_opts, readonly, entries)
        if readonly:
            return
        if post_mount_xfs_opts and fs == "xfs" and not already:
            self._run_post_mount_xfs_io(path, post_mount_xfs_opts)
        if fills_device:
            return
        try:
            if self._needs_grow(device, path, fs):
                self.grow_filesystem(path)
        except VolumeError as exc:
            if not already and not exc.details.get("missing_capability"):
                self.unmount(path, remove_target=False)
                raise
            # The volume is mounted and usable; a later stage or expand can retry the grow.
            log.warning("could not grow the filesystem at %s: %s", staging_path, exc)

    def preen_ext4(self, device: str) -> str:
        """Check an unmounted ext4 with ``e2fsck -p`` before it is mounted, as LINBIT's driver does.

        Preen mode fixes only what is safe to fix without a person; what it finds is logged.
        Anything it leaves (exit 4) stops the mount with FAILED_PRECONDITION: mounting a
        damaged filesystem would spread the damage. A device mounted anywhere on this node,
        or holding no ext4, is not checked; e2fsck's own "in use" refusal (exit 8, e.g. the
        device is open in another mount namespace) is logged and the mount goes ahead.
        Returns what happened, in words.
        """
        number = self._require_block_device(device)
        if self._device_mounts(number):
            return "not checked: mounted on this node"
        if self.filesystem_signature(device) != "ext4":
            return "not checked: no ext4 on the device"
        done = self._cmd(["e2fsck", "-p", device], timeout=self._mkfs_timeout, ok_codes=range(256))
        detail = one_line(done.stdout) or one_line(done.stderr) or "no output"
        code = done.returncode
        if code == 0:
            log.info("e2fsck -p %s: clean (%s)", device, detail)
            return "clean"
        if code in (1, 2, 3):
            log.warning("e2fsck -p %s repaired the filesystem (exit %d): %s", device, code, detail)
            return "repaired"
        if code == 8:
            log.warning("e2fsck -p %s could not check the filesystem (exit 8): %s", device, detail)
            return "not checked: e2fsck could not open it"
        log.error("e2fsck -p %s found errors it must not fix alone (exit %d): %s", device, code, detail)
        raise FailedPrecondition(
            f"the ext4 filesystem on {device} has errors that e2fsck -p will not repair without a person "
            f"(exit {code}: {detail}); not mounting it. Run e2fsck on {device} by hand, then retry",
            device=device,
            returncode=code,
        )

    def _probe_then_format(
        self, device: str, number: tuple[int, int], fs: str, mkfs_opts: str, entries: list[MountEntry]
    ) -> tuple[str | None, bool]:
        """(what the device holds, whether this call formatted it) for :meth:`stage`.

        The mount table was read before the probe, so the one probe is the last look at
        the device before mkfs; nothing is formatted unless it finds the device blank and
        nothing on this node uses it.
        """
        with self._format_lock(device):
            users = [e.mount_point for e in self._device_mounts(number, entries)]
            found = self.filesystem_signature(device)
            if found is not None:
                log.info("not formatting %s: it holds %s", device, found)
                return found, False
            if users:
                raise InUse(f"{device} is in use at {', '.join(users)}; not formatting it", mounts=users)
            command = mkfs_command(device, fs, mkfs_opts)
            log.info("formatting %s", format_command(command))
            self._cmd(command, timeout=self._mkfs_timeout)
        return fs, True

    def _run_post_mount_xfs_io(self, path: str, command: str) -> None:
        """Run ``xfs_io -c command`` on a fresh mount; undo the mount when it fails.

        xfs_io exits 0 even for an unknown command, so anything on stderr is a failure.
        """
        done = self._cmd(["xfs_io", "-c", command, path], ok_codes=range(256))
        if done.returncode == 0 and not done.stderr.strip():
            return
        self.unmount(path, remove_target=False)
        raise OperationFailed(
            f"xfs_io -c <command> failed on {path} (postMountXfsOpts): "
            f"{one_line(done.stderr) or f'exit {done.returncode}'}"
        )

    def _grow_ext4_offline(self, device: str) -> None:
        """Grow an ext4 that is mounted nowhere on this node before mounting it.

        Online ext4 resize needs CAP_SYS_RESOURCE, which containers often lack; offline
        resize only needs the device. resize2fs insists on a fresh check first, so e2fsck
        runs in its safe automatic mode (it opens the device exclusively and refuses a
        filesystem mounted elsewhere), and anything it cannot fix stops the stage.
        """
        size = self.device_size_bytes(device)
        if size - parse_dumpe2fs_size(self._cmd(["dumpe2fs", "-h", device]).stdout) < GROW_THRESHOLD:
            return
        check = self._cmd(["e2fsck", "-f", "-p", device], timeout=self._mkfs_timeout, ok_codes=range(256))
        if check.returncode not in (0, 1, 2):
            detail = one_line(check.stderr) or one_line(check.stdout)
            raise FailedPrecondition(
                f"the ext4 filesystem on {device} has errors that e2fsck -p cannot fix; "
                f"run e2fsck on it by hand (exit {check.returncode}: {detail})"
            )
        self._cmd(["resize2fs", device], timeout=self._mkfs_timeout)
        log.info("grew the ext4 filesystem on %s offline to %d bytes", device, size)

    def filesystem_size_bytes(self, device: str, mount_path: str, fs_type: str) -> int:
        """The size the filesystem itself believes it has (not statvfs, which hides metadata)."""
        if fs_type == "ext4":
            return parse_dumpe2fs_size(self._cmd(["dumpe2fs", "-h", device]).stdout)
        if fs_type == "xfs":
            return parse_xfs_info_size(self._cmd(["xfs_info", mount_path]).stdout)
        if fs_type == "btrfs":
            sizes = parse_btrfs_show_sizes(
                self._cmd(["btrfs", "filesystem", "show", "--raw", mount_path]).stdout
            )
            number = blockdev.device_number(device)
            for size, dev in sizes:
                if blockdev.device_number(dev) == number:
                    return size
            if len(sizes) == 1:
                return sizes[0][0]
            raise OperationFailed(f"btrfs at {mount_path} does not list {device}")
        raise InvalidArgument(f"unsupported filesystem type {fs_type!r}")

    def _needs_grow(self, device: str, mount_path: str, fs_type: str) -> bool:
        return self.device_size_bytes(device) - self.filesystem_size_bytes(device, mount_path, fs_type) >= (
            GROW_THRESHOLD
        )

    def grow_filesystem(self, mount_path: str) -> None:
        """Grow the filesystem mounted at ``mount_path`` to fill its device (online)."""
        path = normalize(mount_path)
        entry = top_mount(self._mounts(), path)
        if entry is None:
            raise FailedPrecondition(f"{mount_path} is not mounted; cannot grow its filesystem")
        if blockdev.device_number(path) is not None:
            return  # a raw block volume: the workload owns what is on it
        if entry.read_only or entry.superblock_read_only:
            raise FailedPrecondition(f"{mount_path} is mounted read-only; cannot grow its filesystem")
        fs = entry.fs_type
        if fs == "ext4":
            try:
                self._cmd(["resize2fs", self._entry_device(entry)], timeout=self._mkfs_timeout)
            except OperationFailed as exc:
                if "permission denied" not in str(exc).lower():
                    raise
                raise FailedPrecondition(
                    f"this node cannot grow a mounted ext4 filesystem (resize2fs needs CAP_SYS_RESOURCE); "
                    f"it is grown offline the next time the volume is staged. {exc}",
                    missing_capability="CAP_SYS_RESOURCE",
                ) from exc
        elif fs == "xfs":
            self._cmd(["xfs_growfs", path], timeout=self._mkfs_timeout)
        elif fs == "btrfs":
            self._cmd(["btrfs", "filesystem", "resize", "max", path], timeout=self._mkfs_timeout)
        else:
            raise InvalidArgument(
                f"growing {fs} filesystems is not supported (only {', '.join(FILESYSTEMS)})"
            )
        log.info("grew the %s filesystem at %s", fs, mount_path)

    @staticmethod
    def _entry_device(entry: MountEntry) -> str:
        if blockdev.device_number(entry.source) == entry.device_number:
            return entry.source
        return blockdev.dev_path(entry.device_number) or entry.source

    # -- health -------------------------------------------------------------------------

    def stats(self, path: str) -> VolumeStats:
        """Usage of a mounted volume; a raw block volume only has a size."""
        try:
            os.stat(path)
        except FileNotFoundError as exc:
            raise NotFound(f"{path} does not exist") from exc
        except OSError as exc:
            raise OperationFailed(f"cannot read usage of {path}: {exc.strerror}") from exc
        if blockdev.device_number(path) is not None:
            return VolumeStats(total_bytes=self.device_size_bytes(path), used_bytes=0, available_bytes=0)
        if not self.is_mounted(path):
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
        entry = top_mount(self._mounts(), real)
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
