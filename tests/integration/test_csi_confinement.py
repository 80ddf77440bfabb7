"""The node service touches only what a request may touch: real emulator, loop devices, mounts.

Each case is a finding of a probe that fed the node service hostile requests: relative
paths, paths outside the CO's directory (``/``, ``/etc``, a symlink or ``..`` leading out),
a forged ``device-path`` in the publish context, and another volume's id with a path.
Refused requests must change nothing: scratch devices stay byte-identical, foreign
mounts stay mounted, empty files and directories outside the roots stay where they are.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from csi.generated import csi_pb2
from csi.testing import block_cap, mount_cap, mounts_under
from tests import csi_requests as rq
from tests.integration.csi_stack import LOCAL, Stack, csi_stack, scratch_dir

MIB = 1024**2
DEVICE_KEY = "linstor.csi.linbit.com/device-path"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with csi_stack(tmp_path_factory.mktemp("csi-confinement"), "csi-conf-") as made:
        yield made


@pytest.fixture
def base(stack: Stack) -> Iterator[Path]:
    """A directory below the driver's root (as kubelet's pod directories are)."""
    with scratch_dir(stack) as made:
        yield made


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside every root; whatever a test mounts there is undone afterwards."""
    path = Path(tempfile.mkdtemp(prefix="csi-outside-"))
    yield path
    for point in mounts_under(str(path)):
        subprocess.run(["umount", "-l", point], check=False)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def scratch_device(tmp_path: Path) -> Iterator[str]:
    """A blank loop device no volume owns: what an unconfined NodeStage would have formatted."""
    backing = tmp_path / "scratch.img"
    with open(backing, "wb") as fh:
        fh.truncate(16 * MIB)
    device = subprocess.run(
        ["losetup", "--find", "--show", str(backing)], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


def digest(device: str) -> str:
    with open(device, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.details(), "every error carries a message"
    return info.value


def mount_table() -> list[str]:
    """Mount points and sources, to compare before and after a refused call."""
    with open("/proc/self/mountinfo") as fh:
        return sorted(" ".join(line.split()[4:5] + line.split(" - ")[1].split()[:2]) for line in fh)


class Volume:
    """A volume created and attached to the local node; staged and published on demand."""

    def __init__(self, stack: Stack, cap: csi_pb2.VolumeCapability | None = None) -> None:
        self.stack = stack
        self.cap = cap or mount_cap()
        self.id = stack.csi.controller.CreateVolume(
            csi_pb2.CreateVolumeRequest(
                name=f"pvc-{uuid.uuid4()}",
                capacity_range=csi_pb2.CapacityRange(required_bytes=32 * MIB),
                volume_capabilities=[self.cap],
            )
        ).volume.volume_id
        self.ctx = dict(
            stack.csi.controller.ControllerPublishVolume(
                rq.controller_publish(self.id, LOCAL, self.cap)
            ).publish_context
        )

    def stage(self, staging: Path, ctx: dict[str, str] | None = None) -> None:
        staging.mkdir(exist_ok=True)
        self.stack.csi.node.NodeStageVolume(
            rq.stage(self.id, staging, self.ctx if ctx is None else ctx, self.cap)
        )

    def publish(self, staging: Path, target: Path, ctx: dict[str, str] | None = None) -> None:
        self.stack.csi.node.NodePublishVolume(
            rq.publish(self.id, staging, target, self.ctx if ctx is None else ctx, self.cap)
        )

    def remove(self, *undo: tuple[str, Path]) -> None:
        """Unpublish/unstage what the test left, detach, delete."""
        node = self.stack.csi.node
        for kind, path in undo:
            if kind == "target":
                node.NodeUnpublishVolume(rq.unpublish(self.id, path))
            else:
                node.NodeUnstageVolume(rq.unstage(self.id, path))
        self.stack.csi.controller.ControllerUnpublishVolume(rq.controller_unpublish(self.id, LOCAL))
        self.stack.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=self.id))


# ---------------------------------------------------------------- relative paths


def _node_calls_with(path: str, base: Path) -> list[tuple[str, str, object]]:
    """Every node RPC with ``path`` in one path field (the other fields valid)."""
    good = str(base / "ok")
    return [
        ("staging_target_path", "NodeStageVolume", rq.stage("v1", path, cap=mount_cap())),
        ("staging_target_path", "NodeUnstageVolume", rq.unstage("v1", path)),
        ("target_path", "NodePublishVolume", rq.publish("v1", good, path, cap=mount_cap())),
        ("staging_target_path", "NodePublishVolume", rq.publish("v1", path, good, cap=mount_cap())),
        ("target_path", "NodeUnpublishVolume", rq.unpublish("v1", path)),
        ("volume_path", "NodeGetVolumeStats", csi_pb2.NodeGetVolumeStatsRequest(
            volume_id="v1", volume_path=path)),
        ("volume_path", "NodeExpandVolume", csi_pb2.NodeExpandVolumeRequest(
            volume_id="v1", volume_path=path)),
        ("staging_target_path", "NodeExpandVolume", csi_pb2.NodeExpandVolumeRequest(
            volume_id="v1", volume_path=good, staging_target_path=path)),
    ]  # fmt: skip


