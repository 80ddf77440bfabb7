"""Fuzz every CSI RPC over the driver's real unix socket, against the emulator with real devices.

The driver runs from its command line in a private mount namespace where ``/var/lib/kubelet``
is this module's directory. Two volumes exist: the fuzzed requests may name volume A, and
volume V is staged and published and must stay so (its id is never sent; its paths and
device are, as another volume's). After every request the properties of
:mod:`tests.fuzz.checks` hold; a failure restarts the driver so the next example starts
clean, and Hypothesis prints the failing request.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from csi.generated import csi_pb2
from csi.testing import CsiClient, mount_cap
from tests.conftest import have_root_and_loop, require, reset_and_stop
from tests.fuzz import strategies as fz
from tests.fuzz.audit import rdev_of
from tests.fuzz.budget import CALL_DEADLINE, fuzz_settings, timeout_for
from tests.fuzz.checks import Watch, csi_outcome
from tests.fuzz.scratch import Scratch
from tests.fuzz.stack import (
    KUBELET,
    NamespacedDaemon,
    csi_driver,
    local_devices,
    restart_emulator,
    start_emulator,
    wait_for_csi,
)
from tests.fuzz.tally import TALLY

LOCAL = socket.gethostname().split(".")[0] or "localhost"
MIB = 1024**2
PLUGIN_DIR = f"{KUBELET}/plugins/kubernetes.io/csi/linstor.csi.linbit.com"


@dataclass(repr=False)
class CsiWorld:
    base: Path
    scratch: Scratch
    emulator: object
    driver: NamespacedDaemon
    kubelet_host: Path
    a_id: str
    a_ctx: dict[str, str]
    v_id: str
    v_ctx: dict[str, str]
    targets: fz.Targets
    watch: Watch
    channel: grpc.Channel | None = None

    def __repr__(self) -> str:  # Hypothesis prints the fixture with every failing example
        return f"CsiWorld(A={self.a_id}, V={self.v_id})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis's printer
        printer.text(repr(self))

    @property
    def csi(self) -> CsiClient:
        assert self.channel is not None
        return CsiClient(self.channel)

    def host(self, path: str) -> Path:
        """Where a path under /var/lib/kubelet in the driver's namespace is on the host."""
        return self.kubelet_host / Path(path).relative_to(KUBELET)

    def own_rdevs(self, volume_id: str) -> set[str]:
        if volume_id != self.a_id:
            return set()
        return {r for r in (rdev_of(d) for d in local_devices(self.emulator, self.a_id, LOCAL)) if r}  # type: ignore[arg-type]

    def connect(self) -> None:
        self.channel = grpc.insecure_channel(f"unix://{self.driver.socket}")  # type: ignore[attr-defined]

    def stage_victim(self) -> None:
        """V staged and published; the tmpfs decoy outside the root; the baseline taken."""
        staging, target = (
            f"{PLUGIN_DIR}/{self.v_id}/globalmount",
            f"{KUBELET}/pods/victim/volumes/{self.v_id}/mount",
        )
        self.host(staging).mkdir(parents=True, exist_ok=True)
        node = self.csi.node
        node.NodeStageVolume(
            csi_pb2.NodeStageVolumeRequest(
                volume_id=self.v_id,
                staging_target_path=staging,
                volume_capability=mount_cap(),
                publish_context=self.v_ctx,
            )
        )
        node.NodePublishVolume(
            csi_pb2.NodePublishVolumeRequest(
                volume_id=self.v_id,
                staging_target_path=staging,
                target_path=target,
                volume_capability=mount_cap(),
                publish_context=self.v_ctx,
            )
        )
        decoy = self.scratch.tree / "tmpfs-mount"
        decoy.mkdir(exist_ok=True)
        done = self.driver.in_namespace("mount", "-t", "tmpfs", "-o", "size=1m", "fuzz-decoy", str(decoy))
        assert done.returncode == 0, done.stderr
        self.targets.victim_paths = [staging, target]
        self.targets.foreign_mounts = [str(decoy)]
        self.watch.required_mounts = [staging, target]
        self.watch.start()

    def recover(self) -> None:
        """After a failed example: a fresh driver (and namespace), repaired scratch, V staged again."""
        if self.channel is not None:
            self.channel.close()
        self.driver.stop()
        restart_emulator(self.emulator)  # type: ignore[arg-type]
        self.scratch.repair()
        self.driver.start()
        wait_for_csi(self.driver)
        self.connect()
        self.stage_victim()

    def call(self, volume_id: str, rpc: Callable[..., object], request: object) -> str:
        """One fuzzed request, then every property; the failing example leaves a recovered world."""
        self.watch.before()
        try:
            with TALLY.counting("CSI"):
                outcome = csi_outcome(lambda: rpc(request, timeout=CALL_DEADLINE))
                self.watch.after(self.own_rdevs(volume_id))
        except AssertionError as failure:
            try:
                self.recover()
            except Exception as exc:  # the failure stands; the note says why later ones may differ
                failure.add_note(f"afterwards the world could not be recovered: {exc!r}")
            raise
        TALLY.record("CSI", outcome)
        return outcome


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CsiWorld]:
    ok, reason = have_root_and_loop()
    require(ok, reason)
    base = tmp_path_factory.mktemp("fuzz-csi")
    scratch = Scratch(base / "scratch")
    scratch.create()
    emulator = start_emulator(base / "emu", scratch.cwd("emulator"))
    driver = None
    try:
        driver, kubelet_host = csi_driver(base / "csi", emulator, LOCAL, scratch.cwd("csi"))
        with grpc.insecure_channel(f"unix://{driver.socket}") as channel:  # type: ignore[attr-defined]
            ctl = CsiClient(channel).controller
            ids = []
            for name in ("fuzz-a", "fuzz-victim"):
                vol = ctl.CreateVolume(
                    csi_pb2.CreateVolumeRequest(
                        name=f"{name}-{uuid.uuid4().hex[:8]}",
                        capacity_range=csi_pb2.CapacityRange(required_bytes=64 * MIB),
                        volume_capabilities=[mount_cap()],
                    )
                ).volume
                ctx = ctl.ControllerPublishVolume(
                    csi_pb2.ControllerPublishVolumeRequest(
                        volume_id=vol.volume_id, node_id=LOCAL, volume_capability=mount_cap()
                    )
                ).publish_context
                ids.append((vol.volume_id, dict(ctx)))
        (a_id, a_ctx), (v_id, v_ctx) = ids
        a_staging = f"{PLUGIN_DIR}/{a_id}/globalmount"
        (kubelet_host / Path(a_staging).relative_to(KUBELET)).mkdir(parents=True)
        (kubelet_host / "pods").mkdir(exist_ok=True)
        (kubelet_host / "pods" / "escape").symlink_to(scratch.tree / "victimdir")
        (kubelet_host / "pods" / "escape-root").symlink_to("/")
        targets = fz.Targets(
            root=KUBELET,
            scratch_tree=str(scratch.tree),
            scratch_devices=list(scratch.devices),
            own_paths=[a_staging, f"{KUBELET}/pods/a/volumes/{a_id}/mount"],
            victim_devices=local_devices(emulator, v_id, LOCAL),
            escape_links=[
                f"{KUBELET}/pods/escape",
                f"{KUBELET}/pods/escape-root",
                f"{KUBELET}/pods/escape/x",
            ],
        )
        watch = Watch(driver, emulator, scratch, root=KUBELET)
        made = CsiWorld(
            base, scratch, emulator, driver, kubelet_host, a_id, a_ctx, v_id, v_ctx, targets, watch
        )
        made.connect()
        made.stage_victim()
        yield made
        if made.channel is not None:
            made.channel.close()
    finally:
        if driver is not None:
            driver.stop()  # its namespace, and every mount in it, ends with it
        reset_and_stop([emulator])
        scratch.close()


