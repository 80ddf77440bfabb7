"""The ``linstor-csi`` process as a CO runs it: socket, logs, metrics, start-up errors, SIGTERM."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests

from csi.generated import csi_pb2
from csi.testing import CsiClient, mount_cap
from testkit.waiting import wait_until
from tests.conftest import REPO_ROOT, EmulatorProcess, free_port
from tests.processes import terminate

LOCAL = socket.gethostname().split(".")[0] or "localhost"


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="csi-cli-"))
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def _start(args: list[str], env_extra: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **env_extra}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "csi", *args], cwd=REPO_ROOT, env=env, stdout=out, stderr=out
        )


def _wait_for_socket(path: Path, proc: subprocess.Popen[bytes], log: Path) -> None:

    def listening() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"driver exited early:\n{log.read_text()}")
        return path.exists()

    try:
        wait_until(listening, timeout=20, what=f"the socket at {path}")
    except AssertionError:
        pytest.fail(f"no socket at {path}:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if not terminate(proc, timeout=20):
        pytest.fail("driver did not stop within 20s of SIGTERM")
    return proc.wait()


def test_driver_process_serves_logs_metrics_and_stops_on_sigterm(
    emulator: EmulatorProcess, socket_dir: Path, tmp_path: Path
) -> None:
    sock = socket_dir / "csi.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # left behind by a killed driver
    stale.close()
    metrics_port = free_port()
    log = tmp_path / "driver.log"
    proc = _start(
        [
            "--node",
            LOCAL,
            "--mode",
            "all",
            "--metrics-port",
            str(metrics_port),
            "--metrics-address",
            "127.0.0.1",
        ],
        {"CSI_ENDPOINT": f"unix://{sock}", "LS_CONTROLLERS": emulator.url},
        log,
    )
    try:
        _wait_for_socket(sock, proc, log)  # the stale file may still be there; readiness decides below
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            client = CsiClient(channel)
            grpc.channel_ready_future(channel).result(timeout=20)
            assert (
                client.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest()).name == "linstor.csi.linbit.com"
            )
            assert client.identity.Probe(csi_pb2.ProbeRequest(), timeout=3).ready.value
            assert client.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest()).node_id == LOCAL
            volume = client.controller.CreateVolume(
                csi_pb2.CreateVolumeRequest(
                    name="cli-volume",
                    capacity_range={"required_bytes": 16 * 1024**2},
                    volume_capabilities=[mount_cap()],
                    secrets={"password": "do-not-log-me"},
                )
            ).volume
            client.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))

            # LINSTOR goes away: Probe still answers within the livenessprobe's 3 s
            emulator.control("outage", {"seconds": 4})
            client.identity.Probe(csi_pb2.ProbeRequest(), timeout=3)

        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert 'linstor_plugin_operation_seconds_count{frontend="csi",operation="CreateVolume"}' in metrics
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()
    assert not sock.exists(), "the socket is removed on SIGTERM"
    text = log.read_text()
    assert "do-not-log-me" not in text
    assert "Traceback" not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    created = [entry for entry in lines if entry.get("method") == "CreateVolume"]
    assert created and created[0]["result"] == "ok" and created[0]["volume"] == "cli-volume"
    assert "duration_ms" in created[0]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--mode", "bogus"], 2, "invalid choice"),
        (["--driver-name", "ends-with-digit-2-"], 2, "invalid --driver-name"),
        (["--max-volumes-per-node", "-1"], 2, "must not be negative"),
        (["--path-root", "var/lib/kubelet"], 1, "must be an absolute directory path"),
        (["--path-root", "/"], 1, "would confine nothing"),
    ],
)
def test_bad_flags_fail_with_a_sentence(args: list[str], code: int, needle: str, tmp_path: Path) -> None:
    log = tmp_path / "driver.log"
    proc = _start(
        [*args, "--endpoint", f"unix://{tmp_path}/x.sock"], {"LS_CONTROLLERS": "http://127.0.0.1:1"}, log
    )
    assert proc.wait(timeout=30) == code
    text = log.read_text()
    assert needle in text and "Traceback" not in text


def test_socket_is_0660_root_under_umask_0(socket_dir: Path, tmp_path: Path) -> None:
    """Whoever can connect can mount and unmount: the umask must not open the socket to all."""
    sock = socket_dir / "csi.sock"
    log = tmp_path / "driver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "csi", "--endpoint", f"unix://{sock}", "--mode", "controller"],
            cwd=REPO_ROOT,
            env={**os.environ, "LS_CONTROLLERS": "http://127.0.0.1:1"},
            stdout=out,
            stderr=out,
            preexec_fn=lambda: os.umask(0),  # the umask under test
        )
    try:
        _wait_for_socket(sock, proc, log)
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)  # serving: set-up is done
        info = sock.stat()
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660
    if os.geteuid() == 0:
        assert (info.st_uid, info.st_gid) == (0, 0)


def test_endpoint_on_a_regular_file_is_refused(socket_dir: Path, tmp_path: Path) -> None:
    target = socket_dir / "important.dat"
    target.write_text("keep")
    log = tmp_path / "driver.log"
    proc = _start(
        ["--endpoint", f"unix://{target}", "--mode", "controller"],
        {"LS_CONTROLLERS": "http://127.0.0.1:1"},
        log,
    )
    assert proc.wait(timeout=30) == 1
    text = log.read_text()
    assert "not a socket" in text and "Traceback" not in text
    assert target.read_text() == "keep"


def test_controller_and_node_processes_split_the_services(
    emulator: EmulatorProcess, socket_dir: Path, tmp_path: Path
) -> None:
    """The Kubernetes layout: a controller Deployment and a node DaemonSet, one binary."""
    env = {"LS_CONTROLLERS": emulator.url}
    procs = {}
    for mode in ("controller", "node"):
        procs[mode] = _start(
            ["--endpoint", f"unix://{socket_dir}/{mode}.sock", "--node", LOCAL, "--mode", mode],
            env,
            tmp_path / f"{mode}.log",
        )
    try:
        with (
            grpc.insecure_channel(f"unix://{socket_dir}/controller.sock") as ctl_channel,
            grpc.insecure_channel(f"unix://{socket_dir}/node.sock") as node_channel,
        ):
            grpc.channel_ready_future(ctl_channel).result(timeout=20)
            grpc.channel_ready_future(node_channel).result(timeout=20)
            controller, node = CsiClient(ctl_channel), CsiClient(node_channel)
            volume = controller.controller.CreateVolume(
                csi_pb2.CreateVolumeRequest(
                    name="split-volume",
                    capacity_range={"required_bytes": 16 * 1024**2},
                    volume_capabilities=[mount_cap()],
                )
            ).volume
            assert node.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest()).node_id == LOCAL
            for call in (
                lambda: controller.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest()),
                lambda: node.controller.ListVolumes(csi_pb2.ListVolumesRequest()),
            ):
                with pytest.raises(grpc.RpcError) as info:
                    call()
                assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
            # both report the same plugin capabilities, as the spec requires of one driver
            assert controller.identity.GetPluginCapabilities(
                csi_pb2.GetPluginCapabilitiesRequest()
            ) == node.identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest())
            controller.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))
    finally:
        codes = {mode: _stop(proc) for mode, proc in procs.items()}
    assert codes == {"controller": 0, "node": 0}
    assert list(socket_dir.iterdir()) == []


ZONE = "topology.kubernetes.io/zone"


def test_the_piraeus_operators_command_line_with_topology_from_node_properties(
    emulator: EmulatorProcess, socket_dir: Path, tmp_path: Path
) -> None:
    """LINBIT's flags as the operator writes them: zones come from Aux/topology/ node properties."""
    zones = {LOCAL: "z1", "node-b": "z1", "node-c": "z2"}
    for node, zone in zones.items():
        answer = requests.put(
            f"{emulator.url}/v1/nodes/{node}",
            json={"override_props": {f"Aux/topology/{ZONE}": zone, "Aux/rack": "r1"}},
            timeout=10,
        )
        assert answer.ok, answer.text
    sock = socket_dir / "operator.sock"
    log = tmp_path / "driver.log"
    args = [
        f"--csi-endpoint=unix://{sock}",
        f"--node={LOCAL}",
        "--property-namespace=Aux/topology",
        "--label-by-storage-pool=false",
        f"--linstor-endpoint={emulator.url}",
        "--resync-after=5m",
    ]
    # --linstor-endpoint wins over the environment, as in LINBIT's driver
    proc = _start(args, {"LS_CONTROLLERS": "http://127.0.0.1:1"}, log)

    def replicas(volume_id: str) -> dict[str, str]:
        listed = requests.get(f"{emulator.url}/v1/view/resources?resources={volume_id}", timeout=10).json()
        return {
            r["node_name"]: zones[r["node_name"]] for r in listed if "DRBD_DISKLESS" not in r.get("flags", [])
        }

    try:
        _wait_for_socket(sock, proc, log)
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            client = CsiClient(channel)
            info = client.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
            # no linbit.com/sp-* keys, no Aux/rack (outside the namespace), the zone without its prefix
            assert dict(info.accessible_topology.segments) == {"linbit.com/hostname": LOCAL, ZONE: "z1"}

            in_z2 = client.controller.CreateVolume(
                csi_pb2.CreateVolumeRequest(
                    name="zone-volume",
                    capacity_range={"required_bytes": 16 * 1024**2},
                    volume_capabilities=[mount_cap()],
                    parameters={"linstor.csi.linbit.com/placementCount": "1"},
                    accessibility_requirements=csi_pb2.TopologyRequirement(
                        requisite=[csi_pb2.Topology(segments={ZONE: "z2"})]
                    ),
                )
            ).volume
            assert replicas(in_z2.volume_id) == {"node-c": "z2"}

            spread = client.controller.CreateVolume(
                csi_pb2.CreateVolumeRequest(
                    name="spread-volume",
                    capacity_range={"required_bytes": 16 * 1024**2},
                    volume_capabilities=[mount_cap()],
                    parameters={
                        "linstor.csi.linbit.com/placementCount": "2",
                        "linstor.csi.linbit.com/replicasOnDifferent": ZONE,
                    },
                )
            ).volume
            placed = replicas(spread.volume_id)
            assert len(placed) == 2 and sorted(placed.values()) == ["z1", "z2"], placed
            for volume in (in_z2, spread):
                client.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()
    groups = requests.get(f"{emulator.url}/v1/resource-groups", timeout=10).json()
    filters = [g.get("select_filter", {}).get("replicas_on_different") for g in groups]
    assert [f"Aux/topology/{ZONE}"] in filters, "bare names get the operator's namespace"
    text = log.read_text()
    assert "--resync-after has no effect in this driver" in text and "Traceback" not in text


def test_metrics_series_exist_at_zero_before_the_first_call(socket_dir: Path, tmp_path: Path) -> None:
    sock = socket_dir / "csi.sock"
    metrics_port = free_port()
    log = tmp_path / "driver.log"
    proc = _start(
        ["--mode", "controller", "--metrics-port", str(metrics_port), "--metrics-address", "127.0.0.1"],
        {"CSI_ENDPOINT": f"unix://{sock}", "LS_CONTROLLERS": "http://127.0.0.1:9"},  # never asked
        log,
    )
    try:
        _wait_for_socket(sock, proc, log)
        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()
    for rpc in ("CreateVolume", "DeleteVolume", "ControllerPublishVolume", "Probe", "GetPluginInfo"):
        assert f'linstor_plugin_operation_seconds_count{{frontend="csi",operation="{rpc}"}} 0.0' in metrics
        for code_name in ("NoSpace", "InvalidArgument", "Unavailable", "NotFound"):
            labels = f'code="{code_name}",frontend="csi",operation="{rpc}"'
            assert f"linstor_plugin_operation_errors_total{{{labels}}} 0.0" in metrics
    # the node service is not served by a controller process: no series for it
    assert 'operation="NodeStageVolume"' not in metrics
