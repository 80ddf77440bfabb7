"""The mount-namespace scan behind stale-count recovery, and the records it works on.

The scan is run here against small /proc-shaped trees (mountinfo lines as the kernel
writes them, one file standing for each namespace link); the real /proc is used by
tests/integration/test_docker_recovery.py.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from docker_plugin import recovery
from docker_plugin.recovery import MountUse, scan_mount_use, sees_all_processes
from docker_plugin.refcounts import MountRecord, MountStore

STAGING = "/var/lib/docker-volumes/linstor/vol1"
HOST = [
    "22 1 0:21 / /proc rw - proc proc rw",
    f"90 22 7:3 / {STAGING} rw,relatime - ext4 /dev/loop3 rw",
]


def _proc(tmp_path: Path, namespaces: dict[str, list[str]], pids: dict[str, str], nspid: str = "1234") -> str:
    """A fake /proc: ``namespaces`` maps a namespace name to its mountinfo, ``pids`` a pid to one."""
    proc = tmp_path / "proc"
    links = tmp_path / "ns"
    links.mkdir(parents=True)
    for name in namespaces:
        (links / name).write_text(name)  # one inode per namespace, as ns/mnt links have
    for pid, name in {"self": "host", **pids}.items():
        d = proc / pid
        (d / "ns").mkdir(parents=True)
        os.link(links / name, d / "ns" / "mnt")
        (d / "mountinfo").write_text("\n".join(namespaces[name]) + "\n")
        (d / "status").write_text(f"Name:\tx\nNSpid:\t{nspid}\n")
    return str(proc)


def _record(path: str = STAGING) -> MountRecord:
    return MountRecord(resource="vol1", name="v", path=path)


def test_a_bind_of_data_in_any_namespace_is_a_use(tmp_path: Path) -> None:
    container = ["300 1 7:3 /data /vol rw - ext4 /dev/loop3 rw"]
    proc = _proc(tmp_path, {"host": HOST, "ctr": container}, {"1": "host", "7": "ctr", "8": "ctr"})
    use = scan_mount_use(proc)
    assert use is not None and use.namespaces == 2  # pids 7 and 8 share one namespace: read once
    assert use.used_by_container(STAGING)


def test_a_subpath_bind_is_a_use_but_a_copy_of_the_staging_mount_is_not(tmp_path: Path) -> None:
    subpath = ["300 1 7:3 /data/sub\\040dir /vol rw - ext4 /dev/loop3 rw"]
    proc = _proc(tmp_path, {"host": HOST, "ctr": subpath}, {"1": "host", "7": "ctr"})
    assert scan_mount_use(proc).used_by_container(STAGING)  # type: ignore[union-attr]

    # a namespace made after staging (a service with PrivateTmp, say) copies the staging mount
    copy = [
        f"301 1 7:3 / {STAGING} rw - ext4 /dev/loop3 rw",
        "302 1 7:3 /database /x rw - ext4 /dev/loop3 rw",
    ]
    proc = _proc(tmp_path / "b", {"host": HOST, "svc": copy}, {"1": "host", "9": "svc"})
    assert not scan_mount_use(proc).used_by_container(STAGING)  # type: ignore[union-attr]


def test_another_filesystem_s_data_is_not_a_use(tmp_path: Path) -> None:
    other = ["300 1 7:4 /data /vol rw - ext4 /dev/loop4 rw"]
    proc = _proc(tmp_path, {"host": HOST, "ctr": other}, {"1": "host", "7": "ctr"})
    assert not scan_mount_use(proc).used_by_container(STAGING)  # type: ignore[union-attr]


def test_an_unmounted_staging_path_counts_as_used() -> None:
    use = MountUse(own=[], roots={}, namespaces=1)
    assert use.used_by_container(STAGING)  # nothing is released on a guess


def test_no_answer_from_a_private_pid_namespace(tmp_path: Path) -> None:
    proc = _proc(tmp_path, {"host": HOST}, {"1": "host"}, nspid="4321\t1")
    assert not sees_all_processes(proc)
    assert scan_mount_use(proc) is None


def test_no_answer_when_a_namespace_cannot_be_read(tmp_path: Path) -> None:
    proc = _proc(
        tmp_path, {"host": HOST, "ctr": ["300 1 7:3 /data /vol rw - ext4 /dev/loop3 rw"]}, {"7": "ctr"}
    )
    (Path(proc) / "7" / "mountinfo").unlink()
    (Path(proc) / "7" / "mountinfo").mkdir()  # reading it fails, and not because pid 7 exited
    assert scan_mount_use(proc) is None


def test_exited_processes_are_skipped(tmp_path: Path) -> None:
    proc = _proc(tmp_path, {"host": HOST}, {"1": "host"})
    (Path(proc) / "55").mkdir()  # listed, but gone before its namespace was looked at
    use = scan_mount_use(proc)
    assert use is not None and not use.used_by_container(STAGING)


def test_records_keep_their_mount_time_and_pending_detach(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = MountStore(path)
    seed = MountRecord(resource="vol1", name="v", path="/mnt/vol1", attached=True)
    acquired = store.acquire(seed, "X").acquired_at
    store.acquire(seed, "X")
    assert acquired > 0
    assert store.drop_holders("vol1") == {"X": 2}
    assert store.drop_holders("other") == {}
    store.acquire(seed, "Y")
    assert store.drop_holders("vol1", detach_pending=True) == {"Y": 1}
    again = MountStore(path).get("vol1")
    assert again is not None and again.detach_pending and again.holders == {} and again.attached
    assert again.acquired_at >= acquired
    store.acquire(seed, "Z")  # mounted again: no longer pending
    assert MountStore(path).get("vol1").detach_pending is False  # type: ignore[union-attr]


def test_state_files_without_the_new_fields_still_load(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    old = {"resource": "vol1", "name": "v", "path": "/mnt/vol1", "attached": True, "holders": {"A": 1}}
    path.write_text(json.dumps({"version": 1, "volumes": [old]}))
    record = MountStore(path).get("vol1")
    assert record is not None and record.acquired_at == 0.0 and record.detach_pending is False


def test_reconcile_keeps_an_attached_volume_whose_mount_is_gone_as_a_pending_detach(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = MountStore(path)
    store.acquire(MountRecord(resource="att", name="a", path="/mnt/att", attached=True), "A")
    store.acquire(MountRecord(resource="own", name="o", path="/mnt/own"), "B")
    gone = MountStore(path).reconcile(lambda p: False)
    assert sorted(r.resource for r in gone) == ["att", "own"]
    records = {r.resource: r for r in MountStore(path).records()}
    assert list(records) == ["att"]  # the one our attach made waits for its detach
    assert records["att"].detach_pending and records["att"].holders == {}


def test_a_process_exiting_during_the_scan_is_skipped(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    proc = _proc(
        tmp_path, {"host": HOST, "ctr": ["300 1 7:3 /data /vol rw - ext4 /dev/loop3 rw"]}, {"7": "ctr"}
    )
    real = recovery._read_mount_roots

    def exiting(path: str, into: dict) -> None:  # type: ignore[type-arg]
        if "/7/" in path:  # the kernel answers EINVAL for a task that has left its namespaces
            raise OSError(errno.EINVAL, "Invalid argument")
        real(path, into)

    monkeypatch.setattr(recovery, "_read_mount_roots", exiting)
    use = scan_mount_use(proc)
    assert use is not None and not use.used_by_container(STAGING)
