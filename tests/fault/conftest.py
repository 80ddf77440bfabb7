"""The crash suite's session: one plan (seed, runs), one log, one summary line at the end.

``pytest tests/fault`` runs the short fixed set (every step killed once, seed 1);
``--fault-runs N`` (or ``FAULT_RUNS=N``) makes N kills per killed process, spread over its
steps, with a random seed unless ``--fault-seed`` (``FAULT_SEED``) fixes one. The seed is
printed in every failure and in the summary line, so a run can be repeated.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from tests.conftest import have_root_and_loop, require
from tests.fault import csi_lifecycle, docker_lifecycle
from tests.fault.harness import FaultLog, FaultPlan, StepDurations

FIXED_SEED = 1
SECONDS_PER_KILL = 30  # a generous bound per lifecycle for pytest-timeout


def _plan(config: pytest.Config) -> FaultPlan:
    runs = config.getoption("--fault-runs")
    seed = config.getoption("--fault-seed")
    if seed is None:
        seed = FIXED_SEED if runs is None else random.SystemRandom().randrange(1, 1 << 31)
    if runs is not None and runs < 1:
        raise pytest.UsageError("--fault-runs must be at least 1")
    return FaultPlan(seed=seed, runs=runs)


def pytest_configure(config: pytest.Config) -> None:
    plan = _plan(config)
    config.stash[_PLAN] = plan
    config.stash[_LOG] = FaultLog(seed=plan.seed)


_PLAN = pytest.StashKey[FaultPlan]()
_LOG = pytest.StashKey[FaultLog]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long runs outlast the suite's default per-test timeout: scale it with the kills."""
    plan = config.stash[_PLAN]
    if plan.runs is None:
        return
    for item in items:
        if "tests/fault/" in item.nodeid:
            item.add_marker(pytest.mark.timeout(300 + plan.runs * SECONDS_PER_KILL))


@pytest.fixture(scope="session")
def fault_plan(request: pytest.FixtureRequest) -> FaultPlan:
    return request.config.stash[_PLAN]


@pytest.fixture(scope="session")
def fault_log(request: pytest.FixtureRequest) -> FaultLog:
    return request.config.stash[_LOG]


@pytest.fixture(scope="session")
def csi_durations(
    tmp_path_factory: pytest.TempPathFactory, fault_plan: FaultPlan, fault_log: FaultLog
) -> StepDurations:
    """How long each CSI step takes here, from one uninterrupted life (which must leak nothing)."""
    require(*have_root_and_loop())
    return csi_lifecycle.calibrate(
        tmp_path_factory.mktemp("csi-calibration"), fault_plan.rng("csi"), fault_log
    )


@pytest.fixture(scope="session")
def docker_durations(
    tmp_path_factory: pytest.TempPathFactory, fault_plan: FaultPlan, fault_log: FaultLog
) -> StepDurations:
    """How long each Docker step takes here, from one uninterrupted life (which must leak nothing)."""
    require(*have_root_and_loop())
    return docker_lifecycle.calibrate(
        tmp_path_factory.mktemp("docker-calibration"), fault_plan.rng("docker"), fault_log
    )


@pytest.fixture
def scenario(request: pytest.FixtureRequest, fault_log: FaultLog) -> Iterator[str]:
    """The running scenario's name; its outcome is counted for the summary."""
    require(*have_root_and_loop())
    yield request.node.nodeid.split("::")[-1]
    report = getattr(request.node, "_fault_report", None)
    if report is not None and report.failed:
        fault_log.scenarios_failed.append(request.node.nodeid.split("::")[-1])
    elif report is not None:
        fault_log.scenarios_passed += 1


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call":
        item._fault_report = report  # type: ignore[attr-defined]
        if report.failed:
            seed = item.config.stash[_PLAN].seed
            report.sections.append(("fault seed", f"reproduce with --fault-seed {seed}"))
    return report


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    log = config.stash.get(_LOG, None)
    if log is None or not (log.kills or log.scenarios_failed or log.scenarios_passed):
        return
    terminalreporter.write_sep("-", "crash suite")
    for line in log.details():
        terminalreporter.write_line(line)
    terminalreporter.write_line(log.summary())
