"""All real host work of the emulator: FILE_THIN backing files, loop devices, DRBD-shaped nodes.

A real LINSTOR satellite's FILE_THIN provider keeps one sparse file per volume and binds it
to a loop device; DRBD then sits on top and is what users mount. The emulator keeps the same
shape without DRBD: the loop device *is* the volume, and in DRBD-shaped mode a block-special
node ``<dev_dir>/drbd<minor>`` with the loop's major:minor stands in for the DRBD device, so
mounts show the name a plugin expects. Nothing is replicated: every replica of a volume
shares the one backing file.

The REST layer owns the state (which resource has which file and minor); this class only
turns that state into devices and back, and it is safe to call again after a restart: a
loop device that still points at a backing file is found and reused.

Loop devices on a host are shared with everybody else, so this class only ever touches loop
devices whose backing file is one of its own files, as reported by the kernel.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from emulator import blockdev
from emulator.blockdev import StorageError

__all__ = ["Storage", "StorageError"]

log = logging.getLogger("emulator")

#: mkfs time limit: a floor plus seconds per GiB of the device (mkfs writes metadata in proportion).
MKFS_MIN_SECONDS = 60.0
MKFS_SECONDS_PER_GIB = 6.0

# A path component we are willing to build from a node, pool, resource or snapshot name.
_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _component(kind: str, value: str) -> str:
    if not _SAFE_COMPONENT.match(value) or value in {".", ".."}:
        raise StorageError(f"invalid {kind} name {value!r} for a storage path")
    return value


class Storage:
    """Backing files and devices for one emulator state directory."""

    def __init__(
        self,
        state_dir: Path,
        dev_dir: Path,
        *,
        drbd_shaped: bool = True,
        strict_reflink: bool = False,
        mkfs_min_seconds: float = MKFS_MIN_SECONDS,
        mkfs_seconds_per_gib: float = MKFS_SECONDS_PER_GIB,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.dev_dir = Path(dev_dir)
        self.drbd_shaped = drbd_shaped
        self.strict_reflink = strict_reflink
        self.mkfs_min_seconds = mkfs_min_seconds
        self.mkfs_seconds_per_gib = mkfs_seconds_per_gib
        # The REST layer serialises mutations already; this lock keeps attach/detach of one file
        # from racing when a caller (a test, a reset) does not go through that lock.
        self._lock = threading.RLock()

    # ------------------------------------------------------------------------------------ paths, pools

    def pool_path(self, node: str, pool: str) -> Path:
        path = self.state_dir / "pools" / _component("node", node) / _component("storage pool", pool)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def volume_path(self, node: str, pool: str, rd: str, vlm_nr: int) -> Path:
        """The backing file name a FILE provider uses: ``<rsc>_<vlmNr:05d>.img``."""
        return self.pool_path(node, pool) / f"{_component('resource', rd)}_{vlm_nr:05d}.img"

    def snapshot_path(self, node: str, pool: str, rd: str, vlm_nr: int, snap: str) -> Path:
        """The snapshot file name a FILE provider uses: ``<rsc>_<vlmNr:05d>_<snap>.img``."""
        name = f"{_component('resource', rd)}_{vlm_nr:05d}_{_component('snapshot', snap)}.img"
        return self.pool_path(node, pool) / name

    def pool_capacity_kib(self, node: str, pool: str) -> tuple[int, int]:
        """(total, free) of the filesystem holding the pool, as df reports them (free = available to us)."""
        st = os.statvfs(self.pool_path(node, pool))
        return st.f_blocks * st.f_frsize // 1024, st.f_bavail * st.f_frsize // 1024

    # ---------------------------------------------------------------------------------- backing files

    def create_volume(self, node: str, pool: str, rd: str, vlm_nr: int, size_kib: int) -> Path:
        """Create the sparse backing file; an identical existing one is returned (a retried create).

        An existing file of another size is never truncated: it may hold data of a volume the
        state lost track of, so it is reported for a person to look at instead.
        """
        if vlm_nr < 0:
            raise StorageError(f"invalid volume number {vlm_nr}")
        if size_kib <= 0:
            raise StorageError(f"invalid volume size {size_kib} KiB: must be positive")
        path = self.volume_path(node, pool, rd, vlm_nr)
        size = size_kib * 1024
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            existing = path.stat().st_size
            if existing == size:
                return path
            raise StorageError(
                f"backing file {path} already exists with {existing // 1024} KiB instead of {size_kib} KiB; "
                "remove it if it holds nothing of value"
            ) from None
        except OSError as exc:
            raise StorageError(f"cannot create backing file {path}: {exc.strerror}") from exc
        try:
            os.ftruncate(fd, size)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise StorageError(f"cannot size backing file {path} to {size_kib} KiB: {exc.strerror}") from exc
        os.close(fd)
        return path

    def allocated_kib(self, backing: Path) -> int:
        """Space the thin file really uses, which is what FILE_THIN reports as allocated."""
        try:
            return os.stat(backing).st_blocks * 512 // 1024
        except OSError as exc:
            raise StorageError(f"cannot stat backing file {backing}: {exc.strerror}") from exc

    # ------------------------------------------------------------------------------------------ devices

    def _node_path(self, minor: int | None) -> Path | None:
        if not self.drbd_shaped or minor is None:
            return None
        if minor < 0:
            raise StorageError(f"invalid minor number {minor}")
        return self.dev_dir / f"drbd{minor}"

    def loop_for(self, backing: Path) -> str | None:
        loops = blockdev.loops_of(Path(backing))
        return loops[0] if loops else None

    def attach(self, backing: Path, minor: int | None) -> str:
        """Make sure the file has a device; reuse what survives a restart, repair what does not."""
        backing = Path(backing)
        with self._lock:
            if not backing.is_file():
                raise StorageError(f"cannot attach {backing}: backing file does not exist")
            existing = blockdev.loops_of(backing, thorough=True)
            loop = existing[0] if existing else blockdev.attach_loop(backing)
            if blockdev.make_writable(loop):
                log.warning("cleared a read-only flag left on %s before using it for %s", loop, backing)
            node = self._node_path(minor)
            if node is None:
                return loop
            if not blockdev.node_matches(node, loop):
                try:
                    self.dev_dir.mkdir(parents=True, exist_ok=True)
                    blockdev.remove_node(node)
                    blockdev.make_node(node, loop)
                except OSError as exc:
                    raise StorageError(
                        f"cannot create device node {node} for {loop}: {exc.strerror}"
                    ) from exc
            return str(node)

    def device_for(self, backing: Path, minor: int | None) -> str | None:
        """The device path to report, or None when the file is not (fully) attached."""
        loop = self.loop_for(backing)
        if loop is None:
            return None
        node = self._node_path(minor)
        if node is None:
            return loop
        return str(node) if blockdev.node_matches(node, loop) else None

    def detach(self, backing: Path, minor: int | None) -> None:
        """Take the device away; refused while it is in use, because the kernel would only defer it."""
        with self._lock:
            if self.in_use(backing, minor):
                raise StorageError(f"cannot detach {backing}: its device is in use (mounted or open)")
            self._release(Path(backing), minor)

    def _release(self, backing: Path, minor: int | None) -> None:
        """Remove the node and free the loops; a node that cannot go does not keep the loops busy."""
        problem: StorageError | None = None
        node = self._node_path(minor)
        if node is not None:
            try:
                blockdev.remove_node(node)
            except StorageError as exc:
                problem = exc
        for loop in blockdev.loops_of(backing, thorough=True):
            blockdev.detach_loop(loop)
        if problem is not None:
            raise problem

    def resize(self, backing: Path, size_kib: int) -> None:
        """Set the file size and make every loop device of it show the new size before returning."""
        backing = Path(backing)
        if size_kib <= 0:
            raise StorageError(f"invalid volume size {size_kib} KiB: must be positive")
        size = size_kib * 1024
        with self._lock:
            try:
                os.truncate(backing, size)
            except OSError as exc:
                raise StorageError(f"cannot resize {backing} to {size_kib} KiB: {exc.strerror}") from exc
            for loop in blockdev.loops_of(backing):
                blockdev.refresh_capacity(loop)
                seen = blockdev.size_bytes(loop)
                if seen != size:
                    raise StorageError(f"{loop} shows {seen} bytes after resizing {backing} to {size} bytes")

    def delete(self, backing: Path, minor: int | None) -> None:
        """Detach and remove the backing file; a file already gone is fine (a retried delete)."""
        backing = Path(backing)
        with self._lock:
            self.detach(backing, minor)
            backing.unlink(missing_ok=True)

    # ----------------------------------------------------------------------------------------- contents

    def mkfs_if_blank(self, device: str, fs_type: str, mkfs_params: str = "") -> bool:
        """Format only a device on which blkid finds nothing at all, as a satellite does."""
        try:
            blockdev.devno_of(device)
        except OSError as exc:
            raise StorageError(f"cannot format {device}: {exc.strerror}") from exc
        if blockdev.signature(device) is not None:
            return False
        # Beyond what a satellite checks: raw data without any signature is still data.
        backing = blockdev.loop_backing_file(device)
        if backing is not None and self._holds_data(backing):
            return False
        blockdev.mkfs(device, fs_type, mkfs_params, self.mkfs_time_limit(device))
        return True

    def mkfs_time_limit(self, device: str) -> float:
        """How long mkfs may run on this device: a floor plus a share per GiB of its size."""
        try:
            size = blockdev.device_bytes(device)
        except OSError as exc:
            raise StorageError(f"cannot read the size of {device}: {exc.strerror}") from exc
        return self.mkfs_min_seconds + self.mkfs_seconds_per_gib * size / (1 << 30)

    @staticmethod
    def _holds_data(backing: Path) -> bool:
        try:
            return blockdev.holds_data(backing)
        except OSError as exc:
            raise StorageError(f"cannot check {backing} for data before formatting: {exc.strerror}") from exc

    def in_use(self, backing: Path, minor: int | None) -> bool:
        """What DRBD would call in use: mounted, stacked under another device, claimed, or open read-write.

        The cheap checks go first; the /proc scan for read-write openers runs only when they all
        say no.
        """
        loops = blockdev.loops_of(Path(backing))
        if not loops:
            return False
        devnos = {blockdev.devno_of(loop) for loop in loops}
        paths = set(loops)
        node = self._node_path(minor)
        if node is not None:
            paths.add(str(node))
            with contextlib.suppress(OSError, StorageError):
                devnos.add(blockdev.devno_of(str(node)))
        if devnos & blockdev.mounted_devnos():
            return True
        if any(blockdev.has_holders(loop) or blockdev.exclusively_busy(loop) for loop in loops):
            return True
        return blockdev.opened_for_writing(paths)

    def snapshot(self, backing: Path, dest: Path) -> None:
        """Freeze the volume's current content into dest, by sharing extents where possible."""
        self._copy(Path(backing), Path(dest), strict=self.strict_reflink, what="snapshot")

    def copy_volume(self, src: Path, dest: Path) -> None:
        """Fill a new volume from a snapshot or another volume (restore, clone)."""
        dest = Path(dest)
        if self.loop_for(dest) is not None:
            raise StorageError(f"cannot copy into {dest}: it is attached to a device")
        self._copy(Path(src), dest, strict=False, what="copy", replace=True)

    def _copy(self, src: Path, dest: Path, *, strict: bool, what: str, replace: bool = False) -> None:
        if not src.is_file():
            raise StorageError(f"cannot {what} {src}: file does not exist")
        if dest.exists() and not replace:
            raise StorageError(f"cannot {what} {src} to {dest}: {dest} already exists")
        loops = blockdev.loops_of(src)
        # Build the copy under a temporary name so a half-made copy is never mistaken for a whole one.
        tmp = dest.with_name(f".{dest.name}.partial")
        tmp.unlink(missing_ok=True)
        try:
            # A mounted filesystem on the volume is frozen, and writes still cached above the loop
            # device are flushed, so the copy holds everything written before this call.
            # (Never the filesystem the copy is written to: that would wait for itself.)
            devnos = {blockdev.devno_of(loop) for loop in loops} - {os.stat(dest.parent).st_dev}
            with blockdev.quiesced(devnos):
                for loop in loops:
                    blockdev.flush(loop)
                if not blockdev.reflink(src, tmp):
                    if strict:
                        raise StorageError(
                            f"cannot {what} {src}: the filesystem of {src.parent} does not support "
                            "reflinks (strict mode needs a reflink-capable filesystem such as XFS or Btrfs)"
                        )
                    blockdev.sparse_copy(src, tmp)
            os.replace(tmp, dest)
        except OSError as exc:
            raise StorageError(f"cannot {what} {src} to {dest}: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------- reset

    def release_all(self, backings: Iterable[tuple[Path, int | None]]) -> None:
        """Detach everything, even devices still in use (the kernel then frees them once unmounted).

        Used by the emulator's reset, where leaking a loop device is worse than pulling a device
        from under a forgotten mount. Failures do not stop the sweep; they are reported together.
        """
        failures: list[str] = []
        with self._lock:
            for backing, minor in backings:
                try:
                    self._release(Path(backing), minor)
                except (StorageError, OSError) as exc:
                    failures.append(f"{backing}: {exc}")
        if failures:
            raise StorageError("could not release every device: " + "; ".join(failures))

    def sweep(self, keep_files: set[str], keep_minors: set[int]) -> list[str]:
        """Remove what the state does not name: loops on unknown files, the files, stale nodes.

        Only objects of this state directory are touched: loop devices whose backing file lies
        in its pools, ``*.img`` and half-made copies in its pool directories, and ``drbd<minor>``
        nodes in its device directory. A loop that is still in use is kept and reported.
        """
        removed: list[str] = []
        # The kernel names a loop's file by its real path, the state by the path it was made
        # with: they differ when the pools directory is reached through a symlink, so both
        # sides compare real paths. Everything below the pools directory is made here, so
        # only the directory itself is resolved, once, not each of 10,000 files.
        pools = Path(os.path.realpath(self.state_dir / "pools"))
        made_below, real_below = str(self.state_dir / "pools") + os.sep, str(pools) + os.sep
        keep = {real_below + n[len(made_below) :] if n.startswith(made_below) else n for n in keep_files}
        busy: set[str] = set()
        with self._lock:
            for loop, backing in sorted(blockdev.loops_backed_under(pools).items()):
                if backing in keep and os.path.exists(backing):
                    continue
                if blockdev.exclusively_busy(loop) or devno_mounted(loop):
                    log.warning("keeping %s on unknown file %s: it is in use", loop, backing)
                    busy.add(backing)
                    continue
                blockdev.detach_loop(loop)
                removed.append(f"{loop} (on {backing})")
            if pools.is_dir():
                for path in sorted(pools.glob("*/*/*")):
                    orphan = path.name.endswith(".img") and str(path) not in keep
                    partial = path.name.startswith(".") and path.name.endswith(".partial")
                    if (orphan or partial) and path.is_file() and str(path) not in busy:
                        path.unlink(missing_ok=True)
                        removed.append(str(path))
            if self.dev_dir.is_dir():
                for node in sorted(self.dev_dir.glob("*drbd*")):
                    number = node.name.removeprefix("drbd")
                    if number.isdigit() and int(number) in keep_minors:
                        continue
                    if not (number.isdigit() or node.name.endswith(".new")) or not _loop_node(node):
                        continue  # not a node this class makes (the device directory may be /dev)
                    try:
                        blockdev.remove_node(node)
                        removed.append(str(node))
                    except StorageError as exc:
                        log.warning("%s", exc)
        return removed


LOOP_MAJOR = 7


def _loop_node(node: Path) -> bool:
    """A symlink to a loop device or a block node with the loop major: what :func:`make_node` makes."""
    try:
        st = os.lstat(node)
    except OSError:
        return False
    if stat.S_ISLNK(st.st_mode):
        return os.readlink(node).startswith("/dev/loop")
    return stat.S_ISBLK(st.st_mode) and os.major(st.st_rdev) == LOOP_MAJOR


def devno_mounted(dev: str) -> bool:
    try:
        return blockdev.devno_of(dev) in blockdev.mounted_devnos()
    except (OSError, StorageError):
        return False
