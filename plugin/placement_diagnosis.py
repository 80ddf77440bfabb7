"""Why LINSTOR could not place a volume, in words a user can act on.

The controller answers every failed autoplace with one code (``FAIL_NOT_ENOUGH_NODES``,
"Not enough available nodes"): its filter silently drops a node name or a pool name it
does not know, a pool without room and a node that is offline alike. After such a failure
:func:`refusal` reads the storage pools once (``GET /v1/view/storage-pools``: every node
with a satellite has at least its diskless pool there), and :func:`diagnose`, a pure
function of that listing, says which of the request's wishes nothing in the cluster
satisfies: a node that does not exist, a storage pool that does not exist (anywhere, or
on a named node), more replicas than nodes that qualify, or a size no qualifying pool has
free. When none of these explains it (replicas-on-same rules, an explicit resource
group's own filter), the error keeps LINSTOR's own words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from plugin.errors import InvalidArgument, NoSpace, VolumeError
from plugin.linstor import retcodes as rc
from plugin.linstor.records import StoragePool
from plugin.params.model import VolumeParams
from plugin.params.values import human_size

#: At most this many names are listed in a message ("known nodes: a, b, c and 12 more").
MAX_LISTED = 8


@dataclass(frozen=True)
class PlacementWish:
    """What the failed placement asked for."""

    replicas: int | None  # None: the resource group's own count, unknown here
    size_kib: int
    nodes: tuple[str, ...] = ()  # diskful replicas on exactly these nodes (manual placement)
    storage_pools: tuple[str, ...] = ()
    allowed_nodes: tuple[str, ...] = ()  # nodes the topology allows, when it requires them


@dataclass(frozen=True)
class Cause:
    """One sentence, and whether the request named something that does not exist."""

    sentence: str
    unknown_name: bool  # a node or pool that does not exist: a bad request, not a full cluster


def placement_asked(params: VolumeParams) -> str:
    """What the placement asked for, in words: LINSTOR's refusal names no pool or node."""
    count = len(params.nodes) if params.nodes else params.place_count
    words = [f"{count} replica{'' if count == 1 else 's'}"]
    if params.nodes:
        words.append("on " + ", ".join(params.nodes))
    if params.storage_pools:
        words.append("in storage pool " + ", ".join(params.storage_pools))
    if params.resource_group:
        words.append(f"of resource group {params.resource_group}")
    return " ".join(words)


def refusal(
    exc: NoSpace,
    name: str,
    size_kib: int,
    params: VolumeParams,
    allowed_nodes: Sequence[str],
    read_pools: Callable[[], list[StoragePool]],
) -> VolumeError:
    """The error for a refused placement: the cause where one read of the pools shows it
    (an unknown node or pool is a bad request, the rest is no space), else LINSTOR's words."""
    asked = f"{human_size(size_kib * 1024)}, {placement_asked(params)}"
    cause = None
    if rc.code_of(exc) == rc.FAIL_NOT_ENOUGH_NODES:
        try:
            pools = read_pools()
        except VolumeError:
            pools = None  # the refusal stands as LINSTOR worded it
        if pools is not None:
            cause = diagnose(wish_for(params, size_kib, allowed_nodes), pools)
    if cause is None:
        return NoSpace(f"LINSTOR cannot place volume {name!r} ({asked}): {exc.message}", **exc.details)
    error = InvalidArgument if cause.unknown_name else NoSpace
    return error(f"cannot place volume {name!r} ({asked}): {cause.sentence}", **exc.details)


def wish_for(params: VolumeParams, size_kib: int, allowed_nodes: Sequence[str] = ()) -> PlacementWish:
    """The wish of a parameter set. An explicit resource group that existed before keeps its
    own place count, which this request does not know: the count is then not checked."""
    replicas = len(params.nodes) if params.nodes else params.place_count
    return PlacementWish(
        replicas=None if params.resource_group and not params.nodes else replicas,
        size_kib=size_kib,
        nodes=tuple(params.nodes),
        storage_pools=tuple(params.storage_pools),
        allowed_nodes=tuple(allowed_nodes),
    )


def listing(names: Sequence[str], limit: int = MAX_LISTED) -> str:
    """``a, b and c``; long lists are cut (``a, b, ... and 12 more``)."""
    items = list(names)
    if not items:
        return "none"
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def diagnose(wish: PlacementWish, pools: Sequence[StoragePool]) -> Cause | None:
    """The cause of a failed placement, from one storage-pool listing; None when unclear."""
    node_names: dict[str, str] = {}
    pool_names: dict[str, str] = {}
    for pool in pools:
        node_names.setdefault(pool.node.upper(), pool.node)
        if not pool.diskless:
            pool_names.setdefault(pool.name.upper(), pool.name)
    return (
        _unknown_nodes(wish, node_names)
        or _unknown_pools(wish, pool_names, pools)
        or _too_few_nodes(wish, pools)
        or _too_large(wish, pools)
    )


