"""Typed reading of request bodies.

The controller maps bodies onto generated Java types with Jackson, so a wrong type or an
unknown field is a parse error (HTTP 400, ``API_CALL_PARSE_ERROR``) before any handler
runs. The tiny schema language here reproduces that without a dependency.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from emulator import retcodes as rc


class ParseError(Exception):
    """The body does not map onto the endpoint's request type."""


@dataclass(frozen=True)
class Obj:
    fields: dict[str, Any]
    strict: bool = True


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class MapOf:
    value: Any


STR = "str"
INT = "int"
#: A Java ``long`` (sizes in KiB, timestamps): the same coercions, a 64-bit range.
LONG = "long"
BOOL = "bool"
NUM = "num"
ANY = "any"


def check(value: Any, spec: Any, where: str = "body") -> Any:
    """Validate ``value`` against ``spec``; JSON null is accepted anywhere (Jackson leaves the default).

    Scalars are coerced as Jackson's default mapper coerces them (``ALLOW_COERCION_OF_SCALARS``,
    ``ACCEPT_FLOAT_AS_INT``): the ``linstor`` client sends ``"place_count": "2"``.
    """
    if value is None:
        return None
    if spec == ANY:
        return value
    if spec in (STR, INT, LONG, NUM, BOOL):
        return _scalar(value, spec, where)
    if isinstance(spec, ListOf):
        if not isinstance(value, list):
            raise ParseError(f"{where}: expected a list")
        return [check(v, spec.item, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(spec, MapOf):
        if not isinstance(value, dict):
            raise ParseError(f"{where}: expected an object")
        return {str(k): check(v, spec.value, f"{where}.{k}") for k, v in value.items()}
    if isinstance(spec, Obj):
        if not isinstance(value, dict):
            raise ParseError(f"{where}: expected an object")
        if spec.strict:
            unknown = sorted(set(value) - set(spec.fields))
            if unknown:
                raise ParseError(f"{where}: unrecognized field '{unknown[0]}'")
        return {k: check(value.get(k), s, f"{where}.{k}") for k, s in spec.fields.items() if k in value}
    raise AssertionError(f"bad spec {spec!r}")


_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_NUM_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_JAVA_INT = (-(1 << 31), (1 << 31) - 1)
_JAVA_LONG = (-(1 << 63), (1 << 63) - 1)


def _scalar(value: Any, spec: str, where: str) -> Any:
    """One scalar as Jackson maps it onto a Java ``String``, ``Integer``, ``Double`` or ``Boolean``."""
    if isinstance(value, dict | list):
        raise ParseError(
            f"{where}: expected a {_WHAT[spec]}, not {'an object' if isinstance(value, dict) else 'a list'}"
        )
    if spec == STR:
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else json.dumps(value)
    if spec == BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        if isinstance(value, str):
            text = value.strip()
            if text == "":
                return None
            if text.lower() in ("true", "false"):
                return text.lower() == "true"
        raise ParseError(f"{where}: expected true or false")
    if isinstance(value, bool):
        raise ParseError(f"{where}: expected a {_WHAT[spec]}, not a boolean")
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return None
        if spec in (INT, LONG) and _INT_TEXT.fullmatch(text):
            value = int(text)
        elif spec == NUM and _NUM_TEXT.fullmatch(text):
            return float(text)
        else:
            raise ParseError(f"{where}: expected a {_WHAT[spec]}, not '{value}'")
    if spec in (INT, LONG):
        value = int(value)  # a float is truncated, as ACCEPT_FLOAT_AS_INT does
        low, high = _JAVA_INT if spec == INT else _JAVA_LONG
        if not low <= value <= high:
            raise ParseError(f"{where}: {value} is out of range of {spec}")
    return value


_WHAT = {STR: "string", INT: "integer", LONG: "integer", NUM: "number", BOOL: "boolean"}


def loads(raw: bytes) -> Any:
    """A request body as JSON; an empty body reads as null (Jackson maps it to defaults).

    Every way the text can fail to be JSON is a :class:`ParseError`, nesting too deep for
    the parser included (Jackson also refuses documents nested beyond its limit).
    """
    text = raw.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"malformed JSON: {exc}") from exc
    except RecursionError as exc:
        raise ParseError("malformed JSON: the document is nested too deeply") from exc


def parse_error_entry(detail: str) -> rc.Entry:
    """The exact entry the controller sends when Jackson cannot read the body."""
    return rc.Entry(
        rc.MASK_ERROR, 0, "Unable to parse input json.", details=detail, raw_code=rc.API_CALL_PARSE_ERROR
    )


STR_LIST = ListOf(STR)
PROPS = MapOf(STR)
PROPS_MODIFY = {"override_props": PROPS, "delete_props": STR_LIST, "delete_namespaces": STR_LIST}

SELECT_FILTER = Obj(
    {
        "place_count": INT,
        "additional_place_count": INT,
        "node_name_list": STR_LIST,
        "storage_pool": STR,
        "storage_pool_list": STR_LIST,
        "storage_pool_diskless_list": STR_LIST,
        "not_place_with_rsc": STR_LIST,
        "not_place_with_rsc_regex": STR,
        "replicas_on_same": STR_LIST,
        "replicas_on_different": STR_LIST,
        "x_replicas_on_different_map": MapOf(INT),
        "layer_stack": STR_LIST,
        "provider_list": STR_LIST,
        "diskless_on_remaining": BOOL,
        "diskless_type": STR,
        "port_count": INT,
        "overprovision": NUM,
    }
)

POOL_CREATE = Obj(
    {
        "storage_pool_name": STR,
        "provider_kind": STR,
        "props": PROPS,
        "free_space_mgr_name": STR,
        "external_locking": BOOL,
        "shared_space": STR,
    }
)
NODE_MODIFY = Obj({**PROPS_MODIFY, "node_type": STR})
RG_CREATE = Obj(
    {"name": STR, "description": STR, "props": PROPS, "select_filter": SELECT_FILTER, "peer_slots": INT}
)
RG_MODIFY = Obj(
    {
        **PROPS_MODIFY,
        "description": STR,
        "select_filter": SELECT_FILTER,
        "peer_slots": INT,
        "copy_all_snaps": BOOL,
        "snap_names": STR_LIST,
    }
)
RG_SPAWN = Obj(
    {
        "resource_definition_name": STR,
        "resource_definition_external_name": STR,
        "volume_sizes": ListOf(LONG),
        "select_filter": SELECT_FILTER,
        "partial": BOOL,
        "definitions_only": BOOL,
        "resource_definition_props": PROPS,
        "peer_slots": INT,
        "volume_passphrases": STR_LIST,
    }
)
RG_ADJUST = Obj({"select_filter": SELECT_FILTER, "copy_all_snaps": BOOL, "snap_names": STR_LIST})
QUERY_SIZE_INFO = Obj({"select_filter": SELECT_FILTER, "ignore_cache_older_than_sec": INT})
VG_CREATE = Obj({"volume_number": INT, "props": PROPS, "flags": STR_LIST, "uuid": STR})
VG_MODIFY = Obj({**PROPS_MODIFY, "flags": STR_LIST})
LAYER_DATA = Obj({"type": STR, "data": ANY}, strict=False)
RD_CREATE = Obj(
    {
        "resource_definition": Obj(
            {
                "name": STR,
                "external_name": STR,
                "props": PROPS,
                "flags": STR_LIST,
                "layer_data": ListOf(LAYER_DATA),
                "uuid": STR,
                "resource_group_name": STR,
                "volume_definitions": ListOf(ANY),
            }
        ),
        "drbd_port": INT,
        "drbd_secret": STR,
        "drbd_peer_slots": INT,
        "drbd_transport_type": STR,
    }
)
RD_MODIFY = Obj(
    {**PROPS_MODIFY, "layer_stack": STR_LIST, "resource_group": STR, "drbd_port": INT, "drbd_peer_slots": INT}
)
VD_CREATE = Obj(
    {
        "volume_definition": Obj(
            {
                "volume_number": INT,
                "size_kib": LONG,
                "props": PROPS,
                "flags": STR_LIST,
                "layer_data": ListOf(LAYER_DATA),
                "uuid": STR,
            }
        ),
        "drbd_minor_number": INT,
        "passphrase": STR,
    }
)
VD_MODIFY = Obj({**PROPS_MODIFY, "size_kib": LONG, "flags": STR_LIST})
RSC_CREATE = Obj(
    {
        "resource": Obj(
            {
                "name": STR,
                "node_name": STR,
                "props": PROPS,
                "flags": STR_LIST,
                "layer_object": ANY,
                "state": ANY,
                "uuid": STR,
                "create_timestamp": LONG,
                "effective_props": ANY,
            }
        ),
        "layer_list": STR_LIST,
        "drbd_node_id": INT,
        "drbd_tcp_ports": ListOf(INT),
        "drbd_tcp_port_count": INT,
        "drbd_client": BOOL,
        "copy_all_snaps": BOOL,
        "snap_names": STR_LIST,
    }
)
RSC_MODIFY = Obj({**PROPS_MODIFY, "drbd_tiebreaker": BOOL, "drbd_client": BOOL})
AUTOPLACE = Obj(
    {
        "diskless_on_remaining": BOOL,
        "layer_list": STR_LIST,
        "select_filter": SELECT_FILTER,
        "copy_all_snaps": BOOL,
        "snap_names": STR_LIST,
    }
)
MAKE_AVAILABLE = Obj(
    {
        "diskful": BOOL,
        "layer_list": STR_LIST,
        "drbd_tcp_ports": ListOf(INT),
        "copy_all_snaps": BOOL,
        "snap_names": STR_LIST,
    }
)
SNAPSHOT_CREATE = Obj(
    {
        "name": STR,
        "resource_name": STR,
        "nodes": STR_LIST,
        "props": PROPS,
        "snapshot_definition_props": PROPS,
        "resource_definition_props": PROPS,
        "flags": STR_LIST,
        "volume_definitions": ListOf(ANY),
        "uuid": STR,
        "snapshots": ListOf(ANY),
    }
)
SNAPSHOT_MULTI = Obj({"snapshots": ListOf(SNAPSHOT_CREATE)})
SNAPSHOT_MODIFY = Obj(PROPS_MODIFY)
SNAPSHOT_RESTORE = Obj({"to_resource": STR, "nodes": STR_LIST, "stor_pool_rename": PROPS})
SNAPSHOT_RESTORE_VD = Obj({"to_resource": STR, "nodes": STR_LIST, "stor_pool_rename": PROPS})
CLONE = Obj(
    {
        "name": STR,
        "external_name": STR,
        "resource_group": STR,
        "layer_list": STR_LIST,
        "use_zfs_clone": BOOL,
        "volume_passphrases": STR_LIST,
        "volume_sizes": ListOf(LONG),
        **PROPS_MODIFY,
    }
)
KVS_MODIFY = Obj(PROPS_MODIFY)
