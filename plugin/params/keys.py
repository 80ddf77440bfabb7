"""One validated model for every way a user describes a volume.

CSI StorageClass parameters and Docker ``-o`` options are parsed into the same
:class:`VolumeParams`. The volume service only ever sees this model.

Both dialects are driven by declarative key tables (:data:`CSI_PARAMETERS`,
:data:`DOCKER_OPTIONS`); the parsers and the generated reference
(``python -m tools.param_reference``) read the same tables, so the documentation cannot
drift from the code. Every problem a user can cause raises
:class:`~plugin.errors.InvalidArgument` with a message naming the key as the user wrote
it and saying what is allowed.
"""

from __future__ import annotations

import json
import re
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from plugin import names
from plugin.errors import InvalidArgument
from plugin.node.commandlines import split_mount_options
from plugin.params import qos
from plugin.params.filesystems import DEFAULT_FILESYSTEM, FILESYSTEMS
from plugin.params.fs_options import MAX_OPTIONS_CHARS, OptionError, check_mkfs_options, split_mkfs_options
from plugin.params.values import (
    MAX_REPLICAS,
    MIB,
    BadValue,
    format_size,
    parse_bool,
    parse_count_map,
    parse_float,
    parse_remote_access,
    parse_replicas,
    parse_size,
    split_commas,
    split_words,
)

DEFAULT_DISKLESS_POOL = "DfltDisklessStorPool"


@dataclass(frozen=True)
class VolumeParams:
    """What a user asked for, validated. Field defaults are LINSTOR operator expectations."""

    # placement (these describe the resource group)
    resource_group: str | None = None  # explicit RG name; None: derived from the settings below
    place_count: int = 1
    storage_pools: tuple[str, ...] = ()
    diskless_storage_pool: str = DEFAULT_DISKLESS_POOL
    diskless_on_remaining: bool = False
    layer_list: tuple[str, ...] = ()  # () means LINSTOR's default stack (drbd, storage)
    replicas_on_same: tuple[str, ...] = ()
    replicas_on_different: tuple[str, ...] = ()
    x_replicas_on_different: tuple[tuple[str, int], ...] = ()
    do_not_place_with_regex: str = ""
    placement_policy: str = "autoplacetopology"
    allow_remote_volume_access: bool = True
    nodes: tuple[str, ...] = ()  # manual placement: diskful nodes
    client_nodes: tuple[str, ...] = ()  # manual placement: diskless nodes
    properties: tuple[tuple[str, str], ...] = ()  # LINSTOR properties passed through to the RG
    # filesystem
    fs_type: str | None = DEFAULT_FILESYSTEM  # None: raw block volume
    mkfs_opts: str = ""
    mount_opts: tuple[str, ...] = ()
    post_mount_xfs_opts: str = ""
    # sizes and capacity
    size_bytes: int | None = None  # Docker's size option; CSI takes the capacity range instead
    overprovision: float | None = None
    # naming
    use_pvc_name: bool = False
    extra: dict[str, str] = field(default_factory=dict, compare=False)  # informational, e.g. pvc name
    # remote access rules (official ``allowRemoteVolumeAccess`` list form): a diskless node
    # may access the volume when it shares every label of one rule with a replica's node.
    # Empty with allow_remote_volume_access=True means "from anywhere".
    remote_access_from_same: tuple[tuple[str, ...], ...] = ()
    # sentences about accepted keys that have no effect here; front ends log them
    notes: tuple[str, ...] = field(default=(), compare=False)


# --- constants the tables and checks share -------------------------------------------

