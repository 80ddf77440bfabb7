"""The CSI driver and the Docker plugin as their own processes, and how long they take to be ready.

``csi_bench``, ``node_ab`` and ``scale_bench`` talk to a running driver
(:class:`DriverProcess`); ``startup_bench`` and ``scale_bench`` time start-to-ready rounds
(:func:`one_round`). One command line for the driver serves both, so the daemon that is
timed at start is the one that is measured afterwards.

"Ready" is what an operator waits for, not merely a socket file:

- the CSI driver (``python -m csi --mode all``): its socket answers ``Identity.Probe`` with
  ``ready: true`` (the controller was reached) and the standard gRPC health service says
  ``SERVING``;
- the Docker plugin (``python -m docker_plugin``): its socket answers ``Plugin.Activate``
  with ``VolumeDriver`` and ``GET /health`` says ``linstor_reachable: true``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path

import grpc
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.common import LOCAL, REPO, cpu_seconds, rss_mib
from csi.generated import csi_pb2, csi_pb2_grpc
from csi.testing import CsiClient
from docker_plugin.client import PluginClient
from testkit.dockerd import PluginProcess
from testkit.processes import free_port, terminate, wait_ready

POLL_SECONDS = 0.01


def driver_command(url: str, workdir: Path, metrics_port: int | None = None) -> list[str]:
    """``python -m csi --mode all`` for this node: socket ``workdir/csi.sock``, paths below ``workdir``."""
    command = [
        sys.executable, "-m", "csi", "--endpoint", f"unix://{workdir / 'csi.sock'}", "--node", LOCAL,
        "--mode", "all", "--controllers", url, "--path-root", str(workdir),
    ]  # fmt: skip
    if metrics_port is not None:
        command += ["--metrics-port", str(metrics_port), "--metrics-address", "127.0.0.1"]
    return command


class DriverProcess:
    """``python -m csi`` as deployed: its own process, socket and metrics port."""

    def __init__(
        self, controller_url: str, workdir: Path, repo: Path = REPO, env: Mapping[str, str] | None = None
    ) -> None:
        """Start the driver of the source tree ``repo`` (another revision's, for a side-by-side run),
        with ``env`` on top of a clean environment (the benchmark's own ``LS_*`` settings)."""
        self.socket = workdir / "csi.sock"
        self.metrics_port = free_port()
        self.log = workdir / "driver.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                driver_command(controller_url, workdir, self.metrics_port),
                cwd=repo,
                env={**_clean_env(repo), **(env or {})},
                stdout=out,
                stderr=out,
            )
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.client = CsiClient(self.channel)

    def rest_calls(self) -> float:
        """How many LINSTOR REST calls the driver has made so far, from its own Prometheus counter."""
        text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("linstor_plugin_linstor_requests_total{")
        )

    def cpu_seconds(self) -> float:
        """User plus system CPU time the driver process has used so far."""
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.channel.close()
        terminate(self.proc, timeout=60)


def _clean_env(source: Path) -> dict[str, str]:
    """The caller's environment without settings the daemons read, importing from ``source``.

    A stray ``LS_CONTROLLERS`` or socket-activation variable in the shell would otherwise
    point the measured daemon somewhere else than the benchmark's emulator.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_", "LISTEN_", "CSI_"))}
    env["PYTHONPATH"] = str(source)
    return env


def _poll(
    ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float
) -> None:
    """Until ``ready``; a daemon that exits or does not get ready is stopped, its log's tail quoted."""
    wait_ready(
        proc,
        ready,
        what,
        lambda: log.read_text(errors="replace")[-4000:] if log.exists() else "",
        lambda: terminate(proc, timeout=10),
        timeout,
        interval=POLL_SECONDS,
        transient=(grpc.RpcError, OSError, ValueError),
    )


def csi_ready(channel: grpc.Channel) -> bool:
    """Probe says ready and the gRPC health service says SERVING: what a CO's probes wait for."""
    probe = csi_pb2_grpc.IdentityStub(channel).Probe(csi_pb2.ProbeRequest(), timeout=2)
    if not (probe.HasField("ready") and probe.ready.value):
        return False
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
    return bool(status.status == health_pb2.HealthCheckResponse.SERVING)


def wait_csi_ready(socket_path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        _poll(lambda: socket_path.exists() and csi_ready(channel), proc, "the CSI driver", log, timeout)


def docker_ready(client: PluginClient) -> bool:
    """Plugin.Activate answers as a volume driver and /health says the controller is reachable."""
    if client.call("Plugin.Activate").get("Implements") != ["VolumeDriver"]:
        return False
    status, _, body = client.raw("/health", None, method="GET")
    return status == 200 and json.loads(body).get("linstor_reachable") is True


def wait_docker_ready(
    socket_path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    client = PluginClient(str(socket_path), timeout=2)
    _poll(lambda: socket_path.exists() and docker_ready(client), proc, "the Docker plugin", log, timeout)


def run_as_installed(environ: MutableMapping[str, str], pycache: Path) -> None:
    """Let daemons started with ``environ`` use compiled bytecode, kept in ``pycache``.

    An environment with ``PYTHONDONTWRITEBYTECODE`` would make every start compile the
    project's sources again (about a third of the import time), which no installed daemon does.
    """
    environ.pop("PYTHONDONTWRITEBYTECODE", None)
    environ["PYTHONPYCACHEPREFIX"] = str(pycache)


def _spawn(command: list[str], source: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, cwd=source, env=_clean_env(source), stdout=out, stderr=subprocess.STDOUT
        )


def start_driver(source: Path, url: str, workdir: Path) -> tuple[float, float, subprocess.Popen[bytes]]:
    """(seconds to ready, CPU ms until then, process) of a driver started from ``source``."""
    start = time.perf_counter()
    proc = _spawn(driver_command(url, workdir), source, workdir / "driver.log")
    wait_csi_ready(workdir / "csi.sock", proc, workdir / "driver.log")
    return time.perf_counter() - start, round(cpu_seconds(proc.pid) * 1000, 1), proc


def start_plugin(source: Path, url: str, workdir: Path) -> tuple[float, float, subprocess.Popen[bytes]]:
    """(seconds to ready, CPU ms until then, process) of a Docker plugin started from ``source``."""
    plugin = PluginProcess(workdir, url, LOCAL)
    start = time.perf_counter()
    proc = _spawn(plugin.command(), source, workdir / "plugin.log")
    wait_docker_ready(plugin.socket_path, proc, workdir / "plugin.log")
    return time.perf_counter() - start, round(cpu_seconds(proc.pid) * 1000, 1), proc


def one_round(source: Path, url: str, workdir: Path, settle: float) -> dict[str, float]:
    """Start both daemons one after the other, read their memory after ``settle`` s, stop them."""
    row: dict[str, float] = {}
    for daemon, start in (("driver", start_driver), ("plugin", start_plugin)):
        run_dir = Path(tempfile.mkdtemp(prefix=f"{daemon}-", dir=workdir))
        seconds, cpu, proc = start(source, url, run_dir)
        try:
            time.sleep(settle)
            row[f"{daemon}_ready_ms"] = round(seconds * 1000, 1)
            row[f"{daemon}_ready_cpu_ms"] = cpu
            row[f"{daemon}_rss_mib"] = rss_mib(proc.pid)
        finally:
            terminate(proc, timeout=30)
    return row


def medians(rows: list[dict[str, float]]) -> dict[str, float]:
    """The median of each figure over start-up rounds."""
    return {key: round(statistics.median(r[key] for r in rows), 1) for key in rows[0]}
