"""What a node's requests read of a volume, against a fake controller that answers as LINSTOR does.

LINSTOR's ``.../resources/{node}/volumes/{nr}`` answers one 404 (302) both for a volume it
does not know and for one without a resource on that node; these pin that the node path
still tells them apart (NOT_FOUND, or "not attached here"), and with how many calls.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from plugin import volume_records as rec
from plugin.config import Config
from plugin.errors import NotFound
from plugin.linstor import retcodes as rc
from plugin.linstor.client import LinstorClient
from plugin.volumes.consistency_group_service import ConsistencyGroupService
from plugin.volumes.service import VolumeService
from testkit.waiting import wait_until
from tests.unit.test_linstor_client import FakeController, FakeHandler, send_bytes, serving_fake

NODE = "n1"
LIST_RD = "/v1/resource-definitions?with_volume_definitions=true&resource_definitions={}"
VOLUME_HERE = "/v1/resource-definitions/{}/resources/" + NODE + "/volumes/{}"
VIEW = "/v1/view/resources?resources={}"
# What the controller answers on the volumes route for a missing resource (or definition).
NO_RESOURCE = (
    404,
    [{"ret_code": rc.MASK_ERROR | rc.FAIL_NOT_FOUND_RSC, "message": "Resource 'x' not found on node 'n1'."}],
)


def definition(name: str, props: dict[str, str] | None = None) -> dict[str, object]:
    return {
        "name": name,
        "props": props or {},
        "volume_definitions": [{"volume_number": 0, "size_kib": 65536}],
    }


def volume_answer(device: str, number: int = 0) -> tuple[int, dict[str, object]]:
    return 200, {"volume_number": number, "device_path": device, "provider_kind": "FILE_THIN"}


@pytest.fixture
def fake() -> Iterator[FakeController]:
    with serving_fake() as controller:
        yield controller


def service(fake: FakeController, kind: type[VolumeService] = VolumeService) -> VolumeService:
    config = Config(controllers=(fake.url,), node_name=NODE, read_timeout=5, config_file=None)
    return kind(LinstorClient(config, backoff=0.01), config)


def gets(fake: FakeController) -> list[str]:
    return [path for method, path, _ in fake.seen if method == "GET"]


def test_an_attached_volume_costs_one_call(fake: FakeController) -> None:
    fake.on("GET", VOLUME_HERE.format("vol-a", 0), volume_answer("/dev/drbd1000"))
    assert service(fake).device_on("vol-a", NODE) == "/dev/drbd1000"
    assert gets(fake) == [VOLUME_HERE.format("vol-a", 0)]


def test_an_unknown_volume_is_not_found_by_name(fake: FakeController) -> None:
    fake.on("GET", VOLUME_HERE.format("vol-a", 0), NO_RESOURCE)
    fake.on("GET", LIST_RD.format("vol-a"), (200, []))
    with pytest.raises(NotFound, match="volume vol-a not found"):
        service(fake).device_on("vol-a", NODE)
    assert gets(fake) == [VOLUME_HERE.format("vol-a", 0), LIST_RD.format("vol-a")]


def test_a_known_volume_without_a_resource_here_is_not_attached(fake: FakeController) -> None:
    fake.on("GET", VOLUME_HERE.format("vol-a", 0), NO_RESOURCE)
    fake.on("GET", LIST_RD.format("vol-a"), (200, [definition("vol-a")]))
    assert service(fake).device_on("vol-a", NODE) is None
    assert VIEW.format("vol-a") not in gets(fake)  # the definition alone tells it exists


def test_a_resource_here_without_a_device_is_not_attached(fake: FakeController) -> None:
    """A storage-only diskless resource has no device on its node; nothing to stage there."""
    fake.on("GET", VOLUME_HERE.format("vol-a", 0), (200, {"volume_number": 0, "provider_kind": "DISKLESS"}))
    fake.on("GET", LIST_RD.format("vol-a"), (200, [definition("vol-a")]))
    assert service(fake).device_on("vol-a", NODE) is None


def test_an_unmount_does_not_ask_whether_the_volume_exists(fake: FakeController) -> None:
    """Unknown or not attached, the unmount's owner has no device either way: one call."""
    fake.on("GET", VOLUME_HERE.format("vol-a", 0), NO_RESOURCE)
    assert service(fake).device_on("vol-a", NODE, must_exist=False) is None
    assert gets(fake) == [VOLUME_HERE.format("vol-a", 0)]


def test_an_impossible_id_is_not_found_without_a_call(fake: FakeController) -> None:
    with pytest.raises(NotFound):
        service(fake).device_on("no such/name", NODE)
    assert service(fake).device_on("no such/name", NODE, must_exist=False) is None
    assert fake.seen == []


def test_the_record_and_the_device_are_read_at_once_and_keep_the_stored_options(
    fake: FakeController,
) -> None:
    props = {rec.MOUNT_OPTS: "noatime,discard"}
    fake.on("GET", LIST_RD.format("vol-a"), (200, [definition("vol-a", props)]))
    fake.on("GET", VOLUME_HERE.format("vol-a", 0), volume_answer("/dev/loop7"))
    volume, device = service(fake).volume_on("vol-a", NODE)
    assert (volume.id, volume.mount_opts, device) == ("vol-a", ("noatime", "discard"), "/dev/loop7")
    assert sorted(gets(fake)) == sorted([LIST_RD.format("vol-a"), VOLUME_HERE.format("vol-a", 0)])


