"""The emulator pages list answers by the controller's rules.

The controller applies ``limit``/``offset`` only when ``limit > 0``, as Java's
``stream.skip(offset).limit(limit)`` after filtering, to a list in upper-cased name order
(resources: definition, then node). So consecutive pages concatenate to the whole list,
an offset past the end is an empty page, and a negative offset is an unexpected error
(``skip`` throws). The plugin's paged reads rely on exactly this.
"""

from __future__ import annotations

from typing import Any

import pytest

from plugin.linstor.retcodes import MASK_ERROR as ERR
from plugin.linstor.retcodes import MASK_SEVERITY_AND_CODE as MASK
from tests.integration.test_emulator_errors import Api


def pages(api: Api, path: str, limit: int, **params: Any) -> tuple[list[Any], int]:
    """Every item of ``path`` read ``limit`` at a time, and how many reads it took."""
    items: list[Any] = []
    reads = 0
    while True:
        st, page = api.get(path, limit=limit, offset=len(items), **params)
        assert st == 200, page
        reads += 1
        items.extend(page)
        if len(page) < limit:
            return items, reads


@pytest.fixture
def plain(emulator_factory) -> Api:  # type: ignore[no-untyped-def]
    return Api(emulator_factory().url)


def test_definition_pages_concatenate_to_the_list_in_name_order(plain: Api) -> None:
    for name in ("b-one", "A-two", "c-three", "D-four", "e5", "F6", "g7"):
        plain.rd(name)
    whole = plain.get("/resource-definitions")[1]
    assert [r["name"] for r in whole] == ["A-two", "b-one", "c-three", "D-four", "e5", "F6", "g7"]
    for limit in (1, 2, 3, 7, 8):
        items, reads = pages(plain, "/resource-definitions", limit)
        assert items == whole
        assert reads == len(whole) // limit + 1  # a full last page needs one more, empty, read
    assert plain.get("/resource-definitions", limit=3, offset=7) == (200, [])
    assert plain.get("/resource-definitions", limit=3, offset=100) == (200, [])


def test_filters_apply_before_the_page(plain: Api) -> None:
    for name in ("p1", "q1", "p2", "q2", "p3"):
        plain.rd(name)
        if name.startswith("p"):
            st, body = plain.put(f"/resource-definitions/{name}", {"override_props": {"Aux/kind": "p"}})
            assert st == 200, body
    page = plain.get("/resource-definitions", props="Aux/kind=p", limit=2, offset=1)[1]
    assert [r["name"] for r in page] == ["p2", "p3"]
    picked = plain.get("/resource-definitions", resource_definitions=["q2", "p1", "p3"], limit=2, offset=2)[1]
    assert [r["name"] for r in picked] == ["q2"]


def test_negative_offset_is_an_unexpected_error_only_when_paging(plain: Api) -> None:
    plain.rd("only")
    st, body = plain.get("/resource-definitions", limit=2, offset=-1)
    assert st == 500
    assert body[0]["ret_code"] & MASK == ERR | 999
    assert body[0]["error_report_ids"] and body[0]["cause"] == "IllegalArgumentException"
    assert [r["name"] for r in plain.get("/resource-definitions", limit=0, offset=-1)[1]] == ["only"]
    assert [r["name"] for r in plain.get("/resource-definitions", offset=-5)[1]] == ["only"]


def test_resource_view_pages_in_definition_then_node_order(root_loop, emulator) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator.url)
    for name in ("rb", "RA", "rc"):
        api.rd(name, 4096)
        st, body = api.post(f"/resource-definitions/{name}/autoplace", {"select_filter": {"place_count": 2}})
        assert st == 201, body
    whole = api.get("/view/resources", resources=["ra", "rb", "rc"])[1]
    order = [(r["name"].upper(), r["node_name"].upper()) for r in whole]
    assert len(order) >= 6 and order == sorted(order)  # a diskless tiebreaker may be added
    for limit in (1, 4, len(whole)):
        items, _ = pages(api, "/view/resources", limit, resources=["ra", "rb", "rc"])
        assert [(r["name"], r["node_name"]) for r in items] == [(r["name"], r["node_name"]) for r in whole]


def test_order_is_kept_through_creates_and_deletes_and_a_restart(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    """Definitions are walked in a kept key order (as the controller's TreeMap): lists read
    between creates and deletes stay in name order, and the bytes of an answer are the same
    as those of an emulator that loaded the same state from disk and sorted afresh."""
    emu = emulator_factory()
    api = Api(emu.url)
    for name in ("m2", "K1", "z3"):
        api.rd(name)
    assert [r["name"] for r in api.get("/resource-definitions")[1]] == ["K1", "m2", "z3"]
    for name in ("a0", "M1", "zz"):  # before, between and after the names listed
        api.rd(name)
    assert api.delete("/resource-definitions/m2")[0] == 200
    assert api.delete("/resource-definitions/ZZ")[0] == 200
    api.rd("m3")
    expected = ["a0", "K1", "M1", "m3", "z3"]
    assert [r["name"] for r in api.get("/resource-definitions")[1]] == expected
    items, _ = pages(api, "/resource-definitions", 2)
    assert [r["name"] for r in items] == expected
    paths = [("/v1/resource-definitions", {}), ("/v1/resource-definitions", {"limit": 2, "offset": 1})]
    before = [api.s.get(emu.url + path, params=params, timeout=30).content for path, params in paths]
    emu.restart()
    after = [api.s.get(emu.url + path, params=params, timeout=30).content for path, params in paths]
    assert after == before
