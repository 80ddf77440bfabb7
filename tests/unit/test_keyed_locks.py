"""KeyedLocks: waiting locks and single-flight holds by key, forgotten when unused."""

from __future__ import annotations

import threading

import pytest

from plugin.errors import Busy
from plugin.keyed_locks import KeyedLocks


def test_hold_refuses_a_second_holder_until_released() -> None:
    locks = KeyedLocks()
    entered = threading.Event()
    release = threading.Event()

    def first() -> None:
        with locks.hold("vol-1", "CreateVolume"):
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=first)
    thread.start()
    assert entered.wait(5)
    with pytest.raises(Busy, match=r"CreateVolume.*'vol-1'"), locks.hold("vol-1", "DeleteVolume"):
        pass
    with locks.hold("vol-2", "DeleteVolume"):
        pass  # other keys are free
    release.set()
    thread.join(5)
    with locks.hold("vol-1", "DeleteVolume"):
        assert locks.busy() == {"vol-1": "DeleteVolume"}
    assert locks.busy() == {}


def test_lock_waits_for_the_key_and_serialises_its_users() -> None:
    locks = KeyedLocks(normalize=lambda key: str(key).upper())
    order: list[str] = []
    inside = threading.Event()
    release = threading.Event()

    def first() -> None:
        with locks.lock("pvc-1"):
            order.append("first in")
            inside.set()
            release.wait(5)
            order.append("first out")

    def second() -> None:
        with locks.lock("PVC-1"):  # the same key after normalizing
            order.append("second in")

    one = threading.Thread(target=first)
    one.start()
    assert inside.wait(5)
    two = threading.Thread(target=second)
    two.start()
    two.join(0.2)
    assert two.is_alive(), "the second user must wait for the first"
    assert locks.in_use() == 1
    release.set()
    one.join(5)
    two.join(5)
    assert order == ["first in", "first out", "second in"]


def test_unused_keys_are_forgotten_even_after_an_exception() -> None:
    locks = KeyedLocks()
    for n in range(100):
        with locks.lock(f"vol-{n}"):
            pass
    with pytest.raises(RuntimeError), locks.lock("vol-x"):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError), locks.hold("vol-x", "NodeStageVolume"):
        raise RuntimeError("boom")
    assert locks.in_use() == 0
    assert locks.busy() == {}
