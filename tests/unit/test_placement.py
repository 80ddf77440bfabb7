"""Pure parts of the volume service: select filters, topology, stored records, snapshot ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from plugin import volume_records as rec
from plugin.errors import InvalidArgument
from plugin.linstor.records import Node, Resource, ResourceDefinition, SnapshotDefinition, StoragePool
from plugin.models import TopologyRequirement
from plugin.params import placement
from plugin.params.model import VolumeParams

HOST = placement.HOSTNAME_KEY
RD, SD = ResourceDefinition.from_wire, SnapshotDefinition.from_wire  # as the client converts answers
NODES = [
    Node("a", props={"Aux/zone": "z1", "Aux/rack": "r1"}),
    Node("b", props={"Aux/zone": "z1", "Aux/rack": "r2"}),
    Node("c", props={"Aux/zone": "z2"}),
]
POOLS = [StoragePool("a", "fast"), StoragePool("b", "slow"), StoragePool("c", "fast")]


def test_select_filter_from_params() -> None:
    params = VolumeParams(
        place_count=3,
        storage_pools=("fast", "slow"),
        diskless_on_remaining=True,
        layer_list=("drbd", "storage"),
        replicas_on_same=("Aux/zone",),
        replicas_on_different=("Aux/rack",),
        x_replicas_on_different=(("Aux/dc", 2),),
        do_not_place_with_regex="^db-.*",
        diskless_storage_pool="thin-diskless",
    )
    assert placement.select_filter(params) == {
        "place_count": 3,
        "storage_pool_list": ["fast", "slow"],
        "diskless_on_remaining": True,
        "layer_stack": ["DRBD", "STORAGE"],
        "replicas_on_same": ["Aux/zone"],
        "replicas_on_different": ["Aux/rack"],
        "x_replicas_on_different_map": {"Aux/dc": 2},
        "not_place_with_rsc_regex": "^db-.*",
        "storage_pool_diskless_list": ["thin-diskless"],
    }
    assert placement.select_filter(VolumeParams()) == {"place_count": 1}


def test_filter_differences_ignore_list_order_and_extra_fields() -> None:
    wanted = {"place_count": 2, "storage_pool_list": ["a", "b"]}
    current = {
        "place_count": 2,
        "storage_pool_list": ["b", "a"],
        "storage_pool": "a",
        "layer_stack": ["DRBD"],
    }
    assert placement.filter_differences(wanted, current) == {}
    assert placement.filter_differences({"place_count": 3}, current) == {"place_count": 3}


def test_property_conflicts() -> None:
    current = {"Aux/a": "1", "DrbdOptions/x": "y"}
    assert placement.property_conflicts([("Aux/a", "1"), ("Aux/b", "2")], current) == []
    assert placement.property_conflicts([("Aux/a", "2")], current) == ["Aux/a"]


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        ({HOST: "b"}, ["b"]),
        ({"zone": "z1"}, ["a", "b"]),
        ({"zone": "z1", "rack": "r2"}, ["b"]),
        ({HOST: "c", "zone": "z1"}, []),
        ({"linbit.com/sp-fast": "true"}, ["a", "c"]),
        ({"linbit.com/sp-fast": "true", "zone": "z1"}, ["a"]),
        ({"zone": "nowhere"}, []),
    ],
)
def test_segment_nodes(segment: dict[str, str], expected: list[str]) -> None:
    assert placement.segment_nodes(segment, NODES, POOLS) == expected


def test_topology_nodes_orders_preferred_first_and_marks_requirements() -> None:
    assert placement.topology_nodes(None) == ([], False)
    assert placement.topology_nodes(TopologyRequirement()) == ([], False)
    req = TopologyRequirement(requisite=({HOST: "a"}, {HOST: "b"}, {HOST: "c"}), preferred=({HOST: "c"},))
    assert placement.topology_nodes(req) == (["c", "a", "b"], True)
    only_preferred = TopologyRequirement(preferred=({HOST: "b"},))
    assert placement.topology_nodes(only_preferred) == (["b"], False)
    # a preferred node outside the requisite set is dropped
    req = TopologyRequirement(requisite=({HOST: "a"},), preferred=({HOST: "c"},))
    assert placement.topology_nodes(req) == (["a"], True)
    by_zone = TopologyRequirement(requisite=({"zone": "z1"},))
    assert placement.topology_nodes(by_zone, NODES, POOLS) == (["a", "b"], True)


def test_needs_node_listing_only_for_non_hostname_keys() -> None:
    assert placement.needs_node_listing(None) == (False, False)
    assert placement.needs_node_listing(TopologyRequirement(requisite=({HOST: "a"},))) == (False, False)
    assert placement.needs_node_listing(TopologyRequirement(preferred=({"zone": "z"},))) == (True, False)
    assert placement.needs_node_listing(TopologyRequirement(requisite=({"linbit.com/sp-x": "true"},))) == (
        True,
        True,
    )


# ----------------------------------------------------------------------------- records


def wanted(**changes: object) -> rec.Wanted:
    base = {
        "volume_id": "pvc-1",
        "name": "pvc-1",
        "size_kib": 2048,
        "resource_group": "sc-x",
        "fs_type": "xfs",
        "mkfs_opts": "-m crc=1",
        "mount_opts": ("noatime", "discard"),
        "source": None,
        "extra": (
            ("csi.storage.k8s.io/pvc/name", "data"),
            ("csi.storage.k8s.io/pvc/namespace", ""),
            ("csi.storage.k8s.io/provisioner-secret-name", "creds"),
            ("made-by-front-end", "true"),
        ),
    }
    base.update(changes)
    return rec.Wanted(**base)  # type: ignore[arg-type]


def test_props_round_trip_into_a_volume() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    w = wanted()
    props = {**w.aux_props(when), **w.filesystem_props(), rec.VOLUME_ID: "pvc-1"}
    assert props[rec.FS_PROP] == "xfs" and props[rec.MKFS_PROP] == "-m crc=1"
    assert props["Aux/csi.storage.k8s.io/pvc/name"] == "data"
    assert not [k for k in props if "secret" in k or k.endswith("pvc/namespace")]  # empty or not kept
    assert props["Aux/made-by-front-end"] == "true"  # a front end's own marker: any plain key
    rd = {
        "name": "pvc-1",
        "props": props,
        "resource_group_name": "sc-x",
        "volume_definitions": [{"volume_number": 0, "size_kib": 4096}],
    }
    resources = [
        {
            "node_name": "a",
            "flags": [],
            "state": {"in_use": True},
            "volumes": [{"device_path": "/dev/drbd1000"}],
        },
        {"node_name": "b", "flags": ["DISKLESS", "DRBD_DISKLESS", "TIE_BREAKER"], "volumes": []},
    ]
    volume = rec.volume_from(RD(rd), [Resource.from_wire(r) for r in resources])
    assert volume is not None
    assert (volume.id, volume.name, volume.size_bytes) == ("pvc-1", "pvc-1", 4096 * 1024)
    assert (volume.fs_type, volume.mkfs_opts, volume.mount_opts) == (
        "xfs",
        "-m crc=1",
        ("noatime", "discard"),
    )
    assert volume.created_at == when
    assert volume.in_use_nodes == ("a",) and volume.diskful_nodes == ("a",)
    assert volume.replicas[0].device_path == "/dev/drbd1000"
    assert volume.replicas[1].tie_breaker and volume.replicas[1].diskless


def test_btrfs_is_recorded_for_the_node_to_format_not_given_to_linstor() -> None:
    """LINSTOR's FileSystem/Type takes only ext4 and xfs: btrfs would fail every create."""
    w = wanted(fs_type="btrfs", mkfs_opts="--nodiscard")
    assert w.filesystem_props() == {}
    props = w.aux_props(datetime.now(UTC))
    assert props[rec.FS_TYPE] == "btrfs" and props[rec.MKFS_OPTS] == "--nodiscard"
    rd = {"name": "b", "props": props, "volume_definitions": [{"volume_number": 0, "size_kib": 8}]}
    volume = rec.volume_from(RD(rd))
    assert volume is not None and (volume.fs_type, volume.mkfs_opts) == ("btrfs", "--nodiscard")
    assert rec.stored_fs_type(props) == (True, "btrfs")


