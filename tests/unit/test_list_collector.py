"""Long list reads run with the cyclic collector paused, and leave it as they found it.

ListVolumes' listing and the summaries behind Docker's List read pages of LINSTOR's JSON
whose objects CPython would otherwise traverse in full collections (see
:mod:`plugin.list_collector`). The pause is counted across threads and ends with the read,
after errors too.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from csi.controller import ControllerServicer
from plugin import volume_records as rec
from plugin.config import Config
from plugin.linstor.client import LinstorClient
from plugin.linstor.records import DefinitionHead, ResourceDefinition
from plugin.list_collector import collector_paused_for_list, list_readers
from plugin.volumes import listing
from plugin.volumes.service import VolumeService

VD = [{"volume_number": 0, "size_kib": 1024}]


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    assert list_readers() == 0
    if not was:
        gc.disable()


def service() -> VolumeService:
    config = Config(controllers=("http://127.0.0.1:9",), node_name="n1", config_file=None)
    return VolumeService(LinstorClient(config), config)


def definitions(seen: list[bool], count: int = 3) -> Iterator[tuple[ResourceDefinition, list[Any]]]:
    for i in range(count):
        seen.append(gc.isenabled())
        props = {rec.NAME: f"vol-{i}", rec.CREATED_AT: "2026-01-02T03:04:05+00:00"}
        yield ResourceDefinition.from_wire({"name": f"v{i}", "props": props, "volume_definitions": VD}), []


def test_the_pause_ends_with_the_block_also_after_an_error() -> None:
    with collector_paused_for_list():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused_for_list():
        raise RuntimeError("LINSTOR went away")
    assert gc.isenabled()


def test_overlapping_reads_share_the_pause_and_an_off_collector_stays_off() -> None:
    inside, leave = threading.Event(), threading.Event()

    def other_read() -> None:
        with collector_paused_for_list():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other_read)
    thread.start()
    assert inside.wait(10)
    with collector_paused_for_list():
        assert list_readers() == 2
    assert not gc.isenabled()
    leave.set()
    thread.join(10)
    assert gc.isenabled()
    gc.disable()
    with collector_paused_for_list():
        pass
    assert not gc.isenabled()
    gc.enable()


def heads(seen: list[bool], count: int = 3) -> Iterator[DefinitionHead]:
    for definition, _ in definitions(seen, count):
        yield DefinitionHead(definition.name, definition.props, definition.flags, has_volume_0=True)


def test_summaries_are_read_with_the_collector_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    monkeypatch.setattr(listing, "heads", lambda client, props=(): heads(seen))
    summaries = service().list_summaries(props=("Aux/x=true",))
    assert [s.name for s in summaries] == ["vol-0", "vol-1", "vol-2"]
    assert seen == [False, False, False]
    assert gc.isenabled()


def test_list_volumes_reads_its_listing_with_the_collector_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    monkeypatch.setattr(listing, "definitions", lambda client, with_replicas: definitions(seen))
    entries = ControllerServicer(service())._volume_entries()
    assert len(entries) == 3
    assert seen == [False, False, False]
    assert gc.isenabled()
