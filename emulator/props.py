"""Property whitelist and the override/delete/delete-namespace edit that every PUT shares.

The real controller only accepts keys it knows for the object type (``Aux/*`` always);
the emulator accepts the subset a volume plugin uses and rejects the rest with 213, so
a typo in a plugin's property key fails here as it would in production.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emulator import drbd_options
from emulator import retcodes as rc

#: The controller's longest property key (``PropsContainer``'s path limit).
MAX_KEY_LENGTH = 256

_FS_TYPES = frozenset({"ext4", "xfs"})
_BOOLS = frozenset({"true", "false", "yes", "no"})

#: Exact keys accepted on any object, with a value check (None = any string).
_KEYS: dict[str, frozenset[str] | None] = {
    "StorPoolName": None,
    "StorPoolNameDrbdMeta": None,
    "FileSystem/Type": _FS_TYPES,
    "FileSystem/MkfsParams": None,
    "FileSystem/User": None,
    "FileSystem/Group": None,
    "BalanceResourcesEnabled": _BOOLS,
    "MaxOversubscriptionRatio": None,
    "MaxFreeCapacityOversubscriptionRatio": None,
    "MaxTotalCapacityOversubscriptionRatio": None,
    "AutoplaceTarget": _BOOLS,
    "Autoplacer/MinThinFreeSpace": None,
    "cloned-from": None,
    "PrefNic": None,
    "DrbdPrimarySetOn": None,
}
#: Namespaces whose keys are free (``Aux/``) or not modelled key by key.
_PREFIXES = ("Aux/", "StorDriver/", "Internal/")


def key_problem(key: str, value: str | None) -> str | None:
    """Why ``key`` (with ``value`` when setting) is refused, or None."""
    if not isinstance(key, str) or not key:
        return "Property keys must be non-empty strings"
    if len(key) > MAX_KEY_LENGTH:
        return f"The key '{key[:40]}...' is {len(key)} characters long; keys have at most {MAX_KEY_LENGTH}."
    if key.startswith("DrbdOptions/"):
        return drbd_options.problem(key, value)
    if key in _KEYS:
        allowed = _KEYS[key]
        if value is not None and allowed is not None and value.lower() not in allowed:
            return f"Invalid value '{value}' for property '{key}' (allowed: {', '.join(sorted(allowed))})"
        if value is not None and key == "MaxOversubscriptionRatio":
            try:
                if float(value) <= 0:
                    raise ValueError
            except ValueError:
                return f"Invalid value '{value}' for property '{key}' (a positive number)"
        return None
    if key.startswith(_PREFIXES) and len(key) > len(key.split("/", 1)[0]) + 1:
        return None
    return f"The key '{key}' is not whitelisted."


def validate_props(props: Mapping[str, Any], op: int, obj: int) -> None:
    """Raise 213 for the first key or value the controller would refuse."""
    for k, v in props.items():
        if not isinstance(v, str):
            raise rc.ApiFailure(rc.error(rc.FAIL_INVLD_PROP, f"Property '{k}' must be a string", op, obj))
        problem = key_problem(k, v)
        if problem:
            raise rc.ApiFailure(rc.error(rc.FAIL_INVLD_PROP, problem, op, obj, details=f"Property: {k}={v}"))


def apply_modify(
    props: dict[str, str],
    override: Mapping[str, str],
    delete: list[str],
    delete_namespaces: list[str],
) -> dict[str, str]:
    """The props after a PUT: deletes first, then namespace deletes, then overrides."""
    result = dict(props)
    for k in delete:
        result.pop(k, None)
    for ns in delete_namespaces:
        prefix = ns.rstrip("/") + "/"
        for k in [k for k in result if k.startswith(prefix)]:
            del result[k]
    result.update(override)
    return result


def matches_filters(props: Mapping[str, str], filters: list[str]) -> bool:
    """``props`` query filters: ``key`` must exist, ``key=value`` must match; all AND-ed."""
    return matches_parsed(props, parse_filters(filters))


#: A parsed ``props`` filter: the key, and the value it must have (None: it must exist).
Filter = tuple[str, str | None]


def parse_filters(filters: list[str]) -> list[Filter]:
    """The filters of one list call, split once rather than for every object they test."""
    parsed: list[Filter] = []
    for f in filters:
        k, is_pair, v = f.partition("=")
        parsed.append((k, v) if is_pair else (f, None))
    return parsed


def matches_parsed(props: Mapping[str, str], filters: list[Filter]) -> bool:
    """:func:`matches_filters` with filters from :func:`parse_filters`."""
    return all((k in props) if v is None else (props.get(k) == v) for k, v in filters)
