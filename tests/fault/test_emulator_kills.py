"""kill -9 of the LINSTOR controller emulator while a front end creates or attaches a volume.

The front end (CSI driver, Docker plugin) keeps running; the emulator dies mid-request,
is started again on the same state dir and port (loop devices and the state file as the
crash left them), and the step is retried, then the life goes on to the end. Afterwards
the same checks as for the other crashes: nothing left behind, the data intact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import EmulatorProcess, reset_and_stop
from tests.fault import csi_lifecycle, docker_lifecycle
from tests.fault.harness import (
    FaultLog,
    FaultPlan,
    Kill,
    Killer,
    Lifecycle,
    StepDurations,
    leaks,
    loops_over,
    mounts_naming,
    run_lives,
)
from tests.fault.processes import (
    CsiDriverProcess,
    DockerPluginProcess,
    kill_emulator,
    new_emulator,
    release_everything,
    restart_emulator,
    scratch_dir,
)

pytestmark = pytest.mark.root

KIND = "emulator"
CSI_STEPS = ("CreateVolume", "ControllerPublishVolume")
DOCKER_STEPS = ("Create", "Mount")
ALL_STEPS = tuple(f"CSI {s}" for s in CSI_STEPS) + tuple(f"Docker {s}" for s in DOCKER_STEPS)


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorProcess]:
    emulator = new_emulator(tmp_path)
    yield emulator
    if emulator.proc is None:  # a failed scenario may leave it killed
        emulator.start()
    reset_and_stop([emulator])


def _run(
    emu: EmulatorProcess,
    work: Path,
    label: str,
    steps: tuple[str, ...],
    step: str,
    new_life: Callable[[int], Lifecycle],
    transient: Callable[[Exception], bool],
    plan: FaultPlan,
    log: FaultLog,
    durations: StepDurations,
    log_tail: Callable[[], str],
) -> list[str]:
    killer = Killer(
        f"{KIND} (via {label})", lambda: kill_emulator(emu), lambda: restart_emulator(emu), transient
    )

    def on_error() -> str:
        if emu.proc is None:
            emu.start()
        where = mounts_naming([work, emu.dev_dir], loops_over(emu.state_dir))
        return f"mounts: {where}\nfront end log:\n{log_tail()}\nemulator log:\n{_tail(emu)}"

    kills = [Kill(step, k.fraction) for k in plan.kills("emulator", ALL_STEPS, f"{label} {step}")]
    return run_lives(new_life, steps, kills, killer, emu, durations, log, on_error)


def _tail(emu: EmulatorProcess) -> str:
    return emu.log_path.read_text(errors="replace")[-3000:] if emu.log_path else ""


@pytest.mark.parametrize("step", CSI_STEPS)
def test_emulator_killed_during_csi(
    scenario: str,
    step: str,
    emu: EmulatorProcess,
    fault_plan: FaultPlan,
    fault_log: FaultLog,
    csi_durations: StepDurations,
) -> None:
    with scratch_dir("fault-emc-") as work:
        driver = CsiDriverProcess(work, emu)
        driver.start()
        try:
            problems = _run(
                emu,
                work,
                "CSI",
                csi_lifecycle.STEPS,
                step,
                lambda n: csi_lifecycle.CsiLifecycle(driver, work, fault_plan.rng(f"emu:csi:{step}:{n}")),
                csi_lifecycle.transient,
                fault_plan,
                fault_log,
                csi_durations,
                driver.log_tail,
            )
        finally:
            driver.stop()
        try:
            left = leaks(emu, [work], driver.tmpdir)
        finally:
            release_everything(emu, [work])
    fault_log.leaks += [f"{KIND} killed in CSI {step}: {item}" for item in left]
    assert not problems and not left, f"seed {fault_plan.seed}: data {problems}, left behind {left}"


@pytest.mark.parametrize("step", DOCKER_STEPS)
def test_emulator_killed_during_docker(
    scenario: str,
    step: str,
    emu: EmulatorProcess,
    fault_plan: FaultPlan,
    fault_log: FaultLog,
    docker_durations: StepDurations,
) -> None:
    with scratch_dir("fault-emd-") as work:
        plugin = DockerPluginProcess(work / "p", emu)
        plugin.start()
        lives: list[docker_lifecycle.DockerLifecycle] = []

        def new_life(n: int) -> docker_lifecycle.DockerLifecycle:
            lives.append(
                docker_lifecycle.DockerLifecycle(plugin, work, fault_plan.rng(f"emu:dkr:{step}:{n}"))
            )
            return lives[-1]

        try:
            problems = _run(
                emu,
                work,
                "Docker",
                docker_lifecycle.STEPS,
                step,
                new_life,
                docker_lifecycle.transient,
                fault_plan,
                fault_log,
                docker_durations,
                plugin.log_tail,
            )
        finally:
            for life in lives:
                life.stop_containers()
            plugin.stop()
        try:
            left = docker_lifecycle.docker_leaks(emu, work, plugin)
        finally:
            release_everything(emu, [work])
    fault_log.leaks += [f"{KIND} killed in Docker {step}: {item}" for item in left]
    assert not problems and not left, f"seed {fault_plan.seed}: data {problems}, left behind {left}"
