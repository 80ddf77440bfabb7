"""LINSTOR ApiCallRc entries: the bit layout of ``ret_code`` and the HTTP status rules.

A client identifies an answer only by ``ret_code & (MASK_ERROR | MASK_BITS_CODE)``, but a
faithful emulator must still fill in the operation and object bits from the request
context, exactly as the real controller does, so that raw values match byte for byte.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Severity (bits 62-63).
MASK_ERROR = 0xC000000000000000
MASK_WARN = 0x8000000000000000
MASK_INFO = 0x4000000000000000
MASK_BITS_TYPE = 0xC000000000000000

# Operation (bits 24-25).
MASK_CRT = 0x01000000
MASK_MOD = 0x02000000
MASK_DEL = 0x03000000
MASK_BITS_OP = 0x03000000

# Object (bits 18-22).
MASK_VLM_GRP = 0x480000
MASK_RSC_GRP = 0x440000
MASK_KVS = 0x400000
MASK_NODE = 0x3C0000
MASK_RSC_DFN = 0x380000
MASK_RSC = 0x340000
MASK_VLM_DFN = 0x300000
MASK_VLM = 0x2C0000
MASK_STOR_POOL = 0x140000
MASK_CTRL_CONF = 0x100000
MASK_SNAPSHOT = 0x0C0000
MASK_BITS_OBJ = 0x7C0000

MASK_BITS_CODE = 0x7FFF

# Success codes.
CREATED = 1
DELETED = 2
MODIFIED = 3

# Error codes (bare; severity added by the constructors below).
FAIL_INVLD_NODE_NAME = 200
FAIL_INVLD_NODE_TYPE = 201
FAIL_INVLD_RSC_NAME = 202
FAIL_INVLD_VLM_NR = 205
FAIL_INVLD_VLM_SIZE = 206
FAIL_INVLD_MINOR_NR = 207
FAIL_INVLD_STOR_POOL_NAME = 208
FAIL_INVLD_NET_ADDR = 210
FAIL_INVLD_NET_PORT = 211
FAIL_INVLD_NET_TYPE = 212
FAIL_INVLD_PROP = 213
FAIL_INVLD_SNAPSHOT_NAME = 218
FAIL_INVLD_PLACE_COUNT = 219
FAIL_INVLD_KVS_NAME = 223
FAIL_INVLD_LAYER_KIND = 224
FAIL_INVLD_LAYER_STACK = 225
FAIL_INVLD_EXT_NAME = 226
FAIL_INVLD_PROVIDER = 227
FAIL_INVLD_VLM_SIZES = 228
FAIL_INVLD_REQUEST = 234
FAIL_INVLD_RSC_GRP_NAME = 237
FAIL_NOT_FOUND_NODE = 300
FAIL_NOT_FOUND_RSC_DFN = 301
FAIL_NOT_FOUND_RSC = 302
FAIL_NOT_FOUND_VLM_DFN = 303
FAIL_NOT_FOUND_VLM = 304
FAIL_NOT_FOUND_STOR_POOL = 310
FAIL_NOT_FOUND_DFLT_STOR_POOL = 311
FAIL_NOT_FOUND_SNAPSHOT_DFN = 313
FAIL_NOT_FOUND_SNAPSHOT_VLM_DFN = 314
FAIL_NOT_FOUND_SNAPSHOT = 315
FAIL_NOT_FOUND_KVS = 316
FAIL_NOT_FOUND_RSC_GRP = 317
FAIL_NOT_FOUND_VLM_GRP = 318
FAIL_ACC_DENIED_COMMAND = 412
FAIL_EXISTS_NODE = 500
FAIL_EXISTS_RSC_DFN = 501
FAIL_EXISTS_RSC = 502
FAIL_EXISTS_VLM_DFN = 503
FAIL_EXISTS_STOR_POOL = 510
FAIL_EXISTS_SNAPSHOT_DFN = 514
FAIL_EXISTS_RSC_GRP = 522
FAIL_EXISTS_VLM_GRP = 523
FAIL_POOL_EXHAUSTED_MINOR_NR = 801
FAIL_POOL_EXHAUSTED_TCP_PORT = 802
FAIL_NOT_ALL_UPTODATE = 974
FAIL_NOT_ENOUGH_FREE_SPACE = 980
FAIL_STLT_DOES_NOT_SUPPORT_LAYER = 988
FAIL_STLT_DOES_NOT_SUPPORT_PROVIDER = 989
FAIL_SNAPSHOTS_NOT_SUPPORTED = 994
FAIL_NOT_CONNECTED = 995
FAIL_NOT_ENOUGH_NODES = 996
FAIL_IN_USE = 997
FAIL_UNKNOWN_ERROR = 998
FAIL_IMPL_ERROR = 999

# Warning codes.
WARN_NOT_CONNECTED = 1002
WARN_RSC_ALREADY_DEPLOYED = 1006
WARN_RSC_ALREADY_HAS_DISK = 1007
WARN_VLMDFN_RESIZE_SAME_SIZE = 1023
WARN_NOT_FOUND = 3000

# Info codes.
INFO_NO_RSC_SPAWNED = 10000
INFO_RSC_ALREADY_EXISTS = 10008

#: ``API_CALL_PARSE_ERROR`` as the controller sends it for JSON it cannot read.
API_CALL_PARSE_ERROR = -3458764513820540931


def to_signed(value: int) -> int:
    """JSON carries ret codes as signed 64-bit integers, as Java's ``long`` prints them."""
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= (1 << 63) else value


