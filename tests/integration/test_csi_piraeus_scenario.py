"""The driver as the Piraeus operator runs it: its exact arguments, consistency groups on.

The operator's CSI controller Deployment and node DaemonSet start the ``linstor-csi``
container with the arguments below (piraeus-operator ``pkg/resources/cluster/csi-controller``
and ``csi-node``), plus ``--enable-consistency-groups`` on the controller. Kubernetes
expands ``$(VAR)`` in them from the container's environment; here the test does that, as
kubelet would, with the sockets in a scratch directory. Both containers run in one private
mount namespace that looks like a pod: the service account (token and CA of the stand-in
API server, tests/kube_api.py) at ``/var/run/secrets/kubernetes.io/serviceaccount``, and
kubelet's directory at ``/var/lib/kubelet``. The scenario: two PVCs of one consistency
group, data in both, a group snapshot, more data, and a restore of the group into a new
one that must hold the snapshot's data. Needs root (namespaces, real mounts).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from csi.generated import csi_pb2
from csi.testing import CsiClient, block_cap, mount_cap
from plugin.config import load_config
from plugin.linstor.client import LinstorClient
from plugin.volumes.consistency_groups import GROUP_LABEL, group_resource_name
from tests import csi_requests as rq
from tests.conftest import EmulatorProcess, have_root_and_loop, require, reset_and_stop
from tests.integration.csi_stack import LOCAL
from tests.kube_api import KubeApi, kube_api

REPO_ROOT = Path(__file__).resolve().parents[2]
MIB = 1024**2
DRIVER = "linstor.csi.linbit.com"
NAMESPACE = "default"
KUBELET = "/var/lib/kubelet"
ACCOUNT = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run is /run

# The linstor-csi container of each operator workload: its args, and the env they refer to.
CONTROLLER_ARGS = [
    "--csi-endpoint=unix://$(ADDRESS)",
    "--property-namespace=Aux/topology",
    "--label-by-storage-pool=false",
    "--enable-consistency-groups",
]
NODE_ARGS = [
    "--csi-endpoint=unix://$(ADDRESS)",
    "--node=$(KUBE_NODE_NAME)",
    "--property-namespace=Aux/topology",
    "--label-by-storage-pool=false",
]


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' ``$(VAR)`` expansion of container args from the container's env."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in args]


@dataclass
class Pod:
    """The operator's two driver containers in one private mount namespace."""

    base: Path
    proc: subprocess.Popen[bytes]
    controller: CsiClient
    node: CsiClient

    def sh(self, script: str) -> str:
        """Run a shell command where the containers see the world (their mount namespace)."""
        done = subprocess.run(
            ["nsenter", "-t", str(self.proc.pid), "-m", "--", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{script}: {done.stderr}"
        return done.stdout

    def log(self, name: str) -> str:
        return (self.base / f"{name}.log").read_text(errors="replace")


def _channel(socket: Path, proc: subprocess.Popen[bytes], base: Path) -> CsiClient:
    channel = grpc.insecure_channel(f"unix://{socket}")
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
    except grpc.FutureTimeoutError:
        logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in base.glob("*.log"))
        raise AssertionError(f"the driver did not start (exit {proc.poll()}):\n{logs}") from None
    return CsiClient(channel)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    ok, reason = have_root_and_loop()
    require(ok, reason)
    require(shutil.which("unshare") is not None and shutil.which("nsenter") is not None, "needs unshare")
    base = tmp_path_factory.mktemp("piraeus-emulator")
    emu = EmulatorProcess(state_dir=base / "state", dev_dir=base / "dev", nodes=("node-b", "node-c"))
    emu.start()
    try:
        yield emu
    finally:
        reset_and_stop([emu])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApi]:
    with kube_api(tmp_path_factory.mktemp("kube")) as made:
        yield made