def test_the_two_reads_overlap(fake: FakeController) -> None:
    """The device is asked for while the definition's answer is still on its way."""
    overlapped: list[bool] = []

    def definition_once_the_device_is_asked(handler: FakeHandler) -> None:
        try:
            wait_until(lambda: VOLUME_HERE.format("vol-a", 0) in gets(fake), 5, 0.005)
            overlapped.append(True)
        except AssertionError:
            overlapped.append(False)
        send_bytes(handler, 200, json.dumps([definition("vol-a")]).encode())

    fake.on("GET", LIST_RD.format("vol-a"), definition_once_the_device_is_asked)
    fake.on("GET", VOLUME_HERE.format("vol-a", 0), volume_answer("/dev/loop7"))
    assert service(fake).volume_on("vol-a", NODE)[1] == "/dev/loop7"
    assert overlapped == [True]


@pytest.mark.parametrize("device_answer", [NO_RESOURCE, (500, "broken"), volume_answer("/dev/loop7")])
def test_an_unknown_volume_is_not_found_whatever_the_device_read_says(
    fake: FakeController, device_answer: tuple[int, object]
) -> None:
    fake.on("GET", LIST_RD.format("vol-a"), (200, []))
    fake.on("GET", VOLUME_HERE.format("vol-a", 0), device_answer)
    with pytest.raises(NotFound, match="volume vol-a not found"):
        service(fake).volume_on("vol-a", NODE)
    assert not any(t.name == "node-device-read" for t in threading.enumerate())  # none outlives it


def test_the_record_of_a_volume_not_attached_here_has_no_device(fake: FakeController) -> None:
    fake.on("GET", LIST_RD.format("vol-a"), (200, [definition("vol-a")]))
    fake.on("GET", VOLUME_HERE.format("vol-a", 0), NO_RESOURCE)
    volume, device = service(fake).volume_on("vol-a", NODE)
    assert volume.id == "vol-a" and device is None


def test_a_group_member_is_read_at_its_own_volume_number(fake: FakeController) -> None:
    fake.on("GET", VOLUME_HERE.format("cg-a", 2), volume_answer("/dev/drbd1002", 2))
    assert service(fake, ConsistencyGroupService).device_on("cg-a/2", NODE) == "/dev/drbd1002"
    assert gets(fake) == [VOLUME_HERE.format("cg-a", 2)]


def test_a_member_number_of_a_plain_volume_is_not_found(fake: FakeController) -> None:
    fake.on("GET", VOLUME_HERE.format("vol-a", 1), NO_RESOURCE)
    fake.on("GET", LIST_RD.format("vol-a"), (200, [definition("vol-a")]))
    with pytest.raises(NotFound, match="volume vol-a/1 not found"):
        service(fake, ConsistencyGroupService).device_on("vol-a/1", NODE)


def test_the_device_first_then_the_record_while_the_caller_works(fake: FakeController) -> None:
    """A stage has the device after one round trip; the definition arrives while it probes."""
    held = threading.Event()

    def definition_when_released(handler: FakeHandler) -> None:
        held.wait(5)
        send_bytes(handler, 200, json.dumps([definition("vol-a")]).encode())

    fake.on("GET", VOLUME_HERE.format("vol-a", 0), volume_answer("/dev/loop7"))
    fake.on("GET", LIST_RD.format("vol-a"), definition_when_released)
    device, record = service(fake).device_then_record("vol-a", NODE)
    assert device == "/dev/loop7"  # while the definition is still held back
    assert gets(fake)[0] == VOLUME_HERE.format("vol-a", 0)
    held.set()
    assert record.wait() is True  # it was not in when asked
    assert record.wait() is False and record.result().id == "vol-a"  # the same answer, at once


def test_a_record_that_fails_fails_every_time_it_is_asked(fake: FakeController) -> None:
    fake.on("GET", VOLUME_HERE.format("vol-a", 0), volume_answer("/dev/loop7"))
    fake.on("GET", LIST_RD.format("vol-a"), (200, []))  # unknown after all, or half-made
    device, record = service(fake).device_then_record("vol-a", NODE)
    assert device == "/dev/loop7"
    for _ in range(2):
        with pytest.raises(NotFound, match="volume vol-a not found"):
            record.result()
    assert not any(t.name == "node-record-read" for t in threading.enumerate())


def test_without_a_device_here_the_record_is_read_at_once(fake: FakeController) -> None:
    fake.on("GET", VOLUME_HERE.format("vol-a", 0), NO_RESOURCE)
    fake.on("GET", LIST_RD.format("vol-a"), (200, [definition("vol-a")]))
    device, record = service(fake).device_then_record("vol-a", NODE)
    assert device is None and record.wait() is False and record.result().id == "vol-a"
    fake.on("GET", LIST_RD.format("vol-a"), (200, []))
    with pytest.raises(NotFound, match="volume vol-a not found"):
        service(fake).device_then_record("vol-a", NODE)
