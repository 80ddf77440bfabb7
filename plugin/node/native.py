"""The probe and the mounts of the node path, done in this process instead of by a tool.

Starting ``blkid`` or ``mount`` costs a fork and an exec of a program that loads its
libraries, several milliseconds each, and a pod's first start waits for three of them.
This module does the same work in-process:

- :meth:`NativeCalls.probe` runs libblkid's low-level probe exactly as ``blkid -p``
  does (the same library and probers, the same flags, the small-disk partition rule), so
  the "never format what carries a signature" guard sees everything blkid would.
- :meth:`NativeCalls.mount` and :meth:`NativeCalls.bind` call mount(2) for what the
  plugin mounts (ext4, xfs, btrfs with options from its allow-list, and plain binds),
  translating options as libmount does: VFS flags to ``MS_*`` bits, the rest to the
  filesystem's data string.

Every call answers None or raises :class:`NativeUnavailable` when it cannot do the work
(no libblkid, an SELinux ``context=`` option that libmount treats specially, a probe
error); the caller then runs the tool as before. A mount the kernel refuses is retried
by the caller through ``mount`` so the error a user sees is the tool's own sentence.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from plugin.params.filesystems import FILESYSTEMS

log = logging.getLogger(__name__)

# blkid.h: the superblock flags ``blkid -p`` sets, and the partition flag it adds.
_SUBLKS_LABEL, _SUBLKS_UUID, _SUBLKS_TYPE = 1 << 1, 1 << 3, 1 << 5
_SUBLKS_SECTYPE, _SUBLKS_USAGE, _SUBLKS_VERSION = 1 << 6, 1 << 7, 1 << 8
_BLKID_P_FLAGS = (
    _SUBLKS_LABEL | _SUBLKS_UUID | _SUBLKS_TYPE | _SUBLKS_SECTYPE | _SUBLKS_USAGE | _SUBLKS_VERSION
)
_PARTS_ENTRY_DETAILS = 1 << 2
# blkid's rule: a whole device of at most 1440 KiB that holds a partition table is not
# probed for filesystems.
_SMALL_DISK = 1024 * 1440
# Where libblkid's probers read on a blank device (traced with strace on ``blkid -p``,
# util-linux 2.38, at several device sizes), for the read-ahead before a probe. Near the
# start: most superblocks and ZFS's two front labels of 256 KiB, up to a 512-byte read at
# 512 KiB; single reads at 1, 2 and 4 MiB and 1580544 bytes before the end; and near the
# end everything from ZFS's back labels (two of 256 KiB, ending at the size rounded down
# to 256 KiB) on: RAID and DRBD metadata, the GPT backup. libblkid reads them in dozens of
# small random reads and switches read-ahead off; a device's page cache is dropped when
# its last user closes it, so on a device nobody holds open each of those reads is a
# device request. Reading ahead more than this costs device time the probe does not use
# (a loop device reads about 1 MiB per ms).
_PROBE_HEAD = 528 * 1024
_PROBE_SPOTS = (1 << 20, 2 << 20, 4 << 20)
_PROBE_SPOTS_FROM_END = (1580544,)
_ZFS_LABEL_ALIGN = 256 * 1024
_ZFS_BACK_LABELS = 512 * 1024
_PAGE = 4096

# mount(2) flags (linux/mount.h).
MS_RDONLY = 1
MS_BIND = 4096
# Each generic option: (the flag, whether the option sets it or clears it), as libmount maps them.
_VFS_OPTIONS: dict[str, tuple[int, bool]] = {
    "sync": (16, True),
    "async": (16, False),
    "nosuid": (2, True),
    "suid": (2, False),
    "nodev": (4, True),
    "dev": (4, False),
    "noexec": (8, True),
    "exec": (8, False),
    "dirsync": (128, True),
    "nosymfollow": (256, True),
    "noatime": (1024, True),
    "atime": (1024, False),
    "nodiratime": (2048, True),
    "diratime": (2048, False),
    "silent": (32768, True),
    "loud": (32768, False),
    "relatime": (1 << 21, True),
    "norelatime": (1 << 21, False),
    "iversion": (1 << 23, True),
    "noiversion": (1 << 23, False),
    "strictatime": (1 << 24, True),
    "nostrictatime": (1 << 24, False),
    "lazytime": (1 << 25, True),
    "nolazytime": (1 << 25, False),
}
# Options libmount handles itself (SELinux contexts are dropped when SELinux is off).
_LEFT_TO_MOUNT = ("context=", "fscontext=", "defcontext=", "rootcontext=")


class NativeUnavailable(Exception):
    """The in-process call cannot do this; run the tool instead."""


@dataclass(frozen=True)
class ProbeAnswer:
    """What libblkid's low-level probe said, in ``blkid -p``'s terms.

    ``code`` is the exit code blkid would give: 0 something found (``values``), 2
    nothing found, 8 an ambivalent probe (several signatures).
    """

    code: int
    values: dict[str, str]


def mount_data(fs_type: str, options: Sequence[str], readonly: bool) -> tuple[int, str]:
    """(mount(2) flags, data string) for options as libmount would split them.

    Generic VFS options become ``MS_*`` bits, in order (a later ``atime`` clears an
    earlier ``noatime``); everything else is the filesystem's own and goes to the kernel
    in the data string. Raises :class:`NativeUnavailable` for a filesystem this plugin
    does not make (a mount helper may exist for it) or an option libmount treats itself.
    """
    if fs_type not in FILESYSTEMS:
        raise NativeUnavailable(f"{fs_type} is mounted by mount(8)")
    flags = MS_RDONLY if readonly else 0
    data: list[str] = []
    for option in options:
        if option in ("ro", "rw"):
            continue
        if option.startswith(_LEFT_TO_MOUNT):
            raise NativeUnavailable(f"{option.partition('=')[0]}= is handled by mount(8)")
        known = _VFS_OPTIONS.get(option)
        if known is None:
            data.append(option)
        elif known[1]:
            flags |= known[0]
        else:
            flags &= ~known[0]
    return flags, ",".join(data)


class NativeCalls:
    """libblkid and mount(2) through ctypes; each library is loaded on first use."""

    def __init__(self) -> None:
        self._probe_lock = threading.Lock()

    @staticmethod
    @functools.cache
    def _libc() -> ctypes.CDLL:
        libc = _load("libc.so.6", "c", use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        libc.mount.restype = ctypes.c_int
        return libc

    @staticmethod
    @functools.cache
    def _libblkid() -> ctypes.CDLL | None:
        try:
            lib = _load("libblkid.so.1", "blkid")
        except OSError as exc:
            log.info("libblkid cannot be loaded (%s); probing devices with blkid", exc)
            return None
        p, i = ctypes.c_void_p, ctypes.c_int
        signatures = {
            "blkid_new_probe": ([], p),
            "blkid_free_probe": ([p], None),
            "blkid_probe_set_device": ([p, i, ctypes.c_int64, ctypes.c_int64], i),
            "blkid_probe_set_superblocks_flags": ([p, i], i),
            "blkid_probe_enable_superblocks": ([p, i], i),
            "blkid_probe_enable_partitions": ([p, i], i),
            "blkid_probe_set_partitions_flags": ([p, i], i),
            "blkid_probe_get_size": ([p], ctypes.c_int64),
            "blkid_do_fullprobe": ([p], i),
            "blkid_do_safeprobe": ([p], i),
            "blkid_probe_lookup_value": ([p, ctypes.c_char_p, p, p], i),
            "blkid_probe_numof_values": ([p], i),
            "blkid_probe_get_value": (
                [
                    p,
                    i,
                    ctypes.POINTER(ctypes.c_char_p),
                    ctypes.POINTER(ctypes.c_char_p),
                    ctypes.POINTER(ctypes.c_size_t),
                ],
                i,
            ),
        }
        for name, (args, result) in signatures.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, result
        return lib

    def probe(self, device: str) -> ProbeAnswer:
        """``blkid -p -o export <device>``, in-process; NativeUnavailable when it cannot tell."""
        lib = self._libblkid()
        if lib is None:
            raise NativeUnavailable("libblkid is not available")
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
        try:
            read_ahead_probe_areas(fd)
            with self._probe_lock:
                pr = lib.blkid_new_probe()
                if not pr:
                    raise NativeUnavailable("libblkid could not make a probe")
                try:
                    return self._low_probe(lib, pr, fd, device)
                finally:
                    lib.blkid_free_probe(pr)
        finally:
            os.close(fd)

    @staticmethod
    def _low_probe(lib: ctypes.CDLL, pr: int, fd: int, device: str) -> ProbeAnswer:
        """blkid's ``lowprobe_superblocks`` step by step (misc-utils/blkid.c)."""
        lib.blkid_probe_set_superblocks_flags(pr, _BLKID_P_FLAGS)
        if lib.blkid_probe_set_device(pr, fd, 0, 0) != 0:
            raise NativeUnavailable(f"libblkid could not open {device}")
        lib.blkid_probe_enable_partitions(pr, 1)
        lib.blkid_probe_set_partitions_flags(pr, _PARTS_ENTRY_DETAILS)
        if lib.blkid_probe_get_size(pr) <= _SMALL_DISK:
            lib.blkid_probe_enable_superblocks(pr, 0)
            if lib.blkid_do_fullprobe(pr) < 0:
                raise NativeUnavailable(f"libblkid could not probe {device}")
            if lib.blkid_probe_lookup_value(pr, b"PTTYPE", None, None) == 0:
                return ProbeAnswer(0, _values(lib, pr))
            lib.blkid_probe_enable_partitions(pr, 0)
        lib.blkid_probe_enable_superblocks(pr, 1)
        rc = lib.blkid_do_safeprobe(pr)
        if rc == -2:
            return ProbeAnswer(8, {})
        if rc not in (0, 1):
            raise NativeUnavailable(f"libblkid could not probe {device} (answer {rc})")
        if rc == 1:
            return ProbeAnswer(2, {})
        values = _values(lib, pr)
        if not values:  # found something it cannot name: let blkid say what
            raise NativeUnavailable(f"libblkid found a signature on {device} but gave no values")
        return ProbeAnswer(0, values)

    def mount(self, source: str, target: str, fs_type: str, options: Sequence[str], readonly: bool) -> None:
        """mount(2) of a filesystem; OSError when the kernel refuses, NativeUnavailable to use mount(8)."""
        flags, data = mount_data(fs_type, options, readonly)
        self._mount(source, target, fs_type, flags, data)

    def bind(self, source: str, target: str) -> None:
        """``mount --bind source target`` (not recursive); OSError when the kernel refuses."""
        self._mount(source, target, None, MS_BIND, None)

    def _mount(self, source: str, target: str, fs_type: str | None, flags: int, data: str | None) -> None:
        libc = self._libc()
        if (
            libc.mount(
                os.fsencode(source),
                os.fsencode(target),
                fs_type.encode() if fs_type else None,
                flags,
                data.encode() if data else None,
            )
            != 0
        ):
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))


