"""Start-up settings of one emulator process (from the command line)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from emulator import versions
from emulator.in_use_reports import DEFAULT_DELAY_S as DEFAULT_IN_USE_REPORT_S

DEFAULT_POOL = "DfltStorPool"
DISKLESS_POOL = "DfltDisklessStorPool"
DEFAULT_RG = "DfltRscGrp"
#: The controller's defaults: ``TcpPortAutoRange`` 7000-7999 (per node) and
#: ``MinorNrAutoRange`` 1000-49999 (per cluster), both inclusive.
DEFAULT_TCP_PORT_RANGE = (7000, 7999)
DEFAULT_MINOR_RANGE = (1000, 49999)
TCP_PORT_LIMITS = (1, 65535)
MINOR_LIMITS = (0, 1048575)
DEFAULT_SYNC_SECONDS = 3.0


def default_node_name() -> str:
    """The local node is named after the host, like a satellite registered by its host name."""
    return socket.gethostname().split(".")[0] or "localhost"


@dataclass
class Config:
    state_dir: Path
    dev_dir: Path
    local_node: str = field(default_factory=default_node_name)
    virtual_nodes: tuple[str, ...] = ()
    #: Default: DRBD-shaped JSON and ``<dev_dir>/drbd<minor>`` devices; False = STORAGE layer only.
    drbd_shaped: bool = True
    #: Reproduce the real STORAGE-only behaviour: no in_use reported, no 997 on delete.
    strict_in_use: bool = False
    strict_reflink: bool = False
    #: Reproduce the real 227 for clones of FILE_THIN volumes instead of copying.
    strict_clone: bool = False
    pool_name: str = DEFAULT_POOL
    #: Seconds between an open or close on the host and the controller's in-use knowing it.
    in_use_report_seconds: float = DEFAULT_IN_USE_REPORT_S
    #: The controller release played (``--linstor-version``); older ones lack newer request fields.
    version: str = versions.NEWEST
    #: A thick ``FILE`` pool of this name beside the thin one on every node (None: none).
    thick_pool: str | None = None
    #: Initial sync of a diskful replica on a thick pool (Inconsistent until then).
    sync_seconds: float = DEFAULT_SYNC_SECONDS
    #: Automatically allocated DRBD TCP ports, per node (the controller's ``TcpPortAutoRange``).
    tcp_port_range: tuple[int, int] = DEFAULT_TCP_PORT_RANGE
    #: Automatically allocated DRBD minors, per cluster (the controller's ``MinorNrAutoRange``).
    minor_range: tuple[int, int] = DEFAULT_MINOR_RANGE

    @property
    def controller(self) -> versions.ControllerVersion:
        parsed = versions.parse(self.version)
        return versions.ControllerVersion(parsed) if parsed else versions.ControllerVersion()

    @property
    def rest_api_version(self) -> str:
        return versions.text(self.controller.rest)
