"""Value parsers that know the plugin's vocabulary: LINSTOR names, layers, filesystems, options.

Like the plain parsers of :mod:`plugin.params.values` they know nothing about keys: they
raise :class:`~plugin.params.values.BadValue` with the sentence that says what is allowed,
and the key tables (:mod:`plugin.params.keys`) name the parser of every key.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

from plugin import names
from plugin.errors import InvalidArgument
from plugin.params.filesystems import FILESYSTEMS
from plugin.params.fs_options import OptionError, check_mkfs_options, split_mkfs_options
from plugin.params.model import LAYERS, PLACEMENT_POLICIES
from plugin.params.mount_rules import split_mount_options
from plugin.params.values import BadValue, parse_float, split_commas, split_words


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
    """Property names for replicasOnSame/Different, as written (the namespace is added by ``rules.build``)."""
    items = split_words(value)
    if not items:
        raise BadValue("expected property names separated by spaces, such as 'topology/zone'")
    return tuple(items)


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