CSI_NAMESPACE = "linstor.csi.linbit.com"
PROPERTY_NAMESPACE = "property.linstor.csi.linbit.com"
LEGACY_PROPERTY_NAMESPACE = "DrbdOptions"
AUX_PREFIX = "Aux/"
#: The official driver's default ``--property-namespace``.
DEFAULT_PROPERTY_NAMESPACE = "Aux"
LAYERS = ("drbd", "luks", "nvme", "cache", "writecache", "bcache", "storage")
DISKLESS_LAYERS = frozenset({"drbd", "nvme"})
PLACEMENT_POLICIES = {
    "autoplacetopology": "AutoPlaceTopology",
    "autoplace": "AutoPlace",
    "followtopology": "FollowTopology",
    "manual": "Manual",
    "balanced": "Balanced",
}
DOCKER_DEFAULT_SIZE = 100 * MIB
DOCKER_DEFAULT_REPLICAS = 2
# connection settings that share the [global] section of the Docker config file with
# the option defaults; they are not volume options and are skipped in ``defaults``
CONFIG_CONNECTION_KEYS = frozenset(
    {"controllers", "username", "password", "certfile", "keyfile", "cafile", "node", "nodename"}
)
# fields that only mean something when LINSTOR places replicas automatically
AUTOPLACE_ONLY_FIELDS = (
    "replicas_on_same",
    "replicas_on_different",
    "x_replicas_on_different",
    "do_not_place_with_regex",
    "diskless_on_remaining",
)

# Bounds on what one request may carry; every parser below is linear in its input.
MAX_KEY_CHARS = 256
MAX_VALUE_CHARS = MAX_OPTIONS_CHARS
MAX_KEYS = 256

_MINIMUM_SIZE = {"ext4": 2 * MIB, "xfs": 300 * MIB, "btrfs": 114294784}
_SMALLEST_VOLUME = 4096  # LINSTOR's smallest volume: 4 KiB
_RG_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, CSI_NAMESPACE)


# --- value parsers that need the name rules --------------------------------------------


