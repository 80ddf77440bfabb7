"""The emulator as a real controller: tie-breakers, offline placement targets, autoplace fields.

Raw HTTP for exact statuses and ret codes, python-linstor for what a LINSTOR client sees.
"""

from __future__ import annotations

from typing import Any

import linstor
import pytest
import requests

from tests.integration.test_emulator_errors import ERR, INFO, WARN, Api, code, has

TB_FLAGS = ["DISKLESS", "DRBD_DISKLESS", "TIE_BREAKER"]


@pytest.fixture
def api(emulator) -> Api:  # type: ignore[no-untyped-def]
    return Api(emulator.url)


def _by_node(api: Api, rd: str) -> dict[str, list[str]]:
    st, body = api.get(f"/resource-definitions/{rd}/resources")
    assert st == 200, body
    return {r["node_name"]: r.get("flags", []) for r in body}


def _two_on_virtual_nodes(api: Api, rd: str) -> list[dict[str, Any]]:
    api.rd(rd, 4096)
    st, body = api.post(
        f"/resource-definitions/{rd}/autoplace",
        {"select_filter": {"place_count": 2, "node_name_list": ["node-b", "node-c"]}},
    )
    assert st == 201, body
    return body


def test_two_replicas_get_a_tie_breaker_on_the_third_node(api: Api) -> None:
    body = _two_on_virtual_nodes(api, "tb1")
    local = api.local()
    assert has(body, INFO | 10003)
    created = next(e for e in body if code(e) == INFO | 10003)
    assert local in created["message"]
    assert _by_node(api, "tb1") == {"node-b": [], "node-c": [], local: TB_FLAGS}
    # Every view shows the flag.
    view = api.get("/view/resources", resources="tb1")[1]
    assert [r["flags"] for r in view if r["node_name"] == local] == [TB_FLAGS]
    assert api.get(f"/resource-definitions/tb1/resources/{local}")[1]["flags"] == TB_FLAGS


def test_odd_counts_and_single_replicas_have_no_tie_breaker(api: Api) -> None:
    api.rd("tb3", 4096)
    st, body = api.post("/resource-definitions/tb3/autoplace", {"select_filter": {"place_count": 3}})
    assert st == 201 and not has(body, INFO | 10003)
    assert all(flags == [] for flags in _by_node(api, "tb3").values())
    api.rd("tb1r", 4096)
    st, body = api.post("/resource-definitions/tb1r/autoplace", {"select_filter": {"place_count": 1}})
    assert st == 201 and len(_by_node(api, "tb1r")) == 1


def test_a_third_diskful_replica_removes_the_tie_breaker(api: Api) -> None:
    _two_on_virtual_nodes(api, "tbgrow")
    local = api.local()
    st, body = api.post(f"/resource-definitions/tbgrow/resources/{local}", {"resource": {}})
    assert st == 201, body
    # The tie-breaker became diskful (a diskful create on a diskless resource gives it a disk);
    # with three diskful replicas there is no tie-breaker any more.
    assert _by_node(api, "tbgrow") == {"node-b": [], "node-c": [], local: []}


def test_make_available_turns_the_tie_breaker_into_an_ordinary_diskless(api: Api) -> None:
    _two_on_virtual_nodes(api, "tbma")
    local = api.local()
    st, body = api.post(f"/resource-definitions/tbma/resources/{local}/make-available", {})
    assert st == 200, body
    assert _by_node(api, "tbma")[local] == ["DISKLESS", "DRBD_DISKLESS"]
    # Its device exists now (a tie-breaker has none).
    vol = api.get(f"/resource-definitions/tbma/resources/{local}/volumes/0")[1]
    assert vol["device_path"].endswith(
        f"drbd{vol['layer_data_list'][0]['data']['drbd_volume_definition']['minor_number']}"
    )

    # Deleting that diskless resource hands it back as tie-breaker (takeover), keep_tiebreaker or not.
    st, body = api.delete(f"/resource-definitions/tbma/resources/{local}", keep_tiebreaker="true")
    assert st == 200 and has(body, INFO | 10006), body
    assert _by_node(api, "tbma")[local] == TB_FLAGS


def test_deleting_the_tie_breaker_keeps_it_only_when_asked(api: Api) -> None:
    _two_on_virtual_nodes(api, "tbdel")
    local = api.local()
    st, body = api.delete(f"/resource-definitions/tbdel/resources/{local}", keep_tiebreaker="true")
    assert st == 200 and has(body, INFO | 10006)
    assert _by_node(api, "tbdel")[local] == TB_FLAGS
    st, body = api.delete(f"/resource-definitions/tbdel/resources/{local}")
    assert st == 200 and has(body, INFO | 10002), body
    assert local not in _by_node(api, "tbdel")
    props = api.get("/resource-definitions/tbdel")[1]["props"]
    assert props["DrbdOptions/auto-add-quorum-tiebreaker"] == "False"


