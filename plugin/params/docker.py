"""Docker ``-o`` options (LINBIT's Docker plugins' keys) into :class:`~plugin.params.model.VolumeParams`.

Options are layered over the defaults of the configuration; keys are case-insensitive
and an empty value means "not set". Every problem raises
:class:`~plugin.errors.InvalidArgument` naming the option as written, and saying when it
came from the configured defaults.
"""

from __future__ import annotations

from collections.abc import Mapping

from plugin.errors import InvalidArgument
from plugin.params.collect import Given, Settings, check_bounds, parse_value, show
from plugin.params.filesystems import DEFAULT_FILESYSTEM, minimum_size_bytes
from plugin.params.keys import (
    DOCKER_DEFAULT_REPLICAS,
    DOCKER_DEFAULT_SIZE,
    DOCKER_INDEX,
    DOCKER_OPTIONS,
)
from plugin.params.model import AUTOPLACE_ONLY_FIELDS, VolumeParams
from plugin.params.rules import build, check_filesystem_options
from plugin.params.values import format_size


def _collect_docker(settings: Settings, mapping: Mapping[str, str], from_defaults: bool) -> set[str]:
    check_bounds(mapping, "option", " in the defaults of the configuration" if from_defaults else "")
    given_fields: set[str] = set()
    for key, raw in mapping.items():
        raw = "" if raw is None else str(raw)
        spec = DOCKER_INDEX.get(key.strip().lower())
        if spec is None:
            where = " in the defaults of the configuration" if from_defaults else ""
            allowed = ", ".join(s.name for s in DOCKER_OPTIONS)
            raise InvalidArgument(
                f'unknown option "{show(key)}"{where}: allowed options are {allowed}', key=key
            )
        if raw.strip() == "":
            continue
        value = parse_value(spec, key, raw, "option")
        assert spec.field is not None
        settings.put(settings.values, spec.field, Given(key, raw, value, from_defaults))
        given_fields.add(spec.field)
    return given_fields


def _drop_overridden_defaults(settings: Settings, explicit: set[str]) -> None:
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
    settings = Settings("option")
    _collect_docker(settings, defaults, from_defaults=True)
    explicit = _collect_docker(settings, options or {}, from_defaults=False)
    _drop_overridden_defaults(settings, explicit)
    fs_type = settings.get("fs_type", DEFAULT_FILESYSTEM)
    check_filesystem_options(settings, fs_type)
    minimum = minimum_size_bytes(fs_type)
    if settings.has("size_bytes"):
        size = settings.get("size_bytes")
        if size < minimum:
            raw = show(settings.values["size_bytes"].raw)
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
        settings.values["place_count"] = Given("replicas", str(default), default, from_defaults=True)
    return build(settings, {}, fs_type=fs_type, size_bytes=size)
