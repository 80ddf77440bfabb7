"""Names and ids of consistency groups and group snapshots, and the driver flag that turns them on."""

from __future__ import annotations

import logging
import uuid

import pytest

from csi import cli as csi_cli
from plugin.errors import InvalidArgument, NotFound
from plugin.linstor.records import ResourceDefinition, SnapshotDefinition
from plugin.names import is_valid_resource_name
from plugin.volumes.consistency_groups import group_resource_name, is_shared, may_name_member
from plugin.volumes.group_snapshots import member_key
from plugin.volumes.members import (
    MEMBER_NAME,
    SNAPSHOT_VOLUMES,
    join_volume_id,
    member_snapshots,
    snapshot_numbers,
    split_snapshot_id,
    split_volume_id,
)


def test_group_resource_names_are_linbits_name_based_uuids() -> None:
    name = group_resource_name("default", "vm-1")
    assert name.startswith("cg-") and is_valid_resource_name(name)
    parsed = uuid.UUID(name[3:])
    assert parsed.version == 5 and parsed.variant == uuid.RFC_4122
    assert name == group_resource_name("default", "vm-1"), "the same group always maps to one resource"
    assert name != group_resource_name("other", "vm-1"), "namespaces keep same-named groups apart"
    assert name != group_resource_name("default", "vm-2")


@pytest.mark.parametrize(
    ("volume_id", "expected"),
    [
        ("pvc-1", ("pvc-1", 0)),
        ("cg-a/1", ("cg-a", 1)),
        ("cg-a/0", ("cg-a", 0)),
        ("cg-a/65535", ("cg-a", 65535)),
    ],
)
def test_volume_ids_carry_the_volume_number(volume_id: str, expected: tuple[str, int]) -> None:
    assert split_volume_id(volume_id) == expected


@pytest.mark.parametrize(
    "volume_id", ["cg-a/", "cg-a/x", "cg-a/65536", "cg-a/01", "cg-a/1/2", "/1", "bad name/1"]
)
def test_impossible_volume_ids_are_not_found(volume_id: str) -> None:
    with pytest.raises(NotFound):
        split_volume_id(volume_id)


def test_member_ids_are_told_by_shape_so_plain_deletes_skip_a_read() -> None:
    group = group_resource_name("apps", "db")
    assert may_name_member(group) and may_name_member(group.upper())  # LINSTOR names ignore case
    assert may_name_member(f"{group}/3") and may_name_member("pvc-1/1") and may_name_member("a/b/c")
    assert not may_name_member("pvc-7b0c3a4e-2f1d-4a5b-9c8d-0e1f2a3b4c5d")  # a plain PV
    assert not may_name_member("cg-custom-name") and not may_name_member(f"{group}x")


def test_ids_round_trip() -> None:
    assert join_volume_id("cg-a", 0) == "cg-a" and join_volume_id("cg-a", 3) == "cg-a/3"
    assert split_snapshot_id("InCluster:///cg-a/3/snap") == ("cg-a", 3, "snap")
    assert split_snapshot_id("InCluster:///pvc-1/snap") == ("pvc-1", 0, "snap")
    with pytest.raises(InvalidArgument):
        split_snapshot_id("S3://remote/pvc-1/snap")
    assert member_key("InCluster:///CG-A/3/Snap") == ("cg-a", 3, "snap")
    assert member_key("pvc-1/snap") == ("pvc-1", 0, "snap")


def _snapshot(props: dict[str, str], vds: list[dict[str, object]]) -> SnapshotDefinition:
    return SnapshotDefinition.from_wire(
        {
            "name": "gs",
            "resource_name": "cg-a",
            "flags": ["SUCCESSFUL"],
            "snapshot_definition_props": props,
            "volume_definitions": vds,
            "snapshots": [{"create_timestamp": 1_700_000_000_000}],
        }
    )


def test_a_snapshot_stands_for_the_numbers_it_records() -> None:
    vds: list[dict[str, object]] = [
        {"volume_number": 0, "size_kib": 1024, "volume_definition_props": {MEMBER_NAME: "pvc-x"}},
        {"volume_number": 1, "size_kib": 2048, "volume_definition_props": {MEMBER_NAME: "pvc-y"}},
    ]
    recorded = _snapshot({SNAPSHOT_VOLUMES: "1", "Aux/volume-plugin/group-snapshot": "gs"}, vds)
    assert snapshot_numbers(recorded) == [1]
    (member,) = member_snapshots(recorded)
    assert member.id == "InCluster:///cg-a/1/gs" and member.volume_id == "cg-a/1"
    assert member.size_bytes == 2048 * 1024 and member.group_id == "gs" and member.ready
    # LINBIT's driver records no numbers: every tagged volume is a member.
    assert [m.volume_id for m in member_snapshots(_snapshot({}, vds))] == ["cg-a", "cg-a/1"]
    plain = _snapshot({}, [{"volume_number": 0, "size_kib": 1024}])
    assert [m.id for m in member_snapshots(plain)] == ["InCluster:///cg-a/gs"]


def test_shared_resources_are_told_by_their_group_or_tags() -> None:
    rd = ResourceDefinition.from_wire
    assert is_shared(rd({"props": {"Aux/linstor.csi.linbit.com/consistency-group": "default/vm"}}))
    assert is_shared(rd({"volume_definitions": [{"volume_number": 2, "props": {MEMBER_NAME: "pvc-z"}}]}))
    assert not is_shared(rd({"props": {}, "volume_definitions": [{"volume_number": 0, "props": {}}]}))


def test_the_flag_is_accepted_in_all_its_official_spellings() -> None:
    parser = csi_cli.build_parser()
    assert parser.parse_args(["--enable-consistency-groups"]).enable_consistency_groups is True
    assert parser.parse_args(["--enable-consistency-groups=true"]).enable_consistency_groups is True
    assert parser.parse_args(["--enable-consistency-groups=false"]).enable_consistency_groups is False
    assert parser.parse_args([]).enable_consistency_groups is False


def test_outside_a_pod_the_flag_warns_and_the_driver_runs_without(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    args = csi_cli.build_parser().parse_args(["--enable-consistency-groups", "--mode", "controller"])
    with caplog.at_level(logging.WARNING, logger="csi"):
        assert csi_cli._pvc_groups(args) is None
    assert "consistency groups stay off" in caplog.text and "Service host/port is not set" in caplog.text
    node_args = csi_cli.build_parser().parse_args(["--enable-consistency-groups", "--mode", "node"])
    assert csi_cli._pvc_groups(node_args) is None, "a node plugin never reads PVCs"
