"""Helpers to drive the CSI driver from tests and benchmarks as a CO would.

Not used by the driver itself. It bundles the gRPC stubs, builds capabilities the way
sidecars and Nomad send them, runs an in-process driver on a unix socket in a temp
dir, and cleans up mounts left under a test's own directory (and nothing else).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from csi.generated import csi_pb2, csi_pb2_grpc
from csi.keys import DEFAULT_MAX_VOLUMES_PER_NODE
from csi.server import CsiDriver, DriverOptions
from csi.validation import DEFAULT_PATH_ROOTS
from plugin.node.mounttable import MOUNTINFO, unescape

if TYPE_CHECKING:
    from plugin.node.ops import NodeOps
    from plugin.volumes.service import VolumeService

Mode = csi_pb2.VolumeCapability.AccessMode.Mode


def mount_cap(
    mode: int = Mode.SINGLE_NODE_WRITER, fs_type: str = "", flags: tuple[str, ...] = ()
) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type=fs_type, mount_flags=list(flags)),
        access_mode=csi_pb2.VolumeCapability.AccessMode(mode=mode),
    )


def block_cap(mode: int = Mode.SINGLE_NODE_WRITER) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(
        block=csi_pb2.VolumeCapability.BlockVolume(),
        access_mode=csi_pb2.VolumeCapability.AccessMode(mode=mode),
    )


@dataclass
class CsiClient:
    """The CSI services on one channel."""

    channel: grpc.Channel

    def __post_init__(self) -> None:
        self.identity = csi_pb2_grpc.IdentityStub(self.channel)
        self.controller = csi_pb2_grpc.ControllerStub(self.channel)
        self.node = csi_pb2_grpc.NodeStub(self.channel)
        self.group = csi_pb2_grpc.GroupControllerStub(self.channel)


@contextmanager
def running_driver(
    service: VolumeService,
    nodeops: NodeOps | None,
    node_name: str,
    mode: str = "all",
    workers: int = 64,
    path_roots: Sequence[str] = DEFAULT_PATH_ROOTS,
    max_volumes_per_node: int = DEFAULT_MAX_VOLUMES_PER_NODE,
) -> Iterator[tuple[CsiDriver, CsiClient]]:
    """An in-process driver on a unix socket in a fresh temp dir, with a connected client.

    ``path_roots`` are the directories the node service may work in; a test passes its own.
    """
    socket_dir = tempfile.mkdtemp(prefix="csi-")  # short: unix socket paths are limited
    driver = CsiDriver(
        service,
        nodeops,
        DriverOptions(
            endpoint=f"unix://{socket_dir}/csi.sock",
            mode=mode,
            node_name=node_name,
            workers=workers,
            path_roots=tuple(path_roots),
            max_volumes_per_node=max_volumes_per_node,
        ),
    )
    driver.start()
    channel = grpc.insecure_channel(driver.endpoint.address)
    try:
        yield driver, CsiClient(channel)
    finally:
        channel.close()
        driver.stop(grace=5)
        os.rmdir(socket_dir)


def mounts_under(directory: str) -> list[str]:
    """Mount points at or below ``directory``, deepest first (the order to unmount them)."""
    root = os.path.realpath(directory).rstrip("/") + "/"
    found = []
    with open(MOUNTINFO) as fh:
        for line in fh:
            point = unescape(line.split()[4])
            if (point + "/").startswith(root):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def unmount_under(directory: str, nodeops: NodeOps) -> list[str]:
    """Unmount whatever a test left mounted below its own directory; returns what it found."""
    left = mounts_under(directory)
    for point in left:
        nodeops.unmount(point, remove_target=False, lazy=True)
    return left


@contextmanager
def driver_on_emulator(
    controller_url: str,
    node_name: str,
    mode: str = "all",
    workers: int = 64,
    device_timeout: float = 10.0,
    path_roots: Sequence[str] = DEFAULT_PATH_ROOTS,
    max_volumes_per_node: int = DEFAULT_MAX_VOLUMES_PER_NODE,
    group_of: Callable[[str, str], str | None] | None = None,
) -> Iterator[tuple[CsiDriver, CsiClient, NodeOps]]:
    """The real core (client, volume service, node ops) behind an in-process driver.

    ``group_of`` stands in for the PVC label lookup of ``--enable-consistency-groups``.
    """
    from plugin.config import load_config
    from plugin.linstor.client import LinstorClient
    from plugin.node.ops import NodeOps as RealNodeOps
    from plugin.volumes.consistency_group_service import ConsistencyGroupService

    config = load_config({"controllers": controller_url, "node_name": node_name}, env={}, config_file=None)
    service = ConsistencyGroupService(LinstorClient(config), config, group_of)
    nodeops = RealNodeOps(device_timeout=device_timeout)
    with running_driver(service, nodeops, node_name, mode, workers, path_roots, max_volumes_per_node) as (
        driver,
        client,
    ):
        yield driver, client, nodeops
