"""kill -9 of the CSI driver in every step of a volume's life, then restart and retry.

Each scenario is one volume's whole life (create, publish, stage, publish, snapshot,
expand, and back) against its own emulator; the planned step runs under controller
latency and the driver is SIGKILLed at a seeded fraction of that step's measured
duration, restarted, and the step is retried as a CO would, then the life goes on to the
end. Afterwards nothing may be left: no definition, resource, snapshot, mount, loop
device or temp file, and the data written before the kill read back intact.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import make_tls_files
from tests.conftest import EmulatorProcess, TlsEmulator, reset_and_stop
from tests.fault.csi_lifecycle import STEPS, CsiLifecycle, transient
from tests.fault.harness import (
    FaultLog,
    FaultPlan,
    Killer,
    StepDurations,
    leaks,
    loops_over,
    mounts_naming,
    run_lifecycle,
    tls_temp_files,
)
from tests.fault.processes import CsiDriverProcess, release_everything, scratch_dir

pytestmark = pytest.mark.root

KIND = "CSI driver"


@pytest.fixture(scope="module")
def durations(
    tmp_path_factory: pytest.TempPathFactory, fault_plan: FaultPlan, fault_log: FaultLog
) -> StepDurations:
    """One uninterrupted life under latency: each step's duration, and proof the checks see no leak."""
    measured = StepDurations()
    base = tmp_path_factory.mktemp("csi-calibration")
    emu = EmulatorProcess(state_dir=base / "state", dev_dir=base / "dev", nodes=("node-b", "node-c"))
    emu.start()
    try:
        with scratch_dir("fault-csi-") as work:
            driver = CsiDriverProcess(work, emu)
            driver.start()
            try:
                life = CsiLifecycle(driver, work, fault_plan.rng("csi-calibration"))
                run_lifecycle(life, STEPS, [], None, emu, measured, fault_log)
            finally:
                driver.stop()
            left = leaks(emu, [work], driver.tmpdir)
            assert left == [], f"an uninterrupted life left {left}"
    finally:
        reset_and_stop([emu])
    return measured


def _scenario(
    emu: EmulatorProcess,
    work: Path,
    step: str,
    plan: FaultPlan,
    log: FaultLog,
    durations: StepDurations,
    env_extra: dict[str, str] | None = None,
) -> None:
    tls_before = tls_temp_files()
    driver = CsiDriverProcess(work, emu, env_extra)
    driver.start()
    killer = Killer(KIND, driver.kill, driver.start, transient)
    problems: list[str] = []
    try:
        for n, kill in enumerate(plan.kills("csi", STEPS, step)):
            life = CsiLifecycle(driver, work, plan.rng(f"csi:{step}:{n}"))
            problems += run_lifecycle(life, STEPS, [kill], killer, emu, durations, log)
    except Exception as exc:
        where = mounts_naming([work, emu.dev_dir], loops_over(emu.state_dir))
        release_everything(emu, [work])
        raise AssertionError(
            f"seed {plan.seed}, kills in {step}: {exc}\nmounts: {where}\ndriver log:\n{driver.log_tail()}"
        ) from exc
    finally:
        driver.stop()
    left = leaks(emu, [work], driver.tmpdir, tls_before)
    log.leaks += [f"{KIND} killed in {step}: {item}" for item in left]
    assert not problems and not left, (
        f"seed {plan.seed}, kills in {step}: data {problems}, left behind {left}\n"
        f"driver log:\n{driver.log_tail()}"
    )


@pytest.fixture
def csi_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(state_dir=tmp_path / "state", dev_dir=tmp_path / "dev", nodes=("node-b", "node-c"))
    emu.start()
    yield emu
    reset_and_stop([emu])


@pytest.mark.parametrize("step", STEPS)
def test_csi_driver_killed_during(
    scenario: str,
    step: str,
    csi_emulator: EmulatorProcess,
    fault_plan: FaultPlan,
    fault_log: FaultLog,
    durations: StepDurations,
) -> None:
    with scratch_dir("fault-csi-") as work:
        _scenario(csi_emulator, work, step, fault_plan, fault_log, durations)


def test_csi_driver_with_tls_contents_killed_during_create(
    scenario: str, tmp_path: Path, fault_plan: FaultPlan, fault_log: FaultLog, durations: StepDurations
) -> None:
    """PEM contents in the environment (as the managed plugin and Helm charts pass them) must not
    outlive a killed driver on disk."""
    tls = make_tls_files(tmp_path / "pki")
    emu = TlsEmulator(
        state_dir=tmp_path / "state",
        dev_dir=tmp_path / "dev",
        nodes=("node-b", "node-c"),
        extra_args=tls.emulator_args(True),
        tls=tls,
    )
    emu.start()
    env = {
        "LS_ROOT_CA": tls.ca_cert.read_text(),
        "LS_USER_CERTIFICATE": tls.client_cert.read_text(),
        "LS_USER_KEY": tls.client_key.read_text(),
    }
    try:
        with scratch_dir("fault-tls-") as work:
            _scenario(emu, work, "CreateVolume", fault_plan, fault_log, durations, env)
    finally:
        reset_and_stop([emu])
