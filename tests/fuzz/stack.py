"""The daemons the fuzz tests drive, each with audited host commands, in private mount namespaces.

- The emulator runs as usual, but with the audit wrappers on its ``PATH`` and its working
  directory in the scratch tree (where ``victimdev`` waits for a relative mkfs argument).
- The CSI driver and the Docker plugin run from their command lines inside
  ``unshare --mount --propagation private``: a mount they make (even one over ``/etc``)
  stays in their namespace and ends with the process. The CSI driver's namespace gets the
  test's directory bound over ``/var/lib``, so kubelet's default root ``/var/lib/kubelet`` is
  the test's own directory and no flag is needed to name it.

Everything a test reads about a daemon's mounts comes from ``/proc/<pid>/mountinfo``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import requests

from csi.generated import csi_pb2
from csi.testing import CsiClient
from docker_plugin.client import PluginClient
from plugin.node.mounttable import unescape
from tests.conftest import REPO_ROOT, EmulatorProcess
from tests.fuzz.audit import EMULATOR_TOOLS, NODE_TOOLS, AuditedTools
from tests.processes import terminate

KUBELET = "/var/lib/kubelet"


def mounts_of(pid: int) -> list[tuple[str, str, str]]:
    """(mount point, fs type, source) of every mount in the namespace of ``pid``."""
    found = []
    with open(f"/proc/{pid}/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            sep = fields.index("-")
            found.append((unescape(fields[4]), fields[sep + 1], fields[sep + 2]))
    return found


def start_emulator(base: Path, cwd: Path, nodes: tuple[str, ...] = ("node-b", "node-c")) -> EmulatorProcess:
    state, dev = base / "state", base / "dev"
    state.mkdir(parents=True)
    dev.mkdir(parents=True)
    tools = AuditedTools(
        base / "audit", path_roots=[str(state), str(dev)], backing_dirs=[str(state)], tools=EMULATOR_TOOLS
    )
    env = tools.env()
    env["PYTHONPATH"] = str(REPO_ROOT)  # the working directory is no longer the repository
    emulator = EmulatorProcess(state_dir=state, dev_dir=dev, nodes=nodes, env=env, cwd=cwd)
    emulator.audit = tools  # type: ignore[attr-defined]
    emulator.start()
    return emulator


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children of all its threads), deepest last."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                children = [int(c) for c in fh.read().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def restart_emulator(emulator: EmulatorProcess) -> None:
    """Restart the emulator from its state, first killing what it ran (a mkfs that never ends)."""
    if emulator.proc is not None:
        for pid in reversed(descendants(emulator.proc.pid)):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    emulator.restart()


@dataclass
class NamespacedDaemon:
    """A daemon started by its command line in a private mount namespace, with audited commands."""

    base: Path
    command: list[str]
    cwd: Path
    path_roots: list[str]
    backing_dirs: list[str]
    setup: str = ""  # shell run inside the namespace before the daemon
    proc: subprocess.Popen[bytes] | None = None
    tools: AuditedTools = field(init=False)

    def __post_init__(self) -> None:
        self.tools = AuditedTools(
            self.base / "audit", path_roots=self.path_roots, backing_dirs=self.backing_dirs, tools=NODE_TOOLS
        )
        self.log_path = self.base / "daemon.log"

    def start(self) -> None:
        env = self.tools.env()
        env["PYTHONPATH"] = str(REPO_ROOT)
        script = f'{self.setup}\nexec "$@"'
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-ec",
                    script,
                    "daemon",
                    *self.command,
                ],
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def in_namespace(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", f"--mount=/proc/{self.pid}/ns/mnt", "--", *cmd],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        terminate(proc, timeout=20, before_kill=lambda: _killpg(proc.pid))

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _killpg(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def csi_driver(base: Path, emulator: EmulatorProcess, node: str, cwd: Path) -> tuple[NamespacedDaemon, Path]:
    """The CSI driver (``python -m csi``); returns it and the host directory seen as /var/lib."""
    varlib = base / "varlib"
    (varlib / "kubelet").mkdir(parents=True)
    socket_path = base / "csi.sock"
    daemon = NamespacedDaemon(
        base,
        [
            sys.executable,
            "-m",
            "csi",
            "--endpoint",
            f"unix://{socket_path}",
            "--linstor-endpoint",
            emulator.url,
            "--node",
            node,
            "--log-level",
            "info",
        ],
        cwd=cwd,
        path_roots=[KUBELET],
        backing_dirs=[str(emulator.state_dir)],
        setup=f"{shutil.which('mount') or '/usr/bin/mount'} --bind {varlib} /var/lib",  # not audited
    )
    daemon.socket = socket_path  # type: ignore[attr-defined]
    daemon.start()
    wait_for_csi(daemon)
    return daemon, varlib / "kubelet"


def wait_for_csi(daemon: NamespacedDaemon, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not daemon.alive():
            raise RuntimeError(f"CSI driver exited ({daemon.exit_code()}):\n{daemon.log_tail()}")
        try:
            with grpc.insecure_channel(f"unix://{daemon.socket}") as channel:  # type: ignore[attr-defined]
                CsiClient(channel).identity.Probe(csi_pb2.ProbeRequest(), timeout=2)
            return
        except grpc.RpcError:
            time.sleep(0.2)
    raise RuntimeError(f"CSI driver did not answer within {timeout}s:\n{daemon.log_tail()}")


def docker_plugin(base: Path, emulator: EmulatorProcess, node: str, cwd: Path) -> NamespacedDaemon:
    """The Docker plugin (``python -m docker_plugin``) on ``base/linstor.sock``."""
    mount_root = base / "mnt"
    daemon = NamespacedDaemon(
        base,
        [
            sys.executable,
            "-m",
            "docker_plugin",
            "--socket",
            str(base / "linstor.sock"),
            "--mount-root",
            str(mount_root),
            "--state-file",
            str(base / "mounts.json"),
            "--controllers",
            emulator.url,
            "--node",
            node,
            "--config-file",
            "",
            "--release-delay",
            "0",
            # The victim's mount has no container holding it in this namespace; the stale
            # check would rightly release it on a long run, which is recovery, not a defect.
            "--stale-grace",
            "86400",
        ],
        cwd=cwd,
        path_roots=[str(mount_root)],
        backing_dirs=[str(emulator.state_dir)],
    )
    daemon.socket = base / "linstor.sock"  # type: ignore[attr-defined]
    daemon.mount_root = mount_root  # type: ignore[attr-defined]
    daemon.start()
    wait_for_docker(daemon)
    return daemon


def wait_for_docker(daemon: NamespacedDaemon, timeout: float = 30.0) -> None:
    client = PluginClient(str(daemon.socket), timeout=5)  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not daemon.alive():
            raise RuntimeError(f"Docker plugin exited ({daemon.exit_code()}):\n{daemon.log_tail()}")
        try:
            if client.call("Plugin.Activate").get("Implements") == ["VolumeDriver"]:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"Docker plugin did not answer within {timeout}s:\n{daemon.log_tail()}")


def local_devices(emulator: EmulatorProcess, resource: str, node: str) -> list[str]:
    """Device paths LINSTOR reports for ``resource`` on ``node`` (none for an unknown name)."""
    url = f"{emulator.url}/v1/resource-definitions/{resource}/resources/{node}/volumes"
    try:
        answer = requests.get(url, timeout=10)
    except requests.RequestException:
        return []
    if answer.status_code != 200:
        return []
    return [v["device_path"] for v in answer.json() if v.get("device_path")]


def resource_names(emulator: EmulatorProcess) -> list[str]:
    answer = requests.get(f"{emulator.url}/v1/resource-definitions", timeout=10)
    answer.raise_for_status()
    return [rd["name"] for rd in answer.json()]


def as_text(value: Any, limit: int = 300) -> str:
    """A fuzzed value for a failure message: repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
