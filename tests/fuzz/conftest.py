"""Print the fuzz suite's figures (requests, outcomes, violations) at the end of a run."""

from __future__ import annotations

import pytest

from tests.fuzz.tally import TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = TALLY.lines()
    if lines:
        terminalreporter.section("fuzz figures")
        for line in lines:
            terminalreporter.write_line(line)
