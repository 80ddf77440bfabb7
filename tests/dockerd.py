"""Docker helpers for tests: the daemon and plugin live in :mod:`testkit.dockerd`; here, the
whole private stack (emulator, dockerd, plugin) the end-to-end Docker tests share."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testkit.dockerd import DOCKER_CLIS, DockerDaemon, PluginProcess, dockerd_available
from testkit.emulator import EmulatorProcess, reset_and_stop

__all__ = ["DOCKER_CLIS", "DockerDaemon", "DockerStack", "PluginProcess", "docker_stack", "dockerd_available"]


@dataclass
class DockerStack:
    """What :func:`docker_stack` yields, held together; each end-to-end module adds its own checks."""

    daemon: DockerDaemon
    plugin: PluginProcess
    emulator: EmulatorProcess


@contextmanager
def docker_stack(
    prefix: str, local_node: str, plugin_args: Sequence[str] = ()
) -> Iterator[tuple[DockerDaemon, PluginProcess, EmulatorProcess]]:
    """An emulator (the local node plus node-b), a private dockerd with busybox imported, and
    the plugin in the daemon's mount namespace; torn down containers first (their Unmounts
    reach the plugin), then the plugin, the daemon (its mount namespace and every mount in
    it go away) and the emulator."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        base = Path(tmp)
        emulator = EmulatorProcess(
            state_dir=base / "emu" / "state", dev_dir=base / "emu" / "dev", nodes=("node-b",)
        )
        emulator.start()
        daemon = DockerDaemon(base / "d")
        try:
            daemon.start()
            daemon.import_busybox()
            plugin = PluginProcess(
                base / "p", emulator.url, local_node, daemon=daemon, extra_args=tuple(plugin_args)
            )
            plugin.start()
            try:
                yield daemon, plugin, emulator
            finally:
                ids = daemon.docker("ps", "-aq", check=False).stdout.split()
                if ids:
                    daemon.docker("rm", "-f", *ids, check=False)
                plugin.stop()
        finally:
            daemon.stop()
            reset_and_stop([emulator])