def _unknown_nodes(wish: PlacementWish, known: Mapping[str, str]) -> Cause | None:
    missing = [n for n in wish.nodes if n.upper() not in known]
    if not missing:
        return None
    verb = "is not a LINSTOR node" if len(missing) == 1 else "are not LINSTOR nodes"
    return Cause(
        f"node {listing(missing)} {verb} (LINSTOR nodes: {listing(sorted(known.values()))})",
        unknown_name=True,
    )


def _unknown_pools(
    wish: PlacementWish, known: Mapping[str, str], pools: Sequence[StoragePool]
) -> Cause | None:
    missing = [p for p in wish.storage_pools if p.upper() not in known]
    if missing:
        verb = "does not exist on any node" if len(missing) == 1 else "do not exist on any node"
        return Cause(
            f"storage pool {listing(missing)} {verb} (storage pools: {listing(sorted(known.values()))})",
            unknown_name=True,
        )
    if not wish.nodes or not wish.storage_pools:
        return None
    wanted = {p.upper() for p in wish.storage_pools}
    having = {p.node.upper() for p in pools if p.name.upper() in wanted}
    lacking = [n for n in wish.nodes if n.upper() not in having]
    if not lacking:
        return None
    return Cause(
        f"node {listing(lacking)} {'has' if len(lacking) == 1 else 'have'} no storage pool "
        f"{listing(list(wish.storage_pools))}",
        unknown_name=True,
    )


def _eligible(wish: PlacementWish, pools: Sequence[StoragePool]) -> list[StoragePool]:
    """Diskful pools of the wanted names on the wanted (or allowed) nodes, online or not."""
    wanted_pools = {p.upper() for p in wish.storage_pools}
    wanted_nodes = {n.upper() for n in (wish.nodes or wish.allowed_nodes)}
    return [
        p
        for p in pools
        if not p.diskless
        and (not wanted_pools or p.name.upper() in wanted_pools)
        and (not wanted_nodes or p.node.upper() in wanted_nodes)
    ]


def _where(wish: PlacementWish, article: str = "a ") -> str:
    named = f"storage pool {listing(list(wish.storage_pools))}"
    pools = named if wish.storage_pools else f"{article}storage pool"
    if wish.allowed_nodes and not wish.nodes:
        return f"{pools} among the nodes the topology allows ({listing(list(wish.allowed_nodes))})"
    return pools


def _too_few_nodes(wish: PlacementWish, pools: Sequence[StoragePool]) -> Cause | None:
    if wish.replicas is None:
        return None
    eligible = _eligible(wish, pools)
    online = sorted({p.node for p in eligible if not p.offline})
    offline = sorted({p.node for p in eligible if p.offline} - set(online))
    if len(online) >= wish.replicas:
        return None
    have = "has" if len(online) == 1 else "have"
    counted = f"only {_plural(len(online), 'node')}" if online else "no node"
    sentence = (
        f"{_plural(wish.replicas, 'replica')} asked for, but {counted} "
        f"{have if online else 'has'} {_where(wish)}"
    )
    if online:
        sentence += f" ({listing(online)})"
    if offline:
        sentence += f"; {listing(offline)} {'is' if len(offline) == 1 else 'are'} offline"
    seen = {n.upper() for n in online + offline}
    without = [n for n in wish.nodes if n.upper() not in seen]  # a named node with diskless pools only
    if without:
        sentence += f"; {listing(without)} {'has' if len(without) == 1 else 'have'} none"
    return Cause(sentence, unknown_name=False)


def _too_large(wish: PlacementWish, pools: Sequence[StoragePool]) -> Cause | None:
    best: dict[str, tuple[int, str]] = {}
    for pool in _eligible(wish, pools):
        if pool.offline or pool.free_kib is None:
            continue
        if pool.node not in best or pool.free_kib > best[pool.node][0]:
            best[pool.node] = (pool.free_kib, pool.name)
    fitting = [n for n, (free, _) in best.items() if free >= wish.size_kib]
    needed = wish.replicas or 1
    if not best or len(fitting) >= needed:
        return None
    node, (free, pool) = max(best.items(), key=lambda item: (item[1][0], item[0]))
    size = human_size(wish.size_kib * 1024)
    if not fitting:
        where = f"no {_where(wish, article='')} has {size} free"
    else:
        where = (
            f"only {_plural(len(fitting), 'node')} {'has' if len(fitting) == 1 else 'have'} {size} free "
            f"in {_where(wish)} ({listing(sorted(fitting))}), {needed} are needed"
        )
    return Cause(
        f"{where}; the most free space is {human_size(free * 1024)} in storage pool {pool} on node {node}",
        unknown_name=False,
    )
