"""Running totals of what the resource definitions hold: DRBD minors, TCP ports, pool room, placement.

A create asks for the lowest free DRBD minor (per cluster, the controller's ``MinorNrAutoRange``),
the lowest free TCP port on each node it deploys to (``TcpPortAutoRange``), the space reserved
in every pool and the definitions already on each node (for the autoplacer). Counting those
from every definition on every create made seeding grow with the square of the definitions;
here each definition's *share* is remembered and the totals kept, so a create costs the same
at 10,000 definitions as at 10.

The totals follow the state through :meth:`Tallies.settle`, which the emulator calls whenever
it saves (after every mutation, with the definitions the mutation touched). Between two saves
only definitions reserved by a request in flight can have changed, so a question is answered
from the totals with those few definitions counted live. Outside a reserved request (start-up,
reset, tests calling handlers directly) every definition counts live, exactly as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from emulator import names
from emulator import state as st

PoolKey = tuple[str, str]  # (node key, pool key)


@dataclass(frozen=True)
class Share:
    """What one definition holds: its minors, its port on each node, its reserved KiB per pool."""

    minors: tuple[int, ...]
    ports: tuple[tuple[str, int], ...]
    reserved: tuple[tuple[PoolKey, int], ...]

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(nk for nk, _ in self.ports)


NOTHING = Share((), (), ())


def share_of(rd: st.ResourceDefinition | None) -> Share:
    """A definition's share; a diskless resource reserves nothing, a snapshot its allocated KiB."""
    if rd is None:
        return NOTHING
    reserved: dict[PoolKey, int] = {}
    for nk, rsc in rd.resources.items():
        if rsc.diskless:
            continue
        for vol in rsc.volumes.values():
            vd = rd.volume_definitions.get(str(vol.number))
            if vd is not None:
                key = (nk, names.key(vol.pool))
                reserved[key] = reserved.get(key, 0) + vd.size_kib
    for snap in rd.snapshots.values():
        for nk, pool in snap.pools.items():
            key = (nk, names.key(pool))
            reserved[key] = reserved.get(key, 0) + sum(sv.allocated_kib for sv in snap.volumes.values())
    return Share(
        minors=tuple(vd.minor for vd in rd.volume_definitions.values()),
        ports=tuple((nk, rsc.tcp_port) for nk, rsc in rd.resources.items()),
        reserved=tuple(reserved.items()),
    )


class _Numbers:
    """One pool of numbers (the minors, or one node's ports): use counts and a low-water mark.

    Every number in ``[low, floor)`` is in use, so the lowest free one is found from ``floor``
    on, as the controller hands out the lowest free number of its range.
    """

    def __init__(self, low: int) -> None:
        self.low = low
        self.count: Counter[int] = Counter()
        self.floor = low

    def add(self, number: int, by: int) -> None:
        left = self.count[number] + by
        if left > 0:
            self.count[number] = left
            return
        del self.count[number]
        if self.low <= number < self.floor:
            self.floor = number

    def raise_floor(self, high: int) -> None:
        while self.floor <= high and self.count.get(self.floor, 0) > 0:
            self.floor += 1

    def lowest_free(self, high: int, delta: Mapping[int, int]) -> int | None:
        """The lowest free number, with ``delta`` (live changes) counted in; None when none is left."""

        def free(n: int) -> bool:
            return self.count.get(n, 0) + delta.get(n, 0) <= 0

        # Numbers below the floor can only have come free through a live change.
        below = [n for n, d in delta.items() if d < 0 and self.low <= n < self.floor and free(n)]
        if below:
            return min(below)
        n = self.floor
        while n <= high and not free(n):
            n += 1
        return n if n <= high else None


