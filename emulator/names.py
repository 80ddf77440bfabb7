"""LINSTOR's name rules and its case handling.

Identity is the upper-cased name, display keeps the original spelling, and every list
is ordered by the upper-cased name; the helpers here are the one place that knows it.
"""

from __future__ import annotations

import re

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_HAS_LETTER = re.compile(r"[A-Za-z]")
_NODE_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$")
RESERVED_RSC_NAMES = frozenset({"ALL", "PROXY"})


def key(name: str) -> str:
    """The identity of a name: LINSTOR compares names upper-cased."""
    return name.upper()


def generic_name_problem(name: str, min_len: int, max_len: int) -> str | None:
    """Why ``name`` is not a valid LINSTOR identifier, or None when it is."""
    length = len(name.encode("utf-8"))
    if length < min_len:
        return f"Name '{name}' is too short (minimum length is {min_len})"
    if length > max_len:
        return f"Name '{name}' is too long (maximum length is {max_len})"
    if not _NAME_RE.match(name):
        return (
            f"Name '{name}' contains invalid characters "
            "(allowed: A-Z, a-z, 0-9, '_', '-'; the first one a letter or '_')"
        )
    if not _HAS_LETTER.search(name):
        return f"Name '{name}' must contain at least one letter"
    return None


def resource_name_problem(name: str) -> str | None:
    problem = generic_name_problem(name, 2, 48)
    if problem is None and key(name) in RESERVED_RSC_NAMES:
        return f"Name '{name}' is reserved"
    return problem


def snapshot_name_problem(name: str) -> str | None:
    return generic_name_problem(name, 2, 48)


def resource_group_name_problem(name: str) -> str | None:
    return generic_name_problem(name, 2, 48)


def storage_pool_name_problem(name: str) -> str | None:
    return generic_name_problem(name, 3, 48)


def kvs_name_problem(name: str) -> str | None:
    return generic_name_problem(name, 2, 48)


def node_name_problem(name: str) -> str | None:
    """RFC 1123 host names, as LINSTOR's NodeName checks them."""
    length = len(name.encode("utf-8"))
    if length < 2 or length > 255:
        return f"Node name '{name}' must be 2 to 255 characters long"
    labels = name.split(".")
    for label in labels:
        if not label or len(label) > 63 or not _NODE_LABEL.match(label):
            return f"Node name '{name}' is not a valid host name"
    return None


def sort_key(name: str) -> str:
    return key(name)
