"""Mutable parameters: what each key means, which replicas go, and what a failure puts back.

The core's modify step runs here over a recording LINSTOR client, so "a repeat writes
nothing" and "nothing changed" are checked by the calls that were (not) made. The same
steps against the emulator are in tests/integration/test_csi_modify.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from plugin.errors import FailedPrecondition, InvalidArgument, NoSpace
from plugin.keyed_locks import KeyedLocks
from plugin.models import Replica, Volume
from plugin.volumes.modify import Changes, VolumeModifications, parse_mutable_parameters

NS = "linstor.csi.linbit.com/"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({NS + "placementCount": "3"}, Changes(place_count=3)),
        ({"placementCount": "2", NS + "autoPlace": "2"}, Changes(place_count=2)),
        (
            {"DrbdOptions/PeerDevice/c-max-rate": " 250M "},
            Changes(set_props={"DrbdOptions/PeerDevice/c-max-rate": "250M"}),
        ),
        (
            {"property.linstor.csi.linbit.com/DrbdOptions/Net/max-buffers": "8000"},
            Changes(set_props={"DrbdOptions/Net/max-buffers": "8000"}),
        ),
        ({"DrbdOptions/Net/protocol": ""}, Changes(delete_props=("DrbdOptions/Net/protocol",))),
        ({"qos.linbit.com/rbps": "1Ki"}, Changes(set_props={"Aux/qos.linbit.com/rbps": "1024"})),
        ({"qos.linbit.com/wiops": "0"}, Changes(delete_props=("Aux/qos.linbit.com/wiops",))),
    ],
)
def test_mutable_keys(given: dict[str, str], expected: Changes) -> None:
    assert parse_mutable_parameters(given) == expected


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"iops": "1"}, ['"iops"', "is not a parameter of this driver", "placementCount"]),
        ({NS + "layerList": "drbd storage"}, ["layerList", "cannot be changed on a volume"]),
        ({NS + "placementCount": "0"}, ["placementCount", "whole number from 1"]),
        (
            {NS + "placementCount": "2", "autoPlace": "3"},
            ["different replica counts", "(3 and 2)", "autoPlace"],
        ),
        ({"qos.linbit.com/riops": "many"}, ["qos.linbit.com/riops", "Kubernetes quantity"]),
        ({"qos.linbit.com/device": "/dev/sda"}, ["qos.linbit.com/device", "cannot be changed"]),
        ({"example.com/x": "1"}, ["example.com/x"]),
        ({"property.linstor.csi.linbit.com/": "1"}, ["expected a LINSTOR property name"]),
        ({"property.linstor.csi.linbit.com/a b": "1"}, ["expected a LINSTOR property name"]),
        ({"property.linstor.csi.linbit.com/Aux/volume-plugin/name": "x"}, ["Aux/volume-plugin/name"]),
        ({"property.linstor.csi.linbit.com/FileSystem/Type": "xfs"}, ["FileSystem/Type"]),
        ({"property.linstor.csi.linbit.com/Aux/qos.linbit.com/rbps": "1"}, ["IO limits are set with"]),
        (
            {
                "DrbdOptions/Net/protocol": "C",
                "property.linstor.csi.linbit.com/DrbdOptions/Net/protocol": "A",
            },
            ["a second time"],
        ),
        ({"DrbdOptions/Net/protocol": "C\nD"}, ["one line"]),
    ],
)
def test_refusals_name_the_key(given: dict[str, str], words: list[str]) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_mutable_parameters(given)
    for word in words:
        assert word in str(info.value), str(info.value)


class RecordingClient:
    def __init__(self, fail_autoplace: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail_autoplace = fail_autoplace

    def modify_resource_definition(
        self, name: str, override_props: Any = None, delete_props: Any = ()
    ) -> None:
        self.calls.append(("modify", (dict(override_props or {}), sorted(delete_props))))

    def autoplace(self, name: str, select_filter: Any = None, *, diskless_on_remaining: bool) -> None:
        assert diskless_on_remaining is False  # stated, as every autoplace must
        self.calls.append(("autoplace", select_filter))
        if self.fail_autoplace:
            raise NoSpace("Not enough available nodes")

    def delete_resource(self, name: str, node: str) -> None:
        self.calls.append(("delete", node))


def modifications(current: Volume, client: RecordingClient) -> VolumeModifications:
    """The modifications collaborator as the volume service holds it, over a recording client."""
    return VolumeModifications(client, KeyedLocks(), lambda volume_id: current)  # type: ignore[arg-type]


def volume(replicas: list[Replica], props: dict[str, str] | None = None) -> Volume:
    return Volume(id="pvc-1", name="pvc-1", size_bytes=1 << 20, resource_group="rg", replicas=tuple(replicas),
                  properties=props or {})  # fmt: skip


def disk(node: str, in_use: bool = False, published: bool = False) -> Replica:
    return Replica(node=node, diskless=False, in_use=in_use, published=published)


def test_a_repeat_writes_nothing() -> None:
    client = RecordingClient()
    current = volume([disk("a"), disk("b")], {"DrbdOptions/Net/protocol": "C"})
    modifications(current, client).modify_volume(
        "pvc-1", parse_mutable_parameters({NS + "placementCount": "2", "DrbdOptions/Net/protocol": "C"})
    )
    assert client.calls == []


def test_more_replicas_go_through_autoplace_with_the_total() -> None:
    client = RecordingClient()
    modifications(volume([disk("a")]), client).modify_volume("pvc-1", Changes(place_count=3))
    assert client.calls == [("autoplace", {"place_count": 3})]


def test_surplus_replicas_that_are_free_go_last_name_first() -> None:
    client = RecordingClient()
    replicas = [disk("a", published=True), disk("b"), disk("c", in_use=True), disk("d"), disk("e")]
    modifications(volume(replicas), client).modify_volume("pvc-1", Changes(place_count=3))
    assert client.calls == [("delete", "d"), ("delete", "e")]


def test_too_few_free_replicas_is_refused_before_any_change() -> None:
    client = RecordingClient()
    replicas = [disk("a", published=True), disk("b"), disk("c", in_use=True)]
    with pytest.raises(FailedPrecondition, match=re.escape("the ones on a, c are in use or published")):
        modifications(volume(replicas), client).modify_volume(
            "pvc-1", Changes(place_count=1, set_props={"DrbdOptions/Net/protocol": "A"})
        )
    assert client.calls == []


def test_diskless_replicas_do_not_count() -> None:
    client = RecordingClient()
    replicas = [disk("a"), Replica(node="b", diskless=True, in_use=True)]
    modifications(volume(replicas), client).modify_volume("pvc-1", Changes(place_count=1))
    assert client.calls == []


def test_a_failed_replica_change_puts_the_properties_back() -> None:
    client = RecordingClient(fail_autoplace=True)
    current = volume([disk("a")], {"DrbdOptions/Net/protocol": "C", "Aux/qos.linbit.com/rbps": "5"})
    changes = Changes(
        place_count=4,
        set_props={"DrbdOptions/Net/protocol": "A", "DrbdOptions/Net/max-buffers": "8000"},
        delete_props=("Aux/qos.linbit.com/rbps",),
    )
    with pytest.raises(NoSpace, match="cannot add 3 replica"):
        modifications(current, client).modify_volume("pvc-1", changes)
    assert client.calls == [
        (
            "modify",
            (
                {"DrbdOptions/Net/protocol": "A", "DrbdOptions/Net/max-buffers": "8000"},
                ["Aux/qos.linbit.com/rbps"],
            ),
        ),
        ("autoplace", {"place_count": 4}),
        (
            "modify",
            (
                {"DrbdOptions/Net/protocol": "C", "Aux/qos.linbit.com/rbps": "5"},
                ["DrbdOptions/Net/max-buffers"],
            ),
        ),
    ]
