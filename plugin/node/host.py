"""What the node operations share: commands, the mount table, device facts, mount points.

:class:`Host` runs commands through the runner it was given, reads the kernel's mount
table, answers which mounts show a device, probes a device for signatures and makes or
removes mount points. The concerns (formatting, mounting, unmounting, growing, health)
each hold one and ask it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Sequence
from typing import Literal

from plugin.errors import (
    FailedPrecondition,
    NotFound,
    OperationFailed,
    Unavailable,
)
from plugin.node import blockdev
from plugin.node.commandlines import (
    describe_signature,
    parse_blkid_export,
)
from plugin.node.commands import COMMAND_TIMEOUT, MKFS_TIMEOUT, CommandResult, Runner, format_command, run
from plugin.node.mounttable import (
    MOUNTINFO,
    MountEntry,
    location_in_filesystem,
    normalize,
    read_mountinfo,
    top_mount,
)
from plugin.node.native import NativeCalls, NativeUnavailable

log = logging.getLogger(__name__)

_real_run = run


class Host:
    """Commands, the mount table and device facts of one node; safe to share between threads."""

    def __init__(
        self,
        *,
        run: Runner = run,
        mountinfo_path: str = MOUNTINFO,
        command_timeout: float = COMMAND_TIMEOUT,
        long_timeout: float = MKFS_TIMEOUT,
        device_timeout: float = 30.0,
        native: NativeCalls | Literal["auto"] | None = "auto",
    ) -> None:
        """``native`` does the probe and the mounts in-process (see :mod:`plugin.node.native`).

        ``"auto"`` means in-process when ``run`` is the real runner, and never with a
        runner a test passed in: a fake runner must not meet real mount(2) calls.
        """
        self._run = run
        self.native = (NativeCalls() if run is _real_run else None) if native == "auto" else native
        self.mountinfo_path = mountinfo_path
        self.command_timeout = command_timeout
        self.long_timeout = long_timeout  # fsck and resize of a whole filesystem
        self.device_timeout = device_timeout

    def cmd(
        self, args: Sequence[str], *, timeout: float | None = None, ok_codes: Collection[int] = (0,)
    ) -> CommandResult:
        return self._run(args, timeout=timeout or self.command_timeout, ok_codes=ok_codes)

    def mounts(self) -> list[MountEntry]:
        try:
            return read_mountinfo(self.mountinfo_path)
        except (OSError, ValueError) as exc:
            raise OperationFailed(f"cannot read the mount table {self.mountinfo_path}: {exc}") from exc

    @staticmethod
    def require_block_device(path: str) -> tuple[int, int]:
        number = blockdev.device_number(path)
        if number is None:
            if not os.path.exists(path):
                raise NotFound(f"device {path} does not exist on this node")
            raise FailedPrecondition(f"{path} is not a block device")
        return number

    @staticmethod
    def entry_is_device(
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
    def ensure_dir(path: str) -> bool:
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
    def ensure_file(path: str) -> bool:
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
    def remove_created(path: str, created: bool) -> None:
        if not created:
            return
        try:
            if os.path.isdir(path):
                os.rmdir(path)
            else:
                os.unlink(path)
        except OSError as exc:
            log.warning("could not remove %s after a failed mount: %s", path, exc.strerror)

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
        self.require_block_device(device)
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
        answer = self._probe_in_process(device)
        if answer is not None:
            code, values = answer
        else:
            result = self.cmd(["blkid", "-p", "-o", "export", device], ok_codes=range(256))
            code, values = result.returncode, parse_blkid_export(result.stdout)
            if code not in (0, 2, 8):
                detail = result.stderr.strip() or f"exit {result.returncode}"
                return f"unknown (blkid could not probe: {detail})"
        if code == 2:
            return None
        if code == 8:
            return "several signatures (ambivalent probe)"
        return describe_signature(values) or "unrecognised signature"

    def _probe_in_process(self, device: str) -> tuple[int, dict[str, str]] | None:
        """libblkid's answer as (blkid's exit code, values); None to run ``blkid -p`` instead."""
        if self.native is None:
            return None
        try:
            answer = self.native.probe(device)
        except (NativeUnavailable, OSError) as exc:
            log.info("probing %s with blkid: the in-process probe could not (%s)", device, exc)
            return None
        return answer.code, answer.values

    def mount(
        self,
        args: Sequence[str],
        source: str,
        target: str,
        fs_type: str | None,
        options: Sequence[str],
        readonly: bool,
    ) -> None:
        """Mount a filesystem: mount(2) in-process, else (or when the kernel refuses) ``args``, mount(8).

        mount(8) runs the same mount again after a refusal so the error names the cause in
        the tool's own words (wrong filesystem type, device busy, read-only device...).
        """
        if self.native is not None and fs_type:
            log.debug("mount(2) in-process for %s", format_command(args))  # user options redacted
            try:
                self.native.mount(source, target, fs_type, options, readonly)
                return
            except NativeUnavailable:
                pass
            except OSError as exc:
                log.info(
                    "mount(2) of %s at %s refused (%s); asking %s", source, target, exc, format_command(args)
                )
        self.cmd(args)

    def bind(self, source: str, target: str) -> None:
        """``mount --bind``: mount(2) in-process, else (or when the kernel refuses) the tool."""
        if self.native is not None:
            log.debug("mount(2) in-process for mount --bind %s %s", source, target)
            try:
                self.native.bind(source, target)
                return
            except OSError as exc:
                log.info("bind of %s at %s refused (%s); asking mount --bind", source, target, exc)
        self.cmd(["mount", "--bind", source, target])

    def is_mounted(self, target: str) -> bool:
        return top_mount(self.mounts(), normalize(target)) is not None

    def mount_source(self, target: str) -> str | None:
        """The device (or source) mounted at ``target``; for a bound block device, its /dev path."""
        path = normalize(target)
        entry = top_mount(self.mounts(), path)
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
            return [e.mount_point for e in self.device_mounts(number)]
        entries = self.mounts()
        location = location_in_filesystem(entries, normalize(source)) if os.path.exists(source) else None
        if location is None:
            return []
        return [e.mount_point for e in entries if (e.device_number, e.root) == location]

    def writable_mounts_of(self, device: str, entries: list[MountEntry] | None = None) -> list[str]:
        """Mount points where the device's data is writable: rw filesystem mounts, binds and device binds.

        What SINGLE_NODE_SINGLE_WRITER needs to know: where else the volume is open for writing.
        """
        number = self.require_block_device(device)
        return [e.mount_point for e in self.device_mounts(number, entries) if not e.read_only]

    def device_mounts(
        self, number: tuple[int, int], entries: list[MountEntry] | None = None
    ) -> list[MountEntry]:
        """Mounts of a filesystem on the device, and binds of the device node itself.

        ``entries`` is a mount table the caller already read; without it, it is read now.
        """
        cache: dict[str, object] = {}
        found: list[MountEntry] = []
        for entry in self.mounts() if entries is None else entries:
            if self.entry_is_device(entry, number, cache) or (
                entry.root != "/" and blockdev.device_number(entry.mount_point) == number
            ):
                found.append(entry)
        return found

    def filesystem_mounts(
        self, number: tuple[int, int], *, writable: bool, entries: list[MountEntry] | None = None
    ) -> list[str]:
        """Mount points of the device's filesystem (not raw binds) with a rw or ro superblock."""
        return [
            e.mount_point
            for e in self.device_mounts(number, entries)
            if e.root == "/"
            and blockdev.device_number(e.mount_point) is None
            and e.superblock_read_only is not writable
        ]
