"""Every error case of the emulator: ret code (masked compare) and the HTTP status LINSTOR gives.

``requests`` is used instead of a LINSTOR client so exact statuses and raw bodies are seen.
Tests that create volumes need loop devices (the ``emulator`` fixture requires them); pure
REST checks (names, parsing, groups) run on an emulator without any storage work.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from plugin.linstor.retcodes import MASK_BITS_CODE
from plugin.linstor.retcodes import MASK_ERROR as ERR
from plugin.linstor.retcodes import MASK_INFO as INFO
from plugin.linstor.retcodes import MASK_SEVERITY_AND_CODE as MASK
from plugin.linstor.retcodes import MASK_WARN as WARN
from testkit.waiting import wait_until
from tests.blockio import loops_backed_under
from tests.conftest import REPO_ROOT, EmulatorProcess, require


class Api:
    """A minimal raw client: (status, parsed body) for every call."""

    def __init__(self, url: str) -> None:
        self.base = url + "/v1"
        self.url = url
        self.s = requests.Session()

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> tuple[int, Any]:
        r = self.s.request(method, self.base + path, json=body, params=params or None, timeout=60)
        ctype = r.headers.get("Content-Type", "")
        return r.status_code, (r.json() if ctype.startswith("application/json") else r.text)

    def get(self, path: str, **params: Any) -> tuple[int, Any]:
        return self.call("GET", path, **params)

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return self.call("POST", path, body if body is not None else {})

    def put(self, path: str, body: Any) -> tuple[int, Any]:
        return self.call("PUT", path, body)

    def delete(self, path: str, **params: Any) -> tuple[int, Any]:
        return self.call("DELETE", path, **params)

    def rd(self, name: str, size_kib: int | None = None, **rd: Any) -> None:
        st, body = self.post("/resource-definitions", {"resource_definition": {"name": name, **rd}})
        assert st == 201, body
        if size_kib is not None:
            st, body = self.post(
                f"/resource-definitions/{name}/volume-definitions",
                {"volume_definition": {"size_kib": size_kib}},
            )
            assert st == 200, body

    def local(self) -> str:
        return next(n["name"] for n in self.get("/nodes")[1] if n["type"] == "COMBINED")


def code(entry: dict[str, Any]) -> int:
    return entry["ret_code"] & MASK


def has(entries: list[dict[str, Any]], expected: int) -> bool:
    return any(code(e) == expected for e in entries)


@pytest.fixture
def plain(emulator_factory) -> Api:  # type: ignore[no-untyped-def]
    """An emulator (local node only) for checks that never touch storage."""
    return Api(emulator_factory().url)


@pytest.fixture
def api(emulator) -> Api:  # type: ignore[no-untyped-def]
    """Local node plus node-b and node-c, with real loop devices."""
    return Api(emulator.url)


# ---------------------------------------------------------------------- names (checklist 8)


@pytest.mark.parametrize(
    "name",
    ["a", "9a", "_9", "all", "ALL", "proxy", "x" * 49, "bad name", "bad.name", "é" * 2],
)
def test_invalid_resource_names_are_rejected(plain: Api, name: str) -> None:
    st, body = plain.post("/resource-definitions", {"resource_definition": {"name": name}})
    assert st == 500
    assert code(body[0]) == ERR | 202
    assert plain.get("/resource-definitions")[1] == []


def test_valid_names_and_case_handling(plain: Api) -> None:
    for name in ("ab", "_a", "x" * 48, "pvc-0c7e2d0e-7b6a-4b7e-9d5c-0123456789ab"):
        assert plain.post("/resource-definitions", {"resource_definition": {"name": name}})[0] == 201
    plain.rd("foo")
    st, body = plain.post("/resource-definitions", {"resource_definition": {"name": "Foo"}})
    assert st == 500 and code(body[0]) == ERR | 501
    st, body = plain.get("/resource-definitions/FOO")
    assert st == 200 and body["name"] == "foo"
    names = [r["name"] for r in plain.get("/resource-definitions")[1]]
    assert names == sorted(names, key=str.upper)


def test_invalid_group_and_snapshot_names(plain: Api) -> None:
    st, body = plain.post("/resource-groups", {"name": "1x"})
    assert st == 500 and code(body[0]) == ERR | 237
    st, body = plain.get("/resource-groups/x")
    assert st == 500 and code(body[0]) == ERR | 237
    st, body = plain.get("/nodes/-bad-")
    assert st == 500 and code(body[0]) == ERR | 200


# ---------------------------------------------------------------------- not found, exists, idempotency


def test_not_found_and_delete_of_missing_things(plain: Api) -> None:
    st, body = plain.get("/resource-definitions/pvc-9")
    assert st == 404 and body[0]["ret_code"] == -4611686018427387603
    assert body[0]["message"] == "Resource definition 'pvc-9' not found."
    st, body = plain.delete("/resource-definitions/pvc-9")
    assert st == 200 and code(body[0]) == WARN | 3000
    assert body[0]["ret_code"] == -9223372036800771144
    for path in (
        "/resource-groups/nope",
        "/resource-definitions/nope/resources/nowhere",
        "/resource-definitions/nope/volume-definitions/0",
        "/resource-definitions/nope/snapshots/s1",
    ):
        st, body = plain.delete(path)
        assert st == 200 and code(body[0]) == WARN | 3000, path
    assert plain.get("/nodes/nowhere")[0] == 404
    assert code(plain.get("/nodes/nowhere")[1][0]) == ERR | 300
    assert code(plain.get("/resource-groups/nope")[1][0]) == ERR | 317
    plain.rd("some")
    st, body = plain.get("/resource-definitions/some/volume-definitions/3")
    assert st == 404 and code(body[0]) == ERR | 303
    st, body = plain.get(f"/resource-definitions/some/resources/{plain.local()}")
    assert st == 404 and code(body[0]) == ERR | 302
    st, body = plain.get(f"/resource-definitions/some/resources/{plain.local()}/volumes")
    assert st == 404 and code(body[0]) == ERR | 302
    st, body = plain.get("/resource-definitions/some/snapshots/s1")
    assert st == 404 and code(body[0]) == ERR | 313
    assert plain.get("/resource-definitions/some/resources") == (200, [])


def test_volume_routes_answer_302_whatever_is_missing(plain: Api) -> None:
    """As the controller answers them from its filtered volume list: no 301 for a missing definition."""
    local = plain.local()
    plain.rd("bare")  # no volume definitions, so its resource has no volumes
    st, body = plain.post(f"/resource-definitions/bare/resources/{local}", {"resource": {}})
    assert st == 201, body
    assert plain.get(f"/resource-definitions/bare/resources/{local}")[0] == 200
    for rd in ("nope", "bare"):
        for path in (
            f"/resource-definitions/{rd}/resources/{local}/volumes",
            f"/resource-definitions/{rd}/resources/{local}/volumes/0",
        ):
            st, body = plain.get(path)
            assert st == 404 and code(body[0]) == ERR | 302, path
            assert body[0]["message"] == f"Resource '{rd}' not found on node '{local}'."


def test_unknown_group_on_create_is_404(plain: Api) -> None:
    st, body = plain.post(
        "/resource-definitions", {"resource_definition": {"name": "r1", "resource_group_name": "nope"}}
    )
    assert st == 404 and code(body[0]) == ERR | 317
    assert plain.get("/resource-definitions")[1] == []


def test_resource_group_rules(plain: Api) -> None:
    assert plain.post("/resource-groups", {"name": "sc"})[0] == 201
    st, body = plain.get("/resource-groups/sc")
    assert body["select_filter"]["place_count"] == 2
    st, body = plain.post("/resource-groups", {"name": "SC"})
    assert st == 500 and code(body[0]) == ERR | 522
    st, body = plain.post("/resource-groups", {"name": "zero", "select_filter": {"place_count": 0}})
    assert st == 500 and code(body[0]) == ERR | 219
    st, body = plain.put("/resource-groups/sc", {"select_filter": {"place_count": 0}})
    assert st == 500 and code(body[0]) == ERR | 219
    plain.rd("member", resource_group_name="sc")
    st, body = plain.delete("/resource-groups/sc")
    assert st == 500 and code(body[0]) == ERR | 501
    assert plain.delete("/resource-definitions/member")[0] == 200
    assert plain.delete("/resource-groups/sc")[0] == 200


def test_volume_definition_rules(plain: Api) -> None:
    plain.rd("vd-rules")
    path = "/resource-definitions/vd-rules/volume-definitions"
    for size in (0, 3, -5, (1 << 40) + 1):
        st, body = plain.post(path, {"volume_definition": {"size_kib": size}})
        assert st == 500 and code(body[0]) == ERR | 206, size
    st, body = plain.post(path, {"volume_definition": {"volume_number": 0, "size_kib": 4096}})
    assert st == 200, body
    st, body = plain.post(path, {"volume_definition": {"volume_number": 0, "size_kib": 4096}})
    assert st == 500 and code(body[0]) == ERR | 503
    st, body = plain.put(path + "/0", {"size_kib": 4096})
    assert st == 200 and has(body, WARN | 1023)
    # DRBD cannot shrink (the default, DRBD-shaped mode).
    st, body = plain.put(path + "/0", {"size_kib": 2048})
    assert st == 500 and code(body[0]) == ERR | 206
    assert plain.get(path + "/0")[1]["size_kib"] == 4096


def test_property_whitelist(plain: Api) -> None:
    st, body = plain.post(
        "/resource-definitions", {"resource_definition": {"name": "p1", "props": {"Bogus": "1"}}}
    )
    assert st == 500 and code(body[0]) == ERR | 213
    plain.rd("p2")
    st, body = plain.put(
        "/resource-definitions/p2", {"override_props": {"Aux/anything": "ok", "FileSystem/Type": "ext4"}}
    )
    assert st == 200, body
    st, body = plain.put("/resource-definitions/p2", {"override_props": {"FileSystem/Type": "ntfs"}})
    assert st == 500 and code(body[0]) == ERR | 213
    st, body = plain.put("/resource-definitions/p2", {"override_props": {"NotAllowed/Key": "x"}})
    assert st == 500 and code(body[0]) == ERR | 213
    assert plain.get("/resource-definitions/p2")[1]["props"] == {
        "Aux/anything": "ok",
        "FileSystem/Type": "ext4",
    }


# ---------------------------------------------------------------------- parsing and HTTP details


def test_malformed_json_wrong_types_and_unknown_fields(plain: Api) -> None:
    for raw in (b"{", b"[1,", b"\xff\xfe", b'"just a string"'):
        r = requests.post(plain.base + "/resource-definitions", data=raw, timeout=10)
        assert r.status_code == 400, raw
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.json()[0]["ret_code"] == -3458764513820540931
    bad_bodies = [
        {"resource_definition": {"name": [5]}},  # a bare 5 is read as "5", as Jackson does
        {"resource_definition": "x"},
        {"resource_definition": {"name": "ok", "surprise": 1}},
        {"unexpected": True},
    ]
    for b in bad_bodies:
        st, body = plain.post("/resource-definitions", b)
        assert st == 400 and body[0]["ret_code"] == -3458764513820540931, b
    plain.rd("types")
    st, body = plain.post(
        "/resource-definitions/types/volume-definitions", {"volume_definition": {"size_kib": "big"}}
    )
    assert st == 400
    st, body = plain.post(
        "/resource-definitions/types/volume-definitions", {"volume_definition": {"size_kib": True}}
    )
    assert st == 400
    assert plain.get("/resource-definitions")[1][0]["name"] == "types"
    assert plain.get("/resource-definitions/types/volume-definitions") == (200, [])


def test_requests_without_content_type_work(plain: Api) -> None:
    body = json.dumps({"resource_definition": {"name": "noctype"}}).encode()
    with socket.create_connection(("127.0.0.1", int(plain.url.rsplit(":", 1)[1])), timeout=10) as s:
        s.sendall(
            b"POST /v1/resource-definitions HTTP/1.1\r\nHost: x\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 201")
    assert plain.get("/resource-definitions/noctype")[0] == 200


def test_unknown_path_and_wrong_method(plain: Api) -> None:
    r = requests.get(plain.base + "/no/such/thing", timeout=10)
    assert r.status_code == 404
    assert "Traceback" not in r.text and "<html" not in r.text.lower()
    r = requests.delete(plain.base + "/controller/version", timeout=10)
    assert r.status_code == 405
    assert r.headers["Content-Type"].startswith("application/json")


def test_empty_fields_omitted_zero_and_false_kept(plain: Api) -> None:
    plain.rd("shape", 4096)
    rd = plain.get("/resource-definitions/shape")[1]
    assert "external_name" not in rd and "flags" not in rd and "props" not in rd
    assert "volume_definitions" not in rd
    listed = plain.get("/resource-definitions", with_volume_definitions="true")[1][0]
    vd = listed["volume_definitions"][0]
    assert vd["volume_number"] == 0 and "flags" not in vd and "props" not in vd
    rg = plain.get("/resource-groups/DfltRscGrp")[1]
    assert rg["select_filter"]["diskless_on_remaining"] is False
    assert "description" not in rg and "props" not in rg


def test_limit_offset_and_filters(plain: Api) -> None:
    for name in ("b-one", "A-two", "c-three", "D-four"):
        plain.rd(name)
    names = [r["name"] for r in plain.get("/resource-definitions")[1]]
    assert names == ["A-two", "b-one", "c-three", "D-four"]
    page = [r["name"] for r in plain.get("/resource-definitions", limit=2, offset=1)[1]]
    assert page == ["b-one", "c-three"]
    assert len(plain.get("/resource-definitions", limit=0, offset=3)[1]) == 4
    assert len(plain.get("/resource-definitions", offset=3)[1]) == 4
    picked = requests.get(
        plain.base + "/resource-definitions",
        params=[("resource_definitions", "a-TWO"), ("resource_definitions", "d-four")],
    ).json()
    assert [r["name"] for r in picked] == ["A-two", "D-four"]
    st, body = plain.get("/resource-definitions", resource_definitions="9bad")
    assert st == 500 and code(body[0]) == ERR | 202
    plain.put("/resource-definitions/b-one", {"override_props": {"Aux/zone": "x", "Aux/rack": "1"}})
    plain.put("/resource-definitions/c-three", {"override_props": {"Aux/zone": "x"}})
    both = requests.get(
        plain.base + "/resource-definitions", params=[("props", "Aux/zone=x"), ("props", "Aux/rack")]
    ).json()
    assert [r["name"] for r in both] == ["b-one"]


def test_autoplace_and_spawn_with_default_place_count_on_one_node(root_loop, emulator_factory) -> None:  # type: ignore[no-untyped-def]
    one = Api(emulator_factory().url)
    one.rd("solo", 4096)
    st, body = one.post("/resource-definitions/solo/autoplace", {})
    assert st == 500 and code(body[0]) == ERR | 996
    assert body[0]["ret_code"] == -4611686018407201820
    assert one.get("/resource-definitions/solo/resources") == (200, [])
    st, body = one.post(
        "/resource-groups/DfltRscGrp/spawn", {"resource_definition_name": "spawned", "volume_sizes": [4096]}
    )
    assert st == 500 and code(body[0]) == ERR | 996
    assert one.get("/resource-definitions/spawned")[0] == 404
    st, body = one.post("/resource-definitions/solo/autoplace", {"select_filter": {"place_count": 1}})
    assert st == 201, body
    st, body = one.post("/resource-definitions/solo/autoplace", {"select_filter": {"place_count": 1}})
    assert st == 201 and has(body, WARN | 1006)
    st, body = one.post(
        "/resource-groups/DfltRscGrp/spawn", {"resource_definition_name": "solo", "volume_sizes": [4096]}
    )
    assert st == 500 and code(body[0]) == ERR | 501


# ---------------------------------------------------------------------- resources and devices


def test_success_statuses_and_device_after_create(api: Api) -> None:
    local = api.local()
    api.rd("dev1", 8192)
    st, body = api.post(f"/resource-definitions/dev1/resources/{local}", {"resource": {}})
    assert st == 201, body
    assert body[1]["ret_code"] == 20185089
    dev = api.get(f"/resource-definitions/dev1/resources/{local}/volumes/0")[1]["device_path"]
    assert Path(dev).is_block_device()
    st, body = api.post(f"/resource-definitions/dev1/resources/{local}", {"resource": {}})
    assert st == 201 and code(body[0]) == INFO | 10008
    st, body = api.post("/resource-definitions/dev1/resources/node-b/make-available", {})
    assert st == 200
    st, body = api.post("/resource-definitions/dev1/resources/node-b/make-available", {})
    assert st == 200 and body[0]["message"] == "Resource already deployed as requested"
    b = api.get("/resource-definitions/dev1/resources/node-b")[1]
    assert (
        b["flags"] == ["DISKLESS", "DRBD_DISKLESS"] and b["props"]["StorPoolName"] == "DfltDisklessStorPool"
    )
    st, body = api.post("/resource-definitions/dev1/resources/nowhere", {"resource": {}})
    assert st == 404 and code(body[0]) == ERR | 300
    st, body = api.get("/resource-definitions/dev1/resources/node-b/volumes/7")
    assert st == 404 and code(body[0]) == ERR | 304


def test_last_diskful_with_diskless_attached_is_refused(api: Api) -> None:
    local = api.local()
    api.rd("last", 8192)
    api.post(f"/resource-definitions/last/resources/{local}", {"resource": {}})
    api.post("/resource-definitions/last/resources/node-b", {"resource": {"flags": ["DRBD_DISKLESS"]}})
    st, body = api.delete(f"/resource-definitions/last/resources/{local}")
    assert st == 500 and code(body[0]) == ERR | 997
    assert api.delete("/resource-definitions/last/resources/node-b")[0] == 200
    st, body = api.delete(f"/resource-definitions/last/resources/{local}")
    assert st == 200 and body[-1]["ret_code"] == 53739522


def test_mounted_resource_cannot_be_deleted(api: Api, tmp_path: Path) -> None:
    local = api.local()
    api.rd("mnt", props={"FileSystem/Type": "ext4"})
    api.post("/resource-definitions/mnt/volume-definitions", {"volume_definition": {"size_kib": 32768}})
    api.post(f"/resource-definitions/mnt/resources/{local}", {"resource": {}})
    dev = api.get(f"/resource-definitions/mnt/resources/{local}/volumes/0")[1]["device_path"]
    fs = subprocess.run(["blkid", "-o", "value", "-s", "TYPE", dev], capture_output=True, text=True)
    assert fs.stdout.strip() == "ext4", "FileSystem/Type was not applied at creation"
    target = tmp_path / "m"
    target.mkdir()
    subprocess.run(["mount", dev, str(target)], check=True)
    rsc = f"/resource-definitions/mnt/resources/{local}"
    try:
        # The controller knows of the mount once the satellite has reported it.
        _wait_for(lambda: api.get(rsc)[1]["state"] == {"in_use": True}, "the mount was never reported")
        st, body = api.delete(rsc)
        assert st == 500 and code(body[0]) == ERR | 997
        st, body = api.delete("/resource-definitions/mnt")
        assert st == 500 and code(body[0]) == ERR | 997
        assert api.get(rsc)[1]["state"] == {"in_use": True}
    finally:
        subprocess.run(["umount", str(target)], check=True)
    _wait_for(lambda: api.get(rsc)[1]["state"] == {"in_use": False}, "the unmount was never reported")
    assert api.delete(rsc)[0] == 200


def _wait_for(check: Any, what: str, seconds: float = 30.0) -> None:
    wait_until(check, timeout=seconds, interval=0.1, what=what)


def test_in_use_override_from_control_api(api: Api) -> None:
    api.rd("busy", 4096)
    api.post(
        "/resource-definitions/busy/autoplace",
        {"select_filter": {"place_count": 1, "node_name_list": ["node-c"]}},
    )
    r = requests.post(api.url + "/_emu/resources/busy/node-c/in_use", json={"in_use": True}, timeout=10)
    assert r.status_code == 200
    st, body = api.delete("/resource-definitions/busy/resources/node-c")
    assert st == 500 and code(body[0]) == ERR | 997
    requests.post(api.url + "/_emu/resources/busy/node-c/in_use", json={"in_use": None}, timeout=10)
    assert api.delete("/resource-definitions/busy/resources/node-c")[0] == 200


def test_an_open_resource_keeps_its_definition_and_volume_definition(api: Api) -> None:
    api.rd("held", 4096)
    api.post(
        "/resource-definitions/held/autoplace",
        {"select_filter": {"place_count": 1, "node_name_list": ["node-c"]}},
    )
    busy = api.url + "/_emu/resources/held/node-c/in_use"
    assert requests.post(busy, json={"in_use": True}, timeout=10).status_code == 200
    try:
        st, body = api.delete("/resource-definitions/held")
        assert st == 500 and code(body[0]) == ERR | 997
        assert body[0]["message"] == "Resource 'held' on node 'node-c' is still in use."
        assert body[0]["correction"] == "Un-mount resource 'held' on the node 'node-c'."
        assert body[0]["obj_refs"] == {"RscDfn": "held", "Node": "node-c"}
        st, body = api.delete("/resource-definitions/held/volume-definitions/0")
        assert st == 500 and code(body[0]) == ERR | 997
        assert body[0]["message"] == "Resource 'held' on node 'node-c' is still in use."
        assert not body[0].get("correction")  # LINSTOR names no correction for a volume definition
        assert body[0]["obj_refs"] == {"RscDfn": "held", "VlmNr": "0"}
    finally:
        requests.post(busy, json={"in_use": None}, timeout=10)
    assert api.delete("/resource-definitions/held")[0] == 200


def test_no_space_codes(api: Api) -> None:
    local = api.local()
    for node in (local, "node-b", "node-c"):
        r = requests.post(
            api.url + f"/_emu/pools/{node}/DfltStorPool/capacity",
            json={"total_kib": 10240, "free_kib": 10240},
        )
        assert r.status_code == 200
    api.rd("huge", 1024 * 1024)
    st, body = api.post("/resource-definitions/huge/autoplace", {"select_filter": {"place_count": 1}})
    assert st == 500 and code(body[0]) == ERR | 996
    st, body = api.post(f"/resource-definitions/huge/resources/{local}", {"resource": {}})
    assert st == 500 and code(body[0]) == ERR | 206
    assert api.get("/resource-definitions/huge/resources") == (200, [])
    pools = api.get("/view/storage-pools", storage_pools="DfltStorPool")[1]
    assert {p["free_capacity"] for p in pools} == {10240}


def test_storage_pool_create_and_delete(api: Api) -> None:
    st, body = api.post(
        "/nodes/node-b/storage-pools", {"storage_pool_name": "fast", "provider_kind": "FILE_THIN"}
    )
    assert st == 201, body
    st, body = api.post(
        "/nodes/node-b/storage-pools", {"storage_pool_name": "FAST", "provider_kind": "FILE_THIN"}
    )
    assert st == 500 and code(body[0]) == ERR | 510
    st, body = api.post("/nodes/node-b/storage-pools", {"storage_pool_name": "zfs1", "provider_kind": "ZFS"})
    assert st == 500 and code(body[0]) == ERR | 989
    st, body = api.post("/nodes/nowhere/storage-pools", {"storage_pool_name": "x1", "provider_kind": "FILE"})
    assert st == 404 and code(body[0]) == ERR | 300
    pool = api.get("/nodes/node-b/storage-pools/fast")[1]
    assert pool["provider_kind"] == "FILE_THIN" and pool["props"]["StorDriver/StorPoolName"].endswith("fast")
    api.rd("infast", 4096)
    st, body = api.post(
        "/resource-definitions/infast/autoplace",
        {"select_filter": {"place_count": 1, "storage_pool": "fast"}},
    )
    assert st == 201, body
    assert api.get("/resource-definitions/infast/resources/node-b")[1]["props"]["StorPoolName"] == "fast"
    st, body = api.delete("/nodes/node-b/storage-pools/fast")
    assert st == 500 and code(body[0]) == ERR | 997
    api.delete("/resource-definitions/infast")
    assert api.delete("/nodes/node-b/storage-pools/fast")[0] == 200
    assert api.get("/nodes/node-b/storage-pools/fast")[0] == 404


def test_pool_not_found_on_manual_create(api: Api) -> None:
    api.rd("pooled", 4096)
    st, body = api.post(
        "/resource-definitions/pooled/resources/node-b", {"resource": {"props": {"StorPoolName": "nopool"}}}
    )
    assert st == 404 and code(body[0]) == ERR | 310


def test_snapshot_and_restore_errors(api: Api) -> None:
    api.rd("src", 8192)
    st, body = api.post("/resource-definitions/src/snapshots", {"name": "s1"})
    assert st == 404 and code(body[0]) == ERR | 302
    api.post("/resource-definitions/src/autoplace", {"select_filter": {"place_count": 2}})
    st, body = api.post("/resource-definitions/src/snapshots", {"name": "s1"})
    assert st == 201, body
    st, body = api.post("/resource-definitions/src/snapshots", {"name": "S1"})
    assert st == 500 and code(body[0]) == ERR | 514
    st, body = api.post("/resource-definitions/src/snapshots", {"name": "9"})
    assert st == 500 and code(body[0]) == ERR | 218
    st, body = api.delete("/resource-definitions/src")
    assert st == 500 and code(body[0]) == ERR | 514
    api.rd("dst")
    st, body = api.post(
        "/resource-definitions/src/snapshot-restore-volume-definition/s1", {"to_resource": "dst"}
    )
    assert st == 200 and body[0]["ret_code"] & MASK_BITS_CODE == 2
    st, body = api.post(
        "/resource-definitions/src/snapshot-restore-volume-definition/s1", {"to_resource": "dst"}
    )
    assert st == 500 and code(body[0]) == ERR | 503
    st, body = api.post(
        "/resource-definitions/src/snapshot-restore-resource/s1", {"to_resource": "dst", "nodes": ["vm-x"]}
    )
    assert st == 404 and code(body[0]) == ERR | 300
    st, body = api.post("/resource-definitions/src/snapshot-restore-resource/nosnap", {"to_resource": "dst"})
    assert st == 404 and code(body[0]) == ERR | 313
    st, body = api.post("/resource-definitions/src/snapshot-restore-resource/s1", {"to_resource": "dst"})
    assert st == 200, body
    restored = api.get("/resource-definitions/dst/resources")[1]
    # Two restored replicas, and the tie-breaker a controller adds to two diskful replicas.
    with_data = [r for r in restored if "TIE_BREAKER" not in r["flags"]]
    assert all("RESTORE_FROM_SNAPSHOT" in r["flags"] for r in with_data) and len(with_data) == 2
    assert len(restored) == 3
    st, body = api.post("/resource-definitions/src/snapshot-restore-resource/s1", {"to_resource": "dst"})
    assert st == 500 and code(body[0]) == ERR | 502
    api.rd("dst2", 4096)
    st, body = api.post("/resource-definitions/src/snapshot-restore-resource/s1", {"to_resource": "dst2"})
    assert st == 500 and code(body[0]) == ERR | 206
    # An RD with no VDs and no resources may still hold snapshots (linstor-csi's deferred delete).
    for node in ("node-b", "node-c"):
        api.delete(f"/resource-definitions/src/resources/{node}")
    assert api.delete("/resource-definitions/src/volume-definitions/0")[0] == 200
    assert [s["name"] for s in api.get("/resource-definitions/src/snapshots")[1]] == ["s1"]
    assert api.delete("/resource-definitions/src/snapshots/s1")[0] == 200
    assert api.delete("/resource-definitions/src")[0] == 200


def test_clone_errors(api: Api, emulator_factory) -> None:  # type: ignore[no-untyped-def]
    api.rd("csrc", 4096)
    api.rd("ctaken")
    st, body = api.post("/resource-definitions/csrc/clone", {"name": "ctaken"})
    assert st == 500 and has(body["messages"], ERR | 501)
    assert body["clone_name"] == "ctaken" and body["source_name"] == "csrc"
    st, body = api.post("/resource-definitions/nope/clone", {"name": "cx"})
    assert st == 404 and code(body["messages"][0]) == ERR | 301
    assert api.get("/resource-definitions/csrc/clone/cnone")[0] == 404
    strict = Api(emulator_factory(extra_args=("--strict-clone",), name="strict").url)
    strict.rd("s-src", 4096)
    st, body = strict.post("/resource-definitions/s-src/clone", {"name": "s-dst"})
    assert st == 500 and code(body["messages"][0]) == ERR | 227
    assert strict.get("/resource-definitions/s-dst")[0] == 404


def test_offline_node_behaviour(api: Api) -> None:
    api.rd("off", 4096)
    api.post(
        "/resource-definitions/off/autoplace",
        {"select_filter": {"place_count": 1, "node_name_list": ["node-b"]}},
    )
    assert requests.post(api.url + "/_emu/nodes/node-b/offline", timeout=10).status_code == 200
    node = api.get("/nodes/node-b")[1]
    assert node["connection_status"] == "OFFLINE"
    pool = api.get("/nodes/node-b/storage-pools/DfltStorPool")[1]
    assert "free_capacity" not in pool and code(pool["reports"][0]) == WARN | 1002
    st, body = api.post("/resource-definitions/off/snapshots", {"name": "s1"})
    # Its only diskful node is offline and skipped: nothing left to snapshot, as the controller says.
    assert st == 404 and code(body[0]) == ERR | 302
    api.rd("off2", 4096)
    st, body = api.post(
        "/resource-definitions/off2/autoplace",
        {"select_filter": {"place_count": 1, "node_name_list": ["node-b"]}},
    )
    assert st == 500 and code(body[0]) == ERR | 996
    st, body = api.post("/resource-definitions/off2/resources/node-b", {"resource": {}})
    assert st == 201 and has(body, WARN | 1002)
    st, body = api.delete("/resource-definitions/off/resources/node-b")
    assert st == 200 and has(body, WARN | 1002)
    assert "DELETE" in api.get("/resource-definitions/off/resources/node-b")[1]["flags"]
    assert requests.post(api.url + "/_emu/nodes/node-b/online", timeout=10).status_code == 200
    assert api.get("/resource-definitions/off/resources/node-b")[0] == 404


# ---------------------------------------------------------------------- control API faults


def test_error_injection_latency_and_outage(plain: Api) -> None:
    r = requests.post(
        plain.url + "/_emu/errors",
        json={"method": "GET", "path_regex": "^/v1/nodes$", "status": 500, "ret_code": 998, "count": 2},
        timeout=10,
    )
    assert r.status_code == 200
    for _ in range(2):
        st, body = plain.get("/nodes")
        assert st == 500 and code(body[0]) == ERR | 998
    assert plain.get("/nodes")[0] == 200
    requests.post(plain.url + "/_emu/latency", json={"ms": 300, "paths": "controller/version"}, timeout=10)
    t0 = time.monotonic()
    plain.get("/controller/version")
    assert time.monotonic() - t0 >= 0.3
    requests.post(plain.url + "/_emu/latency", json={"ms": 0}, timeout=10)
    assert requests.post(plain.url + "/_emu/outage", json={"seconds": 1.5}, timeout=10).status_code == 200

    def refused() -> bool:
        try:
            requests.get(plain.base + "/controller/version", timeout=2)
        except requests.ConnectionError:
            return True
        return False

    wait_until(refused, timeout=5, interval=0.02, what="the outage closing the listener")
    with pytest.raises(requests.ConnectionError):
        requests.get(plain.base + "/controller/version", timeout=2)
    wait_until(
        lambda: requests.get(plain.base + "/controller/version", timeout=2).status_code == 200,
        timeout=10,
        interval=0.1,
        what="the listener coming back",
        ignore=(requests.ConnectionError,),
    )
    r = requests.post(plain.url + "/_emu/errors", json={"status": 200}, timeout=10)
    assert r.status_code == 400


def test_kvs_sync_status_and_size_info(plain: Api) -> None:
    assert plain.get("/key-value-store/csi")[0] == 404
    assert plain.put("/key-value-store/csi", {"override_props": {"a/b": "1"}})[0] == 200
    assert plain.get("/key-value-store/csi")[1] == {"name": "csi", "props": {"a/b": "1"}}
    assert plain.delete("/key-value-store/csi")[0] == 200
    assert code(plain.delete("/key-value-store/csi")[1][0]) == WARN | 3000
    plain.rd("synced")
    assert plain.get("/resource-definitions/synced/sync-status")[1] == {"synced_on_all": True}
    plain.post("/resource-groups", {"name": "one", "select_filter": {"place_count": 1}})
    st, body = plain.post("/resource-groups/one/query-size-info", {})
    assert st == 200 and body["space_info"]["max_vlm_size_in_kib"] > 0


def test_tls_with_client_certificates(tmp_path: Path) -> None:
    require(shutil.which("openssl") is not None, "needs the openssl command to make test certificates")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
    )
    for who in ("server", "client"):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{who}.key",
            "-out",
            f"{who}.csr",
            "-subj",
            f"/CN={who}",
        )
        (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        run(
            "x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{who}.crt", "-days", "1", "-extfile", "san.ext",
        )  # fmt: skip
    emu = EmulatorProcess(
        state_dir=tmp_path / "state",
        dev_dir=tmp_path / "dev",
        extra_args=(
            "--tls-cert", str(tmp_path / "server.crt"), "--tls-key", str(tmp_path / "server.key"),
            "--tls-client-ca", str(tmp_path / "ca.crt"),
        ),
    )  # fmt: skip
    url = f"https://127.0.0.1:{emu.port}/v1/controller/version"
    ca = str(tmp_path / "ca.crt")
    client = (str(tmp_path / "client.crt"), str(tmp_path / "client.key"))
    emu.state_dir.mkdir(parents=True)
    with open(tmp_path / "emu.log", "wb") as log:
        proc = subprocess.Popen(emu.command(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:

        def answer() -> list[requests.Response]:
            assert proc.poll() is None, (tmp_path / "emu.log").read_text()
            return [requests.get(url, verify=ca, cert=client, timeout=2)]  # any answer, even a refusal

        (ok,) = wait_until(
            answer,
            timeout=20,
            interval=0.1,
            what="the TLS emulator's first answer",
            ignore=(requests.ConnectionError,),
        )
        assert ok.status_code == 200 and ok.json()["rest_api_version"] == "1.28.0"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, verify=ca, timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_malformed_http_gets_json_not_html(plain: Api) -> None:
    port = int(plain.url.rsplit(":", 1)[1])
    for raw in (
        b"GARBAGE\r\n\r\n",
        b"GET /v1/nodes HTTP/9.9\r\n\r\n",
        b"POST /v1/resource-definitions HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(raw)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        if reply.startswith(b"HTTP/"):
            head, _, payload = reply.partition(b"\r\n\r\n")
            assert head.split(b" ")[1] in (b"400", b"505"), reply
            assert b"application/json" in head
        else:  # an HTTP/0.9-style request line gets a bare body, as HTTP/0.9 has no headers
            payload = reply
        assert b"<html" not in payload.lower()
        assert json.loads(payload)[0]["ret_code"] < 0


def test_group_place_count_change_places_more_replicas(api: Api) -> None:
    assert api.post("/resource-groups", {"name": "grow-rg", "select_filter": {"place_count": 1}})[0] == 201
    st, body = api.post("/resource-groups/grow-rg/volume-groups", {"props": {"Aux/from-vg": "yes"}})
    assert st == 201, body
    st, body = api.post(
        "/resource-groups/grow-rg/spawn", {"resource_definition_name": "g1", "volume_sizes": [4096]}
    )
    assert st == 201, body
    # The volume group's props stay on the group (the controller copies only number and flags).
    assert "props" not in api.get("/resource-definitions/g1/volume-definitions/0")[1]
    assert len(api.get("/resource-definitions/g1/resources")[1]) == 1
    st, body = api.put("/resource-groups/grow-rg", {"select_filter": {"place_count": 2}})
    assert st == 200, body
    placed = api.get("/resource-definitions/g1/resources")[1]
    # Two diskful replicas now, so the controller adds a tie-breaker on the third node.
    assert sorted(len(r.get("flags", [])) for r in placed) == [0, 0, 3]
    assert [r["flags"] for r in placed if r.get("flags")] == [["DISKLESS", "DRBD_DISKLESS", "TIE_BREAKER"]]
    # More replicas than nodes: the group is changed, the autoplace error lands in the same answer.
    st, body = api.put("/resource-groups/grow-rg", {"select_filter": {"place_count": 5}})
    assert st == 500 and has(body, ERR | 996)
    assert api.get("/resource-groups/grow-rg")[1]["select_filter"]["place_count"] == 5
    st, body = api.post(
        "/resource-groups/grow-rg/spawn",
        {"resource_definition_name": "g2", "volume_sizes": [4096], "definitions_only": True},
    )
    assert st == 201 and has(body, INFO | 10000)
    assert api.get("/resource-definitions/g2/resources") == (200, [])
    st, body = api.post("/resource-groups/grow-rg/adjust", {"select_filter": {"place_count": 1}})
    assert st == 200, body
    assert len(api.get("/resource-definitions/g2/resources")[1]) == 1


def test_diskless_on_remaining_attaches_every_other_node(api: Api) -> None:
    api.rd("dor", 4096)
    body_ = {"diskless_on_remaining": True, "select_filter": {"place_count": 1}}
    st, body = api.post("/resource-definitions/dor/autoplace", body_)
    assert st == 201, body
    rscs = api.get("/resource-definitions/dor/resources")[1]
    assert len(rscs) == 3
    assert sorted("DRBD_DISKLESS" in r.get("flags", []) for r in rscs) == [False, True, True]
    # A diskless attachment reports the volume's one shared device.
    local = api.local()
    device = api.get(f"/resource-definitions/dor/resources/{local}/volumes/0")[1]["device_path"]
    assert Path(device).is_block_device()


def test_reset_releases_every_device_and_file(emulator) -> None:  # type: ignore[no-untyped-def]
    api = Api(emulator.url)
    local = api.local()
    for name in ("r-one", "r-two"):
        api.rd(name, 4096)
        assert api.post(f"/resource-definitions/{name}/resources/{local}", {"resource": {}})[0] == 201
    api.post("/resource-definitions/r-one/snapshots", {"name": "keep"})
    assert len(loops_backed_under(emulator.state_dir)) == 2
    assert len(list(emulator.dev_dir.iterdir())) == 2
    r = requests.post(emulator.url + "/_emu/reset", timeout=30)
    assert r.status_code == 200
    assert loops_backed_under(emulator.state_dir) == {}
    assert list(emulator.dev_dir.iterdir()) == []
    assert list((emulator.state_dir / "pools").rglob("*.img")) == []
    assert api.get("/resource-definitions") == (200, [])
    assert [n["name"] for n in api.get("/nodes")[1]] == sorted([local, "node-b", "node-c"], key=str.upper)


def test_the_access_log_line_of_a_refusal_carries_its_sentence(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    emu = emulator_factory()
    status, body = Api(emu.url).call("GET", "/resource-definitions/nosuchrd")
    assert status == 404
    assert emu.log_path is not None
    log_path = emu.log_path

    def lines() -> list[dict[str, Any]]:
        return [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]

    # The line is written right after the answer is sent.
    (refused,) = wait_until(
        lambda: [e for e in lines() if e.get("path") == "/v1/resource-definitions/nosuchrd"],
        timeout=10,
        what="the access log line of the refused request",
    )
    assert refused["status"] == 404
    assert refused["error"] == body[0]["message"] and "nosuchrd" in refused["error"].lower()
    ok = [e for e in lines() if e.get("path") == "/v1/controller/version" and e.get("status") == 200]
    assert all("error" not in e for e in ok)