def volume_ids(world: CsiWorld) -> st.SearchStrategy[str]:
    return st.one_of(st.just(world.a_id), fz.names())


def contexts(world: CsiWorld) -> st.SearchStrategy[dict[str, str]]:
    t = world.targets
    device = st.sampled_from(
        ["", *t.scratch_devices, *t.victim_devices, "victimdev", "/dev/null", "/nonexistent", "../../dev/x"]
    )
    forged = st.builds(lambda d: {**world.a_ctx, "linstor.csi.linbit.com/device-path": d}, device)
    return st.one_of(st.just(world.a_ctx), forged, fz.string_maps(t, list(world.a_ctx)))


CI = 25


# The world is module-scoped on purpose: one driver, one namespace, many requests.
@timeout_for(CI)
@fuzz_settings(CI)
@given(data=st.data())
def test_node_stage(world: CsiWorld, data: st.DataObject) -> None:
    t = world.targets
    vid = data.draw(volume_ids(world), "volume_id")
    request = csi_pb2.NodeStageVolumeRequest(
        volume_id=vid,
        staging_target_path=data.draw(fz.paths(t), "staging_target_path"),
        volume_capability=data.draw(fz.capability(t), "volume_capability"),
        publish_context=data.draw(contexts(world), "publish_context"),
        volume_context=data.draw(
            fz.string_maps(t, ["linstor.csi.linbit.com/mount-options"]), "volume_context"
        ),
    )
    world.call(vid, world.csi.node.NodeStageVolume, request)


