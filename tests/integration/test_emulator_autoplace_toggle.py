"""The emulator's autoplace gives a disk to a DRBD-diskless resource, as the controller does.

LINSTOR's autoplace skips the "already placed" check for nodes whose resource is diskless
and toggles that resource to diskful when it picks the node (CtrlRscAutoPlaceApiCallHandler,
CtrlRscCrtApiHelper). ModifyVolume adds replicas through autoplace, so a node that uses a
volume disklessly can become one of its replicas.
"""

from __future__ import annotations

from tests.integration.test_emulator_errors import Api


def test_autoplace_gives_the_diskless_resource_a_disk(emulator) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator.url)
    api.rd("toggled", 8192)
    assert api.post("/resource-definitions/toggled/resources/node-b", {"resource": {}})[0] == 201
    client = {"resource": {"flags": ["DRBD_DISKLESS"], "props": {"Aux/mark": "kept"}}}
    assert api.post("/resource-definitions/toggled/resources/node-c", client)[0] == 201
    before = api.get("/resource-definitions/toggled/resources/node-c")[1]
    assert "DRBD_DISKLESS" in before["flags"]

    st, body = api.post(
        "/resource-definitions/toggled/autoplace",
        {"select_filter": {"place_count": 2, "node_name_list": ["node-c"]}},
    )
    assert st == 201, body
    after = api.get("/resource-definitions/toggled/resources/node-c")[1]
    assert not {"DISKLESS", "DRBD_DISKLESS"} & set(after.get("flags") or ())
    assert after["uuid"] == before["uuid"] and after["props"]["Aux/mark"] == "kept"
    listed = api.get("/resource-definitions/toggled/resources")[1]
    assert diskful(listed) == ["node-b", "node-c"]  # no third replica
    # two diskful replicas: the controller adds its quorum tie-breaker, and nothing else
    assert all("TIE_BREAKER" in r["flags"] for r in listed if r["node_name"] not in ("node-b", "node-c"))

    # the count is reached: a repeat places nothing
    st, body = api.post("/resource-definitions/toggled/autoplace", {"select_filter": {"place_count": 2}})
    again = api.get("/resource-definitions/toggled/resources")[1]
    assert st == 201 and diskful(again) == ["node-b", "node-c"] and len(again) == len(listed)


def diskful(resources: list[dict]) -> list[str]:
    return sorted(
        r["node_name"]
        for r in resources
        if not {"DISKLESS", "DRBD_DISKLESS", "TIE_BREAKER"} & set(r.get("flags") or ())
    )
