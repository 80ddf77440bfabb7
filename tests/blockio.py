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


def loop_devices_of(path: Path) -> list[str]:
    """Loop devices of a backing file, asked of ``losetup -j`` directly (not of the code under test)."""
    if not path.exists():
        return []
    out = subprocess.run(["losetup", "-j", str(path)], capture_output=True, text=True, check=True).stdout
    return [line.split(":", 1)[0] for line in out.splitlines() if line.strip()]


def detach_loops_under(root: Path, pattern: str = "*") -> None:
    """Detach every loop device backed by a file below ``root`` (matching ``pattern``).

    Tests call it after the emulator's storage they drove directly, so no loop device
    outlives the temporary directory its backing file was in.
    """
    for path in root.rglob(pattern):
        if path.is_file() and not path.is_symlink():
            for loop in loop_devices_of(path):
                subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)


def loops_backed_under(root: Path) -> dict[str, str]:
    """Loop device (``/dev/loopN``) to backing file, for every loop device whose file lies below ``root``.

    Read from ``/sys/block``, so it sees the kernel's view even after the emulator that made
    them is gone.
    """
    prefix = str(root.resolve()) + os.sep
    found: dict[str, str] = {}
    for entry in Path("/sys/block").glob("loop*"):
        try:
            backing = (entry / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(prefix):
            found[f"/dev/{entry.name}"] = backing
    return found
