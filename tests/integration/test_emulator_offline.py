"""The emulator as a real controller with a satellite offline: snapshots and definition deletes."""

from __future__ import annotations

import linstor
import pytest
import requests

from tests.integration.test_emulator_errors import ERR, WARN, Api, code, has


@pytest.fixture
def api(emulator) -> Api:  # type: ignore[no-untyped-def]
    return Api(emulator.url)


def _offline(api: Api, node: str, what: str = "offline") -> None:
    assert requests.post(f"{api.url}/_emu/nodes/{node}/{what}", timeout=10).status_code == 200


def _two_replicas(api: Api, rd: str) -> None:
    api.rd(rd, 4096)
    st, body = api.post(
        f"/resource-definitions/{rd}/autoplace",
        {"select_filter": {"place_count": 2, "node_name_list": ["node-b", "node-c"]}},
    )
    assert st == 201, body


def test_snapshot_skips_offline_nodes_with_a_warning(api: Api) -> None:
    _two_replicas(api, "snapoff")
    _offline(api, "node-c")
    try:
        st, body = api.post("/resource-definitions/snapoff/snapshots", {"name": "s1"})
        assert st == 201, body
        warning = next(e for e in body if code(e) == WARN)  # the controller's bare warning
        assert warning["message"] == (
            "Snapshot for resource 'snapoff' will not be created on node 'node-c' because that node is "
            "currently offline."
        )
        snap = api.get("/resource-definitions/snapoff/snapshots/s1")[1]
        assert snap["nodes"] == ["node-b"]
        # With no connected diskful node left there is nothing to snapshot (as the controller's source
        # has it: 302 "No resources found for snapshotting").
        _offline(api, "node-b")
        st, body = api.post("/resource-definitions/snapoff/snapshots", {"name": "s2"})
        assert st == 404 and code(body[0]) == ERR | 302
        assert body[0]["message"] == "No resources found for snapshotting"
        assert api.get("/resource-definitions/snapoff/snapshots/s2")[0] == 404
    finally:
        _offline(api, "node-b", "online")
        _offline(api, "node-c", "online")


def test_snapshot_of_a_definition_without_resources_is_302(api: Api) -> None:
    api.rd("snapnone", 4096)
    st, body = api.post("/resource-definitions/snapnone/snapshots", {"name": "s1"})
    assert st == 404 and code(body[0]) == ERR | 302


def test_snapshot_with_an_offline_node_through_python_linstor(emulator) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator.url)
    _two_replicas(api, "snappy")
    _offline(api, "node-b")
    with linstor.Linstor(f"linstor://127.0.0.1:{emulator.port}") as lin:
        replies = lin.snapshot_create(None, "snappy", "s1", async_msg=False)
        assert not any(r.is_error() for r in replies)
        assert any(r.is_warning() and "node-b" in r.message for r in replies)
    _offline(api, "node-b", "online")


def test_definition_delete_waits_for_an_offline_replica(api: Api) -> None:
    _two_replicas(api, "deloff")
    _offline(api, "node-c")
    st, body = api.delete("/resource-definitions/deloff")
    assert st == 200 and has(body, WARN | 1002), body
    rd = api.get("/resource-definitions/deloff")[1]
    assert "DELETE" in rd["flags"]
    assert "deloff" in [r["name"] for r in api.get("/resource-definitions")[1]]
    # The connected replica is gone; the offline one waits, flagged DELETE.
    resources = {
        r["node_name"]: r.get("flags", []) for r in api.get("/resource-definitions/deloff/resources")[1]
    }
    assert list(resources) == ["node-c"] and "DELETE" in resources["node-c"]
    # A create of the same name fails meanwhile, as on a controller.
    st, body = api.post("/resource-definitions", {"resource_definition": {"name": "deloff"}})
    assert st == 500 and code(body[0]) == ERR | 501
    _offline(api, "node-c", "online")
    assert api.get("/resource-definitions/deloff")[0] == 404
    api.rd("deloff", 4096)


def test_definition_delete_pending_through_python_linstor(emulator) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator.url)
    _two_replicas(api, "delpy")
    _offline(api, "node-b")
    with linstor.Linstor(f"linstor://127.0.0.1:{emulator.port}") as lin:
        replies = lin.resource_dfn_delete("delpy")
        assert not any(r.is_error() for r in replies)
        listed = lin.resource_dfn_list_raise().resource_definitions
        assert [d.flags for d in listed if d.name == "delpy"] == [["DELETE"]]
    _offline(api, "node-b", "online")
    assert api.get("/resource-definitions/delpy")[0] == 404
