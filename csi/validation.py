"""Required-field and value checks that run before any lookup.

Conformance tools send a fake id together with a missing field and expect
INVALID_ARGUMENT, not NOT_FOUND, so handlers call these first. proto3 cannot tell
"missing" from "empty", so empty strings, zero sizes and empty lists count as missing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from google.protobuf.message import Message

from csi.errors import OutOfRange
from csi.generated import csi_pb2
from plugin.errors import InvalidArgument

MAX_NAME_BYTES = 128
# Control characters the spec bans from names (common whitespace is allowed).
_BANNED = re.compile("[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]")
DEFAULT_SIZE_BYTES = 1024**3


def require(request: Message, *fields: str) -> None:
    """Raise InvalidArgument naming the first missing field."""
    for name in fields:
        field = request.DESCRIPTOR.fields_by_name[name]
        if field.message_type is not None and not field.is_repeated:
            present = request.HasField(name)
        else:
            present = bool(getattr(request, name))
        if not present:
            raise InvalidArgument(f"{name} is required")


def check_name(name: str, what: str = "name") -> None:
    if not name:
        raise InvalidArgument(f"{what} is required")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidArgument(f"{what} is longer than {MAX_NAME_BYTES} bytes")
    if _BANNED.search(name):
        raise InvalidArgument(f"{what} contains control characters")


def check_path(path: str, what: str) -> None:
    if not path:
        raise InvalidArgument(f"{what} is required")
    if "\x00" in path:
        raise InvalidArgument(f"{what} contains a NUL byte")
    if not os.path.isabs(path):
        raise InvalidArgument(f"{what} must be an absolute path, not {path!r}")


# Where kubelet hands out staging and target paths; Nomad's are under its
# stage_publish_base_dir (``/local/csi`` in the task), which the node jobs pass as a root.
DEFAULT_PATH_ROOTS = ("/var/lib/kubelet",)


class PathRoots:
    """The directories inside which the node service stages, publishes, unmounts and removes.

    A CO only ever hands out paths below its own directory, so a path anywhere else is a
    mistake or an attack (binding ``/`` somewhere, mounting over ``/etc``, removing the
    driver's working directory). A path is resolved (``..`` and symlinks, as far as they
    exist) before it is compared, so neither can lead out of a root, and the node service
    goes on with the resolved path, not the one it was given.
    """

    def __init__(self, roots: Iterable[str]) -> None:
        checked = []
        for root in roots:
            if not root or "\x00" in root or not os.path.isabs(root):
                raise InvalidArgument(f"path root {root!r} must be an absolute directory path")
            normal = os.path.normpath(root)
            if normal == "/":
                raise InvalidArgument("path root / would confine nothing; name the CO's directory")
            checked.append(normal)
        if not checked:
            raise InvalidArgument("the node service needs at least one path root")
        self.roots = tuple(dict.fromkeys(checked))

    def confine(self, path: str, what: str) -> str:
        """The resolved path, if it lies strictly below a root; INVALID_ARGUMENT naming ``what`` if not."""
        check_path(path, what)
        resolved = os.path.realpath(path)
        for root in self.roots:
            inside = os.path.realpath(root).rstrip("/") + "/"
            if resolved.startswith(inside) and len(resolved) > len(inside):
                return resolved
        shown = path if resolved == path else f"{path} (resolved: {resolved})"
        raise InvalidArgument(
            f"{what} {shown} is outside the directories this node plugin works in "
            f"({', '.join(self.roots)}); a CO's paths lie below its own directory "
            "(start the driver with --path-root for another one)"
        )


def size_from_range(
    capacity: csi_pb2.CapacityRange | None, minimum: int, default: int = DEFAULT_SIZE_BYTES
) -> int:
    """Pick the size to provision: the requested size, raised to the filesystem minimum.

    Without a requested size the default is used, capped by the limit. A limit below
    what the volume needs is OUT_OF_RANGE.
    """
    required = capacity.required_bytes if capacity is not None else 0
    limit = capacity.limit_bytes if capacity is not None else 0
    if required < 0 or limit < 0:
        raise InvalidArgument("capacity_range: sizes must not be negative")
    if limit and required > limit:
        raise InvalidArgument(f"capacity_range: required_bytes {required} is larger than limit_bytes {limit}")
    size = required or (min(default, limit) if limit else default)
    size = max(size, minimum)
    if limit and size > limit:
        raise OutOfRange(
            f"capacity_range: limit_bytes {limit} is below the minimum size {minimum} for this volume"
        )
    return size
