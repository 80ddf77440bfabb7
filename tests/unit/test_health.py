"""The controller check behind both daemons' readiness: a "yes" is reused, a "no" never is."""

from __future__ import annotations

import threading

import pytest

from plugin.health import Reachability


class Answers:
    """A controller check that answers from a list and counts how often it was asked."""

    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.answers.pop(0)


def test_a_no_is_asked_again_at_once_so_readiness_flips_when_the_controller_answers() -> None:
    check = Answers(False, False, True)
    reachable = Reachability(check, max_age=3600, clock=lambda: 0.0)
    assert [reachable(), reachable(), reachable()] == [False, False, True]
    assert check.calls == 3


def test_a_yes_is_reused_until_it_is_max_age_old() -> None:
    now = [0.0]
    check = Answers(True, False)
    reachable = Reachability(check, max_age=2.0, clock=lambda: now[0])
    assert reachable() is True
    now[0] = 1.9
    assert reachable() is True and check.calls == 1
    now[0] = 2.0
    assert reachable() is False and check.calls == 2


def test_callers_during_a_check_share_its_answer() -> None:
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow_check() -> bool:
        calls.append(1)
        started.set()
        assert release.wait(30)
        return True

    reachable = Reachability(slow_check)
    answers: list[bool] = []
    first = threading.Thread(target=lambda: answers.append(reachable()))
    first.start()
    assert started.wait(30)
    others = [threading.Thread(target=lambda: answers.append(reachable())) for _ in range(3)]
    for thread in others:
        thread.start()
    release.set()
    for thread in (first, *others):
        thread.join(30)
    assert answers == [True] * 4 and len(calls) == 1


def test_a_failing_check_reaches_its_caller_and_releases_the_waiters() -> None:
    def broken() -> bool:
        raise RuntimeError("controller exploded")

    reachable = Reachability(broken)
    with pytest.raises(RuntimeError, match="exploded"):
        reachable()
    with pytest.raises(RuntimeError):
        reachable()  # not remembered: asked again
