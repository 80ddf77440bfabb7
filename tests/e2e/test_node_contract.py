"""The real NodeOps over loop devices passes the scenarios FakeNodeOps is held to."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plugin.node.ops import NodeOps
from tests.e2e.test_nodeops import LoopDevice, make_loop, unmount_below  # noqa: F401  (make_loop: a fixture)
from tests.node_contract import SCENARIOS, Scene

MiB = 1 << 20
pytestmark = pytest.mark.root


class RealScene:
    def __init__(self, make: Callable[..., LoopDevice], base: Path) -> None:
        self.ops = NodeOps(device_timeout=5.0)
        self.make = make
        self.base = base
        self.loops: dict[str, LoopDevice] = {}

    def blank(self, size: int = 320 * MiB) -> str:
        loop = self.make(size)
        self.loops[loop.path] = loop
        return loop.path

    def holding(self, fs: str, size: int = 320 * MiB) -> str:
        path = self.blank(size)
        subprocess.run([f"mkfs.{fs}", "-q", path], check=True, capture_output=True)
        return path

    def grow(self, device: str, size: int) -> None:
        self.loops[device].grow(size)

    def path(self, name: str) -> str:
        return str(self.base / name)


@pytest.fixture
def scene(make_loop: Callable[..., LoopDevice], tmp_path: Path) -> Iterator[RealScene]:  # noqa: F811
    base = tmp_path / "mnt"
    base.mkdir()
    yield RealScene(make_loop, base)
    unmount_below(tmp_path)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_real_node_keeps_the_rules(scenario: Callable[[Scene], None], scene: RealScene) -> None:
    scenario(scene)
