"""Where replicas go: resource-group select filters and CSI topology as LINSTOR node lists.

Pure functions: they turn :class:`VolumeParams` into the LINSTOR ``select_filter`` of a
resource group, and CSI accessibility requirements into an ordered node list, given the
node and pool listings the caller fetched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from plugin.linstor.records import Node, StoragePool
from plugin.models import TopologyRequirement
from plugin.params.model import DEFAULT_DISKLESS_POOL, DEFAULT_PROPERTY_NAMESPACE, VolumeParams

HOSTNAME_KEY = "linbit.com/hostname"
POOL_KEY_PREFIX = "linbit.com/sp-"


def select_filter(params: VolumeParams) -> dict[str, Any]:
    """The resource group's autoplace filter for a parameter set (empty lists left out)."""
    sf: dict[str, Any] = {"place_count": params.place_count}
    if params.storage_pools:
        sf["storage_pool_list"] = list(params.storage_pools)
    if params.diskless_on_remaining:
        sf["diskless_on_remaining"] = True
    if params.layer_list:
        sf["layer_stack"] = [layer.upper() for layer in params.layer_list]
    if params.replicas_on_same:
        sf["replicas_on_same"] = list(params.replicas_on_same)
    if params.replicas_on_different:
        sf["replicas_on_different"] = list(params.replicas_on_different)
    if params.x_replicas_on_different:
        sf["x_replicas_on_different_map"] = dict(params.x_replicas_on_different)
    if params.do_not_place_with_regex:
        sf["not_place_with_rsc_regex"] = params.do_not_place_with_regex
    if params.diskless_storage_pool and params.diskless_storage_pool != DEFAULT_DISKLESS_POOL:
        sf["storage_pool_diskless_list"] = [params.diskless_storage_pool]
    return sf


def filter_differences(wanted: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``wanted`` a resource group's filter does not have yet (lists order-free)."""

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, list) and isinstance(b, list):
            return sorted(map(str, a)) == sorted(map(str, b))
        return bool(a == b)

    return {k: v for k, v in wanted.items() if not same(v, current.get(k))}


def property_conflicts(wanted: Iterable[tuple[str, str]], current: Mapping[str, str]) -> list[str]:
    return [key for key, value in wanted if key in current and current[key] != value]


def segment_nodes(
    segment: Mapping[str, str],
    nodes: Sequence[Node] | None,
    pools: Sequence[StoragePool] | None,
    namespace: str = DEFAULT_PROPERTY_NAMESPACE,
) -> list[str]:
    """Node names matching every key of one topology segment.

    ``linbit.com/hostname`` names the node; ``linbit.com/sp-<pool>: "true"`` needs that
    pool on the node; any other key is the node property ``<namespace>/<key>``, as in
    NodeGetInfo.
    """
    candidates: list[str] | None = None
    if HOSTNAME_KEY in segment:
        candidates = [segment[HOSTNAME_KEY]]
    for key, value in segment.items():
        if key == HOSTNAME_KEY:
            continue
        if key.startswith(POOL_KEY_PREFIX):
            pool = key[len(POOL_KEY_PREFIX) :]
            having = {p.node for p in pools or () if p.name == pool}
            matches = sorted(having) if value == "true" else sorted({n.name for n in nodes or ()} - having)
        else:
            matches = [n.name for n in nodes or () if n.props.get(f"{namespace}/{key}") == value]
        candidates = matches if candidates is None else [n for n in candidates if n in matches]
    return candidates or []


def needs_node_listing(topology: TopologyRequirement | None) -> tuple[bool, bool]:
    """(needs the node list, needs the pool list) to resolve the segments."""
    segments = list(topology.requisite + topology.preferred) if topology else []
    keys = {k for s in segments for k in s}
    needs_pools = any(k.startswith(POOL_KEY_PREFIX) for k in keys)
    needs_nodes = any(k != HOSTNAME_KEY for k in keys)
    return needs_nodes or needs_pools, needs_pools


def topology_nodes(
    topology: TopologyRequirement | None,
    nodes: Sequence[Node] | None = None,
    pools: Sequence[StoragePool] | None = None,
    namespace: str = DEFAULT_PROPERTY_NAMESPACE,
) -> tuple[list[str], bool]:
    """(ordered candidate nodes, whether they are required).

    Preferred segments come first, in their order. With requisite segments the list is
    the requisite nodes and they are required; with only preferred segments it is a
    preference. An empty requirement (Nomad sends one) means anywhere: ``([], False)``.
    """
    if topology is None:
        return [], False
    ordered: list[str] = []
    for segment in topology.preferred:
        for node in segment_nodes(segment, nodes, pools, namespace):
            if node not in ordered:
                ordered.append(node)
    if not topology.requisite:
        return ordered, False
    allowed: list[str] = []
    for segment in topology.requisite:
        for node in segment_nodes(segment, nodes, pools, namespace):
            if node not in allowed:
                allowed.append(node)
    first = [n for n in ordered if n in allowed]
    return first + [n for n in allowed if n not in first], True
