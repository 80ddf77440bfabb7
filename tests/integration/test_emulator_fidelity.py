"""The emulator answers as the real controller (linstor-server 1.34, REST 1.28) where clients meet it.

Request coercion as Jackson does it, spawn against volume groups, the resource-group view,
controller-version gating, the property whitelist, in-use reports that lag the host, and the
calls an ordinary ``linstor`` client session makes. Each behaviour is checked over raw HTTP and,
where python-linstor has a call for it, through python-linstor too.
"""

from __future__ import annotations

from typing import Any

import linstor
import pytest

from tests.integration.test_emulator_errors import ERR, INFO, Api, code

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def plain(emulator_factory) -> Api:  # type: ignore[no-untyped-def]
    """An emulator (local node only) for checks that never touch storage."""
    return Api(emulator_factory().url)


def _lin(api: Api) -> linstor.Linstor:
    lin = linstor.Linstor("linstor://" + api.url.split("://", 1)[1])
    lin.connect()
    return lin


def _ok(replies: list[Any]) -> bool:
    return all(not r.is_error() for r in replies)


# ---------------------------------------------------------------------- JSON like Jackson (item 10)


def test_scalar_strings_are_read_as_numbers_and_booleans(plain: Api) -> None:
    """The linstor client sends ``"place_count": "2"`` on group create and modify."""
    st, body = plain.post(
        "/resource-groups",
        {"name": "cli-rg", "select_filter": {"place_count": "2", "diskless_on_remaining": "true"}},
    )
    assert st == 201, body
    flt = plain.get("/resource-groups/cli-rg")[1]["select_filter"]
    assert flt["place_count"] == 2 and flt["diskless_on_remaining"] is True
    st, body = plain.put("/resource-groups/cli-rg", {"select_filter": {"place_count": "1"}})
    assert st == 200, body
    assert plain.get("/resource-groups/cli-rg")[1]["select_filter"]["place_count"] == 1
    # Text that is no number is still a parse error, and nothing changes.
    st, body = plain.put("/resource-groups/cli-rg", {"select_filter": {"place_count": "two"}})
    assert st == 400 and body[0]["message"] == "Unable to parse input json."
    assert plain.get("/resource-groups/cli-rg")[1]["select_filter"]["place_count"] == 1


def test_python_linstor_group_calls_with_string_counts(plain: Api) -> None:
    lin = _lin(plain)
    try:
        assert _ok(lin.resource_group_create("pl-rg", place_count="1"))  # type: ignore[arg-type]
        assert _ok(lin.resource_group_modify("pl-rg", place_count="2"))  # type: ignore[arg-type]
        (listing,) = lin.resource_group_list_raise(filter_by_resource_groups=["pl-rg"]).resource_groups
        assert listing.select_filter.place_count == 2
    finally:
        lin.disconnect()


# ---------------------------------------------------------------------- groups and spawn (item 11)


def test_group_view_leaves_out_the_diskless_pool_list(plain: Api) -> None:
    flt = {
        "place_count": 1,
        "storage_pool_diskless_list": ["DfltDisklessStorPool"],
        "storage_pool": "DfltStorPool",
    }
    assert plain.post("/resource-groups", {"name": "dl-rg", "select_filter": flt})[0] == 201
    shown = plain.get("/resource-groups/dl-rg")[1]["select_filter"]
    assert "storage_pool_diskless_list" not in shown
    assert shown["storage_pool_list"] == ["DfltStorPool"]
    listed = next(g for g in plain.get("/resource-groups")[1] if g["name"] == "dl-rg")
    assert "storage_pool_diskless_list" not in listed["select_filter"]


def test_spawn_needs_a_size_per_volume_group_unless_partial(plain: Api) -> None:
    assert plain.post("/resource-groups", {"name": "vg-rg", "select_filter": {"place_count": 1}})[0] == 201
    # No volume groups: partial mode is assumed, with an INFO entry saying so.
    st, body = plain.post(
        "/resource-groups/vg-rg/spawn",
        {"resource_definition_name": "nogroups", "volume_sizes": [4096], "definitions_only": True},
    )
    assert st == 201, body
    assert any(e["ret_code"] & INFO == INFO and "automatically assume partial" in e["message"] for e in body)
    for nr in (0, 1):
        st, body = plain.post(
            "/resource-groups/vg-rg/volume-groups", {"volume_number": nr, "props": {"Aux/vg": str(nr)}}
        )
        assert st == 201, body
    st, body = plain.post(
        "/resource-groups/vg-rg/spawn",
        {"resource_definition_name": "short", "volume_sizes": [4096], "definitions_only": True},
    )
    assert st == 500 and code(body[0]) == ERR | 228, body
    assert "2 Volume groups, but only 1 sizes" in body[0]["details"]
    assert "'partial'" in body[0]["correction"]
    assert plain.get("/resource-definitions/short")[0] == 404
    # partial: only the first volume group gets a volume; its props are not copied.
    st, body = plain.post(
        "/resource-groups/vg-rg/spawn",
        {
            "resource_definition_name": "part",
            "volume_sizes": [4096],
            "partial": True,
            "definitions_only": True,
        },
    )
    assert st == 201, body
    vds = plain.get("/resource-definitions/part/volume-definitions")[1]
    assert [v["volume_number"] for v in vds] == [0]
    assert "props" not in vds[0]


def test_python_linstor_spawn_with_too_few_sizes_is_228(plain: Api) -> None:
    lin = _lin(plain)
    try:
        assert _ok(lin.resource_group_create("pls-rg", place_count=1))
        assert _ok(lin.volume_group_create("pls-rg"))
        assert _ok(lin.volume_group_create("pls-rg"))
        replies = lin.resource_group_spawn("pls-rg", "pls1", [4096], definitions_only=True)
        assert replies[0].is_error() and replies[0].ret_code & 0x7FFF == 228  # FAIL_INVLD_VLM_SIZES
        assert _ok(lin.resource_group_spawn("pls-rg", "pls2", [4096, 8192], definitions_only=True))
    finally:
        lin.disconnect()