def test_switched_off_tie_breaker_is_not_added(api: Api) -> None:
    api.rd("tboff", 4096, props={"DrbdOptions/auto-add-quorum-tiebreaker": "false"})
    st, body = api.post(
        "/resource-definitions/tboff/autoplace",
        {"select_filter": {"place_count": 2, "node_name_list": ["node-b", "node-c"]}},
    )
    assert st == 201 and not has(body, INFO | 10003)
    assert len(_by_node(api, "tboff")) == 2


def test_no_node_for_a_tie_breaker_is_a_warning(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator_factory(nodes=("node-b",)).url)
    api.rd("tbw", 4096)
    st, body = api.post("/resource-definitions/tbw/autoplace", {"select_filter": {"place_count": 2}})
    assert st == 201 and has(body, WARN | 1013), body
    assert len(_by_node(api, "tbw")) == 2


def test_tie_breaker_through_python_linstor(emulator) -> None:  # type: ignore[no-untyped-def]
    with linstor.Linstor(f"linstor://127.0.0.1:{emulator.port}") as lin:
        lin.resource_dfn_create("tbpy")
        lin.volume_dfn_create("tbpy", 4096)
        replies = lin.resource_auto_place("tbpy", 2, diskless_on_remaining=False)
        assert all(not r.is_error() for r in replies), replies
        assert any(r.ret_code & 0x7FFF == 10003 for r in replies)
        resources = lin.resource_list_raise(filter_by_resources=["tbpy"]).resources
        tie = [r for r in resources if "TIE_BREAKER" in r.flags]
        assert len(tie) == 1 and len(resources) == 3
        replies = lin.resource_delete(tie[0].node_name, "tbpy", keep_tiebreaker=True)
        assert any(r.ret_code & 0x7FFF == 10006 for r in replies)
        replies = lin.resource_make_available(tie[0].node_name, "tbpy")
        assert all(not r.is_error() for r in replies)
        again = lin.resource_list_raise(filter_by_resources=["tbpy"], filter_by_nodes=[tie[0].node_name])
        assert "TIE_BREAKER" not in again.resources[0].flags


# ---------------------------------------------------------------------- offline nodes


def test_make_available_on_an_offline_node_is_refused_as_the_controller_does(api: Api) -> None:
    api.rd("offma", 4096)
    st, body = api.post(
        "/resource-definitions/offma/autoplace",
        {"select_filter": {"place_count": 1, "node_name_list": ["node-c"]}},
    )
    assert st == 201, body
    assert requests.post(api.url + "/_emu/nodes/node-b/offline", timeout=10).status_code == 200
    st, body = api.post("/resource-definitions/offma/resources/node-b/make-available", {})
    assert st == 404 and code(body[0]) == ERR | 310, body
    assert body[0]["message"] == (
        "Autoplacer could not find diskless stor pool on node node-b matching resource-groups "
        "autoplace-settings"
    )
    assert "node-b" not in _by_node(api, "offma")
    # Diskful: the same refusal, naming a diskful pool.
    st, body = api.post("/resource-definitions/offma/resources/node-b/make-available", {"diskful": True})
    assert st == 404 and code(body[0]) == ERR | 310 and "diskful stor pool" in body[0]["message"]
    # Autoplace never picks the offline node either.
    api.rd("offap", 4096)
    st, body = api.post("/resource-definitions/offap/autoplace", {"select_filter": {"place_count": 2}})
    assert st == 201, body
    assert "node-b" not in _by_node(api, "offap")


def test_make_available_offline_through_python_linstor(emulator) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator.url)
    api.rd("offpy", 4096)
    api.post(
        "/resource-definitions/offpy/autoplace",
        {"select_filter": {"place_count": 1, "node_name_list": ["node-c"]}},
    )
    requests.post(api.url + "/_emu/nodes/node-b/offline", timeout=10)
    with linstor.Linstor(f"linstor://127.0.0.1:{emulator.port}") as lin:
        replies = lin.resource_make_available("node-b", "offpy")
        assert replies[0].is_error() and replies[0].ret_code & 0x7FFF == 310


# ---------------------------------------------------------------------- autoplace request fields


def test_top_level_diskless_on_remaining_overrides_filter_and_group(api: Api) -> None:
    st, body = api.post(
        "/resource-groups",
        {"name": "dor-rg", "select_filter": {"place_count": 1, "diskless_on_remaining": True}},
    )
    assert st == 201, body
    for rd in ("dor1", "dor2", "dor3"):
        api.rd(rd, 4096, resource_group_name="dor-rg")
    # Not stated: false, whatever the group and the filter say.
    st, body = api.post(
        "/resource-definitions/dor1/autoplace",
        {"select_filter": {"node_name_list": ["node-b"], "diskless_on_remaining": True}},
    )
    assert st == 201, body
    assert _by_node(api, "dor1") == {"node-b": []}
    # Stated true: every other node gets a diskless resource.
    st, body = api.post(
        "/resource-definitions/dor2/autoplace",
        {"select_filter": {"node_name_list": ["node-b"]}, "diskless_on_remaining": True},
    )
    assert st == 201, body
    assert sorted(map(len, _by_node(api, "dor2").values())) == [0, 2, 2]
    # Stated false: false.
    st, body = api.post(
        "/resource-definitions/dor3/autoplace",
        {"select_filter": {"node_name_list": ["node-b"]}, "diskless_on_remaining": False},
    )
    assert st == 201 and len(_by_node(api, "dor3")) == 1


