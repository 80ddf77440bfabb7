"""The emulator as a real controller: commit-then-deploy failures and DRBD disk states.

Raw HTTP for exact statuses and ret codes, python-linstor for what a LINSTOR client sees.
"""

from __future__ import annotations

from typing import Any

import linstor
import pytest
import requests

from testkit.waiting import wait_until
from tests.integration.test_emulator_errors import ERR, Api, code, has

THICK = "ThickPool"


@pytest.fixture
def thick(root_loop, emulator_factory) -> Api:  # type: ignore[no-untyped-def]
    emu = emulator_factory(
        nodes=("node-b", "node-c"), extra_args=("--thick-pool", THICK, "--sync-seconds", "2")
    )
    return Api(emu.url)


@pytest.fixture
def api(emulator) -> Api:  # type: ignore[no-untyped-def]
    return Api(emulator.url)


def _control(api: Api, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{api.url}/_emu/{path}", json=body, timeout=10)


def _disk_states(api: Api, rd: str) -> dict[str, str | None]:
    view = api.get("/view/resources", resources=rd)[1]
    return {r["node_name"]: (r["volumes"][0].get("state") or {}).get("disk_state") for r in view}


def _wait_up_to_date(api: Api, rd: str, timeout: float = 30) -> None:
    wait_until(
        lambda: not set(_disk_states(api, rd).values()) - {"UpToDate", "Diskless"},
        timeout=timeout,
        interval=0.2,
        what=f"every replica of {rd} UpToDate",
    )


# ---------------------------------------------------------------------- commit, then deploy


def test_a_failed_deployment_leaves_the_definition_and_its_resources(api: Api) -> None:
    st, body = api.post("/resource-groups", {"name": "dep-rg", "select_filter": {"place_count": 2}})
    assert st == 201, body
    assert _control(api, "deploy-failures", {"count": 1, "node": "node-c"}).status_code == 200
    st, body = api.post(
        "/resource-groups/dep-rg/spawn",
        {
            "resource_definition_name": "dep1",
            "volume_sizes": [4096],
            "select_filter": {"node_name_list": ["node-b", "node-c"]},
        },
    )
    assert st == 500 and has(body, ERR | 998), body
    assert "node-c" in next(e for e in body if code(e) == ERR | 998)["message"]
    # Committed: the definition and both resources stay; the failed one reports no disk state.
    assert api.get("/resource-definitions/dep1")[0] == 200
    states = _disk_states(api, "dep1")
    assert states["node-b"] == "UpToDate" and states["node-c"] is None
    # The rule was used up: the next spawn deploys normally.
    st, body = api.post(
        "/resource-groups/dep-rg/spawn",
        {
            "resource_definition_name": "dep2",
            "volume_sizes": [4096],
            "select_filter": {"node_name_list": ["node-b", "node-c"]},
        },
    )
    assert st == 201, body


def test_not_enough_nodes_still_leaves_nothing(api: Api) -> None:
    st, body = api.post("/resource-groups", {"name": "dep-rg5", "select_filter": {"place_count": 5}})
    assert st == 201, body
    st, body = api.post(
        "/resource-groups/dep-rg5/spawn", {"resource_definition_name": "dep5", "volume_sizes": [4096]}
    )
    assert st == 500 and code(body[0]) == ERR | 996
    assert api.get("/resource-definitions/dep5")[0] == 404


def test_a_failed_autoplace_deployment_through_python_linstor(emulator) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator.url)
    assert _control(api, "deploy-failures", {"count": 1}).status_code == 200
    with linstor.Linstor(f"linstor://127.0.0.1:{emulator.port}") as lin:
        lin.resource_dfn_create("deppy")
        lin.volume_dfn_create("deppy", 4096)
        replies = lin.resource_auto_place("deppy", 1)
        assert any(r.is_error() for r in replies)
        assert len(lin.resource_list_raise(filter_by_resources=["deppy"]).resources) == 1


def test_deploy_failure_rules_are_checked_and_cleared(api: Api) -> None:
    assert _control(api, "deploy-failures", {"count": 0}).status_code == 400
    assert _control(api, "deploy-failures", {"count": -1}).status_code == 200
    assert requests.delete(f"{api.url}/_emu/deploy-failures", timeout=10).json() == {"deploy_failures": []}
    api.rd("depok", 4096)
    st, body = api.post("/resource-definitions/depok/autoplace", {"select_filter": {"place_count": 1}})
    assert st == 201, body


# ---------------------------------------------------------------------- disk states


