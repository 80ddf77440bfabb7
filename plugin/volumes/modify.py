"""Change an existing volume: the CSI ``mutable_parameters`` (VolumeAttributesClass).

Mutable keys, and nothing else (an unknown key is refused by name before anything changes):

- ``linstor.csi.linbit.com/placementCount`` (alias ``autoPlace``, bare spellings too): the
  number of diskful replicas. More are added through LINSTOR's autoplace (the volume's
  resource group's placement rules apply); fewer remove surplus diskful replicas that are
  neither in use nor published to a node.
- ``DrbdOptions/<...>`` and ``property.linstor.csi.linbit.com/<LINSTOR key>``: properties of
  the volume's resource definition (they win over the resource group's, as LINSTOR looks
  them up). An empty value removes the volume's own value.
- ``qos.linbit.com/{rbps,wbps,riops,wiops}``: IO limits (:mod:`plugin.params.qos`), stored on the
  resource definition; they reach a node with its next publication. Empty or 0: unlimited.

A repeated call finds nothing to change and writes nothing. Properties are written in one
LINSTOR call first (LINSTOR checks them: a bad ``DrbdOptions`` value changes nothing);
replicas follow, and when they cannot, the properties are put back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from plugin import volume_records as rec
from plugin.errors import FailedPrecondition, InvalidArgument, NoSpace, NotFound, VolumeError
from plugin.observability import log_fields
from plugin.params import qos
from plugin.params.keys import (
    CSI_NAMESPACE,
    CSI_PARAMETERS,
    LEGACY_PROPERTY_NAMESPACE,
    MAX_KEYS,
    PROPERTY_NAMESPACE,
)
from plugin.params.values import BadValue, parse_replicas

if TYPE_CHECKING:
    from plugin.keyed_locks import KeyedLocks
    from plugin.linstor.client import LinstorClient
    from plugin.models import Volume

log = logging.getLogger(__name__)

REPLICA_KEYS = ("placementcount", "autoplace")
#: Property names a mutable parameter may not touch: the plugin's record, limits and filesystem.
PROTECTED_PREFIXES = (rec.AUX, "Aux/qos.linbit.com/", "FileSystem/")
MUTABLE_KEYS_TEXT = (
    f"{CSI_NAMESPACE}/placementCount, {LEGACY_PROPERTY_NAMESPACE}/<option>, "
    f"{PROPERTY_NAMESPACE}/<LINSTOR key>, " + ", ".join(qos.LIMIT_KEYS)
)


@dataclass(frozen=True)
class Changes:
    """What a set of mutable parameters asks for, validated."""

    place_count: int | None = None
    set_props: dict[str, str] = field(default_factory=dict)
    delete_props: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.place_count is not None or bool(self.set_props) or bool(self.delete_props)


def _show(text: str) -> str:
    one_line = text.replace("\n", "\\n").replace("\0", "\\0")
    return one_line if len(one_line) <= 80 else one_line[:77] + "..."


def _property_name(key: str, name: str) -> str:
    if (
        not name
        or name.startswith("/")
        or name.endswith("/")
        or "//" in name
        or any(c.isspace() for c in name)
    ):
        raise InvalidArgument(
            f'invalid mutable parameter "{_show(key)}": expected a LINSTOR property name after the prefix, '
            f'such as "{PROPERTY_NAMESPACE}/DrbdOptions/PeerDevice/c-max-rate"',
            key=key,
        )
    if name.startswith(PROTECTED_PREFIXES):
        raise InvalidArgument(
            f'mutable parameter "{_show(key)}" would change {name}, which the plugin keeps for the volume '
            f"(its record and filesystem are fixed when it is made; IO limits are set with "
            f"{', '.join(qos.LIMIT_KEYS)})",
            key=key,
        )
    return name


def parse_mutable_parameters(parameters: Mapping[str, str]) -> Changes:
    """Validate mutable parameters; every problem names its key, and nothing has changed yet."""
    if len(parameters) > MAX_KEYS:
        raise InvalidArgument(f"{len(parameters)} mutable parameters are too many: at most {MAX_KEYS}")
    place_count: tuple[str, int] | None = None
    set_props: dict[str, str] = {}
    delete_props: list[str] = []
    for key, raw in sorted(parameters.items()):
        value = "" if raw is None else str(raw)
        if len(key) > 256 or len(value) > 4096:
            raise InvalidArgument(f'mutable parameter "{_show(key)}" or its value is too long', key=key[:256])
        namespace, slash, rest = key.partition("/")
        if not slash:
            namespace, rest = "", key
        space = namespace.lower()
        if space in ("", CSI_NAMESPACE):
            place_count = _replica_count(key, rest, value, place_count)
            continue
        if space in (PROPERTY_NAMESPACE, LEGACY_PROPERTY_NAMESPACE.lower()):
            name = _property_name(key, rest if space == PROPERTY_NAMESPACE else key)
        elif key in qos.LIMIT_KEYS:
            limit = qos.parse_limit(key, value) if value.strip() else 0
            name, value = qos.AUX + key, str(limit) if limit else ""
        else:
            raise InvalidArgument(
                f'mutable parameter "{_show(key)}" cannot be changed on a volume: the mutable '
                f"parameters are {MUTABLE_KEYS_TEXT}",
                key=key,
            )
        if "\0" in value or "\n" in value:
            raise InvalidArgument(
                f'invalid value for mutable parameter "{_show(key)}": expected text on one line'
            )
        if name in set_props or name in delete_props:
            raise InvalidArgument(
                f'mutable parameter "{_show(key)}" names property {name} a second time', key=key
            )
        if value.strip():
            set_props[name] = value.strip()
        else:
            delete_props.append(name)
    return Changes(
        place_count=place_count[1] if place_count else None,
        set_props=set_props,
        delete_props=tuple(delete_props),
    )


def _replica_count(key: str, rest: str, value: str, previous: tuple[str, int] | None) -> tuple[str, int]:
    if rest.lower() not in REPLICA_KEYS:
        known = {spec.name.lower() for spec in CSI_PARAMETERS}
        what = "is not a parameter of this driver"
        if rest.lower() in known:
            what = "is a StorageClass parameter that cannot be changed on a volume"
        raise InvalidArgument(
            f'mutable parameter "{_show(key)}" {what}: the mutable parameters are {MUTABLE_KEYS_TEXT}',
            key=key,
        )
    try:
        count = parse_replicas(value)
    except BadValue as exc:
        raise InvalidArgument(
            f'invalid value "{_show(value)}" for mutable parameter "{_show(key)}": {exc.expected}', key=key
        ) from None
    if previous is not None and previous[1] != count:
        raise InvalidArgument(
            f'mutable parameters "{_show(previous[0])}" and "{_show(key)}" ask for different replica counts '
            f"({previous[1]} and {count}): give only one",
            key=key,
        )
    return key, count


class VolumeModifications:
    """Apply mutable parameters to a volume; held by the volume service.

    ``get_volume`` is the service's own (a consistency-group service reads members there).
    """

    def __init__(self, client: LinstorClient, locks: KeyedLocks, get_volume: Callable[[str], Volume]) -> None:
        self.client = client
        self.locks = locks
        self.get_volume = get_volume

    def modify_volume(self, volume_id: str, changes: Changes) -> Volume:
        """Bring the volume to what ``changes`` asks; already there is a no-op."""
        if not rec.possible_volume_id(volume_id):
            raise NotFound(f"volume {volume_id!r} not found", volume=volume_id)
        with self.locks.lock(volume_id):
            volume = self.get_volume(volume_id)
            removals = self._replicas_to_remove(volume, changes.place_count)
            props = volume.properties
            to_set = {k: v for k, v in changes.set_props.items() if props.get(k) != v}
            to_delete = [k for k in changes.delete_props if k in props]
            if to_set or to_delete:
                self.client.modify_resource_definition(
                    volume_id, override_props=to_set, delete_props=to_delete
                )
                changed = {"set": sorted(to_set), "deleted": sorted(to_delete)}
                log_fields(log, logging.INFO, "volume properties changed", volume=volume_id, **changed)
            try:
                self._change_replicas(volume, changes.place_count, removals)
            except VolumeError:
                if to_set or to_delete:
                    self._put_back(volume_id, props, to_set, to_delete)
                raise
            return self.get_volume(volume_id) if (to_set or to_delete or changes.place_count) else volume

    # ------------------------------------------------------------------ replicas

    @staticmethod
    def _replicas_to_remove(volume: Volume, wanted: int | None) -> list[str]:
        """Nodes whose diskful replica goes; refused before anything changes when too few may go."""
        diskful = [r for r in volume.replicas if not r.diskless]
        if wanted is None or wanted >= len(diskful):
            return []
        surplus = len(diskful) - wanted
        free = sorted((r for r in diskful if not r.in_use and not r.published), key=lambda r: r.node)
        if len(free) < surplus:
            busy = sorted(r.node for r in diskful if r.in_use or r.published)
            raise FailedPrecondition(
                f"volume {volume.id} has {len(diskful)} replicas with data and {wanted} were asked for, "
                f"but only {len(free)} of them may go: the ones on {', '.join(busy)} are in use or "
                "published there. "
                "Unpublish the volume from those nodes, or ask for more replicas",
                volume=volume.id,
                nodes=busy,
            )
        # the last in name order go first: stable, so a retry removes the same ones
        return [r.node for r in free[-surplus:]]

    def _change_replicas(self, volume: Volume, wanted: int | None, removals: list[str]) -> None:
        if wanted is None:
            return
        diskful = len([r for r in volume.replicas if not r.diskless])
        if wanted > diskful:
            try:
                self.client.autoplace(
                    volume.id, select_filter={"place_count": wanted}, diskless_on_remaining=False
                )
            except NoSpace as exc:
                raise NoSpace(
                    f"LINSTOR cannot add {wanted - diskful} replica(s) to volume {volume.id} "
                    f"({diskful} now, {wanted} asked for): {exc.message}",
                    **exc.details,
                ) from None
            log_fields(log, logging.INFO, "replicas added", volume=volume.id, replicas=wanted)
            return
        for node in removals:
            with suppress(NotFound):
                self.client.delete_resource(volume.id, node)
            log_fields(log, logging.INFO, "replica removed", volume=volume.id, node=node)

    def _put_back(
        self, volume_id: str, before: Mapping[str, str], to_set: Mapping[str, str], to_delete: list[str]
    ) -> None:
        restore = {k: before[k] for k in (*to_set, *to_delete) if k in before}
        remove = [k for k in to_set if k not in before]
        with suppress(VolumeError):
            self.client.modify_resource_definition(volume_id, override_props=restore, delete_props=remove)


def mutable_keys() -> Iterator[tuple[str, str]]:
    """(key, meaning) of every mutable parameter, for the generated reference."""
    yield (
        f"{CSI_NAMESPACE}/placementCount",
        (
            "Number of diskful replicas. More: LINSTOR's autoplace adds them under the resource group's "
            "placement rules. Fewer: surplus replicas that are neither in use nor published are removed "
            "(refused with FAILED_PRECONDITION when too few may go)."
        ),
    )
    yield (
        f"{LEGACY_PROPERTY_NAMESPACE}/<section>/<option>",
        (
            "A DRBD option on the volume's resource definition, e.g. `DrbdOptions/PeerDevice/c-max-rate` "
            "for resync tuning. LINSTOR checks name and value. "
            "Empty value: the volume's own value is removed."
        ),
    )
    yield (
        f"{PROPERTY_NAMESPACE}/<LINSTOR key>",
        (
            "Any LINSTOR property on the volume's resource definition "
            "(not the plugin's own `Aux/volume-plugin/` record). Empty value: removed."
        ),
    )
    for key in qos.LIMIT_KEYS:
        unit = "bytes per second" if key.endswith("bps") else "operations per second"
        yield (
            key,
            (
                f"IO limit in {unit} (Kubernetes quantity); empty or 0: unlimited. "
                "Holds for the next pod that mounts the volume."
            ),
        )