def test_layer_list_replaces_the_filters_layer_stack(api: Api) -> None:
    api.rd("ll1", 4096)
    st, body = api.post(
        "/resource-definitions/ll1/autoplace",
        {"select_filter": {"place_count": 1, "layer_stack": ["STORAGE"]}},
    )
    assert st == 201, body
    rsc = api.get("/resource-definitions/ll1/resources")[1][0]
    assert (
        rsc["layer_object"]["type"] == "DRBD"
    )  # the filter's layer_stack was replaced by the empty layer_list
    api.rd("ll2", 4096)
    st, body = api.post(
        "/resource-definitions/ll2/autoplace",
        {"select_filter": {"place_count": 1, "layer_stack": ["DRBD", "STORAGE"]}, "layer_list": ["STORAGE"]},
    )
    assert st == 201, body
    rsc = api.get("/resource-definitions/ll2/resources")[1][0]
    assert rsc["layer_object"]["type"] == "STORAGE"


def test_autoplace_fields_through_python_linstor(emulator) -> None:  # type: ignore[no-untyped-def]
    with linstor.Linstor(f"linstor://127.0.0.1:{emulator.port}") as lin:
        for rd in ("dorpy1", "dorpy2"):
            lin.resource_dfn_create(rd)
            lin.volume_dfn_create(rd, 4096)
        assert not any(r.is_error() for r in lin.resource_auto_place("dorpy1", 1, diskless_on_remaining=True))
        placed = lin.resource_list_raise(filter_by_resources=["dorpy1"]).resources
        assert sorted(len(r.flags) for r in placed) == [0, 2, 2]
        replies = lin.resource_auto_place("dorpy2", 1, layer_list=["storage"])
        assert not any(r.is_error() for r in replies)
        placed = lin.resource_list_raise(filter_by_resources=["dorpy2"]).resources
        assert len(placed) == 1 and placed[0].layer_data.layer_stack == ["STORAGE"]


def test_switching_the_property_and_restoring_manage_the_tie_breaker(api: Api) -> None:
    _two_on_virtual_nodes(api, "tbprop")
    local = api.local()
    st, body = api.put(
        "/resource-definitions/tbprop",
        {"override_props": {"DrbdOptions/auto-add-quorum-tiebreaker": "false"}},
    )
    assert st == 200 and has(body, INFO | 10004), body
    assert local not in _by_node(api, "tbprop")
    st, body = api.put(
        "/resource-definitions/tbprop", {"delete_props": ["DrbdOptions/auto-add-quorum-tiebreaker"]}
    )
    assert st == 200 and has(body, INFO | 10003), body
    assert _by_node(api, "tbprop")[local] == TB_FLAGS
    # A restore onto two nodes gets its tie-breaker too.
    st, body = api.post("/resource-definitions/tbprop/snapshots", {"name": "s1"})
    assert st == 201, body
    api.rd("tbrest")
    st, body = api.post(
        "/resource-definitions/tbprop/snapshot-restore-volume-definition/s1", {"to_resource": "tbrest"}
    )
    assert st == 200, body
    st, body = api.post(
        "/resource-definitions/tbprop/snapshot-restore-resource/s1", {"to_resource": "tbrest"}
    )
    assert st == 200 and has(body, INFO | 10003), body
    assert _by_node(api, "tbrest")[local] == TB_FLAGS


def test_keep_tiebreaker_switches_a_disabled_tie_breaker_on_again(api: Api) -> None:
    _two_on_virtual_nodes(api, "tbkeep")
    local = api.local()
    st, body = api.delete(f"/resource-definitions/tbkeep/resources/{local}")  # off, and gone
    assert st == 200 and has(body, INFO | 10002)
    st, body = api.post(f"/resource-definitions/tbkeep/resources/{local}/make-available", {})
    assert st == 200, body
    assert _by_node(api, "tbkeep")[local] == ["DISKLESS", "DRBD_DISKLESS"]
    st, body = api.delete(f"/resource-definitions/tbkeep/resources/{local}", keep_tiebreaker="true")
    assert st == 200 and has(body, INFO | 10002) and has(body, INFO | 10006), body
    assert (
        api.get("/resource-definitions/tbkeep")[1]["props"]["DrbdOptions/auto-add-quorum-tiebreaker"]
        == "True"
    )
    assert _by_node(api, "tbkeep")[local] == TB_FLAGS
