"""LINSTOR name rules and the user-name -> LINSTOR-name mapping."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.errors import InvalidArgument
from plugin.names import (
    HASH_CHARS,
    MAX_NAME_BYTES,
    is_generated_name,
    is_valid_node_name,
    is_valid_resource_group_name,
    is_valid_resource_name,
    is_valid_snapshot_name,
    is_valid_storage_pool_name,
    resource_name_for,
    resource_name_from_pvc,
    snapshot_name_for,
)

# An independent statement of LINSTOR's rule (reference notes, section 3.1).
LINSTOR_RD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{1,47}")


def linstor_accepts(name: str) -> bool:
    return (
        LINSTOR_RD.fullmatch(name) is not None
        and re.search(r"[A-Za-z]", name) is not None
        and name.lower() not in ("all", "proxy")
    )


PVC = "pvc-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
ANON = "3fa85f6457174562b3fc2c963f66afa63fa85f6457174562b3fc2c963f66afa6"


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("ab", True),
        ("a", False),
        ("_a", True),
        ("__", False),  # no letter
        ("a" * 48, True),
        ("a" * 49, False),
        ("1abc", False),
        ("-abc", False),
        ("a.b", False),
        ("a b", False),
        ("all", False),
        ("ALL", False),
        ("proxy", False),
        ("Proxy", False),
        ("allx", True),
        ("pvc-x", True),
        ("é" + "a", False),
    ],
)
def test_resource_name_rule(name: str, valid: bool) -> None:
    assert is_valid_resource_name(name) is valid


def test_snapshot_and_group_names_may_be_all_but_pools_need_three_characters() -> None:
    assert is_valid_snapshot_name("all")
    assert is_valid_resource_group_name("proxy")
    assert not is_valid_storage_pool_name("ab")
    assert is_valid_storage_pool_name("abc")
    assert is_valid_storage_pool_name("DfltDisklessStorPool")
    assert not is_valid_storage_pool_name("1pool")


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("node-1", True),
        ("n1.example.com", True),
        ("1node", True),
        ("a", False),
        ("-node", False),
        ("node-", False),
        ("node_1", False),
        ("a..b", False),
        ("x" * 64, False),
        ("x" * 63, True),
    ],
)
def test_node_name_rule(name: str, valid: bool) -> None:
    assert is_valid_node_name(name) is valid


def test_valid_lower_case_names_are_kept() -> None:
    assert resource_name_for(PVC) == PVC
    assert resource_name_for("data") == "data"
    assert resource_name_for("my_vol-2") == "my_vol-2"
    assert snapshot_name_for("snapshot-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0").startswith("snapshot-0f1e")


@pytest.mark.parametrize(
    "name",
    ["Data", "my.volume", ANON, "a" * 49, "x", "all", "proxy", "__", "été", "with space", "-x", "9"],
)
def test_other_names_are_mapped_to_prefix_and_hash(name: str) -> None:
    mapped = resource_name_for(name)
    assert mapped != name
    assert linstor_accepts(mapped), mapped
    assert is_generated_name(mapped)
    assert mapped == resource_name_for(name)  # deterministic
    prefix, _, digest = mapped.rpartition("--")
    assert len(digest) == HASH_CHARS
    assert prefix


def test_mapped_names_stay_readable() -> None:
    assert resource_name_for("Data").startswith("data--")
    assert resource_name_for("my.volume").startswith("my-volume--")
    assert resource_name_for(ANON).startswith("v3fa85f64")
    assert len(resource_name_for(ANON)) <= MAX_NAME_BYTES


def test_names_differing_only_in_case_do_not_collide() -> None:
    variants = ["data", "Data", "DATA", "dAta"]
    mapped = [resource_name_for(v).upper() for v in variants]
    assert len(set(mapped)) == len(variants)


def test_a_name_that_looks_generated_is_hashed_too() -> None:
    generated = resource_name_for("Data")
    # a user who names a volume exactly like a generated name must not get that name
    assert resource_name_for(generated) != generated
    assert resource_name_for(generated) != resource_name_for("Data")


def test_empty_name_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="must not be empty"):
        resource_name_for("")
    with pytest.raises(InvalidArgument, match="snapshot name must not be empty"):
        snapshot_name_for("")


def test_pvc_name_mapping() -> None:
    assert resource_name_from_pvc("default", "data") == "default-data"
    assert resource_name_from_pvc("default", "x" * 60) is None  # too long: fall back
    assert resource_name_from_pvc("", "data") is None
    assert resource_name_from_pvc("1ns", "data") is None  # starts with a digit


ANY_NAME = st.one_of(
    st.text(min_size=1, max_size=140),
    st.from_regex(r"[A-Za-z0-9_.-]{1,70}", fullmatch=True),
    st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    st.from_regex(r"pvc-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", fullmatch=True),
)


@settings(max_examples=1500, deadline=None, database=None)
@given(ANY_NAME)
def test_every_mapped_name_is_valid_for_linstor(name: str) -> None:
    for mapped in (resource_name_for(name), snapshot_name_for(name)):
        assert linstor_accepts(mapped), (name, mapped)
        assert is_valid_resource_name(mapped)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(ANY_NAME, min_size=2, max_size=300, unique=True))
def test_mapping_is_injective_under_case_folding(sample: list[str]) -> None:
    # LINSTOR identifies resources by the upper-cased name
    mapped = {resource_name_for(name).upper() for name in sample}
    assert len(mapped) == len(sample)


@settings(max_examples=1000, deadline=None, database=None)
@given(ANY_NAME)
def test_case_variants_of_a_name_never_collide(name: str) -> None:
    variants = {name, name.lower(), name.upper(), name.swapcase(), name.capitalize()}
    mapped = {resource_name_for(v).upper() for v in variants}
    assert len(mapped) == len(variants)


def test_mapping_is_injective_on_a_large_systematic_sample() -> None:
    sample: set[str] = set()
    for i in range(4000):
        base = f"vol{i}"
        sample.update({base, base.upper(), base.capitalize(), f"{base}.x", f"{i}", f"{i:064x}"})
    mapped = {resource_name_for(name).upper() for name in sample}
    assert len(mapped) == len(sample)
