"""Which staged volumes a container still uses, seen from every mount namespace on the node.

Docker can count one container twice: its plugin client re-sends a Mount after a
connection error (for up to 30 s), so a plugin that crashed after saving the count but
before answering sees that Mount again once it is back. Docker later sends one Unmount,
and without help the volume would stay held forever. The counts are therefore checked
against the kernel: a container's mount of a volume shows in the container's mount
namespace as a bind of ``<staging>/data``, that is a mount of the volume's filesystem
whose root is the staging mount's root plus ``/data`` (or a path below it, for a
subpath). A volume that no mount namespace binds that way is used by no container, and
its counts are stale.

One scan reads ``/proc/<pid>/mountinfo`` once per distinct mount namespace
(``/proc/<pid>/ns/mnt`` names it). The answer is only trusted when it is complete: when
this process sees the host's processes (not from a private PID namespace, as in a
managed plugin without ``pidhost``) and every namespace could be read.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
from dataclasses import dataclass

from plugin.node.mounttable import MountEntry, normalize, read_mountinfo, top_mount, unescape

log = logging.getLogger(__name__)

PROC = "/proc"
DATA_DIR = "data"
# The process exited while we looked; EINVAL: it is exiting and has left its namespaces.
_GONE = (errno.ENOENT, errno.ESRCH, errno.EINVAL)


def sees_all_processes(proc: str = PROC) -> bool:
    """False inside a nested PID namespace, where other namespaces' processes are invisible."""
    try:
        with open(f"{proc}/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return len(line.split()) == 2  # "NSpid:" and one pid: the host's namespace
    except OSError:
        return False
    return True  # kernels before 4.1 do not report NSpid


@dataclass(frozen=True)
class MountUse:
    """One scan: this process's mount table and every mount root per filesystem, node-wide."""

    own: list[MountEntry]
    roots: dict[tuple[int, int], frozenset[str]]
    namespaces: int

    def used_by_container(self, staging: str) -> bool:
        """Whether some mount namespace binds the ``data`` directory of the volume at ``staging``.

        A staging path that is not mounted counts as used: without its mount the filesystem
        cannot be told apart, and nothing is released on a guess.
        """
        entry = top_mount(self.own, normalize(staging))
        if entry is None:
            return True
        data_root = posixpath.join(entry.root, DATA_DIR)
        return any(
            root == data_root or root.startswith(data_root + "/")
            for root in self.roots.get(entry.device_number, ())
        )


def _read_mount_roots(path: str, into: dict[tuple[int, int], set[str]]) -> None:
    """Add the (device, root) of every mount listed in one mountinfo file."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ", 4)
            if len(fields) < 5:
                continue
            major, _, minor = fields[2].partition(":")
            try:
                number = (int(major), int(minor))
            except ValueError:
                continue
            into.setdefault(number, set()).add(unescape(fields[3]))


def _namespace_of(proc: str, pid: str) -> tuple[int, int] | str:
    """The identity of a process's mount namespace; the pid itself when the link is hidden.

    Some processes (a sandbox's init, say) refuse even root a look at their namespace links
    but show their mountinfo: those are read one by one instead of once per namespace.
    """
    try:
        st = os.stat(f"{proc}/{pid}/ns/mnt")
    except PermissionError:
        return pid
    return (st.st_dev, st.st_ino)


def scan_mount_use(proc: str = PROC) -> MountUse | None:
    """Read every mount namespace once; None when the picture may be incomplete."""
    if not sees_all_processes(proc):
        return None
    roots: dict[tuple[int, int], set[str]] = {}
    seen: set[tuple[int, int] | str] = set()
    try:
        own = read_mountinfo(f"{proc}/self/mountinfo")
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError as exc:
        log.warning("cannot read the mount namespaces under %s: %s", proc, exc)
        return None
    for pid in pids:
        try:
            namespace = _namespace_of(proc, pid)
            if namespace in seen:
                continue
            _read_mount_roots(f"{proc}/{pid}/mountinfo", roots)
        except OSError as exc:
            if exc.errno in _GONE:
                continue  # exited: another process of its namespace, if any, is read instead
            log.warning("cannot read the mount namespace of process %s: %s", pid, exc)
            return None
        seen.add(namespace)
    return MountUse(own, {k: frozenset(v) for k, v in roots.items()}, len(seen))
