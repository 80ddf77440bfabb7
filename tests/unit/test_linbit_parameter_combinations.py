"""StorageClasses LINBIT's CSI driver accepts are accepted here: a table of its combinations.

Read from piraeusdatastore/linstor-csi pkg/volume/parameter.go (``NewParameters``) and the
schedulers it picks: a nodeList or clientList makes the placement Manual and clears the
autoplace keys (placementCount, replicasOnSame/Different, doNotPlaceWithRegex,
placementPolicy); a key it has no use for is kept without effect; two spellings of one
key are both read and one wins. Each row is a StorageClass that driver takes; here it is
taken too, the key without effect is ignored the same way, and a note says so (the front
end logs it). The last rows are what LINBIT's driver accepts in the StorageClass but
cannot provision; this driver refuses them at once, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from plugin.errors import InvalidArgument
from plugin.params.csi import parse_csi_parameters
from plugin.params.model import VolumeParams
from plugin.remote_access import policy_text

NS = "linstor.csi.linbit.com/"


@dataclass(frozen=True)
class Row:
    """A StorageClass, what it must become, and the words the note must carry."""

    parameters: dict[str, str]
    expect: dict[str, Any]
    notes: tuple[str, ...] = ()
    why: str = ""
    no_notes: bool = field(default=False)


ROWS = [
    Row(
        {"nodeList": "node-a node-b", "placementCount": "3"},
        {"nodes": ("node-a", "node-b"), "place_count": 2, "placement_policy": "manual"},
        ("placementCount", "places the replicas by hand"),
        why="placementCount is cleared next to a nodeList; one replica per node named",
    ),
    Row(
        {"nodeList": "node-a", "replicasOnSame": "zone", "replicasOnDifferent": "rack"},
        {"replicas_on_same": (), "replicas_on_different": (), "placement_policy": "manual"},
        ("replicasOnSame", "replicasOnDifferent"),
        why="replicasOnSame/Different are cleared next to a nodeList",
    ),
    Row(
        {"nodeList": "node-a", "doNotPlaceWithRegex": "^db-"},
        {"do_not_place_with_regex": ""},
        ("doNotPlaceWithRegex",),
    ),
    Row(
        {"nodeList": "node-a", "xReplicasOnDifferent": "zone=1", "disklessOnRemaining": "true"},
        {"x_replicas_on_different": (), "diskless_on_remaining": False},
        ("xReplicasOnDifferent", "disklessOnRemaining"),
        why="kept by LINBIT's driver in the resource group, but its Manual scheduler never autoplaces",
    ),
    Row(
        {"nodeList": "node-a", "placementPolicy": "AutoPlace"},
        {"placement_policy": "manual"},
        ("placementPolicy", "Manual"),
        why="the policy becomes Manual",
    ),
    Row(
        {"nodeList": "node-a node-b", "storagePool": "pool-a pool-b"},
        {"storage_pools": ("pool-a", "pool-b"), "nodes": ("node-a", "node-b")},
        why="several pools next to a nodeList: LINSTOR picks one of them on each node",
        no_notes=True,
    ),
    Row(
        {"clientList": "node-c", "placementPolicy": "FollowTopology"},
        {"client_nodes": ("node-c",), "placement_policy": "followtopology"},
        ("clientList", "diskless"),
        why="a clientList alone: LINBIT's driver places no replica with data; here LINSTOR does",
    ),
    Row(
        {"clientList": "node-c"},
        {"client_nodes": ("node-c",), "nodes": ()},
        ("without a nodeList",),
    ),
    Row(
        {"clientList": "node-c node-d", "placementCount": "2", "storagePool": "pool-a pool-b"},
        {"client_nodes": ("node-c", "node-d"), "place_count": 2, "storage_pools": ("pool-a", "pool-b")},
        ("without a nodeList",),
        why="LINBIT's driver clears placementCount here and places nothing with data; here it counts",
    ),
    Row(
        {"placementPolicy": "Manual"},
        {"placement_policy": "autoplacetopology"},
        ("placementPolicy", "needs a nodeList"),
        why="Manual without nodes places nothing in LINBIT's driver; LINSTOR places here",
    ),
    Row(
        {"layerList": "luks storage", "disklessStoragePool": "dl-pool"},
        {"diskless_storage_pool": "DfltDisklessStorPool"},
        ("disklessStoragePool", "neither drbd nor nvme"),
    ),
    Row(
        {"layerList": "storage", "allowRemoteVolumeAccess": "true"},
        {"allow_remote_volume_access": False},
        ("allowRemoteVolumeAccess", "read as false"),
        why="no diskless resource can exist, so nothing can be used remotely",
    ),
    Row(
        {"allowRemoteVolumeAccess": "false", "disklessStoragePool": "dl-pool"},
        {"diskless_storage_pool": "DfltDisklessStorPool", "allow_remote_volume_access": False},
        ("disklessStoragePool", "nothing is ever diskless"),
    ),
    Row(
        {"placementCount": "2", "autoPlace": "3"},
        {"place_count": 2},
        ("autoPlace", "ignored"),
        why="two spellings: LINBIT's map order decides; here the canonical name wins",
    ),
    Row(
        {NS + "placementCount": "3", "placementCount": "2"},
        {"place_count": 3},
        ("placementCount", "ignored"),
        why="the namespaced spelling wins over the bare one",
    ),
    Row(
        {"encryption": "true", "sizeKiB": "1024", "nfsSquash": "all_squash"},
        {"place_count": 1},
        ("encryption", "sizeKiB", "nfsSquash"),
    ),
    Row(
        {"qos.linbit.com/rbps": "40Mi", "qos.linbit.com/device": "/dev/x", "example.com/other": "1"},
        {},
        ("qos.linbit.com/device",),
        why="the nri-volume-qos device key is the driver's to write, not the StorageClass's",
    ),
    Row(
        {
            "placementCount": "2",
            "storagePool": "pool-a",
            "replicasOnDifferent": "topology.kubernetes.io/zone",
            "allowRemoteVolumeAccess": "- fromSame:\n  - topology.kubernetes.io/zone\n",
            "DrbdOptions/Net/protocol": "C",
            "property.linstor.csi.linbit.com/DrbdOptions/auto-quorum": "suspend-io",
        },
        {"place_count": 2, "remote_access_from_same": (("topology.kubernetes.io/zone",),)},
        no_notes=True,
        why="an ordinary Piraeus StorageClass: no note at all",
    ),
]


def _spelled(parameters: dict[str, str]) -> dict[str, str]:
    """Driver keys as StorageClasses usually spell them (namespaced); others as written."""
    out = {}
    for key, value in parameters.items():
        plain = "/" not in key and key not in ("placementCount", "autoPlace")
        out[NS + key if plain else key] = value
    return out


@pytest.mark.parametrize("row", ROWS, ids=[" ".join(sorted(r.parameters))[:60] for r in ROWS])
def test_linbit_accepts_so_do_we(row: Row) -> None:
    params = parse_csi_parameters(_spelled(row.parameters))
    for fld, value in row.expect.items():
        assert getattr(params, fld) == value, (fld, row.why)
    text = " | ".join(params.notes)
    for word in row.notes:
        assert word in text, (word, text)
    if row.no_notes:
        assert params.notes == ()


REFUSED = [
    ({"nodeList": "node-a node-b", "clientList": "node-b"}, "both name node-b"),
    ({"layerList": "storage", "nodeList": "node-a", "clientList": "node-b"}, "neither drbd nor nvme"),
    ({"layerList": "storage", "disklessOnRemaining": "true"}, "neither drbd nor nvme"),
    ({"placementCount": "x"}, "expected a whole number"),
    ({"noSuchKey": "1"}, "unknown parameter"),
    ({"qos.linbit.com/wbps": "fast"}, "qos.linbit.com/wbps"),
]


@pytest.mark.parametrize(("parameters", "words"), REFUSED)
def test_what_cannot_be_provisioned_is_refused_at_once(parameters: dict[str, str], words: str) -> None:
    """LINBIT's driver refuses these too: at parse time (bad values, unknown keys), or at provisioning."""
    with pytest.raises(InvalidArgument) as info:
        parse_csi_parameters(_spelled(parameters))
    assert words in str(info.value)


def test_remote_access_policy_is_spelled_as_linbit_writes_it() -> None:
    assert policy_text(True, ()) == "true"
    assert policy_text(False, ()) == "false"
    rules = parse_csi_parameters({NS + "allowRemoteVolumeAccess": '[{"fromSame": ["zone", "rack"]}]'})
    text = policy_text(rules.allow_remote_volume_access, rules.remote_access_from_same)
    assert text == "- fromSame:\n  - rack\n  - zone\n"
    again = parse_csi_parameters({NS + "allowRemoteVolumeAccess": text})  # it reads back the same
    assert again.remote_access_from_same == rules.remote_access_from_same


def test_defaults_match_linbits_zero_values() -> None:
    params = parse_csi_parameters({})
    assert params == VolumeParams()
    assert (params.place_count, params.diskless_storage_pool, params.placement_policy) == (
        1,
        "DfltDisklessStorPool",
        "autoplacetopology",
    )
