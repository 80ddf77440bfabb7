"""The emulator-plus-CSI-driver stack that the CSI conformance and scenario modules share.

Both modules need the same thing: root and loop devices, one emulator with the local
node plus two virtual nodes, one in-process driver on a unix socket, and a work
directory whose mounts are undone afterwards. Building it in one place keeps their
set-up and clean-up order identical.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testkit.csi_cluster import Cluster, cluster_with_driver
from tests.conftest import have_root_and_loop, require

LOCAL = socket.gethostname().split(".")[0] or "localhost"


#: The CSI tests' name for the cluster they run against.
Stack = Cluster


@contextmanager
def csi_stack(
    base: Path, workdir_prefix: str, emulator_args: tuple[str, ...] = (), **driver: Any
) -> Iterator[Stack]:
    """Start the stack under ``base``; afterwards unmount, remove the work dir, reset and stop.

    ``emulator_args`` go to the emulator's command line, ``driver`` to ``driver_on_emulator``.
    The work dir is a fresh temporary directory named ``workdir_prefix...``.
    """
    ok, reason = have_root_and_loop()
    require(ok, reason)
    workdir = Path(tempfile.mkdtemp(prefix=workdir_prefix))
    try:
        with cluster_with_driver(
            base, LOCAL, ("node-b", "node-c"), emulator_args, workdir=workdir, **driver
        ) as cluster:
            yield cluster
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
