"""FakeNodeOps passes the node-operation scenarios the real NodeOps passes (tests/node_contract.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from plugin.node.fake import FakeNodeOps
from plugin.node.ops import NodeOps
from tests.node_contract import SCENARIOS, Scene

MiB = 1 << 20


class FakeScene:
    def __init__(self, base: Path) -> None:
        self.ops = FakeNodeOps()
        self.base = base
        self.made = 0

    def blank(self, size: int = 320 * MiB) -> str:
        self.made += 1
        path = f"/dev/fake{self.made}"
        self.ops.add_device(path, size)
        return path

    def holding(self, fs: str, size: int = 320 * MiB) -> str:
        path = self.blank(size)
        self.ops.devices[path].fs = fs
        self.ops.devices[path].fs_size = size
        return path

    def grow(self, device: str, size: int) -> None:
        self.ops.resize_device(device, size)

    def path(self, name: str) -> str:
        return str(self.base / name)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_fake_keeps_the_node_rules(scenario: Callable[[Scene], None], tmp_path: Path) -> None:
    scenario(FakeScene(tmp_path))


def test_fake_records_what_the_real_one_would_run(tmp_path: Path) -> None:
    scene = FakeScene(tmp_path)
    dev = scene.blank()
    scene.ops.stage(dev, scene.path("s"), "xfs")
    assert scene.ops.commands == [f"mkfs.xfs {dev}", f"mount {dev} {tmp_path / 's'}"]


def test_fake_checks_an_existing_ext4_but_not_one_it_just_made(tmp_path: Path) -> None:
    scene = FakeScene(tmp_path)
    fresh, old = scene.blank(), scene.holding("ext4")
    scene.ops.stage(fresh, scene.path("fresh"), "ext4", check_ext4=True)
    scene.ops.stage(old, scene.path("old"), "ext4", check_ext4=True)
    assert f"mkfs.ext4 {fresh}" in scene.ops.commands
    assert [c for c in scene.ops.commands if c.startswith("e2fsck")] == [f"e2fsck -p {old}"]
    scene.ops.stage(old, scene.path("old"), "ext4", check_ext4=True)  # mounted: not checked again
    assert [c for c in scene.ops.commands if c.startswith("e2fsck")] == [f"e2fsck -p {old}"]


def test_fake_reports_a_vanished_device(tmp_path: Path) -> None:
    scene = FakeScene(tmp_path)
    dev = scene.blank()
    scene.ops.stage(dev, scene.path("s"), "ext4")
    scene.ops.remove_device(dev)
    condition = scene.ops.condition(scene.path("s"))
    assert condition.abnormal and "gone" in condition.message


def test_fake_has_every_method_of_the_real_one() -> None:
    """A front end handed the fake in a test finds every method it calls on the real one."""

    def public(cls: type) -> set[str]:
        return {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}

    assert public(NodeOps) - public(FakeNodeOps) == set()
