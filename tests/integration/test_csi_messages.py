"""What a CO reads when LINSTOR says no, what the driver logs, and a clone's progress.

The in-process driver on the emulator (the local node, node-b and node-c): CreateVolume
calls whose placement cannot succeed get a status code and a sentence naming the cause,
the driver's log line for the call carries that sentence, and a clone made slow by the
emulator's latency is listed and reported at intervals while the CO waits.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from csi.generated import csi_pb2
from csi.testing import mount_cap
from plugin import progress
from plugin.names import resource_name_for
from testkit.waiting import wait_until
from tests.integration.csi_stack import Stack, csi_stack

MIB = 1024**2
PREFIX = "linstor.csi.linbit.com/"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with csi_stack(tmp_path_factory.mktemp("csi-messages"), "csi-msg-") as made:
        yield made


def create(stack: Stack, name: str, size: int, params: dict[str, str], **extra: Any) -> csi_pb2.Volume:
    request = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range={"required_bytes": size},
        volume_capabilities=[mount_cap()],
        parameters=params,
        **extra,
    )
    return stack.csi.controller.CreateVolume(request, timeout=120).volume


@pytest.mark.parametrize(
    ("params", "size", "code", "says"),
    [
        (
            {PREFIX + "nodeList": "node-b no-such-node"},
            16 * MIB,
            grpc.StatusCode.INVALID_ARGUMENT,
            "(16 MiB, 2 replicas on node-b, no-such-node): node no-such-node is not a LINSTOR node",
        ),
        (
            {PREFIX + "storagePool": "no-such-pool"},
            16 * MIB,
            grpc.StatusCode.INVALID_ARGUMENT,
            "storage pool no-such-pool does not exist on any node (storage pools: DfltStorPool)",
        ),
        (
            {},
            500 * 1024**4,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "(500 TiB, 1 replica): no storage pool has 500 TiB free; the most free space is ",
        ),
        (
            {PREFIX + "placementCount": "5"},
            16 * MIB,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "5 replicas asked for, but only 3 nodes have a storage pool",
        ),
    ],
    ids=["unknown-node", "unknown-pool", "size", "replicas"],
)
def test_a_refused_placement_says_why_and_the_log_line_carries_it(
    stack: Stack,
    caplog: pytest.LogCaptureFixture,
    params: dict[str, str],
    size: int,
    code: grpc.StatusCode,
    says: str,
) -> None:
    name = f"pvc-{uuid.uuid4()}"
    with caplog.at_level(logging.INFO, logger="csi.rpc"), pytest.raises(grpc.RpcError) as failed:
        create(stack, name, size, params)
    assert failed.value.code() == code
    assert says in failed.value.details()
    assert str(size) not in failed.value.details()  # human units, not bytes
    ids = [v.volume.volume_id for v in stack.csi.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries]
    assert resource_name_for(name) not in ids  # nothing was made
    lines = [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "csi.rpc" and getattr(r, "fields", {}).get("volume") == name
    ]
    assert len(lines) == 1
    assert lines[0]["result"] in ("InvalidArgument", "NoSpace")
    assert lines[0]["error"] == failed.value.details()
    assert lines[0]["duration_ms"] >= 0


def test_a_slow_clone_is_listed_and_reported_at_intervals(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    source = create(stack, f"pvc-{uuid.uuid4()}", 16 * MIB, {})
    name = f"pvc-{uuid.uuid4()}"
    target = resource_name_for(name)
    progress.set_interval(0.2)
    answer = stack.emulator.control("latency", {"ms": 1500, "paths": "clone"})
    assert answer.ok, answer.text
    made: dict[str, Any] = {}

    def clone() -> None:
        made["volume"] = create(
            stack,
            name,
            16 * MIB,
            {},
            volume_content_source=csi_pb2.VolumeContentSource(
                volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=source.volume_id)
            ),
        )

    seen: list[str] = []
    with caplog.at_level(logging.INFO, logger="plugin.progress"):
        worker = threading.Thread(target=clone)
        worker.start()
        try:

            def listed_or_finished() -> tuple[list[str]] | None:
                now = [op.describe() for op in progress.under_way(target)]
                return (now,) if now or not worker.is_alive() else None

            (seen,) = wait_until(listed_or_finished, timeout=60, what="the clone listed as under way")
        finally:
            worker.join(120)
            stack.emulator.control("latency", {"ms": 0})
            progress.set_interval(progress.DEFAULT_INTERVAL)
    assert made["volume"].content_source.volume.volume_id == source.volume_id
    assert seen and seen[0].startswith(f"cloning from volume {source.volume_id} for ")
    assert progress.under_way(target) == []  # done: no longer listed
    still = [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "plugin.progress" and r.getMessage() == "still working"
    ]
    mine = [f for f in still if f["volume"] == target]
    assert len(mine) >= 2, still
    assert mine[-1]["operation"] == f"cloning from volume {source.volume_id}"
    assert mine[-1]["detail"]  # the step it was at: LINSTOR's clone status, or the snapshot copy
    assert mine[-1]["elapsed_s"] > mine[0]["elapsed_s"]


def test_a_slow_create_reports_at_intervals(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """With a real LINSTOR a satellite formats the volume during the spawn: that wait is reported."""
    name = f"pvc-{uuid.uuid4()}"
    progress.set_interval(0.2)
    answer = stack.emulator.control("latency", {"ms": 1500, "paths": "spawn"})
    assert answer.ok, answer.text
    try:
        with caplog.at_level(logging.INFO, logger="plugin.progress"):
            create(stack, name, 16 * MIB, {})
    finally:
        stack.emulator.control("latency", {"ms": 0})
        progress.set_interval(progress.DEFAULT_INTERVAL)
    target = resource_name_for(name)
    mine = [
        (r.getMessage(), r.fields)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "plugin.progress" and r.fields["volume"] == target  # type: ignore[attr-defined]
    ]
    assert [m for m, _ in mine][-1] == "long operation done"
    assert sum(m == "still working" for m, _ in mine) >= 2
    assert mine[0][1]["operation"] == "creating in LINSTOR (16 MiB, ext4)"
