"""VolumeService paths the emulator cannot provoke: an answer lost after LINSTOR applied it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from plugin.config import Config
from plugin.errors import Unavailable
from plugin.linstor.client import LinstorClient
from plugin.params.groups import resource_group_name
from plugin.params.model import VolumeParams
from plugin.volumes import create
from plugin.volumes.service import VolumeService
from tests.unit.test_linstor_client import (
    FakeController,
    FakeHandler,
    drop_connection,
    send_bytes,
    serving_fake,
)

PARAMS = VolumeParams(place_count=1, fs_type="ext4")
GROUP = resource_group_name(PARAMS)


@pytest.fixture
def fake() -> Iterator[FakeController]:
    with serving_fake() as controller:
        controller.on(
            "GET", f"/v1/resource-groups/{GROUP}", (200, {"name": GROUP, "select_filter": {"place_count": 1}})
        )
        # Read once, before the first spawn with definition properties (REST API 1.22+).
        controller.on(
            "GET", "/v1/controller/version", (200, {"version": "1.34.0", "rest_api_version": "1.28.0"})
        )
        yield controller


def service(fake: FakeController) -> VolumeService:
    config = Config(
        controllers=(fake.url,), node_name="n1", connect_timeout=2, read_timeout=5, config_file=None
    )
    return VolumeService(LinstorClient(config, backoff=0.01), config)


def reply_json(handler: FakeHandler, payload: object) -> None:
    send_bytes(handler, 200, json.dumps(payload).encode())


def test_spawn_applied_but_answer_lost_converges(fake: FakeController) -> None:
    """The spawn reached LINSTOR, the connection dropped: the volume is read back, not re-sent."""
    fake.on("POST", f"/v1/resource-groups/{GROUP}/spawn", drop_connection)

    def listing(handler: FakeHandler) -> None:
        spawn = next((body for method, path, body in fake.seen if path.endswith("/spawn")), None)
        if spawn is None:  # the look before the first create of a parameter set
            reply_json(handler, [])
            return
        rd = {
            "name": "vol-a",
            "resource_group_name": GROUP,
            "props": spawn["resource_definition_props"],
            "volume_definitions": [{"volume_number": 0, "size_kib": spawn["volume_sizes"][0]}],
        }
        reply_json(handler, [rd])

    fake.on(
        "GET", "/v1/resource-definitions?with_volume_definitions=true&resource_definitions=vol-a", listing
    )
    fake.on("GET", "/v1/view/resources?resources=vol-a", (200, [{"node_name": "n1", "volumes": [{}]}]))
    volume = service(fake).create_volume("vol-a", 8 * 1024 * 1024, PARAMS)
    assert (volume.id, volume.name, volume.size_bytes, volume.fs_type) == (
        "vol-a",
        "vol-a",
        8 * 1024 * 1024,
        "ext4",
    )
    assert volume.diskful_nodes == ("n1",)
    assert fake.count("POST", f"/v1/resource-groups/{GROUP}/spawn") == 1


def test_spawn_lost_and_nothing_there_is_unavailable(fake: FakeController) -> None:
    fake.on("POST", f"/v1/resource-groups/{GROUP}/spawn", drop_connection)
    fake.on(
        "GET", "/v1/resource-definitions?with_volume_definitions=true&resource_definitions=vol-b", (200, [])
    )
    with pytest.raises(Unavailable, match="may or may not"):
        service(fake).create_volume("vol-b", 8 * 1024 * 1024, PARAMS)
    assert fake.count("POST", f"/v1/resource-groups/{GROUP}/spawn") == 1


def test_resource_group_is_ensured_once_per_process(fake: FakeController) -> None:
    fake.on("POST", f"/v1/resource-groups/{GROUP}/spawn", (201, []))
    fake.on("GET", "/v1/resource-definitions?with_volume_definitions=true&resource_definitions=v1", (200, []))
    fake.on("GET", "/v1/view/resources?resources=v1", (200, []))
    fake.on("GET", "/v1/view/resources?resources=v2", (200, []))
    svc = service(fake)
    svc.create_volume("v1", 8 * 1024 * 1024, PARAMS)
    before = svc.client.request_count
    svc.create_volume("v2", 8 * 1024 * 1024, PARAMS)
    assert svc.client.request_count - before == 2  # spawn + replicas, no resource-group traffic
    assert fake.count("GET", f"/v1/resource-groups/{GROUP}") == 1


def test_resource_group_name_is_derived_once_per_create(
    fake: FakeController, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name travels with the request (rec.Wanted) to the group cache, which does not derive it again."""
    derived: list[str] = []

    def counting(params: VolumeParams) -> str:
        derived.append(resource_group_name(params))
        return derived[-1]

    monkeypatch.setattr(create, "resource_group_name", counting)
    fake.on("POST", f"/v1/resource-groups/{GROUP}/spawn", (201, []))
    fake.on("GET", "/v1/resource-definitions?with_volume_definitions=true&resource_definitions=v1", (200, []))
    fake.on("GET", "/v1/view/resources?resources=v1", (200, []))
    fake.on("GET", "/v1/view/resources?resources=v2", (200, []))
    svc = service(fake)
    svc.create_volume("v1", 8 * 1024 * 1024, PARAMS)  # the group is new: looked up and ensured
    svc.create_volume("v2", 8 * 1024 * 1024, PARAMS)  # the steady state: one spawn
    assert derived == [GROUP, GROUP]
    assert svc.groups.is_known(GROUP)


def test_the_group_cache_uses_the_name_it_is_given(fake: FakeController) -> None:
    """ensure() takes the caller's name as it is (the caller derived it once)."""
    fake.on(
        "GET",
        "/v1/resource-groups/given-rg",
        (200, {"name": "given-rg", "select_filter": {"place_count": 1}}),
    )
    svc = service(fake)
    assert svc.groups.ensure(PARAMS, "given-rg") == "given-rg"
    assert svc.groups.is_known("given-rg") and not svc.groups.is_known(GROUP)
    assert fake.count("GET", "/v1/resource-groups/given-rg") == 1
    assert fake.count("GET", f"/v1/resource-groups/{GROUP}") == 0
