"""Start-up settings of one emulator process (from the command line)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_POOL = "DfltStorPool"
DISKLESS_POOL = "DfltDisklessStorPool"
DEFAULT_RG = "DfltRscGrp"


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
    #: How many DRBD minors (from 1000) and TCP ports per node (from 7000) there are to hand
    #: out; LINSTOR's ranges by default, fewer to let tests run out as a big cluster does.
    drbd_minor_count: int = 49000
    drbd_port_count: int = 1000
    version: str = "1.34.0"
    rest_api_version: str = "1.28.0"
