"""How the in-process mount splits options into mount(2) flags and the filesystem's data string."""

from __future__ import annotations

import pytest

from plugin.node.native import MS_RDONLY, NativeUnavailable, mount_data

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
