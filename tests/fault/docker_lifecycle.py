"""One Docker volume's life as dockerd drives it: Create, Mount, Unmount, Remove.

A stand-in container (:class:`~tests.fault.harness.Holder`) binds the mountpoint from
its own mount namespace between Mount and Unmount, as a real one does. The volume's
replica is on a virtual node, so every Mount here attaches a diskless resource. Data is
written by a first container right after Create; after a kill in Mount it must read back
at the mountpoint, after a kill in Unmount through a later container's Mount.
Docker re-sends a request after a connection error with the same name and ID, so the
retry after a kill is the same call again.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.waiting import wait_until
from tests.conftest import EmulatorProcess, reset_and_stop
from tests.fault.harness import (
    FaultLog,
    Holder,
    Lifecycle,
    StepDurations,
    digest_of,
    leaks,
    run_lifecycle,
    write_blob,
)
from tests.fault.processes import LOCAL, DockerPluginProcess, new_emulator, scratch_dir

STEPS = ("Create", "Mount", "Unmount", "Remove")
OPTS = {"size": "64M", "nodes": "node-b"}
RELEASE_WAIT = 20.0


class DockerError(Exception):
    """The plugin answered with an Err: a real failure, never retried."""


def transient(exc: Exception) -> bool:
    """A connection that failed or broke: the plugin was down (dockerd retries these)."""
    return isinstance(exc, OSError | ValueError) and not isinstance(exc, DockerError)


@dataclass
class DockerLifecycle(Lifecycle):
    plugin: DockerPluginProcess
    base: Path
    rng: random.Random
    name: str = ""
    mountpoint: str = ""
    digest: str = ""
    holders: dict[str, Holder] = field(default_factory=dict)
    mount_id: str = ""
    findings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = f"vol-{self.rng.getrandbits(48):012x}"
        self.mount_id = f"{self.rng.getrandbits(128):032x}"

    def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.plugin.client(timeout=120).call(f"VolumeDriver.{method}", body)
        if answer.get("Err"):
            raise DockerError(f"{method}: {answer['Err']}")
        return answer

    def step(self, name: str) -> Callable[[], None]:
        return getattr(self, f"_{name}")  # type: ignore[no-any-return]

    def _Create(self) -> None:
        self.call("Create", {"Name": self.name, "Opts": OPTS})

    def _mount(self, mount_id: str) -> str:
        return str(self.call("Mount", {"Name": self.name, "ID": mount_id})["Mountpoint"])

    def _start_container(self, mount_id: str, mountpoint: str) -> Holder:
        holder = Holder(mountpoint, self.base / "containers" / mount_id[:12])
        self.holders[mount_id] = holder
        return holder

    def _unmount(self, mount_id: str) -> None:
        holder = self.holders.pop(mount_id, None)
        if holder is not None:  # the container exits before dockerd calls Unmount
            holder.stop()
        self.call("Unmount", {"Name": self.name, "ID": mount_id})

    def _Mount(self) -> None:
        self.mountpoint = self._mount(self.mount_id)

    def _Unmount(self) -> None:
        self._unmount(self.mount_id)

    def _Remove(self) -> None:
        try:
            self.wait_released()
        except AssertionError as exc:
            self.findings.append(str(exc))  # then Remove as dockerd would; it may sweep the leak away
        self.call("Remove", {"Name": self.name})

    # ------------------------------------------------------------------ the test's own work

    def after(self, step: str) -> None:
        if step == "Create" and not self.digest:
            writer = f"{self.rng.getrandbits(128):032x}"
            mountpoint = self._mount(writer)
            self._start_container(writer, mountpoint)
            _, self.digest = write_blob(Path(mountpoint), self.rng)
            self._unmount(writer)
            self.wait_released()
        if step == "Mount" and self.mount_id not in self.holders:
            self._start_container(self.mount_id, self.mountpoint)

    def data_problem(self, step: str) -> str | None:
        if step == "Mount":
            found = digest_of(Path(self.mountpoint) / "fault-data.bin")
        elif step == "Unmount":
            self.wait_released()
            reader = f"{self.rng.getrandbits(128):032x}"
            found = digest_of(Path(self._mount(reader)) / "fault-data.bin")
            self._unmount(reader)
        else:
            return None
        return None if found == self.digest else f"after a kill in {step}: data digest {found}"

    def wait_released(self) -> None:
        """Release runs in the background after the last Unmount: wait until nothing holds the volume
        here (no mount under the root, no count, no diskless resource on this node)."""
        attached = False

        def released() -> bool:
            nonlocal attached
            got = self.plugin.client(timeout=120).call("VolumeDriver.Get", {"Name": self.name})
            if got.get("Err"):
                return True  # gone already: a Remove that was interrupted after its work
            status = got["Volume"].get("Status", {})
            attached = LOCAL in (status.get("diskless_nodes") or [])
            return not attached and not self.counted()

        try:
            wait_until(released, timeout=RELEASE_WAIT, interval=0.2, what=f"the release of {self.name}")
        except AssertionError:
            raise AssertionError(
                f"volume {self.name} was never released after its last Unmount: "
                f"counts {self.counts()}, diskless here: {attached}"
            ) from None

    def counts(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.plugin.state_file.read_text())
        except (OSError, ValueError):
            return []
        return list(data.get("volumes", []))

    def counted(self) -> bool:
        return any(r.get("name") == self.name for r in self.counts())

    def stop_containers(self) -> None:
        for holder in self.holders.values():
            holder.stop()
        self.holders.clear()


def state_records(plugin: DockerPluginProcess) -> list[str]:
    """Mount records the plugin still keeps (its state file); none once every volume is gone."""
    try:
        data = json.loads(plugin.state_file.read_text())
    except (OSError, ValueError):
        return []
    return [f"mount record {json.dumps(r, sort_keys=True)}" for r in data.get("volumes", [])]


def mount_root_entries(plugin: DockerPluginProcess) -> list[str]:
    root = plugin.mount_root
    if not root.exists():
        return []
    return [f"mount root entry {root / e}" for e in sorted(os.listdir(root)) if not e.startswith(".")]


def docker_leaks(emu: EmulatorProcess, work: Path, plugin: DockerPluginProcess) -> list[str]:
    return leaks(emu, [work], plugin.tmpdir) + state_records(plugin) + mount_root_entries(plugin)


def calibrate(base: Path, rng: random.Random, log: FaultLog) -> StepDurations:
    """One uninterrupted life under latency: each step's duration, and proof the checks see no leak."""
    measured = StepDurations()
    emu = new_emulator(base)
    try:
        with scratch_dir("fault-dkr-") as work:
            plugin = DockerPluginProcess(work / "p", emu)
            plugin.start()
            life = DockerLifecycle(plugin, work, rng)
            try:
                run_lifecycle(life, STEPS, [], None, emu, measured, log)
            finally:
                life.stop_containers()
                plugin.stop()
            left = docker_leaks(emu, work, plugin)
            assert left == [], f"an uninterrupted life left {left}"
    finally:
        reset_and_stop([emu])
    return measured