@timeout_for(CI)
@fuzz_settings(CI)
@given(data=st.data())
def test_node_publish(world: CsiWorld, data: st.DataObject) -> None:
    t = world.targets
    vid = data.draw(volume_ids(world), "volume_id")
    request = csi_pb2.NodePublishVolumeRequest(
        volume_id=vid,
        staging_target_path=data.draw(fz.paths(t), "staging_target_path"),
        target_path=data.draw(fz.paths(t), "target_path"),
        volume_capability=data.draw(fz.capability(t), "volume_capability"),
        publish_context=data.draw(contexts(world), "publish_context"),
        readonly=data.draw(st.booleans(), "readonly"),
    )
    world.call(vid, world.csi.node.NodePublishVolume, request)


@timeout_for(CI)
@fuzz_settings(CI)
@given(data=st.data())
def test_node_unstage_and_unpublish(world: CsiWorld, data: st.DataObject) -> None:
    t = world.targets
    vid = data.draw(volume_ids(world), "volume_id")
    path = data.draw(fz.paths(t), "path")
    if data.draw(st.booleans(), "unstage"):
        request: object = csi_pb2.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=path)
        world.call(vid, world.csi.node.NodeUnstageVolume, request)
    else:
        request = csi_pb2.NodeUnpublishVolumeRequest(volume_id=vid, target_path=path)
        world.call(vid, world.csi.node.NodeUnpublishVolume, request)


@timeout_for(CI)
@fuzz_settings(CI)
@given(data=st.data())
def test_node_expand_and_stats(world: CsiWorld, data: st.DataObject) -> None:
    t = world.targets
    vid = data.draw(volume_ids(world), "volume_id")
    path = data.draw(fz.paths(t), "volume_path")
    staging = data.draw(st.one_of(st.just(""), fz.paths(t)), "staging_target_path")
    if data.draw(st.booleans(), "expand"):
        request: object = csi_pb2.NodeExpandVolumeRequest(
            volume_id=vid,
            volume_path=path,
            staging_target_path=staging,
            capacity_range=csi_pb2.CapacityRange(required_bytes=data.draw(fz.sizes(), "required_bytes")),
            volume_capability=data.draw(fz.capability(t), "volume_capability"),
        )
        world.call(vid, world.csi.node.NodeExpandVolume, request)
    else:
        request = csi_pb2.NodeGetVolumeStatsRequest(
            volume_id=vid, volume_path=path, staging_target_path=staging
        )
        world.call(vid, world.csi.node.NodeGetVolumeStats, request)


