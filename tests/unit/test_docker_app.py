"""The protocol layer alone: decoding, envelopes, the catch-all, for calls that need no LINSTOR.

Calls that reach LINSTOR are tested over the real socket in
tests/integration/test_docker_plugin.py; here the driver has no volume service at all,
so these calls prove they stay local (Docker must be able to Unmount with the
controller down).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docker_plugin.app import CONTENT_TYPE, MAX_BODY_BYTES, create_app
from docker_plugin.driver import DockerVolumeDriver
from docker_plugin.errors import INTERNAL_ERROR
from docker_plugin.refcounts import MountStore
from testkit.wsgi import WsgiClient


class _NoBackend:
    """Any attribute access fails loudly: these tests must not touch LINSTOR or the host."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"unexpected backend call: {name}")


def _driver(tmp_path: Path) -> DockerVolumeDriver:
    return DockerVolumeDriver(
        _NoBackend(),  # type: ignore[arg-type]
        _NoBackend(),  # type: ignore[arg-type]
        MountStore(tmp_path / "state.json"),
        node="n1",
        mount_root=tmp_path / "mnt",
    )


@pytest.fixture
def client(tmp_path: Path) -> WsgiClient:
    return WsgiClient(create_app(_driver(tmp_path), health=lambda: {"linstor_reachable": False}))


def _post(client: WsgiClient, method: str, raw: bytes | None) -> dict[str, object]:
    resp = client.post(f"/{method}", data=raw)  # no Content-Type, like Docker
    assert resp.content_type == CONTENT_TYPE
    return {"_status": resp.status_code, **json.loads(resp.data)}


def test_activate_with_empty_body(client: WsgiClient) -> None:
    assert _post(client, "Plugin.Activate", b"") == {
        "_status": 200,
        "Implements": ["VolumeDriver"],
        "Err": "",
    }


def test_capabilities_scope_global(client: WsgiClient) -> None:
    answer = _post(client, "VolumeDriver.Capabilities", b"{}\n")
    assert answer["Capabilities"] == {"Scope": "global"} and answer["Err"] == ""


def test_path_and_unmount_of_unheld_volume_are_local_and_succeed(client: WsgiClient) -> None:
    assert _post(client, "VolumeDriver.Path", b'{"Name": "v"}\n') == {
        "_status": 200,
        "Mountpoint": "",
        "Err": "",
    }
    assert _post(client, "VolumeDriver.Unmount", b'{"Name": "v", "ID": "abc"}\n') == {
        "_status": 200,
        "Err": "",
    }


def test_bad_bodies_answer_with_err_and_the_right_empty_fields(client: WsgiClient) -> None:
    answer = _post(client, "VolumeDriver.Mount", b"{oops")
    assert answer == {"_status": 200, "Mountpoint": "", "Err": "the request body is not valid JSON"}
    answer = _post(client, "VolumeDriver.List", b"[]")
    assert answer["Volumes"] == [] and answer["Err"] == "the request body must be a JSON object"
    assert _post(client, "VolumeDriver.Remove", b"{}")["Err"] == "the request has no volume Name"


def test_unknown_call_and_wrong_method(client: WsgiClient) -> None:
    answer = _post(client, "VolumeDriver.Snapshot", b"{}")
    assert answer["_status"] == 404 and "unknown call /VolumeDriver.Snapshot" in str(answer["Err"])
    resp = client.get("/VolumeDriver.List")
    assert resp.status_code == 405 and "must be called with POST" in json.loads(resp.data)["Err"]


def test_health_reports_probe_results(client: WsgiClient) -> None:
    resp = client.get("/health")
    assert resp.status_code == 200
    assert json.loads(resp.data) == {"status": "ok", "mounted_volumes": 0, "linstor_reachable": False}


def test_unexpected_failure_is_an_err_sentence_not_a_traceback(tmp_path: Path) -> None:
    class Broken(DockerVolumeDriver):
        def path(self, name: str) -> str:
            raise RuntimeError("/secret/internal/detail")

    driver = Broken(
        _NoBackend(), _NoBackend(), MountStore(tmp_path / "s.json"), node="n1", mount_root=tmp_path
    )  # type: ignore[arg-type]
    answer = _post(WsgiClient(create_app(driver)), "VolumeDriver.Path", b'{"Name": "v"}')
    assert answer == {"_status": 200, "Mountpoint": "", "Err": INTERNAL_ERROR}


def test_an_oversized_body_is_refused_unread(client: WsgiClient) -> None:
    answer = _post(client, "VolumeDriver.Get", b"x" * (MAX_BODY_BYTES + 1))
    assert answer["_status"] == 200
    assert f"larger than {MAX_BODY_BYTES // 1024} KiB" in str(answer["Err"])
    # a body at the bound is read (and this one is no JSON)
    assert "not valid JSON" in str(_post(client, "VolumeDriver.Get", b"x" * MAX_BODY_BYTES)["Err"])


def test_health_answers_get_and_head_only(client: WsgiClient) -> None:
    head = client.request("HEAD", "/health")
    assert head.status_code == 200 and head.data == b""
    post = client.post("/health", data=b"{}")
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    assert json.loads(post.data)["Err"] == "/health must be called with GET"


def test_unknown_path_is_named_in_the_answer_whatever_the_method(client: WsgiClient) -> None:
    for method in ("GET", "POST", "PUT"):
        resp = client.request(method, "/Volumé.Nope", b"{}")
        assert resp.status_code == 404
        expected = "unknown call /Volumé.Nope: this plugin implements VolumeDriver"
        assert json.loads(resp.data)["Err"] == expected


def test_a_request_without_a_length_has_an_empty_body(client: WsgiClient) -> None:
    # no Content-Length and a stream that never ends: reading it would hang the request
    resp = client.post("/Plugin.Activate", data=None)
    assert resp.status_code == 200 and json.loads(resp.data)["Implements"] == ["VolumeDriver"]
    assert resp.headers["content-length"] == str(len(resp.data))
