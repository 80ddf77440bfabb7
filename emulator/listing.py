"""Helpers every endpoint module shares: list filters and paging, and property edits.

They live apart from the endpoint modules so that no ``api_*`` module imports another:
nodes, resource groups, resource definitions and snapshots filter, list and edit
properties by the same rules, defined once here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

from emulator import names, props
from emulator import retcodes as rc
from emulator.ordered import in_key_order
from emulator.routing import Request, paginate


class _HasProps(Protocol):
    props: dict[str, str]


_P = TypeVar("_P", bound=_HasProps)
_V = TypeVar("_V")


def name_filter(
    req: Request, param: str, check: Any, op: int = 0, obj: int = 0, code: int = 0
) -> set[str] | None:
    """A repeated name filter, validated (500 on an invalid name) and upper-cased."""
    values = [v for v in req.q(param) if v != ""]
    if not values:
        return None
    for v in values:
        rc.refuse_invalid(check(v), code, op, obj)
    return {names.key(v) for v in values}


def chosen(objects: Mapping[str, _V], wanted: set[str] | None) -> Iterable[tuple[str, _V]]:
    """The (key, object) pairs a name filter ``wanted`` keeps, in key order.

    A name filter picks its few objects by key instead of walking all of them: a client
    reading one volume among 10,000 costs the same as among 10.
    """
    if wanted is None:
        return in_key_order(objects)
    return ((k, objects[k]) for k in sorted(wanted) if k in objects)


def listed(req: Request, objects: Mapping[str, _P], wanted: set[str] | None) -> list[_P]:
    """What a list call returns: sorted by key, name and ``props`` filters applied, then one page.

    Nodes, resource groups and resource definitions are listed by the same rules, so the
    order of filtering, sorting and paging cannot differ between them.
    """
    pf = props.parse_filters(req.q("props"))
    kept = [o for _, o in chosen(objects, wanted) if not pf or props.matches_parsed(o.props, pf)]
    return paginate(kept, req)


def modify_props(
    obj: Any, data: dict[str, Any], what: str, mask: int, refs: dict[str, str]
) -> list[rc.Entry]:
    """The shared ``override_props``/``delete_props``/``delete_namespaces`` edit."""
    override = data.get("override_props") or {}
    props.validate_props(override, rc.MASK_MOD, mask)
    obj.props = props.apply_modify(
        obj.props, override, data.get("delete_props") or [], data.get("delete_namespaces") or []
    )
    entries = []
    if override:
        entries.append(
            rc.success(
                rc.MODIFIED,
                "Successfully set property key(s): " + ",".join(sorted(override)),
                rc.MASK_MOD,
                mask,
                obj_refs=refs,
            )
        )
    entries.append(rc.success(rc.MODIFIED, f"{what} modified.", rc.MASK_MOD, mask, obj_refs=refs))
    return entries
