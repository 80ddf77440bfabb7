"""Robustness of the emulator's host side: read-only loops, mkfs time limits, the start-up sweep,
reservations of definitions, and saves that hold back unfinished changes.

Loop-device tests take the ``root_loop`` fixture; every loop, file and flag a test makes is
released by the test even when it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import blockdev
from emulator import state as st
from emulator.reservations import Reservations
from emulator.storage import Storage, StorageError
from tests.blockio import detach_loops_under, loop_devices_of

POOL = "DfltStorPool"


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
    detach_loops_under(tmp_path)


# ---------------------------------------------------------------------------------- read-only loops


def test_a_reused_loop_device_left_read_only_is_made_writable(root_loop: None, storage: Storage) -> None:
    backing = storage.create_volume("n1", POOL, "ro_reuse", 0, 4 * 1024)
    loop = subprocess.run(
        ["losetup", "--find", "--show", str(backing)], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["blockdev", "--setro", loop], check=True)
    assert _getro(loop) == "1"
    device = storage.attach(backing, 1000)
    assert loop_devices_of(backing) == [loop]  # the existing loop was reused, not a second one made
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
            if loop_devices_of(backing) != [flagged]:
                storage.delete(backing, None)
                continue
            assert _getro(flagged) == "0"
            _write_one_block(flagged)
            return
        finally:
            # Never leave the flag behind on a device somebody else may get next.
            subprocess.run(["blockdev", "--setrw", flagged], capture_output=True, check=False)
    pytest.fail("losetup never handed out the flagged loop device again")


# ---------------------------------------------------------------------------------- mkfs time limit


def test_mkfs_time_limit_grows_with_the_device(root_loop: None, tmp_path: Path) -> None:
    storage = Storage(tmp_path / "state", tmp_path / "dev", mkfs_min_seconds=10, mkfs_seconds_per_gib=4)
    try:
        small = storage.attach(storage.create_volume("n1", POOL, "small", 0, 256 * 1024), None)
        big = storage.attach(storage.create_volume("n1", POOL, "big", 0, 2 * 1024 * 1024), None)
        assert storage.mkfs_time_limit(small) == pytest.approx(11.0)
        assert storage.mkfs_time_limit(big) == pytest.approx(18.0)
    finally:
        detach_loops_under(tmp_path, "*.img")


def test_an_mkfs_that_spins_is_stopped_at_its_time_limit(root_loop: None, tmp_path: Path) -> None:
    storage = Storage(tmp_path / "state", tmp_path / "dev", mkfs_min_seconds=1, mkfs_seconds_per_gib=0)
    backing = storage.create_volume("n1", POOL, "spin", 0, 16 * 1024)
    try:
        device = storage.attach(backing, None)
        with pytest.raises(StorageError, match="did not finish within 1s"):
            storage.mkfs_if_blank(device, "ext4", "-E offset=99999999999")
        # The killed mkfs no longer holds the device: it can be released at once.
        storage.detach(backing, None)
        assert loop_devices_of(backing) == []
    finally:
        for loop in loop_devices_of(backing):
            subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)


# ---------------------------------------------------------------------------------- start-up sweep


def test_sweep_removes_what_the_state_does_not_name_and_keeps_the_rest(
    root_loop: None, storage: Storage, tmp_path: Path
) -> None:
    kept = storage.create_volume("n1", POOL, "kept", 0, 4 * 1024)
    orphan = storage.create_volume("n1", POOL, "orphan", 0, 4 * 1024)
    kept_dev = storage.attach(kept, 1000)
    storage.attach(orphan, 1001)
    orphan_loops = loop_devices_of(orphan)
    partial = kept.parent / ".kept_00000_snap.img.partial"
    partial.write_bytes(b"half")
    other = kept.parent / "notes.txt"  # not a file this class makes
    other.write_text("keep me")
    foreign = tmp_path / "dev" / "drbd1999"
    foreign.write_text("a regular file is never a node of ours")

    removed = storage.sweep({str(kept)}, {1000})

    assert not orphan.exists() and not partial.exists()
    assert all(not Path(f"/sys/block/{Path(loop).name}/loop/backing_file").exists() for loop in orphan_loops)
    assert not (tmp_path / "dev" / "drbd1001").exists()
    assert kept.exists() and loop_devices_of(kept) and Path(kept_dev).exists()
    assert other.exists() and foreign.exists()
    assert any(str(orphan) in item for item in removed)


def test_sweep_keeps_the_loops_of_known_volumes_when_the_pools_are_reached_through_a_symlink(
    root_loop: None, tmp_path: Path
) -> None:
    """The kernel names a loop's file by its real path; the state names it as it was made."""
    elsewhere = tmp_path / "disk" / "pools"
    elsewhere.mkdir(parents=True)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "pools").symlink_to(elsewhere)
    storage = Storage(tmp_path / "state", tmp_path / "dev")
    try:
        kept = storage.create_volume("n1", POOL, "kept", 0, 4 * 1024)
        orphan = storage.create_volume("n1", POOL, "orphan", 0, 4 * 1024)
        kept_dev = storage.attach(kept, 1000)
        storage.attach(orphan, 1001)
        orphan_loops = loop_devices_of(orphan)
        assert str(kept).startswith(str(tmp_path / "state" / "pools")) and orphan_loops

        removed = storage.sweep({str(kept)}, {1000})

        assert loop_devices_of(kept) and Path(kept_dev).exists() and kept.exists()
        assert not orphan.exists()
        backing_files = [Path(f"/sys/block/{Path(loop).name}/loop/backing_file") for loop in orphan_loops]
        assert not any(path.exists() for path in backing_files)
        assert not any("kept" in item for item in removed), removed
    finally:
        detach_loops_under(tmp_path)


