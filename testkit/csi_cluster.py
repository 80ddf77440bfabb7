"""An emulated LINSTOR cluster with the real CSI driver on it, for backup tests and benchmarks alike.

The backup tests' second cluster and the backup benchmark need the same thing: a private
emulator, an in-process driver whose path root is a fresh work directory, and on the way
out every mount below it undone and the emulator's loop devices released, even when the
caller failed half-way. They also describe an S3 remote to the driver the same way, as a
VolumeSnapshotClass would.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csi.testing import CsiClient, driver_on_emulator, unmount_under
from plugin.node.ops import NodeOps
from testkit.emulator import EmulatorProcess, reset_and_stop
from testkit.s3server import REGION

#: The prefix of the driver's VolumeSnapshotClass parameters.
SNAPSHOT_PREFIX = "snap.linstor.csi.linbit.com/"


@dataclass
class Cluster:
    """One emulated cluster as a CO sees it: its driver's services and a directory for mounts."""

    emulator: EmulatorProcess
    csi: CsiClient
    nodeops: NodeOps
    workdir: Path

    @property
    def ctl(self) -> Any:
        """The driver's Controller service (stub)."""
        return self.csi.controller


@contextmanager
def cluster_with_driver(
    base: Path,
    node_name: str,
    nodes: tuple[str, ...] = (),
    emulator_args: tuple[str, ...] = (),
    workdir: Path | None = None,
    **driver: Any,
) -> Iterator[Cluster]:
    """An emulator (local node ``node_name`` plus virtual ``nodes``) below ``base``, a driver on it.

    ``emulator_args`` go to the emulator's command line, ``driver`` to ``driver_on_emulator``.
    The work directory (``workdir``, made by the caller, or ``base/work``) stands in for
    kubelet's (or Nomad's): it is the driver's only path root, and what is still mounted
    below it is unmounted before the emulator is reset and stopped.
    """
    emulator = EmulatorProcess(
        state_dir=base / "state", dev_dir=base / "dev", nodes=nodes, extra_args=emulator_args
    )
    emulator.start()
    try:
        if workdir is None:
            workdir = base / "work"
            workdir.mkdir()
        with driver_on_emulator(emulator.url, node_name, path_roots=[str(workdir)], **driver) as (
            _driver,
            client,
            nodeops,
        ):
            try:
                yield Cluster(emulator, client, nodeops, workdir)
            finally:
                unmount_under(str(workdir), nodeops)
    finally:
        reset_and_stop([emulator])


def s3_class_parameters(endpoint: str, remote: str, bucket: str, **extra: str) -> dict[str, str]:
    """VolumeSnapshotClass parameters of an S3 remote (path-style, as moto serves it).

    ``extra`` are further class parameters, named without the prefix (``delete_local`` is
    not a valid keyword, so pass such names with ``**{"delete-local": "true"}``).
    """
    params = {
        "type": "S3",
        "remote-name": remote,
        "s3-endpoint": endpoint,
        "s3-bucket": bucket,
        "s3-signing-region": REGION,
        "s3-use-path-style": "true",
        **extra,
    }
    return {f"{SNAPSHOT_PREFIX}{key}": value for key, value in params.items()}
