"""The emulator answers as the real controller (linstor-server 1.34, REST 1.28) where clients meet it.

Request coercion as Jackson does it, spawn against volume groups, the resource-group view,
controller-version gating, the property whitelist, in-use reports that lag the host, and the
calls an ordinary ``linstor`` client session makes. Each behaviour is checked over raw HTTP and,
where python-linstor has a call for it, through python-linstor too.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import linstor
import pytest

from testkit.waiting import wait_until
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


# ---------------------------------------------------------------------- controller version (item 8)


def test_default_version_is_the_newest_modelled(plain: Api) -> None:
    st, body = plain.get("/controller/version")
    assert st == 200 and body["version"] == "1.34.0" and body["rest_api_version"] == "1.28.0"


def test_an_older_controller_lacks_the_newer_request_fields(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator_factory(extra_args=("--linstor-version", "1.29.1")).url)
    st, body = api.get("/controller/version")
    assert (body["version"], body["rest_api_version"]) == ("1.29.1", "1.23.0")
    assert api.post("/resource-groups", {"name": "old-rg", "select_filter": {"place_count": 1}})[0] == 201
    # Spawn's resource_definition_props exist since REST 1.22: known here.
    st, body = api.post(
        "/resource-groups/old-rg/spawn",
        {
            "resource_definition_name": "old1",
            "volume_sizes": [4096],
            "definitions_only": True,
            "resource_definition_props": {"Aux/x": "y"},
        },
    )
    assert st == 201, body
    assert api.get("/resource-definitions/old1")[1]["props"] == {"Aux/x": "y"}
    # snapshot_definition_props arrived with REST 1.24: an unknown field, a parse error.
    for path, snap in (
        ("/resource-definitions/old1/snapshots", {"name": "s1", "snapshot_definition_props": {"Aux/a": "b"}}),
        (
            "/actions/snapshot/multi",
            {"snapshots": [{"name": "s1", "resource_name": "old1", "snapshot_definition_props": {}}]},
        ),
    ):
        st, body = api.post(path, snap)
        assert st == 400 and body[0]["message"] == "Unable to parse input json.", body
    # Clone's override_props/delete_props arrived with 1.32.0: the old handler answered a bare 500.
    st, body = api.post(
        "/resource-definitions/old1/clone", {"name": "old2", "override_props": {"Aux/a": "b"}}
    )
    assert st == 500 and body == ""
    assert api.get("/resource-definitions/old2")[0] == 404
    # Without those fields the older endpoints work as before.
    st, body = api.post("/resource-definitions/old1/clone", {"name": "old3"})
    assert st == 201, body


def test_spawn_definition_props_need_rest_1_22(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator_factory(extra_args=("--linstor-version", "1.27.0")).url)
    assert api.get("/controller/version")[1]["rest_api_version"] == "1.21.0"
    assert api.post("/resource-groups", {"name": "rg27", "select_filter": {"place_count": 1}})[0] == 201
    st, body = api.post(
        "/resource-groups/rg27/spawn",
        {
            "resource_definition_name": "r27",
            "volume_sizes": [4096],
            "resource_definition_props": {"Aux/x": "y"},
        },
    )
    assert st == 400, body
    assert api.get("/resource-definitions/r27")[0] == 404


def test_python_linstor_sees_the_played_version(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator_factory(extra_args=("--linstor-version", "1.31.2")).url)
    lin = _lin(api)
    try:
        assert lin.controller_version().version == "1.31.2"
        assert lin.api_version_smaller("1.26.0") and not lin.api_version_smaller("1.25.0")
    finally:
        lin.disconnect()


@pytest.mark.parametrize("value", ["1.19.0", "2.0.0", "latest"])
def test_unmodelled_versions_are_refused_at_start(tmp_path, value: str) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "emulator", "serve", "--state-dir", str(tmp_path), "--linstor-version", value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--linstor-version" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------------- properties (item 9)


def test_drbd_options_are_checked_like_the_controller(plain: Api) -> None:
    plain.rd("props1")
    path = "/resource-definitions/props1"
    st, body = plain.put(
        path,
        {
            "override_props": {
                "DrbdOptions/Net/allow-two-primaries": "yes",
                "DrbdOptions/Resource/quorum": "majority",
                "DrbdOptions/PeerDevice/c-max-rate": "102400",
            }
        },
    )
    assert st == 200, body
    for key, value in (
        ("DrbdOptions/PeerDevice/c-max-rate", "100M"),  # DRBD's unit is KiB/s; no suffixes
        ("DrbdOptions/Net/max-buffers", "20"),  # below DRBD's 32
        ("DrbdOptions/Resource/quorum", "most"),
        ("DrbdOptions/Net/allow-three-primaries", "yes"),  # no such option
        ("FileSystem/Colour", "blue"),
        ("Aux/" + "k" * 253, "x"),  # 257 characters
    ):
        st, body = plain.put(path, {"override_props": {key: value}})
        assert st == 500 and code(body[0]) == ERR | 213, (key, body)
        assert key[:40] in body[0]["message"]
    # Nothing of the refused edits landed.
    assert plain.get(path)[1]["props"] == {
        "DrbdOptions/Net/allow-two-primaries": "yes",
        "DrbdOptions/Resource/quorum": "majority",
        "DrbdOptions/PeerDevice/c-max-rate": "102400",
    }
    # Groups check the same way when created.
    st, body = plain.post("/resource-groups", {"name": "bad-rg", "props": {"DrbdOptions/Net/protocol": "D"}})
    assert st == 500 and code(body[0]) == ERR | 213
    assert plain.get("/resource-groups/bad-rg")[0] == 404


def test_python_linstor_property_checks(plain: Api) -> None:
    lin = _lin(plain)
    try:
        assert _ok(lin.resource_dfn_create("props2"))
        assert _ok(lin.resource_dfn_modify("props2", {"DrbdOptions/Net/protocol": "C", "Aux/a": "b"}))
        replies = lin.resource_dfn_modify("props2", {"DrbdOptions/Net/ping-timeout": "301"})
        assert replies[0].is_error() and replies[0].ret_code & 0x7FFF == 213
        (rd,) = lin.resource_dfn_list_raise(filter_by_resource_definitions=["props2"]).resource_definitions
        assert rd.properties == {"DrbdOptions/Net/protocol": "C", "Aux/a": "b"}
    finally:
        lin.disconnect()


# ---------------------------------------------------------------------- a linstor client session (item 13)


def test_controller_properties_list_and_set(plain: Api) -> None:
    st, body = plain.get("/controller/properties")
    assert st == 200 and isinstance(body, dict)
    st, body = plain.post(
        "/controller/properties",
        {
            "override_props": {
                "DrbdOptions/Net/protocol": "C",
                "TcpPortAutoRange": "7000-7999",
                "Aux/site": "a",
            }
        },
    )
    assert st == 200, body
    listed = plain.get("/controller/properties")[1]
    assert uuid.UUID(listed.pop("Cluster/LocalID"))  # every controller has its cluster id
    assert listed == {
        "DrbdOptions/Net/protocol": "C",
        "TcpPortAutoRange": "7000-7999",
        "Aux/site": "a",
    }
    for bad in ({"TcpPortAutoRange": "lots"}, {"DrbdOptions/Net/protocol": "Z"}, {"Bogus": "1"}):
        st, body = plain.post("/controller/properties", {"override_props": bad})
        assert st == 500 and code(body[0]) == ERR | 213, body
    st, body = plain.post("/controller/properties", {"delete_props": ["Aux/site"]})
    assert st == 200, body
    assert "Aux/site" not in plain.get("/controller/properties")[1]


def test_node_create_registers_a_virtual_satellite(plain: Api) -> None:
    node = {
        "name": "node-x",
        "type": "Satellite",
        "net_interfaces": [
            {"name": "default", "address": "192.168.7.10", "satellite_encryption_type": "Plain"}
        ],
    }
    st, body = plain.post("/nodes", node)
    assert st == 201, body
    shown = plain.get("/nodes/node-x")[1]
    assert shown["type"] == "SATELLITE" and shown["connection_status"] == "ONLINE"
    netif = shown["net_interfaces"][0]
    assert (netif["address"], netif["satellite_port"], netif["satellite_encryption_type"]) == (
        "192.168.7.10",
        3366,
        "PLAIN",
    )
    pools = plain.get("/nodes/node-x/storage-pools")[1]
    assert [p["storage_pool_name"] for p in pools] == ["DfltDisklessStorPool"]
    st, body = plain.post("/nodes", node)
    assert st == 500 and code(body[0]) == ERR | 500
    for bad, expected in (
        ({**node, "name": "node-y", "net_interfaces": [{"name": "default", "address": "not-an-ip"}]}, 210),
        ({**node, "name": "node-y", "type": "STORAGE_BOX"}, 201),
        ({**node, "name": "node y"}, 200),
        ({**node, "name": "node-y", "net_interfaces": []}, 210),
    ):
        st, body = plain.post("/nodes", bad)
        assert st == 500 and code(body[0]) == ERR | expected, body
    assert [n["name"] for n in plain.get("/nodes")[1]].count("node-y") == 0


def test_every_node_has_its_own_address(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator_factory(nodes=("node-b", "node-c")).url)
    found = [n["net_interfaces"][0]["address"] for n in api.get("/nodes")[1]]
    assert len(found) == 3 and len(set(found)) == 3, found


def test_empty_lists_a_client_session_shows(plain: Api) -> None:
    assert plain.get("/physical-storage") == (200, [])
    assert plain.get("/error-reports") == (200, [])
    assert plain.get("/schedules") == (200, {})


def test_python_linstor_client_session(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator_factory(nodes=("node-b",)).url)
    lin = _lin(api)
    try:
        assert _ok(lin.controller_set_prop("DrbdOptions/Resource/quorum", "majority"))
        (ctrl,) = lin.controller_props()
        assert ctrl.properties["DrbdOptions/Resource/quorum"] == "majority"
        assert _ok(lin.node_create("node-z", "Satellite", "10.0.0.9"))
        nodes = {n.name: n for n in lin.node_list_raise().nodes}
        assert nodes["node-z"].net_interfaces[0].address == "10.0.0.9"
        assert len({n.net_interfaces[0].address for n in nodes.values()}) == len(nodes) == 3
        assert lin.physical_storage_list().physical_devices == []
        assert lin.error_report_list() == []
        assert lin.schedule_list().schedules == []
    finally:
        lin.disconnect()


# ---------------------------------------------------------------------- in-use reports lag (item 12)


def _in_use(api: Api, rd: str, node: str) -> bool:
    return bool(api.get(f"/resource-definitions/{rd}/resources/{node}")[1].get("state", {}).get("in_use"))


def test_in_use_is_the_satellites_last_report(root_loop: None, emulator_factory) -> None:  # type: ignore[no-untyped-def]
    """An open shows after the report lag; a delete right after the close is still refused."""
    api = Api(emulator_factory(extra_args=("--in-use-report-seconds", "4")).url)
    node = api.local()
    api.rd("lag1", 8192)
    st, body = api.post(f"/resource-definitions/lag1/resources/{node}", {"resource": {}})
    assert st == 201, body
    device = api.get(f"/resource-definitions/lag1/resources/{node}/volumes/0")[1]["device_path"]
    fd = os.open(device, os.O_RDWR | os.O_EXCL)
    try:
        # The satellite has not reported the open yet.
        assert not _in_use(api, "lag1", node)
        wait_until(
            lambda: _in_use(api, "lag1", node), timeout=30, interval=0.1, what="the report of the open"
        )
        st, body = api.delete("/resource-definitions/lag1")
        assert st == 500 and code(body[0]) == ERR | 997
    finally:
        os.close(fd)
    # Closed, but still reported open: the delete is refused as the controller would refuse it.
    st, body = api.delete("/resource-definitions/lag1")
    assert st == 500 and code(body[0]) == ERR | 997, body
    wait_until(
        lambda: not _in_use(api, "lag1", node), timeout=30, interval=0.1, what="the report of the close"
    )
    st, body = api.delete("/resource-definitions/lag1")
    assert st == 200, body


def test_python_linstor_sees_the_reported_in_use(root_loop: None, emulator_factory) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator_factory(extra_args=("--in-use-report-seconds", "4")).url)
    node = api.local()
    lin = _lin(api)
    try:
        assert _ok(lin.resource_dfn_create("lag2"))
        assert _ok(lin.volume_dfn_create("lag2", 8192))
        assert _ok(lin.resource_create([linstor.ResourceData(node, "lag2")]))

        def reported() -> bool | None:
            (state,) = lin.resource_list_raise(filter_by_resources=["lag2"]).resource_states
            return state.in_use  # type: ignore[no-any-return]

        device = api.get(f"/resource-definitions/lag2/resources/{node}/volumes/0")[1]["device_path"]
        fd = os.open(device, os.O_RDWR | os.O_EXCL)
        try:
            assert reported() is False
            wait_until(reported, timeout=30, interval=0.1, what="the report of the open")
        finally:
            os.close(fd)
        assert reported() is True
        wait_until(lambda: reported() is False, timeout=30, interval=0.1, what="the report of the close")
        assert _ok(lin.resource_dfn_delete("lag2"))
    finally:
        lin.disconnect()


# ---------------------------------------------------------------------- DRBD roles (RWX block)


def _role(api: Api, rd: str, node: str, role: str) -> tuple[int, Any]:
    r = api.s.post(f"{api.url}/_emu/resources/{rd}/{node}/role", json={"role": role}, timeout=30)
    return r.status_code, r.json()


def test_a_second_primary_needs_allow_two_primaries(root_loop: None, emulator_factory) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator_factory(nodes=("node-b", "node-c")).url)
    api.rd("roles", 8192)
    for node in ("node-b", "node-c"):
        st, body = api.post(f"/resource-definitions/roles/resources/{node}", {"resource": {}})
        assert st == 201, body
    assert _role(api, "roles", "node-b", "Primary")[0] == 200
    assert _in_use(api, "roles", "node-b") and not _in_use(api, "roles", "node-c")
    st, body = _role(api, "roles", "node-c", "Primary")
    assert st == 409 and "Multiple primaries not allowed" in body["error"]
    assert not _in_use(api, "roles", "node-c")
    # With the option on the definition (as LINBIT's driver sets it) the second writer gets in.
    st, body = api.put(
        "/resource-definitions/roles", {"override_props": {"DrbdOptions/Net/allow-two-primaries": "yes"}}
    )
    assert st == 200, body
    assert _role(api, "roles", "node-c", "Primary")[0] == 200
    assert _in_use(api, "roles", "node-b") and _in_use(api, "roles", "node-c")
    # One writer left, the option gone: the other node cannot come back as a second primary.
    assert _role(api, "roles", "node-b", "Secondary")[0] == 200
    st, body = api.put(
        "/resource-definitions/roles", {"delete_props": ["DrbdOptions/Net/allow-two-primaries"]}
    )
    assert st == 200, body
    assert _role(api, "roles", "node-b", "Primary")[0] == 409
    assert _role(api, "no-such", "node-b", "Primary")[0] == 404
    assert _role(api, "roles", "node-b", "Boss")[0] == 400
