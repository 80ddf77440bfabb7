"""Formatting: the blkid guard, mkfs with a time limit that grows with the device, ext4 preen.

The rule that matters most: a device that carries any signature (filesystem, partition
table, LVM, RAID, swap...) is never formatted, and when in doubt (unreadable device,
ambiguous probe, missing tool) it counts as not blank.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from plugin.errors import (
    FailedPrecondition,
    InUse,
    OperationFailed,
)
from plugin.keyed_locks import KeyedLocks
from plugin.node import blockdev
from plugin.node.commandlines import (
    mkfs_command,
)
from plugin.node.commands import (
    MKFS_SECONDS_PER_GIB,
    MKFS_TIMEOUT_FLOOR,
    format_command,
    mkfs_timeout,
    one_line,
)
from plugin.node.host import Host
from plugin.node.mounttable import (
    MountEntry,
    normalize,
)
from plugin.params.values import format_size
from plugin.progress import long_operation

log = logging.getLogger(__name__)


class Formatter:
    """Format only blank devices; check ext4 before it is mounted."""

    def __init__(
        self,
        host: Host,
        mkfs_timeout_floor: float = MKFS_TIMEOUT_FLOOR,
        mkfs_seconds_per_gib: float = MKFS_SECONDS_PER_GIB,
    ) -> None:
        self.host = host
        self._mkfs_floor = mkfs_timeout_floor
        self._mkfs_per_gib = mkfs_seconds_per_gib
        # Check-then-mkfs must not interleave between two requests for the same device.
        self._format_locks = KeyedLocks("device")

    def lock(self, device: str) -> AbstractContextManager[None]:
        """One lock per device (by number, so two names of one device share it)."""
        key: object = blockdev.device_number(device) or normalize(device)
        return self._format_locks.lock(key)  # type: ignore[arg-type]

    def format_if_blank(self, device: str, fs_type: str, mkfs_opts: str = "") -> bool:
        """mkfs only a blank device; True when it formatted. A device in use is never formatted."""
        command = mkfs_command(device, fs_type, mkfs_opts)
        with self.lock(device):
            found = self.host.filesystem_signature(device)
            if found is not None:
                log.info("not formatting %s: it holds %s", device, found)
                return False
            users = self.host.mounts_of(device)
            if users:
                raise InUse(f"{device} is in use at {', '.join(users)}; not formatting it", mounts=users)
            # The last look right before mkfs: someone may have written since the first.
            found = self.host.filesystem_signature(device)
            if found is not None:
                log.info("not formatting %s: it holds %s", device, found)
                return False
            log.info("formatting %s", format_command(command))
            self.mkfs(command, device)
        return True

    def probe_then_format(
        self,
        device: str,
        number: tuple[int, int],
        fs: str,
        mkfs_opts: str,
        entries: list[MountEntry],
        before_mkfs: Callable[[], bool] | None = None,
    ) -> tuple[str | None, bool]:
        """(what the device holds, whether this call formatted it) for :meth:`stage`.

        The mount table was read before the probe, so the one probe is the last look at
        the device before mkfs; nothing is formatted unless it finds the device blank and
        nothing on this node uses it. ``before_mkfs`` runs between that probe and mkfs (the
        stage's last preparations); when it says it had to wait, the device is probed again,
        so the last look stays right before mkfs.
        """
        with self.lock(device):
            users = [e.mount_point for e in self.host.device_mounts(number, entries)]
            found = self.host.filesystem_signature(device)
            if found is None and not users and before_mkfs is not None and before_mkfs():
                found = self.host.filesystem_signature(device)
            if found is not None:
                log.info("not formatting %s: it holds %s", device, found)
                return found, False
            if users:
                raise InUse(f"{device} is in use at {', '.join(users)}; not formatting it", mounts=users)
            command = mkfs_command(device, fs, mkfs_opts)
            log.info("formatting %s", format_command(command))
            self.mkfs(command, device)
        return fs, True

    def mkfs(self, command: Sequence[str], device: str) -> None:
        """Run mkfs with a time limit that grows with the device, and say why it ran out."""
        size = self.size_for_timeout(device)
        limit = mkfs_timeout(size, self._mkfs_floor, self._mkfs_per_gib)
        try:
            with long_operation(device, f"formatting {device} ({command[0]}, {format_size(size)})"):
                self.host.cmd(command, timeout=limit)
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
    def size_for_timeout(device: str) -> int:
        try:
            return blockdev.size_bytes(device)
        except OSError:
            try:
                return os.stat(device).st_size  # an image file rather than a device
            except OSError:
                return 0

    def preen_ext4(self, device: str) -> str:
        """Check an unmounted ext4 with ``e2fsck -p`` before it is mounted, as LINBIT's driver does.

        Preen mode fixes only what is safe to fix without a person; what it finds is logged.
        Anything it leaves (exit 4) stops the mount with FAILED_PRECONDITION: mounting a
        damaged filesystem would spread the damage. A device mounted anywhere on this node,
        or holding no ext4, is not checked; e2fsck's own "in use" refusal (exit 8, e.g. the
        device is open in another mount namespace) is logged and the mount goes ahead.
        Returns what happened, in words.
        """
        number = self.host.require_block_device(device)
        if self.host.device_mounts(number):
            return "not checked: mounted on this node"
        if self.host.filesystem_signature(device) != "ext4":
            return "not checked: no ext4 on the device"
        return self.check_unmounted_ext4(device)

    def check_unmounted_ext4(self, device: str) -> str:
        """The ``e2fsck -p`` of :meth:`preen_ext4`, for a caller that already knows the device
        holds ext4 and is mounted nowhere on this node (the stage, from its one probe)."""
        done = self.host.cmd(["e2fsck", "-p", device], timeout=self.host.long_timeout, ok_codes=range(256))
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
