"""A bare gRPC server in its own process: what a CSI call costs before a driver does anything.

The node path's two calls (NodeStage, NodePublish) each pay a gRPC round trip over the
driver's unix socket that the shell script it is held against does not. This server
answers ``Identity.Probe`` with nothing but the response, on a thread pool as large as the
driver's, so timing its round trips beside the driver shows how much of the driver's lead
over the script is the transport every CSI driver written with Python's gRPC pays, and how
much is the driver's own work. Run as ``python -m benchmarks.bare_grpc SOCKET``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path
from types import TracebackType

import grpc

from benchmarks.common import REPO
from csi.generated import csi_pb2, csi_pb2_grpc
from csi.server import DriverOptions
from testkit.processes import terminate


class _Identity(csi_pb2_grpc.IdentityServicer):
    def Probe(self, request: csi_pb2.ProbeRequest, context: grpc.ServicerContext) -> csi_pb2.ProbeResponse:
        return csi_pb2.ProbeResponse()


def serve(socket: Path) -> None:
    """Answer Probe on ``socket`` until terminated."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=DriverOptions.workers))
    csi_pb2_grpc.add_IdentityServicer_to_server(_Identity(), server)
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    server.wait_for_termination()


class BareServer:
    """The bare server as a child process, with a client channel to it."""

    def __init__(self, socket: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bare_grpc", str(socket)], cwd=REPO)
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.stub = csi_pb2_grpc.IdentityStub(self.channel)

    def __enter__(self) -> BareServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.channel.close()
        terminate(self.proc, timeout=10)


def probe_round_trip_ms(stub: csi_pb2_grpc.IdentityStub, rounds: int, idle_seconds: float) -> float:
    """Median milliseconds of one ``Identity.Probe``, each sent after ``idle_seconds`` of quiet."""
    samples = []
    for _ in range(rounds):
        time.sleep(idle_seconds)
        start = time.perf_counter()
        stub.Probe(csi_pb2.ProbeRequest())
        samples.append(time.perf_counter() - start)
    return round(statistics.median(samples) * 1000, 3)


def round_trips(stub: csi_pb2_grpc.IdentityStub, rounds: int = 101) -> dict[str, float]:
    """Probe round trips back to back, and after 20 ms of quiet, as the first call of a pod start meets it."""
    probe_round_trip_ms(stub, 10, 0.0)  # connection and code paths warm
    return {
        "back_to_back_ms": probe_round_trip_ms(stub, rounds, 0.0),
        "after_20ms_idle_ms": probe_round_trip_ms(stub, rounds, 0.02),
    }


def transport_floor(socket: Path, rounds: int = 101) -> dict[str, float]:
    """:func:`round_trips` of the bare server."""
    with BareServer(socket) as server:
        return round_trips(server.stub, rounds)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
