"""Volume parameters: every key, alias, default and error of both dialects."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.errors import InvalidArgument
from plugin.params.csi import parse_csi_parameters
from plugin.params.docker import parse_docker_options
from plugin.params.filesystems import minimum_size_bytes
from plugin.params.groups import resource_group_name, resource_group_settings
from plugin.params.keys import CSI_PARAMETERS, DOCKER_OPTIONS
from plugin.params.model import DEFAULT_DISKLESS_POOL, VolumeParams
from plugin.params.values import MAX_SIZE_BYTES, parse_size

NS = "linstor.csi.linbit.com/"
KIB, MIB, GIB, TIB = 1024, 1024**2, 1024**3, 1024**4


def csi(**kwargs: str) -> VolumeParams:
    return parse_csi_parameters({NS + key: value for key, value in kwargs.items()})


def csi_error(parameters: dict[str, str]) -> str:
    with pytest.raises(InvalidArgument) as info:
        parse_csi_parameters(parameters)
    return str(info.value)


def docker_error(options: dict[str, str] | None, defaults: dict[str, str] | None = None) -> str:
    with pytest.raises(InvalidArgument) as info:
        parse_docker_options(options, defaults or {})
    return str(info.value)


# --- CSI: defaults and every key -----------------------------------------------------------


def test_csi_defaults() -> None:
    params = parse_csi_parameters({})
    assert params == VolumeParams()
    assert params.place_count == 1
    assert params.fs_type == "ext4"
    assert params.size_bytes is None
    assert params.placement_policy == "autoplacetopology"
    assert params.allow_remote_volume_access is True
    assert params.diskless_storage_pool == DEFAULT_DISKLESS_POOL
    assert params.notes == ()


def test_csi_every_key_lands_in_its_field() -> None:
    params = csi(
        resourceGroup="rg-fast",
        placementCount="3",
        storagePool="pool-a pool-b",
        disklessStoragePool="diskless1",
        disklessOnRemaining="true",
        layerList="drbd luks storage",
        replicasOnSame="zone Aux/rack",
        replicasOnDifferent="host",
        xReplicasOnDifferent="{dc: 2}",
        doNotPlaceWithRegex="^db-.*",
        allowRemoteVolumeAccess="true",
        placementPolicy="FollowTopology",
        fsOpts="-E nodiscard -L 'my data'",
        mountOpts="noatime, discard",
        postMountXfsOpts="extsize 4m",
        usePvcName="yes",
        overProvision="1.5",
    )
    assert params.resource_group == "rg-fast"
    assert params.place_count == 3
    assert params.storage_pools == ("pool-a", "pool-b")
    assert params.diskless_storage_pool == "diskless1"
    assert params.diskless_on_remaining is True
    assert params.layer_list == ("drbd", "luks", "storage")
    assert params.replicas_on_same == ("Aux/zone", "Aux/rack")
    assert params.replicas_on_different == ("Aux/host",)
    assert params.x_replicas_on_different == (("Aux/dc", 2),)
    assert params.do_not_place_with_regex == "^db-.*"
    assert params.allow_remote_volume_access is True
    assert params.placement_policy == "followtopology"
    assert params.mkfs_opts == "-E nodiscard -L 'my data'"
    assert params.mount_opts == ("noatime", "discard")
    assert params.post_mount_xfs_opts == "extsize 4m"
    assert params.use_pvc_name is True
    assert params.overprovision == 1.5


def test_csi_manual_placement_keys() -> None:
    params = csi(nodeList="node-a node-b", clientList="node-c", storagePool="pool1")
    assert params.nodes == ("node-a", "node-b")
    assert params.client_nodes == ("node-c",)
    assert params.placement_policy == "manual"
    assert params.place_count == 2
    assert params.storage_pools == ("pool1",)
    explicit = csi(nodeList="node-a", placementPolicy="manual", placementCount="1")
    assert explicit.placement_policy == "manual"


@pytest.mark.parametrize("alias", ["placementCount", "autoPlace", "PLACEMENTCOUNT", "autoplace"])
def test_csi_place_count_aliases_and_case(alias: str) -> None:
    assert parse_csi_parameters({NS + alias: "2"}).place_count == 2
    assert parse_csi_parameters({alias: "2"}).place_count == 2  # legacy: no namespace


def test_csi_alias_twice_with_the_same_value_is_fine() -> None:
    assert parse_csi_parameters({NS + "placementCount": "2", NS + "autoPlace": "2"}).place_count == 2


def test_csi_keys_and_namespace_are_case_insensitive() -> None:
    params = parse_csi_parameters(
        {"LINSTOR.CSI.LINBIT.COM/STORAGEPOOL": "pool1", "linstor.csi.linbit.com/LayerList": "DRBD STORAGE"}
    )
    assert params.storage_pools == ("pool1",)
    assert params.layer_list == ("drbd", "storage")


def test_csi_every_table_key_is_accepted_in_any_case() -> None:
    for spec in CSI_PARAMETERS:
        for spelling in spec.spellings:
            for key in (NS + spelling, spelling, NS + spelling.upper()):
                # an empty value means "not set": the key is known, nothing changes
                assert parse_csi_parameters({key: ""}) == VolumeParams()


def test_csi_empty_value_means_default() -> None:
    assert csi(placementCount="").place_count == 1
    assert csi(storagePool="  ").storage_pools == ()


@pytest.mark.parametrize(
    ("key", "value", "note"),
    [
        ("encryption", "true", "luks"),
        ("sizeKiB", "1024", "size comes from the volume request"),
        ("nfsConfigTemplate", "/x.tmpl", "NFS"),
        ("nfsServiceName", "svc", "NFS"),
        ("nfsSquash", "root_squash", "NFS"),
        ("nfsRecoveryVolumeSize", "300Mi", "NFS"),
    ],
)
def test_csi_keys_accepted_without_effect_leave_a_note(key: str, value: str, note: str) -> None:
    params = csi(**{key: value})
    assert dataclasses.replace(params, notes=()) == VolumeParams()
    assert len(params.notes) == 1
    assert key in params.notes[0]
    assert note in params.notes[0]


def test_csi_encryption_still_needs_a_boolean() -> None:
    message = csi_error({NS + "encryption": "maybe"})
    assert message.startswith('invalid value "maybe" for parameter "linstor.csi.linbit.com/encryption"')


def test_csi_balanced_placement_is_autoplacetopology_with_a_note() -> None:
    params = csi(placementPolicy="Balanced")
    assert params.placement_policy == "autoplacetopology"
    assert any("Balanced" in note for note in params.notes)


@pytest.mark.parametrize("policy", ["AutoPlaceTopology", "autoplace", "FOLLOWTOPOLOGY"])
def test_csi_placement_policies(policy: str) -> None:
    assert csi(placementPolicy=policy).placement_policy == policy.lower()


# --- CSI: pass-through and other namespaces ---------------------------------------------------


def test_csi_property_pass_through() -> None:
    params = parse_csi_parameters(
        {
            "property.linstor.csi.linbit.com/DrbdOptions/Net/protocol": "C",
            "Property.Linstor.Csi.Linbit.Com/Aux/team": "storage",
            "DrbdOptions/PeerDevice/c-max-rate": "100M",
            "drbdoptions/auto-quorum": "suspend-io",
        }
    )
    assert params.properties == (
        ("Aux/team", "storage"),
        ("DrbdOptions/Net/protocol", "C"),
        ("DrbdOptions/PeerDevice/c-max-rate", "100M"),
        ("drbdoptions/auto-quorum", "suspend-io"),
    )


def test_csi_the_same_property_twice_keeps_one_with_a_note() -> None:
    same = {"property.linstor.csi.linbit.com/DrbdOptions/Net/protocol": "C", "DrbdOptions/Net/protocol": "C"}
    assert parse_csi_parameters(same).properties == (("DrbdOptions/Net/protocol", "C"),)
    # LINBIT's driver takes whichever its map yields last; here the order is fixed and said
    differ = parse_csi_parameters({**same, "DrbdOptions/Net/protocol": "A"})
    assert differ.properties == (("DrbdOptions/Net/protocol", "A"),)
    assert any(
        "property.linstor.csi.linbit.com/DrbdOptions/Net/protocol" in n and "ignored" in n
        for n in differ.notes
    )


@pytest.mark.parametrize(
    "key",
    [
        "property.linstor.csi.linbit.com/",
        "property.linstor.csi.linbit.com//x",
        "property.linstor.csi.linbit.com/a//b",
        "property.linstor.csi.linbit.com/a/",
        "property.linstor.csi.linbit.com/a b",
    ],
)
def test_csi_bad_property_keys(key: str) -> None:
    message = csi_error({key: "1"})
    assert message.startswith(f'invalid parameter "{key}"')


def test_csi_other_namespaces_are_kept_as_information() -> None:
    params = parse_csi_parameters(
        {
            "csi.storage.k8s.io/pvc/name": "data",
            "csi.storage.k8s.io/pvc/namespace": "default",
            "qos.linbit.com/rbps": "100M",
            "example.com/anything": "x",
        }
    )
    assert params.extra == {
        "csi.storage.k8s.io/pvc/name": "data",
        "csi.storage.k8s.io/pvc/namespace": "default",
        "qos.linbit.com/rbps": "100000000",  # IO limits are kept as plain integers
        "example.com/anything": "x",
    }
    assert params == VolumeParams()  # extra does not take part in equality


# --- CSI: errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["foo", NS + "foo", NS + "placementCount/x", NS + ""])
def test_csi_unknown_keys(key: str) -> None:
    message = csi_error({key: "1"})
    assert message.startswith(f'unknown parameter "{key}": allowed parameters are ')
    assert NS + "placementCount" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("placementCount", "abc", "expected a whole number from 1 to 16"),
        ("placementCount", "0", "expected a whole number from 1 to 16"),
        ("autoPlace", "17", "expected a whole number from 1 to 16"),
        ("placementCount", "1.5", "expected a whole number from 1 to 16"),
        ("placementCount", "-1", "expected a whole number from 1 to 16"),
        ("resourceGroup", "1rg", "expected a valid LINSTOR resource group name"),
        ("resourceGroup", "rg with space", "expected a valid LINSTOR resource group name"),
        ("storagePool", "ok-pool p1", "'p1' is not a valid LINSTOR storage pool name"),
        ("storagePool", "pool1 POOL1", "each storage pool may be named only once"),
        ("disklessStoragePool", "x.y", "expected a valid LINSTOR storage pool name"),
        ("disklessOnRemaining", "maybe", "expected true or false"),
        ("layerList", "drbd zfs", "expected layers from drbd, luks, nvme"),
        ("layerList", "storage drbd", "storage last"),
        ("layerList", "drbd drbd storage", "expected layers from"),
        ("replicasOnSame", " , ", "expected property names separated by spaces"),
        ("xReplicasOnDifferent", "{zone: 0}", "expected a map of property names to whole numbers"),
        ("xReplicasOnDifferent", "[1, 2]", "expected a map of property names to whole numbers"),
        ("xReplicasOnDifferent", "{zone: yes}", "expected a map of property names to whole numbers"),
        ("xReplicasOnDifferent", "{zone: [1", "expected a map of property names to whole numbers"),
        ("doNotPlaceWithRegex", "([a-z", "expected a regular expression"),
        ("allowRemoteVolumeAccess", "sometimes", "expected true, false, or a YAML list of rules"),
        ("allowRemoteVolumeAccess", "[{fromOther: [a]}]", "expected true, false, or a YAML list of rules"),
        ("allowRemoteVolumeAccess", "[{fromSame: zone}]", "expected true, false, or a YAML list of rules"),
        ("placementPolicy", "Random", "expected one of AutoPlaceTopology, AutoPlace, FollowTopology, Manual"),
        ("nodeList", "node_1", "'node_1' is not a valid LINSTOR node name"),
        ("clientList", "-bad", "'-bad' is not a valid LINSTOR node name"),
        ("fsOpts", "-L 'unbalanced", "balanced quotes"),
        ("fsOpts", "-a\n-b", "on one line"),
        ("postMountXfsOpts", "a\nb", "on one line"),
        ("usePvcName", "2", "expected true or false"),
        ("overProvision", "-1", "expected a number greater than 0"),
        ("overProvision", "lots", "expected a number greater than 0"),
        ("overProvision", "nan", "expected a number greater than 0"),
    ],
)
def test_csi_bad_values_name_the_key_and_what_is_allowed(key: str, value: str, expected: str) -> None:
    message = csi_error({NS + key: value})
    shown = value.replace("\n", "\\n")  # messages stay on one line
    assert message.startswith(f'invalid value "{shown}" for parameter "{NS}{key}": ')
    assert "\n" not in message
    assert expected in message


def test_long_values_are_shortened_in_messages() -> None:
    message = docker_error({"replicas": "9" * 500})
    assert len(message) < 200
    assert '"' + "9" * 77 + '..."' in message


def test_equal_values_in_different_spellings_do_not_clash() -> None:
    params = parse_csi_parameters({NS + "usePvcName": "true", "usepvcname": "yes"})
    assert params.use_pvc_name is True


def test_csi_error_carries_the_key_in_details() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_csi_parameters({NS + "placementCount": "x"})
    assert info.value.details["key"] == NS + "placementCount"


def test_csi_remote_access_policies() -> None:
    assert csi(allowRemoteVolumeAccess="false").allow_remote_volume_access is False
    rules = csi(allowRemoteVolumeAccess="- fromSame:\n  - topology.kubernetes.io/zone\n  - rack\n")
    assert rules.allow_remote_volume_access is True
    assert rules.remote_access_from_same == (("rack", "topology.kubernetes.io/zone"),)
    anywhere = csi(allowRemoteVolumeAccess='[{"fromSame": []}]')
    assert anywhere.allow_remote_volume_access is True
    assert anywhere.remote_access_from_same == ()
    assert csi(allowRemoteVolumeAccess="[]").allow_remote_volume_access is False


def test_csi_remote_access_defaults_to_local_without_drbd() -> None:
    assert csi(layerList="storage").allow_remote_volume_access is False
    assert csi(layerList="nvme storage").allow_remote_volume_access is True
    assert csi(layerList="drbd storage").allow_remote_volume_access is True


def test_csi_count_map_forms() -> None:
    assert csi(xReplicasOnDifferent="zone=2 Aux/rack=1").x_replicas_on_different == (
        ("Aux/rack", 1),
        ("Aux/zone", 2),
    )
    assert csi(xReplicasOnDifferent='{"zone": 2}').x_replicas_on_different == (("Aux/zone", 2),)
    assert csi(xReplicasOnDifferent="zone: 3\nrack: 1\n").x_replicas_on_different == (
        ("Aux/rack", 1),
        ("Aux/zone", 3),
    )


# --- CSI: contradictions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "fragments"),
    [
        ({"nodeList": "node-a node-b", "clientList": "NODE-B"}, ["both name node-b", "diskful or diskless"]),
        ({"layerList": "storage", "disklessOnRemaining": "yes"}, ["has neither drbd nor nvme"]),
        (
            {"layerList": "storage", "nodeList": "node-a", "clientList": "node-b"},
            ["clientList", "neither drbd nor nvme"],
        ),
    ],
)
def test_csi_contradictions(parameters: dict[str, str], fragments: list[str]) -> None:
    message = csi_error({NS + key: value for key, value in parameters.items()})
    for fragment in fragments:
        assert fragment in message, message


def test_csi_consistent_combinations_are_accepted() -> None:
    assert csi(nodeList="node-a node-b", placementCount="2").place_count == 2
    assert csi(layerList="storage", disklessOnRemaining="false").diskless_on_remaining is False
    allowed = csi(allowRemoteVolumeAccess="false", disklessStoragePool="dl-pool", disklessOnRemaining="true")
    assert allowed.diskless_storage_pool == "dl-pool"


# --- Docker ----------------------------------------------------------------------------------


def test_docker_defaults_without_options() -> None:
    for options in (None, {}):
        params = parse_docker_options(options)
        assert params.size_bytes == 100 * MIB
        assert params.fs_type == "ext4"
        assert params.place_count == 2
        assert params.nodes == ()
        assert params.storage_pools == ()
        assert params.resource_group is None


def test_docker_every_option_lands_in_its_field() -> None:
    params = parse_docker_options(
        {
            "size": "2G",
            "fs": "XFS",
            "fsopts": "-K",
            "mountopts": "noatime,nodiratime",
            "replicas": "3",
            "storagepool": "pool-a,pool-b",
            "disklessstoragepool": "dl-pool",
            "disklessonremaining": "on",
            "resourcegroup": "rg-docker",
            "replicasonsame": "zone",
            "replicasondifferent": "rack host",
            "donotplacewithregex": "^db",
        }
    )
    assert params.size_bytes == 2 * GIB
    assert params.fs_type == "xfs"
    assert params.mkfs_opts == "-K"
    assert params.mount_opts == ("noatime", "nodiratime")
    assert params.place_count == 3
    assert params.storage_pools == ("pool-a", "pool-b")
    assert params.diskless_storage_pool == "dl-pool"
    assert params.diskless_on_remaining is True
    assert params.resource_group == "rg-docker"
    assert params.replicas_on_same == ("Aux/zone",)
    assert params.replicas_on_different == ("Aux/rack", "Aux/host")
    assert params.do_not_place_with_regex == "^db"


@pytest.mark.parametrize("key", ["nodes", "hosts", "NODES", "Nodes"])
def test_docker_nodes_and_its_alias(key: str) -> None:
    params = parse_docker_options({key: "node-a node-b"})
    assert params.nodes == ("node-a", "node-b")
    assert params.place_count == 2
    assert params.placement_policy == "manual"


def test_docker_lists_take_commas_or_spaces() -> None:
    assert parse_docker_options({"nodes": "node-a,node-b"}).nodes == ("node-a", "node-b")
    assert parse_docker_options({"nodes": "node-a, node-b"}).nodes == ("node-a", "node-b")
    assert parse_docker_options({"mountopts": "noatime discard"}).mount_opts == ("noatime", "discard")


def test_docker_keys_are_case_insensitive() -> None:
    params = parse_docker_options({"Size": "1G", "FS": "btrfs", "Replicas": "1"})
    assert (params.size_bytes, params.fs_type, params.place_count) == (GIB, "btrfs", 1)


def test_docker_every_table_key_is_known() -> None:
    for spec in DOCKER_OPTIONS:
        for spelling in spec.spellings:
            # an empty value is "not set": known key, defaults stay
            assert parse_docker_options({spelling: ""}) == parse_docker_options(None)


def test_docker_defaults_from_the_config_and_options_override() -> None:
    defaults = {"size": "1G", "replicas": "1", "fs": "xfs"}
    params = parse_docker_options(None, defaults)
    assert (params.size_bytes, params.place_count, params.fs_type) == (GIB, 1, "xfs")
    params = parse_docker_options({"replicas": "3", "SIZE": "5G"}, defaults)
    assert (params.size_bytes, params.place_count, params.fs_type) == (5 * GIB, 3, "xfs")


def test_docker_explicit_nodes_drop_default_autoplace_settings() -> None:
    defaults = {"replicas": "3", "replicasonsame": "zone", "storagepool": "pool1 pool2"}
    params = parse_docker_options({"nodes": "node-a"}, defaults)
    assert params.nodes == ("node-a",)
    assert params.place_count == 1
    assert params.replicas_on_same == ()
    assert params.storage_pools == ()
    # a single default pool is kept: manual placement uses it on every node
    assert parse_docker_options({"nodes": "node-a"}, {"storagepool": "pool1"}).storage_pools == ("pool1",)


def test_docker_explicit_replicas_drop_default_nodes() -> None:
    params = parse_docker_options({"replicas": "2"}, {"nodes": "node-a node-b node-c"})
    assert params.nodes == ()
    assert params.place_count == 2
    assert params.placement_policy == "autoplacetopology"


def test_docker_explicit_pool_list_drops_default_nodes() -> None:
    params = parse_docker_options({"storagepool": "pool1 pool2"}, {"nodes": "node-a"})
    assert params.nodes == ()
    assert params.storage_pools == ("pool1", "pool2")
    # one explicit pool works with manual placement, so default nodes stay
    assert parse_docker_options({"storagepool": "pool1"}, {"nodes": "node-a"}).nodes == ("node-a",)


def test_docker_resource_group_alias() -> None:
    assert parse_docker_options({"resource-group": "rg-one"}).resource_group == "rg-one"


def test_volume_params_are_hashable_and_compare_by_settings() -> None:
    a = parse_docker_options({"replicas": "1"})
    b = parse_docker_options({"REPLICAS": "1"}, {"replicas": "3"})
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, parse_docker_options({"replicas": "2"})}) == 2


def test_docker_contradicting_defaults_are_reported_as_defaults() -> None:
    message = docker_error(None, {"nodes": "node-a", "replicas": "3"})
    assert "(a default from the configuration)" in message


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"replicas": "abc"},
            'invalid value "abc" for option "replicas": expected a whole number from 1 to 16',
        ),
        ({"replicas": "0"}, 'invalid value "0" for option "replicas": expected a whole number from 1 to 16'),
        (
            {"replicas": "17"},
            'invalid value "17" for option "replicas": expected a whole number from 1 to 16',
        ),
        ({"Replicas": "x"}, 'invalid value "x" for option "Replicas": expected a whole number'),
        ({"size": "big"}, 'invalid value "big" for option "size": expected a size such as 10G'),
        ({"size": "10X"}, 'invalid value "10X" for option "size": expected a size such as 10G'),
        ({"size": "-1G"}, 'invalid value "-1G" for option "size": expected a size such as 10G'),
        ({"size": "0"}, 'invalid value "0" for option "size": expected a size greater than zero'),
        ({"size": "1.5"}, 'invalid value "1.5" for option "size": expected a whole number of bytes'),
        ({"size": "2P"}, 'invalid value "2P" for option "size": expected a size of at most 1PiB'),
        ({"size": "100"}, "ext4 needs a volume of at least 2MiB (a number without a unit is bytes"),
        ({"size": "200M", "fs": "xfs"}, "xfs needs a volume of at least 300MiB"),
        ({"size": "100M", "fs": "btrfs"}, "btrfs needs a volume of at least 109MiB"),
        ({"fs": "ntfs"}, 'invalid value "ntfs" for option "fs": expected one of ext4, xfs, btrfs'),
        ({"disklessonremaining": "perhaps"}, 'for option "disklessonremaining": expected true or false'),
        ({"nodes": "node_a"}, "'node_a' is not a valid LINSTOR node name"),
        ({"nodes": "node-a NODE-A"}, "each node may be named only once"),
        ({"storagepool": "p"}, "'p' is not a valid LINSTOR storage pool name (3-48 characters"),
        (
            {"disklessstoragepool": "a b"},
            'for option "disklessstoragepool": expected a valid LINSTOR storage',
        ),
        (
            {"resourcegroup": "all right"},
            'for option "resourcegroup": expected a valid LINSTOR resource group',
        ),
        ({"donotplacewithregex": "("}, "expected a regular expression"),
        ({"fsopts": '-L "x'}, "balanced quotes"),
        ({"mountopts": "a\0b"}, "expected mount options"),
        ({"nodes": "node-a node-b", "replicas": "3"}, 'option "replicas" is 3, but option "nodes" names 2'),
        ({"nodes": "node-a", "storagepool": "pool1 pool2"}, "name one storage pool"),
        ({"nodes": "node-a", "replicasondifferent": "zone"}, 'option "replicasondifferent" only applies'),
        ({"nodes": "node-a", "disklessonremaining": "true"}, 'option "disklessonremaining" only applies'),
        ({"replicas": "2", "REPLICAS": "3"}, "set the same thing to different values"),
        ({"nodes": "node-a", "hosts": "node-b"}, "set the same thing to different values"),
    ],
)
def test_docker_errors(options: dict[str, str], expected: str) -> None:
    assert expected in docker_error(options)


def test_docker_unknown_option_lists_the_allowed_ones() -> None:
    message = docker_error({"colour": "blue"})
    assert message.startswith('unknown option "colour": allowed options are size, fs, fsopts, mountopts,')
    assert "resourcegroup" in message


def test_docker_unknown_default_is_blamed_on_the_configuration() -> None:
    message = docker_error(None, {"colour": "blue"})
    assert message.startswith('unknown option "colour" in the defaults of the configuration')


def test_docker_default_size_respects_the_filesystem_minimum() -> None:
    assert parse_docker_options({"fs": "xfs"}).size_bytes == 300 * MIB
    assert parse_docker_options({"fs": "btrfs"}).size_bytes == 114294784
    assert parse_docker_options({"fs": "ext4"}).size_bytes == 100 * MIB


# --- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4096", 4096),
        ("1K", KIB),
        ("1k", KIB),
        ("1Ki", KIB),
        ("1KiB", KIB),
        ("1kib", KIB),
        ("1KB", 1000),
        ("1kb", 1000),
        ("10M", 10 * MIB),
        ("10MiB", 10 * MIB),
        ("10MB", 10_000_000),
        ("2G", 2 * GIB),
        ("2Gi", 2 * GIB),
        ("2GB", 2_000_000_000),
        ("1T", TIB),
        ("1TiB", TIB),
        ("1TB", 10**12),
        ("1P", 1024**5),
        ("1.5G", 3 * GIB // 2),
        ("0.1K", 103),  # rounded up to a whole byte
        (" 5 G ", 5 * GIB),
        ("7B", 7),
    ],
)
def test_size_units(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_size_upper_bound() -> None:
    assert parse_size("1P") == MAX_SIZE_BYTES


# --- minimum sizes and resource groups ----------------------------------------------------------


def test_minimum_sizes() -> None:
    assert minimum_size_bytes("ext4") == 2 * MIB
    assert minimum_size_bytes("xfs") == 300 * MIB
    assert minimum_size_bytes("XFS") == 300 * MIB
    assert minimum_size_bytes("btrfs") == 114294784
    assert minimum_size_bytes(None) == 4 * KIB
    assert minimum_size_bytes("vfat") == 4 * KIB


def test_resource_group_name_explicit_or_derived() -> None:
    assert resource_group_name(csi(resourceGroup="my-rg")) == "my-rg"
    derived = resource_group_name(csi(placementCount="2"))
    assert re.fullmatch(r"sc-[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", derived)
    assert len(derived) <= 48


def test_identical_settings_share_a_resource_group() -> None:
    a = csi(placementCount="2", storagePool="p-one p-two", mountOpts="noatime", fsOpts="-K")
    b = parse_csi_parameters({NS + "autoPlace": "2", NS + "storagePool": "p-two p-one"})
    assert resource_group_name(a) == resource_group_name(b)
    docker = parse_docker_options({"replicas": "2", "storagepool": "p-one,p-two", "size": "1G"})
    assert resource_group_name(docker) == resource_group_name(a)


@pytest.mark.parametrize(
    "changed",
    [
        {"placementCount": "3"},
        {"storagePool": "p-one"},
        {"disklessStoragePool": "other-pool"},
        {"disklessOnRemaining": "true"},
        {"layerList": "drbd luks storage"},
        {"replicasOnSame": "zone"},
        {"replicasOnDifferent": "zone"},
        {"xReplicasOnDifferent": "zone=1"},
        {"doNotPlaceWithRegex": "x"},
    ],
)
def test_different_settings_get_different_resource_groups(changed: dict[str, str]) -> None:
    base = {"placementCount": "2", "storagePool": "p-one p-two"}
    assert resource_group_name(csi(**base)) != resource_group_name(csi(**{**base, **changed}))


def test_properties_change_the_resource_group() -> None:
    plain = parse_csi_parameters({})
    tuned = parse_csi_parameters({"DrbdOptions/PeerDevice/c-max-rate": "100M"})
    assert resource_group_name(plain) != resource_group_name(tuned)
    assert resource_group_settings(tuned)["properties"] == [["DrbdOptions/PeerDevice/c-max-rate", "100M"]]


def test_parsing_is_pure_and_deterministic() -> None:
    parameters = {NS + "placementCount": "2", "DrbdOptions/Net/protocol": "C"}
    snapshot = dict(parameters)
    assert parse_csi_parameters(parameters) == parse_csi_parameters(parameters)
    assert parameters == snapshot


# --- robustness: any input gives a model or a clear InvalidArgument, never another error ------

CSI_KEYS = [NS + s for spec in CSI_PARAMETERS for s in spec.spellings] + [
    "property.linstor.csi.linbit.com/DrbdOptions/Net/protocol",
    "DrbdOptions/Disk/on-io-error",
    "csi.storage.k8s.io/pvc/name",
]
DOCKER_KEYS = [s for spec in DOCKER_OPTIONS for s in spec.spellings]
VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["1", "2", "true", "no", "1G", "100", "drbd storage", "{a: 1}", "[[[[", "node-a node-b"]),
    st.from_regex(r"[0-9]{1,30}(\.[0-9]{1,5})?[KMGTPkmgtp]?i?[Bb]?", fullmatch=True),
)


@settings(max_examples=400, deadline=None, database=None)
@given(st.dictionaries(st.one_of(st.sampled_from(CSI_KEYS), st.text(max_size=30)), VALUES, max_size=6))
def test_csi_parser_never_fails_unexpectedly(parameters: dict[str, str]) -> None:
    try:
        params = parse_csi_parameters(parameters)
    except InvalidArgument as exc:
        assert str(exc)
    else:
        assert 1 <= params.place_count <= 16
        assert resource_group_name(params)


@settings(max_examples=400, deadline=None, database=None)
@given(
    st.one_of(st.none(), st.dictionaries(st.sampled_from(DOCKER_KEYS), VALUES, max_size=5)),
    st.dictionaries(st.sampled_from(DOCKER_KEYS), VALUES, max_size=3),
)
def test_docker_parser_never_fails_unexpectedly(
    options: dict[str, str] | None, defaults: dict[str, str]
) -> None:
    try:
        params = parse_docker_options(options, defaults)
    except InvalidArgument as exc:
        assert str(exc)
    else:
        assert params.size_bytes is not None
        assert params.size_bytes >= minimum_size_bytes(params.fs_type)
        assert not params.nodes or params.place_count == len(params.nodes)


# --- the examples the project ships must parse ---------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]


def _shipped_storage_classes() -> list[tuple[str, dict[str, str]]]:
    found = []
    for path in sorted((REPO_ROOT / "deploy").rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(document, dict) and document.get("kind") == "StorageClass":
                parameters = {str(k): str(v) for k, v in (document.get("parameters") or {}).items()}
                found.append((str(path.relative_to(REPO_ROOT)), parameters))
    return found


def test_shipped_storage_classes_parse() -> None:
    classes = _shipped_storage_classes()
    assert classes, "deploy/ has no StorageClass example"
    for where, parameters in classes:
        params = parse_csi_parameters(parameters)
        assert params.notes == (), where
        for key, value in parameters.items():
            if key.startswith("property.linstor.csi.linbit.com/"):
                assert (key.split("/", 1)[1], value) in params.properties, where


def test_shipped_nomad_volume_parameters_parse() -> None:
    hcl2 = pytest.importorskip("hcl2")
    specs = sorted((REPO_ROOT / "deploy").rglob("volume*.hcl"))
    assert specs, "deploy/ has no Nomad volume specification"
    for path in specs:
        with path.open(encoding="utf-8") as handle:
            raw = hcl2.load(handle).get("parameters") or {}
        if isinstance(raw, list):  # older python-hcl2 wraps blocks in lists
            raw = {k: v for block in raw for k, v in block.items()}
        parameters = {str(k).strip('"'): str(v).strip('"') for k, v in raw.items()}
        assert parameters, path
        params = parse_csi_parameters(parameters)
        assert params.place_count >= 1


def test_bare_property_names_get_the_drivers_property_namespace() -> None:
    """The official driver prefixes bare names with --property-namespace; Aux/ names stay as written."""
    given = {
        "replicasOnSame": "zone Aux/rack",
        "replicasOnDifferent": "topology.kubernetes.io/zone",
        "xReplicasOnDifferent": "{dc: 2, Aux/row: 1}",
    }
    params = parse_csi_parameters(given, property_namespace="Aux/topology")
    assert params.replicas_on_same == ("Aux/topology/zone", "Aux/rack")
    assert params.replicas_on_different == ("Aux/topology/topology.kubernetes.io/zone",)
    assert params.x_replicas_on_different == (("Aux/row", 1), ("Aux/topology/dc", 2))
    assert parse_csi_parameters(given).replicas_on_same == ("Aux/zone", "Aux/rack")
    # the namespace is part of the placement, so it is part of the derived resource group
    assert resource_group_name(params) != resource_group_name(parse_csi_parameters(given))


def test_parameter_package_stands_below_the_node_layer_and_the_front_ends() -> None:
    # the node layer and both front ends read the parameter rules; the rules read none of them
    code = (
        "import sys, pkgutil, importlib, plugin.params\n"
        "for m in pkgutil.iter_modules(plugin.params.__path__):\n"
        "    importlib.import_module('plugin.params.' + m.name)\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    assert "plugin.params.csi" in loaded
    assert [
        m for m in loaded if m.split(".")[0] in ("csi", "docker_plugin") or m.startswith("plugin.node")
    ] == []