def controller_requests(world: CsiWorld) -> st.SearchStrategy[tuple[str, object]]:
    """(RPC name, request) for every Identity and Controller RPC, with fuzzed fields."""
    t = world.targets
    ids = fz.names()  # never A or V: a fuzzed delete must not take the node tests' volumes
    caps = st.lists(fz.capability(t), max_size=3)
    params = fz.string_maps(
        t,
        [
            "linstor.csi.linbit.com/fsOpts",
            "linstor.csi.linbit.com/mountOpts",
            "linstor.csi.linbit.com/placementCount",
            "linstor.csi.linbit.com/storagePool",
            "linstor.csi.linbit.com/resourceGroup",
            "linstor.csi.linbit.com/postMountXfsOpts",
            "csi.storage.k8s.io/fstype",
        ],
    )
    capacity = st.builds(csi_pb2.CapacityRange, required_bytes=fz.sizes(), limit_bytes=fz.sizes())
    node = st.one_of(st.sampled_from([LOCAL, "node-b", "node-c"]), fz.names())
    count = st.one_of(st.sampled_from([0, -1, 1, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1))
    p = csi_pb2
    return st.one_of(
        st.tuples(st.just("GetPluginInfo"), st.just(p.GetPluginInfoRequest())),
        st.tuples(st.just("Probe"), st.just(p.ProbeRequest())),
        st.tuples(st.just("GetPluginCapabilities"), st.just(p.GetPluginCapabilitiesRequest())),
        st.tuples(st.just("NodeGetInfo"), st.just(p.NodeGetInfoRequest())),
        st.tuples(st.just("NodeGetCapabilities"), st.just(p.NodeGetCapabilitiesRequest())),
        st.tuples(
            st.just("CreateVolume"),
            st.builds(
                p.CreateVolumeRequest,
                name=fz.names(),
                capacity_range=capacity,
                volume_capabilities=caps,
                parameters=params,
            ),
        ),
        st.tuples(st.just("DeleteVolume"), st.builds(p.DeleteVolumeRequest, volume_id=ids)),
        st.tuples(
            st.just("ControllerPublishVolume"),
            st.builds(
                p.ControllerPublishVolumeRequest,
                volume_id=ids,
                node_id=node,
                volume_capability=fz.capability(t),
                readonly=st.booleans(),
            ),
        ),
        st.tuples(
            st.just("ControllerUnpublishVolume"),
            st.builds(p.ControllerUnpublishVolumeRequest, volume_id=ids, node_id=node),
        ),
        st.tuples(
            st.just("ValidateVolumeCapabilities"),
            st.builds(
                p.ValidateVolumeCapabilitiesRequest,
                volume_id=st.one_of(ids, st.just(world.a_id)),
                volume_capabilities=caps,
                parameters=params,
            ),
        ),
        st.tuples(
            st.just("ListVolumes"),
            st.builds(p.ListVolumesRequest, max_entries=count, starting_token=fz.names()),
        ),
        st.tuples(
            st.just("GetCapacity"),
            st.builds(p.GetCapacityRequest, volume_capabilities=caps, parameters=params),
        ),
        st.tuples(st.just("ControllerGetCapabilities"), st.just(p.ControllerGetCapabilitiesRequest())),
        st.tuples(
            st.just("CreateSnapshot"),
            st.builds(
                p.CreateSnapshotRequest, source_volume_id=st.one_of(ids, st.just(world.a_id)), name=fz.names()
            ),
        ),
        st.tuples(st.just("DeleteSnapshot"), st.builds(p.DeleteSnapshotRequest, snapshot_id=fz.names())),
        st.tuples(
            st.just("ListSnapshots"),
            st.builds(
                p.ListSnapshotsRequest,
                max_entries=count,
                starting_token=fz.names(),
                source_volume_id=fz.names(),
                snapshot_id=fz.names(),
            ),
        ),
        st.tuples(st.just("GetSnapshot"), st.builds(p.GetSnapshotRequest, snapshot_id=fz.names())),
        st.tuples(
            st.just("ControllerExpandVolume"),
            st.builds(
                p.ControllerExpandVolumeRequest,
                volume_id=ids,
                capacity_range=capacity,
                volume_capability=fz.capability(t),
            ),
        ),
        st.tuples(st.just("ControllerGetVolume"), st.builds(p.ControllerGetVolumeRequest, volume_id=ids)),
        st.tuples(
            st.just("ControllerModifyVolume"),
            st.builds(p.ControllerModifyVolumeRequest, volume_id=ids, mutable_parameters=params),
        ),
    )


CONTROLLER_CI = 40


@timeout_for(CONTROLLER_CI)
@fuzz_settings(CONTROLLER_CI)
@given(data=st.data())
def test_identity_and_controller(world: CsiWorld, data: st.DataObject) -> None:
    method, request = data.draw(controller_requests(world), "request")
    service = {
        "GetPluginInfo": world.csi.identity,
        "Probe": world.csi.identity,
        "GetPluginCapabilities": world.csi.identity,
        "NodeGetInfo": world.csi.node,
        "NodeGetCapabilities": world.csi.node,
    }.get(method, world.csi.controller)
    world.call("", getattr(service, method), request)
