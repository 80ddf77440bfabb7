"""Reading deployment and DRBD disk states out of LINSTOR's resource view (as the client converts it)."""

from __future__ import annotations

from typing import Any

from plugin.linstor.records import Resource
from plugin.volumes import replica_states


def _wire(node: str, state: str | None, flags: tuple[str, ...] = (), online: bool = True) -> dict[str, Any]:
    volume: dict[str, Any] = {
        "volume_number": 0,
        "provider_kind": "DISKLESS" if "DISKLESS" in flags else "FILE",
        "layer_data_list": [{"type": "DRBD"}, {"type": "STORAGE"}],
    }
    if state is not None:
        volume["state"] = {"disk_state": state}
    out: dict[str, Any] = {"node_name": node, "flags": list(flags), "volumes": [volume]}
    if online:
        out["state"] = {"in_use": False}
    return out


def _rsc(node: str, state: str | None, flags: tuple[str, ...] = (), online: bool = True) -> Resource:
    return Resource.from_wire(_wire(node, state, flags, online))


def test_undeployed_is_a_connected_diskful_replica_without_a_disk_state() -> None:
    resources = [
        _rsc("a", "UpToDate"),
        _rsc("b", None),  # its satellite failed to deploy it
        _rsc("c", None, online=False),  # offline: nothing known, not counted
        _rsc("d", "Diskless", ("DISKLESS", "DRBD_DISKLESS", "TIE_BREAKER")),
    ]
    assert replica_states.undeployed(resources) == ["b"]


def test_not_up_to_date_names_each_replica_and_its_state() -> None:
    resources = [
        _rsc("a", "UpToDate"),
        _rsc("b", "Inconsistent"),
        _rsc("c", "Outdated"),
        _rsc("d", "Diskless", ("DISKLESS", "DRBD_DISKLESS")),
    ]
    assert replica_states.not_up_to_date(resources) == [("b", "Inconsistent"), ("c", "Outdated")]


def test_storage_only_volumes_have_no_drbd_state_to_judge() -> None:
    wire = _wire("a", None)
    wire["volumes"][0]["layer_data_list"] = [{"type": "STORAGE"}]
    resource = Resource.from_wire(wire)
    assert replica_states.undeployed([resource]) == []
    assert replica_states.not_up_to_date([resource]) == []
