"""A LINSTOR controller emulator as a child process, for tests and benchmarks alike."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from testkit.processes import free_port, terminate, wait_ready
from testkit.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    # Environment and working directory of the process (default: the caller's, the repository).
    env: dict[str, str] | None = None
    cwd: Path | None = None

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
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd or REPO_ROOT, env=self.env
            )

        def answers() -> bool:
            url = self.url + "/v1/controller/version"
            return requests.get(url, timeout=1, **self.request_kwargs()).status_code == 200

        wait_ready(
            self.proc,
            answers,
            f"the emulator at {self.url}",
            self._log_tail,
            self.stop,
            timeout,
            transient=(requests.RequestException,),
        )

    def _log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:] if self.log_path else ""
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc, timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def listening(self) -> bool:
        """Whether the emulator's port accepts a TCP connection right now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def outage(self, seconds: float) -> None:
        """Take the controller off the network for ``seconds``; return once its listener is down."""
        answer = self.control("outage", {"seconds": seconds})
        assert answer.ok, answer.text
        wait_until(lambda: not self.listening(), timeout=5, interval=0.02, what="the emulator's outage")

    def wait_back(self, timeout: float = 15.0) -> None:
        """Return once the controller answers REST calls again after an outage."""

        def answers() -> bool:
            url = self.url + "/v1/controller/version"
            return requests.get(url, timeout=1, **self.request_kwargs()).status_code == 200

        wait_until(
            answers, timeout=timeout, what="the emulator's return", ignore=(requests.RequestException,)
        )

    def injected_faults(self, kind: str) -> float:
        """How many injected faults of ``kind`` (latency, error, outage) took effect so far.

        Read from the emulator's ``/metrics``, which no injected fault delays. A latency fault
        is counted when a request starts its delay, so a test can wait until a call of its own
        is really held up inside the controller instead of sleeping for a guessed time.
        """
        text = requests.get(self.url + "/metrics", timeout=10, **self.request_kwargs()).text
        found = re.search(rf'^linstor_emulator_injected_faults_total{{kind="{kind}"}} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    def control(self, path: str, body: dict | None = None, timeout: float = 10) -> requests.Response:
        """POST to the emulator's /_emu/ control API."""
        return requests.post(
            f"{self.url}/_emu/{path.lstrip('/')}", json=body or {}, timeout=timeout, **self.request_kwargs()
        )


def reset_and_stop(emulators: Iterable[EmulatorProcess], reset_timeout: float = 10) -> None:
    """Release the loop devices and device nodes each running emulator made, then stop it."""
    for emu in emulators:
        if emu.proc is not None:
            with contextlib.suppress(requests.RequestException):
                emu.control("reset", timeout=reset_timeout)
            emu.stop()
