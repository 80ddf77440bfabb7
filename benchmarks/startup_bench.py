"""How long each daemon takes from start to ready, and how much memory it holds at rest.

"Ready" is what an operator waits for, not merely a socket file:

- the CSI driver (``python -m csi --mode all``): its socket answers ``Identity.Probe`` with
  ``ready: true`` (the controller was reached) and the standard gRPC health service says
  ``SERVING``;
- the Docker plugin (``python -m docker_plugin``): its socket answers ``Plugin.Activate``
  with ``VolumeDriver`` and ``GET /health`` says ``linstor_reachable: true``.

The clock starts just before the process is spawned and the readiness checks are polled
every 10 ms, so a figure includes interpreter start, imports and everything the daemon
does before it answers. The CPU time the daemon used until then is recorded beside it
(``*_ready_cpu_ms``): on a loaded machine it varies far less than the wall time.

The daemons run as installed, with compiled bytecode: an environment with
``PYTHONDONTWRITEBYTECODE`` would make every start compile the project's sources again
(about a third of the import time here), which no installed daemon does; the bytecode goes
to a private ``PYTHONPYCACHEPREFIX`` and one unmeasured start fills it.

Each daemon is started ``--runs`` times against one emulator; medians are reported.
``--baseline DIR`` runs the same rounds from another copy of the source tree (say
``git archive`` of an earlier commit) interleaved with this one, so a before/after
comparison sees the same machine load.

    sudo .venv/bin/python benchmarks/startup_bench.py [--runs 7] [--baseline DIR]

Writes ``benchmarks/out/startup.json``. ``scale_bench.py`` uses the same readiness checks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from csi.generated import csi_pb2, csi_pb2_grpc  # noqa: E402
from docker_plugin.client import PluginClient  # noqa: E402
from testkit.emulator import EmulatorProcess, reset_and_stop  # noqa: E402
from testkit.processes import terminate  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "startup.json"
LOCAL = socket.gethostname().split(".")[0] or "localhost"
POLL_SECONDS = 0.01


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_ms(pid: int) -> float:
    """User plus system CPU time the process has used so far: less sensitive to load than wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK"), 1)


def _poll(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early with status {proc.returncode}")
        try:
            if ready():
                return
        except (grpc.RpcError, OSError, ValueError):
            pass
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"{what} was not ready within {timeout} s")


def csi_ready(channel: grpc.Channel) -> bool:
    """Probe says ready and the gRPC health service says SERVING: what a CO's probes wait for."""
    probe = csi_pb2_grpc.IdentityStub(channel).Probe(csi_pb2.ProbeRequest(), timeout=2)
    if not (probe.HasField("ready") and probe.ready.value):
        return False
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
    return bool(status.status == health_pb2.HealthCheckResponse.SERVING)


def wait_csi_ready(socket_path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        _poll(lambda: socket_path.exists() and csi_ready(channel), proc, "the CSI driver", timeout)


def docker_ready(client: PluginClient) -> bool:
    """Plugin.Activate answers as a volume driver and /health says the controller is reachable."""
    if client.call("Plugin.Activate").get("Implements") != ["VolumeDriver"]:
        return False
    status, _, body = client.raw("/health", None, method="GET")
    return status == 200 and json.loads(body).get("linstor_reachable") is True


def wait_docker_ready(socket_path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    client = PluginClient(str(socket_path), timeout=2)
    _poll(lambda: socket_path.exists() and docker_ready(client), proc, "the Docker plugin", timeout)


def run_as_installed(environ: MutableMapping[str, str], pycache: Path) -> None:
    """Let daemons started with ``environ`` use compiled bytecode, kept in ``pycache``."""
    environ.pop("PYTHONDONTWRITEBYTECODE", None)
    environ["PYTHONPYCACHEPREFIX"] = str(pycache)


def _spawn(command: list[str], source: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_", "LISTEN_", "CSI_"))}
    env["PYTHONPATH"] = str(source)
    with open(log, "ab") as out:
        return subprocess.Popen(command, cwd=source, env=env, stdout=out, stderr=subprocess.STDOUT)


def start_driver(source: Path, url: str, workdir: Path) -> tuple[float, float, subprocess.Popen[bytes]]:
    sock = workdir / "csi.sock"
    command = [
        sys.executable, "-m", "csi", "--endpoint", f"unix://{sock}", "--node", LOCAL, "--mode", "all",
        "--controllers", url, "--path-root", str(workdir),
    ]  # fmt: skip
    start = time.perf_counter()
    proc = _spawn(command, source, workdir / "driver.log")
    wait_csi_ready(sock, proc)
    return time.perf_counter() - start, cpu_ms(proc.pid), proc


def start_plugin(source: Path, url: str, workdir: Path) -> tuple[float, float, subprocess.Popen[bytes]]:
    sock = workdir / "linstor.sock"
    command = [
        sys.executable, "-m", "docker_plugin", "--socket", str(sock), "--mount-root", str(workdir / "mnt"),
        "--state-file", str(workdir / "mounts.json"), "--controllers", url, "--node", LOCAL,
        "--config-file", "",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = _spawn(command, source, workdir / "plugin.log")
    wait_docker_ready(sock, proc)
    return time.perf_counter() - start, cpu_ms(proc.pid), proc


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
    return {key: round(statistics.median(r[key] for r in rows), 1) for key in rows[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="starts of each daemon (default: %(default)s)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds at rest before reading memory")
    ap.add_argument("--baseline", type=Path, help="another source tree to run interleaved, for comparison")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("startup_bench: needs root (the emulator's loop devices)", file=sys.stderr)
        return 2
    sources = {"this": REPO}
    if args.baseline is not None:
        sources["baseline"] = args.baseline.resolve()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    base = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    run_as_installed(os.environ, base / "pycache")
    emulator = EmulatorProcess(
        state_dir=base / "state", dev_dir=base / "dev", extra_args=("--log-level", "WARNING")
    )
    emulator.start()
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
    try:
        for source in sources.values():
            one_round(source, emulator.url, base, settle=0)  # compiles the bytecode; not measured
        for run in range(args.runs):
            for name, source in sources.items():
                row = one_round(source, emulator.url, base, args.settle)
                rows[name].append(row)
                print(f"  run {run + 1} {name}: {row}")
    finally:
        reset_and_stop([emulator])
        shutil.rmtree(base, ignore_errors=True)
    summary = {name: medians(samples) for name, samples in rows.items()}
    for name, figures in summary.items():
        print(f"median {name}: {figures}")
    result: dict[str, Any] = {
        "benchmark": "startup",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": args.runs,
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "load_average_at_start": load_at_start,
        },
        "medians": summary,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
