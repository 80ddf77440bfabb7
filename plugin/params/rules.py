"""Rules both dialects share: contradictions between keys, and the final model.

A request's collected settings (:mod:`plugin.params.collect`) are checked against each
other here (manual placement against autoplace settings, diskless wishes against the
layer stack, options against the volume's filesystem) and turned into
:class:`~plugin.params.model.VolumeParams`. In the lenient CSI dialect, combinations
LINBIT's driver accepts by ignoring a key are ignored here too, with a note.
"""

from __future__ import annotations

from plugin.errors import InvalidArgument
from plugin.params.collect import Settings, show
from plugin.params.fs_options import OptionError, check_mkfs_options, split_mkfs_options
from plugin.params.keys import CSI_NAMESPACE
from plugin.params.model import (
    AUTOPLACE_ONLY_FIELDS,
    DEFAULT_PROPERTY_NAMESPACE,
    DISKLESS_LAYERS,
    PLACEMENT_POLICIES,
    VolumeParams,
    in_namespace,
)
from plugin.params.mount_rules import split_mount_options


def check_filesystem_options(settings: Settings, fs_type: str) -> None:
    """mkfs and mount options against the allow-lists of the volume's own filesystem."""
    if settings.has("mkfs_opts"):
        given = settings.values["mkfs_opts"]
        try:
            check_mkfs_options(split_mkfs_options(given.value), fs_type)
        except OptionError as exc:
            raise InvalidArgument(
                f'invalid value "{show(given.raw)}" for {settings.label("mkfs_opts")}: {exc}', key=given.key
            ) from None
    if settings.has("mount_opts"):
        given = settings.values["mount_opts"]
        try:
            split_mount_options(given.value, fs_type)
        except InvalidArgument as exc:
            raise InvalidArgument(
                f'invalid value "{show(given.raw)}" for {settings.label("mount_opts")}: {exc}', key=given.key
            ) from None


def _check_manual_placement(settings: Settings) -> None:
    nodes: tuple[str, ...] = settings.get("nodes", ())
    clients: tuple[str, ...] = settings.get("client_nodes", ())
    manual_key = "nodes" if settings.has("nodes") else "client_nodes"
    if settings.has("placement_policy"):
        policy = settings.get("placement_policy")
        if (nodes or (clients and not settings.lenient)) and policy != "manual":
            raise InvalidArgument(
                f"{settings.label('placement_policy')} is {PLACEMENT_POLICIES[policy]}, but "
                f"{settings.label(manual_key)} places replicas by hand (Manual): drop one of them"
            )
        if policy == "manual" and not nodes:
            raise InvalidArgument(
                f"{settings.label('placement_policy')} is Manual, which needs the diskful nodes "
                f'in "{CSI_NAMESPACE}/nodeList"'
            )
    if not (nodes or clients):
        return
    if clients and not nodes and not settings.lenient:
        raise InvalidArgument(
            f'{settings.label("client_nodes")} needs diskful nodes as well: set "{CSI_NAMESPACE}/nodeList"'
        )
    both = sorted({n.lower() for n in nodes} & {n.lower() for n in clients})
    if both:
        raise InvalidArgument(
            f"{settings.label('client_nodes')} and {settings.label('nodes')} both name "
            f"{', '.join(both)}: a node is either diskful or diskless"
        )
    if not nodes:
        return  # a clientList alone (CSI): LINSTOR places the replicas, clients get diskless ones
    if settings.has("place_count") and settings.get("place_count") != len(nodes):
        raise InvalidArgument(
            f"{settings.label('place_count')} is {settings.get('place_count')}, but "
            f"{settings.label('nodes')} names {len(nodes)} node(s): leave out "
            f'"{settings.values["place_count"].key}", or name as many nodes as replicas'
        )
    pools: tuple[str, ...] = settings.get("storage_pools", ())
    if len(pools) > 1 and not settings.lenient:  # CSI: LINSTOR picks among the pools on those nodes
        raise InvalidArgument(
            f"{settings.label('storage_pools')} names {len(pools)} pools, but {settings.label('nodes')} "
            "places replicas by hand, which uses one pool on every node: name one storage pool"
        )
    for fld in AUTOPLACE_ONLY_FIELDS:
        if settings.has(fld) and settings.get(fld) not in (False, (), ""):
            raise InvalidArgument(
                f"{settings.label(fld)} only applies when LINSTOR places replicas automatically, "
                f"but {settings.label('nodes')} places them by hand: drop one of them"
            )