def test_block_volume_and_foreign_rd() -> None:
    props = wanted(fs_type=None, mkfs_opts="", mount_opts=()).aux_props(datetime.now(UTC))
    assert props[rec.FS_TYPE] == rec.BLOCK and rec.MOUNT_OPTS not in props and rec.MKFS_OPTS not in props
    assert wanted(fs_type=None).filesystem_props() == {}
    rd = {"name": "x", "props": props, "volume_definitions": [{"volume_number": 0, "size_kib": 8}]}
    volume = rec.volume_from(RD(rd))
    assert volume is not None and volume.fs_type is None
    foreign = {
        "name": "legacy",
        "props": {"FileSystem/Type": "ext4"},
        "volume_definitions": [{"size_kib": 8}],
    }
    legacy = rec.volume_from(RD(foreign))
    assert legacy is not None
    assert (legacy.name, legacy.fs_type, legacy.resource_group) == ("legacy", "ext4", "DfltRscGrp")
    assert rec.volume_from(RD({"name": "snapshots-only", "volume_definitions": []})) is None


def test_completion_marker() -> None:
    assert rec.is_complete(RD({"name": "a", "props": {rec.VOLUME_ID: "a"}}))
    assert not rec.is_complete(RD({"name": "a", "props": {rec.CREATING: "a"}}))
    assert rec.is_complete(RD({"name": "a", "props": {rec.CREATING: "other"}}))  # copied from a source
    assert not rec.is_complete(RD({"name": "a", "flags": ["CLONING"]}))
    assert not rec.is_complete(RD({"name": "a", "flags": ["DELETE"]}))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("InCluster:///pvc-1/snap-1", ("pvc-1", "snap-1")),
        ("incluster:///pvc-1/snap-1", ("pvc-1", "snap-1")),
        ("InCluster:///pvc-1/0/snap-1", ("pvc-1", "snap-1")),
        ("pvc-1/snap-1", ("pvc-1", "snap-1")),
        ("snap-1", (None, "snap-1")),
    ],
)
def test_snapshot_ids(given: str, expected: tuple[str | None, str]) -> None:
    assert rec.parse_snapshot_id(given) == expected


