"""Snapshot class keys, backup snapshot ids and shipping states read from LINSTOR's JSON."""

from __future__ import annotations

import pytest

from plugin.backups import ids, status
from plugin.backups.service import chain_of
from plugin.backups.snapshot_class import KEYS, PREFIX, missing_for_new_remote, parse_snapshot_class
from plugin.errors import InvalidArgument
from plugin.linstor.records import Backup, SnapshotDefinition

SECRETS = {"access-key": "AKIA-SECRET-ACCESS", "secret-key": "very-secret-key-value"}


def s3_class(**extra: str) -> dict[str, str]:
    params = {
        f"{PREFIX}type": "S3",
        f"{PREFIX}remote-name": "backups",
        f"{PREFIX}s3-endpoint": "http://127.0.0.1:9000",
        f"{PREFIX}s3-bucket": "bucket",
        f"{PREFIX}s3-signing-region": "us-east-1",
        f"{PREFIX}s3-use-path-style": "true",
        "csi.storage.k8s.io/volumesnapshot/name": "ignored",
    }
    params.update({f"{PREFIX}{k}": v for k, v in extra.items()})
    return params


def test_every_key_of_linbits_driver_is_read() -> None:
    assert {k.name for k in KEYS} == {
        "type", "remote-name", "delete-local", "allow-incremental", "s3-endpoint", "s3-bucket",
        "s3-signing-region", "s3-use-path-style", "linstor-target-url", "linstor-target-cluster-id",
        "linstor-target-storage-pool", "max-increments", "full-snapshot-after",
    }  # fmt: skip
    cls = parse_snapshot_class(s3_class(**{"delete-local": "True", "allow-incremental": "1"}), SECRETS)
    assert (cls.type, cls.remote_name, cls.s3_bucket, cls.s3_signing_region) == (
        "S3",
        "backups",
        "bucket",
        "us-east-1",
    )
    assert cls.s3_use_path_style and cls.delete_local and cls.allow_incremental and cls.remote
    assert (cls.access_key, cls.secret_key) == (SECRETS["access-key"], SECRETS["secret-key"])
    linstor = parse_snapshot_class(
        {
            f"{PREFIX}type": "linstor",
            f"{PREFIX}remote-name": "dr",
            f"{PREFIX}linstor-target-url": "http://other:3370",
            f"{PREFIX}linstor-target-cluster-id": "8d7f2f6a-4a5c-4f5e-9f0e-123456789abc",
            f"{PREFIX}linstor-target-storage-pool": "pool1",
        }
    )
    assert (linstor.type, linstor.linstor_target_storage_pool) == ("Linstor", "pool1")
    assert missing_for_new_remote(linstor) == []
    assert not parse_snapshot_class({}).remote


