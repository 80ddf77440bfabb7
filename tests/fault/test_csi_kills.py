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
    Kill,
    Killer,
    StepDurations,
    leaks,
    loops_over,
    mounts_naming,
    run_lives,
    tls_temp_files,
)
from tests.fault.processes import CsiDriverProcess, release_everything, scratch_dir

pytestmark = pytest.mark.root

KIND = "CSI driver"
ATTACH_REQUEST = "/make-available$"
ATTACH_LATENCY_MS = 1500


def _scenario(
    emu: EmulatorProcess,
    work: Path,
    step: str,
    plan: FaultPlan,
    log: FaultLog,
    durations: StepDurations,
    env_extra: dict[str, str] | None = None,
    kills: list[Kill] | None = None,
    kind: str = KIND,
) -> None:
    tls_before = tls_temp_files()
    driver = CsiDriverProcess(work, emu, env_extra)
    driver.start()
    killer = Killer(kind, driver.kill, driver.start, transient)

    def on_error() -> str:
        where = mounts_naming([work, emu.dev_dir], loops_over(emu.state_dir))
        release_everything(emu, [work])
        return f"mounts: {where}\ndriver log:\n{driver.log_tail()}"

    try:
        problems = run_lives(
            lambda n: CsiLifecycle(driver, work, plan.rng(f"csi:{step}:{n}")),
            STEPS,
            kills or plan.kills("csi", STEPS, step),
            killer,
            emu,
            durations,
            log,
            on_error,
        )
    finally:
        driver.stop()
    try:
        left = leaks(emu, [work], driver.tmpdir, tls_before)
    finally:
        release_everything(emu, [work])
    log.leaks += [f"{kind} killed in {step}: {item}" for item in left]
    assert not problems and not left, f"seed {plan.seed}, kills in {step}: {problems}, left behind {left}"


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
    csi_durations: StepDurations,
) -> None:
    with scratch_dir("fault-csi-") as work:
        _scenario(csi_emulator, work, step, fault_plan, fault_log, csi_durations)


def test_csi_driver_with_tls_contents_killed_during_create(
    scenario: str, tmp_path: Path, fault_plan: FaultPlan, fault_log: FaultLog, csi_durations: StepDurations
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
            _scenario(
                emu, work, "CreateVolume", fault_plan, fault_log, csi_durations, env, kind=f"{KIND} (TLS)"
            )
    finally:
        reset_and_stop([emu])


def test_csi_driver_killed_while_the_attach_is_applied(
    scenario: str,
    csi_emulator: EmulatorProcess,
    fault_plan: FaultPlan,
    fault_log: FaultLog,
    csi_durations: StepDurations,
) -> None:
    """The kill lands while LINSTOR holds make-available: it is applied after the driver is gone,
    and the mark saying the plugin made the diskless resource is never written."""
    step = "ControllerPublishVolume"
    kills = fault_plan.targeted("csi", STEPS, step, ATTACH_REQUEST, ATTACH_LATENCY_MS)
    with scratch_dir("fault-csi-") as work:
        _scenario(csi_emulator, work, step, fault_plan, fault_log, csi_durations, kills=kills)
