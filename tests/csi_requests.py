"""The attach requests a CO sends (controller publish, node stage and publish, and their undo).

Tests build them here, one way, instead of spelling the protobuf fields out in every
file: a path may be a ``Path`` or a string, the capability defaults to a plain mount
(what a sidecar sends for a filesystem PVC), and any other field of the request
(``volume_context``, ``secrets``, ``readonly``) passes through by name.

Requests that are malformed on purpose (a field left out to provoke INVALID_ARGUMENT)
stay spelled out where they are tested: a builder would fill in what they leave out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from csi.generated import csi_pb2
from csi.testing import mount_cap

PathLike = str | os.PathLike[str]


def controller_publish(
    volume_id: str, node_id: str, cap: csi_pb2.VolumeCapability | None = None, **fields: Any
) -> csi_pb2.ControllerPublishVolumeRequest:
    return csi_pb2.ControllerPublishVolumeRequest(
        volume_id=volume_id, node_id=node_id, volume_capability=mount_cap() if cap is None else cap, **fields
    )


def controller_unpublish(
    volume_id: str, node_id: str = "", **fields: Any
) -> csi_pb2.ControllerUnpublishVolumeRequest:
    """ControllerUnpublishVolume; without a node it detaches the volume from every node."""
    return csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=node_id, **fields)


def stage(
    volume_id: str,
    staging: PathLike,
    ctx: Mapping[str, str] | None = None,
    cap: csi_pb2.VolumeCapability | None = None,
    **fields: Any,
) -> csi_pb2.NodeStageVolumeRequest:
    """NodeStageVolume with the publish context ControllerPublishVolume answered."""
    return csi_pb2.NodeStageVolumeRequest(
        volume_id=volume_id,
        staging_target_path=os.fspath(staging),
        volume_capability=mount_cap() if cap is None else cap,
        publish_context=dict(ctx or {}),
        **fields,
    )


def publish(
    volume_id: str,
    staging: PathLike,
    target: PathLike,
    ctx: Mapping[str, str] | None = None,
    cap: csi_pb2.VolumeCapability | None = None,
    **fields: Any,
) -> csi_pb2.NodePublishVolumeRequest:
    """NodePublishVolume from the staging path to the pod's target path."""
    return csi_pb2.NodePublishVolumeRequest(
        volume_id=volume_id,
        staging_target_path=os.fspath(staging),
        target_path=os.fspath(target),
        volume_capability=mount_cap() if cap is None else cap,
        publish_context=dict(ctx or {}),
        **fields,
    )


def unpublish(volume_id: str, target: PathLike) -> csi_pb2.NodeUnpublishVolumeRequest:
    return csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=os.fspath(target))


def unstage(volume_id: str, staging: PathLike) -> csi_pb2.NodeUnstageVolumeRequest:
    return csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=os.fspath(staging))