@pytest.mark.parametrize("path", [".", "..", "relative/dir", "./x"])
def test_relative_paths_are_refused_in_every_node_rpc(stack: Stack, base: Path, path: str) -> None:
    cwd = os.getcwd()  # the driver runs in this process: "." is its working directory
    for field, method, request in _node_calls_with(path, base):
        err = refused(lambda: getattr(stack.csi.node, method)(request))  # noqa: B023
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.details())
        assert field in err.details() and "absolute" in err.details(), err.details()
    assert os.path.isdir(cwd) and os.getcwd() == cwd


def test_target_dot_leaves_the_working_directory(stack: Stack, outside: Path) -> None:
    """The probe's call: NodeUnpublish of "." removed the driver's (empty) working directory."""
    previous = os.getcwd()
    os.chdir(outside)  # empty, as the probe's was
    try:
        err = refused(lambda: stack.csi.node.NodeUnpublishVolume(rq.unpublish("v1", ".")))
    finally:
        os.chdir(previous)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert outside.is_dir()


# ---------------------------------------------------------------- paths outside the roots


def test_publish_cannot_bind_the_root_or_mount_over_etc(stack: Stack, base: Path) -> None:
    volume = Volume(stack)
    staging, target = base / "staging", base / "target"
    volume.stage(staging)
    before = mount_table()
    bind_root = refused(lambda: volume.publish(Path("/"), target))
    assert bind_root.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "staging_target_path" in bind_root.details()
    over_etc = refused(lambda: volume.publish(staging, Path("/etc")))
    assert over_etc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "target_path" in over_etc.details()
    assert mount_table() == before
    assert not target.exists()
    volume.remove(("staging", staging))


def test_symlinks_and_dotdot_cannot_lead_out_of_a_root(stack: Stack, base: Path, outside: Path) -> None:
    volume = Volume(stack)
    staging = base / "staging"
    volume.stage(staging)
    (base / "link").symlink_to(outside)
    before = mount_table()
    for target in (base / "link" / "target", Path(f"{base}/../../{outside.name}/target")):
        err = refused(lambda: volume.publish(staging, target))  # noqa: B023
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(outside) in err.details()  # the resolved path is shown
    assert mount_table() == before
    assert list(outside.iterdir()) == []
    volume.remove(("staging", staging))


