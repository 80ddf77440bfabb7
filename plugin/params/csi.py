"""CSI StorageClass (and Nomad volume) parameters into :class:`~plugin.params.model.VolumeParams`.

The same ``linstor.csi.linbit.com/...`` keys and rules as LINBIT's driver, so existing
StorageClasses work unchanged; what that driver accepts and ignores is accepted with a
note. Every problem raises :class:`~plugin.errors.InvalidArgument` naming the key as
written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from plugin.errors import InvalidArgument
from plugin.params import qos
from plugin.params.collect import Given, Settings, check_bounds, parse_value, show, unknown_key
from plugin.params.filesystems import DEFAULT_FILESYSTEM
from plugin.params.fs_options import OptionError, check_mkfs_options, split_mkfs_options
from plugin.params.keys import (
    CSI_INDEX,
    CSI_NAMESPACE,
    CSI_PARAMETERS,
    LEGACY_PROPERTY_NAMESPACE,
    PROPERTY_NAMESPACE,
)
from plugin.params.model import DEFAULT_PROPERTY_NAMESPACE, VolumeParams
from plugin.params.mount_rules import split_mount_options
from plugin.params.rules import build


def _property_key(key: str, name: str, word: str) -> str:
    if not name or name.startswith("/") or name.endswith("/") or "//" in name:
        raise InvalidArgument(
            f'invalid {word} "{show(key)}": expected a LINSTOR property name after the prefix, '
            f'such as "{PROPERTY_NAMESPACE}/DrbdOptions/Net/protocol"',
            key=key,
        )
    if any(ch.isspace() for ch in name):
        raise InvalidArgument(f'invalid {word} "{show(key)}": a LINSTOR property name has no spaces', key=key)
    return name


def _csi_order(item: tuple[str, Any]) -> tuple[int, int, str]:
    """Two keys for one setting: the namespaced spelling, then the canonical name, win."""
    key = str(item[0])
    _, slash, rest = key.partition("/")
    bare = not slash
    spec = CSI_INDEX.get((key if bare else rest).lower())
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
    check_bounds(parameters, "parameter")
    settings = Settings("parameter", lenient=True)
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
                settings.put(settings.properties, name, Given(key, raw, raw))
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
        spec = CSI_INDEX.get(rest.lower())
        if spec is None:
            raise unknown_key(key, "parameter", CSI_PARAMETERS, CSI_NAMESPACE + "/")
        if raw.strip() == "":
            continue
        value = parse_value(spec, key, raw, "parameter")
        if spec.field is None:
            settings.notes.append(f'parameter "{key}" {spec.note}')
            continue
        settings.put(settings.values, spec.field, Given(key, raw, value))
    return build(
        settings, extra, fs_type=DEFAULT_FILESYSTEM, size_bytes=None, property_namespace=property_namespace
    )


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
                f'invalid value "{show(params.mkfs_opts)}" for parameter "fsOpts": {exc}', key="fsOpts"
            ) from None
        try:
            split_mount_options(params.mount_opts, fs_type)
        except InvalidArgument as exc:
            shown = show(",".join(params.mount_opts))
            raise InvalidArgument(
                f'invalid value "{shown}" for parameter "mountOpts": {exc}', key="mountOpts"
            ) from None
        try:
            split_mount_options(list(mount_flags), fs_type)
        except InvalidArgument as exc:
            raise InvalidArgument(f"invalid mount_flags in the volume capability: {exc}") from None
    return replace(params, fs_type=fs_type)
