"""kill -9 of the Docker plugin in Create, Mount, Unmount and Remove, then restart and retry.

Each scenario is one volume's life against its own emulator: a first container writes
data, then the planned step runs under controller latency and the plugin is SIGKILLed at
a seeded fraction of the step's measured duration, restarted on the same state file, and
the step re-sent as dockerd re-sends it; the life goes on to Remove. Afterwards nothing
may be left: no definition, resource, snapshot, mount (in any namespace), loop device,
temp file, mount record or mount directory, and the data read back intact.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EmulatorProcess, reset_and_stop
from tests.fault.docker_lifecycle import STEPS, DockerLifecycle, docker_leaks, transient
from tests.fault.harness import (
    FaultLog,
    FaultPlan,
    Kill,
    Killer,
    StepDurations,
    loops_over,
    mounts_naming,
    run_lives,
)
from tests.fault.processes import DockerPluginProcess, new_emulator, release_everything, scratch_dir

pytestmark = pytest.mark.root

KIND = "Docker plugin"
ATTACH_REQUEST = "/make-available$"
ATTACH_LATENCY_MS = 1500


@pytest.fixture
def docker_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    emu = new_emulator(tmp_path)
    yield emu
    reset_and_stop([emu])


@pytest.mark.parametrize("step", STEPS)
def test_docker_plugin_killed_during(
    scenario: str,
    step: str,
    docker_emulator: EmulatorProcess,
    fault_plan: FaultPlan,
    fault_log: FaultLog,
    docker_durations: StepDurations,
) -> None:
    _scenario(
        docker_emulator,
        step,
        fault_plan.kills("docker", STEPS, step),
        fault_plan,
        fault_log,
        docker_durations,
    )


def test_docker_plugin_killed_while_the_attach_is_applied(
    scenario: str,
    docker_emulator: EmulatorProcess,
    fault_plan: FaultPlan,
    fault_log: FaultLog,
    docker_durations: StepDurations,
) -> None:
    """The kill lands while LINSTOR holds Mount's make-available: it is applied after the plugin
    is gone, before the plugin saved its count or its mark; dockerd then re-sends the Mount."""
    kills = fault_plan.targeted("docker", STEPS, "Mount", ATTACH_REQUEST, ATTACH_LATENCY_MS)
    _scenario(docker_emulator, "Mount", kills, fault_plan, fault_log, docker_durations)


def _scenario(
    emu: EmulatorProcess,
    step: str,
    kills: list[Kill],
    fault_plan: FaultPlan,
    fault_log: FaultLog,
    docker_durations: StepDurations,
) -> None:
    with scratch_dir("fault-dkr-") as work:
        plugin = DockerPluginProcess(work / "p", emu)
        plugin.start()
        killer = Killer(KIND, plugin.kill, plugin.start, transient)
        lives: list[DockerLifecycle] = []

        def new_life(n: int) -> DockerLifecycle:
            lives.append(DockerLifecycle(plugin, work, fault_plan.rng(f"docker:{step}:{n}")))
            return lives[-1]

        def on_error() -> str:
            where = mounts_naming([work, emu.dev_dir], loops_over(emu.state_dir))
            lives[-1].stop_containers()
            return f"mounts: {where}\nplugin log:\n{plugin.log_tail()}"

        try:
            problems = run_lives(
                new_life, STEPS, kills, killer, emu, docker_durations,
                fault_log, on_error,
            )  # fmt: skip
        finally:
            for life in lives:
                life.stop_containers()
            plugin.stop()
        try:
            left = docker_leaks(emu, work, plugin)
        finally:
            release_everything(emu, [work])
        fault_log.leaks += [f"{KIND} killed in {step}: {item}" for item in left]
        assert not problems and not left, (
            f"seed {fault_plan.seed}, kills in {step}: {problems}, left behind {left}\n"
            f"plugin log:\n{plugin.log_tail(2000)}"
        )
