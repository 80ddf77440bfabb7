"""Backups through the CSI front end: S3 (a real S3 server, moto) and a second LINSTOR cluster.

Every test writes data through the driver (publish, stage, mount, a file), snapshots with a
VolumeSnapshotClass of type S3 or Linstor as the snapshotter does (CreateSnapshot again until
ready_to_use), deletes what a disaster would take, restores through CreateVolume from the
snapshot id and reads the same bytes back through the driver.
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
import requests
from prometheus_client import REGISTRY

from csi.generated import csi_pb2
from csi.testing import driver_on_emulator
from testkit.s3server import S3Server
from testkit.tcpproxy import TcpProxy
from tests.integration.backup_stack import (
    MIB,
    SECRETS,
    Side,
    append,
    backups_in,
    cluster_id,
    code_of,
    create,
    delete,
    linstor_class,
    read,
    s3_class,
    second_cluster,
    snapshot,
    until_ready,
)
from tests.integration.csi_stack import LOCAL, csi_stack


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(log_dir=tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="module")
def a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    with csi_stack(tmp_path_factory.mktemp("backups-a"), "csi-bk-") as stack:
        yield stack


@pytest.fixture(scope="module")
def b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    with second_cluster(tmp_path_factory.mktemp("backups-b")) as side:
        yield side


def fresh_bucket(s3: S3Server) -> str:
    bucket = f"bk-{uuid.uuid4().hex[:12]}"
    s3.make_bucket(bucket)
    return bucket


def objects(s3: S3Server, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def moto_auth(s3: S3Server, free_actions: bytes) -> None:
    """How many requests moto lets through before it checks keys (``inf``: never checks)."""
    requests.post(s3.endpoint + "/moto-api/reset-auth", data=free_actions, timeout=5).raise_for_status()


def snapshots_of(side: Side, volume_id: str) -> list[str]:
    answer = requests.get(f"{side.emulator.url}/v1/resource-definitions/{volume_id}/snapshots", timeout=10)
    return [s["name"] for s in answer.json()] if answer.status_code == 200 else []


def test_s3_backup_survives_the_loss_of_volume_and_snapshot(a: Side, s3: S3Server) -> None:
    bucket, remote = fresh_bucket(s3), f"s3-{uuid.uuid4().hex[:8]}"
    params = s3_class(s3.endpoint, remote, bucket, **{"delete-local": "true"})
    data = os.urandom(3 * MIB + 123)
    vol = create(a, 64 * MIB)
    append(a, vol.volume_id, data)

    name = f"snapshot-{uuid.uuid4()}"
    first = snapshot(a, vol.volume_id, name, params)
    assert first.snapshot_id == f"S3://{remote}/{vol.volume_id}/{first.snapshot_id.rsplit('/', 1)[1]}"
    done = until_ready(a, vol.volume_id, name, params)
    assert done.snapshot_id == first.snapshot_id and done.source_volume_id == vol.volume_id
    assert any(key.endswith(".meta") for key in objects(s3, bucket)), "no backup written to the bucket"
    assert snapshots_of(a, vol.volume_id) == []  # delete-local: only the backup is left
    assert snapshot(a, vol.volume_id, name, params).ready_to_use  # asked again: the same, no new backup
    assert len(backups_in(a.emulator, remote, vol.volume_id)) == 1

    got = a.ctl.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=done.snapshot_id)).snapshot
    assert got.ready_to_use and got.snapshot_id == done.snapshot_id
    listed = a.ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(source_volume_id=vol.volume_id)).entries
    assert [e.snapshot.snapshot_id for e in listed] == [done.snapshot_id]
    assert done.snapshot_id in {
        e.snapshot.snapshot_id for e in a.ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest()).entries
    }

    delete(a, vol.volume_id)  # the disaster: volume and local snapshot are gone
    restored = create(a, 128 * MIB, snapshot_id=done.snapshot_id)
    assert restored.capacity_bytes == 128 * MIB
    assert restored.content_source.snapshot.snapshot_id == done.snapshot_id
    assert read(a, restored.volume_id) == data
    # The download made for the restore is gone again, and the same request returns the volume.
    assert snapshots_of(a, vol.volume_id) == []
    again = create(a, 128 * MIB, snapshot_id=done.snapshot_id, name=restored.volume_id)
    assert again.volume_id == restored.volume_id
    code, text = code_of(lambda: create(a, 1 * MIB + 4096, snapshot_id=done.snapshot_id))
    assert code == grpc.StatusCode.OUT_OF_RANGE and "64 MiB" in text

    a.ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=done.snapshot_id))
    assert backups_in(a.emulator, remote, vol.volume_id) == {}
    assert not any(key.endswith(".meta") for key in objects(s3, bucket))
    code, _ = code_of(lambda: a.ctl.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=done.snapshot_id)))
    assert code == grpc.StatusCode.NOT_FOUND
    a.ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=done.snapshot_id))  # again: fine
    delete(a, restored.volume_id)


def test_s3_backup_restores_in_another_cluster(a: Side, b: Side, s3: S3Server) -> None:
    """Cluster B knows the bucket under another remote name; the S3:// id of cluster A still works."""
    bucket = fresh_bucket(s3)
    params = s3_class(s3.endpoint, f"site-a-{uuid.uuid4().hex[:6]}", bucket, **{"delete-local": "true"})
    data = os.urandom(MIB + 99)
    vol = create(a, 64 * MIB)
    append(a, vol.volume_id, data)
    done = until_ready(a, vol.volume_id, f"snapshot-{uuid.uuid4()}", params)
    requests.post(
        f"{b.emulator.url}/v1/remotes/s3",
        json=s3.remote_body(f"site-b-{uuid.uuid4().hex[:6]}", bucket),
        timeout=30,
    ).raise_for_status()

    restored = create(b, 0, snapshot_id=done.snapshot_id)
    assert read(b, restored.volume_id) == data
    assert snapshots_of(b, vol.volume_id) == []  # the download is gone again
    delete(b, restored.volume_id)
    a.ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=done.snapshot_id))
    delete(a, vol.volume_id)
    code, text = code_of(lambda: create(b, 0, snapshot_id=done.snapshot_id))
    assert code == grpc.StatusCode.NOT_FOUND and "no S3 remote holds that backup" in text