def test_sweep_detaches_a_loop_whose_file_is_already_deleted(root_loop: None, storage: Storage) -> None:
    gone = storage.create_volume("n1", POOL, "gone", 0, 4 * 1024)
    storage.attach(gone, None)
    loop = loop_devices_of(gone)[0]
    gone.unlink()
    storage.sweep(set(), set())
    backing = Path(f"/sys/block/{Path(loop).name}/loop/backing_file")
    assert not backing.exists() or not backing.read_text().startswith(str(gone))


# ---------------------------------------------------------------------------------- saves and reservations


def test_a_save_holds_back_definitions_still_being_changed(tmp_path: Path) -> None:
    state = st.State()
    state.resource_definitions["OLD"] = st.ResourceDefinition(name="old", props={"v": "1"})
    saver = st.Saver(tmp_path)
    saver.save(state)
    state.resource_definitions["OLD"].props["v"] = "2"
    state.resource_definitions["NEW"] = st.ResourceDefinition(name="new")
    saver.save(state, None, held={"OLD", "NEW"})
    saved = st.load(tmp_path)
    assert saved is not None
    assert saved.resource_definitions["OLD"].props == {"v": "1"}
    assert "NEW" not in saved.resource_definitions
    del state.resource_definitions["OLD"]  # deleted by a request that has not finished
    saver.save(state, None, held={"OLD"})
    saved = st.load(tmp_path)
    assert saved is not None and "OLD" in saved.resource_definitions
    saver.save(state, {"OLD", "NEW"})
    saved = st.load(tmp_path)
    assert saved is not None and set(saved.resource_definitions) == {"NEW"}


def test_temp_files_of_an_interrupted_save_are_removed(tmp_path: Path) -> None:
    st.save(st.State(), tmp_path)
    (tmp_path / ".state-abc123").write_text('{"half')
    assert st.remove_temp_files(tmp_path) == [tmp_path / ".state-abc123"]
    assert st.load(tmp_path) is not None


def test_a_second_change_of_a_reserved_definition_waits_and_others_do_not() -> None:
    lock = threading.RLock()
    res = Reservations(lock)
    events: list[str] = []
    inside = threading.Event()
    proceed = threading.Event()

    def first() -> None:
        with lock:
            res.acquire({"A"}, list)
            try:
                res.outside_lock(lambda: (inside.set(), proceed.wait(10)))
                events.append("first done")
            finally:
                res.release()

    def second(key: str) -> None:
        with lock:
            res.acquire({key}, list)
            events.append(f"{key} ran")
            res.release()

    t1 = threading.Thread(target=first)
    t1.start()
    assert inside.wait(10)
    # The lock is free while the first request runs its host work: another definition goes ahead.
    other = threading.Thread(target=second, args=("B",))
    other.start()
    other.join(10)
    assert events == ["B ran"]
    same = threading.Thread(target=second, args=("A",))
    same.start()
    with lock:
        assert res.held() == {"A"}  # the second change of A is still waiting
    proceed.set()
    t1.join(10)
    same.join(10)
    assert events == ["B ran", "first done", "A ran"]
    with lock:
        assert res.held() == set()


