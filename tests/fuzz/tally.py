"""What the fuzzed requests got back, counted per front end, for the run's closing figures.

Each request ends in an outcome (a CSI status code's name, "OK", or for Docker "OK" or
"error sentence") or in a violation of a property of :mod:`tests.fuzz.checks`. The counts are
printed at the end of the run (``tests/fuzz/conftest.py``), so a long run's figures can be
recorded in docs/operations.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

DOCKER_ERROR = "error sentence"


class Tally:
    """Outcomes and violations per front end."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Counter[str]] = {}
        self.violations: Counter[str] = Counter()

    def record(self, front_end: str, outcome: str) -> None:
        self.outcomes.setdefault(front_end, Counter())[outcome] += 1

    def violation(self, front_end: str) -> None:
        self.outcomes.setdefault(front_end, Counter())
        self.violations[front_end] += 1

    @contextmanager
    def counting(self, front_end: str) -> Iterator[None]:
        """Count a violation when the block fails a property (an AssertionError), then re-raise."""
        try:
            yield
        except AssertionError:
            self.violation(front_end)
            raise

    def requests(self, front_end: str) -> int:
        return sum(self.outcomes.get(front_end, Counter()).values()) + self.violations[front_end]

    def lines(self) -> list[str]:
        """One line per front end: requests, violations, outcomes by frequency."""
        out = []
        for front_end in sorted(self.outcomes):
            counts = self.outcomes[front_end]
            spread = ", ".join(f"{name} {n}" for name, n in counts.most_common())
            out.append(
                f"fuzz {front_end}: {self.requests(front_end)} requests, "
                f"{self.violations[front_end]} violations; {spread or 'no answers'}"
            )
        return out


TALLY = Tally()
