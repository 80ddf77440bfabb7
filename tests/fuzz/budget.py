"""Budget and settings of the fuzz suite.

CI runs a fixed, derandomized set (the same examples every run) sized so the whole directory
takes a few minutes; ``FUZZ_EXAMPLES=5000`` runs that many examples per test with fresh
randomness, and ``FUZZ_SHRINK=1`` lets Hypothesis shrink a failure to a minimal example
(off by default: a request that hangs would be replayed for every shrink step).
``FUZZ_DEADLINE`` is how long one call may take before it counts as a hang (default 20 s).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0)
CALL_DEADLINE = float(os.environ.get("FUZZ_DEADLINE", "20"))


def fuzz_settings(ci_examples: int) -> settings:
    """Settings for one fuzz test: ``ci_examples`` in CI, ``FUZZ_EXAMPLES`` when set."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    if os.environ.get("FUZZ_SHRINK") == "1":
        phases.append(Phase.shrink)
    return settings(
        max_examples=EXAMPLES or ci_examples,
        derandomize=not EXAMPLES,
        deadline=None,
        database=None,
        phases=phases,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )


def timeout_for(ci_examples: int, per_example: float = 3.0) -> pytest.MarkDecorator:
    """A pytest-timeout that grows with a long run's example count."""
    return pytest.mark.timeout(max(300, int((EXAMPLES or ci_examples) * per_example) + 120))
