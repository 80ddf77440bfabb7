"""Host primitives behind the emulator's storage: loop devices, device nodes, probes, copies.

These are stateless functions over real kernel objects. They live apart from
:mod:`emulator.storage` so that the policy there (which file gets which device, when a
device may go away) reads without the noise of argument lists and errno handling.
Every command is run from an argument list with a timeout, and its stderr ends up in
the :class:`StorageError` a caller sees.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shlex
import shutil
import stat
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

# ioctl number of FICLONE (_IOW(0x94, 9, int)); identical on every Linux architecture we run on.
FICLONE = 0x40049409

DEFAULT_TIMEOUT = 30.0
#: Copies of whole volumes (sparse cp); mkfs gets a limit from the device size instead.
COPY_TIMEOUT = 300.0

# Errors from FICLONE that mean "this filesystem/pair cannot share extents", not "I/O broke".
_NO_REFLINK_ERRNOS = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS}


class StorageError(Exception):
    """A host operation failed; the message is meant for a person and carries the command's stderr."""


def run(
    argv: list[str], *, timeout: float = DEFAULT_TIMEOUT, check: bool = True, long: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a command without a shell; turn every way it can fail into a StorageError.

    ``long`` commands (mkfs, copies) die with the emulator: killed with -9, it cannot stop
    them itself, and one left running would keep its device busy after a restart.
    """
    shown = shlex.join(argv)
    setpriv = shutil.which("setpriv") if long else None
    full = [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv
    try:
        proc = subprocess.run(
            full, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
        )
    except FileNotFoundError as exc:
        raise StorageError(f"command not found: {argv[0]} (needed for `{shown}`)") from exc
    except subprocess.TimeoutExpired as exc:
        raise StorageError(f"`{shown}` did not finish within {timeout:g}s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip() or "no error output"
        raise StorageError(f"`{shown}` failed with exit code {proc.returncode}: {detail}")
    return proc


# ---------------------------------------------------------------------------------------------- loops


SYS_BLOCK = Path("/sys/block")


def loops_of(backing: Path, *, thorough: bool = False) -> list[str]:
    """Every loop device whose backing file is this very file.

    Resource views ask this for every volume, so the common case reads sysfs (microseconds)
    and matches by path, instead of running losetup (milliseconds), which also matches by
    inode. ``thorough`` asks losetup whenever sysfs finds nothing, so that a file reached
    through another path (a bind mount) never gets a second loop device.
    """
    if not backing.exists():
        return []
    if not SYS_BLOCK.is_dir():
        return _loops_of_via_losetup(backing)
    wanted = str(backing.resolve())
    found = []
    for entry in SYS_BLOCK.glob("loop*"):
        try:
            if (entry / "loop" / "backing_file").read_text().rstrip("\n") == wanted:
                found.append(f"/dev/{entry.name}")
        except OSError:  # not bound to a file, or released while we looked
            continue
    if not found and thorough:
        return _loops_of_via_losetup(backing)
    return sorted(found, key=_loop_number)


def _loops_of_via_losetup(backing: Path) -> list[str]:
    out = run(["losetup", "--list", "--noheadings", "--output", "NAME", "--associated", str(backing)]).stdout
    return sorted((line.strip() for line in out.splitlines() if line.strip()), key=_loop_number)


def _loop_number(dev: str) -> int:
    digits = dev.rsplit("loop", 1)[-1]
    return int(digits) if digits.isdigit() else 1 << 30


def attach_loop(backing: Path) -> str:
    """Bind a free loop device to the file; losetup itself handles races for free devices."""
    dev = run(["losetup", "--find", "--show", str(backing.resolve())]).stdout.strip()
    if not dev.startswith("/dev/"):
        raise StorageError(f"losetup attached {backing} but reported no device name (got {dev!r})")
    return dev


def detach_loop(dev: str) -> None:
    """Release a loop device; one that is already gone is fine."""
    proc = run(["losetup", "--detach", dev], check=False)
    if proc.returncode == 0:
        return
    msg = proc.stderr.strip()
    if "No such device" in msg or not os.path.exists(dev):
        return
    raise StorageError(f"`losetup --detach {dev}` failed with exit code {proc.returncode}: {msg}")


def refresh_capacity(dev: str) -> None:
    """Make the loop device pick up its backing file's new size (LOOP_SET_CAPACITY)."""
    run(["losetup", "--set-capacity", dev])


def size_bytes(dev: str) -> int:
    return int(run(["blockdev", "--getsize64", dev]).stdout.strip())


# ioctl numbers of BLKROSET / BLKROGET (_IO(0x12, 93/94)).
BLKROSET = 0x125D
BLKROGET = 0x125E


def make_writable(dev: str) -> bool:
    """Clear a read-only flag left on a device (``blockdev --setro`` survives a loop's reuse).

    Returns whether a flag was cleared; a device that stays read-only is an error.
    """
    try:
        fd = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise StorageError(f"cannot open {dev} to check its read-only flag: {exc.strerror}") from exc
    try:
        if not struct.unpack("i", fcntl.ioctl(fd, BLKROGET, struct.pack("i", 0)))[0]:
            return False
        fcntl.ioctl(fd, BLKROSET, struct.pack("i", 0))
        if struct.unpack("i", fcntl.ioctl(fd, BLKROGET, struct.pack("i", 0)))[0]:
            raise StorageError(f"{dev} stays read-only after clearing its read-only flag")
        return True
    except OSError as exc:
        raise StorageError(f"cannot clear the read-only flag of {dev}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def device_bytes(dev: str) -> int:
    """Size of a block device, without running a command."""
    fd = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def loops_backed_under(root: Path) -> dict[str, str]:
    """loop device -> backing file, for every loop whose file lies under root (deleted files too)."""
    prefix = str(root.resolve()) + os.sep
    found: dict[str, str] = {}
    for entry in SYS_BLOCK.glob("loop*"):
        try:
            backing = (entry / "loop" / "backing_file").read_text().rstrip("\n")
        except OSError:
            continue
        backing = backing.removesuffix(" (deleted)")
        if backing.startswith(prefix):
            found[f"/dev/{entry.name}"] = backing
    return found


def devno_of(dev: str) -> int:
    """The st_rdev of a block device (following symlinks)."""
    st = os.stat(dev)
    if not stat.S_ISBLK(st.st_mode):
        raise StorageError(f"{dev} is not a block device")
    return st.st_rdev


# ioctl numbers of FIFREEZE / FITHAW (_IOWR('X', 119/120, int)).
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878


@contextlib.contextmanager
def quiesced(devnos: set[int]) -> Iterator[None]:
    """Freeze every mounted filesystem on these devices for the duration, like a dm snapshot does.

    A frozen filesystem has written all its dirty data and metadata to the device, so a copy
    taken meanwhile mounts cleanly and holds every file written before the snapshot. A
    filesystem that cannot be frozen (or that someone else froze) is synced instead.
    """
    frozen: list[int] = []
    seen: set[int] = set()
    try:
        for devno, mountpoint in mounts():
            if devno not in devnos or devno in seen:
                continue
            seen.add(devno)  # one freeze per filesystem: a second mount of it shares the superblock
            fd = _freeze(mountpoint)
            if fd is None:
                os.sync()
            else:
                frozen.append(fd)
        yield
    finally:
        for fd in frozen:
            with contextlib.suppress(OSError):
                fcntl.ioctl(fd, FITHAW, 0)
            os.close(fd)


def _freeze(mountpoint: str) -> int | None:
    try:
        fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.ioctl(fd, FIFREEZE, 0)
    except OSError:
        os.close(fd)
        return None
    return fd


def flush(dev: str) -> None:
    """Push the block device's cached writes down into the backing file before copying it."""
    try:
        fd = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise StorageError(f"cannot open {dev} to flush it: {exc.strerror}") from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise StorageError(f"flushing {dev} failed: {exc.strerror}") from exc
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------- device nodes


def make_node(path: Path, loop: str) -> None:
    """Create a block-special node with the loop's major:minor, or a symlink where nodes are not allowed.

    A real node keeps /proc/mounts showing the DRBD-style name; the symlink is the fallback for
    containers without CAP_MKNOD or a dev_dir on a ``nodev`` mount (where a node exists but cannot
    be opened).
    """
    rdev = devno_of(loop)
    tmp = path.with_name(f".{path.name}.new")
    _remove_quietly(tmp)
    try:
        os.mknod(tmp, 0o660 | stat.S_IFBLK, rdev)
        _check_openable(tmp)
    except OSError:
        _remove_quietly(tmp)
        os.symlink(loop, tmp)
    os.replace(tmp, path)


def node_matches(path: Path, loop: str) -> bool:
    """Whether an existing node/symlink at path already reaches this loop device."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISBLK(st.st_mode) and st.st_rdev == devno_of(loop)


def remove_node(path: Path) -> None:
    """Remove a device node or symlink we made; refuse to touch anything else that sits there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not (stat.S_ISBLK(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise StorageError(f"refusing to remove {path}: it is not a device node or symlink")
    _remove_quietly(path)


def _check_openable(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    os.close(fd)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# ---------------------------------------------------------------------------------------- busy checks


def mounts() -> list[tuple[int, str]]:
    """(major:minor of the source device, mount point) of every mount in this mount namespace."""
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or ":" not in fields[2]:
            continue
        major, _, minor = fields[2].partition(":")
        if major.isdigit() and minor.isdigit():
            found.append((os.makedev(int(major), int(minor)), _unescape(fields[4])))
    return found


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounted_devnos() -> set[int]:
    return {devno for devno, _ in mounts()}


def has_holders(dev: str) -> bool:
    """A device-mapper or md device stacked on top of the loop device."""
    holders = Path("/sys/class/block") / Path(dev).name / "holders"
    try:
        return any(holders.iterdir())
    except OSError:
        return False


def exclusively_busy(dev: str) -> bool:
    """An O_EXCL open fails with EBUSY while the kernel has the device claimed (mount, mkfs, swap)."""
    try:
        fd = os.open(dev, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return True
        if exc.errno in (errno.ENOENT, errno.ENXIO):
            return False
        raise StorageError(f"cannot check whether {dev} is in use: {exc.strerror}") from exc
    os.close(fd)
    return False


def opened_for_writing(paths: set[str]) -> bool:
    """Whether any process holds one of these device paths open for writing.

    DRBD counts a device as in use once it is opened read-write (auto-promote), a raw block
    consumer included, while read-only probes (blkid, udev) do not count. Only /proc shows that.
    """
    try:
        procs = os.scandir("/proc")
    except OSError:
        return False
    with procs:
        for proc in procs:
            if proc.name.isdigit() and _proc_writes_any(proc.name, paths):
                return True
    return False


def _proc_writes_any(pid: str, paths: set[str]) -> bool:
    try:
        fds = os.scandir(f"/proc/{pid}/fd")
    except OSError:  # gone, or not ours to look at
        return False
    with fds:
        for fd in fds:
            try:
                if os.readlink(fd.path) in paths and _fd_writable(pid, fd.name):
                    return True
            except OSError:
                continue
    return False


def _fd_writable(pid: str, fd: str) -> bool:
    for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
        if line.startswith("flags:"):
            return (int(line.split()[1], 8) & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)
    return False


# -------------------------------------------------------------------------------------- signatures, mkfs


def signature(dev: str) -> str | None:
    """What blkid finds on the device (filesystem, partition table, RAID member ...), or None when blank.

    blkid answers "nothing found" with the same exit code for a device it could not read at all,
    so blank is only believed after the first block was actually readable.
    """
    proc = run(["blkid", "--probe", "--output", "export", dev], check=False)
    if proc.returncode == 0:
        fields = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
        return fields.get("TYPE") or fields.get("PTTYPE") or "unknown signature"
    if proc.returncode == 8:
        return "ambivalent signatures"
    if proc.returncode != 2:
        detail = proc.stderr.strip() or "no error output"
        raise StorageError(f"`blkid --probe {dev}` failed with exit code {proc.returncode}: {detail}")
    try:
        with open(dev, "rb", buffering=0) as f:
            f.read(4096)
    except OSError as exc:
        raise StorageError(f"cannot read {dev} to check it for data: {exc.strerror}") from exc
    return None


# How much of a loop device's allocated space we read looking for a non-zero byte before
# giving up and calling the device "not blank" (refusing to format is the safe side).
DATA_SCAN_BUDGET = 64 * 1024 * 1024


def loop_backing_file(dev: str) -> Path | None:
    """The file under a loop device (through a DRBD-shaped node too), or None for other devices."""
    rdev = devno_of(dev)
    sysfs = Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}/loop/backing_file")
    try:
        return Path(sysfs.read_text().rstrip("\n"))
    except OSError:
        return None


def holds_data(backing: Path) -> bool:
    """Whether a thin backing file has any non-zero byte, looking only where blocks are allocated.

    blkid only knows signatures; raw data written without a filesystem has none. A fresh thin
    volume has no allocated blocks at all, so this costs nothing in the case that matters.
    """
    budget = DATA_SCAN_BUDGET
    with open(backing, "rb", buffering=0) as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only holes from here on
                    return False
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            pos = start
            while pos < end:
                if budget <= 0:
                    return True
                chunk = os.pread(fd, min(1024 * 1024, end - pos, budget), pos)
                if not chunk:
                    break
                if chunk.count(0) != len(chunk):
                    return True
                pos += len(chunk)
                budget -= len(chunk)
            offset = end
    return False


# Flags chosen like a satellite would: quiet, no discard pass over a fresh thin volume (it is
# already all holes). No force flags: every mkfs then refuses on its own if a signature
# appears between our blkid probe and the mkfs run.
MKFS_COMMANDS: dict[str, list[str]] = {
    "ext4": ["mkfs.ext4", "-q", "-E", "nodiscard"],
    "xfs": ["mkfs.xfs", "-q", "-K"],
    "btrfs": ["mkfs.btrfs", "-q", "-K"],
}


def mkfs(dev: str, fs_type: str, extra: str, timeout: float) -> None:
    base = MKFS_COMMANDS.get(fs_type)
    if base is None:
        raise StorageError(f"unsupported filesystem type {fs_type!r}; use one of: {', '.join(MKFS_COMMANDS)}")
    try:
        user = shlex.split(extra)
    except ValueError as exc:
        raise StorageError(f"cannot parse mkfs parameters {extra!r}: {exc}") from exc
    run([*base, *user, dev], timeout=timeout, long=True)


# ---------------------------------------------------------------------------------------------- copies


def reflink(src: Path, dest: Path) -> bool:
    """Share src's extents into the new file dest (FICLONE); False when the filesystem cannot."""
    with open(src, "rb") as fsrc, open(dest, "xb") as fdst:
        try:
            fcntl.ioctl(fdst.fileno(), FICLONE, fsrc.fileno())
        except OSError as exc:
            if exc.errno in _NO_REFLINK_ERRNOS:
                fdst.close()
                _remove_quietly(dest)
                return False
            raise
    return True


def sparse_copy(src: Path, dest: Path) -> None:
    """Copy keeping holes as holes, so a mostly empty thin volume stays cheap."""
    run(
        ["cp", "--sparse=always", "--reflink=never", "--", str(src), str(dest)],
        timeout=COPY_TIMEOUT,
        long=True,
    )
