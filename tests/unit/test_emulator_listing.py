"""The emulator's list rule (name and props filters, sorted by key, then a page), with and without names.

A name filter picks its objects by key instead of sorting every object; these compare the
answers with the rule spelled out plainly (every object sorted, then filtered) on many
random cases, so the shortcut can never answer differently.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from emulator.listing import chosen, listed
from emulator.ordered import SortedKeyDict
from emulator.props import matches_filters
from emulator.routing import Request, paginate


@dataclass
class Thing:
    name: str
    props: dict[str, str] = field(default_factory=dict)


def plainly(req: Request, objects: dict[str, Thing], wanted: set[str] | None) -> list[Thing]:
    """Every object sorted by key, then the name and props filters, then the page."""
    pf = req.q("props")
    kept = [
        o
        for k, o in sorted(objects.items())
        if (wanted is None or k in wanted) and matches_filters(o.props, pf)
    ]
    return paginate(kept, req)


@pytest.mark.parametrize("seed", range(40))
def test_a_name_filter_answers_as_the_plain_rule(seed: int) -> None:
    rng = random.Random(seed)
    keys = [f"PVC-{rng.randrange(10_000):05d}" for _ in range(rng.randrange(0, 60))]
    objects = {k: Thing(k, {"Aux/app": rng.choice("ab")} if rng.random() < 0.7 else {}) for k in keys}
    pool = list(objects) + [f"PVC-MISSING-{n}" for n in range(5)]
    wanted = None if rng.random() < 0.2 else set(rng.sample(pool, rng.randrange(0, len(pool) + 1)))
    query: dict[str, list[str]] = {}
    if rng.random() < 0.5:
        query["props"] = [rng.choice(["Aux/app", "Aux/app=a", "Aux/app=b", "Aux/none"])]
    if rng.random() < 0.5:
        query["limit"] = [str(rng.randrange(1, 10))]
        query["offset"] = [str(rng.randrange(0, 20))]
    req = Request("GET", "/v1/resource-definitions", query=query)
    assert listed(req, objects, wanted) == plainly(req, objects, wanted)


def test_names_come_back_sorted_whatever_order_they_were_asked_in() -> None:
    objects = {k: Thing(k) for k in ("C", "A", "B", "D")}
    req = Request("GET", "/v1/resource-definitions")
    assert [t.name for t in listed(req, objects, {"D", "B", "X", "A"})] == ["A", "B", "D"]
    assert listed(req, objects, set()) == []


@pytest.mark.parametrize("seed", range(20))
def test_chosen_pairs_are_the_filtered_pairs_in_key_order(seed: int) -> None:
    """The resource view walks ``chosen``: by key for a name filter, the kept order otherwise."""
    rng = random.Random(seed)
    objects: SortedKeyDict[str, Thing] = SortedKeyDict()
    for _ in range(rng.randrange(0, 40)):
        key = f"PVC-{rng.randrange(1_000):04d}"
        objects[key] = Thing(key)
    for key in rng.sample(list(objects), len(objects) // 3):
        del objects[key]
    pool = [*objects, "PVC-MISSING"]
    wanted = None if rng.random() < 0.3 else set(rng.sample(pool, rng.randrange(0, len(pool) + 1)))
    expected = [(k, o) for k, o in sorted(objects.items()) if wanted is None or k in wanted]
    assert list(chosen(objects, wanted)) == expected
