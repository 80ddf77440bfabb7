"""LINSTOR ApiCallRc ret codes and their meaning for the plugin.

A ret code is a signed 64-bit integer: severity in bits 62-63, operation and object bits
filled in from the *request context*, and the code itself in bits 0-14. Only severity
plus code identify an answer, so every comparison here masks with
``MASK_SEVERITY_AND_CODE`` (what golinstor's ``ApiCallRc.Is`` does). Message texts
are for people and are never parsed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from plugin.errors import (
    AlreadyExists,
    InUse,
    InvalidArgument,
    NodeOffline,
    NoSpace,
    NotFound,
    OperationFailed,
    VolumeError,
)

MASK_ERROR = 0xC000000000000000
MASK_WARN = 0x8000000000000000
MASK_INFO = 0x4000000000000000
MASK_BITS_TYPE = MASK_ERROR
MASK_BITS_CODE = 0x7FFF
MASK_SEVERITY_AND_CODE = MASK_ERROR | MASK_BITS_CODE  # all that identifies an answer

# Bare codes (without severity) the plugin tells apart.
FAIL_INVLD_VLM_SIZE = 206
FAIL_INVLD_PROVIDER = 227
FAIL_NOT_FOUND_NODE = 300
FAIL_NOT_FOUND_RSC_DFN = 301
FAIL_NOT_FOUND_RSC = 302
FAIL_NOT_FOUND_STOR_POOL = 310
FAIL_NOT_FOUND_SNAPSHOT_DFN = 315
FAIL_NOT_FOUND_RSC_GRP = 317
FAIL_EXISTS_RSC_DFN = 501
FAIL_EXISTS_RSC = 502
FAIL_EXISTS_VLM_DFN = 503
FAIL_EXISTS_SNAPSHOT_DFN = 514
FAIL_EXISTS_RSC_GRP = 522
FAIL_POOL_EXHAUSTED_VLM_NR = 800
FAIL_POOL_EXHAUSTED_MINOR_NR = 801
FAIL_POOL_EXHAUSTED_TCP_PORT = 802
FAIL_POOL_EXHAUSTED_NODE_ID = 803
FAIL_NOT_ALL_UPTODATE = 974
FAIL_SNAPSHOT_NOT_UPTODATE = 979
FAIL_NOT_ENOUGH_FREE_SPACE = 980
FAIL_NOT_CONNECTED = 995
FAIL_NOT_ENOUGH_NODES = 996
FAIL_IN_USE = 997
WARN_NOT_CONNECTED = 1002
WARN_NOT_FOUND = 3000
INFO_TIE_BREAKER_TAKEOVER = 10006


def ret_code(entry: Mapping[str, Any]) -> int:
    value = entry.get("ret_code", 0)
    return value if isinstance(value, int) else 0


def is_error(rc: int) -> bool:
    return (rc & MASK_ERROR) == MASK_ERROR


def is_warning(rc: int) -> bool:
    return (rc & MASK_BITS_TYPE) == MASK_WARN


def bare_code(rc: int) -> int:
    return rc & MASK_BITS_CODE


def entries_of(body: Any) -> list[dict[str, Any]]:
    """The ApiCallRc list of an answer: a plain list, or the ``messages`` of a clone answer."""
    if isinstance(body, dict) and isinstance(body.get("messages"), list):
        body = body["messages"]
    if isinstance(body, list):
        return [e for e in body if isinstance(e, dict) and "ret_code" in e]
    return []


def object_ref(entries: Iterable[Mapping[str, Any]], *keys: str) -> str | None:
    """The first of the named object references (``obj_refs``) any entry carries, e.g. a snapshot name."""
    for entry in entries:
        refs = entry.get("obj_refs")
        if not isinstance(refs, Mapping):
            continue
        for key in keys:
            if refs.get(key):
                return str(refs[key])
    return None


def first_error(entries: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((e for e in entries if is_error(ret_code(e))), None)


def _has(entries: Iterable[Mapping[str, Any]], severity: int, code: int) -> bool:
    wanted = severity | code
    return any((ret_code(e) & MASK_SEVERITY_AND_CODE) == wanted for e in entries)


def has_error(entries: Iterable[Mapping[str, Any]], code: int) -> bool:
    return _has(entries, MASK_ERROR, code)


def has_warning(entries: Iterable[Mapping[str, Any]], code: int) -> bool:
    return _has(entries, MASK_WARN, code)


def has_info(entries: Iterable[Mapping[str, Any]], code: int) -> bool:
    return _has(entries, MASK_INFO, code)


# Codes 800-899: a number pool of the controller ran out. Which pool, in words a person can act on.
_EXHAUSTED = {
    FAIL_POOL_EXHAUSTED_VLM_NR: "LINSTOR has no free volume number left in this resource definition",
    FAIL_POOL_EXHAUSTED_MINOR_NR: "LINSTOR has run out of DRBD minor numbers (every device number "
    "of its range is taken; delete unused volumes or widen the range)",
    FAIL_POOL_EXHAUSTED_TCP_PORT: "LINSTOR has run out of DRBD TCP ports on a node (every port of "
    "its range is taken there; place the volume elsewhere, delete unused resources or widen the range)",
    FAIL_POOL_EXHAUSTED_NODE_ID: "LINSTOR has run out of DRBD node ids for this resource (too many "
    "replicas and diskless attachments of one volume)",
}


def exhausted_pool(code: int) -> str | None:
    """The sentence for a number-pool error (800-899), None for any other code."""
    if 800 <= code <= 899:
        return _EXHAUSTED.get(code, f"LINSTOR has run out of a number pool (code {code})")
    return None


def error_class(code: int) -> type[VolumeError]:
    """Default mapping of a bare error code to the core's typed errors."""
    if code in (FAIL_NOT_ENOUGH_NODES, FAIL_NOT_ENOUGH_FREE_SPACE) or exhausted_pool(code):
        return NoSpace
    if code == FAIL_IN_USE:
        return InUse
    if code == FAIL_NOT_CONNECTED:
        return NodeOffline
    if 300 <= code <= 399:
        return NotFound
    if 500 <= code <= 599:
        return AlreadyExists
    if 200 <= code <= 299:
        return InvalidArgument
    return OperationFailed


def describe(entry: Mapping[str, Any]) -> str:
    """A one-line sentence from an entry: message, then cause and correction when given."""
    parts = [str(entry.get("message") or "LINSTOR reported an error without a message").rstrip(".") + "."]
    for key in ("cause", "correction"):
        text = entry.get(key)
        if text:
            parts.append(f"{key.capitalize()}: {str(text).rstrip('.')}.")
    return " ".join(parts)


def code_of(error: VolumeError) -> int | None:
    """The bare LINSTOR code a client error carries, if it came from a LINSTOR answer."""
    code = error.details.get("code")
    return code if isinstance(code, int) else None
