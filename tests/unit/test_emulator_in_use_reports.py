"""The controller's in-use view follows the host only after the report lag (a fake clock)."""

from __future__ import annotations

from emulator.in_use_reports import InUseReports


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_change_is_reported_after_the_delay() -> None:
    clock = Clock()
    reports = InUseReports(2.0, clock)
    reports.seed("dev")
    assert reports.report("dev", True) is False  # opened: not reported yet
    clock.now += 1.9
    assert reports.report("dev", True) is False
    clock.now += 0.1
    assert reports.report("dev", True) is True  # two seconds after it was first seen
    assert reports.report("dev", False) is True  # closed: still reported open
    clock.now += 2.0
    assert reports.report("dev", False) is False


def test_a_blip_shorter_than_the_delay_is_never_reported() -> None:
    clock = Clock()
    reports = InUseReports(1.0, clock)
    reports.seed("dev")
    assert reports.report("dev", True) is False
    clock.now += 0.5
    assert reports.report("dev", False) is False  # closed again before the report went out
    clock.now += 0.6
    assert reports.report("dev", True) is False  # a new open starts its own wait


def test_zero_delay_reports_at_once_and_unknown_devices_start_from_the_live_state() -> None:
    reports = InUseReports(0.0, Clock())
    reports.seed("a")
    assert reports.report("a", True) is True
    lagging = InUseReports(5.0, Clock())
    assert lagging.report("b", True) is True  # never seeded: what the satellite reports on connect
    lagging.forget("b")
    lagging.seed("b")
    assert lagging.report("b", True) is False
