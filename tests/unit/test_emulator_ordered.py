"""The emulator's key-ordered map: its kept order is always the sorted order of its keys.

List answers walk definitions through :func:`emulator.ordered.in_key_order`; a kept order
that missed one added or removed key would drop or repeat a definition in every later
list, so every way ``dict`` can add or remove a key is exercised here against ``sorted``.
"""

from __future__ import annotations

import contextlib
import copy
import pickle
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as hs

from emulator.ordered import SortedKeyDict, in_key_order
from emulator.state import State

KEYS = hs.sampled_from(["A", "B", "C", "D", "E", "F", "G", "AA", "Z9", "_X", "M-1"])


def _apply(d: dict[str, int], op: str, key: str, value: int) -> None:
    """One mutation by ``op``, the same on a SortedKeyDict and on a plain dict."""
    if op == "set":
        d[key] = value
    elif op == "del":
        with contextlib.suppress(KeyError):
            del d[key]  # __delitem__ itself, not pop
    elif op == "pop":
        d.pop(key, None)
    elif op == "popitem":
        if d:
            d.popitem()
    elif op == "setdefault":
        d.setdefault(key, value)
    elif op == "update":
        d.update({key: value, key + "u": value})
    elif op == "ior":
        d |= {key + "i": value}
    elif op == "clear" and value % 7 == 0:
        d.clear()


OPS = hs.tuples(
    hs.sampled_from(["set", "del", "pop", "popitem", "setdefault", "update", "ior", "clear"]),
    KEYS,
    hs.integers(0, 50),
)


@settings(max_examples=300, deadline=None)
@given(hs.lists(OPS, max_size=40))
def test_ordered_items_follow_every_mutation(ops: list[tuple[str, str, int]]) -> None:
    kept: SortedKeyDict[str, int] = SortedKeyDict()
    plain: dict[str, int] = {}
    for op, key, value in ops:
        _apply(kept, op, key, value)
        _apply(plain, op, key, value)
        # read after every step, so a kept order is reused across the following mutation
        assert list(kept.ordered_items()) == sorted(plain.items())
        assert list(in_key_order(kept)) == sorted(plain.items())


def test_a_new_value_for_a_known_key_is_what_the_next_walk_returns() -> None:
    kept = SortedKeyDict({"B": 1, "A": 2})
    assert kept.ordered_items() == (("A", 2), ("B", 1))
    kept["B"] = 10
    assert kept.ordered_items() == (("A", 2), ("B", 10))


def test_copies_and_pickles_are_the_same_map() -> None:
    kept = SortedKeyDict({"C": 3, "A": 1})
    kept.ordered_items()
    for other in (copy.copy(kept), copy.deepcopy(kept), pickle.loads(pickle.dumps(kept))):
        assert isinstance(other, SortedKeyDict)
        other["B"] = 2
        assert other.ordered_items() == (("A", 1), ("B", 2), ("C", 3))
    assert kept.ordered_items() == (("A", 1), ("C", 3))


def test_plain_maps_are_walked_sorted_too() -> None:
    many: dict[str, Any] = {"b": 1, "a": 2, "c": 3}
    assert list(in_key_order(many)) == [("a", 2), ("b", 1), ("c", 3)]
    assert list(in_key_order({"only": 1})) == [("only", 1)]
    assert list(in_key_order({})) == []


def test_the_state_keeps_definitions_in_a_key_ordered_map_fresh_and_loaded() -> None:
    assert isinstance(State().resource_definitions, SortedKeyDict)
    state = State.from_json({"resource_definitions": {"B": {"name": "b"}, "A": {"name": "a"}}})
    assert isinstance(state.resource_definitions, SortedKeyDict)
    assert [k for k, _ in in_key_order(state.resource_definitions)] == ["A", "B"]