def _ignore_as_linbit(settings: Settings) -> None:
    """StorageClass combinations LINBIT's driver accepts by ignoring a key: ignored here too, with a note.

    Only combinations it accepts *and* provisions; what fails there at provisioning (a node
    in both lists, diskless resources without drbd or nvme) is still refused here, earlier.
    """
    nodes: tuple[str, ...] = settings.get("nodes", ())
    clients: tuple[str, ...] = settings.get("client_nodes", ())
    policy = settings.get("placement_policy")
    if nodes:
        by_hand = f"{settings.label('nodes')} places the replicas by hand"
        if settings.has("place_count") and settings.get("place_count") != len(nodes):
            settings.drop("place_count", f"{by_hand}, one on each node named")
        for fld in AUTOPLACE_ONLY_FIELDS:
            if settings.has(fld) and settings.get(fld) not in (False, (), ""):
                settings.drop(fld, f"{by_hand}; it only applies when LINSTOR places them")
        if policy not in (None, "manual"):
            settings.drop("placement_policy", f"{by_hand} (Manual)")
    elif clients:
        settings.notes.append(
            f"{settings.label('client_nodes')} without a nodeList: LINSTOR places the replicas with data "
            "automatically and the client nodes get diskless resources"
        )
        if policy == "manual":
            settings.drop("placement_policy", "Manual placement needs a nodeList")
    elif policy == "manual":
        settings.drop("placement_policy", "Manual placement needs a nodeList; LINSTOR places the replicas")
    layers: tuple[str, ...] = settings.get("layer_list", ())
    if layers and not DISKLESS_LAYERS & set(layers):
        nothing_diskless = f"{settings.label('layer_list')} has neither drbd nor nvme, so nothing is diskless"
        settings.drop("diskless_storage_pool", nothing_diskless)
        if settings.has("remote_access") and settings.get("remote_access")[0]:
            settings.notes.append(
                f"{settings.label('remote_access')} is read as false: {nothing_diskless}, and the volume "
                "is used only where it has a replica"
            )
            settings.values["remote_access"].value = (False, ())
    allow = (
        settings.get("remote_access", (True, ()))[0] if not layers or DISKLESS_LAYERS & set(layers) else False
    )
    if not (allow or clients or settings.get("diskless_on_remaining")):
        settings.drop(
            "diskless_storage_pool", "nothing is ever diskless with remote access off and no clients"
        )


def _check_diskless(settings: Settings, layers: tuple[str, ...], allow_remote: bool) -> None:
    if layers and not DISKLESS_LAYERS & set(layers):
        wants = [
            fld
            for fld in ("client_nodes", "diskless_on_remaining", "diskless_storage_pool", "remote_access")
            if settings.has(fld) and settings.get(fld) not in (False, (), (False, ()))
        ]
        if wants:
            raise InvalidArgument(
                f"{settings.label(wants[0])} asks for diskless resources, but "
                f"{settings.label('layer_list')} has neither drbd nor nvme, which diskless "
                "resources need: add drbd to the layer list or drop the diskless setting"
            )
    if (
        settings.has("diskless_storage_pool")
        and not allow_remote
        and not settings.get("client_nodes")
        and not settings.get("diskless_on_remaining")
    ):
        raise InvalidArgument(
            f"{settings.label('diskless_storage_pool')} is set, but nothing will ever be diskless: "
            f"{settings.label('remote_access')} forbids diskless access and there are no client "
            "nodes or diskless-on-remaining: drop the diskless storage pool"
        )


def build(
    settings: Settings,
    extra: dict[str, str],
    fs_type: str | None,
    size_bytes: int | None,
    property_namespace: str = DEFAULT_PROPERTY_NAMESPACE,
) -> VolumeParams:
    if settings.lenient:
        _ignore_as_linbit(settings)
    _check_manual_placement(settings)
    layers: tuple[str, ...] = settings.get("layer_list", ())
    default_remote = not layers or bool(DISKLESS_LAYERS & set(layers))
    allow_remote, rules = settings.get("remote_access", (default_remote, ()))
    _check_diskless(settings, layers, allow_remote)

    nodes: tuple[str, ...] = settings.get("nodes", ())
    policy = settings.get("placement_policy", "autoplacetopology")
    notes = list(settings.notes)
    if policy == "balanced":
        notes.append(f"{settings.label('placement_policy')} Balanced works like AutoPlaceTopology here")
        policy = "autoplacetopology"
    if nodes:
        policy = "manual"
    fields = {
        fld: given.value
        for fld, given in settings.values.items()
        if fld not in ("remote_access", "placement_policy")
    }
    if nodes:
        fields["place_count"] = len(nodes)
    for fld in ("replicas_on_same", "replicas_on_different"):
        if fld in fields:
            fields[fld] = tuple(in_namespace(key, property_namespace) for key in fields[fld])
    if "x_replicas_on_different" in fields:
        counts = fields["x_replicas_on_different"]
        fields["x_replicas_on_different"] = tuple(
            sorted((in_namespace(key, property_namespace), count) for key, count in counts)
        )
    properties = tuple(sorted((name, given.value) for name, given in settings.properties.items()))
    return VolumeParams(
        **{"fs_type": fs_type, "size_bytes": size_bytes, **fields},
        placement_policy=policy,
        allow_remote_volume_access=allow_remote,
        remote_access_from_same=rules,
        properties=properties,
        extra=extra,
        notes=tuple(notes),
    )
