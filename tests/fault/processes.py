"""The processes the crash suite kills: the CSI driver, the Docker plugin, the emulator.

Each runs as a real child process (``python -m csi``, ``python -m docker_plugin``,
``python -m emulator``) with a private ``TMPDIR``, so a temp file any of them leaves is
found; ``kill()`` is SIGKILL, no clean-up at all, and ``start()`` after it is the restart
a supervisor (kubelet, Nomad, Docker, systemd) would do.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from csi.testing import CsiClient
from tests.conftest import REPO_ROOT, EmulatorProcess
from tests.dockerd import PluginProcess
from tests.fault.harness import dev_number, hard_kill, loops_over
from tests.processes import terminate

LOCAL = socket.gethostname().split(".")[0] or "localhost"


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A short directory under /tmp (unix socket paths are limited to about 107 bytes).

    Afterwards whatever is still mounted below it is lazily unmounted (a failed test's
    leftovers) before it is removed, so a failure never strands a mount.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        unmount_below(path)
        shutil.rmtree(path, ignore_errors=True)


def unmount_below(path: Path) -> None:
    prefix = os.path.realpath(path) + "/"
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh if (line.split()[4] + "/").startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def path_root_args(base: Path) -> list[str]:
    """Confine the node service to the scenario's directory."""
    return ["--path-root", str(base)]


class CsiDriverProcess:
    """``python -m csi --mode all`` on a unix socket, serving this node."""

    def __init__(self, base: Path, emu: EmulatorProcess, env_extra: dict[str, str] | None = None) -> None:
        self.base = base
        self.emu = emu
        self.socket = base / "csi.sock"
        self.tmpdir = base / "tmp"
        self.log_path = base / "csi.log"
        self.env_extra = env_extra or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: grpc.Channel | None = None
        self.client: CsiClient | None = None
        self.starts = 0

    def start(self) -> None:
        self.tmpdir.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_", "CSI_"))}
        env.update(
            {
                "CSI_ENDPOINT": f"unix://{self.socket}",
                "LS_CONTROLLERS": self.emu.url,
                "TMPDIR": str(self.tmpdir),
                **self.env_extra,
            }
        )
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "csi", "--node", LOCAL, "--mode", "all", *path_root_args(self.base)],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        try:
            grpc.channel_ready_future(self.channel).result(timeout=30)
        except grpc.FutureTimeoutError:
            raise AssertionError(f"the CSI driver did not start:\n{self.log_tail()}") from None
        self.client = CsiClient(self.channel)

    def _close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.channel = self.client = None

    def kill(self) -> None:
        hard_kill(self.proc)
        self.proc = None

    def stop(self) -> None:
        self._close_channel()
        if self.proc is not None:
            terminate(self.proc, timeout=30)
            self.proc = None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class DockerPluginProcess(PluginProcess):
    """``python -m docker_plugin`` on the host, with a private TMPDIR and immediate release."""

    def __init__(self, base: Path, emu: EmulatorProcess) -> None:
        super().__init__(base, emu.url, LOCAL, extra_args=("--release-delay", "0"))
        self.tmpdir = base / "tmp"
        self.starts = 0

    def start(self, timeout: float = 30.0, **popen_kwargs: object) -> None:  # type: ignore[override]
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        super().start(timeout, env={"TMPDIR": str(self.tmpdir)})
        self.starts += 1


def new_emulator(base: Path) -> EmulatorProcess:
    """An emulator with the local node and two virtual ones, its state and devices under ``base``."""
    emu = EmulatorProcess(state_dir=base / "state", dev_dir=base / "dev", nodes=("node-b", "node-c"))
    emu.start()
    return emu


def kill_emulator(emu: EmulatorProcess) -> None:
    """SIGKILL the emulator: its state file and loop devices stay as the crash left them."""
    hard_kill(emu.proc)
    emu.proc = None


def restart_emulator(emu: EmulatorProcess) -> None:
    """Start it again on the same state dir and port, as a supervisor would."""
    emu.start()


def release_everything(emu: EmulatorProcess, dirs: list[Path]) -> None:
    """After a failed scenario: unmount what it left here, so the emulator can free its devices."""
    for d in dirs:
        unmount_below(d)
    devices = {dev_number(dev) for dev in loops_over(emu.state_dir)} - {None}
    dev_root = os.path.realpath(emu.dev_dir) + "/"
    with open("/proc/self/mountinfo") as fh:
        lines = [line.split() for line in fh]
    for fields in lines:
        source = fields[fields.index("-") + 2]
        if fields[2] in devices or source.startswith(dev_root):
            subprocess.run(["umount", "-l", fields[4]], check=False, capture_output=True)
