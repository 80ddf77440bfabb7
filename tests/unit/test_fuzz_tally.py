"""The fuzz suite's tally counts outcomes and violations per front end."""

from __future__ import annotations

import pytest

from tests.fuzz.tally import Tally


def test_outcomes_and_violations_are_counted_per_front_end() -> None:
    tally = Tally()
    for outcome in ("INVALID_ARGUMENT", "OK", "INVALID_ARGUMENT"):
        tally.record("CSI", outcome)
    tally.record("Docker", "OK")
    with pytest.raises(AssertionError), tally.counting("Docker"):
        raise AssertionError("scratch data touched")
    assert tally.requests("CSI") == 3
    assert tally.requests("Docker") == 2
    assert tally.lines() == [
        "fuzz CSI: 3 requests, 0 violations; INVALID_ARGUMENT 2, OK 1",
        "fuzz Docker: 2 requests, 1 violations; OK 1",
    ]


def test_other_exceptions_are_not_violations() -> None:
    tally = Tally()
    with pytest.raises(KeyError), tally.counting("CSI"):
        raise KeyError("x")
    assert tally.violations["CSI"] == 0
    assert tally.lines() == []