def test_thick_replicas_sync_before_resize_snapshot_and_clone(thick: Api) -> None:
    pools = thick.get("/view/storage-pools", storage_pools=THICK)[1]
    assert sorted(p["provider_kind"] for p in pools) == ["FILE", "FILE", "FILE"]
    thick.rd("thk", 8192)
    st, body = thick.post(
        "/resource-definitions/thk/autoplace",
        {"select_filter": {"place_count": 2, "storage_pool": THICK, "node_name_list": ["node-b", "node-c"]}},
    )
    assert st == 201, body
    states = _disk_states(thick, "thk")
    assert states["node-b"] == states["node-c"] == "Inconsistent"
    st, body = thick.put("/resource-definitions/thk/volume-definitions/0", {"size_kib": 16384})
    assert st == 500 and code(body[0]) == ERR | 974, body
    assert "node-b" in body[0]["details"] and "Inconsistent" in body[0]["details"]
    st, body = thick.post("/resource-definitions/thk/snapshots", {"name": "s1"})
    assert st == 500 and code(body[0]) == ERR | 979, body
    st, body = thick.post("/resource-definitions/thk/clone", {"name": "thk-clone"})
    assert st == 500 and code((body.get("messages") if isinstance(body, dict) else body)[0]) == ERR | 974
    assert thick.get("/resource-definitions/thk-clone")[0] == 404
    assert thick.get("/resource-definitions/thk/volume-definitions/0")[1]["size_kib"] == 8192
    _wait_up_to_date(thick, "thk")
    st, body = thick.put("/resource-definitions/thk/volume-definitions/0", {"size_kib": 16384})
    assert st == 200, body
    st, body = thick.post("/resource-definitions/thk/snapshots", {"name": "s1"})
    assert st == 201, body


def test_thin_replicas_skip_the_initial_sync(thick: Api) -> None:
    thick.rd("thn", 8192)
    st, body = thick.post("/resource-definitions/thn/autoplace", {"select_filter": {"place_count": 2}})
    assert st == 201, body
    assert set(_disk_states(thick, "thn").values()) <= {"UpToDate", "Diskless"}
    st, body = thick.post("/resource-definitions/thn/snapshots", {"name": "s1"})
    assert st == 201, body


def test_held_states_and_offline_nodes(api: Api) -> None:
    api.rd("held", 4096)
    st, body = api.post(
        "/resource-definitions/held/autoplace",
        {"select_filter": {"place_count": 2, "node_name_list": ["node-b", "node-c"]}},
    )
    assert st == 201, body
    assert _control(api, "resources/held/node-b/disk_state", {"state": "Outdated"}).status_code == 200
    assert _disk_states(api, "held")["node-b"] == "Outdated"
    st, body = api.post("/resource-definitions/held/snapshots", {"name": "s1"})
    assert st == 500 and code(body[0]) == ERR | 979
    assert _control(api, "resources/held/node-b/disk_state", {"state": "Bogus"}).status_code == 400
    assert _control(api, "resources/held/node-b/disk_state", {"state": None}).status_code == 200
    assert _disk_states(api, "held")["node-b"] == "UpToDate"
    assert _control(api, "nodes/node-c/offline", {}).status_code == 200
    assert _disk_states(api, "held")["node-c"] is None  # unknown: the controller has no report
    assert _control(api, "nodes/node-c/online", {}).status_code == 200


def test_disk_states_through_python_linstor(root_loop, emulator_factory) -> None:  # type: ignore[no-untyped-def]
    emu = emulator_factory(nodes=("node-b",), extra_args=("--thick-pool", THICK, "--sync-seconds", "30"))
    with linstor.Linstor(f"linstor://127.0.0.1:{emu.port}") as lin:
        lin.resource_dfn_create("thpy")
        lin.volume_dfn_create("thpy", 4096)
        assert not any(r.is_error() for r in lin.resource_auto_place("thpy", 2, storage_pool=THICK))
        states = {
            r.node_name: r.volumes[0].state.disk_state
            for r in lin.resource_list_raise(filter_by_resources=["thpy"]).resources
        }
        assert set(states.values()) == {"Inconsistent"}
        replies = lin.volume_dfn_modify("thpy", 0, size=8 * 1024 * 1024)
        assert replies[0].is_error() and replies[0].ret_code & 0x7FFF == 974
        replies = lin.snapshot_create(None, "thpy", "s1", async_msg=False)
        assert replies[0].is_error() and replies[0].ret_code & 0x7FFF == 979