def test_without_a_reservation_host_work_keeps_the_lock() -> None:
    lock = threading.RLock()
    res = Reservations(lock)
    with lock:
        owned = res.outside_lock(lambda: lock._is_owned())  # type: ignore[attr-defined]
    assert owned is True


def test_make_writable_refuses_a_missing_device(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open"):
        blockdev.make_writable(str(tmp_path / "nothing"))


def _journal(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob(st.JOURNAL_PREFIX + "*"))


def test_a_save_appends_what_changed_and_a_load_replays_it(tmp_path: Path) -> None:
    state = st.State()
    for name in ("a1", "b2", "c3"):
        state.resource_definitions[name.upper()] = st.ResourceDefinition(name=name, props={"v": "1"})
    saver = st.Saver(tmp_path)
    saver.save(state)  # the first save of a process writes the whole state
    snapshot = (tmp_path / st.STATE_FILE).read_bytes()
    state.resource_definitions["A1"].props["v"] = "2"
    saver.save(state, {"A1"})
    del state.resource_definitions["B2"]
    state.resource_definitions["D4"] = st.ResourceDefinition(name="d4")
    state.cluster_id = "cluster-1"
    saver.save(state, {"B2", "D4"})
    assert (tmp_path / st.STATE_FILE).read_bytes() == snapshot  # untouched: two journal lines
    [journal] = _journal(tmp_path)
    lines = journal.read_text().splitlines()
    assert len(lines) == 2 and '"B2"' not in lines[0] and '"C3"' not in "".join(lines)
    saved = st.load(tmp_path)
    assert saved is not None and saved.to_json() == state.to_json()
    saver.save(state, set())  # nothing changed: nothing written
    assert len(journal.read_text().splitlines()) == 2


def test_a_torn_last_line_is_not_applied(tmp_path: Path) -> None:
    state = st.State()
    state.resource_definitions["A1"] = st.ResourceDefinition(name="a1", props={"v": "1"})
    saver = st.Saver(tmp_path)
    saver.save(state)
    state.resource_definitions["A1"].props["v"] = "2"
    saver.save(state, {"A1"})
    [journal] = _journal(tmp_path)
    whole = journal.read_bytes()
    state.resource_definitions["A1"].props["v"] = "3"
    saver.save(state, {"A1"})
    journal.write_bytes(journal.read_bytes()[: len(whole) + 20])  # a crash in the middle of the write
    saved = st.load(tmp_path)
    assert saved is not None and saved.resource_definitions["A1"].props == {"v": "2"}


def test_the_journal_is_folded_into_a_new_snapshot_once_it_is_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(st, "JOURNAL_MIN_BYTES", 200)
    state = st.State()
    saver = st.Saver(tmp_path)
    saver.save(state)
    state.cluster_id = "cluster-1"
    saver.save(state, set())
    [first] = _journal(tmp_path)
    for i in range(40):
        state.resource_definitions[f"R{i}"] = st.ResourceDefinition(name=f"r{i}", props={"i": str(i)})
        saver.save(state, {f"R{i}"})
    journals = _journal(tmp_path)
    assert len(journals) <= 1 and first not in journals  # the old journal went with its snapshot
    assert json.loads((tmp_path / st.STATE_FILE).read_text())["resource_definitions"]  # folded in
    saved = st.load(tmp_path)
    assert saved is not None and saved.to_json() == state.to_json()


def test_a_missing_state_file_is_written_whole_again(tmp_path: Path) -> None:
    state = st.State()
    saver = st.Saver(tmp_path)
    saver.save(state)
    (tmp_path / st.STATE_FILE).unlink()
    state.resource_definitions["A1"] = st.ResourceDefinition(name="a1")
    saver.save(state, {"A1"})
    saved = st.load(tmp_path)
    assert saved is not None and set(saved.resource_definitions) == {"A1"}
