"""The resource group of a parameter set: its canonical settings and its derived name.

A parameter set maps to one LINSTOR resource group. Without an explicit name the group
is named after a hash of its canonical settings, so classes (or Docker option sets) that
describe the same placement share one group, on every replica of the plugin alike.
"""

from __future__ import annotations

import json
import uuid

from plugin.params.keys import CSI_NAMESPACE
from plugin.params.model import VolumeParams

_RG_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, CSI_NAMESPACE)


def resource_group_settings(params: VolumeParams) -> dict[str, object]:
    """The settings that describe a resource group, in canonical form (order-free lists sorted)."""
    return {
        "place_count": params.place_count,
        "storage_pools": sorted(params.storage_pools),
        "diskless_storage_pool": params.diskless_storage_pool,
        "diskless_on_remaining": params.diskless_on_remaining,
        "layer_list": list(params.layer_list),
        "replicas_on_same": sorted(params.replicas_on_same),
        "replicas_on_different": sorted(params.replicas_on_different),
        "x_replicas_on_different": sorted([k, v] for k, v in params.x_replicas_on_different),
        "do_not_place_with_regex": params.do_not_place_with_regex,
        "properties": sorted([k, v] for k, v in params.properties),
    }


def resource_group_name(params: VolumeParams) -> str:
    """The explicit resource group, else ``sc-<uuid5>`` of the canonical RG settings.

    Identical settings give the same name, so classes (or Docker option sets) that
    describe the same placement share one resource group.
    """
    if params.resource_group:
        return params.resource_group
    canonical = json.dumps(resource_group_settings(params), sort_keys=True, separators=(",", ":"))
    return f"sc-{uuid.uuid5(_RG_NAMESPACE, canonical)}"
