"""Raw reads and writes on block devices and backing files, for tests that check data survives.

Several layers (emulator storage, its REST API, restarts, the volume service) prove
that bytes written through one device come back through another; they share these
helpers so every one of them writes the same way (``pwrite`` then ``fsync``, so the
data has reached the backing file before another device or process reads it).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def write_at(path: str | Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_at(path: str | Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def size_bytes(device: str) -> int:
    """The device's size as the kernel reports it (``blockdev --getsize64``)."""
    out = subprocess.run(["blockdev", "--getsize64", device], check=True, capture_output=True, text=True)
    return int(out.stdout.strip())
