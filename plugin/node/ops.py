"""The node operations as one object: the façade both front ends and the core use.

:class:`NodeOps` composes the concerns, each in its own module (formatting, mounting,
unmounting, growing, health, over a shared :class:`~plugin.node.host.Host`), and holds
the one sequence that needs them all: :meth:`NodeOps.stage`. Tests that need no host
use :class:`~plugin.node.fake.FakeNodeOps`, which has the same methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal

from plugin.errors import (
    FailedPrecondition,
    OperationFailed,
    VolumeError,
)
from plugin.models import VolumeCondition, VolumeStats
from plugin.node.commandlines import (
    filesystem_type,
    mkfs_arguments,
)
from plugin.node.commands import (
    COMMAND_TIMEOUT,
    MKFS_SECONDS_PER_GIB,
    MKFS_TIMEOUT,
    MKFS_TIMEOUT_FLOOR,
    Runner,
    one_line,
    run,
)
from plugin.node.formatting import Formatter
from plugin.node.growing import Grower
from plugin.node.health import Health
from plugin.node.host import Host
from plugin.node.mounting import Mounter
from plugin.node.mounttable import (
    MOUNTINFO,
    MountEntry,
    normalize,
    top_mount,
)
from plugin.node.native import NativeCalls
from plugin.node.paths import Paths
from plugin.node.unmounting import MountOwner, Unmounter
from plugin.params.mount_rules import split_mount_options

log = logging.getLogger(__name__)


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
        native: NativeCalls | Literal["auto"] | None = "auto",
    ) -> None:
        """``native``: the in-process probe and mounts of :mod:`plugin.node.native` (see Host)."""
        self.host = Host(
            run=run,
            mountinfo_path=mountinfo_path,
            command_timeout=command_timeout,
            long_timeout=mkfs_timeout,
            device_timeout=device_timeout,
            native=native,
        )
        self.formatter = Formatter(self.host, mkfs_timeout_floor, mkfs_seconds_per_gib)
        self.mounter = Mounter(self.host)
        self.unmounter = Unmounter(self.host)
        self.grower = Grower(self.host)
        self.health = Health(self.host)
        self.paths = Paths(self.host)

    # -- devices and the mount table ----------------------------------------------------

    def wait_for_device(self, path: str, timeout: float | None = None) -> None:
        self.host.wait_for_device(path, timeout)

    def device_size_bytes(self, device: str) -> int:
        return self.host.device_size_bytes(device)

    def filesystem_signature(self, device: str) -> str | None:
        return self.host.filesystem_signature(device)

    def is_mounted(self, target: str) -> bool:
        return self.host.is_mounted(target)

    def mount_source(self, target: str) -> str | None:
        return self.host.mount_source(target)

    def mounts_of(self, source: str) -> list[str]:
        return self.host.mounts_of(source)

    def writable_mounts_of(self, device: str, table: list[MountEntry] | None = None) -> list[str]:
        return self.host.writable_mounts_of(device, table)

    def mount_table(self) -> list[MountEntry]:
        """One reading of the mount table, for a request that makes several checks.

        ``mount_owned_by``, ``writable_mounts_of`` and ``bind_mount`` take it as ``table``,
        so a publish reads /proc/self/mountinfo once (hundreds of lines on a busy node)
        instead of once per check; nothing between those checks changes the table.
        """
        return self.host.mounts()

    # -- host paths -----------------------------------------------------------------------

    def path_exists(self, path: str) -> bool:
        return self.paths.path_exists(path)

    def is_directory(self, path: str) -> bool:
        return self.paths.is_directory(path)

    def real_path(self, path: str) -> str:
        return self.paths.real_path(path)

    def same_device(self, a: str, b: str) -> bool:
        return self.paths.same_device(a, b)

    def make_directory(self, path: str, mode: int) -> None:
        self.paths.make_directory(path, mode)

    def mounted_directories(self, root: str) -> list[str]:
        return self.paths.mounted_directories(root)

    # -- formatting ---------------------------------------------------------------------

    def format_if_blank(self, device: str, fs_type: str, mkfs_opts: str = "") -> bool:
        return self.formatter.format_if_blank(device, fs_type, mkfs_opts)

    def preen_ext4(self, device: str) -> str:
        return self.formatter.preen_ext4(device)

    # -- mounting and unmounting ---------------------------------------------------------

    def mount(
        self,
        source: str,
        target: str,
        fs_type: str | None = None,
        options: Sequence[str] = (),
        readonly: bool = False,
    ) -> None:
        self.mounter.mount(source, target, fs_type, options, readonly)

    def bind_mount(
        self,
        source: str,
        target: str,
        readonly: bool = False,
        options: Sequence[str] = (),
        table: list[MountEntry] | None = None,
    ) -> None:
        self.mounter.bind_mount(source, target, readonly, options, table)

    def bind_block_device(self, device: str, target_file: str, readonly: bool = False) -> None:
        self.mounter.bind_block_device(device, target_file, readonly)

    def mount_owned_by(
        self, target: str, owner: MountOwner, table: list[MountEntry] | None = None
    ) -> bool | None:
        return self.unmounter.mount_owned_by(target, owner, table)

    def unmount(
        self, target: str, remove_target: bool = True, lazy: bool = False, owner: MountOwner | None = None
    ) -> None:
        self.unmounter.unmount(target, remove_target, lazy, owner)

    # -- growing and health ---------------------------------------------------------------

    def filesystem_size_bytes(self, device: str, mount_path: str, fs_type: str) -> int:
        return self.grower.filesystem_size_bytes(device, mount_path, fs_type)

    def grow_filesystem(self, mount_path: str) -> None:
        self.grower.grow_filesystem(mount_path)

    def stats(self, path: str) -> VolumeStats:
        return self.health.stats(path)

    def condition(self, path: str) -> VolumeCondition:
        return self.health.condition(path)

    # -- staging: the sequence that needs every concern ---------------------------------

    def stage(
        self,
        device: str,
        staging_path: str,
        fs_type: str,
        mkfs_opts: str = "",
        mount_opts: Sequence[str] = (),
        readonly: bool = False,
        post_mount_xfs_opts: str = "",
        check_ext4: bool = False,
        before_changes: Callable[[], bool] | None = None,
    ) -> None:
        """Make the volume's filesystem available at ``staging_path``; safe to repeat.

        Order matters: nothing is formatted unless the device is blank, a filesystem of
        another type is an error (never a reformat), and a filesystem smaller than its
        device (the volume was expanded, or restored into a bigger one) is grown.
        ``post_mount_xfs_opts`` is the StorageClass ``postMountXfsOpts`` of the official
        driver: an ``xfs_io -c`` command run on every fresh read-write xfs mount.
        ``check_ext4`` asks for the ``e2fsck -p`` of :meth:`preen_ext4` before a fresh
        read-write mount of an ext4 that was there before (as LINBIT's driver checks before
        every such mount); it is decided from the same probe, and a filesystem this call
        has just made is not checked. A staging path that shows another device is refused
        with ``mounted_from`` in the error's details.

        The mount table is read once, before anything here changes it (formatting, growing
        offline and setting the device's read-only flag do not), and every check uses that
        reading. The device is probed once. A filesystem this call made, or grew offline,
        fills its device, so its size is not asked again after mounting.

        ``before_changes`` is called once, after the mount-table checks and the probe and
        before anything is changed (the CSI stage waits there for the volume's definition,
        read meanwhile); it returns whether it had to wait, and then a blank device is
        probed again right before mkfs.
        """
        fs = filesystem_type(fs_type)
        mkfs_arguments(mkfs_opts, fs)
        readonly = readonly or "ro" in split_mount_options(mount_opts, fs)
        self.host.wait_for_device(device)
        number = self.host.require_block_device(device)
        path = normalize(staging_path)
        entries = self.host.mounts()
        existing = top_mount(entries, path)
        already = existing is not None and self.host.entry_is_device(existing, number)
        if existing is not None and not already:
            raise FailedPrecondition(
                f"{staging_path} is already mounted from {existing.source}, not {device}",
                mounted_from=existing.source,
            )
        ready = _Once(before_changes)
        fills_device = False
        if not already:
            if readonly:
                found = self.host.filesystem_signature(device)
                if found is None:
                    raise FailedPrecondition(
                        f"{device} holds no filesystem; a read-only volume is never formatted"
                    )
            else:
                self.mounter.refuse_read_write_beside_read_only(device, number, entries)

                def writable() -> bool:
                    waited = ready()
                    self.mounter.set_device_access(device, number, readonly=False, entries=entries)
                    return waited

                found, fills_device = self.formatter.probe_then_format(
                    device, number, fs, mkfs_opts, entries, before_mkfs=writable
                )
                if not fills_device:  # not formatted: nothing was prepared for mkfs
                    writable()
            ready()
            if found != fs:
                raise FailedPrecondition(
                    f"{device} holds {found}, not {fs}; it is neither formatted nor mounted as {fs}"
                )
            if (
                not fills_device
                and not readonly
                and fs == "ext4"
                and not self.host.device_mounts(number, entries)
            ):
                if check_ext4:
                    outcome = self.formatter.check_unmounted_ext4(device)
                    log.info("ext4 check of %s before mounting it: %s", device, outcome)
                self.grower.grow_ext4_offline(device)
                fills_device = True
        ready()
        self.mounter.mount_checked(device, path, fs, mount_opts, readonly, entries)
        if readonly:
            return
        if post_mount_xfs_opts and fs == "xfs" and not already:
            self._run_post_mount_xfs_io(path, post_mount_xfs_opts)
        if fills_device:
            return
        try:
            if self.grower.needs_grow(device, path, fs):
                self.grower.grow_filesystem(path)
        except VolumeError as exc:
            if not already and not exc.details.get("missing_capability"):
                self.unmounter.unmount(path, remove_target=False)
                raise
            # The volume is mounted and usable; a later stage or expand can retry the grow.
            log.warning("could not grow the filesystem at %s: %s", staging_path, exc)

    def _run_post_mount_xfs_io(self, path: str, command: str) -> None:
        """Run ``xfs_io -c command`` on a fresh mount; undo the mount when it fails.

        xfs_io exits 0 even for an unknown command, so anything on stderr is a failure.
        """
        done = self.host.cmd(["xfs_io", "-c", command, path], ok_codes=range(256))
        if done.returncode == 0 and not done.stderr.strip():
            return
        self.unmounter.unmount(path, remove_target=False)
        raise OperationFailed(
            f"xfs_io -c <command> failed on {path} (postMountXfsOpts): "
            f"{one_line(done.stderr) or f'exit {done.returncode}'}"
        )


class _Once:
    """``call()`` the first time, ``False`` after (and when there is nothing to call)."""

    def __init__(self, call: Callable[[], bool] | None) -> None:
        self._call = call

    def __call__(self) -> bool:
        call, self._call = self._call, None
        return call() if call is not None else False
