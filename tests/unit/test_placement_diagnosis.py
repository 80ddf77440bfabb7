"""Which wish of a failed placement nothing in the cluster satisfies, from one pool listing."""

from __future__ import annotations

from typing import Any

import pytest

from plugin.linstor import retcodes as rc
from plugin.linstor.records import StoragePool
from plugin.params.model import VolumeParams
from plugin.params.values import human_size
from plugin.placement_diagnosis import PlacementWish, diagnose, listing, wish_for

GIB_KIB = 1024 * 1024
OFFLINE = rc.MASK_WARN | rc.WARN_NOT_CONNECTED


def _pool_wire(node: str, name: str, free_kib: int | None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"node_name": node, "storage_pool_name": name, "provider_kind": "LVM_THIN"}
    if free_kib is not None:
        entry["free_capacity"] = free_kib
        entry["total_capacity"] = 2 * free_kib
    entry.update(extra)
    return entry


def pool(
    node: str, name: str = "DfltStorPool", free_kib: int | None = 100 * GIB_KIB, **extra: Any
) -> StoragePool:
    return StoragePool.from_wire(_pool_wire(node, name, free_kib, **extra))


def diskless(node: str) -> StoragePool:
    return StoragePool.from_wire(
        {"node_name": node, "storage_pool_name": "DfltDisklessStorPool", "provider_kind": "DISKLESS"}
    )


def offline(node: str, name: str = "DfltStorPool") -> StoragePool:
    entry = _pool_wire(node, name, free_kib=None)
    entry["reports"] = [
        {"ret_code": OFFLINE - (1 << 64), "message": f"No active connection to satellite '{node}'"}
    ]
    return StoragePool.from_wire(entry)


CLUSTER = [pool("a"), pool("b"), pool("c", "ssd"), diskless("a"), diskless("b"), diskless("c")]


def test_a_node_that_is_no_linstor_node_is_named() -> None:
    cause = diagnose(PlacementWish(replicas=2, size_kib=1024, nodes=("a", "nope")), CLUSTER)
    assert cause is not None and cause.unknown_name
    assert cause.sentence == "node nope is not a LINSTOR node (LINSTOR nodes: a, b and c)"


def test_node_names_compare_without_case() -> None:
    assert diagnose(PlacementWish(replicas=2, size_kib=1024, nodes=("A", "B")), CLUSTER) is None


def test_a_pool_that_exists_nowhere_is_named() -> None:
    cause = diagnose(PlacementWish(replicas=1, size_kib=1024, storage_pools=("fast",)), CLUSTER)
    assert cause is not None and cause.unknown_name
    # diskless pools are no candidates for replicas and are not offered
    assert (
        cause.sentence == "storage pool fast does not exist on any node (storage pools: DfltStorPool and ssd)"
    )


def test_a_pool_missing_on_a_named_node_is_named() -> None:
    wish = PlacementWish(replicas=2, size_kib=1024, nodes=("a", "c"), storage_pools=("ssd",))
    cause = diagnose(wish, CLUSTER)
    assert cause is not None and cause.unknown_name
    assert cause.sentence == "node a has no storage pool ssd"


def test_too_many_replicas_says_how_many_nodes_qualify() -> None:
    cause = diagnose(PlacementWish(replicas=3, size_kib=1024, storage_pools=("DfltStorPool",)), CLUSTER)
    assert cause is not None and not cause.unknown_name
    assert cause.sentence == (
        "3 replicas asked for, but only 2 nodes have storage pool DfltStorPool (a and b)"
    )
    cause = diagnose(PlacementWish(replicas=4, size_kib=1024), CLUSTER)
    assert cause is not None
    assert cause.sentence == "4 replicas asked for, but only 3 nodes have a storage pool (a, b and c)"


def test_offline_nodes_are_named_and_do_not_count() -> None:
    pools = [pool("a"), offline("b"), diskless("a"), diskless("b")]
    cause = diagnose(PlacementWish(replicas=2, size_kib=1024), pools)
    assert cause is not None
    assert cause.sentence == "2 replicas asked for, but only 1 node has a storage pool (a); b is offline"


def test_a_named_node_with_only_a_diskless_pool_is_named() -> None:
    pools = [pool("a"), diskless("a"), diskless("client")]
    cause = diagnose(PlacementWish(replicas=2, size_kib=1024, nodes=("a", "client")), pools)
    assert cause is not None and not cause.unknown_name
    assert cause.sentence == "2 replicas asked for, but only 1 node has a storage pool (a); client has none"


def test_a_size_no_pool_can_hold_is_given_in_human_units() -> None:
    ten_tib_kib = 10 * 1024 * GIB_KIB
    pools = [pool("a", free_kib=95 * GIB_KIB), pool("b", free_kib=9 * GIB_KIB + GIB_KIB // 2), diskless("a")]
    cause = diagnose(PlacementWish(replicas=1, size_kib=ten_tib_kib), pools)
    assert cause is not None and not cause.unknown_name
    assert cause.sentence == (
        "no storage pool has 10 TiB free; "
        "the most free space is 95 GiB in storage pool DfltStorPool on node a"
    )
    assert "10995116277760" not in cause.sentence


def test_a_size_that_fits_too_few_nodes() -> None:
    pools = [pool("a", free_kib=50 * GIB_KIB), pool("b", free_kib=5 * GIB_KIB)]
    cause = diagnose(PlacementWish(replicas=2, size_kib=20 * GIB_KIB), pools)
    assert cause is not None
    assert cause.sentence.startswith("only 1 node has 20 GiB free in a storage pool (a), 2 are needed")
    assert cause.sentence.endswith("the most free space is 50 GiB in storage pool DfltStorPool on node a")


def test_a_cause_it_cannot_see_is_left_to_linstor() -> None:
    # enough nodes, enough room: replicas-on-different rules or the like refused it
    assert diagnose(PlacementWish(replicas=2, size_kib=1024), CLUSTER) is None


def test_topology_allowed_nodes_limit_the_count() -> None:
    wish = PlacementWish(replicas=2, size_kib=1024, allowed_nodes=("c",))
    cause = diagnose(wish, CLUSTER)
    assert cause is not None
    assert "among the nodes the topology allows (c)" in cause.sentence


def test_an_explicit_resource_group_keeps_its_own_count() -> None:
    wish = wish_for(VolumeParams(place_count=3, resource_group="rg1"), 1024)
    assert wish.replicas is None
    assert diagnose(wish, CLUSTER) is None
    assert wish_for(VolumeParams(nodes=("a", "b")), 1024).replicas == 2


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (10 * 1024**4, "10 TiB"),
        (int(9.5 * 1024**3), "9.5 GiB"),
        (100 * 1024**2, "100 MiB"),
        (4096, "4 KiB"),
        (512, "512 bytes"),
        (1, "1 byte"),
        (1024**5, "1 PiB"),
    ],
)
def test_human_sizes(size: int, text: str) -> None:
    assert human_size(size) == text


def test_exact_sizes_add_the_bytes_only_when_rounded() -> None:
    assert human_size(1024**3, exact=True) == "1 GiB"
    assert human_size(1024**3 + 1, exact=True) == "1.0 GiB (1073741825 bytes)"


def test_long_lists_are_cut() -> None:
    assert listing([f"n{i}" for i in range(12)], limit=3) == "n0, n1, n2 and 9 more"
    assert listing([]) == "none"
