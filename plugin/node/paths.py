"""Questions about host paths that front ends ask before they act, answered in one place.

A front end decides from the host's answers: does the path a request names exist, is
it a directory (a filesystem volume) or a file (a raw block volume bound onto it), do
two device paths name one device (a DRBD path may be a symlink to another node), which
volumes are mounted below a mount root after a restart. Asked through the node
operations, these answers come from the same place as the mounts they are about, and
tests can give them without a host (:class:`~plugin.node.fake.FakeNodeOps`).
"""

from __future__ import annotations

import os

from plugin.errors import FailedPrecondition, OperationFailed
from plugin.node.host import Host
from plugin.node.mounttable import normalize


class Paths:
    """Path and device identity checks on the host; no command is run for them."""

    def __init__(self, host: Host) -> None:
        self.host = host

    @staticmethod
    def path_exists(path: str) -> bool:
        """Whether anything is at ``path``, a dangling symlink included (as a mount point can be)."""
        return os.path.lexists(path)

    @staticmethod
    def is_directory(path: str) -> bool:
        return os.path.isdir(path)

    @staticmethod
    def real_path(path: str) -> str:
        """``path`` absolute with symlinks resolved, as the mount table writes it."""
        return normalize(path)

    @staticmethod
    def same_device(a: str, b: str) -> bool:
        """Whether two paths name one block device (a DRBD-style path may be a symlink)."""
        if a == b or os.path.realpath(a) == os.path.realpath(b):
            return True
        try:
            return os.stat(a).st_rdev == os.stat(b).st_rdev != 0
        except OSError:
            return False

    @staticmethod
    def make_directory(path: str, mode: int) -> None:
        """A directory at ``path`` with ``mode`` whatever the umask; an existing one is kept as it is.

        The umask would narrow the mode of a new directory; containers of any user must
        reach a volume's data directory.
        """
        if os.path.isdir(path):
            return
        try:
            os.mkdir(path, mode)
            os.chmod(path, mode)
        except FileExistsError:
            if not os.path.isdir(path):
                raise FailedPrecondition(f"{path} exists and is not a directory") from None
        except OSError as exc:
            raise OperationFailed(f"cannot create directory {path}: {exc.strerror}") from exc

    def mounted_directories(self, root: str) -> list[str]:
        """Names of the directories right below ``root`` that are mount points, sorted.

        One reading of the mount table, whatever the number of directories below ``root``.
        """
        base = normalize(root)
        names = {
            os.path.basename(entry.mount_point)
            for entry in self.host.mounts()
            if os.path.dirname(entry.mount_point) == base and entry.mount_point != base
        }
        return sorted(name for name in names if os.path.isdir(os.path.join(root, name)))
