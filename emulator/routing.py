"""Requests, answers and the route table's machinery shared by the endpoint modules.

A handler gets a :class:`Request` and returns either :class:`Json` (reads) or a list
of ApiCallRc entries (mutations). The dispatcher fills the operation and object bits
of the route's context into every entry and derives the HTTP status from the entries,
the way the controller's ``ResponseConverter``/``toResponse`` do. The table itself, every
route in one list, is :mod:`emulator.routes`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from emulator import body as bodymod
from emulator import retcodes as rc


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    query: dict[str, list[str]] = field(default_factory=dict)
    raw_body: bytes = b""
    _parsed: Any = None
    _has_parsed: bool = False

    def q(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def q_first(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def q_int(self, name: str, default: int = 0) -> int:
        value = self.q_first(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError as exc:
            raise bodymod.ParseError(f"query parameter '{name}' must be an integer") from exc

    def q_bool(self, name: str) -> bool:
        value = (self.q_first(name) or "").lower()
        return value in ("true", "1", "yes")

    def json(self) -> Any:
        """The body as JSON; an empty body reads as null (Jackson maps it to defaults)."""
        if not self._has_parsed:
            self._parsed = bodymod.loads(self.raw_body)
            self._has_parsed = True
        return self._parsed

    def body(self, spec: bodymod.Obj, required: bool = True) -> dict[str, Any]:
        """The body checked against the endpoint's request type."""
        data = self.json()
        if data is None:
            if required:
                raise bodymod.ParseError("the request needs a JSON body")
            return {}
        return bodymod.check(data, spec)


@dataclass
class Json:
    data: Any
    status: int = 200


Reply = Json | list[rc.Entry]
Handler = Callable[[Any, Request], Reply]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    status: int = 200
    op: int = 0
    obj: int = 0
    mutates: bool = False
    #: The path as registered (``/v1/resource-definitions/{rd}``): a bounded metrics label.
    template: str = ""


def endpoint(
    method: str, template: str, handler: Handler, *, status: int = 200, op: int = 0, obj: int = 0
) -> Route:
    """One row of the route table: ``{name}`` segments of ``template`` match one path segment.

    ``status`` is the HTTP status of a successful mutation; ``op``/``obj`` are the ret-code
    context bits the dispatcher fills into every entry the handler answers.
    """
    return Route(method, re.compile(_regex(template)), handler, status, op, obj, method != "GET", template)


def _regex(template: str) -> str:
    return "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "/?$"


#: Templates whose regex can only match a path with as many slashes, or one more (a trailing one).
_PLAIN_TEMPLATE = re.compile(r"(?:[A-Za-z0-9_/-]|\{\w+\})*")


def _slashes(route: Route) -> int | None:
    """The slashes of every path ``route`` can match but a trailing one; None when not that simple."""
    if _PLAIN_TEMPLATE.fullmatch(route.template) and route.pattern.pattern == _regex(route.template):
        return route.template.count("/")
    return None


class RouteTable:
    """The routes in the order they are tried: the first one matching method and path wins."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        # A path is only tried against the routes that could match its number of slashes,
        # in table order: a few regular expressions per request instead of every route's.
        slashes = [_slashes(r) for r in self.routes]
        deepest = max((k for k in slashes if k is not None), default=-1)
        self._by_slashes = tuple(
            tuple(r for r, k in zip(self.routes, slashes, strict=True) if k is None or c - 1 <= k <= c)
            for c in range(deepest + 2)
        )
        self._unsized = tuple(r for r, k in zip(self.routes, slashes, strict=True) if k is None)

    def candidates(self, path: str) -> tuple[Route, ...]:
        """The routes that may match ``path``, in table order."""
        c = path.count("/")
        return self._by_slashes[c] if c < len(self._by_slashes) else self._unsized

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | bool | None:
        """The route and its path parameters; False when the path exists with another method."""
        path_known = False
        for r in self.candidates(path):
            m = r.pattern.match(path)
            if m is None:
                continue
            if r.method == method:
                return r, {k: unquote(v) for k, v in m.groupdict().items()}
            path_known = True
        return False if path_known else None

    def template_of(self, method: str, path: str) -> str | None:
        """The template of the route ``path`` belongs to (the method's own first), None if unknown."""
        fallback = None
        for r in self.candidates(path):
            if r.pattern.match(path) is None:
                continue
            if r.method == method:
                return r.template
            fallback = fallback or r.template
        return fallback


def finish(route_: Route, reply: Reply) -> tuple[int, Any]:
    """Status and JSON body of a handler's reply."""
    if isinstance(reply, Json):
        return reply.status, reply.data
    entries = [e.with_context(route_.op, route_.obj) for e in reply]
    return rc.http_status(entries, route_.status), [e.to_json() for e in entries]


def failure(route_: Route | None, entries: list[rc.Entry]) -> tuple[int, Any]:
    op, obj = (route_.op, route_.obj) if route_ else (0, 0)
    entries = [e.with_context(op, obj) for e in entries]
    return rc.http_status(entries, 500), [e.to_json() for e in entries]


def paginate(items: list[Any], req: Request) -> list[Any]:
    """``limit``/``offset`` apply only when ``limit > 0``, after filtering and sorting.

    The controller pages with Java's ``stream.skip(offset).limit(limit)`` in that case only:
    an offset past the end gives an empty page, a negative offset makes ``skip`` throw, which
    the controller answers as an unexpected error (500, an error report). Without a positive
    limit the offset is not looked at, whatever it is.
    """
    limit = req.q_int("limit")
    if limit <= 0:
        return items
    offset = req.q_int("offset")
    if offset < 0:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_IMPL_ERROR,
                "An unknown exception occurred while processing the request",
                cause="IllegalArgumentException",
                details=str(offset),
                error_report_ids=[rc.new_error_report_id()],
            )
        )
    return items[offset : offset + limit]


#: Fields clients index without a default (python-linstor's layer data), kept even when "".
_ALWAYS = frozenset({"resource_name_suffix"})


class Pojo(dict):  # type: ignore[type-arg]
    """A JSON object that is a Java object, not a map: Jackson keeps it even when empty."""


def omit_empty(value: Any) -> Any:
    """Jackson ``NON_EMPTY``: drop None, empty strings, lists and maps; keep 0 and False."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(v, dict | list):
                v = omit_empty(v)
                if not v and not isinstance(v, Pojo):
                    continue
            elif v is None or (v == "" and k not in _ALWAYS):
                continue
            out[k] = v
        return Pojo(out) if isinstance(value, Pojo) else out
    if isinstance(value, list):
        return [omit_empty(v) if isinstance(v, dict | list) else v for v in value]
    return value
