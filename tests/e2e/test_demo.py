"""scripts/run-demo.sh for real: Ctrl-C while a container uses a volume loses nothing.

The demo runs as a user runs it (``bash scripts/run-demo.sh``, as root) with its own
``DEMO_DIR``, ``EMULATOR_PORT`` and ``DOCKER_HOST``, so it starts a Docker daemon of its
own. It runs in a private mount namespace that a holder process keeps alive between two
runs of the demo: there tmpfs mounts hide the host's ``/run/docker`` and ``/etc/docker``
(the demo's plugin socket and its daemon's plugin discovery stay private), and the mounts
the plugin makes live on after the demo stops, exactly as they would on a host, so the test
can see whether any were left behind.

Ctrl-C is a SIGINT to the demo's process group, as a terminal sends it. Then the second run
must find the volume unmounted and its mount count released: ``docker volume rm`` works.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO_ROOT, free_port, have_root_and_loop, require
from tests.dockerd import DOCKER_CLIS, dockerd_available
from tests.processes import terminate

pytestmark = [pytest.mark.docker, pytest.mark.root, pytest.mark.slow]

DEMO_SCRIPT = REPO_ROOT / "scripts" / "run-demo.sh"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


READY_LINE = "Press Ctrl-C to stop."
STATE_FILE = ".linstor-docker-volume-mounts.json"


class Namespace:
    """A mount namespace kept alive by a sleeping holder, with /run/docker and /etc/docker hidden."""

    def __init__(self, base: Path) -> None:
        self.ready = base / "namespace-ready"
        script = "\n".join(
            [
                "set -e",
                "mount --make-rprivate /",
                "mount -t tmpfs -o mode=0755 linstor-demo-test-run /run/docker",
                "mount -t tmpfs -o mode=0755 linstor-demo-test-etc /etc/docker",
                f"touch {self.ready}",
                "exec sleep 3600",
            ]
        )
        for target in ("/run/docker", "/etc/docker"):
            os.makedirs(target, exist_ok=True)
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], start_new_session=True
        )
        deadline = time.monotonic() + 20
        while not self.ready.exists():
            assert self.proc.poll() is None, "the namespace holder exited"
            assert time.monotonic() < deadline, "the namespace holder did not set up its mounts"
            time.sleep(0.05)

    def prefix(self) -> list[str]:
        return ["nsenter", f"--mount=/proc/{self.proc.pid}/ns/mnt", "--"]

    def mounts_under(self, directory: Path) -> list[str]:
        proc = subprocess.run(
            [*self.prefix(), "findmnt", "--list", "--noheadings", "--output", "TARGET"],
            capture_output=True,
            text=True,
            check=True,
        )
        root = str(directory).rstrip("/") + "/"
        return [line for line in proc.stdout.splitlines() if line.startswith(root)]

    def close(self) -> None:
        terminate(self.proc, timeout=10)


@dataclass
class Demo:
    """One run of scripts/run-demo.sh in the namespace."""

    namespace: Namespace
    demo_dir: Path
    port: int
    run: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def docker_host(self) -> str:
        return f"unix://{self.demo_dir}/docker.sock"

    @property
    def log(self) -> Path:
        return self.demo_dir.parent / f"run-demo-{self.run}.log"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def logs(self) -> str:
        parts = [f"--- run-demo output:\n{self.output()[-3000:]}"]
        for path in sorted((self.demo_dir / "logs").glob("*.log")):
            parts.append(f"--- {path.name}:\n{path.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def start(self, *args: str, timeout: float = 240) -> None:
        self.run += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "LS_", "DEMO_"))}
        env.update(
            DEMO_DIR=str(self.demo_dir),
            EMULATOR_PORT=str(self.port),
            EMULATOR_NODES="node-b",
            DOCKER_HOST=self.docker_host,
        )
        with open(self.log, "wb") as out:
            # A session of its own: its process group is what a terminal's Ctrl-C reaches.
            self.proc = subprocess.Popen(
                [*self.namespace.prefix(), "bash", str(DEMO_SCRIPT), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO_ROOT,
                start_new_session=True,
                # As from a terminal: SIGINT handled, even when this test runs in a background
                # job, whose shell starts everything with SIGINT ignored (and bash cannot trap a
                # signal ignored at its start).
                preexec_fn=_default_sigint,
            )
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.output():
            if self.proc.poll() is not None:
                pytest.fail(f"the demo exited ({self.proc.returncode}) before it was ready:\n{self.logs()}")
            if time.monotonic() > deadline:
                self.interrupt()
                pytest.fail(f"the demo was not ready within {timeout}s:\n{self.logs()}")
            time.sleep(0.5)

    def interrupt(self, timeout: float = 120) -> int:
        """Ctrl-C: SIGINT to the demo's process group; returns the demo's exit code."""
        assert self.proc is not None
        proc, self.proc = self.proc, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            terminate(proc, timeout=30)
            pytest.fail(f"the demo did not stop within {timeout}s of Ctrl-C:\n{self.logs()}")

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cli = next(found for cli in DOCKER_CLIS if (found := shutil.which(cli)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(self.demo_dir.parent / "cli-config")
        result = subprocess.run(
            [cli, "-H", self.docker_host, *args], capture_output=True, text=True, timeout=180, env=env
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result

    def resource_definitions(self) -> list[str]:
        answer = requests.get(f"http://127.0.0.1:{self.port}/v1/resource-definitions", timeout=10)
        answer.raise_for_status()
        return [rd["name"] for rd in answer.json()]

    def counted_mounts(self) -> dict[str, dict[str, int]]:
        """{resource: {mount id: count}} from the plugin's state file, volumes with holders only."""
        path = self.demo_dir / "docker-mounts" / STATE_FILE
        if not path.exists():
            return {}
        data = json.loads(path.read_text())
        return {v["resource"]: v["holders"] for v in data.get("volumes", []) if v.get("holders")}


