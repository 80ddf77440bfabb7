"""LINSTOR name rules (reference section 3.1) as the emulator applies them."""

from __future__ import annotations

import pytest

from emulator import names


@pytest.mark.parametrize(
    "name", ["ab", "_a", "a-", "A9_-x", "pvc-2a0e9f3c-1b2d-4c6e-8f00-000000000000", "x" * 48]
)
def test_valid_resource_names(name: str) -> None:
    assert names.resource_name_problem(name) is None


@pytest.mark.parametrize(
    "name", ["a", "9a", "_9", "__", "-ab", "all", "All", "PROXY", "x" * 49, "a b", "a.b", "äb", ""]
)
def test_invalid_resource_names(name: str) -> None:
    assert names.resource_name_problem(name) is not None


def test_byte_length_counts_utf8() -> None:
    assert names.generic_name_problem("ab", 2, 48) is None
    assert "too long" in (names.generic_name_problem("a" * 47 + "é", 2, 48) or "")


def test_storage_pools_need_three_bytes() -> None:
    assert names.storage_pool_name_problem("ab") is not None
    assert names.storage_pool_name_problem("abc") is None


@pytest.mark.parametrize("name", ["node-b", "host1", "a.example.org", "n0", "192-168-0-1"])
def test_valid_node_names(name: str) -> None:
    assert names.node_name_problem(name) is None


@pytest.mark.parametrize("name", ["a", "-a", "a-", "a..b", "a_b", "x" * 64, "a/b"])
def test_invalid_node_names(name: str) -> None:
    assert names.node_name_problem(name) is not None


def test_identity_is_upper_case_and_sorting_follows_it() -> None:
    assert names.key("Foo") == names.key("foo") == "FOO"
    assert sorted(["b", "A", "c", "_z"], key=names.sort_key) == ["A", "b", "c", "_z"]
