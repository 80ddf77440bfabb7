"""Both daemons set glibc up at start: large freed blocks go back to the system, threads share arenas."""

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


def test_the_threshold_and_the_arena_limit_are_set_with_mallopt() -> None:
    libc = FakeLibc(answer=1)
    assert allocator.tune_malloc(libc=libc) is True
    assert libc.calls == [(allocator.M_MMAP_THRESHOLD, 128 * 1024), (allocator.M_ARENA_MAX, 2)]


def test_a_refused_setting_is_reported_and_the_others_still_applied() -> None:
    libc = FakeLibc(answer=0)
    assert allocator.tune_malloc(((-3, 4096), (-8, 1)), libc=libc) is False
    assert libc.calls == [(-3, 4096), (-8, 1)]


def test_without_glibc_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.tune_malloc() is False


TUNE = """
    import sys
    from plugin import allocator

    if sys.argv[1] == "tuned":
        assert allocator.tune_malloc()
    elif sys.argv[1] == "csi":
        from csi import cli
        assert cli.main(["--driver-name=-bad-"]) == 2
    elif sys.argv[1] == "docker":
        from docker_plugin import cli
        assert cli.main(["--threads", "0"]) != 0
"""

MAPPED_AFTER_A_LARGER_FREE = """
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    big = bytearray(8 << 20)  # mapped; freeing it raises a dynamic threshold to 8 MiB
    del big
    before = libc.mallinfo2().hblks
    block = bytearray(1 << 20)
    print(libc.mallinfo2().hblks - before)
"""


ARENAS_OF_BUSY_THREADS = """
    import ctypes, os, re, tempfile, threading

    held = []
    together = threading.Barrier(6)

    def work():
        held.append(bytearray(64 << 10))  # from this thread's arena
        together.wait(30)

    threads = [threading.Thread(target=work) for _ in range(5)]
    for thread in threads:
        thread.start()
    together.wait(30)
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    handle, path = tempfile.mkstemp()
    out = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, out)  # one <heap> element per arena
    libc.fclose(out)
    print(len(re.findall('<heap nr=', open(path).read())))
    os.close(handle)
    os.unlink(path)
    for thread in threads:
        thread.join()
"""


def run_tuned(script: str, mode: str) -> int:
    """What ``script`` prints, run after ``TUNE`` in ``mode`` (dynamic, tuned, csi, docker)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(TUNE) + textwrap.dedent(script), mode],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


glibc = pytest.mark.skipif(allocator._glibc() is None, reason="the C library is not glibc")


@glibc
def test_a_large_block_stays_a_mapping_after_a_larger_one_was_freed() -> None:
    assert run_tuned(MAPPED_AFTER_A_LARGER_FREE, "dynamic") == 0  # glibc's default: from the heap
    assert run_tuned(MAPPED_AFTER_A_LARGER_FREE, "tuned") == 1


@glibc
def test_threads_share_two_arenas() -> None:
    assert run_tuned(ARENAS_OF_BUSY_THREADS, "dynamic") > 2  # glibc's default: one per thread
    assert run_tuned(ARENAS_OF_BUSY_THREADS, "tuned") == 2


@glibc
@pytest.mark.parametrize("daemon", ["csi", "docker"])
def test_both_daemons_tune_it_first_thing(daemon: str) -> None:
    # their main, stopped by a bad flag right after
    assert run_tuned(MAPPED_AFTER_A_LARGER_FREE, daemon) == 1
    assert run_tuned(ARENAS_OF_BUSY_THREADS, daemon) == 2