def probe_read_areas(size: int) -> list[tuple[int, int]]:
    """(offset, length) of the areas a probe of a ``size``-byte device reads, page-aligned,
    within the device, in the order worth asking for them."""
    back_labels = size - size % _ZFS_LABEL_ALIGN - _ZFS_BACK_LABELS
    wanted = [
        (0, _PROBE_HEAD),
        *((spot, _PAGE) for spot in _PROBE_SPOTS),
        *((size - back, _PAGE) for back in _PROBE_SPOTS_FROM_END),
        (back_labels, size - back_labels),
    ]
    areas = []
    for offset, length in wanted:
        start = max(0, offset - offset % _PAGE)
        end = min(size, offset + length)
        if start < end:
            areas.append((start, end - start))
    return areas


def read_ahead_probe_areas(fd: int) -> None:
    """Ask the kernel to read the areas the probe reads (:func:`probe_read_areas`) at once.

    The probe's own small reads then find the data in the page cache instead of waiting
    for the device one by one (2.6 against 4.9 ms on a fresh loop device, and 3.6 ms when
    the first and last MiB were read ahead whole; on a disk the difference is dozens of
    random reads). Only a hint: the probe reads exactly what it read before, and a device
    that refuses the hint is probed all the same.
    """
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, 0, os.SEEK_SET)
        for offset, length in probe_read_areas(size):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
    except OSError as exc:
        log.debug("no read-ahead before probing: %s", exc.strerror)


def _load(soname: str, name: str, use_errno: bool = False) -> ctypes.CDLL:
    """The library by its usual soname; find_library (which runs ldconfig) only when that fails."""
    try:
        return ctypes.CDLL(soname, use_errno=use_errno)
    except OSError:
        found = ctypes.util.find_library(name)
        if found is None:
            raise
        return ctypes.CDLL(found, use_errno=use_errno)


def _values(lib: ctypes.CDLL, pr: int) -> dict[str, str]:
    values: dict[str, str] = {}
    name, data, size = ctypes.c_char_p(), ctypes.c_char_p(), ctypes.c_size_t()
    for n in range(lib.blkid_probe_numof_values(pr)):
        if lib.blkid_probe_get_value(pr, n, ctypes.byref(name), ctypes.byref(data), ctypes.byref(size)) == 0:
            key = (name.value or b"").decode("ascii", "replace")
            values[key] = (data.value or b"").decode("utf-8", "replace")
    return values
