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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from csi.testing import unmount_under
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


@contextmanager
def scratch_dir(stack: Stack) -> Iterator[Path]:
    """A fresh directory below the driver's path root, as kubelet's pod directories are.

    Afterwards whatever is mounted below it is unmounted and it is removed, so one test's
    mounts never reach the next.
    """
    path = stack.workdir / uuid.uuid4().hex[:8]
    path.mkdir()
    try:
        yield path
    finally:
        unmount_under(str(path), stack.nodeops)
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def stage_paths(stack: Stack) -> Iterator[tuple[str, str]]:
    """A staging dir (created, as the CO does) and a target path (left to the driver), in a scratch dir."""
    with scratch_dir(stack) as base:
        staging = base / "staging"
        staging.mkdir()
        yield str(staging), str(base / "target")


def rest_calls() -> float:
    """LINSTOR REST calls made in this process so far, by the in-process driver's own counter."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "linstor_plugin_linstor_requests":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total