@pytest.mark.parametrize("bad", ["S3://remote/pvc-1/snap", "Linstor://r/pvc/s", "a/b/c", "", "InCluster:///"])
def test_bad_snapshot_ids(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        rec.parse_snapshot_id(bad)


def test_snapshot_from_linstor_json() -> None:
    snap = rec.snapshot_from(
        SD(
            {
                "name": "s1",
                "resource_name": "pvc-1",
                "flags": ["SUCCESSFUL"],
                "volume_definitions": [{"volume_number": 0, "size_kib": 1024}],
                "snapshots": [{"node_name": "a", "create_timestamp": 1780000000000}],
            }
        )
    )
    assert snap.id == "InCluster:///pvc-1/s1" == rec.snapshot_id("pvc-1", "s1")
    assert (snap.volume_id, snap.size_bytes, snap.ready) == ("pvc-1", 1024 * 1024, True)
    assert snap.created_at == datetime.fromtimestamp(1780000000, UTC)
    assert not rec.snapshot_from(SD({"name": "s", "resource_name": "r", "flags": []})).ready


def test_stored_fs_type_reads_what_linstor_and_the_plugin_recorded() -> None:
    assert rec.stored_fs_type({rec.FS_PROP: "ext4"}) == (True, "ext4")
    assert rec.stored_fs_type({rec.FS_PROP: "ext4"}, {rec.FS_PROP: "xfs"}) == (True, "xfs")  # VD first
    assert rec.stored_fs_type({rec.FS_TYPE: rec.BLOCK}) == (True, None)
    assert rec.stored_fs_type({rec.FS_TYPE: "btrfs"}) == (True, "btrfs")
    assert rec.stored_fs_type({"Aux/other": "x"}, {}) == (False, None)
    assert rec.stored_fs_type(None) == (False, None)


def test_segments_read_node_properties_under_the_driver_namespace() -> None:
    """With --property-namespace=Aux/topology (the Piraeus operator's) a key is Aux/topology/<key>."""
    nodes = [
        Node("a", props={"Aux/topology/zone": "z1", "Aux/zone": "z9"}),
        Node("b", props={"Aux/topology/zone": "z2"}),
    ]
    assert placement.segment_nodes({"zone": "z1"}, nodes, [], "Aux/topology") == ["a"]
    assert placement.segment_nodes({"zone": "z9"}, nodes, [], "Aux/topology") == []
    assert placement.segment_nodes({"zone": "z9"}, nodes, []) == ["a"]
    by_zone = TopologyRequirement(requisite=({"zone": "z2"},))
    assert placement.topology_nodes(by_zone, nodes, [], "Aux/topology") == (["b"], True)