def code_of(ret_code: int) -> int:
    """The bare code (bits 0-14), whatever the sign of the JSON value."""
    return ret_code & MASK_BITS_CODE


def is_error(ret_code: int) -> bool:
    return (ret_code & MASK_ERROR) == MASK_ERROR


def now_iso() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="milliseconds")


@dataclass
class Entry:
    """One ApiCallRc entry; ``ret_code`` is built from severity, context bits and code."""

    severity: int
    code: int
    message: str
    op: int = 0
    obj: int = 0
    cause: str = ""
    details: str = ""
    correction: str = ""
    obj_refs: dict[str, str] = field(default_factory=dict)
    error_report_ids: list[str] = field(default_factory=list)
    #: A literal ret_code for the few constants that do not follow the layout (parse errors).
    raw_code: int | None = None

    @property
    def ret_code(self) -> int:
        if self.raw_code is not None:
            return self.raw_code
        return to_signed(self.severity | self.op | self.obj | self.code)

    def with_context(self, op: int, obj: int) -> Entry:
        """Fill operation/object bits from the request context unless already set (ResponseConverter)."""
        if not self.op and not self.obj:
            self.op, self.obj = op, obj
        return self

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ret_code": self.ret_code, "message": self.message}
        for key in ("cause", "details", "correction"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.obj_refs:
            out["obj_refs"] = dict(self.obj_refs)
        if self.error_report_ids:
            out["error_report_ids"] = list(self.error_report_ids)
        out["created_at"] = now_iso()
        return out


def success(code: int, message: str, op: int = 0, obj: int = 0, **kw: Any) -> Entry:
    return Entry(0, code, message, op, obj, **kw)


def error(code: int, message: str, op: int = 0, obj: int = 0, **kw: Any) -> Entry:
    return Entry(MASK_ERROR, code, message, op, obj, **kw)


def warn(code: int, message: str, op: int = 0, obj: int = 0, **kw: Any) -> Entry:
    return Entry(MASK_WARN, code, message, op, obj, **kw)


def info(code: int, message: str, op: int = 0, obj: int = 0, **kw: Any) -> Entry:
    return Entry(MASK_INFO, code, message, op, obj, **kw)


class ApiFailure(Exception):
    """Aborts a request: the entries (with any collected before) become the response body.

    Raising it inside a mutation also means "nothing was changed": handlers validate
    everything before they touch state or storage.
    """

    def __init__(self, *entries: Entry) -> None:
        super().__init__(entries[0].message if entries else "error")
        self.entries = list(entries)


def refuse_invalid(problem: str | None, code: int, op: int = 0, obj: int = 0) -> None:
    """Raise LINSTOR's answer to an invalid name: error ``code`` with the name check's sentence.

    Every lookup and create checks its names this way, so an invalid name always gets the
    same kind of entry (and HTTP 500) whichever call it arrives in.
    """
    if problem:
        raise ApiFailure(error(code, problem, op, obj))


def new_error_report_id() -> str:
    return uuidlib.uuid4().hex[:8].upper() + "-00000-000001"


def http_status(entries: list[Entry], success_status: int) -> int:
    """The controller's ``toResponse``: the first error entry decides, warnings never do."""
    for entry in entries:
        if entry.severity != MASK_ERROR:
            continue
        code = entry.code
        if 300 <= code <= 399:
            return 404
        if 400 <= code <= 499:
            return 403
        return 500
    return success_status