def test_incremental_chain_of_three_restores_at_each_point(a: Side, s3: S3Server) -> None:
    bucket, remote = fresh_bucket(s3), f"inc-{uuid.uuid4().hex[:8]}"
    params = s3_class(s3.endpoint, remote, bucket, **{"allow-incremental": "true"})
    vol = create(a, 64 * MIB)
    parts = [os.urandom(MIB + i) for i in range(3)]
    ids = []
    for i, part in enumerate(parts):
        append(a, vol.volume_id, part)
        ids.append(until_ready(a, vol.volume_id, f"chain-{i}-{uuid.uuid4().hex[:6]}", params).snapshot_id)
    shipped = backups_in(a.emulator, remote, vol.volume_id)
    assert len(shipped) == 3
    by_snap = {b["origin_snap"]: b for b in shipped.values()}
    names = [i.rsplit("/", 1)[1] for i in ids]
    assert not by_snap[names[0]].get("based_on_id"), "the first backup is a full one"
    for earlier, later in itertools.pairwise(names):
        assert by_snap[later]["based_on_id"].removesuffix(".meta") == by_snap[earlier]["id"]

    # The disaster: the local snapshots and the volume go, only the bucket is left.
    for name in names:
        requests.delete(
            f"{a.emulator.url}/v1/resource-definitions/{vol.volume_id}/snapshots/{name}", timeout=30
        )
    delete(a, vol.volume_id)
    for point, snapshot_id in enumerate(ids):
        restored = create(a, 0, snapshot_id=snapshot_id)
        assert read(a, restored.volume_id) == b"".join(parts[: point + 1])
        delete(a, restored.volume_id)

    # A backup others are based on is deleted last; newest first works.
    code, text = code_of(lambda: a.ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=ids[0])))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and names[1] in text
    for snapshot_id in reversed(ids):
        a.ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id))
    assert backups_in(a.emulator, remote, vol.volume_id) == {}


