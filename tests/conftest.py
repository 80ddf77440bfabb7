"""Fixtures shared by every test layer.

Tests that need root, loop devices, mounts or a Docker daemon call :func:`require`:
on a developer machine without them they skip with the reason; under ``CI=true`` they
fail instead, so CI can never go green by skipping the real work.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.certs import TlsFiles
from tests.processes import terminate

IN_CI = os.environ.get("CI", "").lower() == "true"
REPO_ROOT = Path(__file__).resolve().parent.parent


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmulatorProcess:
    """A LINSTOR controller emulator running as a child process on a free port."""

    state_dir: Path
    dev_dir: Path
    nodes: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request_kwargs(self) -> dict[str, object]:
        """Extra ``requests`` arguments for talking to this emulator.

        Plain http needs none; a subclass serving HTTPS returns its CA and client
        certificate here, so readiness probes and control calls reach it unchanged.
        """
        return {}

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "emulator",
            "serve",
            "--state-dir",
            str(self.state_dir),
            "--dev-dir",
            str(self.dev_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        if self.nodes:
            cmd += ["--nodes", ",".join(self.nodes)]
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 20.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.dev_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.state_dir.parent / f"emulator-{self.port}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"emulator exited early:\n{self.log_path.read_text()[-4000:]}")
            try:
                answer = requests.get(self.url + "/v1/controller/version", timeout=1, **self.request_kwargs())
                if answer.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"emulator did not answer at {self.url} within {timeout}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc, timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def control(self, path: str, body: dict | None = None, timeout: float = 10) -> requests.Response:
        """POST to the emulator's /_emu/ control API."""
        return requests.post(
            f"{self.url}/_emu/{path.lstrip('/')}", json=body or {}, timeout=timeout, **self.request_kwargs()
        )


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


def reset_and_stop(emulators: Iterable[EmulatorProcess], reset_timeout: float = 10) -> None:
    """Release the loop devices and device nodes each running emulator made, then stop it."""
    for emu in emulators:
        if emu.proc is not None:
            with contextlib.suppress(requests.RequestException):
                emu.control("reset", timeout=reset_timeout)
            emu.stop()


@pytest.fixture
def emulator(root_loop: None, emulator_factory) -> EmulatorProcess:  # type: ignore[no-untyped-def]
    """An emulator with the local node plus two virtual nodes, in its default DRBD-shaped mode."""
    return emulator_factory(nodes=("node-b", "node-c"))
