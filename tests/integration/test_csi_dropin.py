"""Drop-in fidelity against the emulator: LINBIT's StorageClass combinations provision, and the
``allowRemoteVolumeAccess`` rules decide the accessible topology and the volume context.

Zones come from node properties under the driver's property namespace (``Aux/`` by
default), the labels NodeGetInfo reports. Needs root and loop devices (skips on a
developer machine, fails in CI).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
import requests

from csi.generated import csi_pb2
from csi.testing import mount_cap
from tests.integration.csi_stack import LOCAL, Stack, csi_stack

NS = "linstor.csi.linbit.com/"
ZONE = "topology.kubernetes.io/zone"
ZONES = {LOCAL: "z1", "node-b": "z1", "node-c": "z2"}
POLICY = NS + "remote-access-policy"
DISKLESS = {"DISKLESS", "DRBD_DISKLESS"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with csi_stack(tmp_path_factory.mktemp("csi-dropin"), "csi-dropin-") as made:
        for node, zone in ZONES.items():
            answer = requests.put(
                f"{made.emulator.url}/v1/nodes/{node}",
                json={"override_props": {f"Aux/{ZONE}": zone}},
                timeout=10,
            )
            assert answer.ok, answer.text
        yield made


def create(stack: Stack, parameters: dict[str, str]) -> csi_pb2.Volume:
    return stack.csi.controller.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=f"pvc-{uuid.uuid4()}",
            capacity_range=csi_pb2.CapacityRange(required_bytes=16 * 1024**2),
            volume_capabilities=[mount_cap()],
            parameters=parameters,
        )
    ).volume


def delete(stack: Stack, volume_id: str) -> None:
    stack.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id))


def placed(stack: Stack, volume_id: str) -> tuple[list[str], list[str]]:
    """(diskful nodes, diskless nodes) as LINSTOR lists them, without the controller's own
    quorum tie-breaker (it adds one beside an even number of diskful replicas)."""
    listed = [
        r
        for r in requests.get(
            f"{stack.emulator.url}/v1/resource-definitions/{volume_id}/resources", timeout=10
        ).json()
        if "TIE_BREAKER" not in (r.get("flags") or ())
    ]
    diskful = sorted(r["node_name"] for r in listed if not DISKLESS & set(r.get("flags") or ()))
    diskless = sorted(r["node_name"] for r in listed if DISKLESS & set(r.get("flags") or ()))
    return diskful, diskless


def topology(volume: csi_pb2.Volume) -> list[dict[str, str]]:
    return sorted((dict(t.segments) for t in volume.accessible_topology), key=lambda s: sorted(s.items()))


RULE = f"[{{fromSame: [{ZONE}]}}]"


@pytest.mark.parametrize(
    ("parameters", "expected", "policy"),
    [
        (
            {NS + "nodeList": "node-c", NS + "allowRemoteVolumeAccess": RULE},
            [{ZONE: "z2"}],
            f"- fromSame:\n  - {ZONE}\n",
        ),
        (
            {NS + "nodeList": f"{LOCAL} node-c", NS + "allowRemoteVolumeAccess": RULE},
            [{ZONE: "z1"}, {ZONE: "z2"}],
            f"- fromSame:\n  - {ZONE}\n",
        ),
        (
            {NS + "nodeList": f"{LOCAL} node-b", NS + "allowRemoteVolumeAccess": RULE},
            [{ZONE: "z1"}],  # two replicas in one zone: one segment
            f"- fromSame:\n  - {ZONE}\n",
        ),
        (
            {NS + "nodeList": "node-c", NS + "allowRemoteVolumeAccess": "false"},
            [{"linbit.com/hostname": "node-c"}],
            "false",
        ),
        ({NS + "nodeList": "node-c"}, [], "true"),
        (
            {NS + "nodeList": "node-c", NS + "allowRemoteVolumeAccess": "[{fromSame: [example.com/rack]}]"},
            [],  # the nodes have no such label: nothing restricts access
            "- fromSame:\n  - example.com/rack\n",
        ),
    ],
)
def test_remote_access_rules_decide_the_accessible_topology(
    stack: Stack, parameters: dict[str, str], expected: list[dict[str, str]], policy: str
) -> None:
    volume = create(stack, parameters)
    assert topology(volume) == expected
    assert volume.volume_context[POLICY] == policy
    got = stack.csi.controller.ControllerGetVolume(
        csi_pb2.ControllerGetVolumeRequest(volume_id=volume.volume_id)
    )
    assert dict(got.volume.volume_context) == dict(volume.volume_context)  # kept on the volume
    delete(stack, volume.volume_id)


def test_autoplace_keys_next_to_a_node_list_are_ignored(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="csi.controller")
    volume = create(
        stack,
        {
            NS + "nodeList": f"{LOCAL} node-b",
            NS + "placementCount": "3",
            NS + "replicasOnDifferent": ZONE,
            NS + "placementPolicy": "AutoPlaceTopology",
        },
    )
    assert placed(stack, volume.volume_id) == (sorted([LOCAL, "node-b"]), [])
    noted = " ".join(r.getMessage() for r in caplog.records if r.name == "csi.controller")
    for key in ("placementCount", "replicasOnDifferent", "placementPolicy"):
        assert f"{NS}{key}" in noted and "is ignored" in noted, noted  # the driver says what it ignored
    delete(stack, volume.volume_id)


def test_a_client_list_alone_places_replicas_automatically(stack: Stack) -> None:
    volume = create(stack, {NS + "clientList": "node-c", NS + "placementCount": "1"})
    diskful, diskless = placed(stack, volume.volume_id)
    assert len(diskful) == 1 and "node-c" not in diskful
    assert diskless == ["node-c"]
    delete(stack, volume.volume_id)


def test_manual_without_nodes_places_automatically(stack: Stack) -> None:
    volume = create(stack, {NS + "placementPolicy": "Manual", NS + "placementCount": "2"})
    assert len(placed(stack, volume.volume_id)[0]) == 2
    delete(stack, volume.volume_id)
