"""The emulator's storage layer against real sparse files, loop devices, mkfs and mounts.

Tests that only touch files run anywhere; the rest take the ``root_loop`` fixture. Every loop
device, device node and mount a test makes is released by the fixtures even when it fails.
"""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from emulator import blockdev
from emulator.storage import Storage, StorageError
from tests.blockio import detach_loops_under, loop_devices_of, read_at, size_bytes, write_at

MiB_KIB = 1024
POOL = "DfltStorPool"


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    yield Storage(tmp_path / "state", tmp_path / "dev")
    detach_loops_under(tmp_path)


@pytest.fixture
def mounter(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a device on a fresh directory; everything still mounted is unmounted afterwards."""
    mounted: list[Path] = []

    def mount(device: str) -> Path:
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        subprocess.run(["mount", device, str(target)], capture_output=True, text=True, check=True)
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], capture_output=True, check=False)


def _umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], capture_output=True, text=True, check=True)


def _blkid_type(device: str) -> str:
    out = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", device], capture_output=True, text=True)
    return out.stdout.strip()


def _blkid_pttype(device: str) -> str:
    out = subprocess.run(
        ["blkid", "-p", "-o", "value", "-s", "PTTYPE", device], capture_output=True, text=True
    )
    return out.stdout.strip()


# ------------------------------------------------------------------------------ files only, no root


def test_pool_path_is_created_and_capacity_has_df_semantics(storage: Storage, tmp_path: Path) -> None:
    path = storage.pool_path("node-a", POOL)
    assert path == tmp_path / "state" / "pools" / "node-a" / POOL
    assert path.is_dir()
    total, free = storage.pool_capacity_kib("node-a", POOL)
    st = os.statvfs(path)
    assert total == st.f_blocks * st.f_frsize // 1024
    # free changes as other tests write; it is always positive and never above total
    assert 0 < free <= total


def test_create_volume_makes_a_sparse_file_named_like_a_file_provider(storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 512 * MiB_KIB)
    assert backing.name == "pvc-1_00000.img"
    assert backing.parent == storage.pool_path("node-a", POOL)
    assert backing.stat().st_size == 512 * 1024 * 1024
    assert storage.allocated_kib(backing) < 1024  # thin: nothing written, (almost) nothing allocated


def test_allocated_kib_grows_with_written_data(storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 16 * MiB_KIB)
    with open(backing, "r+b") as f:
        f.write(os.urandom(1024 * 1024))
        f.flush()
        os.fsync(f.fileno())
    assert 1024 <= storage.allocated_kib(backing) < 2048


def test_create_volume_retry_returns_same_file_but_other_size_is_refused(storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
    backing.write_bytes(b"precious" + bytes(8 * 1024 * 1024 - 8))
    assert storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB) == backing
    with pytest.raises(StorageError, match="already exists"):
        storage.create_volume("node-a", POOL, "pvc-1", 0, 16 * MiB_KIB)
    assert backing.read_bytes()[:8] == b"precious"
    assert backing.stat().st_size == 8 * 1024 * 1024


@pytest.mark.parametrize(
    ("node", "rd", "size_kib", "match"),
    [
        ("..", "pvc-1", 1024, "invalid node name"),
        ("node-a", "../../etc", 1024, "invalid resource name"),
        ("node/a", "pvc-1", 1024, "invalid node name"),
        ("node-a", "pvc-1", 0, "must be positive"),
        ("node-a", "pvc-1", -5, "must be positive"),
    ],
)
def test_create_volume_rejects_bad_input_and_creates_nothing(
    storage: Storage, tmp_path: Path, node: str, rd: str, size_kib: int, match: str
) -> None:
    with pytest.raises(StorageError, match=match):
        storage.create_volume(node, POOL, rd, 0, size_kib)
    created = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert created == []


def test_snapshot_and_copy_preserve_content_and_holes_on_plain_files(storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 64 * MiB_KIB)
    payload = os.urandom(256 * 1024)
    with open(backing, "r+b") as f:
        f.seek(10 * 1024 * 1024)
        f.write(payload)
    snap = storage.snapshot_path("node-a", POOL, "pvc-1", 0, "snap1")
    storage.snapshot(backing, snap)
    assert snap.name == "pvc-1_00000_snap1.img"
    assert snap.stat().st_size == backing.stat().st_size
    assert read_at(snap, 10 * 1024 * 1024, len(payload)) == payload
    assert storage.allocated_kib(snap) < 4 * 1024  # the 63 MiB of holes stayed holes

    with open(backing, "r+b") as f:  # the snapshot must not follow later writes
        f.seek(10 * 1024 * 1024)
        f.write(b"\xff" * len(payload))
    assert read_at(snap, 10 * 1024 * 1024, len(payload)) == payload

    restored = storage.volume_path("node-a", POOL, "pvc-2", 0)
    storage.copy_volume(snap, restored)
    assert read_at(restored, 10 * 1024 * 1024, len(payload)) == payload
    assert not list(restored.parent.glob(".*partial"))


def test_snapshot_never_overwrites_an_existing_snapshot(storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 4 * MiB_KIB)
    snap = storage.snapshot_path("node-a", POOL, "pvc-1", 0, "s")
    snap.write_bytes(b"older snapshot")
    with pytest.raises(StorageError, match="already exists"):
        storage.snapshot(backing, snap)
    assert snap.read_bytes() == b"older snapshot"


def test_snapshot_of_missing_file_is_a_clear_error(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        storage.snapshot(tmp_path / "nope.img", tmp_path / "snap.img")
    assert not (tmp_path / "snap.img").exists()


def _supports_reflink(directory: Path) -> bool:
    src, dest = directory / ".probe-src", directory / ".probe-dest"
    src.write_bytes(b"x" * 4096)
    try:
        return blockdev.reflink(src, dest)
    finally:
        src.unlink()
        dest.unlink(missing_ok=True)


def test_strict_reflink_refuses_sparse_fallback_on_a_filesystem_without_reflink(tmp_path: Path) -> None:
    strict = Storage(tmp_path / "state", tmp_path / "dev", strict_reflink=True)
    pool = strict.pool_path("node-a", POOL)
    if _supports_reflink(pool):
        pytest.skip("the temp directory's filesystem supports reflinks; the reflink test covers it")
    backing = strict.create_volume("node-a", POOL, "pvc-1", 0, 4 * MiB_KIB)
    snap = strict.snapshot_path("node-a", POOL, "pvc-1", 0, "s")
    with pytest.raises(StorageError, match="does not support reflinks"):
        strict.snapshot(backing, snap)
    assert not snap.exists()
    assert [p.name for p in pool.iterdir()] == [backing.name]
    # restore and clone stay possible without reflinks
    strict.copy_volume(backing, strict.volume_path("node-a", POOL, "pvc-2", 0))


def test_holds_data_looks_at_allocated_blocks_only(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 32 * MiB_KIB)
    assert blockdev.holds_data(backing) is False
    with open(backing, "r+b") as f:
        f.seek(4 * 1024 * 1024)
        f.write(bytes(2 * 1024 * 1024))  # allocated zeros
        f.flush()
        os.fsync(f.fileno())
    assert storage.allocated_kib(backing) >= 2048
    assert blockdev.holds_data(backing) is False
    monkeypatch.setattr(blockdev, "DATA_SCAN_BUDGET", 1024 * 1024)
    assert blockdev.holds_data(backing) is True  # could not look at everything: assume data
    monkeypatch.undo()
    with open(backing, "r+b") as f:
        f.seek(30 * 1024 * 1024)
        f.write(b"\x01")
    assert blockdev.holds_data(backing) is True


def test_errors_from_commands_carry_their_stderr() -> None:
    with pytest.raises(StorageError, match=r"exit code \d+: .*nonexistent-device"):
        blockdev.run(["blockdev", "--getsize64", "/dev/nonexistent-device"])
    with pytest.raises(StorageError, match="command not found"):
        blockdev.run(["no-such-command-for-storage-tests"])


# ----------------------------------------------------------------------------- loop devices (root)


def test_attach_gives_a_drbd_shaped_node_with_the_loops_major_minor(
    root_loop: None, storage: Storage
) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 32 * MiB_KIB)
    device = storage.attach(backing, 1000)
    assert device == str(storage.dev_dir / "drbd1000")
    loop = storage.loop_for(backing)
    assert loop is not None and loop.startswith("/dev/loop")
    assert loop_devices_of(backing) == [loop]
    node_st, loop_st = os.stat(device), os.stat(loop)
    assert stat.S_ISBLK(node_st.st_mode)
    assert (os.major(node_st.st_rdev), os.minor(node_st.st_rdev)) == (
        os.major(loop_st.st_rdev),
        os.minor(loop_st.st_rdev),
    )
    assert storage.device_for(backing, 1000) == device
    assert size_bytes(device) == 32 * 1024 * 1024


def test_attach_is_idempotent(root_loop: None, storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
    first = storage.attach(backing, 1001)
    loop = storage.loop_for(backing)
    assert storage.attach(backing, 1001) == first
    assert loop_devices_of(backing) == [loop]


def test_loop_lookup_without_sysfs_falls_back_to_losetup(
    root_loop: None, storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
    storage.attach(backing, 1009)
    via_sysfs = storage.loop_for(backing)
    monkeypatch.setattr(blockdev, "SYS_BLOCK", tmp_path / "no-sysfs")
    assert storage.loop_for(backing) == via_sysfs == loop_devices_of(backing)[0]
    assert storage.loop_for(storage.create_volume("node-a", POOL, "pvc-2", 0, 8 * MiB_KIB)) is None


def test_storage_only_mode_reports_the_loop_device(root_loop: None, tmp_path: Path) -> None:
    plain = Storage(tmp_path / "state", tmp_path / "dev", drbd_shaped=False)
    try:
        backing = plain.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
        device = plain.attach(backing, 1000)
        assert device == plain.loop_for(backing)
        assert device.startswith("/dev/loop")
        assert not (tmp_path / "dev" / "drbd1000").exists()
        assert plain.device_for(backing, 1000) == device
    finally:
        detach_loops_under(tmp_path)


def test_symlink_stands_in_where_device_nodes_cannot_be_made(
    root_loop: None, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_mknod(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "mknod", no_mknod)  # a container without CAP_MKNOD
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
    device = storage.attach(backing, 1040)
    loop = storage.loop_for(backing)
    assert os.readlink(device) == loop
    assert storage.device_for(backing, 1040) == device
    assert storage.attach(backing, 1040) == device
    payload = os.urandom(4096)
    write_at(device, 0, payload)
    assert read_at(backing, 0, len(payload)) == payload
    storage.detach(backing, 1040)
    assert not os.path.lexists(device)
    assert loop_devices_of(backing) == []


def test_data_written_through_the_device_lands_in_the_backing_file(root_loop: None, storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 16 * MiB_KIB)
    device = storage.attach(backing, 1002)
    payload = os.urandom(64 * 1024)
    write_at(device, 3 * 1024 * 1024, payload)
    assert read_at(device, 3 * 1024 * 1024, len(payload)) == payload
    assert read_at(backing, 3 * 1024 * 1024, len(payload)) == payload


def test_attach_of_a_missing_file_is_a_clear_error(root_loop: None, storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        storage.attach(tmp_path / "missing.img", 1000)
    assert not (storage.dev_dir / "drbd1000").exists()


def test_resize_is_visible_on_the_device_when_it_returns(root_loop: None, storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 16 * MiB_KIB)
    device = storage.attach(backing, 1003)
    payload = os.urandom(4096)
    write_at(device, 8 * 1024 * 1024, payload)
    storage.resize(backing, 48 * MiB_KIB)
    assert size_bytes(device) == 48 * 1024 * 1024
    assert backing.stat().st_size == 48 * 1024 * 1024
    assert read_at(device, 8 * 1024 * 1024, len(payload)) == payload
    write_at(device, 40 * 1024 * 1024, payload)  # the new space is usable
    assert read_at(backing, 40 * 1024 * 1024, len(payload)) == payload


def test_detach_removes_node_and_loop_and_keeps_the_data(root_loop: None, storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
    device = storage.attach(backing, 1004)
    payload = os.urandom(4096)
    write_at(device, 0, payload)
    storage.detach(backing, 1004)
    assert loop_devices_of(backing) == []
    assert not os.path.lexists(device)
    assert storage.device_for(backing, 1004) is None
    assert storage.loop_for(backing) is None
    assert read_at(backing, 0, len(payload)) == payload
    storage.detach(backing, 1004)  # already gone is fine


def test_resize_of_a_detached_volume_and_bad_sizes(storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
    storage.resize(backing, 24 * MiB_KIB)
    assert backing.stat().st_size == 24 * 1024 * 1024
    for bad in (0, -1):
        with pytest.raises(StorageError, match="must be positive"):
            storage.resize(backing, bad)
    assert backing.stat().st_size == 24 * 1024 * 1024


def test_delete_leaves_nothing_behind_and_tolerates_a_retry(root_loop: None, storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
    device = storage.attach(backing, 1005)
    loop = storage.loop_for(backing)
    assert loop is not None
    storage.delete(backing, 1005)
    assert not backing.exists()
    assert not os.path.lexists(device)
    out = subprocess.run(
        ["losetup", "--list", "--noheadings", "-O", "BACK-FILE", loop], capture_output=True, text=True
    )
    assert str(backing) not in out.stdout
    storage.delete(backing, 1005)


def test_restart_reuses_the_existing_loop_device_with_data_intact(
    root_loop: None, storage: Storage, tmp_path: Path
) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
    device = storage.attach(backing, 1006)
    loop = storage.loop_for(backing)
    payload = os.urandom(8192)
    write_at(device, 4096, payload)

    after_restart = Storage(tmp_path / "state", tmp_path / "dev")
    assert after_restart.device_for(backing, 1006) == device
    assert after_restart.attach(backing, 1006) == device
    assert after_restart.loop_for(backing) == loop
    assert loop_devices_of(backing) == [loop]
    assert read_at(device, 4096, len(payload)) == payload


def test_restart_through_another_path_to_the_same_file_reuses_the_loop(
    root_loop: None, storage: Storage, tmp_path: Path
) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
    storage.attach(backing, 1012)
    loop = storage.loop_for(backing)
    alias = tmp_path / "state-alias"
    alias.mkdir()
    subprocess.run(["mount", "--bind", str(tmp_path / "state"), str(alias)], capture_output=True, check=True)
    try:
        moved = Storage(alias, tmp_path / "dev")
        same_file = moved.volume_path("node-a", POOL, "pvc-1", 0)
        assert moved.attach(same_file, 1012) == str(tmp_path / "dev" / "drbd1012")
        assert loop_devices_of(backing) == [loop]
        moved.detach(same_file, 1012)
        assert loop_devices_of(backing) == []
    finally:
        subprocess.run(["umount", str(alias)], capture_output=True, check=False)


def test_restart_recreates_a_lost_device_node_and_a_lost_loop(
    root_loop: None, storage: Storage, tmp_path: Path
) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
    device = storage.attach(backing, 1007)
    payload = os.urandom(4096)
    write_at(device, 0, payload)

    os.unlink(device)  # e.g. dev_dir was a tmpfs that did not survive a reboot
    for loop in loop_devices_of(backing):  # ... and neither did the loop devices
        subprocess.run(["losetup", "-d", loop], check=True)
    after_restart = Storage(tmp_path / "state", tmp_path / "dev")
    assert after_restart.device_for(backing, 1007) is None
    assert after_restart.attach(backing, 1007) == device
    assert len(loop_devices_of(backing)) == 1
    assert os.stat(device).st_rdev == os.stat(loop_devices_of(backing)[0]).st_rdev
    assert read_at(device, 0, len(payload)) == payload


def test_a_stale_node_pointing_elsewhere_is_replaced(root_loop: None, storage: Storage) -> None:
    first = storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
    second = storage.create_volume("node-a", POOL, "pvc-2", 0, 8 * MiB_KIB)
    storage.attach(first, 1008)
    device = storage.attach(second, 1008)  # the state handed minor 1008 to a new volume
    assert os.stat(device).st_rdev == os.stat(storage.loop_for(second) or "").st_rdev
    assert storage.device_for(first, 1008) is None


def test_release_all_detaches_everything_and_tolerates_missing_files(
    root_loop: None, storage: Storage, tmp_path: Path
) -> None:
    backings = [storage.create_volume("node-a", POOL, f"pvc-{i}", 0, 4 * MiB_KIB) for i in range(3)]
    for i, backing in enumerate(backings):
        storage.attach(backing, 1010 + i)
    items: list[tuple[Path, int | None]] = [(b, 1010 + i) for i, b in enumerate(backings)]
    items.append((tmp_path / "never-created.img", 1099))
    storage.release_all(items)
    for backing in backings:
        assert loop_devices_of(backing) == []
        assert backing.exists()
    assert list(storage.dev_dir.iterdir()) == []


def test_release_all_reports_what_it_could_not_release_and_releases_the_rest(
    root_loop: None, storage: Storage
) -> None:
    good = storage.create_volume("node-a", POOL, "pvc-1", 0, 4 * MiB_KIB)
    blocked = storage.create_volume("node-a", POOL, "pvc-2", 0, 4 * MiB_KIB)
    storage.attach(good, 1013)
    storage.attach(blocked, 1014)
    node = storage.dev_dir / "drbd1014"
    node.unlink()
    node.write_text("somebody else's file")  # not a device node: must not be removed
    with pytest.raises(StorageError, match=r"pvc-2_00000\.img.*not a device node"):
        storage.release_all([(blocked, 1014), (good, 1013)])
    assert loop_devices_of(good) == []
    assert loop_devices_of(blocked) == []
    assert node.read_text() == "somebody else's file"


# ------------------------------------------------------------------------------- mkfs and in-use (root)


def test_mkfs_if_blank_formats_a_blank_device_once(root_loop: None, storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 64 * MiB_KIB)
    device = storage.attach(backing, 1020)
    assert storage.mkfs_if_blank(device, "ext4", "-L data-vol") is True
    assert _blkid_type(device) == "ext4"
    label = subprocess.run(
        ["blkid", "-p", "-o", "value", "-s", "LABEL", device], capture_output=True, text=True
    )
    assert label.stdout.strip() == "data-vol"
    assert storage.mkfs_if_blank(device, "ext4") is False


@pytest.mark.parametrize("fs_type", ["xfs", "btrfs"])
def test_mkfs_if_blank_supports_xfs_and_btrfs(root_loop: None, storage: Storage, fs_type: str) -> None:
    if subprocess.run(["which", f"mkfs.{fs_type}"], capture_output=True).returncode != 0:
        pytest.skip(f"mkfs.{fs_type} is not installed")
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 320 * MiB_KIB)
    device = storage.attach(backing, 1021)
    assert storage.mkfs_if_blank(device, fs_type) is True
    assert _blkid_type(device) == fs_type


def test_mkfs_if_blank_leaves_a_device_with_data_untouched(
    root_loop: None, storage: Storage, mounter: Callable[[str], Path]
) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 64 * MiB_KIB)
    device = storage.attach(backing, 1022)
    assert storage.mkfs_if_blank(device, "ext4") is True
    target = mounter(device)
    (target / "keep.txt").write_text("user data")
    _umount(target)
    before = backing.read_bytes()

    assert storage.mkfs_if_blank(device, "xfs") is False
    assert storage.mkfs_if_blank(device, "ext4") is False
    assert backing.read_bytes() == before
    assert (mounter(device) / "keep.txt").read_text() == "user data"


def test_mkfs_if_blank_respects_a_non_filesystem_signature(root_loop: None, storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 16 * MiB_KIB)
    device = storage.attach(backing, 1023)
    # An MBR with one Linux partition: no filesystem, but certainly not blank.
    entry = bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + struct.pack("<II", 2048, 8192)
    write_at(device, 446, entry)
    write_at(device, 510, b"\x55\xaa")
    assert _blkid_pttype(device) == "dos"
    before = backing.read_bytes()
    assert storage.mkfs_if_blank(device, "ext4") is False
    assert backing.read_bytes() == before


def test_mkfs_if_blank_leaves_raw_data_without_a_signature_untouched(
    root_loop: None, storage: Storage
) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 16 * MiB_KIB)
    device = storage.attach(backing, 1034)
    payload = os.urandom(4096)
    write_at(device, 9 * 1024 * 1024, payload)  # e.g. a database on the raw block device
    assert _blkid_type(device) == "" and _blkid_pttype(device) == ""
    assert storage.mkfs_if_blank(device, "ext4") is False
    assert read_at(backing, 9 * 1024 * 1024, len(payload)) == payload
    assert _blkid_type(device) == ""


def test_mkfs_if_blank_formats_a_device_whose_allocated_blocks_are_zero(
    root_loop: None, storage: Storage
) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 64 * MiB_KIB)
    device = storage.attach(backing, 1035)
    write_at(device, 2 * 1024 * 1024, bytes(1024 * 1024))  # allocated, but nothing in it
    assert storage.allocated_kib(backing) >= 1024
    assert storage.mkfs_if_blank(device, "ext4") is True
    assert _blkid_type(device) == "ext4"


def test_mkfs_if_blank_rejects_bad_requests_without_writing(
    root_loop: None, storage: Storage, tmp_path: Path
) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 16 * MiB_KIB)
    device = storage.attach(backing, 1024)
    with pytest.raises(StorageError, match="unsupported filesystem type 'vfat'"):
        storage.mkfs_if_blank(device, "vfat")
    with pytest.raises(StorageError, match="cannot parse mkfs parameters"):
        storage.mkfs_if_blank(device, "ext4", "-L 'unclosed")
    with pytest.raises(StorageError, match=r"mkfs\.ext4"):
        storage.mkfs_if_blank(device, "ext4", "--no-such-option")
    with pytest.raises(StorageError, match="cannot format"):
        storage.mkfs_if_blank(str(tmp_path / "no-device"), "ext4")
    assert storage.allocated_kib(backing) == 0
    assert _blkid_type(device) == ""


def test_in_use_while_mounted_and_not_after(
    root_loop: None, storage: Storage, mounter: Callable[[str], Path]
) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 64 * MiB_KIB)
    device = storage.attach(backing, 1025)
    storage.mkfs_if_blank(device, "ext4")
    assert storage.in_use(backing, 1025) is False
    target = mounter(device)
    assert storage.in_use(backing, 1025) is True
    with pytest.raises(StorageError, match="in use"):
        storage.detach(backing, 1025)
    with pytest.raises(StorageError, match="in use"):
        storage.delete(backing, 1025)
    assert backing.exists() and storage.device_for(backing, 1025) == device
    _umount(target)
    assert storage.in_use(backing, 1025) is False
    storage.delete(backing, 1025)
    assert not backing.exists()


def test_in_use_while_exclusively_open(root_loop: None, storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
    device = storage.attach(backing, 1026)
    fd = os.open(device, os.O_RDONLY | os.O_EXCL)
    try:
        assert storage.in_use(backing, 1026) is True
    finally:
        os.close(fd)
    assert storage.in_use(backing, 1026) is False


def _hold_open(device: str, flags: int) -> subprocess.Popen[str]:
    """Another process keeps the device open (like a database on a raw block volume) until stdin closes."""
    code = f"import os, sys; fd = os.open({device!r}, {flags}); print('open', flush=True); sys.stdin.read()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)


def test_in_use_while_another_process_has_it_open_for_writing(root_loop: None, storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
    device = storage.attach(backing, 1028)
    writer = _hold_open(device, os.O_RDWR)
    try:
        assert storage.in_use(backing, 1028) is True
        with pytest.raises(StorageError, match="in use"):
            storage.delete(backing, 1028)
    finally:
        _release(writer)
    assert storage.in_use(backing, 1028) is False

    reader = _hold_open(device, os.O_RDONLY)  # a read-only probe does not make it busy
    try:
        assert storage.in_use(backing, 1028) is False
    finally:
        _release(reader)


def test_in_use_of_a_detached_volume_is_false(root_loop: None, storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 8 * MiB_KIB)
    assert storage.in_use(backing, 1027) is False


# ------------------------------------------------------------------------------ snapshots of devices (root)


def test_snapshot_of_an_attached_device_captures_written_data(root_loop: None, storage: Storage) -> None:
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 16 * MiB_KIB)
    device = storage.attach(backing, 1030)
    old = os.urandom(64 * 1024)
    write_at(device, 1024 * 1024, old)
    snap = storage.snapshot_path("node-a", POOL, "pvc-1", 0, "before")
    storage.snapshot(backing, snap)
    write_at(device, 1024 * 1024, os.urandom(64 * 1024))

    restored = storage.create_volume("node-a", POOL, "pvc-2", 0, 16 * MiB_KIB)
    storage.copy_volume(snap, restored)
    restored_device = storage.attach(restored, 1031)
    assert read_at(restored_device, 1024 * 1024, len(old)) == old
    assert read_at(device, 1024 * 1024, len(old)) != old

    with pytest.raises(StorageError, match="attached"):
        storage.copy_volume(snap, restored)  # would swap the file out from under a live device
    assert read_at(restored_device, 1024 * 1024, len(old)) == old


@pytest.mark.parametrize("fs_type", ["ext4", "xfs"])
def test_snapshot_of_a_mounted_filesystem_holds_files_not_yet_synced(
    root_loop: None, storage: Storage, mounter: Callable[[str], Path], fs_type: str
) -> None:
    """Files still in the page cache must be in the snapshot, and the snapshot must mount cleanly."""
    backing = storage.create_volume("node-a", POOL, "pvc-1", 0, 320 * MiB_KIB)
    device = storage.attach(backing, 1032)
    assert storage.mkfs_if_blank(device, fs_type) is True
    target = mounter(device)
    content = os.urandom(300 * 1024)
    (target / "unsynced.bin").write_bytes(content)  # no fsync: only the page cache has it
    snap = storage.snapshot_path("node-a", POOL, "pvc-1", 0, "s")
    storage.snapshot(backing, snap)
    (target / "after.txt").write_text("written after the snapshot")  # the filesystem was thawed

    restored = storage.volume_path("node-a", POOL, "pvc-2", 0)
    storage.copy_volume(snap, restored)
    restored_device = storage.attach(restored, 1033)
    if fs_type == "xfs":  # the copy has the same filesystem UUID as the mounted original
        restored_target = storage.dev_dir.parent / "restored"
        restored_target.mkdir()
        subprocess.run(
            ["mount", "-o", "ro,nouuid,norecovery", restored_device, str(restored_target)], check=True
        )
        try:
            assert (restored_target / "unsynced.bin").read_bytes() == content
            assert not (restored_target / "after.txt").exists()
        finally:
            _umount(restored_target)
    else:
        check = subprocess.run(["fsck.ext4", "-n", restored_device], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr  # clean, no journal replay needed
        restored_mount = mounter(restored_device)
        assert (restored_mount / "unsynced.bin").read_bytes() == content
        assert not (restored_mount / "after.txt").exists()


@pytest.fixture
def xfs_dir(root_loop: None, tmp_path: Path) -> Iterator[Path]:
    """A small reflink-capable XFS filesystem, for the real reflink path."""
    if subprocess.run(["which", "mkfs.xfs"], capture_output=True).returncode != 0:
        pytest.skip("mkfs.xfs is not installed")
    image = tmp_path / "xfs.img"
    with open(image, "wb") as f:
        f.truncate(320 * 1024 * 1024)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True, check=True)
    device = loop.stdout.strip()
    target = tmp_path / "xfs"
    target.mkdir()
    try:
        subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", device], capture_output=True, check=True)
        subprocess.run(["mount", device, str(target)], capture_output=True, check=True)
        try:
            yield target
        finally:
            detach_loops_under(target)
            subprocess.run(["umount", str(target)], capture_output=True, check=False)
    finally:
        subprocess.run(["losetup", "-d", device], capture_output=True, check=False)


def test_snapshot_uses_reflinks_where_the_filesystem_has_them(xfs_dir: Path) -> None:
    strict = Storage(xfs_dir / "state", xfs_dir / "dev", strict_reflink=True)
    backing = strict.create_volume("node-a", POOL, "pvc-1", 0, 64 * MiB_KIB)
    payload = os.urandom(32 * 1024 * 1024)
    with open(backing, "r+b") as f:
        f.write(payload)
        os.fsync(f.fileno())
    free_before = os.statvfs(xfs_dir).f_bfree
    snap = strict.snapshot_path("node-a", POOL, "pvc-1", 0, "s1")
    strict.snapshot(backing, snap)  # strict: would raise if it fell back to copying
    assert read_at(snap, 0, len(payload)) == payload
    used = (free_before - os.statvfs(xfs_dir).f_bfree) * os.statvfs(xfs_dir).f_frsize
    assert used < 4 * 1024 * 1024  # shared extents, not another 32 MiB