class Tallies:
    """Totals over every definition's :class:`Share`, kept up to date by :meth:`settle`."""

    def __init__(self, minor_range: tuple[int, int], port_range: tuple[int, int]) -> None:
        self.minor_range = minor_range
        self.port_range = port_range
        self._reset(None)

    def _reset(self, state: st.State | None) -> None:
        self._state = state
        self._shares: dict[str, Share] = {}
        self._minors = _Numbers(self.minor_range[0])
        self._ports: dict[str, _Numbers] = {}
        self._reserved: Counter[PoolKey] = Counter()
        self._on_node: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ keeping up

    def settle(self, state: st.State, dirty: Iterable[str] | None) -> None:
        """Take in the definitions a mutation changed (None: any may have; a new state: all)."""
        rds = state.resource_definitions
        if dirty is None or state is not self._state:
            self._reset(state)
            keys: set[str] = set(rds)
        else:
            # New definitions need not be named: changed_keys finds them.
            keys = st.changed_keys(rds, self._shares, dirty)
        for key in keys:
            self._apply(key, self._shares.get(key, NOTHING), -1)
            share = share_of(rds.get(key))
            if share is NOTHING:
                self._shares.pop(key, None)
            else:
                self._shares[key] = share
                self._apply(key, share, 1)
        self._minors.raise_floor(self.minor_range[1])
        for numbers in self._ports.values():
            numbers.raise_floor(self.port_range[1])

    def _apply(self, key: str, share: Share, by: int) -> None:
        for minor in share.minors:
            self._minors.add(minor, by)
        for nk, port in share.ports:
            self._ports.setdefault(nk, _Numbers(self.port_range[0])).add(port, by)
            on_node = self._on_node.setdefault(nk, set())
            if by > 0:
                on_node.add(key)
            else:
                on_node.discard(key)
        for pool, kib in share.reserved:
            self._reserved[pool] += by * kib

    def _live(self, state: st.State, live: set[str] | None) -> list[tuple[str, Share, Share]]:
        """(key, settled share, current share) of the definitions that may have changed since.

        ``live``: the definitions reserved by requests in flight; None: any may have changed.
        Definitions made or removed since the last settle count live too, reserved or not.
        """
        if state is not self._state:
            self.settle(state, None)
        rds = state.resource_definitions
        keys = set(rds) | set(self._shares) if live is None else st.changed_keys(rds, self._shares, live)
        return [(k, self._shares.get(k, NOTHING), share_of(rds.get(k))) for k in keys]

    # ------------------------------------------------------------------ questions

    def used_minor(self, state: st.State, live: set[str] | None, minor: int) -> bool:
        changes = self._live(state, live)
        count = self._minors.count.get(minor, 0)
        count += sum(new.minors.count(minor) - old.minors.count(minor) for _, old, new in changes)
        return count > 0

    def free_minor(self, state: st.State, live: set[str] | None) -> int | None:
        delta: Counter[int] = Counter()
        for _, old, new in self._live(state, live):
            delta.subtract(old.minors)
            delta.update(new.minors)
        return self._minors.lowest_free(self.minor_range[1], delta)

    def free_port(self, state: st.State, live: set[str] | None, node_key: str) -> int | None:
        delta: Counter[int] = Counter()
        for _, old, new in self._live(state, live):
            delta.subtract(p for nk, p in old.ports if nk == node_key)
            delta.update(p for nk, p in new.ports if nk == node_key)
        numbers = self._ports.get(node_key) or _Numbers(self.port_range[0])
        return numbers.lowest_free(self.port_range[1], delta)

    def reserved(self, state: st.State, live: set[str] | None) -> dict[PoolKey, int]:
        """Reserved KiB of every pool that has any."""
        out = Counter(self._reserved)
        for _, old, new in self._live(state, live):
            for pool, kib in old.reserved:
                out[pool] -= kib
            for pool, kib in new.reserved:
                out[pool] += kib
        return {pool: kib for pool, kib in out.items() if kib}

    def on_nodes(self, state: st.State, live: set[str] | None) -> dict[str, OnNode]:
        """Node key -> keys of the definitions with a resource there."""
        dropped: dict[str, set[str]] = {}
        added: dict[str, set[str]] = {}
        for key, old, new in self._live(state, live):
            for nk in old.nodes:
                dropped.setdefault(nk, set()).add(key)
            for nk in new.nodes:
                added.setdefault(nk, set()).add(key)
        out = {}
        for nk in self._on_node.keys() | added.keys():
            keys = OnNode(self._on_node.get(nk, set()), dropped.get(nk, set()), added.get(nk, set()))
            if keys:
                out[nk] = keys
        return out


class OnNode(AbstractSet[str]):
    """The definitions on one node: the settled ones with the live changes, without a copy of
    thousands of names per question. Read it before the next settle (under the state lock)."""

    def __init__(self, settled: set[str], dropped: set[str], added: set[str]) -> None:
        # Every dropped key is a settled one, and no added key is a settled one left in.
        self._settled, self._dropped, self._added = settled, dropped, added

    def __contains__(self, key: object) -> bool:
        return key in self._added or (key in self._settled and key not in self._dropped)

    def __iter__(self) -> Iterator[str]:
        yield from (k for k in self._settled if k not in self._dropped)
        yield from self._added

    def __len__(self) -> int:
        return len(self._settled) - len(self._dropped) + len(self._added)

    @classmethod
    def _from_iterable(cls, keys: Iterable[str]) -> frozenset[str]:
        """What ``-``, ``&`` and ``|`` make: a plain frozenset."""
        return frozenset(keys)
