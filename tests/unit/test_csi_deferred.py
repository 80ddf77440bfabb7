"""A driver whose services are built after its socket listens still serves every call right.

``CsiDriver.deferred`` answers Probe from the controller check alone and builds the core
(volume service, node operations) and the Controller, GroupController and Node services in
a warm-up thread after start. These tests hold that build back on purpose, so they can see
what a CO sees in the window: Probe and the health service answer, and a call to another
service waits for the build and is then served by the real servicer.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2

from csi.deferred import DeferredServicer, Once
from csi.generated import csi_pb2
from csi.server import Backend, CsiDriver, DriverOptions
from tests.unit.test_csi_server import Client, RecordingCore, _volume


@pytest.fixture
def socket_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="csi-deferred-")
    yield path
    for name in os.listdir(path):
        os.unlink(os.path.join(path, name))
    os.rmdir(path)


def test_once_builds_once_for_concurrent_callers() -> None:
    release = threading.Event()
    builds: list[int] = []

    def build() -> str:
        builds.append(1)
        release.wait(10)
        return "built"

    once: Once[str] = Once(build)
    with ThreadPoolExecutor(4) as pool:
        results = [pool.submit(once.get) for _ in range(4)]
        release.set()
        assert [r.result(timeout=10) for r in results] == ["built"] * 4
    assert builds == [1] and once.built


def test_once_tries_again_after_a_failed_build() -> None:
    attempts: list[int] = []

    def build() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("transient")
        return "built"

    once: Once[str] = Once(build)
    with pytest.raises(OSError, match="transient"):
        once.get()
    assert not once.built
    assert once.get() == "built" and len(attempts) == 2


def test_deferred_servicer_forwards_to_the_servicer_built_on_first_call() -> None:
    class Real:
        def Ping(self, request: str, context: object) -> str:
            return f"pong {request}"

    built: list[Real] = []
    stand_in = DeferredServicer(Once(lambda: built.append(Real()) or built[-1]))
    method = stand_in.Ping  # what registration reads: nothing is built yet
    assert built == []
    assert method("a", None) == "pong a" and stand_in.Ping("b", None) == "pong b"
    assert len(built) == 1
    with pytest.raises(AttributeError):
        _ = stand_in._private


def test_probe_answers_before_the_core_is_built_and_calls_wait_for_it(socket_dir: str) -> None:
    core = RecordingCore()
    core.script["iter_volumes"] = lambda with_replicas=False: iter([_volume("a")])
    core.script["node_topology"] = lambda node: {"linbit.com/hostname": node}
    release = threading.Event()
    started_building = threading.Event()

    def build() -> Backend:
        started_building.set()
        assert release.wait(30), "the test never released the build"
        return core, core  # type: ignore[return-value]

    options = DriverOptions(endpoint=f"unix://{socket_dir}/csi.sock", mode="all", node_name="n1", workers=4)
    driver = CsiDriver.deferred(build, lambda: True, options)
    driver.start()
    try:
        with grpc.insecure_channel(driver.endpoint.address) as channel:
            client = Client(channel)
            assert started_building.wait(30)
            assert client.identity.Probe(csi_pb2.ProbeRequest()).ready.value is True
            serving = client.health.Check(health_pb2.HealthCheckRequest(service="csi.v1.Controller"))
            assert serving.status == health_pb2.HealthCheckResponse.SERVING
            assert not driver.wait_warm(0)
            with ThreadPoolExecutor(1) as pool:
                listing = pool.submit(client.controller.ListVolumes, csi_pb2.ListVolumesRequest(), timeout=30)
                assert not listing.done(), "served before the services were built"
                release.set()
                answer = listing.result(timeout=30)
            assert [e.volume.volume_id for e in answer.entries] == ["a"]
            assert driver.wait_warm(30)
            info = client.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
            assert info.node_id == "n1" and dict(info.accessible_topology.segments) == {
                "linbit.com/hostname": "n1"
            }
    finally:
        release.set()
        driver.stop(grace=1)
    assert core.calls.count("iter_volumes") == 1


def test_probe_is_not_ready_while_the_controller_is_unreachable(socket_dir: str) -> None:
    core = RecordingCore()
    options = DriverOptions(endpoint=f"unix://{socket_dir}/csi.sock", mode="controller", workers=2)
    driver = CsiDriver.deferred(lambda: (core, None), lambda: False, options)  # type: ignore[arg-type,return-value]
    driver.start()
    try:
        with grpc.insecure_channel(driver.endpoint.address) as channel:
            assert Client(channel).identity.Probe(csi_pb2.ProbeRequest()).ready.value is False
    finally:
        driver.stop(grace=1)


def test_a_failed_build_is_an_error_on_the_call_and_tried_again(socket_dir: str) -> None:
    core = RecordingCore()
    core.script["iter_volumes"] = lambda with_replicas=False: iter([])
    attempts: list[int] = []

    def build() -> Backend:
        attempts.append(1)
        if len(attempts) <= 2:  # the warm-up's attempt and the first call's
            raise OSError("cannot read the node's state")
        return core, None  # type: ignore[return-value]

    options = DriverOptions(endpoint=f"unix://{socket_dir}/csi.sock", mode="controller", workers=2)
    driver = CsiDriver.deferred(build, lambda: True, options)
    driver.start()
    try:
        assert driver.wait_warm(30)
        with grpc.insecure_channel(driver.endpoint.address) as channel:
            client = Client(channel)
            with pytest.raises(grpc.RpcError) as info:
                client.controller.ListVolumes(csi_pb2.ListVolumesRequest())
            assert info.value.code() == grpc.StatusCode.INTERNAL
            assert list(client.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries) == []
    finally:
        driver.stop(grace=1)
    assert len(attempts) == 3
