"""Resource groups: one per parameter set, ensured once per process and remembered.

The official driver reconciles the group on every create; here a group is checked and, if
needed, created or updated the first time a parameter set is seen, and then only
remembered, so a steady-state create is a single spawn call.
"""

from __future__ import annotations

import threading

from plugin.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from plugin.linstor.client import LinstorClient
from plugin.params import placement
from plugin.params.model import VolumeParams


class ResourceGroups:
    """Known resource groups of this process; thread-safe."""

    def __init__(self, client: LinstorClient) -> None:
        self.client = client
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def is_known(self, name: str) -> bool:
        with self._lock:
            return name in self._known

    def ensure(self, params: VolumeParams, name: str) -> str:
        """Create or reconcile the parameter set's resource group ``name``, once per process.

        The caller names the group (``resource_group_name(params)``, computed once per request).

        A derived group (``sc-<uuid>``) is made to match the parameters. An explicitly
        named group that already exists is the operator's: it is used as it is, only
        missing properties are added. Properties are add-only, like the official driver:
        a different existing value is an error rather than a silent change for every
        volume of the group.
        """
        with self._lock:
            if name in self._known:
                return name
        wanted = placement.select_filter(params)
        props = dict(params.properties)
        try:
            group = self.client.get_resource_group(name)
        except NotFound:
            group = None
        if group is None:
            try:
                self.client.create_resource_group(name, wanted, props)
            except AlreadyExists:
                group = self.client.get_resource_group(name)  # made concurrently: reconcile below
            except InvalidArgument as exc:
                raise InvalidArgument(
                    f"LINSTOR rejected resource group {name!r} for these parameters: {exc.message}",
                    **exc.details,
                ) from None
        if group is not None:
            current_props = group.props
            conflicts = placement.property_conflicts(props.items(), current_props)
            if conflicts:
                key = conflicts[0]
                raise FailedPrecondition(
                    f"resource group {name!r} already has property {key}={current_props[key]!r}, "
                    f"these parameters ask for {props[key]!r}; existing property values are never changed",
                    resource_group=name,
                    keys=conflicts,
                )
            missing = {k: v for k, v in props.items() if k not in current_props}
            changes = (
                None if params.resource_group else placement.filter_differences(wanted, group.select_filter)
            )
            if missing or changes:
                self.client.modify_resource_group(name, select_filter=changes or None, override_props=missing)
        with self._lock:
            self._known.add(name)
        return name

    def forget(self, name: str) -> None:
        """Drop a group from the cache (it vanished behind our back), so the next ensure makes it."""
        with self._lock:
            self._known.discard(name)
