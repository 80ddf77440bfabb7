"""Fixtures shared by every test layer.

Tests that need root, loop devices, mounts or a Docker daemon call :func:`require`:
on a developer machine without them they skip with the reason; under ``CI=true`` they
fail instead, so CI can never go green by skipping the real work.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

# The process helpers live in testkit (the benchmarks use them too, without pytest);
# tests keep importing them from here.
from testkit.emulator import REPO_ROOT as REPO_ROOT
from testkit.emulator import EmulatorProcess, reset_and_stop
from testkit.processes import free_port as free_port
from tests.certs import TlsFiles

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The crash suite's scale and seed (tests/fault); registered here so any test path may be given."""
    group = parser.getgroup("fault", "crash suite (tests/fault)")
    group.addoption(
        "--fault-runs",
        type=int,
        default=int(os.environ["FAULT_RUNS"]) if os.environ.get("FAULT_RUNS") else None,
        help="kills per killed process (CSI driver, Docker plugin, emulator), spread over its steps; "
        "default: each step once (env FAULT_RUNS)",
    )
    group.addoption(
        "--fault-seed",
        type=int,
        default=int(os.environ["FAULT_SEED"]) if os.environ.get("FAULT_SEED") else None,
        help="seed for the crash suite's kill points; default: a fixed seed (env FAULT_SEED)",
    )


def require(condition: bool, reason: str) -> None:
    """Skip (developer machine) or fail (CI) when a test's precondition is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI but missing: {reason}")
    pytest.skip(reason)


def have_root_and_loop() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root (loop devices, mkfs, mount)"
    if not os.path.exists("/dev/loop-control"):
        return False, "needs /dev/loop-control (loop device support)"
    for tool in ("losetup", "blkid", "mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return False, f"needs the {tool} command"
    return True, ""


@pytest.fixture
def root_loop() -> None:
    """Use in tests that create loop devices, filesystems or mounts."""
    ok, reason = have_root_and_loop()
    require(ok, reason)


@dataclass
class TlsEmulator(EmulatorProcess):
    """An emulator serving HTTPS; readiness and control calls use the test CA and client cert."""

    tls: TlsFiles | None = None
    client_cert: bool = True
    verify_server: bool = True

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def request_kwargs(self) -> dict[str, object]:
        assert self.tls is not None
        cert = (str(self.tls.client_cert), str(self.tls.client_key)) if self.client_cert else None
        return {"verify": str(self.tls.ca_cert) if self.verify_server else False, "cert": cert}

    def state(self) -> dict[str, object]:
        """The emulator's whole state, read over the same HTTPS listener."""
        answer = requests.get(f"{self.url}/_emu/state", timeout=10, **self.request_kwargs())
        answer.raise_for_status()
        return answer.json()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


@pytest.fixture
def emulator_factory(tmp_path: Path) -> Iterator[object]:
    """Start emulators with custom nodes or flags; all are stopped and reset afterwards."""
    started: list[EmulatorProcess] = []

    def start(
        nodes: tuple[str, ...] = (), extra_args: tuple[str, ...] = (), name: str = "emu"
    ) -> EmulatorProcess:
        base = tmp_path / name
        emu = EmulatorProcess(
            state_dir=base / "state", dev_dir=base / "dev", nodes=nodes, extra_args=extra_args
        )
        emu.start()
        started.append(emu)
        return emu

    yield start
    reset_and_stop(started)


@pytest.fixture
def emulator(root_loop: None, emulator_factory) -> EmulatorProcess:  # type: ignore[no-untyped-def]
    """An emulator with the local node plus two virtual nodes, in its default DRBD-shaped mode."""
    return emulator_factory(nodes=("node-b", "node-c"))
