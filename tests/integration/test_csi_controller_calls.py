"""REST calls per ControllerPublishVolume and ControllerUnpublishVolume, counted.

Each publish reads the volume once (its definition, then its resources with their
properties and volumes) and takes the node's resource from that read for the compatibility
check, the attach (and the device of a resource that was there) and the publication record.
The publication is written in the same request as the plugin's mark on a diskless resource
it made. An unpublish reads the node's resource and the definition once each and drops the
record with the detach. The counts are pinned here so they cannot silently grow
back; the crash safety they must keep is the business of test_interrupted_calls.py and
tests/fault/.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests

from csi.generated import csi_pb2
from csi.testing import block_cap
from tests.integration.csi_stack import Stack, csi_stack, rest_calls

MIB = 1024**2
NODE_LIST = "linstor.csi.linbit.com/nodeList"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with csi_stack(tmp_path_factory.mktemp("csi-controller-calls"), "csi-controller-calls-") as made:
        yield made


def volume_on_node_b(stack: Stack) -> str:
    """A new volume with its one replica on node-b."""
    return stack.ctl.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=f"pvc-{uuid.uuid4()}",
            capacity_range=csi_pb2.CapacityRange(required_bytes=16 * MIB),
            volume_capabilities=[block_cap()],
            parameters={NODE_LIST: "node-b"},
        )
    ).volume.volume_id


def publish(stack: Stack, volume_id: str, node: str) -> tuple[dict[str, str], float]:
    """Publish the volume to ``node``: its publish context and the REST calls it took."""
    before = rest_calls()
    request = csi_pb2.ControllerPublishVolumeRequest(
        volume_id=volume_id, node_id=node, volume_capability=block_cap()
    )
    answer = stack.ctl.ControllerPublishVolume(request)
    return dict(answer.publish_context), rest_calls() - before


def unpublish(stack: Stack, volume_id: str, node: str) -> float:
    before = rest_calls()
    stack.ctl.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=node)
    )
    return rest_calls() - before


def published_nodes(stack: Stack, volume_id: str) -> set[str]:
    """The nodes the driver reports the volume published to, read back from LINSTOR."""
    answer = stack.ctl.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(volume_id=volume_id))
    return set(answer.status.published_node_ids)


def resource_nodes(stack: Stack, volume_id: str) -> set[str]:
    """The nodes holding a resource of the volume, asked of the emulator directly (not counted)."""
    answer = requests.get(f"{stack.emulator.url}/v1/resource-definitions/{volume_id}/resources", timeout=30)
    answer.raise_for_status()
    return {r["node_name"] for r in answer.json()}


def test_a_diskless_attach_to_another_node_and_its_undo(stack: Stack) -> None:
    volume_id = volume_on_node_b(stack)
    context, calls = publish(stack, volume_id, "node-c")
    assert context["linstor.csi.linbit.com/device-path"]
    # read the volume (definition, resources), note the intent, make-available, read the new
    # device, mark it the plugin's with the publication in the same write, clear the intent
    assert calls == 7
    assert published_nodes(stack, volume_id) == {"node-c"}
    _, again = publish(stack, volume_id, "node-c")
    assert again == 2  # the same publication again: the volume read only, nothing written
    # read the resource and the definition (its two-primaries option too), delete the resource
    assert unpublish(stack, volume_id, "node-c") == 3
    assert published_nodes(stack, volume_id) == set()
    assert resource_nodes(stack, volume_id) == {"node-b"}  # the diskless resource went


def test_an_attach_where_the_node_holds_a_replica(stack: Stack) -> None:
    volume_id = volume_on_node_b(stack)
    context, calls = publish(stack, volume_id, "node-b")
    assert context["linstor.csi.linbit.com/device-path"]
    assert calls == 3  # read the volume (its replica names the device), record the publication
    assert published_nodes(stack, volume_id) == {"node-b"}
    _, again = publish(stack, volume_id, "node-b")
    assert again == 2
    # read the resource and the definition (its two-primaries option too), drop the record
    assert unpublish(stack, volume_id, "node-b") == 3
    assert published_nodes(stack, volume_id) == set()
    assert resource_nodes(stack, volume_id) == {"node-b"}  # the replica stays
