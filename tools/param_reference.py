"""Generate the parameter and option reference (``docs/parameters.md``) from the key tables.

The parsers in :mod:`plugin.params` and this page read the same tables
(:mod:`plugin.params.keys`), and a unit test compares the committed page with the
generated text, so the page cannot go stale::

    python -m tools.param_reference > docs/parameters.md
    python -m tools.param_reference --check docs/parameters.md   # exit 1 when stale
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from plugin import names
from plugin.backups import snapshot_class as snapclass
from plugin.params import qos
from plugin.params.filesystems import FILESYSTEMS, minimum_size_bytes
from plugin.params.fs_options import MKFS_RULES, MkfsRules
from plugin.params.keys import (
    CSI_NAMESPACE,
    CSI_PARAMETERS,
    DOCKER_DEFAULT_REPLICAS,
    DOCKER_DEFAULT_SIZE,
    DOCKER_OPTIONS,
    LEGACY_PROPERTY_NAMESPACE,
    MAX_KEY_CHARS,
    MAX_KEYS,
    MAX_VALUE_CHARS,
    PROPERTY_NAMESPACE,
    ParamSpec,
)
from plugin.params.model import AUX_PREFIX
from plugin.params.mount_rules import GENERIC_MOUNT, MOUNT_RULES
from plugin.params.values import MAX_REPLICAS, format_size
from plugin.volumes.modify import mutable_keys

REGENERATE = "python -m tools.param_reference > docs/parameters.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(specs: Iterable[ParamSpec], prefix: str) -> list[str]:
    lines = [
        "| Key | Aliases | Type | Default | Description |",
        "|---|---|---|---|---|",
    ]
    for spec in specs:
        aliases = ", ".join(f"`{prefix}{alias}`" for alias in spec.aliases) or "-"
        row = [f"`{prefix}{spec.name}`", aliases, spec.type, spec.default, spec.description]
        lines.append("| " + " | ".join(_cell(part) for part in row) + " |")
    return lines


def _snapshot_class() -> list[str]:
    lines = [
        "## CSI VolumeSnapshotClass parameters",
        "",
        "The keys of LINBIT's driver, so its snapshot classes work unchanged. `type: InCluster` (the",
        "default) makes a LINSTOR snapshot in this cluster; `S3` and `Linstor` make a backup: LINSTOR",
        "ships the snapshot to an S3 bucket or to another LINSTOR cluster in the background, and",
        "CreateSnapshot answers `ready_to_use: false` until the shipment is done (the snapshotter",
        "asks again). The LINSTOR remote named by `remote-name` is created from the class when it is",
        "missing and updated when its endpoint, bucket, region, path style, URL or cluster id differ.",
        "",
        f"- Keys are matched case-insensitively under `{snapclass.PREFIX}`; an unknown key there is",
        "  an error. Keys of other namespaces (the snapshotter's `csi.storage.k8s.io/*`) are ignored.",
        "- S3 keys come from the snapshot secret (`csi.storage.k8s.io/snapshotter-secret-name` and",
        f"  `-namespace`): `{snapclass.ACCESS_KEY}` and `{snapclass.SECRET_KEY}`. They are needed to",
        "  create or update the remote and never appear in logs, errors or metrics.",
        "- Snapshot ids: `InCluster:///<volume>/<snapshot>`, `S3://<remote>/<volume>/<snapshot>`,",
        "  `Linstor://<remote>/<volume>/<snapshot>`. DeleteSnapshot deletes the backup (a backup that",
        "  newer incremental ones are based on is refused until those are gone) and the local snapshot.",
        "- CreateVolume from an `S3://` id downloads the backup when its snapshot is not in the cluster",
        "  and restores it with the size rules of any restore; a `Linstor://` id is restored in the",
        "  cluster that received it (from `backup-<volume>`).",
        "",
        "| Key | Aliases | Type | Default | Description |",
        "|---|---|---|---|---|",
    ]
    for spec in snapclass.KEYS:
        row = [f"`{snapclass.PREFIX}{spec.name}`", "-", spec.type, spec.default, spec.description]
        lines.append("| " + " | ".join(_cell(part) for part in row) + " |")
    return [*lines, ""]


def _minimum_sizes() -> str:
    parts = [f"{fs} {format_size(minimum_size_bytes(fs))}" for fs in FILESYSTEMS]
    return ", ".join(parts) + f", raw block {format_size(minimum_size_bytes(None))}"


def _mkfs_lines(rules: MkfsRules) -> list[str]:
    shapes = {f"-{c}": shape for c, shape in rules.short.items()}
    shapes.update({f"--{name}": shape for name, shape in rules.long.items()})
    lines = [f"- `mkfs.{rules.fs}`:"]
    for option, shape in shapes.items():
        lines.append(f"  - `{option}`" + (f": {_cell(shape.hint)}" if shape is not None else ""))
    refused = ", ".join(f"`{option}`" for option in rules.refused)
    lines.append(
        f"  - refused with the reason: {refused}, any other option, and any word that is not an option"
    )
    return lines


def _filesystem_options() -> list[str]:
    lines = [
        "## Filesystem options",
        "",
        "mkfs options (`fsOpts` / `fsopts`) and mount options (`mountOpts` / `mountopts`, CSI",
        "`mount_flags`) are checked against allow-lists of options and value shapes for the",
        "volume's filesystem when the volume is created, and again on the node right before mkfs",
        "and mount. Refused: anything that names another device or a file of the host, options",
        "that make mkfs do something other than format (print and exit, dry run, force), words",
        "that are not options (mkfs would take them as devices), and settings that halt the node",
        "or keep mkfs busy (`errors=panic`, `-E offset=`). A StorageClass does not name its",
        "filesystem, so its options must suit at least one filesystem until the volume capability",
        "names it. Values are split like a shell does, without backslashes.",
        "",
    ]
    for rules in MKFS_RULES.values():
        lines += _mkfs_lines(rules)
    lines += [
        "",
        "Mount options, besides the generic "
        + ", ".join(f"`{name}`" for name in GENERIC_MOUNT.names())
        + " (`bind`, `remount`, propagation flags and `defaults` are managed by the plugin; refused"
        + " with the reason: "
        + ", ".join(f"`{name}`" for name in GENERIC_MOUNT.refused)
        + "):",
        "",
    ]
    for fs, mount in MOUNT_RULES.items():
        allowed = ", ".join(f"`{name}`" for name in mount.names())
        refused = ", ".join(f"`{name}`" for name in mount.refused)
        lines.append(f"- {fs}: {allowed}; refused with the reason: {refused}")
    return [*lines, ""]


def _io_limits() -> list[str]:
    keys = ", ".join(f"`{key}`" for key in qos.LIMIT_KEYS)
    return [
        "## IO limits",
        "",
        f"{keys} (CSI StorageClass parameters and mutable parameters, as LINBIT's driver 1.11.3+",
        "reads them) limit read/write bandwidth in bytes per second and read/write operations per",
        "second. Values are Kubernetes quantities (`104857600`, `100Mi`, `1G`, `500k`); `0` means",
        "unlimited; a negative or unreadable value is an error naming the key. The limits are",
        f"stored on the volume's resource definition (`Aux/{qos.PREFIX}<key>`, plain integers) and",
        f"ControllerPublishVolume puts them, with `{qos.DEVICE}` (the device on that node), into the",
        "publish context: the keys LINBIT's nri-volume-qos plugin reads from the VolumeAttachment.",
        "The node plugin also applies them itself when it publishes the volume to a pod: the",
        "volume's current limits, read from LINSTOR, into the pod's cgroup (cgroup v2 `io.max`, or",
        "cgroup v1 `blkio.throttle.*`), found from the pod UID kubelet passes with",
        "`podInfoOnMount: true`. That is best effort: without an io controller or a pod cgroup the",
        "reason is logged and the volume is used without limits. Changed limits hold for the next",
        "pod that mounts the volume; the publish context keeps those of the attachment.",
        "",
    ]


def _mutable_parameters() -> list[str]:
    lines = [
        "## Mutable parameters (VolumeAttributesClass)",
        "",
        "The CSI driver advertises MODIFY_VOLUME: a VolumeAttributesClass's `parameters` reach it as",
        "`mutable_parameters` in CreateVolume (applied once the volume exists; a new volume that",
        "cannot take them is removed again) and in ControllerModifyVolume (a PVC moved to another",
        "class). Only these keys are mutable; any other key is INVALID_ARGUMENT naming the key, and",
        "nothing changes. A repeated call finds nothing to change and writes nothing.",
        "",
        "| Key | Effect |",
        "|---|---|",
    ]
    for key, meaning in mutable_keys():
        lines.append(f"| `{_cell(key)}` | {_cell(meaning)} |")
    return [*lines, ""]


def generate() -> str:
    """The whole reference page as Markdown."""
    lines: list[str] = [
        "# Volume parameters and options",
        "",
        f"<!-- Generated by `{REGENERATE}`; do not edit by hand. -->",
        "",
        "Every way to describe a volume ends in the same validated model: CSI StorageClass (or Nomad",
        "volume) parameters and Docker `-o` options. A key that is not listed here, a value that does",
        "not parse, or settings that contradict each other make the request fail with a message that",
        "names the key and says what is allowed; nothing is created.",
        "",
        "## CSI StorageClass parameters",
        "",
        "The same keys as LINSTOR's official CSI driver, so existing StorageClasses work unchanged.",
        "",
        f"- Keys are split at the first `/`. Keys in `{CSI_NAMESPACE}/` or with no namespace (legacy)",
        "  are driver keys, matched case-insensitively. An unknown driver key is an error.",
        f"- `{PROPERTY_NAMESPACE}/<KEY>` sets the LINSTOR property `<KEY>` on the resource group,",
        f'  e.g. `{PROPERTY_NAMESPACE}/DrbdOptions/PeerDevice/c-max-rate: "102400"` for resync tuning',
        "  (KiB/s as a plain integer: LINSTOR checks DRBD options against DRBD's own ranges).",
        f"  Legacy `{LEGACY_PROPERTY_NAMESPACE}/...` keys without a prefix do the same.",
        f"- `{qos.PREFIX}{{rbps,wbps,riops,wiops}}` are IO limits (see IO limits below); other",
        f"  `{qos.PREFIX}*` keys are ignored with a note, as LINBIT's driver ignores them.",
        "- Keys of other namespaces (`csi.storage.k8s.io/*`, ...) are kept as information (for",
        "  example the PVC name and namespace) and do not change placement.",
        "- An empty value means the key is not set, so its default applies.",
        "- One setting given twice with different values (for example `placementCount` and its alias",
        f"  `autoPlace`, or `{CSI_NAMESPACE}/placementCount` and a bare `placementCount`): LINBIT's",
        "  driver takes either; here the namespaced spelling, then the canonical name, wins and the",
        "  other is ignored with a note in the log.",
        "- The filesystem type comes from the volume capability (`fsType`, default `ext4`).",
        "",
        *_table(CSI_PARAMETERS, f"{CSI_NAMESPACE}/"),
        "",
        *_snapshot_class(),
        "## Docker volume options",
        "",
        "The keys of LINBIT's Docker volume plugins plus `resourcegroup`, for",
        "`docker volume create -d linstor -o KEY=VALUE ...`.",
        "",
        "- Keys are case-insensitive. An empty value means the key is not set.",
        "- Defaults for every key can be set in `/etc/linstor/docker-volume.conf`, section `[global]`",
        "  (the connection settings such as `controllers` live there too and are not options).",
        "  Options given with `-o` override those defaults; an explicit `nodes` drops a default",
        "  `replicas` (and the other automatic-placement defaults), an explicit `replicas` (or an",
        "  automatic-placement option, or several storage pools) drops a default `nodes`.",
        "- A volume Docker creates on its own (`docker run -v newvol:/data`, anonymous volumes) gets",
        "  the defaults.",
        f"- Without `size` a volume gets {format_size(DOCKER_DEFAULT_SIZE)}, or the filesystem's minimum",
        f"  if that is larger; without `replicas` or `nodes` it gets {DOCKER_DEFAULT_REPLICAS} replicas.",
        "- Lists (`nodes`, `storagepool`, ...) may be separated by commas or spaces, so both the",
        "  Python plugin's and the Go plugin's spelling work.",
        "",
        *_table(DOCKER_OPTIONS, ""),
        "",
        "## Rules shared by both",
        "",
        f"- Replica counts are whole numbers from 1 to {MAX_REPLICAS}.",
        f"- Smallest volume per filesystem (mkfs refuses less): {_minimum_sizes()}.",
        "  A smaller Docker `size` is an error.",
        "- Sizes: `K`, `M`, `G`, `T`, `P`, `Ki`..`Pi` and `KiB`..`PiB` are powers of 1024; `KB`..`PB`",
        "  are powers of 1000; a number without a unit is bytes (as in LINBIT's Go plugin; the old",
        "  Python plugin read megabytes, so `size=100` now fails with a hint instead of making a",
        "  100-byte volume). Decimals such as `1.5G` are rounded up to a whole byte.",
        "- Booleans: `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`, in any case.",
        f"- Limits: key names up to {MAX_KEY_CHARS} characters, values up to {MAX_VALUE_CHARS}"
        f" characters, at most {MAX_KEYS} keys per request.",
        f"- Property names in `replicasOnSame`, `replicasOnDifferent` and `xReplicasOnDifferent` get the"
        f" `{AUX_PREFIX}` prefix unless they have it (the CSI driver's `--property-namespace`, such as"
        " `Aux/topology`, replaces that prefix).",
        "- Names must be valid LINSTOR names: resource groups 2-48 characters, storage pools 3-48",
        f"  characters, {names.NAME_RULE}; nodes are host names.",
        "- Combinations LINBIT's CSI driver accepts by ignoring a key are accepted by the CSI driver",
        "  the same way, with a note in the log naming the ignored key:",
        "  - next to a `nodeList`: a `placementCount` that differs from the number of nodes, a",
        "    placement policy other than Manual, and the settings only automatic placement uses",
        "    (`replicasOnSame`, `replicasOnDifferent`, `xReplicasOnDifferent`, `doNotPlaceWithRegex`,",
        "    `disklessOnRemaining`); several storage pools are fine (LINSTOR picks one per node);",
        "  - `placementPolicy: Manual` without `nodeList` (LINBIT's driver places nothing; here",
        "    LINSTOR places the replicas); a `clientList` without `nodeList` (here LINSTOR places the",
        "    replicas with data and the client nodes get diskless resources);",
        "  - `disklessStoragePool` with a `layerList` without `drbd` or `nvme`, or when nothing can be",
        "    diskless; `allowRemoteVolumeAccess` is read as `false` without `drbd` or `nvme`.",
        "- Contradictions that cannot be provisioned (LINBIT's driver fails on them when it creates",
        "  the volume) are errors at once: a node in both `nodeList` and `clientList`, and a",
        "  `clientList` or `disklessOnRemaining` with a `layerList` that has neither `drbd` nor `nvme`.",
        "- Docker options are stricter: diskful `nodes` with a replica count that differs, with more",
        "  than one storage pool, or with a setting only automatic placement uses are errors, as are",
        "  a `disklessstoragepool` when nothing can be diskless and one option given twice.",
        "- Without `resourceGroup` / `resourcegroup`, the resource group is named",
        "  `sc-<uuid5 of the placement settings>`: replica count, storage pools, diskless pool,",
        "  diskless-on-remaining, layer list, replica constraints and passed-through properties.",
        "  Equal settings share one resource group. Filesystem, mount and manual node settings do",
        "  not change it.",
        "",
        *_filesystem_options(),
        *_io_limits(),
        *_mutable_parameters(),
        "## Volume names",
        "",
        "LINSTOR resource names are 2-48 characters, " + names.NAME_RULE + ", not `all` or",
        "`proxy`, and LINSTOR compares them case-insensitively. A CSI or Docker volume name that",
        "already is such a name in lower case is used as it is (so `pvc-<uuid>` volume ids match the",
        "official driver's), unless it ends like a generated name (`--` and 20 base32 characters).",
        "Any other name, such as `Data`, `my.volume` or the 64-hex name of an",
        "anonymous Docker volume, becomes `<readable prefix>--<20 characters of base32 SHA-256>`;",
        "the original name is kept on the volume and shown by `docker volume ls`. Snapshot names",
        "follow the same rule.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the volume parameter reference as Markdown.")
    parser.add_argument("--check", metavar="FILE", help="exit 1 if FILE differs from the generated text")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        path = Path(args.check)
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is out of date; regenerate it with: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
