"""The emulator's route table: complete, unambiguous, and the only way a handler is reached.

Routes are one explicit table (``emulator.routes``), not registration by import; these
tests make a forgotten or doubled route fail here rather than as a 404 in some
integration test, and keep the endpoint modules from importing one another.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections import Counter
from pathlib import Path
from types import FunctionType, ModuleType
from urllib.parse import unquote

import pytest

import emulator
from emulator.routes import ROUTES
from emulator.routing import Route, RouteTable, endpoint

EMULATOR_DIR = Path(emulator.__file__).parent
#: Modules that define REST handlers: every ``api_*`` module, and l2l (backup shipping).
HANDLER_MODULES = [*sorted(p.stem for p in EMULATOR_DIR.glob("api_*.py")), "l2l"]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"emulator.{name}")


def _is_handler(fn: FunctionType) -> bool:
    """A handler takes exactly the emulator and a Request, as the dispatcher calls it."""
    params = list(inspect.signature(fn).parameters.values())
    return [p.name for p in params] == ["emu", "req"] and params[1].annotation == "Request"


def _handlers(module: ModuleType) -> set[FunctionType]:
    return {
        fn
        for _, fn in inspect.getmembers(module, inspect.isfunction)
        if fn.__module__ == module.__name__ and _is_handler(fn)
    }


def _concrete(template: str) -> str:
    """A path the template stands for: each ``{name}`` segment becomes a plain value."""
    return re.sub(r"\{(\w+)\}", lambda m: f"v-{m.group(1)}", template)


def test_no_route_is_listed_twice() -> None:
    counts = Counter((r.method, r.template) for r in ROUTES.routes)
    doubled = sorted(key for key, n in counts.items() if n > 1)
    assert doubled == [], f"routes listed more than once: {doubled}"


def test_every_handler_is_routed_and_every_route_reaches_a_handler() -> None:
    defined = {fn for name in HANDLER_MODULES for fn in _handlers(_module(name))}
    routed = {r.handler for r in ROUTES.routes}
    unrouted = sorted(f"{fn.__module__}.{fn.__name__}" for fn in defined - routed)
    assert unrouted == [], f"handlers missing from emulator/routes.py: {unrouted}"
    foreign = sorted(f"{fn.__module__}.{fn.__name__}" for fn in routed - defined)
    assert foreign == [], f"routes to functions that are not handlers of the api modules: {foreign}"


def test_the_handler_modules_are_found() -> None:
    """The discovery above is not vacuous: it sees the modules and their handlers."""
    assert {"api_nodes", "api_rd", "api_rg", "api_rsc", "api_snap", "l2l"} <= set(HANDLER_MODULES)
    counts = {name: len(_handlers(_module(name))) for name in HANDLER_MODULES}
    assert all(counts.values()), f"a module without handlers: {counts}"
    assert sum(counts.values()) == len(ROUTES.routes)


@pytest.mark.parametrize("route", ROUTES.routes, ids=lambda r: f"{r.method} {r.template}")
def test_each_route_is_reached_by_its_own_paths(route: Route) -> None:
    """No earlier route of the same method shadows this one, and path parameters come back named."""
    path = _concrete(route.template)
    for variant in (path, path + "/"):
        found = ROUTES.match(route.method, variant)
        assert isinstance(found, tuple), f"{route.method} {variant} is not routed"
        matched, params = found
        assert matched is route
        assert params == {name: f"v-{name}" for name in re.findall(r"\{(\w+)\}", route.template)}
    assert ROUTES.template_of(route.method, path) == route.template


def test_a_known_path_with_another_method_and_an_unknown_path() -> None:
    assert ROUTES.match("PATCH", "/v1/resource-definitions/r1") is False
    assert ROUTES.match("GET", "/v1/no-such-thing") is None
    assert ROUTES.template_of("PATCH", "/v1/resource-definitions/r1") == "/v1/resource-definitions/{rd}"
    assert ROUTES.template_of("GET", "/v1/no-such-thing") is None


def _linear(table: RouteTable, method: str, path: str) -> tuple[object, str | None]:
    """What ``match`` and ``template_of`` answer when every route is tried in order."""
    path_known, fallback = False, None
    for r in table.routes:
        m = r.pattern.match(path)
        if m is None:
            continue
        if r.method == method:
            return (r, {k: unquote(v) for k, v in m.groupdict().items()}), r.template
        path_known, fallback = True, fallback or r.template
    return (False if path_known else None), fallback


def test_trying_only_routes_of_the_paths_depth_answers_as_trying_all() -> None:
    odd = Route("GET", re.compile(r"^/v1/odd(/.*)?$"), ROUTES.routes[0].handler, template="/v1/odd")
    dotted = endpoint("GET", "/v1/a.b.c", ROUTES.routes[0].handler)  # "." matches a slash too
    tables = [ROUTES, RouteTable([*ROUTES.routes[:5], odd, dotted, *ROUTES.routes[5:]])]
    paths = {
        "",
        "/",
        "//",
        "/v1",
        "/v1/",
        "/v1/odd",
        "/v1/odd/x/y/z/w/v/u/t/s/r/q/p",
        "/v1/a/b/c/",
        "/v1/a.b.c",
    }
    for r in ROUTES.routes:
        path = _concrete(r.template)
        paths |= {path, path + "/", path + "//", path + "/x", path.rsplit("/", 1)[0], path.replace("/", "//")}
        paths |= {path + "\n", "/x" + path, path.replace("v-", "a%2Fb-"), "/" * 40 + path}
    methods = {r.method for r in ROUTES.routes} | {"PATCH"}
    for table in tables:
        for path in sorted(paths):
            for method in sorted(methods):
                found, template = _linear(table, method, path)
                assert table.match(method, path) == found, (method, path)
                assert table.template_of(method, path) == template, (method, path)
    assert tables[1].match("GET", "/v1/odd/x/y/z/w/v/u/t/s/r/q/p") == (odd, {})
    assert tables[1].match("GET", "/v1/a/b/c/") == (dotted, {})


def test_only_reads_are_not_mutations() -> None:
    for r in ROUTES.routes:
        assert r.mutates == (r.method != "GET"), f"{r.method} {r.template}"


@pytest.mark.parametrize("name", HANDLER_MODULES)
def test_handler_modules_do_not_import_each_other(name: str) -> None:
    """Shared helpers live in listing/definitions/snapshots/remotes/ops/routing, not in a sibling."""
    tree = ast.parse((EMULATOR_DIR / f"{name}.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            imported.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    siblings = {f"emulator.{m}" for m in HANDLER_MODULES if m != name}
    assert sorted(imported & siblings) == []