def test_max_increments_starts_a_new_chain(a: Side, s3: S3Server) -> None:
    bucket, remote = fresh_bucket(s3), f"max-{uuid.uuid4().hex[:8]}"
    params = s3_class(s3.endpoint, remote, bucket, **{"allow-incremental": "true", "max-increments": "1"})
    vol = create(a, 64 * MIB)
    ids = []
    for i in range(3):
        append(a, vol.volume_id, os.urandom(MIB // 2))
        ids.append(until_ready(a, vol.volume_id, f"max-{i}-{uuid.uuid4().hex[:6]}", params).snapshot_id)
    by_snap = {b["origin_snap"]: b for b in backups_in(a.emulator, remote, vol.volume_id).values()}
    first, second, third = (by_snap[i.rsplit("/", 1)[1]] for i in ids)
    assert not first.get("based_on_id") and not third.get("based_on_id"), "full, and full again after one"
    assert second["based_on_id"].removesuffix(".meta") == first["id"]
    for snapshot_id in reversed(ids):
        a.ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id))
    delete(a, vol.volume_id)


def test_backup_to_a_second_linstor_cluster(a: Side, b: Side) -> None:
    remote = f"dr-{uuid.uuid4().hex[:8]}"
    params = linstor_class(b.emulator, remote, **{"delete-local": "true"})
    # As LINSTOR requires, the target cluster knows the source: a remote with A's cluster id.
    trust = {"remote_name": f"from-{remote}", "url": a.emulator.url, "cluster_id": cluster_id(a.emulator)}
    requests.post(f"{b.emulator.url}/v1/remotes/linstor", json=trust, timeout=10).raise_for_status()
    data = os.urandom(2 * MIB + 7)
    vol = create(a, 64 * MIB)
    append(a, vol.volume_id, data)
    name = f"snapshot-{uuid.uuid4()}"
    done = until_ready(a, vol.volume_id, name, params)
    assert done.snapshot_id.startswith(f"Linstor://{remote}/{vol.volume_id}/")
    assert snapshot(a, vol.volume_id, name, params).snapshot_id == done.snapshot_id  # no second shipment
    assert snapshots_of(a, vol.volume_id) == []  # delete-local
    listed = a.ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(source_volume_id=vol.volume_id)).entries
    assert [(e.snapshot.snapshot_id, e.snapshot.ready_to_use) for e in listed] == [(done.snapshot_id, True)]
    received = snapshots_of(b, f"backup-{vol.volume_id}")
    assert received == [done.snapshot_id.rsplit("/", 1)[1]]

    delete(a, vol.volume_id)  # cluster A's copy is gone; cluster B restores
    restored = create(b, 0, snapshot_id=done.snapshot_id)
    assert read(b, restored.volume_id) == data
    delete(b, restored.volume_id)

    a.ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=done.snapshot_id))
    assert snapshots_of(b, f"backup-{vol.volume_id}") == []


