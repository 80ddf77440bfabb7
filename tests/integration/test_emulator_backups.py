"""The emulator's remotes and backups against real servers: moto in server mode and a second emulator.

Data goes in and comes out through the volumes' block devices; the S3 objects are read with
a separate client; nothing inside the emulator is mocked. A pausable TCP proxy between the
emulator and the S3 server holds a shipment in the middle where a test needs one in progress.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import linstor
import pytest
import requests

from testkit.emulator import EmulatorProcess
from testkit.s3server import ACCESS_KEY, SECRET_KEY, S3Server
from testkit.tcpproxy import TcpProxy
from testkit.waiting import wait_until
from tests.blockio import read_at, write_at

SIZE_KIB = 16 * 1024
MIB = 1024 * 1024
MASK_ERROR = 0xC000000000000000
MASK_BACKUP = 0x80000
STATUS = "BackupShipping/Source/{}/ShippingStatus"


# ---------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


_bucket_no = iter(range(10_000))


@pytest.fixture
def bucket(s3: S3Server) -> str:
    name = f"bucket-{os.getpid()}-{next(_bucket_no)}"
    s3.make_bucket(name)
    return name


@pytest.fixture
def emu(root_loop: None, emulator_factory: Callable[..., EmulatorProcess]) -> EmulatorProcess:
    return emulator_factory()


def code(entry: dict[str, Any]) -> int:
    return int(entry["ret_code"]) & 0x7FFF


def is_error(entry: dict[str, Any]) -> bool:
    return (int(entry["ret_code"]) & MASK_ERROR) == MASK_ERROR or int(entry["ret_code"]) < 0


def post(emu: EmulatorProcess, path: str, body: Any = None, ok: bool = True) -> requests.Response:
    answer = requests.post(emu.url + path, json=body, timeout=120)
    if ok:
        assert answer.status_code in (200, 201), answer.text
        data = answer.json()
        assert not isinstance(data, list) or not any(is_error(e) for e in data), answer.text
    return answer


def get(emu: EmulatorProcess, path: str, **params: Any) -> Any:
    answer = requests.get(emu.url + path, params=params, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def local_node(emu: EmulatorProcess) -> str:
    return get(emu, "/v1/nodes")[0]["name"]


def make_volume(emu: EmulatorProcess, name: str, size_kib: int = SIZE_KIB) -> str:
    """A resource definition with one volume on the local node; its device path."""
    post(emu, "/v1/resource-definitions", {"resource_definition": {"name": name}})
    post(
        emu,
        f"/v1/resource-definitions/{name}/volume-definitions",
        {"volume_definition": {"size_kib": size_kib}},
    )
    post(emu, f"/v1/resource-definitions/{name}/resources", [{"resource": {"node_name": local_node(emu)}}])
    return device(emu, name)


def restore_into(emu: EmulatorProcess, rd: str, snap: str, new: str) -> str:
    """Restore snapshot ``snap`` of ``rd`` into a new resource definition ``new``; its device path."""
    post(emu, "/v1/resource-definitions", {"resource_definition": {"name": new}})
    body = {"to_resource": new}
    post(emu, f"/v1/resource-definitions/{rd}/snapshot-restore-volume-definition/{snap}", body)
    post(emu, f"/v1/resource-definitions/{rd}/snapshot-restore-resource/{snap}", body)
    return device(emu, new)


def device(emu: EmulatorProcess, rsc: str) -> str:
    resources = get(emu, "/v1/view/resources", resources=rsc)
    assert resources, f"no resource {rsc}"
    return resources[0]["volumes"][0]["device_path"]


def snapshot(emu: EmulatorProcess, rsc: str, snap: str) -> dict[str, Any]:
    return get(emu, f"/v1/resource-definitions/{rsc}/snapshots/{snap}")


def wait_for(what: Callable[[], Any], timeout: float = 60.0, message: str = "the condition") -> Any:
    return wait_until(what, timeout=timeout, interval=0.1, what=message)


def shipped(emu: EmulatorProcess, rsc: str, snap: str, remote: str) -> str:
    """Wait until the shipment has ended; its final status."""

    def status() -> str:
        s = snapshot(emu, rsc, snap)
        value = s.get("snapshot_definition_props", {}).get(STATUS.format(remote), "")
        return value if value and value != "Shipping" else ""

    return wait_for(status, message=f"shipment of {rsc}/{snap}")


def create_s3_remote(emu: EmulatorProcess, s3: S3Server, name: str, bucket: str, **over: Any) -> None:
    post(emu, "/v1/remotes/s3", s3.remote_body(name, bucket, **over))


def backups(emu: EmulatorProcess, remote: str, **params: Any) -> dict[str, Any]:
    return get(emu, f"/v1/remotes/{remote}/backups", **params)


def restored_bytes(emu: EmulatorProcess, rsc: str, length: int) -> bytes:
    """The first bytes of a restored volume, once its resource and device are there."""

    def ready() -> str:
        found = get(emu, "/v1/view/resources", resources=rsc)
        path = found[0]["volumes"][0].get("device_path", "") if found and found[0].get("volumes") else ""
        return path if path and os.path.exists(path) else ""

    return read_at(wait_for(ready, message=f"restored {rsc}"), 0, length)


def object_keys(s3: S3Server, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", []))


# ---------------------------------------------------------------------- remotes


def test_remotes_keep_keys_but_never_show_them(emu: EmulatorProcess, s3: S3Server, bucket: str) -> None:
    create_s3_remote(emu, s3, "s3-one", bucket)
    post(emu, "/v1/remotes/linstor", {"remote_name": "other-cluster", "url": "127.0.0.1"})
    listing = get(emu, "/v1/remotes")
    assert listing["s3_remotes"] == [
        {
            "remote_name": "s3-one",
            "endpoint": s3.endpoint,
            "bucket": bucket,
            "region": "us-east-1",
            "use_path_style": True,
        }
    ]
    assert listing["linstor_remotes"] == [{"remote_name": "other-cluster", "url": "http://127.0.0.1:3370"}]
    assert listing["ebs_remotes"] == []
    assert get(emu, "/v1/remotes/s3") == listing["s3_remotes"]
    assert get(emu, "/v1/remotes/linstor") == listing["linstor_remotes"]
    # Modify checks the new keys against the server before keeping them.
    answer = requests.put(emu.url + "/v1/remotes/s3/s3-one", json={"region": "eu-west-1"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert get(emu, "/v1/remotes/s3")[0]["region"] == "eu-west-1"
    text = json.dumps(get(emu, "/v1/remotes")) + json.dumps(get(emu, "/_emu/state"))
    text += emu.log_path.read_text()  # type: ignore[union-attr]
    assert ACCESS_KEY not in text and SECRET_KEY not in text
    # A second remote with the name, a missing parameter, a bad cluster id: refused, nothing kept.
    dup = post(emu, "/v1/remotes/s3", s3.remote_body("S3-ONE", bucket), ok=False)
    assert dup.status_code == 500 and code(dup.json()[0]) == 527
    missing = post(emu, "/v1/remotes/s3", {"remote_name": "x1", "bucket": bucket}, ok=False)
    assert code(missing.json()[0]) == 238 and "endpoint" in missing.json()[0]["message"]
    bad_id = post(
        emu, "/v1/remotes/linstor", {"remote_name": "l2", "url": "h", "cluster_id": "nope"}, ok=False
    )
    assert code(bad_id.json()[0]) == 230
    wrong_type = requests.put(emu.url + "/v1/remotes/linstor/s3-one", json={"url": "h"}, timeout=30)
    assert wrong_type.status_code == 500 and "not a linstor remote" in wrong_type.json()[0]["message"]
    assert len(get(emu, "/v1/remotes")["s3_remotes"]) == 1
    deleted = requests.delete(emu.url + "/v1/remotes", params={"remote_name": "other-cluster"}, timeout=30)
    assert deleted.status_code == 200 and code(deleted.json()[0]) == 2
    again = requests.delete(emu.url + "/v1/remotes", params={"remote_name": "other-cluster"}, timeout=30)
    assert code(again.json()[0]) == 3000
    assert get(emu, "/v1/remotes")["linstor_remotes"] == []


def test_bad_remotes_are_refused_with_the_controllers_error(
    emu: EmulatorProcess, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    cases = {
        "unreachable": s3.remote_body("r-down", bucket, endpoint="http://127.0.0.1:9"),
        "missing bucket": s3.remote_body("r-nob", "no-such-bucket-here"),
    }
    for what, body in cases.items():
        answer = post(emu, "/v1/remotes/s3", body, ok=False)
        entry = answer.json()[0]
        assert answer.status_code == 500, what
        assert code(entry) == 998 and int(entry["ret_code"]) & MASK_BACKUP, (what, entry)
        assert "could not be reached" in entry["message"]
        assert ("does not exist" if what == "missing bucket" else "could not be reached") in entry["cause"]
    with S3Server(tmp_path / "auth") as strict:
        strict.make_bucket("strict-bucket")
        strict.enable_auth()
        answer = post(emu, "/v1/remotes/s3", strict.remote_body("r-keys", "strict-bucket"), ok=False)
        entry = answer.json()[0]
        assert code(entry) == 998 and "refused the access key or secret key" in entry["cause"], entry
        assert SECRET_KEY not in answer.text
    assert get(emu, "/v1/remotes")["s3_remotes"] == []


def test_shipment_to_a_remote_gone_bad_ends_failed(
    emu: EmulatorProcess, s3: S3Server, bucket: str, held_s3: TcpProxy
) -> None:
    dev = make_volume(emu, "vol-bad")
    write_at(dev, 0, os.urandom(MIB))
    # The bucket goes away after the remote was made.
    create_s3_remote(emu, s3, "gone", bucket)
    s3.client().delete_bucket(Bucket=bucket)
    post(emu, "/v1/remotes/gone/backups", {"rsc_name": "vol-bad", "snap_name": "s1"})
    assert shipped(emu, "vol-bad", "s1", "gone") == "Failed"
    snap = snapshot(emu, "vol-bad", "s1")
    assert "SHIPPING" not in snap["flags"] and "SHIPPED" not in snap["flags"]
    listing = requests.get(emu.url + "/v1/remotes/gone/backups", timeout=60)
    assert listing.status_code == 500 and "does not exist" in listing.json()[0]["message"]
    # The endpoint stops answering after the remote was made.
    s3.make_bucket(bucket)
    create_s3_remote(emu, s3, "down", bucket, endpoint=held_s3.endpoint)
    held_s3.close()
    post(emu, "/v1/remotes/down/backups", {"rsc_name": "vol-bad", "snap_name": "s2"})
    assert shipped(emu, "vol-bad", "s2", "down") == "Failed"
    info = post(emu, "/v1/remotes/down/backups/info", {"src_rsc_name": "vol-bad"}, ok=False)
    assert info.status_code == 500 and "could not be reached" in info.json()[0]["message"]


# ---------------------------------------------------------------------- S3 shipping and restore


def test_full_and_incremental_backups_restore_at_each_point(
    emu: EmulatorProcess, s3: S3Server, bucket: str
) -> None:
    dev = make_volume(emu, "vol-chain")
    create_s3_remote(emu, s3, "s3r", bucket)
    expected: dict[str, bytes] = {}
    for i, snap in enumerate(("s1", "s2", "s3")):
        write_at(dev, i * 4 * MIB, os.urandom(2 * MIB))
        expected[snap] = read_at(dev, 0, SIZE_KIB * 1024)
        post(
            emu, "/v1/remotes/s3r/backups", {"rsc_name": "vol-chain", "snap_name": snap, "incremental": True}
        )
        assert shipped(emu, "vol-chain", snap, "s3r") == "Success"
        flags = snapshot(emu, "vol-chain", snap)["flags"]
        assert "SHIPPED" in flags and "BACKUP" in flags and "SHIPPING" not in flags
    listing = backups(emu, "s3r")
    by_snap = {b["origin_snap"]: b for b in listing["linstor"].values()}
    assert sorted(by_snap) == ["s1", "s2", "s3"]
    assert listing.get("other", {}).get("files", []) == []
    assert "based_on_id" not in by_snap["s1"]
    assert by_snap["s2"]["based_on_id"] == by_snap["s1"]["s3"]["meta_name"]
    assert by_snap["s3"]["based_on_id"] == by_snap["s2"]["s3"]["meta_name"]
    for b in by_snap.values():
        assert b["success"] is True and b["shipping"] is False and b["restorable"] is True
        assert re.fullmatch(r"vol-chain_back_\d{8}_\d{6}\^s\d", b["id"]), b["id"]
        assert b["vlms"][0]["s3"]["key"] == b["id"].replace("vol-chain_", "vol-chain_00000_", 1)
    keys = object_keys(s3, bucket)
    assert sorted(keys) == sorted(
        [b["s3"]["meta_name"] for b in by_snap.values()]
        + [b["vlms"][0]["s3"]["key"] for b in by_snap.values()]
    )
    sizes = {o["Key"]: o["Size"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
    full, inc = sizes[by_snap["s1"]["vlms"][0]["s3"]["key"]], sizes[by_snap["s2"]["vlms"][0]["s3"]["key"]]
    assert inc < full * 1.5 and inc < 3 * MIB, (full, inc)  # s2 carries only its own 2 MiB
    info = post(emu, "/v1/remotes/s3r/backups/info", {"last_backup": by_snap["s3"]["id"]}).json()
    assert (
        info["full"] == by_snap["s1"]["id"] and info["latest"] == by_snap["s3"]["id"] and info["count"] == 3
    )
    assert info["alloc_size_kib"] == SIZE_KIB
    node = local_node(emu)
    for snap, b in by_snap.items():
        target = f"back-{snap}"
        post(
            emu,
            "/v1/remotes/s3r/backups/restore",
            {"last_backup": b["id"], "target_rsc_name": target, "node_name": node},
        )
        assert restored_bytes(emu, target, SIZE_KIB * 1024) == expected[snap], snap
        restored = wait_for(
            lambda t=target, s=snap: "SUCCESSFUL" in snapshot(emu, t, s)["flags"] and snapshot(emu, t, s)
        )
        assert restored["snapshot_definition_props"]["BackupShipping/Target/ShippingStatus"] == "Success"
    missing = post(emu, "/v1/remotes/s3r/backups/info", {"src_rsc_name": "nothing-here"}, ok=False)
    assert missing.status_code == 404 and code(missing.json()[0]) == 322


def test_restore_download_only_then_snapshot_restore(emu: EmulatorProcess, s3: S3Server, bucket: str) -> None:
    dev = make_volume(emu, "vol-dl")
    data = os.urandom(3 * MIB)
    write_at(dev, MIB, data)
    create_s3_remote(emu, s3, "s3d", bucket)
    post(emu, "/v1/remotes/s3d/backups", {"rsc_name": "vol-dl", "snap_name": "snap-a"})
    assert shipped(emu, "vol-dl", "snap-a", "s3d") == "Success"
    # The local data goes away: volume deleted, snapshot deleted.
    requests.delete(
        emu.url + "/v1/resource-definitions/vol-dl/snapshots/snap-a", timeout=60
    ).raise_for_status()
    requests.delete(emu.url + "/v1/resource-definitions/vol-dl", timeout=60).raise_for_status()
    post(
        emu,
        "/v1/remotes/s3d/backups/restore",
        {
            "src_rsc_name": "vol-dl",
            "target_rsc_name": "vol-dl",
            "node_name": local_node(emu),
            "download_only": True,
        },
    )
    wait_for(lambda: "SUCCESSFUL" in snapshot(emu, "vol-dl", "snap-a")["flags"], message="download")
    assert get(emu, "/v1/view/resources", resources="vol-dl") == []
    restored = restore_into(emu, "vol-dl", "snap-a", "vol-new")
    assert read_at(restored, MIB, len(data)) == data


def test_python_linstor_drives_remotes_and_backups(emu: EmulatorProcess, s3: S3Server, bucket: str) -> None:
    dev = make_volume(emu, "vol-py")
    data = os.urandom(MIB)
    write_at(dev, 0, data)
    with linstor.Linstor(emu.url) as lin:
        replies = lin.remote_create_s3(
            "py-remote", s3.endpoint, "us-east-1", bucket, ACCESS_KEY, SECRET_KEY, use_path_style=True
        )
        assert linstor.Linstor.all_api_responses_no_error(replies), [str(r) for r in replies]
        remotes = lin.remote_list()[0]
        assert [r.remote_name for r in remotes.s3_remotes] == ["py-remote"]
        replies = lin.backup_create("py-remote", "vol-py", incremental=False, snap_name="py-snap")
        assert linstor.Linstor.all_api_responses_no_error(replies), [str(r) for r in replies]
        assert shipped(emu, "vol-py", "py-snap", "py-remote") == "Success"
        listed = lin.backup_list("py-remote", resource_name="vol-py")[0]
        assert [(b.origin_snap_name, b.success, b.restorable) for b in listed.linstor] == [
            ("py-snap", True, True)
        ]
        info = lin.backup_info("py-remote", resource_name="vol-py")[0]
        assert info.count == 1 and info.snap == "py-snap"
        replies = lin.backup_restore("py-remote", local_node(emu), "vol-py-back", resource_name="vol-py")
        assert linstor.Linstor.all_api_responses_no_error(replies), [str(r) for r in replies]
        assert restored_bytes(emu, "vol-py-back", MIB) == data
        backup_id = listed.linstor[0].id
        replies = lin.backup_delete("py-remote", bak_id=backup_id, keep_snaps=True)
        assert linstor.Linstor.all_api_responses_no_error(replies), [str(r) for r in replies]
        assert lin.backup_list("py-remote")[0].linstor == []
        replies = lin.remote_delete("py-remote")
        assert linstor.Linstor.all_api_responses_no_error(replies), [str(r) for r in replies]
    assert object_keys(s3, bucket) == []


def test_delete_backups_honours_chains_dryrun_and_snapshots(
    emu: EmulatorProcess, s3: S3Server, bucket: str
) -> None:
    dev = make_volume(emu, "vol-del")
    create_s3_remote(emu, s3, "s3x", bucket)
    for snap in ("d1", "d2"):
        write_at(dev, 0, os.urandom(MIB))
        post(emu, "/v1/remotes/s3x/backups", {"rsc_name": "vol-del", "snap_name": snap, "incremental": True})
        assert shipped(emu, "vol-del", snap, "s3x") == "Success"
    ids = {b["origin_snap"]: b["id"] for b in backups(emu, "s3x")["linstor"].values()}
    before = object_keys(s3, bucket)
    refused = requests.delete(emu.url + "/v1/remotes/s3x/backups", params={"id": ids["d1"]}, timeout=60)
    assert refused.status_code == 500 and code(refused.json()[0]) == 977
    dry = requests.delete(
        emu.url + "/v1/remotes/s3x/backups",
        params={"id": ids["d1"], "cascading": "true", "dryrun": "true"},
        timeout=60,
    )
    assert dry.status_code == 200 and "Would delete s3 objects" in dry.json()[0]["message"]
    assert object_keys(s3, bucket) == before
    done = requests.delete(
        emu.url + "/v1/remotes/s3x/backups", params={"id": ids["d1"], "cascading": "true"}, timeout=60
    )
    assert done.status_code == 200, done.text
    assert object_keys(s3, bucket) == []
    # Without keep_snaps the local snapshots the backups came from go as well, as the controller does.
    assert get(emu, "/v1/resource-definitions/vol-del/snapshots") == []
    nothing = requests.delete(emu.url + "/v1/remotes/s3x/backups", params={"id": ids["d1"]}, timeout=60)
    assert nothing.status_code == 200 and any(code(e) == 3000 for e in nothing.json())


# ---------------------------------------------------------------------- in progress: views, abort, restart


@pytest.fixture
def held_s3(s3: S3Server) -> Iterator[TcpProxy]:
    proxy = TcpProxy(s3.port)
    yield proxy
    proxy.close()


def _start_held_shipment(emu: EmulatorProcess, s3: S3Server, bucket: str, proxy: TcpProxy, rsc: str) -> None:
    dev = make_volume(emu, rsc)
    write_at(dev, 0, os.urandom(4 * MIB))
    create_s3_remote(emu, s3, "held", bucket, endpoint=proxy.endpoint)
    proxy.pause()
    post(emu, "/v1/remotes/held/backups", {"rsc_name": rsc, "snap_name": "s1"})


def test_views_show_a_shipment_in_progress_and_abort_ends_it(
    emu: EmulatorProcess, s3: S3Server, bucket: str, held_s3: TcpProxy
) -> None:
    _start_held_shipment(emu, s3, bucket, held_s3, "vol-held")
    snap = snapshot(emu, "vol-held", "s1")
    assert "SHIPPING" in snap["flags"] and "BACKUP" in snap["flags"]
    assert snap["snapshot_definition_props"][STATUS.format("held")] == "Shipping"
    in_view = [s for s in get(emu, "/v1/view/snapshots") if s["name"] == "s1"]
    assert in_view and "SHIPPING" in in_view[0]["flags"]
    busy = requests.delete(emu.url + "/v1/resource-definitions/vol-held/snapshots/s1", timeout=30)
    assert busy.status_code == 500 and code(busy.json()[0]) == 997
    dup = post(emu, "/v1/remotes/held/backups", {"rsc_name": "vol-held", "snap_name": "s1"}, ok=False)
    assert code(dup.json()[0]) == 997
    post(emu, "/v1/remotes/held/backups/abort", {"rsc_name": "vol-held", "create": True})
    # A remote with a shipment in progress is only marked; it goes when the shipment has ended.
    marked = requests.delete(emu.url + "/v1/remotes", params={"remote_name": "held"}, timeout=30)
    assert marked.status_code == 200 and "prepared for deletion" in marked.json()[0]["message"]
    refused = post(emu, "/v1/remotes/held/backups", {"rsc_name": "vol-held", "snap_name": "s9"}, ok=False)
    assert code(refused.json()[0]) == 321
    held_s3.resume()
    assert shipped(emu, "vol-held", "s1", "held") == "Aborted"
    assert "SHIPPING" not in snapshot(emu, "vol-held", "s1")["flags"]
    assert object_keys(s3, bucket) == []
    wait_for(lambda: get(emu, "/v1/remotes")["s3_remotes"] == [], message="marked remote deleted")


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_restart_during_shipping_neither_loses_nor_duplicates(
    emu: EmulatorProcess, s3: S3Server, bucket: str, held_s3: TcpProxy, how: str
) -> None:
    _start_held_shipment(emu, s3, bucket, held_s3, "vol-rst")
    in_progress = snapshot(emu, "vol-rst", "s1")
    assert in_progress["snapshot_definition_props"][STATUS.format("held")] == "Shipping"
    assert emu.proc is not None
    if how == "sigkill":
        emu.proc.kill()
        emu.proc.wait()
        emu.proc = None
    else:
        emu.stop()
    held_s3.cut()  # what the stopped process had in flight never arrives
    held_s3.resume()
    emu.start()
    # The controller ends a shipment its satellite lost as aborted; nothing half-written stays.
    assert shipped(emu, "vol-rst", "s1", "held") == "Aborted"
    wait_for(lambda: object_keys(s3, bucket) == [], message="partial objects removed")
    assert backups(emu, "held").get("linstor", {}) == {}
    # Shipping the snapshot again makes exactly one backup.
    post(emu, "/v1/remotes/held/backups", {"rsc_name": "vol-rst", "snap_name": "s1"})
    assert shipped(emu, "vol-rst", "s1", "held") == "Success"
    listing = backups(emu, "held")["linstor"]
    assert [(b["origin_snap"], b["success"]) for b in listing.values()] == [("s1", True)]
    assert len(object_keys(s3, bucket)) == 2


# ---------------------------------------------------------------------- LINSTOR to LINSTOR


def test_linstor_to_linstor_full_incremental_and_restore(
    root_loop: None, emulator_factory: Callable[..., EmulatorProcess]
) -> None:
    src = emulator_factory(name="src")
    dst = emulator_factory(name="dst")
    src_id = get(src, "/v1/controller/properties")["Cluster/LocalID"]
    dst_id = get(dst, "/v1/controller/properties")["Cluster/LocalID"]
    post(src, "/v1/remotes/linstor", {"remote_name": "dr", "url": dst.url, "cluster_id": dst_id})
    dev = make_volume(src, "vol-l2l")
    write_at(dev, 0, os.urandom(2 * MIB))
    ship = {"src_rsc_name": "vol-l2l", "dst_rsc_name": "backup-vol-l2l", "download_only": True}
    # The target only accepts clusters it knows as a LINSTOR remote.
    refused = post(src, "/v1/remotes/dr/backups/ship", ship, ok=False)
    assert refused.status_code == 500 and code(refused.json()[0]) == 976
    assert get(src, "/v1/resource-definitions/vol-l2l/snapshots") == []
    post(dst, "/v1/remotes/linstor", {"remote_name": "prod", "url": src.url, "cluster_id": src_id})
    first = post(src, "/v1/remotes/dr/backups/ship", {**ship, "src_snap_name": "l1"}).json()
    assert first[-1]["obj_refs"]["SnapshotName"] == "l1"
    assert shipped(src, "vol-l2l", "l1", "dr") == "Success"
    write_at(dev, 8 * MIB, os.urandom(MIB))
    expected = read_at(dev, 0, SIZE_KIB * 1024)
    post(src, "/v1/remotes/dr/backups/ship", {**ship, "src_snap_name": "l2"})
    assert shipped(src, "vol-l2l", "l2", "dr") == "Success"
    assert (
        snapshot(src, "vol-l2l", "l2")["snapshot_definition_props"][
            "BackupShipping/Source/dr/SnapshotShippingNamePrev"
        ]
        == "l1"
    )
    received = snapshot(dst, "backup-vol-l2l", "l2")
    assert "SUCCESSFUL" in received["flags"]
    assert received["snapshot_definition_props"]["Backup/FromClusterUUID"] == src_id
    # On the target: restore the received snapshot into a new volume, the same bytes.
    restored = restore_into(dst, "backup-vol-l2l", "l2", "vol-dr")
    assert read_at(restored, 0, SIZE_KIB * 1024) == expected
    # Without download_only the target deploys the resource itself (here through python-linstor).
    with linstor.Linstor(src.url) as lin:
        replies = lin.backup_ship("dr", "vol-l2l", "vol-live", src_snap="l2")
        assert linstor.Linstor.all_api_responses_no_error(replies), [str(r) for r in replies]
    assert restored_bytes(dst, "vol-live", SIZE_KIB * 1024) == expected


def test_linstor_remote_unreachable_is_an_error(emu: EmulatorProcess) -> None:
    post(emu, "/v1/remotes/linstor", {"remote_name": "nowhere", "url": "http://127.0.0.1:9"})
    make_volume(emu, "vol-nw")
    answer = post(
        emu, "/v1/remotes/nowhere/backups/ship", {"src_rsc_name": "vol-nw", "dst_rsc_name": "x-nw"}, ok=False
    )
    entry = answer.json()[0]
    assert answer.status_code == 500 and code(entry) == 998 and "could not be reached" in entry["message"]
    assert get(emu, "/v1/resource-definitions/vol-nw/snapshots") == []


@pytest.mark.parametrize("killed", ["source", "target"])
def test_linstor_to_linstor_survives_a_restart_of_either_side(
    root_loop: None, emulator_factory: Callable[..., EmulatorProcess], killed: str
) -> None:
    src = emulator_factory(name="src")
    dst = emulator_factory(name="dst")
    src_id = get(src, "/v1/controller/properties")["Cluster/LocalID"]
    dst_id = get(dst, "/v1/controller/properties")["Cluster/LocalID"]
    post(src, "/v1/remotes/linstor", {"remote_name": "dr", "url": dst.url, "cluster_id": dst_id})
    post(dst, "/v1/remotes/linstor", {"remote_name": "prod", "url": src.url, "cluster_id": src_id})
    dev = make_volume(src, "vol-kr")
    write_at(dev, 0, os.urandom(4 * MIB))
    expected = read_at(dev, 0, SIZE_KIB * 1024)
    # Every piece of data the target receives waits, so the transfer is caught in the middle.
    dst.control("latency", {"ms": 2000, "paths": "^/_emu/l2l/data"}).raise_for_status()
    post(
        src,
        "/v1/remotes/dr/backups/ship",
        {"src_rsc_name": "vol-kr", "dst_rsc_name": "bk-kr", "src_snap_name": "k1", "download_only": True},
    )
    assert snapshot(src, "vol-kr", "k1")["snapshot_definition_props"][STATUS.format("dr")] == "Shipping"
    assert "SHIPPING" in snapshot(dst, "bk-kr", "k1")["flags"]
    victim = src if killed == "source" else dst
    assert victim.proc is not None
    victim.proc.kill()
    victim.proc.wait()
    victim.proc = None
    victim.start()
    dst.control("latency", {"ms": 0}).raise_for_status()
    # The source ends the shipment (aborted after its own restart, failed when the target went away);
    # the target keeps nothing half received.
    assert shipped(src, "vol-kr", "k1", "dr") == ("Aborted" if killed == "source" else "Failed")
    wait_for(lambda: get(dst, "/v1/view/snapshots") == [], message="target drops the unfinished snapshot")
    # Shipping again makes exactly one complete copy.
    post(
        src,
        "/v1/remotes/dr/backups/ship",
        {"src_rsc_name": "vol-kr", "dst_rsc_name": "bk-kr", "src_snap_name": "k1", "download_only": True},
    )
    assert shipped(src, "vol-kr", "k1", "dr") == "Success"
    received = get(dst, "/v1/view/snapshots")
    assert [(s["resource_name"], s["name"]) for s in received] == [("bk-kr", "k1")]
    assert "SUCCESSFUL" in received[0]["flags"]
    restored = restore_into(dst, "bk-kr", "k1", "vol-kr-back")
    assert read_at(restored, 0, SIZE_KIB * 1024) == expected


def test_restart_during_a_restore_drops_the_half_download(
    emu: EmulatorProcess, s3: S3Server, bucket: str, held_s3: TcpProxy
) -> None:
    dev = make_volume(emu, "vol-rd")
    write_at(dev, 0, os.urandom(4 * MIB))
    expected = read_at(dev, 0, SIZE_KIB * 1024)
    create_s3_remote(emu, s3, "held", bucket, endpoint=held_s3.endpoint)
    post(emu, "/v1/remotes/held/backups", {"rsc_name": "vol-rd", "snap_name": "r1"})
    assert shipped(emu, "vol-rd", "r1", "held") == "Success"
    restore = {"src_rsc_name": "vol-rd", "target_rsc_name": "vol-rd-back", "node_name": local_node(emu)}
    held_s3.pause_after(256 * 1024)  # the listing and meta objects pass, the 4 MiB of data do not
    post(emu, "/v1/remotes/held/backups/restore", restore)
    # Held in the middle: the target snapshot says so.
    half = snapshot(emu, "vol-rd-back", "r1")
    assert "SHIPPING" in half["flags"] and "SUCCESSFUL" not in half["flags"]
    assert half["snapshot_definition_props"]["BackupShipping/Target/ShippingStatus"] == "Shipping"
    assert emu.proc is not None
    emu.proc.kill()
    emu.proc.wait()
    emu.proc = None
    held_s3.cut()
    held_s3.resume()
    emu.start()
    assert requests.get(emu.url + "/v1/resource-definitions/vol-rd-back", timeout=30).status_code == 404
    post(emu, "/v1/remotes/held/backups/restore", restore)
    assert restored_bytes(emu, "vol-rd-back", SIZE_KIB * 1024) == expected


def test_restart_after_the_meta_object_was_written_keeps_the_backup(
    emu: EmulatorProcess, s3: S3Server, bucket: str, held_s3: TcpProxy
) -> None:
    """The upload completed in S3 but the process died before it saved that: the backup counts."""
    dev = make_volume(emu, "vol-meta")
    write_at(dev, 0, os.urandom(2 * MIB))
    create_s3_remote(emu, s3, "held", bucket, endpoint=held_s3.endpoint)
    # How many bytes the S3 server answers to one PutObject (the same for the volume and the meta object).
    before = held_s3.answered
    via_proxy = S3Server(s3.log_dir, port=held_s3.port).client()
    via_proxy.put_object(Bucket=bucket, Key="probe", Body=b"x" * 1024)
    one_answer = held_s3.answered - before
    s3.client().delete_object(Bucket=bucket, Key="probe")
    # The answer to the volume upload passes; the one to the meta object is held.
    held_s3.pause_after(one_answer + one_answer // 2)
    post(emu, "/v1/remotes/held/backups", {"rsc_name": "vol-meta", "snap_name": "m1"})
    wait_for(lambda: any(k.endswith(".meta") for k in object_keys(s3, bucket)), message="meta object written")
    assert snapshot(emu, "vol-meta", "m1")["snapshot_definition_props"][STATUS.format("held")] == "Shipping"
    assert emu.proc is not None
    emu.proc.kill()
    emu.proc.wait()
    emu.proc = None
    held_s3.cut()
    held_s3.resume()
    emu.start()
    assert shipped(emu, "vol-meta", "m1", "held") == "Success"
    listing = backups(emu, "held")["linstor"]
    assert [(b["origin_snap"], b["success"], b["restorable"]) for b in listing.values()] == [
        ("m1", True, True)
    ]
    assert len(object_keys(s3, bucket)) == 2


def test_a_large_volume_goes_up_in_parts_and_comes_back_whole(
    emu: EmulatorProcess, s3: S3Server, bucket: str
) -> None:
    size_kib = 64 * 1024
    dev = make_volume(emu, "vol-big", size_kib)
    write_at(dev, 0, os.urandom(20 * MIB))
    write_at(dev, 40 * MIB, os.urandom(3 * MIB))
    expected = read_at(dev, 0, size_kib * 1024)
    create_s3_remote(emu, s3, "s3big", bucket)
    post(emu, "/v1/remotes/s3big/backups", {"rsc_name": "vol-big", "snap_name": "b1"})
    assert shipped(emu, "vol-big", "b1", "s3big") == "Success"
    (backup,) = backups(emu, "s3big")["linstor"].values()
    head = s3.client().head_object(Bucket=bucket, Key=backup["vlms"][0]["s3"]["key"])
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # 23 MiB of data: three 8 MiB parts
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    post(
        emu,
        "/v1/remotes/s3big/backups/restore",
        {"last_backup": backup["id"], "target_rsc_name": "vol-big2", "node_name": local_node(emu)},
    )
    assert restored_bytes(emu, "vol-big2", size_kib * 1024) == expected