def _detach_loops_under(directory: Path) -> None:
    """Loop devices whose backing file is below the test's directory (a failed run's leftovers)."""
    listing = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout
    for line in listing.splitlines():
        if f"({directory}/" in line:
            subprocess.run(["losetup", "-d", line.split(":", 1)[0]], check=False)


@pytest.fixture
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    ok, reason = have_root_and_loop()
    require(ok, reason)
    ok, reason = dockerd_available()
    require(ok, reason)
    # Short: the demo's dockerd keeps sockets in its exec root below DEMO_DIR.
    base = Path(f"/tmp/demo-{uuid.uuid4().hex[:8]}")
    base.mkdir()
    namespace = Namespace(base)
    running = Demo(namespace, base / "demo", free_port())
    try:
        yield running
    finally:
        if running.proc is not None:
            running.interrupt()
        namespace.close()  # its mounts go with it
        _detach_loops_under(base)
        shutil.rmtree(base, ignore_errors=True)


def test_ctrl_c_with_a_running_container_leaves_nothing_mounted(demo: Demo) -> None:
    demo.start()
    name = f"demo-{uuid.uuid4().hex[:6]}"
    demo.docker("volume", "create", "-d", "linstor", "-o", "size=64M", name)
    demo.docker(
        "run", "-d", "--name", "user", "--network", "none", "-v", f"{name}:/data", "busybox",
        "sh", "-c", "echo kept > /data/proof && sync && exec sleep 600",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while demo.docker("exec", "user", "cat", "/data/proof", check=False).stdout.strip() != "kept":
        assert time.monotonic() < deadline, f"the container never wrote its file:\n{demo.logs()}"
        time.sleep(0.3)
    # The busybox image has every applet busybox offers, not a handful.
    applets = demo.docker("run", "--rm", "--network", "none", "busybox", "busybox", "--list").stdout.split()
    listed = demo.docker("run", "--rm", "--network", "none", "busybox", "ls", "/bin").stdout.split()
    assert set(applets) <= set(listed)
    assert demo.docker("exec", "user", "md5sum", "/data/proof").stdout.split()[0]
    mount_root = demo.demo_dir / "docker-mounts"
    assert demo.namespace.mounts_under(mount_root), "the volume is mounted while the container runs"
    assert demo.counted_mounts(), "the plugin counts the container's mount"

    assert demo.interrupt() == 0, demo.logs()
    output = demo.output()
    assert output.index("stopping dockerd") < output.index("stopping the Docker plugin"), output
    assert demo.namespace.mounts_under(mount_root) == [], f"left mounted after Ctrl-C:\n{demo.logs()}"
    assert demo.counted_mounts() == {}, "a mount count outlived its container"

    # Next run: the stopped container is removed, and so is the volume: nothing holds it.
    demo.start()
    assert "Traceback" not in demo.output()
    demo.docker("rm", "user")
    removed = demo.docker("volume", "rm", name, check=False)
    assert removed.returncode == 0, f"{removed.stderr}\n{demo.logs()}"
    assert name not in demo.resource_definitions()
    assert demo.interrupt() == 0, demo.logs()
    assert demo.namespace.mounts_under(demo.demo_dir) == []


def test_flags_move_the_device_directory_and_the_plugin_socket(demo: Demo) -> None:
    """--dev-dir and --plugin-socket reach the emulator and the plugin; the socket names the driver."""
    helped = subprocess.run(["bash", str(DEMO_SCRIPT), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0
    assert "--dev-dir" in helped.stdout and "--plugin-socket" in helped.stdout
    bad = subprocess.run(
        ["bash", str(DEMO_SCRIPT), "--plugin-socket", "relative.sock"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "absolute path ending in .sock" in bad.stderr

    dev_dir = Path("/dev") / f"linstor-demo-{uuid.uuid4().hex[:6]}"
    socket_path = "/run/docker/plugins/linstor-demo.sock"
    try:
        demo.start("--dev-dir", str(dev_dir), "--plugin-socket", socket_path)
        assert f'{socket_path}   (driver "linstor-demo")' in demo.output()
        demo.docker("volume", "create", "-d", "linstor-demo", "-o", "size=32M", "-o", "replicas=2", "flagged")
        assert list(dev_dir.iterdir()), "the emulator makes its device nodes in --dev-dir"
        demo.docker("run", "--rm", "--network", "none", "-v", "flagged:/data", "busybox", "touch", "/data/x")
        demo.docker("volume", "rm", "flagged")
        assert demo.interrupt() == 0, demo.logs()
    finally:
        shutil.rmtree(dev_dir, ignore_errors=True)
