"""The in-process calls' rules: mount options to mount(2) flags and data, probe answers to blkid's codes,
the read-ahead before a probe."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from plugin.node.native import (
    MS_RDONLY,
    NativeCalls,
    NativeUnavailable,
    ProbeAnswer,
    mount_data,
    probe_read_areas,
    read_ahead_probe_areas,
)

MS_NOSUID, MS_NODEV, MS_NOATIME, MS_RELATIME = 2, 4, 1024, 1 << 21


def test_generic_options_become_flags_and_the_rest_is_data() -> None:
    flags, data = mount_data(
        "ext4", ["noatime", "nodev", "data=journal", "nosuid", "errors=remount-ro"], False
    )
    assert flags == MS_NOATIME | MS_NODEV | MS_NOSUID
    assert data == "data=journal,errors=remount-ro"


def test_a_later_option_undoes_an_earlier_one_as_libmount_does() -> None:
    assert mount_data("ext4", ["noatime", "atime", "relatime"], False) == (MS_RELATIME, "")
    assert mount_data("xfs", ["norelatime", "relatime", "nouuid"], False) == (MS_RELATIME, "nouuid")


def test_read_only_is_the_flag_whatever_ro_or_rw_words_say() -> None:
    assert mount_data("ext4", ["ro", "noload"], True) == (MS_RDONLY, "noload")
    assert mount_data("btrfs", ["rw", "compress=zstd:3"], False) == (0, "compress=zstd:3")


@pytest.mark.parametrize(
    ("fs", "options"),
    [
        ("ext4", ["context=system_u:object_r:tmp_t:s0"]),
        ("xfs", ["noatime", "rootcontext=system_u:object_r:tmp_t:s0"]),
        ("vfat", []),  # not made by this plugin: a mount helper may exist for it
    ],
)
def test_what_libmount_handles_itself_is_left_to_mount(fs: str, options: list[str]) -> None:
    with pytest.raises(NativeUnavailable):
        mount_data(fs, options, False)


class FakeLibblkid:
    """Answers of libblkid's probe calls, to drive the probe's decisions without a device."""

    def __init__(self, safeprobe: int, values: int = 0, size: int = 1 << 30) -> None:
        self.safeprobe, self.values, self.size = safeprobe, values, size

    def __getattr__(self, name: str) -> Callable[..., int]:
        answers = {
            "blkid_do_safeprobe": self.safeprobe,
            "blkid_probe_numof_values": self.values,
            "blkid_probe_get_size": self.size,
            "blkid_probe_get_value": -1,
        }
        return lambda *args: answers.get(name, 0)


@pytest.mark.parametrize(("safeprobe", "code"), [(1, 2), (-2, 8)])
def test_nothing_found_and_ambivalent_map_to_blkids_exit_codes(safeprobe: int, code: int) -> None:
    answer = NativeCalls._low_probe(FakeLibblkid(safeprobe), 1, 0, "/dev/x")  # type: ignore[arg-type]
    assert (answer.code, answer.values) == (code, {})


@pytest.mark.parametrize("lib", [FakeLibblkid(-1), FakeLibblkid(0, values=0), FakeLibblkid(0, values=2)])
def test_a_probe_error_or_a_find_without_values_is_left_to_blkid(lib: FakeLibblkid) -> None:
    """Never "blank" on doubt: an error, or a signature libblkid cannot name, goes to the tool."""
    with pytest.raises(NativeUnavailable):
        NativeCalls._low_probe(lib, 1, 0, "/dev/x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (
            256 << 20,
            [
                (0, 528 << 10),
                (1 << 20, 4096),
                (2 << 20, 4096),
                (4 << 20, 4096),
                (266854400, 4608),  # 1580544 bytes before the end, from the page it falls in
                ((256 << 20) - (512 << 10), 512 << 10),
            ],
        ),
        (512 << 10, [(0, 512 << 10), (0, 512 << 10)]),  # smaller than the areas: all of it, twice
    ],
)
def test_the_probe_areas_are_read_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, expected: list[tuple[int, int]]
) -> None:
    hints: list[tuple[int, int, int]] = []
    monkeypatch.setattr(
        os, "posix_fadvise", lambda fd, offset, length, advice: hints.append((offset, length, advice))
    )
    image = tmp_path / "image"
    image.write_bytes(b"")
    os.truncate(image, size)
    fd = os.open(image, os.O_RDONLY)
    try:
        read_ahead_probe_areas(fd)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # the probe starts from where it would have
    finally:
        os.close(fd)
    assert hints == [(offset, length, os.POSIX_FADV_WILLNEED) for offset, length in expected]


# Every read ``blkid -p`` (util-linux 2.38) made of a blank device, from an strace:
# (offset, length), a negative offset counting from the end. ZFS's back labels (the two
# 256 KiB reads near the end) sit below the size rounded down to 256 KiB.
_TRACED_READS = [
    *((0, n) for n in (262144, 1024, 256)),
    *((o, 1024) for o in (1024, 3072, 4096, 7168, 15360, 31744, 64512, 1048576, 2097152)),
    *((o, 512) for o in (16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304)),
    (4096, 256),
    (262144, 262144),
    (-512, 512),
    (-1024, 48),
    (-4096, 1392),
    (-8192, 256),
    (-131584, 512),
    *((-back, 24) for back in (32256, 130560, 131072, 204288, 302592, 345600, 376320, 466432)),
    *((-back, 24) for back in (486912, 498688, 507392, 1580544)),
    (-65536, 64),
    (-262144, 262144),
    (-524288, 262144),
]


@pytest.mark.parametrize(
    ("size", "moved"),
    [
        (256 << 20, {}),
        (10 << 30, {}),
        # not a multiple of 256 KiB: ZFS's back labels and one more read move with the rounding down
        (
            (1 << 30) + 8192,
            {
                (-65536, 64): (-73728, 64),
                (-262144, 262144): (-270336, 262144),
                (-524288, 262144): (-532480, 262144),
            },
        ),
    ],
)
def test_the_read_ahead_covers_every_read_of_the_probe(
    size: int, moved: dict[tuple[int, int], tuple[int, int]]
) -> None:
    reads = [moved.get(read, read) for read in _TRACED_READS]
    areas = probe_read_areas(size)
    for offset, length in reads:
        start = offset if offset >= 0 else size + offset
        assert any(a <= start and start + length <= a + n for a, n in areas), (offset, length)
    assert all(a % 4096 == 0 and a >= 0 and a + n <= size for a, n in areas)
    assert sum(n for _, n in areas) <= (1 << 20) + 5 * 4096 + (256 << 10)


def test_a_refused_read_ahead_hint_does_not_stop_the_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: int) -> None:
        raise OSError(errno.ESPIPE, os.strerror(errno.ESPIPE))

    monkeypatch.setattr(os, "posix_fadvise", refuse)
    image = tmp_path / "image"
    image.write_bytes(b"")
    os.truncate(image, 4 << 20)
    assert NativeCalls().probe(str(image)) == ProbeAnswer(2, {})  # blank, probed all the same
