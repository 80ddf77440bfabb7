"""The plugin image, built offline and run as a node plugin runs, driven over CSI.

The test builds ``linstor-volume-plugin:<version>`` with deploy/docker/build-image.sh on
a private Docker daemon (no registry), starts ``linstor-csi`` from it with ``docker run``
the way Kubernetes and Nomad run a node plugin (privileged, host network, the host's
``/dev``, the socket directory, and the CO's directory with shared mount propagation),
points it at a LINSTOR controller emulator and takes a volume through its life: create,
controller publish, stage, publish, write, read, unpublish, unstage, unpublish, delete.

The private daemon lives in its own mount namespace, so mounts the container makes
propagate to that namespace (not the test's); the test looks there with ``nsenter``. The
emulator keeps its device nodes below ``/dev``, the only host path for devices the
container sees.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import requests

from csi.generated import csi_pb2
from csi.testing import CsiClient, mount_cap
from tests.conftest import REPO_ROOT, EmulatorProcess, have_root_and_loop, require, reset_and_stop
from tests.dockerd import DockerDaemon, dockerd_available

pytestmark = [pytest.mark.docker, pytest.mark.root, pytest.mark.slow]

sys.path.insert(0, str(REPO_ROOT / "deploy" / "docker"))
import build_image  # noqa: E402 - the builder lives beside its shell wrapper

BUILD_SCRIPT = REPO_ROOT / "deploy" / "docker" / "build-image.sh"
VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"linstor-volume-plugin:{VERSION}"
CONTAINER = "linstor-csi-node"
MIB = 1024 * 1024
# Linux capabilities by bit number (linux/capability.h).
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)  # fmt: skip


def privileges() -> list[str]:
    """``--privileged``, as a node plugin runs, or as close as this machine allows.

    Inside a container the bounding set may lack capabilities (CAP_SYS_RESOURCE, often),
    and ``--privileged`` then fails to start: grant everything else and every block device.
    """
    status = Path("/proc/self/status").read_text()
    bounding = int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapBnd:")), 16)
    missing = [name for bit, name in enumerate(CAPABILITIES) if not bounding >> bit & 1]
    if not missing:
        return ["--privileged"]
    return [
        "--cap-add=ALL",
        *(f"--cap-drop={name}" for name in missing),
        "--device-cgroup-rule=b *:* rwm",
        "--security-opt=seccomp=unconfined",
    ]


@dataclass
class Running:
    daemon: DockerDaemon
    emulator: EmulatorProcess
    node: str
    kubelet: Path  # the CO's directory, passed as --path-root
    csi: CsiClient
    build_output: str

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.daemon.docker(*args, check=check)

    def resource_definitions(self) -> list[str]:
        answer = requests.get(self.emulator.url + "/v1/resource-definitions", timeout=10)
        answer.raise_for_status()
        return [rd["name"] for rd in answer.json()]

    def in_namespace(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        """A command where the daemon's containers' mounts are visible."""
        return self.daemon.run_in_namespace(list(cmd))

    def mounted(self, path: Path) -> bool:
        return self.in_namespace("findmnt", "--noheadings", "--mountpoint", str(path)).returncode == 0


def _wait_until_ready(client: CsiClient, daemon: DockerDaemon, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            if client.identity.Probe(csi_pb2.ProbeRequest(), timeout=5).ready.value:
                return
        except grpc.RpcError as exc:
            last = str(exc.details())
        state = daemon.docker("inspect", "--format", "{{.State.Status}}", CONTAINER, check=False)
        if state.stdout.strip() not in ("running", "created"):
            logs = daemon.docker("logs", CONTAINER, check=False)
            pytest.fail(f"the driver container stopped ({state.stdout.strip()}):\n{logs.stdout}{logs.stderr}")
        time.sleep(0.3)
    logs = daemon.docker("logs", CONTAINER, check=False)
    pytest.fail(f"the driver in the image never became ready ({last}):\n{logs.stdout}{logs.stderr}")


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    ok, reason = have_root_and_loop()
    require(ok, reason)
    ok, reason = dockerd_available()
    require(ok, reason)
    with tempfile.TemporaryDirectory(prefix="img-e2e-") as tmp:
        base = Path(tmp)
        kubelet = base / "kubelet"
        socket_dir = base / "plugins"
        for d in (kubelet, socket_dir):
            d.mkdir()
        dev_dir = Path("/dev") / f"linstor-img-{uuid.uuid4().hex[:8]}"
        emulator = EmulatorProcess(state_dir=base / "emu" / "state", dev_dir=dev_dir, nodes=("node-b",))
        emulator.start()
        daemon = DockerDaemon(base / "d")
        channel: grpc.Channel | None = None
        try:
            node = requests.get(emulator.url + "/_emu/health", timeout=10).json()["local_node"]
            daemon.start()
            env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
            env["DOCKER_HOST"] = daemon.host
            env["DOCKER_CONFIG"] = str(base / "d" / "cli-config")
            build = subprocess.run(
                ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=900, env=env
            )
            assert build.returncode == 0, f"building the image failed:\n{build.stdout}\n{build.stderr}"
            # kubelet's directory is a shared mount on a node: make the test's one so in the
            # daemon's namespace, so the container's mounts there come back out.
            for cmd in (
                ["mount", "--bind", str(kubelet), str(kubelet)],
                ["mount", "--make-shared", str(kubelet)],
            ):
                done = daemon.run_in_namespace(cmd)
                assert done.returncode == 0, done.stderr
            daemon.docker(
                "run", "-d", "--name", CONTAINER,
                *privileges(), "--network", "host",
                "-v", f"{socket_dir}:/csi",
                "-v", "/dev:/dev",
                "-v", f"{kubelet}:{kubelet}:rshared",
                "-e", f"LS_CONTROLLERS={emulator.url}",
                IMAGE,
                "linstor-csi", "--endpoint=unix:///csi/csi.sock", "--mode=all", f"--node={node}",
                f"--path-root={kubelet}", "--log-level=debug",
            )  # fmt: skip
            channel = grpc.insecure_channel(f"unix://{socket_dir}/csi.sock")
            client = CsiClient(channel)
            _wait_until_ready(client, daemon)
            yield Running(daemon, emulator, node, kubelet, client, build.stdout + build.stderr)
        finally:
            if channel is not None:
                channel.close()
            daemon.docker("rm", "-f", CONTAINER, check=False)
            daemon.stop()
            reset_and_stop([emulator])
            shutil.rmtree(dev_dir, ignore_errors=True)


def test_image_is_tagged_with_the_project_version_and_lists_its_packages(running: Running) -> None:
    info = json.loads(running.docker("image", "inspect", IMAGE).stdout)[0]
    assert IMAGE in info["RepoTags"]
    assert info["Config"]["Labels"]["org.opencontainers.image.version"] == VERSION
    manifest = running.docker(
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "cat",
        "/usr/local/share/linstor-volume-plugin/packages.txt",
    ).stdout.splitlines()
    pinned = {f"{name}=={version}" for name, version in build_image.read_constraints().items()}
    packages = {line.split(" ", 1)[1] for line in manifest if line.startswith("python-package ")}
    assert packages == pinned, "the image holds exactly the pinned packages"
    # The same interpreter the tests run on, and the project from its wheel (with metadata).
    python = running.docker("run", "--rm", "--network", "none", IMAGE, "python3", "--version").stdout
    assert python.split()[1] == ".".join(map(str, sys.version_info[:3]))
    assert any(line.startswith("debian-package e2fsprogs ") for line in manifest), manifest
    assert f"wheel linstor_volume_plugin-{VERSION}-" in "\n".join(manifest)


def test_a_volume_goes_through_its_life_over_csi(running: Running) -> None:
    csi = running.csi
    info = csi.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
    assert info.node_id == running.node
    cap = mount_cap(fs_type="ext4")
    name = f"pvc-{uuid.uuid4()}"
    volume = csi.controller.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=name,
            capacity_range={"required_bytes": 64 * MIB},
            volume_capabilities=[cap],
            parameters={"linstor.csi.linbit.com/placementCount": "1"},
        )
    ).volume
    vid = volume.volume_id
    assert vid in running.resource_definitions()
    ctx = dict(
        csi.controller.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=vid,
                node_id=info.node_id,
                volume_capability=cap,
                volume_context=volume.volume_context,
            )
        ).publish_context
    )
    staging = running.kubelet / "plugins" / "linstor.csi.linbit.com" / uuid.uuid4().hex / "globalmount"
    staging.mkdir(parents=True)
    target = running.kubelet / "pods" / str(uuid.uuid4()) / "volumes" / "kubernetes.io~csi" / name / "mount"
    target.parent.mkdir(parents=True)
    try:
        csi.node.NodeStageVolume(
            csi_pb2.NodeStageVolumeRequest(
                volume_id=vid,
                publish_context=ctx,
                staging_target_path=str(staging),
                volume_capability=cap,
                volume_context=volume.volume_context,
            )
        )
        csi.node.NodePublishVolume(
            csi_pb2.NodePublishVolumeRequest(
                volume_id=vid,
                publish_context=ctx,
                staging_target_path=str(staging),
                target_path=str(target),
                volume_capability=cap,
                volume_context=volume.volume_context,
            )
        )
        # The mounts propagated out of the container: a pod (here: the daemon's namespace)
        # writes through the target path, and the driver's container reads the same file.
        assert running.mounted(staging) and running.mounted(target)
        fs = running.in_namespace(
            "findmnt", "--noheadings", "--output", "FSTYPE", "--mountpoint", str(target)
        )
        assert fs.stdout.strip() == "ext4"
        wrote = running.in_namespace("sh", "-c", f"echo written-from-the-pod > {target}/proof && sync")
        assert wrote.returncode == 0, wrote.stderr
        read = running.docker("exec", CONTAINER, "cat", f"{staging}/proof")
        assert read.stdout.strip() == "written-from-the-pod"
        stats = csi.node.NodeGetVolumeStats(
            csi_pb2.NodeGetVolumeStatsRequest(volume_id=vid, volume_path=str(target))
        )
        total = next(u.total for u in stats.usage if u.unit == csi_pb2.VolumeUsage.BYTES)
        assert 40 * MIB < total <= 64 * MIB
    finally:
        csi.node.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(volume_id=vid, target_path=str(target))
        )
        csi.node.NodeUnstageVolume(
            csi_pb2.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=str(staging))
        )
    assert not running.mounted(target) and not running.mounted(staging)
    csi.controller.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=vid, node_id=info.node_id)
    )
    csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid))
    assert vid not in running.resource_definitions()


def test_a_path_outside_the_path_root_is_refused(running: Running) -> None:
    """The container runs with the CO's directory as its only root: anything else is refused."""
    with pytest.raises(grpc.RpcError) as refused:
        running.csi.node.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(volume_id="pvc-x", target_path="/etc/outside")
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