def test_bad_remotes_end_in_clear_errors(a: Side, s3: S3Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    vol = create(a, 64 * MIB)
    secrets = {"access-key": "AKIA-DO-NOT-LOG-1234", "secret-key": "s3cr3t-do-not-log-5678"}

    def refused(params: dict[str, str], secret: dict[str, str] = secrets) -> tuple[grpc.StatusCode, str]:
        return code_of(lambda: snapshot(a, vol.volume_id, f"bad-{uuid.uuid4().hex[:8]}", params, secret))

    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    code, text = refused(s3_class(dead, f"dead-{uuid.uuid4().hex[:6]}", "bucket"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "s3-endpoint" in text
    code, text = refused(s3_class(s3.endpoint, f"nob-{uuid.uuid4().hex[:6]}", "no-such-bucket"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "s3-bucket" in text
    code, text = refused(s3_class(s3.endpoint, f"nokey-{uuid.uuid4().hex[:6]}", fresh_bucket(s3)), {})
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "access-key" in text
    code, text = refused({"snap.linstor.csi.linbit.com/type": "S3"})
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "remote-name" in text
    code, text = refused(
        {
            "snap.linstor.csi.linbit.com/type": "Linstor",
            "snap.linstor.csi.linbit.com/remote-name": f"l-{uuid.uuid4().hex[:6]}",
            "snap.linstor.csi.linbit.com/linstor-target-url": "http://127.0.0.1:9",
            "snap.linstor.csi.linbit.com/linstor-target-cluster-id": "not-a-uuid",
        }
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "linstor-target-cluster-id" in text

    bucket = fresh_bucket(s3)
    moto_auth(s3, b"0")  # from here on moto checks keys: these are unknown to it
    try:
        code, text = refused(s3_class(s3.endpoint, f"keys-{uuid.uuid4().hex[:6]}", bucket))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "secret-key" in text
    finally:
        moto_auth(s3, b"inf")
    assert snapshots_of(a, vol.volume_id) == []  # nothing was made
    seen = caplog.text + (a.emulator.log_path.read_text(errors="replace") if a.emulator.log_path else "")
    for secret in secrets.values():
        assert secret not in seen
    delete(a, vol.volume_id)


def test_restarts_during_shipping_lose_and_duplicate_nothing(
    a: Side, s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plugin.backups")
    proxy = TcpProxy(s3.port, bytes_per_second=MIB)  # 4 MiB take about four seconds
    try:
        bucket, remote = fresh_bucket(s3), f"slow-{uuid.uuid4().hex[:8]}"
        params = s3_class(proxy.endpoint, remote, bucket)
        # The remote exists already (an administrator made it; the class matches it).
        made = s3.remote_body(remote, bucket, endpoint=proxy.endpoint)
        requests.post(f"{a.emulator.url}/v1/remotes/s3", json=made, timeout=30).raise_for_status()
        data = os.urandom(4 * MIB)
        vol = create(a, 64 * MIB)
        append(a, vol.volume_id, data)

        # The controller restarts while the data is on its way.
        name = f"snapshot-{uuid.uuid4()}"
        assert not snapshot(a, vol.volume_id, name, params).ready_to_use
        a.emulator.restart()
        done = until_ready(a, vol.volume_id, name, params)
        # The restart cut the shipment off (LINSTOR marks it aborted); the driver shipped it again.
        assert "backup failed; starting again" in caplog.text
        assert len(backups_in(a.emulator, remote, vol.volume_id)) == 1

        # The driver restarts while the data is on its way: a new driver on the same cluster.
        name2 = f"snapshot-{uuid.uuid4()}"
        assert not snapshot(a, vol.volume_id, name2, params).ready_to_use
        with second_driver(a) as fresh:
            assert not snapshot(fresh, vol.volume_id, name2, params).ready_to_use
            done2 = until_ready(fresh, vol.volume_id, name2, params)
        shipped = backups_in(a.emulator, remote, vol.volume_id)
        assert sorted(b["origin_snap"] for b in shipped.values()) == sorted(
            i.rsplit("/", 1)[1] for i in (done.snapshot_id, done2.snapshot_id)
        )
        assert all(b.get("success") and b.get("restorable", True) for b in shipped.values())

        for snapshot_id in (done.snapshot_id, done2.snapshot_id):
            restored = create(a, 0, snapshot_id=snapshot_id)
            assert read(a, restored.volume_id) == data
            delete(a, restored.volume_id)
        for snapshot_id in (done2.snapshot_id, done.snapshot_id):
            a.ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id))
        delete(a, vol.volume_id)
    finally:
        proxy.close()


@contextmanager
def second_driver(a: Side) -> Iterator[Side]:
    """A new driver on cluster A: what a restarted controller pod is."""
    with driver_on_emulator(a.emulator.url, LOCAL, path_roots=[str(a.workdir)]) as (_d, client, nodeops):
        yield Side(a.emulator, client, nodeops, a.workdir)


def test_secrets_are_not_in_the_answers(a: Side, s3: S3Server) -> None:
    remote = f"sec-{uuid.uuid4().hex[:8]}"
    vol = create(a, 64 * MIB)
    params = s3_class(s3.endpoint, remote, fresh_bucket(s3))
    done = until_ready(a, vol.volume_id, f"snapshot-{uuid.uuid4()}", params)
    listed = requests.get(f"{a.emulator.url}/v1/remotes", timeout=10).text
    assert SECRETS["secret-key"] not in listed and SECRETS["access-key"] not in listed
    assert SECRETS["secret-key"] not in str(done)
    labels = {v for metric in REGISTRY.collect() for sample in metric.samples for v in sample.labels.values()}
    assert any("/v1/remotes/" in v for v in labels), "the backup calls are measured"
    assert not {v for v in labels if SECRETS["access-key"] in v or SECRETS["secret-key"] in v}
    a.ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=done.snapshot_id))
    delete(a, vol.volume_id)
