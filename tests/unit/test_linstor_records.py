"""LINSTOR answers become typed records: missing keys, Jackson-style scalars, odd shapes."""

from __future__ import annotations

from plugin.linstor import records as r
from plugin.linstor import retcodes as rc


def test_empty_objects_give_defaults_for_every_record() -> None:
    # Jackson NON_EMPTY leaves out every empty field; a bare {} must still convert.
    assert r.Node.from_wire({}) == r.Node(name="")
    assert r.StoragePool.from_wire({}) == r.StoragePool(node="", name="")
    assert r.ResourceDefinition.from_wire({}).volume_definitions == ()
    resource = r.Resource.from_wire({})
    assert (resource.state_known, resource.in_use, resource.volume(), resource.diskless) == (
        False,
        False,
        None,
        False,
    )
    snap = r.SnapshotDefinition.from_wire({})
    assert (snap.props, snap.nodes, snap.create_timestamps, snap.successful) == ({}, (), (), False)
    assert r.VersionInfo.from_wire(None) == r.VersionInfo()


def test_numbers_sent_as_strings_are_read_as_numbers() -> None:
    pool = r.StoragePool.from_wire(
        {"node_name": "n1", "storage_pool_name": "p", "free_capacity": "2048", "total_capacity": 4096.0}
    )
    assert (pool.free_kib, pool.total_kib) == (2048, 4096)
    vd = r.VolumeDefinition.from_wire({"volume_number": "1", "size_kib": "1048576"})
    assert (vd.number, vd.size_kib) == (1, 1048576)
    resource = r.Resource.from_wire(
        {"name": "rd", "node_name": "n1", "state": {"in_use": "true"}, "volumes": [{"volume_number": "0"}]}
    )
    assert resource.in_use and resource.state_known and resource.volume(0) is not None


def test_unknown_capacity_stays_unknown_and_offline_pools_are_recognised() -> None:
    offline = rc.MASK_WARN | rc.WARN_NOT_CONNECTED
    pool = r.StoragePool.from_wire(
        {"node_name": "n2", "storage_pool_name": "p", "reports": [{"ret_code": offline, "message": "gone"}]}
    )
    assert pool.free_kib is None and pool.offline and pool.report_messages == ("gone",)
    assert not r.StoragePool.from_wire({"free_capacity": 0}).offline


def test_resource_volumes_disk_state_layers_and_diskless() -> None:
    wire = {
        "name": "vol",
        "node_name": "n1",
        "flags": ["drbd_diskless"],
        "props": {"Aux/x": 1},
        "volumes": [
            {
                "volume_number": 0,
                "provider_kind": "DISKLESS",
                "device_path": "/dev/drbd1000",
                "state": {"disk_state": "Diskless"},
                "layer_data_list": [{"type": "drbd"}, {"type": "STORAGE", "data": {"usable_size_kib": 10}}],
            }
        ],
    }
    resource = r.Resource.from_wire(wire)
    vol = resource.volume()
    assert vol is not None
    assert (vol.device_path, vol.disk_state, vol.usable_kib, vol.layers) == (
        "/dev/drbd1000",
        "Diskless",
        10,
        ("DRBD", "STORAGE"),
    )
    assert vol.uses_drbd and resource.diskless and resource.props == {"Aux/x": "1"}
    assert not resource.state_known


def test_a_lone_volume_stands_for_volume_zero_only_through_volume() -> None:
    resource = r.Resource.from_wire({"volumes": [{"volume_number": 3, "device_path": "/dev/x"}]})
    assert resource.volume(0) is not None and resource.volume(0).device_path == "/dev/x"  # type: ignore[union-attr]
    assert resource.exact_volume(0) is None


def test_snapshot_props_prefer_the_definitions_own_and_merge_over_the_legacy_view() -> None:
    wire = {
        "name": "s",
        "resource_name": "vol",
        "flags": ["SUCCESSFUL"],
        "props": {"a": "old", "b": "kept"},
        "snapshot_definition_props": {"a": "new"},
        "volume_definitions": [{"volume_number": 0, "size_kib": 8, "volume_definition_props": {"k": "v"}}],
        "snapshots": [{"create_timestamp": "1700000000000"}, {}],
        "nodes": ["n1", "n2"],
    }
    snap = r.SnapshotDefinition.from_wire(wire)
    assert snap.props == {"a": "new"}
    assert snap.merged_props == {"a": "new", "b": "kept"}
    assert snap.volume_definition(0) == r.VolumeDefinition(0, 8, {"k": "v"})
    assert snap.create_timestamps == (1700000000000,) and snap.nodes == ("n1", "n2") and snap.successful
    older = r.SnapshotDefinition.from_wire({"props": {"a": "merged"}})
    assert older.props == {"a": "merged"}


def test_many_skips_what_is_not_an_object() -> None:
    assert r.many(r.Node.from_wire, [{"name": "n1"}, "junk", None]) == [r.Node(name="n1")]
    assert r.many(r.Node.from_wire, None) == []
    assert r.many(r.Node.from_wire, {"name": "n1"}) == []


def test_remotes_of_every_kind_in_the_lists_order_and_in_the_one_element_array_form() -> None:
    wire = {
        "s3_remotes": [{"remote_name": "bucket", "endpoint": "s3.example", "use_path_style": "true"}],
        "linstor_remotes": [{"remote_name": "dr", "url": "https://dr:3371"}],
    }
    remotes = r.remotes_from_wire([wire])
    assert [(x.name, x.kind) for x in remotes] == [("bucket", "S3"), ("dr", "Linstor")]
    assert (
        remotes[0].use_path_style
        and remotes[0].endpoint == "s3.example"
        and remotes[1].url == "https://dr:3371"
    )
    assert r.remotes_from_wire([]) == r.remotes_from_wire(None) == []


def test_backups_take_their_id_from_the_key_when_the_entry_has_none() -> None:
    wire = {
        "linstor": {
            "k1": {"origin_rsc": "vol", "origin_snap": "s", "success": True, "start_timestamp": "1000"},
            "k2": {"id": "own", "based_on_id": "k1.meta", "restorable": False, "success": True},
            "k3": {"shipping": False, "fail_messages": ["S3 said no"]},
        },
        "other": {"x": {}},
    }
    first, second, third = r.backups_from_wire(wire)
    assert (first.id, first.origin_resource, first.started_ms, first.done) == ("k1", "vol", 1000, True)
    assert (second.id, second.based_on, second.done) == ("own", "k1.meta", False)
    assert third.failed and not first.failed
    assert r.backups_from_wire({}) == []


def test_backup_info_names_the_latest_backup_and_the_source_pools() -> None:
    info = r.BackupInfo.from_wire({"latest": "b-2", "storpools": [{"name": "pool1"}, "junk"]})
    assert (info.latest, info.storage_pools) == ("b-2", ("pool1",))
    assert r.BackupInfo.from_wire(None) == r.BackupInfo()


def test_object_refs_of_an_answer() -> None:
    entries = [{"ret_code": 1}, {"ret_code": 2, "obj_refs": {"SnapDfn": "back_2026"}}]
    assert rc.object_ref(entries, "SnapshotName", "SnapDfn") == "back_2026"
    assert rc.object_ref([{"obj_refs": "junk"}], "SnapDfn") is None
