"""The keys of both dialects: how each is spelled, parsed, stored and documented.

CSI StorageClass parameters and Docker ``-o`` options are driven by declarative key
tables (:data:`CSI_PARAMETERS`, :data:`DOCKER_OPTIONS`); the parsers
(:mod:`plugin.params.csi`, :mod:`plugin.params.docker`) and the generated reference
(``python -m tools.param_reference``) read the same tables, so the documentation cannot
drift from the code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from plugin.params.fs_options import MAX_OPTIONS_CHARS
from plugin.params.model import CSI_NAMESPACE, DEFAULT_DISKLESS_POOL, LAYERS
from plugin.params.parsers import (
    parse_anything,
    parse_aux_keys,
    parse_fs,
    parse_layer_list,
    parse_mkfs_opts,
    parse_mkfs_words,
    parse_mount_opts_commas,
    parse_mount_opts_words,
    parse_node_list,
    parse_overprovision,
    parse_placement_policy,
    parse_pool,
    parse_pool_list,
    parse_regex,
    parse_resource_group,
    parse_text,
)
from plugin.params.values import (
    MAX_REPLICAS,
    MIB,
    parse_bool,
    parse_count_map,
    parse_remote_access,
    parse_replicas,
    parse_size,
)

PROPERTY_NAMESPACE = f"property.{CSI_NAMESPACE}"
LEGACY_PROPERTY_NAMESPACE = "DrbdOptions"
DOCKER_DEFAULT_SIZE = 100 * MIB
DOCKER_DEFAULT_REPLICAS = 2

# Bounds on what one request may carry; every parser of the tables is linear in its input.
MAX_KEY_CHARS = 256
MAX_VALUE_CHARS = MAX_OPTIONS_CHARS
MAX_KEYS = 256


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


CSI_INDEX = _index(CSI_PARAMETERS)
DOCKER_INDEX = _index(DOCKER_OPTIONS)