def test_secrets_stay_out_of_repr_and_messages() -> None:
    cls = parse_snapshot_class(s3_class(), SECRETS)
    assert SECRETS["access-key"] not in repr(cls) and SECRETS["secret-key"] not in repr(cls)
    with pytest.raises(InvalidArgument) as caught:
        parse_snapshot_class(s3_class(), {"access-key": SECRETS["access-key"]})
    assert "secret-key" in str(caught.value) and SECRETS["access-key"] not in str(caught.value)


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({f"{PREFIX}type": "S3"}, "remote-name"),
        ({f"{PREFIX}type": "Tape", f"{PREFIX}remote-name": "r1"}, "InCluster, S3 or Linstor"),
        ({f"{PREFIX}delete-local": "true"}, "in-cluster"),
        (
            {f"{PREFIX}type": "S3", f"{PREFIX}remote-name": "r1", f"{PREFIX}delete-local": "maybe"},
            "delete-local",
        ),
        ({f"{PREFIX}type": "S3", f"{PREFIX}remote-name": "bad name"}, "remote-name"),
        (
            {f"{PREFIX}type": "S3", f"{PREFIX}remote-name": "r1", f"{PREFIX}s3-endpoint": "ftp://x"},
            "s3-endpoint",
        ),
        ({f"{PREFIX}colour": "blue"}, "unknown snapshot parameter"),
    ],
)
def test_bad_classes_name_the_key(params: dict[str, str], says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        parse_snapshot_class(params)


def test_what_a_new_remote_needs() -> None:
    bare = parse_snapshot_class({f"{PREFIX}type": "S3", f"{PREFIX}remote-name": "r1"})
    missing = missing_for_new_remote(bare)
    assert f"{PREFIX}s3-endpoint" in missing and "secret access-key" in missing
    assert missing_for_new_remote(parse_snapshot_class(s3_class(), SECRETS)) == []


def test_backup_ids_round_trip_in_linbits_form() -> None:
    parsed = ids.parse_backup_id("S3://backups/pvc-1/snapshot-2")
    assert parsed == ids.BackupId("S3", "backups", "pvc-1", "snapshot-2")
    assert str(parsed) == "S3://backups/pvc-1/snapshot-2"
    assert ids.parse_backup_id("Linstor://dr/pvc-1/0/snap1") == ids.BackupId(
        "Linstor", "dr", "pvc-1", "snap1"
    )
    assert ids.is_remote_snapshot_id("s3://r/v1/s1") and not ids.is_remote_snapshot_id("InCluster:///v1/s1")
    for bad in ("InCluster:///pvc/s", "S3://r/pvc", "S3://r//s", "S3://r/a/s", "pvc/s"):
        with pytest.raises(InvalidArgument):
            ids.parse_backup_id(bad)


def test_shipping_state_from_properties_and_flags() -> None:
    def snap(
        props: dict[str, str] | None = None, flags: tuple[str, ...] = ("SUCCESSFUL",)
    ) -> SnapshotDefinition:
        wire = {
            "name": "s",
            "resource_name": "v",
            "flags": list(flags),
            "snapshot_definition_props": props or {},
        }
        return SnapshotDefinition.from_wire(wire)

    key = "BackupShipping/Source/r1/ShippingStatus"
    assert status.shipping_to(snap({key: "Shipping"}), "r1") is status.Shipping.RUNNING
    assert status.shipping_to(snap({key: "Success"}), "R1") is status.Shipping.DONE
    assert status.shipping_to(snap({key: "Failed"}), "r1") is status.Shipping.FAILED
    assert status.shipping_to(snap({key: "Success"}), "r2") is status.Shipping.NONE
    assert status.shipping_to(snap(flags=("SUCCESSFUL", "BACKUP")), "r1") is status.Shipping.RUNNING
    assert status.shipping_to(snap(flags=("SUCCESSFUL", "BACKUP", "SHIPPED")), "r1") is status.Shipping.DONE
    assert status.shipping_to(snap(), "r1") is status.Shipping.NONE
    downloading = snap({"BackupShipping/Target/ShippingStatus": "Shipping"}, flags=())
    assert not status.locally_ready(downloading)
    assert status.locally_ready(snap({"BackupShipping/Target/ShippingStatus": "Success"}))
    assert status.local_failure(snap(flags=("FAILED_DEPLOYMENT",)))


def test_chain_limits_read_as_linbits_driver_reads_them() -> None:
    cls = parse_snapshot_class(s3_class(**{"max-increments": "3", "full-snapshot-after": "1h30m"}), SECRETS)
    assert (cls.max_increments, cls.full_snapshot_after) == (3, 5400.0)
    assert (
        parse_snapshot_class(s3_class(**{"full-snapshot-after": "168h"}), SECRETS).full_snapshot_after
        == 604800
    )
    for key, bad in (("max-increments", "-1"), ("max-increments", "two"), ("full-snapshot-after", "1 day")):
        with pytest.raises(InvalidArgument, match=key):
            parse_snapshot_class(s3_class(**{key: bad}), SECRETS)


def test_the_chain_is_followed_from_the_newest_backup() -> None:
    def b(bid: str, start: int, base: str = "") -> tuple[str, Backup]:
        wire = {"id": bid, "start_timestamp": start, "based_on_id": base + ".meta" if base else ""}
        return bid, Backup.from_wire(wire)

    done = dict([b("full1", 1000), b("inc1", 2000, "full1"), b("inc2", 3000, "inc1"), b("full2", 4000)])
    assert chain_of(done) == (0, 4.0)
    done.update([b("inc3", 5000, "full2"), b("inc4", 6000, "inc3")])
    assert chain_of(done) == (2, 4.0)
