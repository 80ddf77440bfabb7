"""Summaries (what lists of names show) agree with full volumes on id, name and creation time.

Docker's List converts every volume to a summary instead of a full :class:`Volume`; the
two must never disagree about which definitions are volumes, or what they are called.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from plugin import volume_records as rec
from plugin.config import Config
from plugin.linstor.client import LinstorClient
from plugin.linstor.paging import props_match
from plugin.linstor.records import DefinitionHead, ResourceDefinition
from plugin.volumes.service import VolumeService
from tests.unit.test_linstor_client import FakeController, serving_fake

VD = [{"volume_number": 0, "size_kib": 1024}]
LEGACY = json.dumps({"name": "pvc-legacy", "creationTime": "2024-05-06T07:08:09+00:00"})


def wire(name: str, props: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "props": props, "volume_definitions": VD, **extra}


def head(name: str, props: dict[str, str], **extra: Any) -> DefinitionHead:
    return DefinitionHead.from_wire(wire(name, props, **extra))


CASES = {
    "own record": wire("vol-a", {rec.NAME: "web.data", rec.CREATED_AT: "2026-01-02T03:04:05+00:00"}),
    "legacy record": wire("pvc-legacy", {rec.LEGACY_ANNOTATIONS: LEGACY}),
    "no record": wire("bare", {}),
    "broken legacy record": wire("odd", {rec.LEGACY_ANNOTATIONS: "{not json"}),
    "odd types": wire("typed", {rec.NAME: "n", "Aux/size": 5}, flags=["resized"]),  # type: ignore[dict-item]
}


@pytest.mark.parametrize("definition", CASES.values(), ids=CASES.keys())
def test_summary_matches_the_full_volume(definition: dict[str, Any]) -> None:
    volume = rec.volume_from(ResourceDefinition.from_wire(definition))
    summary = rec.summary_from(DefinitionHead.from_wire(definition))
    assert volume is not None and summary is not None
    assert (summary.id, summary.name, summary.created_at) == (volume.id, volume.name, volume.created_at)


def test_names_and_times_come_from_the_records() -> None:
    own, legacy, bare = (
        rec.summary_from(DefinitionHead.from_wire(CASES[case]))
        for case in ("own record", "legacy record", "no record")
    )
    assert own is not None and legacy is not None and bare is not None
    assert own.name == "web.data" and own.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert legacy.name == "pvc-legacy" and legacy.created_at == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert bare.name == "bare" and bare.created_at is None


@pytest.mark.parametrize(
    "definition",
    [
        DefinitionHead.from_wire({"name": "snapshots-only", "props": {}}),  # no volume 0: for its snapshots
        head("other-volume", {}, volume_definitions=[{"volume_number": 1}]),
        head("half", {rec.CREATING: "half"}),  # an interrupted restore or clone
        head("going", {}, flags=["DELETE"]),
        head("copying", {}, flags=["cloning"]),
    ],
)
def test_what_is_not_a_listed_volume_has_no_summary(definition: DefinitionHead) -> None:
    assert rec.summary_from(definition) is None


def test_props_filters_are_linstor_s() -> None:
    props = {"Aux/a": "1", "Aux/b": ""}
    assert props_match(props, ())
    assert props_match(props, ("Aux/a=1", "Aux/b"))
    assert props_match(props, ("Aux/b=",))
    assert not props_match(props, ("Aux/a=2",))
    assert not props_match(props, ("Aux/a=1", "Aux/c"))  # AND-ed
    assert not props_match(props, ("Aux/a=1=",))  # the value is everything after the first "="


@pytest.fixture
def fake() -> Iterator[FakeController]:
    with serving_fake() as controller:
        yield controller


def test_a_controller_that_ignores_the_filter_still_lists_only_matching_volumes(fake: FakeController) -> None:
    marked = wire("vol-a", {"Aux/kind": "docker", rec.NAME: "a"})
    other = wire("vol-b", {rec.NAME: "b"})
    fake.on(
        "GET",
        "/v1/resource-definitions?with_volume_definitions=true&props=Aux%2Fkind%3Ddocker&limit=2000&offset=0",
        (200, [marked, other]),  # an older controller answers everything
    )
    config = Config(controllers=(fake.url,), read_timeout=5.0, config_file=None)
    summaries = VolumeService(LinstorClient(config), config).list_summaries(props=("Aux/kind=docker",))
    assert [(s.id, s.name) for s in summaries] == [("vol-a", "a")]
