"""Required-field and value checks that run before any lookup.

Conformance tools send a fake id together with a missing field and expect
INVALID_ARGUMENT, not NOT_FOUND, so handlers call these first. proto3 cannot tell
"missing" from "empty", so empty strings, zero sizes and empty lists count as missing.
"""

from __future__ import annotations

import re

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
