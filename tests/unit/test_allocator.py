"""Both daemons fix glibc's mmap threshold at start, so large freed blocks go back to the system."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

from plugin import allocator
from tests.conftest import REPO_ROOT


class FakeLibc:
    def __init__(self, answer: int) -> None:
        self.answer = answer
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: ctypes.c_int, value: ctypes.c_int) -> int:
        self.calls.append((param.value, value.value))
        return self.answer


def test_the_threshold_is_set_with_mallopt() -> None:
    libc = FakeLibc(answer=1)
    assert allocator.keep_large_blocks_mapped(libc=libc) is True
    assert libc.calls == [(allocator.M_MMAP_THRESHOLD, 128 * 1024)]


def test_a_refused_setting_is_reported() -> None:
    assert allocator.keep_large_blocks_mapped(4096, libc=FakeLibc(answer=0)) is False


def test_without_glibc_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.keep_large_blocks_mapped() is False


MAPPED_AFTER_A_LARGER_FREE = """
    import ctypes, sys
    from plugin import allocator

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    if sys.argv[1] == "fixed":
        assert allocator.keep_large_blocks_mapped()
    elif sys.argv[1] == "csi":
        from csi import cli
        assert cli.main(["--driver-name=-bad-"]) == 2
    elif sys.argv[1] == "docker":
        from docker_plugin import cli
        assert cli.main(["--threads", "0"]) != 0
    big = bytearray(8 << 20)  # mapped; freeing it raises a dynamic threshold to 8 MiB
    del big
    before = libc.mallinfo2().hblks
    block = bytearray(1 << 20)
    print(libc.mallinfo2().hblks - before)
"""


def mapped_blocks_added(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MAPPED_AFTER_A_LARGER_FREE), mode],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(allocator._glibc() is None, reason="the C library is not glibc")
def test_a_large_block_stays_a_mapping_after_a_larger_one_was_freed() -> None:
    assert mapped_blocks_added("dynamic") == 0  # glibc's default: it came from the heap
    assert mapped_blocks_added("fixed") == 1


@pytest.mark.skipif(allocator._glibc() is None, reason="the C library is not glibc")
@pytest.mark.parametrize("daemon", ["csi", "docker"])
def test_both_daemons_set_it_first_thing(daemon: str) -> None:
    assert mapped_blocks_added(daemon) == 1  # their main, stopped by a bad flag right after