def _one_name(check: Callable[[str], bool], what: str, rule: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        text = value.strip()
        if not check(text):
            raise BadValue(f"expected a valid LINSTOR {what} name ({rule})")
        return text

    return parse


def _name_list(check: Callable[[str], bool], what: str, rule: str) -> Callable[[str], tuple[str, ...]]:
    def parse(value: str) -> tuple[str, ...]:
        items = split_words(value)
        for item in items:
            if not check(item):
                raise BadValue(f"{item!r} is not a valid LINSTOR {what} name ({rule})")
        if len({item.lower() for item in items}) != len(items):
            raise BadValue(f"each {what} may be named only once")
        return items

    return parse


_GENERIC_RULE = "2-48 characters: " + names.NAME_RULE
_POOL_RULE = "3-48 characters: " + names.NAME_RULE
_NODE_RULE = "a host name: letters, digits and '-', dot-separated labels"

parse_resource_group = _one_name(names.is_valid_resource_group_name, "resource group", _GENERIC_RULE)
parse_pool = _one_name(names.is_valid_storage_pool_name, "storage pool", _POOL_RULE)
parse_pool_list = _name_list(names.is_valid_storage_pool_name, "storage pool", _POOL_RULE)
parse_node_list = _name_list(names.is_valid_node_name, "node", _NODE_RULE)


def parse_layer_list(value: str) -> tuple[str, ...]:
    expected = (
        "expected layers from " + ", ".join(LAYERS) + ", top first, storage last, such as 'drbd storage'"
    )
    layers = tuple(item.lower() for item in split_words(value))
    if not layers or any(layer not in LAYERS for layer in layers) or len(set(layers)) != len(layers):
        raise BadValue(expected)
    if "storage" in layers and layers[-1] != "storage":
        raise BadValue(expected)
    return layers


def parse_aux_keys(value: str) -> tuple[str, ...]:
    """Property names for replicasOnSame/Different, as written (the namespace comes in ``_build``)."""
    items = split_words(value)
    if not items:
        raise BadValue("expected property names separated by spaces, such as 'topology/zone'")
    return tuple(items)


def in_namespace(key: str, namespace: str) -> str:
    """A node property name as LINSTOR knows it: bare names get ``<namespace>/``, ``Aux/...`` stays."""
    return key if key.startswith(AUX_PREFIX) else f"{namespace}/{key}"


def parse_regex(value: str) -> str:
    try:
        with warnings.catch_warnings():  # FutureWarnings about Python-only syntax are not errors
            warnings.simplefilter("ignore")
            re.compile(value)
    except re.error as exc:
        raise BadValue(f"expected a regular expression ({exc})") from None
    return value


def parse_placement_policy(value: str) -> str:
    word = value.strip().lower()
    if word not in PLACEMENT_POLICIES:
        raise BadValue("expected one of " + ", ".join(PLACEMENT_POLICIES.values()))
    return word


def parse_fs(value: str) -> str:
    word = value.strip().lower()
    if word not in FILESYSTEMS:
        raise BadValue("expected one of " + ", ".join(FILESYSTEMS))
    return word


def parse_mkfs_words(value: str) -> str:
    """mkfs arguments that split cleanly; the filesystem's allow-list is checked once it is known."""
    try:
        split_mkfs_options(value)
    except OptionError as exc:
        raise BadValue(str(exc)) from None
    return value.strip()


def parse_mkfs_opts(value: str) -> str:
    """mkfs arguments that suit at least one filesystem (a StorageClass does not name one)."""
    parse_mkfs_words(value)
    try:
        check_mkfs_options(split_mkfs_options(value), None)
    except OptionError as exc:
        raise BadValue(str(exc)) from None
    return value.strip()


def _mount_option_list(items: tuple[str, ...], any_filesystem: bool) -> tuple[str, ...]:
    for item in items:
        if any(ch.isspace() or ch == "\0" for ch in item):
            raise BadValue("expected mount options such as 'noatime,discard' (no spaces inside an option)")
    if any_filesystem:
        try:
            split_mount_options(items)  # allowed for at least one filesystem; exact check follows
        except InvalidArgument as exc:
            raise BadValue(str(exc)) from None
    return items


def parse_mount_opts_commas(value: str) -> tuple[str, ...]:
    return _mount_option_list(split_commas(value), any_filesystem=True)


def parse_mount_opts_words(value: str) -> tuple[str, ...]:
    return _mount_option_list(split_words(value), any_filesystem=False)


def parse_text(value: str) -> str:
    if "\0" in value or "\n" in value:
        raise BadValue("expected text on one line")
    return value.strip()


def parse_overprovision(value: str) -> float:
    return parse_float(value, 0.0)


def parse_anything(value: str) -> str:
    return value


# --- the key tables ---------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    """One key of a dialect: how it is spelled, parsed, stored and documented.

    ``field`` is the VolumeParams field the parsed value lands in; ``None`` means the key
    is accepted for compatibility but has no effect here (``note`` says why).
    ``remote_access`` is a pseudo-field expanded into two VolumeParams fields.
    """

    name: str
    type: str
    default: str
    description: str
    parse: Callable[[str], Any]
    field: str | None
    aliases: tuple[str, ...] = ()
    note: str = ""

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


_S = ParamSpec

# fmt: off
CSI_PARAMETERS: tuple[ParamSpec, ...] = (
    _S("resourceGroup", "LINSTOR name", "`sc-<uuid>` derived from the settings",
       "LINSTOR resource group the class maps to. Without it, the name is derived from the "
       "placement settings, so identical classes share one resource group.",
       parse_resource_group, "resource_group"),
    _S("placementCount", f"whole number 1-{MAX_REPLICAS}", "1",
       "Number of diskful replicas (the resource group's place count).",
       parse_replicas, "place_count", aliases=("autoPlace",)),
    _S("storagePool", "storage pool names, space separated", "LINSTOR chooses",
       "Storage pools the diskful replicas may be placed in.",
       parse_pool_list, "storage_pools"),
    _S("disklessStoragePool", "storage pool name", DEFAULT_DISKLESS_POOL,
       "Storage pool for diskless resources (clientList, attach on a node without a replica).",
       parse_pool, "diskless_storage_pool"),
    _S("disklessOnRemaining", "true/false", "false",
       "Put a diskless resource on every node that gets no diskful replica.",
       parse_bool, "diskless_on_remaining"),
    _S("layerList", "layers, space separated: " + " ".join(LAYERS), "`drbd storage`",
       "LINSTOR layer stack, top first. Use `drbd luks storage` for encryption.",
       parse_layer_list, "layer_list"),
    _S("replicasOnSame", "property names, space separated", "none",
       "Place all replicas on nodes with equal values of these node properties "
       "(names without `Aux/` get the driver's `--property-namespace` prefix, `Aux/` by default).",
       parse_aux_keys, "replicas_on_same"),
    _S("replicasOnDifferent", "property names, space separated", "none",
       "Place replicas on nodes with different values of these node properties "
       "(names without `Aux/` get the driver's `--property-namespace` prefix, `Aux/` by default).",
       parse_aux_keys, "replicas_on_different"),
    _S("xReplicasOnDifferent", "YAML map of property name to count", "none",
       "At most this many replicas per value of a node property, e.g. `{zone: 2}`.",
       parse_count_map, "x_replicas_on_different"),
    _S("doNotPlaceWithRegex", "regular expression", "none",
       "Avoid nodes that hold a resource whose name matches.",
       parse_regex, "do_not_place_with_regex"),
    _S("allowRemoteVolumeAccess", "true, false or YAML list of `fromSame` rules", "true",
       "Which nodes may use the volume without a local replica (diskless). `false`: only "
       "nodes with a replica. Rules: `[{fromSame: [topology.kubernetes.io/zone]}]`. "
       "Without DRBD or NVMe in layerList the default is `false`.",
       parse_remote_access, "remote_access"),
    _S("placementPolicy", "AutoPlaceTopology, AutoPlace, FollowTopology, Manual, Balanced",
       "AutoPlaceTopology",
       "How replicas are placed. `Balanced` is accepted and works like AutoPlaceTopology "
       "(it needs Kubernetes node labels the plugin does not read).",
       parse_placement_policy, "placement_policy"),
    _S("nodeList", "node names, space separated", "none",
       "Manual placement: diskful replicas on exactly these nodes (implies Manual).",
       parse_node_list, "nodes"),
    _S("clientList", "node names, space separated", "none",
       "Manual placement: diskless resources on these nodes (implies Manual).",
       parse_node_list, "client_nodes"),
    _S("fsOpts", "mkfs arguments", "none",
       "Extra arguments for mkfs when a new volume is formatted (see Filesystem options).",
       parse_mkfs_opts, "mkfs_opts"),
    _S("mountOpts", "mount options, comma separated", "none",
       "Mount options for every mount of the volume, e.g. `noatime,discard` (see Filesystem options).",
       parse_mount_opts_commas, "mount_opts"),
    _S("postMountXfsOpts", "xfs_io command", "none",
       "Run `xfs_io -c <value>` after mounting an xfs volume.",
       parse_text, "post_mount_xfs_opts"),
    _S("usePvcName", "true/false", "false",
       "Name the volume `<pvc namespace>-<pvc name>` instead of the PV name when that is a "
       "valid LINSTOR name (needs the provisioner's `--extra-create-metadata`).",
       parse_bool, "use_pvc_name"),
    _S("overProvision", "number > 0", "unset",
       "Report capacity as total x factor - reserved instead of LINSTOR's free space.",
       parse_overprovision, "overprovision"),
    _S("encryption", "true/false", "false",
       "Accepted for compatibility; has no effect (as in the official driver).",
       parse_bool, None,
       note="has no effect; to encrypt, put luks into layerList (e.g. 'drbd luks storage')"),
    _S("sizeKiB", "any", "n/a",
       "Accepted for compatibility; ignored. The size comes from the volume request.",
       parse_anything, None, note="is ignored; the size comes from the volume request"),
    _S("nfsConfigTemplate", "any", "n/a",
       "Accepted for compatibility; ignored (no NFS export for RWX here).",
       parse_anything, None, note="is ignored; this plugin does not export volumes over NFS"),
    _S("nfsServiceName", "any", "n/a",
       "Accepted for compatibility; ignored (no NFS export for RWX here).",
       parse_anything, None, note="is ignored; this plugin does not export volumes over NFS"),
    _S("nfsSquash", "any", "n/a",
       "Accepted for compatibility; ignored (no NFS export for RWX here).",
       parse_anything, None, note="is ignored; this plugin does not export volumes over NFS"),
    _S("nfsRecoveryVolumeSize", "any", "n/a",
       "Accepted for compatibility; ignored (no NFS export for RWX here).",
       parse_anything, None, note="is ignored; this plugin does not export volumes over NFS"),
)

DOCKER_OPTIONS: tuple[ParamSpec, ...] = (
    _S("size", "size: 10G, 512MiB, 1.5T, 100MB; bare number = bytes",
       "100MiB (or the filesystem's minimum, if larger)",
       "Volume size. K/M/G/T/P, Ki/Mi/..., KiB/MiB/... are powers of 1024; KB/MB/GB/TB/PB "
       "powers of 1000; a number without a unit is bytes (as in LINBIT's Go plugin).",
       parse_size, "size_bytes"),
    _S("fs", "ext4, xfs, btrfs", "ext4",
       "Filesystem created on the new volume.",
       parse_fs, "fs_type"),
    _S("fsopts", "mkfs arguments", "none",
       "Extra arguments for mkfs, e.g. `-E nodiscard` (see Filesystem options).",
       parse_mkfs_words, "mkfs_opts"),
    _S("mountopts", "mount options, comma or space separated", "none",
       "Mount options, e.g. `noatime,discard` (see Filesystem options).",
       parse_mount_opts_words, "mount_opts"),
    _S("replicas", f"whole number 1-{MAX_REPLICAS}", str(DOCKER_DEFAULT_REPLICAS),
       "Number of diskful replicas, placed automatically.",
       parse_replicas, "place_count"),
    _S("nodes", "node names, comma or space separated", "none",
       "Place diskful replicas on exactly these nodes instead of automatically.",
       parse_node_list, "nodes", aliases=("hosts",)),
    _S("storagepool", "storage pool names, comma or space separated", "LINSTOR chooses",
       "Storage pools for the diskful replicas (one pool when `nodes` is given).",
       parse_pool_list, "storage_pools"),
    _S("disklessstoragepool", "storage pool name", DEFAULT_DISKLESS_POOL,
       "Storage pool for diskless resources (a node without a replica mounting the volume).",
       parse_pool, "diskless_storage_pool"),
    _S("disklessonremaining", "true/false", "false",
       "Put a diskless resource on every node that gets no diskful replica.",
       parse_bool, "diskless_on_remaining"),
    _S("resourcegroup", "LINSTOR name", "`sc-<uuid>` derived from the settings",
       "LINSTOR resource group to spawn the volume from (created with these settings if missing).",
       parse_resource_group, "resource_group", aliases=("resource-group",)),
    _S("replicasonsame", "property names, comma or space separated", "none",
       "Place all replicas on nodes with equal values of these node properties.",
       parse_aux_keys, "replicas_on_same"),
    _S("replicasondifferent", "property names, comma or space separated", "none",
       "Place replicas on nodes with different values of these node properties.",
       parse_aux_keys, "replicas_on_different"),
    _S("donotplacewithregex", "regular expression", "none",
       "Avoid nodes that hold a resource whose name matches.",
       parse_regex, "do_not_place_with_regex"),
)
# fmt: on


def _index(specs: Iterable[ParamSpec]) -> dict[str, ParamSpec]:
    return {spelling.lower(): spec for spec in specs for spelling in spec.spellings}


_CSI_INDEX = _index(CSI_PARAMETERS)
_DOCKER_INDEX = _index(DOCKER_OPTIONS)


# --- the collected settings of one request ----------------------------------------------


@dataclass
class _Given:
    """A parsed key: how the user wrote it, the raw value, where it came from."""

    key: str
    raw: str
    value: Any
    from_defaults: bool = False


class _Settings:
    """Parsed values by VolumeParams field, with enough provenance for good messages."""

    def __init__(self, word: str, lenient: bool = False) -> None:
        self.word = word  # "parameter" or "option"
        # lenient: what LINBIT's CSI driver accepts and ignores is accepted with a note
        self.lenient = lenient
        self.values: dict[str, _Given] = {}
        self.properties: dict[str, _Given] = {}
        self.notes: list[str] = []

    def drop(self, fld: str, why: str) -> None:
        """Forget a parsed value the way LINBIT's driver ignores it, and say so."""
        if fld in self.values:
            self.notes.append(f"{self.label(fld)} is ignored: {why}")
            del self.values[fld]

    def label(self, fld: str) -> str:
        given = self.values[fld]
        suffix = " (a default from the configuration)" if given.from_defaults else ""
        return f'{self.word} "{given.key}"{suffix}'

    def has(self, fld: str) -> bool:
        return fld in self.values

    def get(self, fld: str, default: Any = None) -> Any:
        return self.values[fld].value if fld in self.values else default

    def put(self, table: dict[str, _Given], slot: str, given: _Given) -> None:
        previous = table.get(slot)
        if (
            previous is not None
            and previous.from_defaults == given.from_defaults
            and previous.value != given.value
        ):
            if self.lenient:  # the first in priority order stays (see _csi_order)
                self.notes.append(
                    f'{self.word} "{given.key}" is ignored: {self.word} "{previous.key}" sets the same thing'
                )
                return
            raise InvalidArgument(
                f'{self.word} "{given.key}" and {self.word} "{previous.key}" set the same thing '
                f'to different values ("{_show(given.raw)}" and "{_show(previous.raw)}"): give only one'
            )
        if previous is None or previous.from_defaults or not given.from_defaults:
            table[slot] = given


def _show(raw: str, limit: int = 80) -> str:
    """A user's value as quoted in a message: one line, not endless."""
    text = raw.replace("\n", "\\n").replace("\0", "\\0")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_bounds(mapping: Mapping[str, str], word: str, where: str = "") -> None:
    """Refuse oversized requests before parsing anything: every key and value has a length limit."""
    if len(mapping) > MAX_KEYS:
        raise InvalidArgument(f"{len(mapping)} {word}s{where} are too many: at most {MAX_KEYS} are accepted")
    for key, raw in mapping.items():
        key = str(key)
        if len(key) > MAX_KEY_CHARS:
            raise InvalidArgument(
                f'{word} name "{_show(key)}"{where} is {len(key)} characters long; {word} names are '
                f"limited to {MAX_KEY_CHARS} characters",
                key=key[:MAX_KEY_CHARS],
            )
        size = 0 if raw is None else len(str(raw))
        if size > MAX_VALUE_CHARS:
            raise InvalidArgument(
                f'the value of {word} "{_show(key)}"{where} is {size} characters long; values are '
                f"limited to {MAX_VALUE_CHARS} characters",
                key=key,
            )


def _parse_value(spec: ParamSpec, key: str, raw: str, word: str) -> Any:
    try:
        return spec.parse(raw)
    except BadValue as exc:
        raise InvalidArgument(
            f'invalid value "{_show(raw)}" for {word} "{_show(key)}": {exc.expected}', key=key
        ) from None


def _unknown(key: str, word: str, specs: Iterable[ParamSpec], prefix: str = "") -> InvalidArgument:
    allowed = ", ".join(prefix + spec.name for spec in specs)
    return InvalidArgument(f'unknown {word} "{_show(key)}": allowed {word}s are {allowed}', key=key)


# --- CSI --------------------------------------------------------------------------------


def _property_key(key: str, name: str, word: str) -> str:
    if not name or name.startswith("/") or name.endswith("/") or "//" in name:
        raise InvalidArgument(
            f'invalid {word} "{_show(key)}": expected a LINSTOR property name after the prefix, '
            f'such as "{PROPERTY_NAMESPACE}/DrbdOptions/Net/protocol"',
            key=key,
        )
    if any(ch.isspace() for ch in name):
        raise InvalidArgument(
            f'invalid {word} "{_show(key)}": a LINSTOR property name has no spaces', key=key
        )
    return name


def _csi_order(item: tuple[str, Any]) -> tuple[int, int, str]:
    """Two keys for one setting: the namespaced spelling, then the canonical name, win."""
    key = str(item[0])
    _, slash, rest = key.partition("/")
    bare = not slash
    spec = _CSI_INDEX.get((key if bare else rest).lower())
    alias = spec is not None and (key if bare else rest).lower() != spec.name.lower()
    return (1 if bare else 0, 1 if alias else 0, key)


def parse_csi_parameters(
    parameters: Mapping[str, str], property_namespace: str = DEFAULT_PROPERTY_NAMESPACE
) -> VolumeParams:
    """StorageClass (or Nomad volume) parameters, with the official driver's keys and rules.

    Keys are split at the first ``/``. No namespace or ``linstor.csi.linbit.com`` is a
    driver key (case-insensitive); ``property.linstor.csi.linbit.com/<KEY>`` and
    ``DrbdOptions/...`` become resource group properties; other namespaces are kept in
    ``extra`` and otherwise ignored. An empty value means "not set". Bare node property
    names in replicasOnSame/Different get ``property_namespace`` as their prefix.
    """
    _check_bounds(parameters, "parameter")
    settings = _Settings("parameter", lenient=True)
    extra: dict[str, str] = {}
    for key, raw in sorted(parameters.items(), key=_csi_order):
        raw = "" if raw is None else str(raw)
        namespace, slash, rest = key.partition("/")
        if not slash:
            namespace, rest = "", key
        space = namespace.lower()
        if space == PROPERTY_NAMESPACE or space == LEGACY_PROPERTY_NAMESPACE.lower():
            name = _property_key(key, rest if space == PROPERTY_NAMESPACE else key, "parameter")
            if raw != "":
                settings.put(settings.properties, name, _Given(key, raw, raw))
            continue
        if key.startswith(qos.PREFIX):
            # as LINBIT's driver: the four limits are checked and kept, other qos keys ignored
            if key not in qos.LIMIT_KEYS:
                limits = ", ".join(qos.LIMIT_KEYS)
                settings.notes.append(f'parameter "{key}" is ignored; the IO limits are {limits}')
            elif raw.strip() and qos.parse_limit(key, raw):
                extra[key] = str(qos.parse_limit(key, raw))
            continue
        if space not in ("", CSI_NAMESPACE):
            extra[key] = raw
            continue
        spec = _CSI_INDEX.get(rest.lower())
        if spec is None:
            raise _unknown(key, "parameter", CSI_PARAMETERS, CSI_NAMESPACE + "/")
        if raw.strip() == "":
            continue
        value = _parse_value(spec, key, raw, "parameter")
        if spec.field is None:
            settings.notes.append(f'parameter "{key}" {spec.note}')
            continue
        settings.put(settings.values, spec.field, _Given(key, raw, value))
    return _build(
        settings, extra, fs_type=DEFAULT_FILESYSTEM, size_bytes=None, property_namespace=property_namespace
    )


# --- Docker -----------------------------------------------------------------------------


def _collect_docker(settings: _Settings, mapping: Mapping[str, str], from_defaults: bool) -> set[str]:
    _check_bounds(mapping, "option", " in the defaults of the configuration" if from_defaults else "")
    given_fields: set[str] = set()
    for key, raw in mapping.items():
        raw = "" if raw is None else str(raw)
        spec = _DOCKER_INDEX.get(key.strip().lower())
        if spec is None:
            if from_defaults and key.strip().lower() in CONFIG_CONNECTION_KEYS:
                continue
            where = " in the defaults of the configuration" if from_defaults else ""
            allowed = ", ".join(s.name for s in DOCKER_OPTIONS)
            raise InvalidArgument(
                f'unknown option "{_show(key)}"{where}: allowed options are {allowed}', key=key
            )
        if raw.strip() == "":
            continue
        value = _parse_value(spec, key, raw, "option")
        assert spec.field is not None
        settings.put(settings.values, spec.field, _Given(key, raw, value, from_defaults))
        given_fields.add(spec.field)
    return given_fields


def _drop_overridden_defaults(settings: _Settings, explicit: set[str]) -> None:
    """Explicit options win over defaults that would contradict them."""

    def drop(fld: str) -> None:
        if fld in settings.values and settings.values[fld].from_defaults:
            del settings.values[fld]

    if "nodes" in explicit:
        for fld in ("place_count", *AUTOPLACE_ONLY_FIELDS):
            drop(fld)
        if len(settings.get("storage_pools", ())) > 1:
            drop("storage_pools")
    several_pools = "storage_pools" in explicit and len(settings.get("storage_pools", ())) > 1
    if explicit & {"place_count", *AUTOPLACE_ONLY_FIELDS} or several_pools:
        drop("nodes")


def parse_docker_options(options: Mapping[str, str] | None, defaults: Mapping[str, str] = {}) -> VolumeParams:
    """``docker volume create -o`` options over the configured defaults.

    ``options`` is None when Docker creates a volume implicitly (``docker run -v``); the
    defaults then apply unchanged. Keys are case-insensitive; an empty value means "not
    set" (the default applies).
    """
    settings = _Settings("option")
    _collect_docker(settings, defaults, from_defaults=True)
    explicit = _collect_docker(settings, options or {}, from_defaults=False)
    _drop_overridden_defaults(settings, explicit)
    fs_type = settings.get("fs_type", DEFAULT_FILESYSTEM)
    _check_filesystem_options(settings, fs_type)
    minimum = minimum_size_bytes(fs_type)
    if settings.has("size_bytes"):
        size = settings.get("size_bytes")
        if size < minimum:
            raw = _show(settings.values["size_bytes"].raw)
            hint = ""
            if raw.strip().isdigit():
                hint = " (a number without a unit is bytes; add a unit such as M or G)"
            raise InvalidArgument(
                f'invalid value "{raw}" for {settings.label("size_bytes")}: {fs_type} needs a volume of at '
                f"least {format_size(minimum)}{hint}",
                key=settings.values["size_bytes"].key,
            )
    else:
        size = max(DOCKER_DEFAULT_SIZE, minimum)
    if not settings.has("place_count") and not settings.has("nodes"):
        default = DOCKER_DEFAULT_REPLICAS
        settings.values["place_count"] = _Given("replicas", str(default), default, from_defaults=True)
    return _build(settings, {}, fs_type=fs_type, size_bytes=size)


# --- shared: contradictions and the final model --------------------------------------------


def _check_filesystem_options(settings: _Settings, fs_type: str) -> None:
    """mkfs and mount options against the allow-lists of the volume's own filesystem."""
    if settings.has("mkfs_opts"):
        given = settings.values["mkfs_opts"]
        try:
            check_mkfs_options(split_mkfs_options(given.value), fs_type)
        except OptionError as exc:
            raise InvalidArgument(
                f'invalid value "{_show(given.raw)}" for {settings.label("mkfs_opts")}: {exc}', key=given.key
            ) from None
    if settings.has("mount_opts"):
        given = settings.values["mount_opts"]
        try:
            split_mount_options(given.value, fs_type)
        except InvalidArgument as exc:
            raise InvalidArgument(
                f'invalid value "{_show(given.raw)}" for {settings.label("mount_opts")}: {exc}', key=given.key
            ) from None


def _check_manual_placement(settings: _Settings) -> None:
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


def _ignore_as_linbit(settings: _Settings) -> None:
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


def _check_diskless(settings: _Settings, layers: tuple[str, ...], allow_remote: bool) -> None:
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


def _build(
    settings: _Settings,
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


# --- derived values ---------------------------------------------------------------------


def minimum_size_bytes(fs_type: str | None) -> int:
    """The smallest volume the filesystem can be made on (mkfs refuses smaller ones)."""
    return _MINIMUM_SIZE.get((fs_type or "").lower(), _SMALLEST_VOLUME)


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


def with_fs_type(params: VolumeParams, fs_type: str | None, mount_flags: Iterable[str] = ()) -> VolumeParams:
    """The same parameters for another filesystem (CSI takes it from the capability).

    ``fsOpts`` and ``mountOpts`` were checked against every filesystem when the
    StorageClass was parsed; now that the filesystem is known, they and the capability's
    ``mount_flags`` must suit it, before anything reaches LINSTOR.
    """
    if fs_type:
        try:
            check_mkfs_options(split_mkfs_options(params.mkfs_opts), fs_type)
        except OptionError as exc:
            raise InvalidArgument(
                f'invalid value "{_show(params.mkfs_opts)}" for parameter "fsOpts": {exc}', key="fsOpts"
            ) from None
        try:
            split_mount_options(params.mount_opts, fs_type)
        except InvalidArgument as exc:
            shown = _show(",".join(params.mount_opts))
            raise InvalidArgument(
                f'invalid value "{shown}" for parameter "mountOpts": {exc}', key="mountOpts"
            ) from None
        try:
            split_mount_options(list(mount_flags), fs_type)
        except InvalidArgument as exc:
            raise InvalidArgument(f"invalid mount_flags in the volume capability: {exc}") from None
    return replace(params, fs_type=fs_type)
