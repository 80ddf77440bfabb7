"""A private Docker daemon for end-to-end tests, isolated from the host's and from other tests'.

Docker discovers plugins in the fixed directories ``/run/docker/plugins`` and
``/etc/docker/plugins``, so two daemons on one machine would see each other's plugin
sockets. :class:`DockerDaemon` therefore runs ``dockerd`` in its own mount namespace
(``unshare --mount``) where tmpfs mounts hide those directories and a bind mount puts the
test's own :attr:`DockerDaemon.plugins_dir` at ``/run/docker/plugins``. A plugin started
with :meth:`DockerDaemon.popen_in_namespace` shares that namespace, so the mounts it makes
are the ones the daemon's containers see, and everything it mounted disappears with the
namespace when the daemon stops. Data root, exec root, pid file and API socket all live
in the given base directory; the daemon never touches iptables or creates a bridge.

Usage::

    ok, reason = dockerd_available()
    require(ok, reason)
    with DockerDaemon(tmp_path / "docker") as daemon:
        daemon.import_busybox()
        plugin = daemon.popen_in_namespace([sys.executable, "-m", "docker_plugin",
                                            "--socket", "/run/docker/plugins/linstor.sock"])
        daemon.docker("run", "--rm", "busybox", "true")

The busybox image is imported (``docker import``) from a directory holding Debian's
busybox-static binary and one symlink per applet, so no registry is needed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from docker_plugin.client import PluginClient
from testkit.processes import terminate, wait_ready

BUSYBOX = "/bin/busybox"
DOCKERD = "dockerd"
# Debian's docker.io client; /usr/local/bin/docker (newer) works as well.
DOCKER_CLIS = ("/usr/bin/docker", "docker")


def dockerd_available() -> tuple[bool, str]:
    """Whether this machine can run a private daemon: root, dockerd, a docker CLI, busybox-static."""
    if os.geteuid() != 0:
        return False, "needs root to run a private dockerd"
    if shutil.which(DOCKERD) is None:
        return False, "needs dockerd (Debian package docker.io)"
    if _docker_cli() is None:
        return False, "needs the docker CLI (Debian package docker.io)"
    if not os.path.exists(BUSYBOX):
        return False, f"needs {BUSYBOX} (Debian package busybox-static) for the test image"
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return False, f"needs the {tool} command (util-linux)"
    return True, ""


def _docker_cli() -> str | None:
    for cli in DOCKER_CLIS:
        found = shutil.which(cli)
        if found:
            return found
    return None


class DockerDaemon:
    """One dockerd in its own mount namespace, with everything under ``base_dir``."""

    def __init__(self, base_dir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.base_dir = base_dir
        self.extra_args = extra_args
        self.data_root = base_dir / "data"
        self.exec_root = base_dir / "exec"
        self.pidfile = base_dir / "docker.pid"
        self.socket_path = base_dir / "docker.sock"
        self.plugins_dir = base_dir / "plugins"  # the daemon sees it as /run/docker/plugins
        self.spec_dir = base_dir / "plugin-specs"  # the daemon sees it as /etc/docker/plugins
        self.log_path = base_dir / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.cli = _docker_cli() or "docker"

    @property
    def host(self) -> str:
        """The value for ``docker -H`` / ``DOCKER_HOST``."""
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int:
        """Pid of dockerd; its mount namespace is the one plugins must join."""
        if self.proc is None:
            raise RuntimeError("dockerd is not running")
        return self.proc.pid

    def _start_script(self) -> str:
        q = shlex.quote
        daemon_args = [
            DOCKERD,
            "--config-file", str(self.base_dir / "daemon.json"),
            "--iptables=false", "--ip6tables=false", "--bridge=none",
            "--storage-driver=vfs",
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "--host", self.host,
            *self.extra_args,
        ]  # fmt: skip
        return "\n".join(
            [
                "set -e",
                "mount --make-rprivate /",
                "mount -t tmpfs -o mode=0755 linstor-test-docker-run /run/docker",
                "mkdir -p /run/docker/plugins",
                f"mount --bind {q(str(self.plugins_dir))} /run/docker/plugins",
                "mount -t tmpfs -o mode=0755 linstor-test-docker-etc /etc/docker",
                "mkdir -p /etc/docker/plugins",
                f"mount --bind {q(str(self.spec_dir))} /etc/docker/plugins",
                "exec " + " ".join(q(a) for a in daemon_args),
            ]
        )

    def start(self, timeout: float = 60.0) -> None:
        for d in (self.base_dir, self.data_root, self.exec_root, self.plugins_dir, self.spec_dir):
            d.mkdir(parents=True, exist_ok=True)
        # Mount targets for the namespace's tmpfs; standard directories Docker creates anyway.
        for d in ("/run/docker", "/etc/docker"):
            os.makedirs(d, exist_ok=True)
        (self.base_dir / "daemon.json").write_text("{}\n")
        script = self.base_dir / "start-dockerd.sh"
        script.write_text(self._start_script() + "\n")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        # unshare execs the shell, which execs dockerd: one pid throughout.
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", str(script)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()

        def answers() -> bool:
            if not self.socket_path.exists():
                return False
            probe = self.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=10)
            return probe.returncode == 0

        wait_ready(self.proc, answers, "dockerd", self.log_tail, self.stop, timeout, interval=0.2)

    def stop(self, timeout: float = 40.0) -> None:
        """SIGTERM dockerd (it stops its containers), then SIGKILL its whole process group."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        terminate(proc, timeout)
        # containerd shims run in the same session; they must not outlive the test.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def __enter__(self) -> DockerDaemon:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def docker(
        self, *args: str, check: bool = True, timeout: float = 180.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this daemon; ``check`` raises with the CLI's output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(self.base_dir / "cli-config")
        result = subprocess.run(
            [self.cli, "-H", self.host, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=env,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def import_busybox(self, tag: str = "busybox:latest") -> str:
        """Build a one-layer image from busybox-static plus applet symlinks; returns the tag."""
        rootfs = self.base_dir / "busybox-rootfs"
        (rootfs / "bin").mkdir(parents=True, exist_ok=True)
        for d in ("tmp", "data", "etc", "proc", "sys", "dev"):
            (rootfs / d).mkdir(exist_ok=True)
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout
        for applet in applets.split():
            link = rootfs / "bin" / applet
            if applet != "busybox" and not link.exists():
                link.symlink_to("busybox")
        tarball = self.base_dir / "busybox.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        self.docker("import", "--change", "ENV PATH=/bin", str(tarball), tag)
        return tag

    def namespace_prefix(self) -> list[str]:
        """Command prefix that runs a program in the daemon's mount namespace."""
        return ["nsenter", f"--mount=/proc/{self.pid}/ns/mnt", "--"]

    def popen_in_namespace(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a long-running process (a plugin) whose mounts the daemon's containers see.

        nsenter execs the program, so the returned process's pid is the program's pid.
        """
        return subprocess.Popen([*self.namespace_prefix(), *cmd], **kwargs)

    def run_in_namespace(self, cmd: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a short command (``findmnt``, ``cat``) in the daemon's mount namespace."""
        return subprocess.run(
            [*self.namespace_prefix(), *cmd], capture_output=True, text=True, timeout=timeout, check=False
        )


MAX_SOCKET_PATH = 107  # AF_UNIX sun_path limit on Linux, minus the terminating NUL


class PluginProcess:
    """``python -m docker_plugin`` as a child process, optionally inside a DockerDaemon's namespace.

    Without a daemon the plugin runs on the host with its socket at ``base_dir/linstor.sock``.
    With one, it joins the daemon's mount namespace and binds ``/run/docker/plugins/<driver>.sock``
    there (the daemon's driver ``<driver>``), reachable from the host at
    ``daemon.plugins_dir/<driver>.sock``; its mounts are then the ones containers see.
    """

    def __init__(
        self,
        base_dir: Path,
        controllers: str,
        node: str,
        *,
        daemon: DockerDaemon | None = None,
        driver: str = "linstor",
        extra_args: tuple[str, ...] = (),
        python: str | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.controllers = controllers
        self.node = node
        self.daemon = daemon
        self.driver = driver
        self.extra_args = extra_args
        self.python = python or sys.executable
        self.mount_root = base_dir / "mnt"
        self.state_file = base_dir / "mounts.json"
        self.log_path = base_dir / "plugin.log"
        self.proc: subprocess.Popen[bytes] | None = None
        if daemon is None:
            self.socket_path = base_dir / f"{driver}.sock"
            self.bind_path = str(self.socket_path)
        else:
            self.socket_path = daemon.plugins_dir / f"{driver}.sock"
            self.bind_path = f"/run/docker/plugins/{driver}.sock"
        if len(str(self.socket_path)) > MAX_SOCKET_PATH:
            raise ValueError(f"socket path too long for AF_UNIX: {self.socket_path}")

    def command(self) -> list[str]:
        return [
            self.python, "-m", "docker_plugin",
            "--socket", self.bind_path,
            "--mount-root", str(self.mount_root),
            "--state-file", str(self.state_file),
            "--controllers", self.controllers,
            "--node", self.node,
            "--config-file", "",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 30.0, **popen_kwargs: Any) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_", "LISTEN_"))}
        # nsenter starts the plugin in the namespace's root directory, not in cwd: without
        # this, ``-m docker_plugin`` would import whatever copy the environment has installed.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_repo_root()), env.get("PYTHONPATH")) if p)
        env.update(popen_kwargs.pop("env", {}))
        kwargs: dict[str, Any] = {"stdout": log, "stderr": subprocess.STDOUT, "env": env, "cwd": _repo_root()}
        kwargs.update(popen_kwargs)
        if self.daemon is None:
            self.proc = subprocess.Popen(self.command(), **kwargs)
        else:
            self.proc = self.daemon.popen_in_namespace(self.command(), **kwargs)
        log.close()
        client = PluginClient(str(self.socket_path), timeout=5)
        wait_ready(
            self.proc,
            lambda: client.call("Plugin.Activate").get("Implements") == ["VolumeDriver"],
            "the Docker plugin",
            self.log_tail,
            self.stop,
            timeout,
            transient=(OSError, ValueError),
        )

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; returns the exit code (None if it was not running).

        A plugin that does not stop in time first writes its threads' stacks to its log
        (SIGUSR1), then is killed.
        """
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None

        def dump_stacks() -> None:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1)

        terminate(proc, timeout, before_kill=dump_stacks)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, no clean-up at all."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def client(self, timeout: float = 130.0) -> PluginClient:
        return PluginClient(str(self.socket_path), timeout=timeout)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