def test_unpublish_outside_the_roots_leaves_tmpfs_and_empty_entries(stack: Stack, outside: Path) -> None:
    tmpfs, empty_dir, empty_file = outside / "tmpfs", outside / "empty-dir", outside / "empty-file"
    for path in (tmpfs, empty_dir):
        path.mkdir()
    empty_file.touch()
    subprocess.run(["mount", "-t", "tmpfs", "probe", str(tmpfs)], check=True)
    for path in (tmpfs, empty_dir, empty_file):
        err = refused(
            lambda: stack.csi.node.NodeUnpublishVolume(
                rq.unpublish("fake-vol-id-1", path)  # noqa: B023
            )
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert os.path.ismount(tmpfs)
    assert empty_dir.is_dir() and empty_file.is_file()


def test_tmpfs_inside_a_root_is_never_unmounted(stack: Stack, base: Path) -> None:
    tmpfs = base / "tmpfs"
    tmpfs.mkdir()
    # a tmpfs may carry any source text, even a device path that does not exist
    subprocess.run(["mount", "-t", "tmpfs", "/dev/nonexistent", str(tmpfs)], check=True)
    (tmpfs / "keep").write_text("me")
    volume = Volume(stack)
    for vid in ("fake-vol-id-1", volume.id):
        for call in (
            lambda: stack.csi.node.NodeUnpublishVolume(
                rq.unpublish(vid, tmpfs)  # noqa: B023
            ),
            lambda: stack.csi.node.NodeUnstageVolume(
                rq.unstage(vid, tmpfs)  # noqa: B023
            ),
        ):
            err = refused(call)
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
            assert "not unmounted" in err.details()
    assert os.path.ismount(tmpfs) and (tmpfs / "keep").read_text() == "me"
    volume.remove()


def test_expand_with_the_host_root_as_staging_path_is_refused(stack: Stack, base: Path) -> None:
    volume = Volume(stack, mount_cap(fs_type="xfs"))
    staging, target = base / "staging", base / "target"
    volume.stage(staging)
    volume.publish(staging, target)
    for fields in ({"volume_path": str(target), "staging_target_path": "/"}, {"volume_path": "/"}):
        err = refused(
            lambda: stack.csi.node.NodeExpandVolume(
                csi_pb2.NodeExpandVolumeRequest(volume_id=volume.id, **fields)  # noqa: B023
            )
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert "outside" in err.details()
    volume.remove(("target", target), ("staging", staging))


# ---------------------------------------------------------------- devices LINSTOR did not report


def test_stage_of_an_unknown_volume_never_touches_the_forged_device(
    stack: Stack, base: Path, scratch_device: str
) -> None:
    before = digest(scratch_device)
    staging = base / "staging"
    staging.mkdir()
    for cap in (mount_cap(), block_cap()):
        err = refused(
            lambda: stack.csi.node.NodeStageVolume(
                csi_pb2.NodeStageVolumeRequest(
                    volume_id="fake-vol-id-0123456789",
                    staging_target_path=str(staging),
                    volume_capability=cap,  # noqa: B023
                    publish_context={DEVICE_KEY: scratch_device},
                )
            )
        )
        assert err.code() == grpc.StatusCode.NOT_FOUND, err.details()
    target = base / "target"
    err = refused(
        lambda: stack.csi.node.NodePublishVolume(
            rq.publish("fake-vol-id-0123456789", staging, target, {DEVICE_KEY: scratch_device}, block_cap())
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert not os.path.ismount(staging) and not target.exists()
    assert digest(scratch_device) == before


def test_a_known_volume_stages_and_binds_its_own_device_not_the_forged_one(
    stack: Stack, base: Path, scratch_device: str
) -> None:
    before = digest(scratch_device)
    forged = {DEVICE_KEY: scratch_device}
    volume = Volume(stack)
    staging = base / "staging"
    volume.stage(staging, ctx=forged)
    own = os.stat(volume.ctx[DEVICE_KEY]).st_rdev
    assert os.stat(staging).st_dev == own  # the volume's filesystem, not the scratch device's

    raw = Volume(stack, block_cap())
    raw_staging, raw_target = base / "raw-staging", base / "raw-target"
    raw.stage(raw_staging, ctx=forged)
    raw.publish(raw_staging, raw_target, ctx=forged)
    assert os.stat(raw_target).st_rdev == os.stat(raw.ctx[DEVICE_KEY]).st_rdev
    assert digest(scratch_device) == before
    raw.remove(("target", raw_target), ("staging", raw_staging))
    volume.remove(("staging", staging))


# ---------------------------------------------------------------- another volume's mounts


def test_another_volume_id_cannot_unstage_unpublish_expand_or_stat_a_mount(stack: Stack, base: Path) -> None:
    one, two = Volume(stack, mount_cap(fs_type="xfs")), Volume(stack, mount_cap(fs_type="xfs"))
    staging, target = base / "staging", base / "target"
    one.stage(staging)
    one.publish(staging, target)
    (target / "data").write_text("one's")
    node = stack.csi.node
    before = mount_table()
    for vid in (two.id, "fake-vol-id-1"):
        for call in (
            lambda: node.NodeUnstageVolume(
                rq.unstage(vid, staging)  # noqa: B023
            ),
            lambda: node.NodeUnpublishVolume(
                rq.unpublish(vid, target)  # noqa: B023
            ),
        ):
            err = refused(call)
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
            assert "not unmounted" in err.details()
    stats = refused(
        lambda: node.NodeGetVolumeStats(
            csi_pb2.NodeGetVolumeStatsRequest(volume_id=two.id, volume_path=str(target))
        )
    )
    assert stats.code() == grpc.StatusCode.NOT_FOUND
    expand = refused(
        lambda: node.NodeExpandVolume(
            csi_pb2.NodeExpandVolumeRequest(
                volume_id=two.id, volume_path=str(target), staging_target_path=str(staging)
            )
        )
    )
    assert expand.code() == grpc.StatusCode.NOT_FOUND
    assert mount_table() == before
    assert (target / "data").read_text() == "one's"

    # publishing another volume's staging mount would hand its data to the wrong pod
    two_target = base / "two-target"
    err = refused(lambda: two.publish(staging, two_target))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not two_target.exists()
    one.remove(("target", target), ("staging", staging))
    two.remove()


def test_unpublish_after_the_volume_is_gone_still_cleans_up(stack: Stack, base: Path) -> None:
    """Idempotent cleanup for the CO: an empty target of a deleted volume is removed, OK."""
    volume = Volume(stack)
    staging, target = base / "staging", base / "target"
    volume.stage(staging)
    volume.publish(staging, target)
    node = stack.csi.node
    node.NodeUnpublishVolume(rq.unpublish(volume.id, target))
    volume.remove(("staging", staging))
    target.mkdir()  # the CO retried after a crash: the directory is back, nothing mounted
    node.NodeUnpublishVolume(rq.unpublish(volume.id, target))
    assert not target.exists()
    node.NodeUnstageVolume(rq.unstage(volume.id, staging))
    assert staging.is_dir()  # the CO's directory: left for the CO
