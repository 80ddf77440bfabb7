"""The bare gRPC server node_ab times beside the driver: it answers, and stops with its client."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bare_grpc import BareServer, probe_round_trip_ms, transport_floor
from csi.generated import csi_pb2


def test_bare_server_answers_probe_with_an_empty_response_and_stops(tmp_path: Path) -> None:
    with BareServer(tmp_path / "bare.sock") as server:
        answer = server.stub.Probe(csi_pb2.ProbeRequest())
        assert answer == csi_pb2.ProbeResponse()
        assert not answer.HasField("ready")
        assert probe_round_trip_ms(server.stub, 3, 0.0) > 0
    assert server.proc.poll() is not None


def test_transport_floor_reports_both_kinds_of_round_trip(tmp_path: Path) -> None:
    floor = transport_floor(tmp_path / "bare.sock", rounds=3)
    assert set(floor) == {"back_to_back_ms", "after_20ms_idle_ms"}
    assert all(value > 0 for value in floor.values())
