"""The driver started with the manifests' own arguments offers what the manifests rely on.

The CSIDriver object and the sidecar flags make promises on the driver's behalf:
``attachRequired`` needs ControllerPublish, ``storageCapacity``/``--enable-capacity`` need
GetCapacity, the snapshotter, resizer and health monitor need their capabilities, and the
provisioner's topology needs accessibility constraints. Here the controller container's
command line from the rendered Deployment is started for real (only the socket path is
moved to a temp dir) and asked over gRPC, as the sidecars ask it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from csi.generated import csi_pb2, csi_pb2_grpc
from testkit.waiting import wait_until
from tests.processes import terminate
from tests.unit.test_deploy_kubernetes import containers, driver_container, image_name, one
from tests.unit.test_deploy_kustomize import KUBERNETES_DIR, render

CtrlRpc = csi_pb2.ControllerServiceCapability.RPC
# What each controller sidecar needs the driver to advertise (csi-notes.md section 4.1).
SIDECAR_NEEDS = {
    "csi-provisioner": {CtrlRpc.CREATE_DELETE_VOLUME},
    "csi-attacher": {CtrlRpc.PUBLISH_UNPUBLISH_VOLUME},
    "csi-resizer": {CtrlRpc.EXPAND_VOLUME},
    "csi-snapshotter": {CtrlRpc.CREATE_DELETE_SNAPSHOT, CtrlRpc.LIST_SNAPSHOTS},
    "csi-external-health-monitor-controller": {CtrlRpc.VOLUME_CONDITION},
}


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render(KUBERNETES_DIR / "base")


@pytest.fixture(scope="module")
def channel(
    objects: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[grpc.Channel]:
    controller = one(objects, "Deployment", "linstor-csi-controller")
    driver = driver_container(controller)
    workdir = tmp_path_factory.mktemp("drv")
    sock = workdir / "csi.sock"
    log = (workdir / "driver.log").open("wb")
    env = {e["name"]: e["value"] for e in driver["env"] if "value" in e}
    env.update({"CSI_ENDPOINT": f"unix://{sock}", "NODE_NAME": "node-1", "LOG_LEVEL": "info"})
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in driver["args"]]
    args = [a for a in args if not a.startswith("--metrics-port")]  # no fixed TCP port in tests
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_", "CSI_"))}
    proc_env["LS_CONTROLLERS"] = "http://127.0.0.1:9"  # identity calls never reach LINSTOR
    assert driver["command"] == ["linstor-csi"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "csi", *args],
        env=proc_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def listening() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"the driver exited: {(workdir / 'driver.log').read_text()[-2000:]}")
        return sock.exists()

    try:
        wait_until(listening, timeout=30, what="the driver's socket")
    except AssertionError:
        proc.kill()
        raise
    chan = grpc.insecure_channel(f"unix://{sock}")
    yield chan
    chan.close()
    terminate(proc, timeout=30)
    log.close()


def test_plugin_name_is_the_csidriver_name(objects: list[dict[str, Any]], channel: grpc.Channel) -> None:
    info = csi_pb2_grpc.IdentityStub(channel).GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=10)
    csidriver = next(o for o in objects if o["kind"] == "CSIDriver")
    assert info.name == csidriver["metadata"]["name"]


def test_plugin_capabilities_support_the_provisioner_topology(channel: grpc.Channel) -> None:
    answer = csi_pb2_grpc.IdentityStub(channel).GetPluginCapabilities(
        csi_pb2.GetPluginCapabilitiesRequest(), timeout=10
    )
    services = {c.service.type for c in answer.capabilities if c.HasField("service")}
    assert csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE in services
    assert csi_pb2.PluginCapability.Service.VOLUME_ACCESSIBILITY_CONSTRAINTS in services


def test_controller_capabilities_cover_every_sidecar_and_the_csidriver(
    objects: list[dict[str, Any]], channel: grpc.Channel
) -> None:
    answer = csi_pb2_grpc.ControllerStub(channel).ControllerGetCapabilities(
        csi_pb2.ControllerGetCapabilitiesRequest(), timeout=10
    )
    offered = {c.rpc.type for c in answer.capabilities}
    controller = one(objects, "Deployment", "linstor-csi-controller")
    sidecars = {image_name(c).rsplit("/", 1)[-1] for c in containers(controller)}
    for sidecar, needs in SIDECAR_NEEDS.items():
        if sidecar in sidecars:
            missing = {CtrlRpc.Name(n) for n in needs - offered}
            assert not missing, f"{sidecar} runs but the driver does not offer {missing}"
    spec = next(o for o in objects if o["kind"] == "CSIDriver")["spec"]
    if spec["attachRequired"]:
        assert CtrlRpc.PUBLISH_UNPUBLISH_VOLUME in offered
    if spec["storageCapacity"]:
        assert CtrlRpc.GET_CAPACITY in offered


def test_probe_answers_within_the_livenessprobe_timeout(
    objects: list[dict[str, Any]], channel: grpc.Channel
) -> None:
    controller = one(objects, "Deployment", "linstor-csi-controller")
    probe = next(c for c in containers(controller) if c["name"] == "liveness-probe")
    timeout = next(a for a in probe["args"] if a.startswith("--probe-timeout="))
    seconds = float(timeout.split("=", 1)[1].rstrip("s"))
    start = time.monotonic()
    csi_pb2_grpc.IdentityStub(channel).Probe(csi_pb2.ProbeRequest(), timeout=seconds)
    assert time.monotonic() - start < seconds
