"""Mount counts per (volume, ID): multiset semantics, atomic persistence, reconciliation."""

from __future__ import annotations

import json
from pathlib import Path

from docker_plugin.refcounts import ADOPTED_HOLDER, MountRecord, MountStore


def _seed(resource: str = "vol1", attached: bool = False) -> MountRecord:
    return MountRecord(
        resource=resource, name=f"docker-{resource}", path=f"/mnt/{resource}", attached=attached
    )


def test_same_id_counts_twice_and_needs_two_unmounts(tmp_path: Path) -> None:
    store = MountStore(tmp_path / "state.json")
    store.acquire(_seed(), "A")
    store.acquire(_seed(), "A")  # docker cp on a running container reuses the ID
    store.acquire(_seed(), "B")
    assert store.get("vol1").total == 3  # type: ignore[union-attr]
    assert store.release("vol1", "A").total == 2  # type: ignore[union-attr]
    assert store.release("vol1", "B").total == 1  # type: ignore[union-attr]
    assert store.release("vol1", "A").total == 0  # type: ignore[union-attr]
    assert store.mounted_count() == 0


def test_unknown_id_and_unknown_volume_change_nothing(tmp_path: Path) -> None:
    store = MountStore(tmp_path / "state.json")
    store.acquire(_seed(), "A")
    assert store.release("vol1", "never-seen").holders == {"A": 1}  # type: ignore[union-attr]
    assert store.release("other", "A") is None


def test_counts_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    store = MountStore(path)
    store.acquire(_seed(attached=True), "A")
    store.acquire(_seed(), "A")
    store.acquire(_seed("vol2"), "C")
    again = MountStore(path)
    record = again.get("vol1")
    assert record is not None
    assert record.holders == {"A": 2}
    assert record.attached is True  # a later acquire without attach keeps the flag
    assert record.name == "docker-vol1"
    assert again.get("vol2").holders == {"C": 1}  # type: ignore[union-attr]
    # written atomically: only the state file, no temp files left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]
    assert json.loads(path.read_text())["version"] == 1


def test_forget_removes_the_record_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = MountStore(path)
    store.acquire(_seed(), "A")
    store.forget("vol1")
    assert MountStore(path).get("vol1") is None


def test_corrupt_state_file_is_ignored_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    store = MountStore(path)
    assert store.records() == []
    store.acquire(_seed(), "A")  # and it is rewritten cleanly
    assert MountStore(path).get("vol1").holders == {"A": 1}  # type: ignore[union-attr]


def test_reconcile_drops_records_whose_mount_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = MountStore(path)
    store.acquire(_seed("kept"), "A")
    store.acquire(_seed("gone"), "B")
    restarted = MountStore(path)
    dropped = restarted.reconcile(lambda p: p == "/mnt/kept")
    assert [r.resource for r in dropped] == ["gone"]  # its volume may still be attached
    assert [r.resource for r in restarted.records()] == ["kept"]
    assert MountStore(path).get("gone") is None


def test_reconcile_adopts_an_unrecorded_mount_released_by_any_unknown_id(tmp_path: Path) -> None:
    store = MountStore(tmp_path / "state.json")
    store.reconcile(lambda p: True, [MountRecord(resource="orphan", name="orphan", path="/mnt/orphan")])
    record = store.get("orphan")
    assert record is not None and record.holders == {ADOPTED_HOLDER: 1}
    assert record.acquired_at > 0  # its age is unknown: it gets a fresh mount's grace
    store.acquire(MountRecord(resource="orphan", name="my volume", path="/mnt/orphan"), "NEW")
    assert store.get("orphan").name == "my volume"  # type: ignore[union-attr]
    # an Unmount from before the restart (unknown ID) releases the adopted holder only
    assert store.release("orphan", "OLD").holders == {"NEW": 1}  # type: ignore[union-attr]
    assert store.release("orphan", "OLD2").holders == {"NEW": 1}  # type: ignore[union-attr]
    assert store.release("orphan", "NEW").total == 0  # type: ignore[union-attr]
