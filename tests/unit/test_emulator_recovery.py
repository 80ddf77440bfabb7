"""Robustness of the emulator's host side: read-only loops.

Loop-device tests take the ``root_loop`` fixture; every loop, file and flag a test makes is
released by the test even when it fails.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import blockdev
from emulator.storage import Storage, StorageError

POOL = "DfltStorPool"


def _losetup_j(path: Path) -> list[str]:
    if not path.exists():
        return []
    out = subprocess.run(["losetup", "-j", str(path)], capture_output=True, text=True, check=True).stdout
    return [line.split(":", 1)[0] for line in out.splitlines() if line.strip()]


def _getro(dev: str) -> str:
    return subprocess.run(
        ["blockdev", "--getro", dev], capture_output=True, text=True, check=True
    ).stdout.strip()


def _write_one_block(dev: str) -> None:
    fd = os.open(dev, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.pwrite(fd, b"\xa5" * 4096, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    yield Storage(tmp_path / "state", tmp_path / "dev")
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            for loop in _losetup_j(path):
                subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)


# ---------------------------------------------------------------------------------- read-only loops


def test_a_reused_loop_device_left_read_only_is_made_writable(root_loop: None, storage: Storage) -> None:
    backing = storage.create_volume("n1", POOL, "ro_reuse", 0, 4 * 1024)
    loop = subprocess.run(
        ["losetup", "--find", "--show", str(backing)], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["blockdev", "--setro", loop], check=True)
    assert _getro(loop) == "1"
    device = storage.attach(backing, 1000)
    assert _losetup_j(backing) == [loop]  # the existing loop was reused, not a second one made
    assert _getro(loop) == "0"
    _write_one_block(device)


def test_the_next_volume_on_a_loop_device_left_read_only_is_writable(
    root_loop: None, storage: Storage, tmp_path: Path
) -> None:
    """The flag of ``blockdev --setro`` outlives the loop's detach; a new volume on it must not inherit it.

    ``losetup --find`` picks the lowest free device, which is the one just freed unless another
    process takes it in between; then the test tries again with a new one.
    """
    scratch = tmp_path / "scratch.img"
    scratch.write_bytes(b"")
    os.truncate(scratch, 4 << 20)
    for attempt in range(5):
        flagged = subprocess.run(
            ["losetup", "--find", "--show", str(scratch)], capture_output=True, text=True, check=True
        ).stdout.strip()
        try:
            subprocess.run(["blockdev", "--setro", flagged], check=True)
            subprocess.run(["losetup", "-d", flagged], check=True)
            backing = storage.create_volume("n1", POOL, f"ro_next{attempt}", 0, 4 * 1024)
            storage.attach(backing, None)
            if _losetup_j(backing) != [flagged]:
                storage.delete(backing, None)
                continue
            assert _getro(flagged) == "0"
            _write_one_block(flagged)
            return
        finally:
            # Never leave the flag behind on a device somebody else may get next.
            subprocess.run(["blockdev", "--setrw", flagged], capture_output=True, check=False)
    pytest.fail("losetup never handed out the flagged loop device again")


def test_make_writable_refuses_a_missing_device(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open"):
        blockdev.make_writable(str(tmp_path / "nothing"))
