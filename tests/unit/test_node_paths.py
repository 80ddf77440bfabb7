"""Host path checks of the node operations that need no root: directories and their modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from plugin.errors import FailedPrecondition
from plugin.node.ops import NodeOps


def test_a_new_directory_gets_its_mode_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        NodeOps().make_directory(str(tmp_path / "data"), 0o755)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o755


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir(mode=0o700)
    NodeOps().make_directory(str(tmp_path / "data"), 0o755)
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


def test_a_file_in_the_way_is_named(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("x")
    with pytest.raises(FailedPrecondition, match="data exists and is not a directory"):
        NodeOps().make_directory(str(tmp_path / "data"), 0o755)


def test_a_symlink_to_the_same_file_is_the_same_device(tmp_path: Path) -> None:
    (tmp_path / "dev").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "dev")
    ops = NodeOps()
    assert ops.same_device(str(tmp_path / "link"), str(tmp_path / "dev"))
    assert not ops.same_device(str(tmp_path / "dev"), str(tmp_path / "missing"))
    assert ops.path_exists(str(tmp_path / "link")) and not ops.is_directory(str(tmp_path / "link"))