@pytest.fixture(scope="module")
def pod(emulator: EmulatorProcess, api: KubeApi) -> Iterator[Pod]:
    base = Path(tempfile.mkdtemp(prefix="piraeus-pod-"))
    kubelet = base / "kubelet"
    kubelet.mkdir()
    controller_env = {"ADDRESS": str(base / "controller" / "csi.sock")}
    node_env = {"ADDRESS": str(base / "node" / "csi.sock"), "KUBE_NODE_NAME": LOCAL}
    python = shlex.quote(sys.executable)

    def command(args: list[str], log: str) -> str:
        return (
            f"{python} -m csi {' '.join(shlex.quote(a) for a in args)} >{shlex.quote(str(base / log))} 2>&1"
        )

    script = "\n".join(
        [
            "set -e",
            # The pod's service account, where the official client's in-cluster config reads it.
            "mount -t tmpfs pod-run /run",
            f"mkdir -p {ACCOUNT}",
            f"mount --bind {shlex.quote(str(api.service_account_dir))} {ACCOUNT}",
            # kubelet's directory, shared with the test through the scratch directory.
            "mount -t tmpfs pod-var-lib /var/lib",
            f"mkdir -p {KUBELET}",
            f"mount --bind {shlex.quote(str(kubelet))} {KUBELET}",
            command(expand(NODE_ARGS, node_env), "node.log") + " &",
            "exec " + command(expand(CONTROLLER_ARGS, controller_env), "controller.log"),
        ]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_", "CSI_", "KUBERNETES_"))}
    env.update({"LS_CONTROLLERS": emulator.url, **api.environ})
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        cwd=REPO_ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        controller = _channel(base / "controller" / "csi.sock", proc, base)
        node = _channel(base / "node" / "csi.sock", proc, base)
        yield Pod(base, proc, controller, node)
        controller.channel.close()
        node.channel.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


def provision(pod: Pod, api: KubeApi, group: str, cap: csi_pb2.VolumeCapability, snapshot: str = "") -> str:
    """What csi-provisioner sends for a new PVC (``--extra-create-metadata``); the PV's volume id."""
    pvc = f"disk-{uuid.uuid4().hex[:8]}"
    api.add_pvc(NAMESPACE, pvc, {GROUP_LABEL: group})
    request = csi_pb2.CreateVolumeRequest(
        name=f"pvc-{uuid.uuid4()}",
        capacity_range=csi_pb2.CapacityRange(required_bytes=64 * MIB),
        volume_capabilities=[cap],
        parameters={
            "linstor.csi.linbit.com/placementCount": "1",
            "csi.storage.k8s.io/pvc/name": pvc,
            "csi.storage.k8s.io/pvc/namespace": NAMESPACE,
            "csi.storage.k8s.io/pv/name": "pv",
        },
    )
    if snapshot:
        request.volume_content_source.snapshot.snapshot_id = snapshot
    return pod.controller.controller.CreateVolume(request).volume.volume_id


@dataclass
class Mounted:
    """One volume attached, staged and published by "kubelet" on this node."""

    volume_id: str
    cap: csi_pb2.VolumeCapability
    staging: str
    target: str


def attach(pod: Pod, volume_id: str, cap: csi_pb2.VolumeCapability) -> Mounted:
    slug = uuid.uuid4().hex[:12]
    staging = f"{KUBELET}/plugins/kubernetes.io/csi/{DRIVER}/{slug}/globalmount"
    target = f"{KUBELET}/pods/{slug}/volumes/kubernetes.io~csi/pv/mount"
    pod.sh(f"mkdir -p {staging} {os.path.dirname(target)}")  # kubelet makes these
    context = pod.controller.controller.ControllerPublishVolume(
        rq.controller_publish(volume_id, LOCAL, cap)
    ).publish_context
    pod.node.node.NodeStageVolume(rq.stage(volume_id, staging, context, cap))
    pod.node.node.NodePublishVolume(rq.publish(volume_id, staging, target, context, cap))
    return Mounted(volume_id, cap, staging, target)


def detach(pod: Pod, mounted: Mounted) -> None:
    pod.node.node.NodeUnpublishVolume(rq.unpublish(mounted.volume_id, mounted.target))
    pod.node.node.NodeUnstageVolume(rq.unstage(mounted.volume_id, mounted.staging))
    pod.controller.controller.ControllerUnpublishVolume(rq.controller_unpublish(mounted.volume_id, LOCAL))


def write_block(pod: Pod, device: str, text: str) -> None:
    pod.sh(f"printf %s {shlex.quote(text)} | dd of={device} bs=4096 seek=256 conv=fsync,notrunc status=none")


def read_block(pod: Pod, device: str, length: int) -> str:
    return pod.sh(f"dd if={device} bs=4096 skip=256 count=1 status=none | head -c {length}")


def test_consistency_group_group_snapshot_and_restore_under_the_operators_arguments(
    pod: Pod, api: KubeApi, emulator: EmulatorProcess
) -> None:
    info = pod.controller.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
    assert info.name == DRIVER
    group = f"vm-{uuid.uuid4().hex[:6]}"
    root = provision(pod, api, group, mount_cap(fs_type="ext4"))
    disk = provision(pod, api, group, block_cap())
    resource = group_resource_name(NAMESPACE, group)
    assert (root, disk) == (resource, f"{resource}/1"), "one LINSTOR resource, two volume numbers"
    assert any(p.endswith("/persistentvolumeclaims/" + p.rsplit("/", 1)[-1]) for p in api.requests)

    mounted = [attach(pod, root, mount_cap(fs_type="ext4")), attach(pod, disk, block_cap())]
    pod.sh(f"echo before > {mounted[0].target}/state && sync")
    write_block(pod, mounted[1].target, "disk-before")

    taken = pod.controller.group.CreateVolumeGroupSnapshot(
        csi_pb2.CreateVolumeGroupSnapshotRequest(
            name=f"groupsnapshot-{uuid.uuid4()}", source_volume_ids=[root, disk]
        )
    ).group_snapshot
    assert taken.ready_to_use and len(taken.snapshots) == 2
    pod.sh(f"echo after > {mounted[0].target}/state && sync")
    write_block(pod, mounted[1].target, "disk-after!")
    for m in mounted:
        detach(pod, m)

    config = load_config({"controllers": emulator.url, "node_name": LOCAL}, env={}, config_file=None)
    linstor = LinstorClient(config)
    try:
        assert [s.name for s in linstor.view_snapshots([resource])] == [taken.group_snapshot_id]
    finally:
        linstor.close()

    members = {s.source_volume_id: s.snapshot_id for s in taken.snapshots}
    restored_group = f"{group}-restored"
    root2 = provision(pod, api, restored_group, mount_cap(fs_type="ext4"), snapshot=members[root])
    disk2 = provision(pod, api, restored_group, block_cap(), snapshot=members[disk])
    restored = group_resource_name(NAMESPACE, restored_group)
    assert (root2, disk2) == (restored, f"{restored}/1")
    again = [attach(pod, root2, mount_cap(fs_type="ext4")), attach(pod, disk2, block_cap())]
    try:
        assert pod.sh(f"cat {again[0].target}/state").strip() == "before"
        assert read_block(pod, again[1].target, len("disk-before")) == "disk-before"
    finally:
        for m in again:
            detach(pod, m)

    pod.controller.group.DeleteVolumeGroupSnapshot(
        csi_pb2.DeleteVolumeGroupSnapshotRequest(
            group_snapshot_id=taken.group_snapshot_id, snapshot_ids=list(members.values())
        )
    )
    for vid in (disk2, root2, disk, root):
        pod.controller.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid))
    assert "consistency groups stay off" not in pod.log("controller")
