"""The autoplacer's candidate filter and selection, without a server."""

from __future__ import annotations

from emulator import placement
from emulator.placement import Candidate

TIB = 1024 * 1024 * 1024


def cand(node: str, free: int = TIB, total: int = TIB, reserved: int = 0, **kw) -> Candidate:  # type: ignore[no-untyped-def]
    return Candidate(node=node, pool="DfltStorPool", provider="FILE_THIN", total_kib=total, free_kib=free,
                     reserved_kib=reserved, **kw)  # fmt: skip


def names(chosen: list[Candidate] | None) -> list[str] | None:
    return None if chosen is None else [c.node for c in chosen]


def test_not_enough_nodes_returns_none() -> None:
    assert placement.select([cand("a")], {"place_count": 2}, "R", 1024, 2) is None
    assert placement.select([], {}, "R", 1024, 1) is None
    assert placement.select([cand("a")], {}, "R", 1024, 0) == []


def test_most_free_space_first_then_least_reserved() -> None:
    chosen = placement.select([cand("a", free=TIB // 2), cand("b"), cand("c")], {}, "R", 1024, 2)
    assert names(chosen) == ["b", "c"]
    spread = placement.select([cand("a", reserved=10 * TIB), cand("b", reserved=TIB)], {}, "R", 1024, 1)
    assert names(spread) == ["b"]


def test_filters_exclude_candidates() -> None:
    offline = cand("a", online=False)
    not_target = cand("b", eligible=False)
    has_it = cand("c", resources_on_node=frozenset({"R"}))
    ok = cand("d")
    assert names(placement.select([offline, not_target, has_it, ok], {}, "R", 1024, 1)) == ["d"]
    assert placement.select([offline, not_target, has_it], {}, "R", 1024, 1) is None
    assert names(placement.select([cand("a"), cand("b")], {"node_name_list": ["B"]}, "R", 1, 1)) == ["b"]
    assert placement.select([cand("a")], {"storage_pool_list": ["other"]}, "R", 1, 1) is None
    assert names(placement.select([cand("a")], {"storage_pool": "dfltstorpool"}, "R", 1, 1)) == ["a"]
    assert placement.select([cand("a")], {"provider_list": ["LVM"]}, "R", 1, 1) is None
    avoid = cand("a", resources_on_node=frozenset({"OTHER"}))
    assert placement.select([avoid], {"not_place_with_rsc": ["other"]}, "R", 1, 1) is None
    assert placement.select([avoid], {"not_place_with_rsc_regex": "oth.*"}, "R", 1, 1) is None


def test_space_estimate_uses_thin_oversubscription_and_min_free() -> None:
    small = cand("a", free=1000, total=10000)
    assert small.estimated_free_kib() == min(1000 * 20, 10000 * 20)
    assert names(placement.select([small], {}, "R", 20000, 1)) == ["a"]
    assert placement.select([small], {}, "R", 20001, 1) is None
    almost_full = cand("a", free=999, total=10000)
    assert placement.select([almost_full], {}, "R", 1, 1) is None
    reserved = cand("a", free=10000, total=10000, reserved=199000)
    assert placement.select([reserved], {}, "R", 2000, 1) is None
    unknown = Candidate(node="a", pool="p", provider="FILE_THIN")
    assert names(placement.select([unknown], {}, "R", TIB, 1)) == ["a"]


def test_replicas_on_same_and_different() -> None:
    cs = [
        cand("a", node_props={"Aux/zone": "z1", "Aux/rack": "r1"}),
        cand("b", node_props={"Aux/zone": "z2", "Aux/rack": "r1"}),
        cand("c", node_props={"Aux/zone": "z1", "Aux/rack": "r2"}),
    ]
    assert names(placement.select(cs, {"replicas_on_same": ["Aux/zone"]}, "R", 1, 2)) == ["a", "c"]
    assert names(placement.select(cs, {"replicas_on_different": ["Aux/rack"]}, "R", 1, 2)) == ["a", "c"]
    both = {"replicas_on_different": ["Aux/zone"], "replicas_on_same": ["Aux/rack"]}
    assert names(placement.select(cs, both, "R", 1, 2)) == ["a", "b"]
    existing = [{"Aux/zone": "z2"}]
    assert names(placement.select(cs, {"replicas_on_same": ["Aux/zone"]}, "R", 1, 1, existing)) == ["b"]
    assert placement.select(cs, {"x_replicas_on_different_map": {"Aux/zone": 1}}, "R", 1, 3) is None


def test_merge_filters_request_wins_where_set() -> None:
    group = {"place_count": 2, "storage_pool_list": ["a"], "layer_stack": ["DRBD", "STORAGE"]}
    merged = placement.merge_filters(group, {"place_count": 3, "storage_pool_list": None})
    assert merged == {"place_count": 3, "storage_pool_list": ["a"], "layer_stack": ["DRBD", "STORAGE"]}
