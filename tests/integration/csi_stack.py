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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from csi.testing import CsiClient, driver_on_emulator, unmount_under
from plugin.node.ops import NodeOps
from tests.conftest import EmulatorProcess, have_root_and_loop, require, reset_and_stop

LOCAL = socket.gethostname().split(".")[0] or "localhost"


@dataclass
class Stack:
    emulator: EmulatorProcess
    csi: CsiClient
    workdir: Path
    nodeops: NodeOps


@contextmanager
def csi_stack(
    base: Path, workdir_prefix: str, emulator_args: tuple[str, ...] = (), **driver: Any
) -> Iterator[Stack]:
    """Start the stack under ``base``; afterwards unmount, remove the work dir, reset and stop.

    ``emulator_args`` go to the emulator's command line, ``driver`` to ``driver_on_emulator``.
    """
    ok, reason = have_root_and_loop()
    require(ok, reason)
    emulator = EmulatorProcess(
        state_dir=base / "state", dev_dir=base / "dev", nodes=("node-b", "node-c"), extra_args=emulator_args
    )
    emulator.start()
    workdir = Path(tempfile.mkdtemp(prefix=workdir_prefix))
    try:
        # The work dir stands in for kubelet's (or Nomad's) directory: the only root.
        with driver_on_emulator(emulator.url, LOCAL, path_roots=[str(workdir)], **driver) as (
            _driver,
            client,
            nodeops,
        ):
            try:
                yield Stack(emulator, client, workdir, nodeops)
            finally:
                unmount_under(str(workdir), nodeops)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        reset_and_stop([emulator])


def rest_calls() -> float:
    """LINSTOR REST calls made in this process so far, by the in-process driver's own counter."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "linstor_plugin_linstor_requests":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total
