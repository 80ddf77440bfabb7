"""The autoplacer: which storage pools on which nodes get the next diskful replicas.

Pure logic over a snapshot of candidate pools, so it is unit-tested without a server.
It follows the controller's rules (``StorPoolFilter``, ``FreeCapacityAutoPoolSelectorUtils``):
a pool qualifies when its node is online and eligible, its names and provider match the
filter, and its estimated free space covers the definition; among qualifying pools the
ones with most free space win, one pool per node.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from emulator import names
from emulator import retcodes as rc

#: ``MaxOversubscriptionRatio`` default for thin pools.
THIN_OVERSUBSCRIPTION = 20.0
#: ``Autoplacer/MinThinFreeSpace`` default: a thin pool must keep 10 % of its capacity free.
MIN_THIN_FREE_FRACTION = 0.10
#: Cap on combinations examined for replicas_on_same/different before giving up.
_MAX_COMBINATIONS = 20000

FILTER_FIELDS = (
    "place_count",
    "additional_place_count",
    "node_name_list",
    "storage_pool",
    "storage_pool_list",
    "storage_pool_diskless_list",
    "not_place_with_rsc",
    "not_place_with_rsc_regex",
    "replicas_on_same",
    "replicas_on_different",
    "x_replicas_on_different_map",
    "layer_stack",
    "provider_list",
    "diskless_on_remaining",
    "diskless_type",
    "port_count",
    "overprovision",
)


@dataclass
class Candidate:
    """One diskful storage pool on one node, as the autoplacer sees it."""

    node: str
    pool: str
    provider: str
    node_props: Mapping[str, str] = field(default_factory=dict)
    online: bool = True
    eligible: bool = True
    #: Upper-cased names of resource definitions already deployed on the node.
    resources_on_node: AbstractSet[str] = frozenset()
    total_kib: int | None = None
    free_kib: int | None = None
    reserved_kib: int = 0
    thin: bool = True

    def estimated_free_kib(self) -> float | None:
        """``min(free * R, total * R - reserved)`` with R the oversubscription ratio."""
        if self.total_kib is None or self.free_kib is None:
            return None
        ratio = THIN_OVERSUBSCRIPTION if self.thin else 1.0
        return min(self.free_kib * ratio, self.total_kib * ratio - self.reserved_kib)


def merge_filters(group: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
    """Request fields win where set (not None); the rest come from the resource group."""
    merged = {k: v for k, v in group.items() if v is not None}
    for k, v in request.items():
        if v is not None:
            merged[k] = v
    return merged


def pool_names(flt: Mapping[str, Any]) -> list[str] | None:
    """The storage pool restriction of a filter (``storage_pool`` or ``storage_pool_list``)."""
    names: list[str] = []
    if flt.get("storage_pool_list"):
        names.extend(flt["storage_pool_list"])
    if flt.get("storage_pool"):
        names.append(flt["storage_pool"])
    return [n.upper() for n in names] or None


def qualifies(c: Candidate, flt: Mapping[str, Any], rd_key: str, required_kib: int) -> str | None:
    """Why the candidate pool cannot take a replica of ``rd_key``, or None."""
    if not c.online:
        return "node offline"
    if not c.eligible:
        return "node not an autoplace target"
    if rd_key in c.resources_on_node:
        return "resource already on node"
    nodes = flt.get("node_name_list")
    if nodes and c.node.upper() not in {n.upper() for n in nodes}:
        return "node not in node list"
    pools = pool_names(flt)
    if pools and c.pool.upper() not in pools:
        return "storage pool not in list"
    providers = flt.get("provider_list")
    if providers and c.provider.upper() not in {p.upper() for p in providers}:
        return "provider not in list"
    avoid = {n.upper() for n in flt.get("not_place_with_rsc") or []}
    if avoid & c.resources_on_node:
        return "node has a resource to avoid"
    regex = flt.get("not_place_with_rsc_regex")
    if regex:
        pattern = re.compile(regex, re.IGNORECASE)
        if any(pattern.fullmatch(r) for r in c.resources_on_node):
            return "node has a resource matching the avoid regex"
    est = c.estimated_free_kib()
    if est is not None:
        if est < required_kib:
            return "not enough free space"
        if c.thin and c.total_kib is not None and c.free_kib < c.total_kib * MIN_THIN_FREE_FRACTION:
            return "thin pool below minimum free space"
    return None


def _props_ok(chosen: Iterable[Mapping[str, str]], flt: Mapping[str, Any]) -> bool:
    props = list(chosen)
    for key in flt.get("replicas_on_same") or []:
        k, _, fixed = key.partition("=")
        values = {p.get(k) for p in props}
        if None in values or len(values) > 1 or (fixed and values != {fixed}):
            return False
    for key in flt.get("replicas_on_different") or []:
        values = [p.get(key) for p in props if p.get(key) is not None]
        if len(values) != len(set(values)):
            return False
    for key, limit in (flt.get("x_replicas_on_different_map") or {}).items():
        counts: dict[str | None, int] = {}
        for p in props:
            counts[p.get(key)] = counts.get(p.get(key), 0) + 1
        if any(n > limit for n in counts.values()):
            return False
    return True


def select(
    candidates: Iterable[Candidate],
    flt: Mapping[str, Any],
    rd_key: str,
    required_kib: int,
    need: int,
    existing_node_props: Iterable[Mapping[str, str]] = (),
) -> list[Candidate] | None:
    """Pick ``need`` pools on distinct nodes, or None when no set satisfies the filter."""
    if need <= 0:
        return []
    best_per_node: dict[str, Candidate] = {}
    for c in candidates:
        if qualifies(c, flt, rd_key, required_kib) is not None:
            continue
        current = best_per_node.get(c.node.upper())
        if current is None or _rank(c) < _rank(current):
            best_per_node[c.node.upper()] = c
    ordered = sorted(best_per_node.values(), key=_rank)
    if len(ordered) < need:
        return None
    existing = list(existing_node_props)
    constrained = any(
        flt.get(k) for k in ("replicas_on_same", "replicas_on_different", "x_replicas_on_different_map")
    )
    if not constrained:
        return ordered[:need]
    for n, combo in enumerate(combinations(ordered, need)):
        if n >= _MAX_COMBINATIONS:
            break
        if _props_ok([*existing, *(c.node_props for c in combo)], flt):
            return list(combo)
    return None


def _rank(c: Candidate) -> tuple[float, int, str, str]:
    """Most estimated free space first; among equals (virtual nodes share one filesystem)
    the pool with the least already reserved, so replicas spread out; then by name."""
    est = c.estimated_free_kib() or 0.0
    # Compare free space at 1 % of capacity: pools sharing a filesystem see it move between calls.
    step = max((c.total_kib or 0) / 100.0, 1.0)
    return (-float(int(est / step)), c.reserved_kib, c.node.upper(), c.pool.upper())


def check_filter(flt: dict[str, Any] | None, op: int, obj: int) -> dict[str, Any]:
    """Validate a select filter the way the controller does before storing or using it."""
    flt = {k: v for k, v in (flt or {}).items() if v is not None}
    pc = flt.get("place_count")
    if pc is not None and pc < 1:
        raise rc.ApiFailure(
            rc.error(rc.FAIL_INVLD_PLACE_COUNT, f"Invalid place count: {pc} (minimum is 1)", op, obj)
        )
    apc = flt.get("additional_place_count")
    if apc is not None and apc < 0:
        raise rc.ApiFailure(
            rc.error(rc.FAIL_INVLD_PLACE_COUNT, f"Invalid additional place count: {apc}", op, obj)
        )
    for p in [
        *(flt.get("storage_pool_list") or []),
        *([flt["storage_pool"]] if flt.get("storage_pool") else []),
    ]:
        rc.refuse_invalid(names.storage_pool_name_problem(p), rc.FAIL_INVLD_STOR_POOL_NAME, op, obj)
    for n in flt.get("node_name_list") or []:
        rc.refuse_invalid(names.node_name_problem(n), rc.FAIL_INVLD_NODE_NAME, op, obj)
    if "layer_stack" in flt:
        flt["layer_stack"] = [s.upper() for s in flt["layer_stack"]]
    return flt
