"""Size rules shared by plain volumes and consistency-group members."""

from __future__ import annotations

import pytest

from plugin.errors import InvalidArgument
from plugin.params.filesystems import minimum_size_bytes
from plugin.volumes import sizes


def test_kib_rounds_up_and_is_at_least_one() -> None:
    assert sizes.kib(0) == 1
    assert sizes.kib(1) == 1
    assert sizes.kib(1024) == 1
    assert sizes.kib(1025) == 2


def test_create_kib_raises_small_requests_to_the_filesystem_minimum() -> None:
    assert sizes.create_kib("v", 0, "xfs") == sizes.kib(minimum_size_bytes("xfs"))
    assert sizes.create_kib("v", 1 << 30, "ext4") == 1 << 20


@pytest.mark.parametrize(
    ("name", "size", "message"),
    [
        ("", 1 << 20, "needs a name"),
        ("v", -1, "must not be negative, got -1"),
        ("v", (1 << 50) + 1, "larger than LINSTOR's limit of 1 PiB"),
    ],
)
def test_create_kib_refuses_with_the_cause(name: str, size: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        sizes.create_kib(name, size, "ext4")


def test_grow_kib_allows_growth_and_the_same_size() -> None:
    assert sizes.grow_kib("pvc-1", 1 << 30, 2 << 30) == 2 << 20
    assert sizes.grow_kib("pvc-1", 1 << 30, 1 << 30) == 1 << 20


def test_grow_kib_refuses_shrinking_naming_both_sizes() -> None:
    with pytest.raises(InvalidArgument, match=r"pvc-1 is 2 GiB; it can only grow, not shrink to 1 GiB"):
        sizes.grow_kib("pvc-1", 2 << 30, 1 << 30)


def test_grow_kib_refuses_past_the_limit() -> None:
    with pytest.raises(InvalidArgument, match="1 PiB"):
        sizes.grow_kib("pvc-1", 1 << 30, 2 << 50)
